//! The fundamental matrix `F` with `x_jᵀ F x_i = 0` for homogeneous pixel coordinates: the
//! 7-point minimal solver (cubic in the pencil of the two-dimensional null space) and the
//! normalised 8-point least-squares fit, each with rank 2 enforced, and an estimator that works
//! in Hartley-normalised coordinates for numerical conditioning.

use glam::{DMat3, DVec2, DVec3};

use crate::geometry::essential::sampson_error_sq;
use crate::geometry::linalg::{Normalization, mat3_from_column, real_roots, right_singular_vectors_9, svd3};
use crate::geometry::ransac::Estimator;

fn epipolar_row(xi: DVec2, xj: DVec2) -> [f64; 9] {
    [xj.x * xi.x, xj.x * xi.y, xj.x, xj.y * xi.x, xj.y * xi.y, xj.y, xi.x, xi.y, 1.0]
}

/// Every fundamental matrix (rank 2, unit Frobenius norm) through 7 correspondences (1 or 3).
/// Coordinates should be normalised (see [`Normalization`]) for accuracy.
pub fn seven_point(xi: &[DVec2], xj: &[DVec2]) -> Vec<DMat3> {
    if xi.len() != 7 || xj.len() != 7 {
        return Vec::new();
    }
    let rows: Vec<[f64; 9]> = xi.iter().zip(xj).map(|(&a, &b)| epipolar_row(a, b)).collect();
    let Some(v) = right_singular_vectors_9(&rows) else { return Vec::new() };
    let (f1, f2) = (mat3_from_column(&v, 8), mat3_from_column(&v, 7));
    // det(f1 + λ f2) = a0 + a1 λ + a2 λ² + a3 λ³, from values at λ = ±1.
    let (a0, a3) = (f1.determinant(), f2.determinant());
    let (plus, minus) = ((f1 + f2).determinant(), (f1 - f2).determinant());
    let a2 = (plus + minus) / 2.0 - a0;
    let a1 = (plus - minus) / 2.0 - a3;
    real_roots(&[a0, a1, a2, a3]).into_iter().filter_map(|lambda| unit_norm(f1 + f2 * lambda)).collect()
}

fn unit_norm(m: DMat3) -> Option<DMat3> {
    let norm = super::linalg::frobenius(m);
    (norm.is_finite() && norm > 0.0).then(|| m * (1.0 / norm))
}

/// Least-squares `F` from ≥ 8 correspondences (already normalised), rank 2 enforced.
pub fn eight_point(xi: &[DVec2], xj: &[DVec2]) -> Option<DMat3> {
    if xi.len() < 8 || xi.len() != xj.len() {
        return None;
    }
    let rows: Vec<[f64; 9]> = xi.iter().zip(xj).map(|(&a, &b)| epipolar_row(a, b)).collect();
    let v = right_singular_vectors_9(&rows)?;
    let (u, s, v) = svd3(mat3_from_column(&v, 8))?;
    unit_norm(u * DMat3::from_diagonal(DVec3::new(s.x, s.y, 0.0)) * v.transpose())
}

/// Normalised 8-point on pixel coordinates: normalises, fits, and maps `F` back to pixels.
pub fn eight_point_pixels(xi: &[DVec2], xj: &[DVec2]) -> Option<DMat3> {
    let normalization = Normalization::of_points(xi.iter().chain(xj))?;
    let a: Vec<DVec2> = xi.iter().map(|&p| normalization.apply(p)).collect();
    let b: Vec<DVec2> = xj.iter().map(|&p| normalization.apply(p)).collect();
    let t = normalization.matrix();
    unit_norm(t.transpose() * eight_point(&a, &b)? * t)
}

/// Correspondences for [`super::ransac::lo_ransac`], held in one normalised frame shared by both
/// photos: residuals are squared Sampson distances in that frame, so the caller's pixel threshold
/// must be multiplied by [`Normalization::scale`] (see [`Self::new`]).
pub struct FundamentalEstimator {
    pub normalization: Normalization,
    xi: Vec<DVec2>,
    xj: Vec<DVec2>,
}

impl FundamentalEstimator {
    /// `None` when all points coincide.
    pub fn new(xi_pixels: &[DVec2], xj_pixels: &[DVec2]) -> Option<Self> {
        let (normalization, xi, xj) = Normalization::of_pairs(xi_pixels, xj_pixels)?;
        Some(Self { normalization, xi, xj })
    }

    /// A model of this estimator as a fundamental matrix in pixel coordinates.
    pub fn to_pixels(&self, f: &DMat3) -> Option<DMat3> {
        let t = self.normalization.matrix();
        unit_norm(t.transpose() * *f * t)
    }
}

impl Estimator for FundamentalEstimator {
    type Model = DMat3;
    const SAMPLE_SIZE: usize = 7;

    fn num_data(&self) -> usize {
        self.xi.len().min(self.xj.len())
    }

    fn fit_minimal(&self, sample: &[usize]) -> Vec<DMat3> {
        let a: Vec<DVec2> = sample.iter().map(|&k| self.xi[k]).collect();
        let b: Vec<DVec2> = sample.iter().map(|&k| self.xj[k]).collect();
        seven_point(&a, &b)
    }

    fn fit_nonminimal(&self, inliers: &[usize]) -> Option<DMat3> {
        let a: Vec<DVec2> = inliers.iter().map(|&k| self.xi[k]).collect();
        let b: Vec<DVec2> = inliers.iter().map(|&k| self.xj[k]).collect();
        eight_point(&a, &b)
    }

    fn residual_sq(&self, model: &DMat3, index: usize) -> f64 {
        sampson_error_sq(model, self.xi[index], self.xj[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::rng::Pcg32;

    /// Pixel correspondences of a random scene seen by two cameras with different intrinsics.
    fn pixel_scene(rng: &mut Pcg32, n: usize) -> (Vec<DVec2>, Vec<DVec2>) {
        let (_, _, xi, xj) = super::super::essential::tests::random_scene(rng, n);
        let ki = |p: DVec2| DVec2::new(800.0 * p.x + 640.0, 800.0 * p.y + 480.0);
        let kj = |p: DVec2| DVec2::new(1000.0 * p.x + 600.0, 1000.0 * p.y + 500.0);
        (xi.into_iter().map(ki).collect(), xj.into_iter().map(kj).collect())
    }

    fn max_epipolar_error(f: &DMat3, xi: &[DVec2], xj: &[DVec2]) -> f64 {
        xi.iter().zip(xj).map(|(&a, &b)| sampson_error_sq(f, a, b).sqrt()).fold(0.0, f64::max)
    }

    #[test]
    fn seven_point_is_exact_and_rank_two() {
        let mut rng = Pcg32::new(21);
        for _ in 0..20 {
            let (xi, xj) = pixel_scene(&mut rng, 30);
            let estimator = FundamentalEstimator::new(&xi, &xj).unwrap();
            let solutions = estimator.fit_minimal(&[0, 1, 2, 3, 4, 5, 6]);
            assert!(!solutions.is_empty());
            // One solution explains every point of the scene (not only the sample).
            let best = solutions
                .iter()
                .map(|f| max_epipolar_error(&estimator.to_pixels(f).unwrap(), &xi, &xj))
                .fold(f64::INFINITY, f64::min);
            assert!(best < 1e-6, "{best} px");
            for f in &solutions {
                assert!(f.determinant().abs() < 1e-10);
            }
        }
    }

    #[test]
    fn eight_point_is_exact_without_noise() {
        let mut rng = Pcg32::new(4);
        let (xi, xj) = pixel_scene(&mut rng, 40);
        let f = eight_point_pixels(&xi, &xj).unwrap();
        assert!(max_epipolar_error(&f, &xi, &xj) < 1e-6);
    }
}
