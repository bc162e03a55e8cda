//! Triangulation of 3D points from two or more posed views: linear DLT on normalised image
//! coordinates, Gauss–Newton refinement of the reprojection error, and the checks a new point
//! must pass (positive depth in every view, reprojection error, triangulation angle).
//!
//! Poses are `camera_from_world` in the OpenCV convention; observations are normalised,
//! undistorted coordinates `(X/Z, Y/Z)` ([`crate::model::RadialCamera::normalize`]).

use glam::{DMat3, DVec2, DVec3};
use nalgebra::{DMatrix, Matrix3, Vector3};

use crate::model::RigidCv;

/// One sighting of the point to triangulate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct View {
    pub camera_from_world: RigidCv,
    /// Normalised undistorted coordinates of the observation.
    pub normalized: DVec2,
    /// Focal length in pixels, to express errors in pixels (distortion's slope ignored).
    pub focal: f64,
}

impl View {
    /// Depth of `point_in_world` along this camera's optical axis.
    pub fn depth(&self, point_in_world: DVec3) -> f64 {
        self.camera_from_world.transform_point(point_in_world).z
    }

    /// Reprojection error in pixels, or `None` when the point is not in front of the camera.
    pub fn error_px(&self, point_in_world: DVec3) -> Option<f64> {
        let p = self.camera_from_world.transform_point(point_in_world);
        (p.z > f64::EPSILON).then(|| (p.truncate() / p.z).distance(self.normalized) * self.focal)
    }
}

/// What a triangulated point must satisfy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Checks {
    /// Largest reprojection error in any kept view (pixels).
    pub max_error_px: f64,
    /// Smallest acceptable largest angle between two kept viewing rays (radians).
    pub min_angle_rad: f64,
}

/// Gauss–Newton steps in [`refine`]; the DLT start is within a fraction of a pixel, so the
/// iteration converges in 2–3 steps and 5 leave margin.
const REFINE_ITERATIONS: usize = 5;

/// Linear (DLT) triangulation from two or more views; `None` when degenerate (fewer than two
/// views, parallel rays, point at infinity).
pub fn triangulate_dlt(views: &[View]) -> Option<DVec3> {
    if views.len() < 2 {
        return None;
    }
    let mut a = DMatrix::<f64>::zeros(2 * views.len(), 4);
    for (row, view) in views.iter().enumerate() {
        let r = view.camera_from_world.rotation;
        let t = view.camera_from_world.translation;
        // Rows of the 3×4 projection [R | t].
        let p = |k: usize| [r.x_axis[k], r.y_axis[k], r.z_axis[k], t[k]];
        let (p0, p1, p2) = (p(0), p(1), p(2));
        for c in 0..4 {
            a[(2 * row, c)] = view.normalized.x * p2[c] - p0[c];
            a[(2 * row + 1, c)] = view.normalized.y * p2[c] - p1[c];
        }
    }
    let svd = a.svd(false, true);
    let v_t = svd.v_t?;
    let smallest = svd.singular_values.imin();
    let h = v_t.row(smallest);
    if h[3].abs() < 1e-12 * (h[0].abs() + h[1].abs() + h[2].abs()) {
        return None;
    }
    let point = DVec3::new(h[0] / h[3], h[1] / h[3], h[2] / h[3]);
    point.is_finite().then_some(point)
}

/// Gauss–Newton refinement of the summed squared reprojection error in the normalised plane.
/// Returns the start unchanged when a step fails (a view behind, a singular system).
pub fn refine(views: &[View], start: DVec3) -> DVec3 {
    let mut point = start;
    for _ in 0..REFINE_ITERATIONS {
        let mut jtj = Matrix3::<f64>::zeros();
        let mut jtr = Vector3::<f64>::zeros();
        for view in views {
            let r = view.camera_from_world.rotation;
            let p = view.camera_from_world.transform_point(point);
            if p.z <= f64::EPSILON {
                return point;
            }
            let residual = p.truncate() / p.z - view.normalized;
            // d(x/z, y/z)/dp, then chain with dp/dX = R.
            let inv_z = 1.0 / p.z;
            let dx = DVec3::new(inv_z, 0.0, -p.x * inv_z * inv_z);
            let dy = DVec3::new(0.0, inv_z, -p.y * inv_z * inv_z);
            let rt = r.transpose();
            let (jx, jy) = (rt * dx, rt * dy);
            for (j, e) in [(jx, residual.x), (jy, residual.y)] {
                let j = Vector3::new(j.x, j.y, j.z);
                jtj += j * j.transpose();
                jtr += j * e;
            }
        }
        let Some(step) = jtj.lu().solve(&jtr) else { return point };
        let next = point - DVec3::new(step.x, step.y, step.z);
        if !next.is_finite() {
            return point;
        }
        point = next;
        if step.norm() < 1e-12 * (1.0 + point.length()) {
            break;
        }
    }
    point
}

/// Angle in radians between the rays from two camera centres to a point.
pub fn triangulation_angle(center_a: DVec3, center_b: DVec3, point: DVec3) -> f64 {
    let (a, b) = (center_a - point, center_b - point);
    let denominator = a.length() * b.length();
    if denominator <= f64::MIN_POSITIVE {
        return 0.0;
    }
    (a.dot(b) / denominator).clamp(-1.0, 1.0).acos()
}

/// The largest angle between any two of the views' rays to `point` (radians).
pub fn max_triangulation_angle(views: &[View], point: DVec3) -> f64 {
    let centers: Vec<DVec3> = views.iter().map(|v| v.camera_from_world.center()).collect();
    let mut best = 0.0_f64;
    for (k, &a) in centers.iter().enumerate() {
        for &b in &centers[k + 1..] {
            best = best.max(triangulation_angle(a, b, point));
        }
    }
    best
}

/// DLT followed by refinement, then the checks on every view; `None` if any view fails.
pub fn triangulate_checked(views: &[View], checks: &Checks) -> Option<DVec3> {
    let point = refine(views, triangulate_dlt(views)?);
    let all_good = views.iter().all(|v| v.error_px(point).is_some_and(|e| e <= checks.max_error_px));
    (all_good && max_triangulation_angle(views, point) >= checks.min_angle_rad).then_some(point)
}

/// Robust multi-view triangulation: triangulates from all views, then drops the view with the
/// largest error (a view behind the camera counts as infinite) until every kept view passes the
/// checks. Returns the point and which views were kept (at least two), or `None`.
pub fn triangulate_robust(views: &[View], checks: &Checks) -> Option<(DVec3, Vec<bool>)> {
    let mut kept: Vec<bool> = vec![true; views.len()];
    loop {
        let active: Vec<View> = views.iter().zip(&kept).filter(|(_, k)| **k).map(|(v, _)| *v).collect();
        if active.len() < 2 {
            return None;
        }
        let point = refine(&active, triangulate_dlt(&active)?);
        let worst = views
            .iter()
            .enumerate()
            .filter(|(k, _)| kept[*k])
            .map(|(k, v)| (k, v.error_px(point).unwrap_or(f64::INFINITY)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match worst {
            Some((k, error)) if error > checks.max_error_px => kept[k] = false,
            _ => {
                return (max_triangulation_angle(&active, point) >= checks.min_angle_rad).then_some((point, kept));
            }
        }
    }
}

/// A rotation matrix from axis·angle (Rodrigues), used by tests and pose updates.
pub fn rotation_from_axis_angle(axis_angle: DVec3) -> DMat3 {
    let angle = axis_angle.length();
    if angle < 1e-15 {
        return DMat3::IDENTITY;
    }
    DMat3::from_axis_angle(axis_angle / angle, angle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views_of(point: DVec3, centers: &[DVec3]) -> Vec<View> {
        centers
            .iter()
            .map(|&c| {
                let pose = RigidCv::look_at(c, DVec3::ZERO, DVec3::Y);
                let p = pose.transform_point(point);
                View { camera_from_world: pose, normalized: p.truncate() / p.z, focal: 1000.0 }
            })
            .collect()
    }

    #[test]
    fn exact_on_noise_free_views() {
        let centers = [
            DVec3::new(4.0, 0.3, 0.0),
            DVec3::new(0.0, -0.2, 5.0),
            DVec3::new(-3.0, 1.0, 3.0),
            DVec3::new(2.0, 2.0, -4.0),
        ];
        for point in [DVec3::new(0.3, -0.4, 0.2), DVec3::new(-0.7, 0.1, 0.5), DVec3::ZERO] {
            let views = views_of(point, &centers);
            let two = triangulate_dlt(&views[..2]).unwrap();
            let many = triangulate_dlt(&views).unwrap();
            assert!(two.distance(point) < 1e-9, "{two} vs {point}");
            assert!(many.distance(point) < 1e-9, "{many} vs {point}");
            assert!(refine(&views, many).distance(point) < 1e-9);
        }
    }

    #[test]
    fn refinement_reduces_error_from_a_perturbed_start() {
        let point = DVec3::new(0.2, 0.1, -0.3);
        let views = views_of(point, &[DVec3::new(4.0, 0.0, 0.0), DVec3::new(0.0, 0.0, 5.0), DVec3::new(3.0, 1.0, 3.0)]);
        let refined = refine(&views, point + DVec3::new(0.05, -0.03, 0.04));
        assert!(refined.distance(point) < 1e-9, "{refined}");
    }

    #[test]
    fn checks_reject_outliers_small_angles_and_points_behind() {
        let point = DVec3::new(0.2, 0.1, -0.3);
        let checks = Checks { max_error_px: 2.0, min_angle_rad: 2f64.to_radians() };
        let mut views =
            views_of(point, &[DVec3::new(4.0, 0.0, 0.0), DVec3::new(0.0, 0.0, 5.0), DVec3::new(3.0, 1.0, 3.0)]);
        assert!(triangulate_checked(&views, &checks).is_some());
        // A gross outlier in one of three views: the checked version fails, the robust one drops it.
        views[2].normalized += DVec2::new(0.05, -0.02);
        assert!(triangulate_checked(&views, &checks).is_none());
        let (robust, kept) = triangulate_robust(&views, &checks).unwrap();
        assert_eq!(kept, vec![true, true, false]);
        assert!(robust.distance(point) < 1e-9);
        // Nearly the same centre: the angle is too small.
        let narrow = views_of(point, &[DVec3::new(4.0, 0.0, 0.0), DVec3::new(4.0, 0.05, 0.0)]);
        assert!(triangulate_checked(&narrow, &checks).is_none());
        // Angle between rays from (1,0,0) and (0,1,0) to the origin is 90°.
        assert!((triangulation_angle(DVec3::X, DVec3::Y, DVec3::ZERO) - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
    }
}
