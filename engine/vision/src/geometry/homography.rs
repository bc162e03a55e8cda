//! Homographies `x_j ~ H x_i` between two photos (a planar scene, or any scene under a pure
//! rotation): the normalised DLT from 4 (minimal) or more correspondences, and the symmetric
//! transfer error.

use glam::{DMat3, DVec2};

use crate::geometry::linalg::{Normalization, mat3_from_column, right_singular_vectors_9};
use crate::geometry::ransac::Estimator;

/// A homography with its inverse (both needed by the symmetric transfer error).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Homography {
    pub j_from_i: DMat3,
    pub i_from_j: DMat3,
}

/// Homographies whose determinant is this small (relative to the Frobenius norm cubed) are
/// degenerate: a collinear sample.
const MIN_RELATIVE_DETERMINANT: f64 = 1e-10;

impl Homography {
    pub fn new(j_from_i: DMat3) -> Option<Self> {
        let norm = super::linalg::frobenius(j_from_i);
        let det = j_from_i.determinant();
        if !det.is_finite() || det.abs() <= MIN_RELATIVE_DETERMINANT * norm.powi(3) {
            return None;
        }
        let j_from_i = j_from_i * (1.0 / norm);
        Some(Self { j_from_i, i_from_j: j_from_i.inverse() })
    }

    /// `(|H x_i − x_j|² + |H⁻¹ x_j − x_i|²) / 2`, or infinity when a point maps to infinity.
    pub fn symmetric_transfer_error_sq(&self, xi: DVec2, xj: DVec2) -> f64 {
        let forward = transfer(&self.j_from_i, xi).map(|p| p.distance_squared(xj));
        let backward = transfer(&self.i_from_j, xj).map(|p| p.distance_squared(xi));
        match (forward, backward) {
            (Some(f), Some(b)) => 0.5 * (f + b),
            _ => f64::INFINITY,
        }
    }
}

fn transfer(h: &DMat3, p: DVec2) -> Option<DVec2> {
    let q = *h * p.extend(1.0);
    (q.z.abs() > f64::MIN_POSITIVE).then(|| q.truncate() / q.z)
}

/// DLT on (already normalised) correspondences, at least 4.
pub fn dlt(xi: &[DVec2], xj: &[DVec2]) -> Option<DMat3> {
    if xi.len() < 4 || xi.len() != xj.len() {
        return None;
    }
    let rows: Vec<[f64; 9]> = xi
        .iter()
        .zip(xj)
        .flat_map(|(a, b)| {
            [
                [-a.x, -a.y, -1.0, 0.0, 0.0, 0.0, b.x * a.x, b.x * a.y, b.x],
                [0.0, 0.0, 0.0, -a.x, -a.y, -1.0, b.y * a.x, b.y * a.y, b.y],
            ]
        })
        .collect();
    let v = right_singular_vectors_9(&rows)?;
    Some(mat3_from_column(&v, 8))
}

/// Twice the triangle area (in the normalised frame, where points spread over ~√2) under which
/// three sample points count as collinear.
const COLLINEAR_AREA: f64 = 1e-9;

/// Whether three of the sampled points are (nearly) collinear: the DLT is then underdetermined.
fn has_collinear_triple(sample: &[usize], points: &[DVec2]) -> bool {
    let n = sample.len();
    (0..n).any(|a| {
        (a + 1..n).any(|b| {
            (b + 1..n).any(|c| {
                let (p, q, r) = (points[sample[a]], points[sample[b]], points[sample[c]]);
                (q - p).perp_dot(r - p).abs() < COLLINEAR_AREA
            })
        })
    })
}

/// Correspondences in one normalised frame shared by both photos; residuals are symmetric
/// transfer errors in that frame (multiply pixel thresholds by [`Normalization::scale`]).
pub struct HomographyEstimator {
    pub normalization: Normalization,
    xi: Vec<DVec2>,
    xj: Vec<DVec2>,
}

impl HomographyEstimator {
    pub fn new(xi_pixels: &[DVec2], xj_pixels: &[DVec2]) -> Option<Self> {
        let (normalization, xi, xj) = Normalization::of_pairs(xi_pixels, xj_pixels)?;
        Some(Self { normalization, xi, xj })
    }

    /// A model of this estimator as a homography in pixel coordinates.
    pub fn to_pixels(&self, h: &Homography) -> Option<Homography> {
        let t = self.normalization.matrix();
        Homography::new(t.inverse() * h.j_from_i * t)
    }

    fn fit(&self, indices: &[usize]) -> Option<Homography> {
        let a: Vec<DVec2> = indices.iter().map(|&k| self.xi[k]).collect();
        let b: Vec<DVec2> = indices.iter().map(|&k| self.xj[k]).collect();
        Homography::new(dlt(&a, &b)?)
    }
}

impl Estimator for HomographyEstimator {
    type Model = Homography;
    const SAMPLE_SIZE: usize = 4;

    fn num_data(&self) -> usize {
        self.xi.len().min(self.xj.len())
    }

    fn fit_minimal(&self, sample: &[usize]) -> Vec<Homography> {
        if has_collinear_triple(sample, &self.xi) || has_collinear_triple(sample, &self.xj) {
            return Vec::new();
        }
        self.fit(sample).into_iter().collect()
    }

    fn fit_nonminimal(&self, inliers: &[usize]) -> Option<Homography> {
        self.fit(inliers)
    }

    fn residual_sq(&self, model: &Homography, index: usize) -> f64 {
        model.symmetric_transfer_error_sq(self.xi[index], self.xj[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::rng::Pcg32;

    #[test]
    fn four_points_recover_homography_exactly() {
        let truth = super::super::linalg::mat3_from_row_major(&[1.1, 0.05, 30.0, -0.08, 0.95, 12.0, 1e-4, -2e-4, 1.0]);
        let truth = Homography::new(truth).unwrap();
        let mut rng = Pcg32::new(8);
        let xi: Vec<DVec2> =
            (0..20).map(|_| DVec2::new(f64::from(rng.uniform()) * 1000.0, f64::from(rng.uniform()) * 700.0)).collect();
        let xj: Vec<DVec2> = xi.iter().map(|&p| transfer(&truth.j_from_i, p).unwrap()).collect();
        let estimator = HomographyEstimator::new(&xi, &xj).unwrap();
        let h = estimator.fit_minimal(&[0, 1, 2, 3]);
        let h = estimator.to_pixels(&h[0]).unwrap();
        for (a, b) in xi.iter().zip(&xj) {
            assert!(h.symmetric_transfer_error_sq(*a, *b) < 1e-14);
        }
        // Collinear samples are degenerate.
        let line: Vec<DVec2> =
            (0..4).map(|k| DVec2::new(k as f64, 2.0 * k as f64)).chain([DVec2::ONE, DVec2::new(-1.0, 3.0)]).collect();
        let estimator = HomographyEstimator::new(&line, &line).unwrap();
        assert!(estimator.fit_minimal(&[0, 1, 2, 3]).is_empty());
        assert_eq!(estimator.fit_minimal(&[0, 1, 4, 5]).len(), 1);
    }
}
