//! The essential matrix `E = [t]× R` of `camera_j_from_camera_i` (OpenCV axes), with
//! `x_jᵀ E x_i = 0` for normalised homogeneous image points `x = (X/Z, Y/Z, 1)`.
//!
//! - [`five_point`]: Nistér's minimal solver (2004), in the hidden-variable form: the four-dimensional
//!   null space of the five epipolar constraints, the ten cubic constraints
//!   (`det E = 0`, `2 E Eᵀ E − tr(E Eᵀ) E = 0`) reduced by Gauss–Jordan elimination, and a
//!   degree-10 polynomial in the hidden variable solved through its companion matrix.
//! - [`linear`]: the 8-point least-squares fit projected onto the essential manifold (used by the
//!   local optimisation of RANSAC).
//! - [`EssentialEstimator`]: both, with the Sampson error, for [`super::ransac::lo_ransac`].

use glam::{DMat3, DVec2, DVec3};

use crate::geometry::linalg::{mat3_from_column, real_roots, right_singular_vectors_9, svd3};
use crate::geometry::ransac::Estimator;

/// Points a minimal sample holds.
pub const MINIMAL_POINTS: usize = 5;

/// The epipolar-constraint row of one correspondence: `x_jᵀ E x_i = row · vec(E)` (row-major).
fn epipolar_row(xi: DVec2, xj: DVec2) -> [f64; 9] {
    let (a, b) = (xi.extend(1.0), xj.extend(1.0));
    [b.x * a.x, b.x * a.y, b.x, b.y * a.x, b.y * a.y, b.y, a.x, a.y, 1.0]
}

/// Squared Sampson distance of a correspondence under `E` (or `F`): a first-order approximation
/// of the squared geometric distance to the nearest pair of epipolar-consistent points, in the
/// points' own unit.
pub fn sampson_error_sq(e: &DMat3, xi: DVec2, xj: DVec2) -> f64 {
    let (a, b) = (xi.extend(1.0), xj.extend(1.0));
    let ea = *e * a;
    let etb = e.transpose() * b;
    let numerator = b.dot(ea);
    let denominator = ea.x * ea.x + ea.y * ea.y + etb.x * etb.x + etb.y * etb.y;
    if denominator <= f64::MIN_POSITIVE {
        return f64::INFINITY;
    }
    numerator * numerator / denominator
}

/// A polynomial of total degree ≤ 3 in the null-space coefficients `(x, y, z)`, stored densely
/// by exponents `(i, j, k)` at `16 i + 4 j + k`.
#[derive(Clone, Copy)]
struct Cubic([f64; 64]);

impl Cubic {
    const ZERO: Self = Self([0.0; 64]);

    /// `x a + y b + z c + d`.
    fn linear(a: f64, b: f64, c: f64, d: f64) -> Self {
        let mut p = Self::ZERO;
        p.0[16] = a;
        p.0[4] = b;
        p.0[1] = c;
        p.0[0] = d;
        p
    }

    /// Product, dropping nothing: callers never exceed degree 3.
    fn mul(&self, other: &Self) -> Self {
        let mut out = Self::ZERO;
        for (ia, &a) in self.0.iter().enumerate().filter(|(_, a)| **a != 0.0) {
            let (ai, aj, ak) = (ia / 16, ia / 4 % 4, ia % 4);
            for (ib, &b) in other.0.iter().enumerate().filter(|(_, b)| **b != 0.0) {
                let (i, j, k) = (ai + ib / 16, aj + ib / 4 % 4, ak + ib % 4);
                if i + j + k <= 3 {
                    out.0[16 * i + 4 * j + k] += a * b;
                }
            }
        }
        out
    }

    fn add(&self, other: &Self) -> Self {
        Self(std::array::from_fn(|k| self.0[k] + other.0[k]))
    }

    fn scale(&self, s: f64) -> Self {
        Self(self.0.map(|v| v * s))
    }
}

/// Monomials `(i, j, k)` of `x^i y^j z^k` in the column order of Nistér's elimination: the ten
/// eliminated first, then the ten that stay (each at most linear in `x` and `y`).
const MONOMIALS: [(usize, usize, usize); 20] = [
    (3, 0, 0),
    (0, 3, 0),
    (2, 1, 0),
    (1, 2, 0),
    (2, 0, 1),
    (2, 0, 0),
    (0, 2, 1),
    (0, 2, 0),
    (1, 1, 1),
    (1, 1, 0),
    (1, 0, 2),
    (1, 0, 1),
    (1, 0, 0),
    (0, 1, 2),
    (0, 1, 1),
    (0, 1, 0),
    (0, 0, 3),
    (0, 0, 2),
    (0, 0, 1),
    (0, 0, 0),
];

/// Pivots smaller than this (relative to the largest entry) mean a degenerate sample.
const PIVOT_TOLERANCE: f64 = 1e-12;

/// Every essential matrix (unit Frobenius norm) consistent with five correspondences in
/// normalised coordinates (up to 10; typically 2–4 real ones).
pub fn five_point(xi: &[DVec2], xj: &[DVec2]) -> Vec<DMat3> {
    if xi.len() != MINIMAL_POINTS || xj.len() != MINIMAL_POINTS {
        return Vec::new();
    }
    let rows: Vec<[f64; 9]> = xi.iter().zip(xj).map(|(&a, &b)| epipolar_row(a, b)).collect();
    let Some(v) = right_singular_vectors_9(&rows) else { return Vec::new() };
    // E = x X + y Y + z Z + W with X, Y, Z, W the null-space basis.
    let basis = [mat3_from_column(&v, 5), mat3_from_column(&v, 6), mat3_from_column(&v, 7), mat3_from_column(&v, 8)];
    let Some(constraints) = constraint_matrix(&basis) else { return Vec::new() };
    let Some(reduced) = gauss_jordan(constraints) else { return Vec::new() };
    let hidden = hidden_variable_matrix(&reduced);
    let determinant = det3_poly(&hidden);
    real_roots(&determinant)
        .into_iter()
        .filter_map(|z| {
            let m = hidden.map(|row| row.map(|p| eval(&p, z)));
            let r = m.map(DVec3::from_array);
            let candidates = [r[0].cross(r[1]), r[0].cross(r[2]), r[1].cross(r[2])];
            let best = candidates.into_iter().max_by(|a, b| a.length_squared().total_cmp(&b.length_squared()))?;
            if best.z.abs() <= f64::MIN_POSITIVE {
                return None;
            }
            let (x, y, z) = polish(&constraints, [best.x / best.z, best.y / best.z, z]);
            let e = basis[0] * x + basis[1] * y + basis[2] * z + basis[3];
            let norm = super::linalg::frobenius(e);
            (norm.is_finite() && norm > 0.0).then(|| e * (1.0 / norm))
        })
        .collect()
}

/// The 10 × 20 coefficients of the cubic constraints `det E = 0` and `2 E Eᵀ E − tr(E Eᵀ) E = 0`.
fn constraint_matrix(basis: &[DMat3; 4]) -> Option<[[f64; 20]; 10]> {
    let entry = |r: usize, c: usize| {
        Cubic::linear(basis[0].col(c)[r], basis[1].col(c)[r], basis[2].col(c)[r], basis[3].col(c)[r])
    };
    let e: [[Cubic; 3]; 3] = std::array::from_fn(|r| std::array::from_fn(|c| entry(r, c)));
    // E Eᵀ.
    let eet: [[Cubic; 3]; 3] = std::array::from_fn(|r| {
        std::array::from_fn(|c| (0..3).fold(Cubic::ZERO, |s, k| s.add(&e[r][k].mul(&e[c][k]))))
    });
    let trace = eet[0][0].add(&eet[1][1]).add(&eet[2][2]);
    let mut out = [[0.0; 20]; 10];
    let det = e[0][0]
        .mul(&e[1][1].mul(&e[2][2]).add(&e[1][2].mul(&e[2][1]).scale(-1.0)))
        .add(&e[0][1].mul(&e[1][2].mul(&e[2][0]).add(&e[1][0].mul(&e[2][2]).scale(-1.0))))
        .add(&e[0][2].mul(&e[1][0].mul(&e[2][1]).add(&e[1][1].mul(&e[2][0]).scale(-1.0))));
    out[0] = to_monomials(&det);
    for r in 0..3 {
        for c in 0..3 {
            let eete = (0..3).fold(Cubic::ZERO, |s, k| s.add(&eet[r][k].mul(&e[k][c])));
            let constraint = eete.scale(2.0).add(&trace.mul(&e[r][c]).scale(-1.0));
            out[1 + 3 * r + c] = to_monomials(&constraint);
        }
    }
    out.iter().flatten().all(|v| v.is_finite()).then_some(out)
}

/// Gauss–Newton steps on the ten cubic constraints that polish a solution `(x, y, z)`: the
/// hidden-variable back-substitution loses digits near repeated roots; two steps restore them.
const POLISH_STEPS: usize = 2;

/// Refines `(x, y, z)` by Gauss–Newton on `constraints · monomials(x, y, z) = 0`, keeping a step
/// only when it lowers the residual.
fn polish(constraints: &[[f64; 20]; 10], mut xyz: [f64; 3]) -> (f64, f64, f64) {
    let residuals = |p: [f64; 3]| -> ([f64; 10], [[f64; 3]; 10]) {
        let mut r = [0.0; 10];
        let mut jac = [[0.0; 3]; 10];
        for (k, &(i, j, l)) in MONOMIALS.iter().enumerate() {
            let power = |v: f64, n: usize| if n == 0 { 1.0 } else { v.powi(n as i32) };
            let value = power(p[0], i) * power(p[1], j) * power(p[2], l);
            let dx = if i > 0 { i as f64 * power(p[0], i - 1) * power(p[1], j) * power(p[2], l) } else { 0.0 };
            let dy = if j > 0 { j as f64 * power(p[0], i) * power(p[1], j - 1) * power(p[2], l) } else { 0.0 };
            let dz = if l > 0 { l as f64 * power(p[0], i) * power(p[1], j) * power(p[2], l - 1) } else { 0.0 };
            for (row, c) in constraints.iter().enumerate() {
                r[row] += c[k] * value;
                jac[row][0] += c[k] * dx;
                jac[row][1] += c[k] * dy;
                jac[row][2] += c[k] * dz;
            }
        }
        (r, jac)
    };
    let norm = |r: &[f64; 10]| r.iter().map(|v| v * v).sum::<f64>();
    for _ in 0..POLISH_STEPS {
        let (r, jac) = residuals(xyz);
        let jtj = nalgebra::Matrix3::from_fn(|a, b| jac.iter().map(|row| row[a] * row[b]).sum::<f64>());
        let jtr = nalgebra::Vector3::from_fn(|a, _| jac.iter().zip(&r).map(|(row, v)| row[a] * v).sum::<f64>());
        let Some(step) = jtj.lu().solve(&(-jtr)) else { break };
        let candidate = [xyz[0] + step[0], xyz[1] + step[1], xyz[2] + step[2]];
        if !(candidate.iter().all(|v| v.is_finite()) && norm(&residuals(candidate).0) < norm(&r)) {
            break;
        }
        xyz = candidate;
    }
    (xyz[0], xyz[1], xyz[2])
}

fn to_monomials(p: &Cubic) -> [f64; 20] {
    MONOMIALS.map(|(i, j, k)| p.0[16 * i + 4 * j + k])
}

/// Gauss–Jordan elimination with partial pivoting of the first ten columns: row `r` of the
/// result reads `monomial_r + Σ_{k ≥ 10} row[k] monomial_k = 0`.
fn gauss_jordan(mut m: [[f64; 20]; 10]) -> Option<[[f64; 20]; 10]> {
    let scale = m.iter().flatten().fold(0.0f64, |s, v| s.max(v.abs()));
    if scale == 0.0 {
        return None;
    }
    for col in 0..10 {
        let pivot = (col..10).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() <= PIVOT_TOLERANCE * scale {
            return None;
        }
        m.swap(col, pivot);
        let inv = 1.0 / m[col][col];
        m[col].iter_mut().for_each(|v| *v *= inv);
        let pivot_row = m[col];
        for (r, row) in m.iter_mut().enumerate() {
            if r != col && row[col] != 0.0 {
                let f = row[col];
                row.iter_mut().zip(&pivot_row).for_each(|(v, p)| *v -= f * p);
            }
        }
    }
    Some(m)
}

/// The 3×3 matrix of polynomials in `z` (ascending, degree ≤ 4) whose rows are
/// `row(x²z) − z row(x²)`, `row(y²z) − z row(y²)`, `row(xyz) − z row(xy)` acting on `(x, y, 1)`.
fn hidden_variable_matrix(reduced: &[[f64; 20]; 10]) -> [[[f64; 5]; 3]; 3] {
    let mut out = [[[0.0; 5]; 3]; 3];
    for (row, (a, b)) in [(4, 5), (6, 7), (8, 9)].into_iter().enumerate() {
        for (k, &(i, j, power)) in MONOMIALS.iter().enumerate().skip(10) {
            let column = if i == 1 {
                0
            } else if j == 1 {
                1
            } else {
                2
            };
            out[row][column][power] += reduced[a][k];
            out[row][column][power + 1] -= reduced[b][k];
        }
    }
    out
}

fn poly_mul(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; a.len() + b.len() - 1];
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            out[i + j] += x * y;
        }
    }
    out
}

fn poly_sub(a: &[f64], b: &[f64]) -> Vec<f64> {
    (0..a.len().max(b.len())).map(|k| a.get(k).unwrap_or(&0.0) - b.get(k).unwrap_or(&0.0)).collect()
}

fn poly_add(a: &[f64], b: &[f64]) -> Vec<f64> {
    (0..a.len().max(b.len())).map(|k| a.get(k).unwrap_or(&0.0) + b.get(k).unwrap_or(&0.0)).collect()
}

/// Determinant of a 3×3 matrix of polynomials (cofactor expansion along the first row).
fn det3_poly(m: &[[[f64; 5]; 3]; 3]) -> Vec<f64> {
    let minor = |a: usize, b: usize| poly_sub(&poly_mul(&m[1][a], &m[2][b]), &poly_mul(&m[1][b], &m[2][a]));
    let t0 = poly_mul(&m[0][0], &minor(1, 2));
    let t1 = poly_mul(&m[0][1], &minor(0, 2));
    let t2 = poly_mul(&m[0][2], &minor(0, 1));
    poly_add(&poly_sub(&t0, &t1), &t2)
}

fn eval(p: &[f64; 5], z: f64) -> f64 {
    p.iter().rev().fold(0.0, |s, c| s * z + c)
}

/// Least-squares essential matrix from ≥ 8 correspondences: the 8-point solution with its
/// singular values replaced by `(1, 1, 0)`.
pub fn linear(xi: &[DVec2], xj: &[DVec2]) -> Option<DMat3> {
    if xi.len() < 8 || xi.len() != xj.len() {
        return None;
    }
    let rows: Vec<[f64; 9]> = xi.iter().zip(xj).map(|(&a, &b)| epipolar_row(a, b)).collect();
    let v = right_singular_vectors_9(&rows)?;
    project_to_essential(mat3_from_column(&v, 8))
}

/// The nearest essential matrix (Frobenius): singular values `(1, 1, 0)`.
pub fn project_to_essential(m: DMat3) -> Option<DMat3> {
    let (u, s, v) = svd3(m)?;
    if s.y <= f64::EPSILON * s.x {
        return None;
    }
    let e = u * DMat3::from_diagonal(DVec3::new(1.0, 1.0, 0.0)) * v.transpose();
    Some(e * std::f64::consts::FRAC_1_SQRT_2)
}

/// Correspondences in normalised coordinates for [`super::ransac::lo_ransac`]; residuals are
/// squared Sampson distances in normalised units (pixels divided by the focal length).
pub struct EssentialEstimator<'a> {
    pub xi: &'a [DVec2],
    pub xj: &'a [DVec2],
}

impl Estimator for EssentialEstimator<'_> {
    type Model = DMat3;
    const SAMPLE_SIZE: usize = MINIMAL_POINTS;

    fn num_data(&self) -> usize {
        self.xi.len().min(self.xj.len())
    }

    fn fit_minimal(&self, sample: &[usize]) -> Vec<DMat3> {
        let a: Vec<DVec2> = sample.iter().map(|&k| self.xi[k]).collect();
        let b: Vec<DVec2> = sample.iter().map(|&k| self.xj[k]).collect();
        five_point(&a, &b)
    }

    fn fit_nonminimal(&self, inliers: &[usize]) -> Option<DMat3> {
        let a: Vec<DVec2> = inliers.iter().map(|&k| self.xi[k]).collect();
        let b: Vec<DVec2> = inliers.iter().map(|&k| self.xj[k]).collect();
        linear(&a, &b)
    }

    fn residual_sq(&self, model: &DMat3, index: usize) -> f64 {
        sampson_error_sq(model, self.xi[index], self.xj[index])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::linalg::{frobenius, skew};
    use super::*;
    use kiln_core::rng::Pcg32;

    pub(crate) fn random_rotation(rng: &mut Pcg32, max_angle: f64) -> DMat3 {
        let axis = DVec3::new(f64::from(rng.normal()), f64::from(rng.normal()), f64::from(rng.normal())).normalize();
        DMat3::from_axis_angle(axis, max_angle * f64::from(rng.uniform()))
    }

    /// A random `camera_j_from_camera_i` and points in front of both cameras, as normalised
    /// coordinates `(xi, xj)`.
    pub(crate) fn random_scene(rng: &mut Pcg32, n: usize) -> (DMat3, DVec3, Vec<DVec2>, Vec<DVec2>) {
        let r = random_rotation(rng, 0.5);
        let t = DVec3::new(f64::from(rng.normal()), f64::from(rng.normal()), 0.3 * f64::from(rng.normal())).normalize();
        let mut xi = Vec::new();
        let mut xj = Vec::new();
        while xi.len() < n {
            let p = DVec3::new(
                f64::from(rng.uniform()) * 4.0 - 2.0,
                f64::from(rng.uniform()) * 4.0 - 2.0,
                4.0 + 4.0 * f64::from(rng.uniform()),
            );
            let q = r * p + t;
            if q.z > 0.5 {
                xi.push(p.truncate() / p.z);
                xj.push(q.truncate() / q.z);
            }
        }
        (r, t, xi, xj)
    }

    fn distance_up_to_sign(a: DMat3, b: DMat3) -> f64 {
        let (a, b) = (a * (1.0 / frobenius(a)), b * (1.0 / frobenius(b)));
        frobenius(a - b).min(frobenius(a + b))
    }

    #[test]
    fn five_point_recovers_ground_truth_exactly() {
        let mut rng = Pcg32::new(11);
        let mut worst = 0.0f64;
        for _ in 0..300 {
            let (r, t, xi, xj) = random_scene(&mut rng, 5);
            let truth = skew(t) * r;
            let solutions = five_point(&xi, &xj);
            assert!(!solutions.is_empty());
            for e in &solutions {
                for k in 0..5 {
                    let residual = xj[k].extend(1.0).dot(*e * xi[k].extend(1.0));
                    assert!(residual.abs() < 1e-9, "epipolar residual {residual}");
                }
            }
            let best = solutions.iter().map(|&e| distance_up_to_sign(e, truth)).fold(f64::INFINITY, f64::min);
            worst = worst.max(best);
        }
        assert!(worst < 1e-8, "worst relative error {worst}");
    }

    #[test]
    fn linear_fit_is_exact_without_noise() {
        let mut rng = Pcg32::new(5);
        let (r, t, xi, xj) = random_scene(&mut rng, 30);
        let e = linear(&xi, &xj).unwrap();
        assert!(distance_up_to_sign(e, skew(t) * r) < 1e-9);
    }

    #[test]
    fn sampson_error_matches_point_offset() {
        // E of a pure x translation: epipolar lines are horizontal; moving xj by δ in y gives a
        // geometric distance δ split across both images: Sampson = δ² / 2.
        let e = skew(DVec3::X);
        let xi = DVec2::new(0.1, 0.2);
        let xj = DVec2::new(0.3, 0.2 + 0.01);
        let s = sampson_error_sq(&e, xi, xj);
        assert!((s - 0.01 * 0.01 / 2.0).abs() < 1e-12, "{s}");
    }
}
