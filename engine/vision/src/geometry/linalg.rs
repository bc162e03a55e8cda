//! Small dense linear algebra shared by the two-view solvers: null spaces of `n × 9` systems,
//! 3×3 SVDs, real polynomial roots and point normalisation. Every decomposition runs with an
//! iteration cap so that degenerate or non-finite input fails instead of looping.

use glam::{DMat3, DVec2, DVec3};
use nalgebra::{DMatrix, Matrix3, SMatrix};

/// Iteration cap of nalgebra's SVD and Schur decompositions; convergence takes a few dozen
/// sweeps on the tiny matrices here, so hitting this means the input was degenerate.
const MAX_DECOMPOSITION_ITERATIONS: usize = 1000;

/// Right singular vectors of the `rows.len() × 9` system `A`, as the columns of a 9×9 matrix
/// sorted by decreasing singular value: the last columns span the (approximate) null space.
pub fn right_singular_vectors_9(rows: &[[f64; 9]]) -> Option<SMatrix<f64, 9, 9>> {
    if rows.iter().flatten().any(|v| !v.is_finite()) {
        return None;
    }
    let entry = |r: usize, c: usize| rows.get(r).map_or(0.0, |row| row[c]);
    if rows.len() <= 9 {
        // Minimal samples: a stack-allocated square system, zero-padded.
        let a = SMatrix::<f64, 9, 9>::from_fn(entry);
        let svd = nalgebra::SVD::try_new(a, false, true, f64::EPSILON, MAX_DECOMPOSITION_ITERATIONS)?;
        return Some(svd.v_t?.transpose());
    }
    let a = DMatrix::from_fn(rows.len(), 9, entry);
    let svd = nalgebra::SVD::try_new(a, false, true, f64::EPSILON, MAX_DECOMPOSITION_ITERATIONS)?;
    let v_t = svd.v_t?;
    Some(SMatrix::<f64, 9, 9>::from_fn(|r, c| v_t[(c, r)]))
}

/// Column `c` of a 9×9 matrix as a 3×3 matrix read row-major.
pub fn mat3_from_column(v: &SMatrix<f64, 9, 9>, c: usize) -> DMat3 {
    mat3_from_row_major(&std::array::from_fn(|k| v[(k, c)]))
}

pub fn mat3_from_row_major(m: &[f64; 9]) -> DMat3 {
    DMat3::from_cols_array(m).transpose()
}

pub fn to_nalgebra(m: DMat3) -> Matrix3<f64> {
    Matrix3::from_fn(|r, c| m.col(c)[r])
}

pub fn from_nalgebra(m: &Matrix3<f64>) -> DMat3 {
    DMat3::from_cols(
        DVec3::new(m[(0, 0)], m[(1, 0)], m[(2, 0)]),
        DVec3::new(m[(0, 1)], m[(1, 1)], m[(2, 1)]),
        DVec3::new(m[(0, 2)], m[(1, 2)], m[(2, 2)]),
    )
}

/// `m = U diag(s) Vᵀ` with `s` sorted decreasingly: `(U, s, V)`.
pub fn svd3(m: DMat3) -> Option<(DMat3, DVec3, DMat3)> {
    if !m.is_finite() {
        return None;
    }
    let svd = nalgebra::SVD::try_new(to_nalgebra(m), true, true, f64::EPSILON, MAX_DECOMPOSITION_ITERATIONS)?;
    let u = from_nalgebra(&svd.u?);
    let v = from_nalgebra(&svd.v_t?).transpose();
    let s = DVec3::new(svd.singular_values[0], svd.singular_values[1], svd.singular_values[2]);
    Some((u, s, v))
}

/// Frobenius norm of a 3×3 matrix.
pub fn frobenius(m: DMat3) -> f64 {
    m.to_cols_array().iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// The cross-product matrix `[v]×` (`[v]× w = v × w`).
pub fn skew(v: DVec3) -> DMat3 {
    DMat3::from_cols(DVec3::new(0.0, v.z, -v.y), DVec3::new(-v.z, 0.0, v.x), DVec3::new(v.y, -v.x, 0.0))
}

/// Relative tolerance on the imaginary part under which a companion eigenvalue counts as a real
/// root; Newton polishing then restores full precision.
const REAL_ROOT_TOLERANCE: f64 = 1e-6;
/// Newton steps that polish each root of the companion matrix (quadratic convergence).
const NEWTON_POLISH_STEPS: usize = 3;

/// Real roots of `Σ coefficients[k] zᵏ` (ascending powers), from the eigenvalues of the
/// companion matrix, each polished by Newton's method.
pub fn real_roots(coefficients: &[f64]) -> Vec<f64> {
    let scale = coefficients.iter().fold(0.0f64, |m, c| m.max(c.abs()));
    if !scale.is_finite() || scale == 0.0 {
        return Vec::new();
    }
    let Some(degree) = coefficients.iter().rposition(|c| c.abs() > scale * 1e-14) else { return Vec::new() };
    if degree == 0 {
        return Vec::new();
    }
    let lead = coefficients[degree];
    let companion = DMatrix::from_fn(degree, degree, |r, c| {
        if r == 0 {
            -coefficients[degree - 1 - c] / lead
        } else if r == c + 1 {
            1.0
        } else {
            0.0
        }
    });
    let Some(schur) = nalgebra::Schur::try_new(companion, f64::EPSILON, MAX_DECOMPOSITION_ITERATIONS) else {
        return Vec::new();
    };
    schur
        .complex_eigenvalues()
        .iter()
        .filter(|z| z.im.abs() <= REAL_ROOT_TOLERANCE * z.re.abs().max(1.0))
        .map(|z| polish_root(&coefficients[..=degree], z.re))
        .collect()
}

fn polish_root(coefficients: &[f64], mut z: f64) -> f64 {
    for _ in 0..NEWTON_POLISH_STEPS {
        let (value, derivative) = evaluate_with_derivative(coefficients, z);
        if derivative == 0.0 {
            break;
        }
        let next = z - value / derivative;
        if !next.is_finite() {
            break;
        }
        z = next;
    }
    z
}

/// `(p(z), p'(z))` by Horner's scheme (ascending coefficients).
pub fn evaluate_with_derivative(coefficients: &[f64], z: f64) -> (f64, f64) {
    let mut value = 0.0;
    let mut derivative = 0.0;
    for &c in coefficients.iter().rev() {
        derivative = derivative * z + value;
        value = value * z + c;
    }
    (value, derivative)
}

/// A similarity that moves the centroid of `points` to the origin and their mean distance to it
/// to √2 (Hartley's normalisation): `normalised = scale · (point − centroid)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    pub centroid: DVec2,
    pub scale: f64,
}

impl Normalization {
    /// From every point of both views together, so one similarity serves both (distances then
    /// scale by exactly `scale`, which keeps thresholds exact).
    pub fn of_points<'a>(points: impl Iterator<Item = &'a DVec2> + Clone) -> Option<Self> {
        let count = points.clone().count();
        if count == 0 {
            return None;
        }
        let centroid = points.clone().fold(DVec2::ZERO, |s, p| s + *p) / count as f64;
        let mean_distance = points.map(|p| p.distance(centroid)).sum::<f64>() / count as f64;
        (mean_distance > 0.0 && mean_distance.is_finite())
            .then(|| Self { centroid, scale: std::f64::consts::SQRT_2 / mean_distance })
    }

    /// The normalisation of both views' points together, and the points normalised by it.
    pub fn of_pairs(xi: &[DVec2], xj: &[DVec2]) -> Option<(Self, Vec<DVec2>, Vec<DVec2>)> {
        let normalization = Self::of_points(xi.iter().chain(xj))?;
        let apply = |points: &[DVec2]| points.iter().map(|&p| normalization.apply(p)).collect();
        Some((normalization, apply(xi), apply(xj)))
    }

    pub fn apply(&self, p: DVec2) -> DVec2 {
        (p - self.centroid) * self.scale
    }

    /// The homogeneous 3×3 matrix `T` with `T [p; 1] = [apply(p); 1]`.
    pub fn matrix(&self) -> DMat3 {
        let s = self.scale;
        DMat3::from_cols(DVec3::new(s, 0.0, 0.0), DVec3::new(0.0, s, 0.0), (-self.centroid * s).extend(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_of_known_polynomial() {
        // (z − 1)(z + 2)(z − 0.5)(z² + 1) expanded, ascending.
        let mut poly = vec![1.0];
        for factor in [vec![-1.0, 1.0], vec![2.0, 1.0], vec![-0.5, 1.0], vec![1.0, 0.0, 1.0]] {
            let mut next = vec![0.0; poly.len() + factor.len() - 1];
            for (i, a) in poly.iter().enumerate() {
                for (j, b) in factor.iter().enumerate() {
                    next[i + j] += a * b;
                }
            }
            poly = next;
        }
        let mut roots = real_roots(&poly);
        roots.sort_by(f64::total_cmp);
        assert_eq!(roots.len(), 3, "{roots:?}");
        for (r, expected) in roots.iter().zip([-2.0, 0.5, 1.0]) {
            assert!((r - expected).abs() < 1e-12, "{r} vs {expected}");
        }
    }

    #[test]
    fn null_space_of_rank_deficient_system() {
        let x = [1.0, -2.0, 0.5, 3.0, 0.0, 1.0, -1.0, 2.0, 0.25];
        let mut rng = kiln_core::rng::Pcg32::new(1);
        let rows: Vec<[f64; 9]> = (0..8)
            .map(|_| {
                let mut row: [f64; 9] = std::array::from_fn(|_| f64::from(rng.normal()));
                // Make row orthogonal to x.
                let dot: f64 = row.iter().zip(&x).map(|(a, b)| a * b).sum();
                let xx: f64 = x.iter().map(|v| v * v).sum();
                row.iter_mut().zip(&x).for_each(|(r, xv)| *r -= dot / xx * xv);
                row
            })
            .collect();
        let v = right_singular_vectors_9(&rows).unwrap();
        let null: Vec<f64> = (0..9).map(|r| v[(r, 8)]).collect();
        let xn = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        let dot: f64 = null.iter().zip(&x).map(|(a, b)| a * b / xn).sum();
        assert!((dot.abs() - 1.0).abs() < 1e-12, "{dot}");
    }

    #[test]
    fn svd3_recomposes() {
        let m = mat3_from_row_major(&[1.0, 2.0, 3.0, -1.0, 0.5, 2.0, 0.0, 4.0, -3.0]);
        let (u, s, v) = svd3(m).unwrap();
        assert!(s.x >= s.y && s.y >= s.z);
        let back = u * DMat3::from_diagonal(s) * v.transpose();
        assert!(frobenius(back - m) < 1e-12);
        assert!(skew(DVec3::X) * DVec3::Y == DVec3::Z);
    }
}
