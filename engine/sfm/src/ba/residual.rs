//! The reprojection residual of one observation and its analytic Jacobians.
//!
//! Residual (pixels): `project(camera_from_world · X) − measured` with the [`RadialCamera`]
//! model (OpenCV axes). Parameters and their increments:
//! - pose: a 6-vector `(ω, δt)` **left-multiplied in the camera frame**:
//!   `camera_from_world ← (exp([ω]×), δt) ∘ camera_from_world`, i.e. `R ← exp([ω]×) R`,
//!   `t ← exp([ω]×) t + δt`, so `∂X_cam/∂ω = −[X_cam]×` and `∂X_cam/∂δt = I`;
//! - point: `X ← X + δX` (world frame);
//! - intrinsics: `(f, cx, cy, k1, k2) ← (f, cx, cy, k1, k2) + δ`.

use glam::{DMat3, DQuat, DVec2, DVec3};
use nalgebra::{Matrix2x3, Matrix3, SMatrix, Vector2};

use kiln_vision::model::{RadialCamera, RigidCv};

/// Number of intrinsic parameters of a [`RadialCamera`]: f, cx, cy, k1, k2.
pub(super) const INTRINSICS: usize = 5;

/// A point closer to the image plane than this (in scene units, along +Z) counts as behind the
/// camera; the same threshold as [`RadialCamera::project`].
const MIN_DEPTH: f64 = f64::EPSILON;

/// Residual and Jacobians of one observation at the current parameters.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Linearization {
    pub residual: Vector2<f64>,
    /// ∂residual/∂(ω, δt).
    pub d_pose: SMatrix<f64, 2, 6>,
    /// ∂residual/∂(f, cx, cy, k1, k2).
    pub d_intrinsics: SMatrix<f64, 2, INTRINSICS>,
    /// ∂residual/∂X (world).
    pub d_point: Matrix2x3<f64>,
}

/// The residual in pixels, or `None` when the point is behind the camera or the value is not
/// finite.
pub(super) fn residual(
    camera: &RadialCamera,
    camera_from_world: &RigidCv,
    point: DVec3,
    measured: DVec2,
) -> Option<DVec2> {
    let in_camera = camera_from_world.transform_point(point);
    if in_camera.z.is_nan() || in_camera.z <= MIN_DEPTH {
        return None;
    }
    let r = camera.pixel_from_normalized(in_camera.truncate() / in_camera.z) - measured;
    r.is_finite().then_some(r)
}

/// Residual and Jacobians, or `None` where [`residual`] is `None`.
pub(super) fn linearize(
    camera: &RadialCamera,
    camera_from_world: &RigidCv,
    point: DVec3,
    measured: DVec2,
) -> Option<Linearization> {
    let p = camera_from_world.transform_point(point);
    if p.z.is_nan() || p.z <= MIN_DEPTH {
        return None;
    }
    let inv_z = 1.0 / p.z;
    let (x, y) = (p.x * inv_z, p.y * inv_z);
    let r2 = x * x + y * y;
    let d = camera.radial(r2);
    // d(d)/d(r²)
    let d_prime = camera.k1 + 2.0 * camera.k2 * r2;
    let f = camera.focal;
    let residual = Vector2::new(f * x * d + camera.cx - measured.x, f * y * d + camera.cy - measured.y);

    // ∂pixel/∂(x, y), then chained with ∂(x, y)/∂p = [[1/z, 0, −x/z], [0, 1/z, −y/z]].
    let a11 = f * (d + 2.0 * x * x * d_prime);
    let a12 = f * 2.0 * x * y * d_prime;
    let a22 = f * (d + 2.0 * y * y * d_prime);
    let d_camera_point = Matrix2x3::new(
        a11 * inv_z,
        a12 * inv_z,
        -(a11 * x + a12 * y) * inv_z,
        a12 * inv_z,
        a22 * inv_z,
        -(a12 * x + a22 * y) * inv_z,
    );
    let minus_skew = Matrix3::new(0.0, p.z, -p.y, -p.z, 0.0, p.x, p.y, -p.x, 0.0);
    let d_rotation = d_camera_point * minus_skew;
    let mut d_pose = SMatrix::<f64, 2, 6>::zeros();
    d_pose.fixed_view_mut::<2, 3>(0, 0).copy_from(&d_rotation);
    d_pose.fixed_view_mut::<2, 3>(0, 3).copy_from(&d_camera_point);
    let d_point = d_camera_point * to_nalgebra(&camera_from_world.rotation);
    let r4 = r2 * r2;
    #[rustfmt::skip]
    let d_intrinsics = SMatrix::<f64, 2, INTRINSICS>::new(
        x * d, 1.0, 0.0, f * x * r2, f * x * r4,
        y * d, 0.0, 1.0, f * y * r2, f * y * r4,
    );
    let all_finite =
        residual.iter().chain(d_pose.iter()).chain(d_intrinsics.iter()).chain(d_point.iter()).all(|v| v.is_finite());
    all_finite.then_some(Linearization { residual, d_pose, d_intrinsics, d_point })
}

/// Applies a pose increment `(ω, δt)` as documented at the top of this module; the rotation is
/// re-orthonormalised through a unit quaternion.
pub(super) fn apply_pose_increment(camera_from_world: &RigidCv, rotation_vector: DVec3, translation: DVec3) -> RigidCv {
    let increment = DQuat::from_scaled_axis(rotation_vector);
    let rotation = DMat3::from_quat((increment * DQuat::from_mat3(&camera_from_world.rotation)).normalize());
    RigidCv { rotation, translation: increment * camera_from_world.translation + translation }
}

/// Adds `delta` (f, cx, cy, k1, k2) to the parameters whose `enabled` flag is set.
pub(super) fn apply_intrinsics_increment(
    camera: &RadialCamera,
    delta: &[f64; INTRINSICS],
    enabled: &[bool; INTRINSICS],
) -> RadialCamera {
    let mut out = *camera;
    let fields = [&mut out.focal, &mut out.cx, &mut out.cy, &mut out.k1, &mut out.k2];
    for ((field, step), on) in fields.into_iter().zip(delta).zip(enabled) {
        if *on {
            *field += step;
        }
    }
    out
}

fn to_nalgebra(m: &DMat3) -> Matrix3<f64> {
    Matrix3::from_column_slice(&m.to_cols_array())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (RadialCamera, RigidCv, DVec3, DVec2) {
        let camera =
            RadialCamera { k1: -0.08, k2: 0.02, cx: 402.0, cy: 297.0, ..RadialCamera::pinhole(800, 600, 700.0) };
        let rotation = DMat3::from_euler(glam::EulerRot::XYZ, 0.3, -0.4, 0.2);
        let pose = RigidCv { rotation, translation: DVec3::new(0.2, -0.1, 3.0) };
        (camera, pose, DVec3::new(0.4, -0.3, 0.5), DVec2::new(390.0, 310.0))
    }

    /// Central difference of the residual along one parameter, with `perturb(h)` the model.
    fn central(h: f64, eval: impl Fn(f64) -> DVec2) -> DVec2 {
        (eval(h) - eval(-h)) / (2.0 * h)
    }

    fn assert_close(analytic: (f64, f64), numeric: DVec2, what: &str) {
        let scale = 1.0 + numeric.abs().max_element();
        assert!(
            (analytic.0 - numeric.x).abs() < 1e-6 * scale && (analytic.1 - numeric.y).abs() < 1e-6 * scale,
            "{what}: analytic {analytic:?} numeric {numeric}"
        );
    }

    #[test]
    fn residual_matches_camera_projection() {
        let (camera, pose, point, measured) = setup();
        let lin = linearize(&camera, &pose, point, measured).expect("in front");
        let expected = camera.project(pose.transform_point(point)).expect("in front") - measured;
        assert!((lin.residual.x - expected.x).abs() < 1e-12 && (lin.residual.y - expected.y).abs() < 1e-12);
        assert!(residual(&camera, &pose, point, measured).is_some_and(|r| r.distance(expected) < 1e-12));
    }

    #[test]
    fn pose_jacobian_matches_finite_differences() {
        let (camera, pose, point, measured) = setup();
        let lin = linearize(&camera, &pose, point, measured).expect("in front");
        for k in 0..6 {
            let numeric = central(1e-6, |h| {
                let mut v = [0.0; 6];
                v[k] = h;
                let moved = apply_pose_increment(&pose, DVec3::new(v[0], v[1], v[2]), DVec3::new(v[3], v[4], v[5]));
                residual(&camera, &moved, point, measured).expect("in front")
            });
            assert_close((lin.d_pose[(0, k)], lin.d_pose[(1, k)]), numeric, &format!("pose {k}"));
        }
    }

    #[test]
    fn point_jacobian_matches_finite_differences() {
        let (camera, pose, point, measured) = setup();
        let lin = linearize(&camera, &pose, point, measured).expect("in front");
        for k in 0..3 {
            let numeric = central(1e-6, |h| {
                let mut moved = point;
                moved[k] += h;
                residual(&camera, &pose, moved, measured).expect("in front")
            });
            assert_close((lin.d_point[(0, k)], lin.d_point[(1, k)]), numeric, &format!("point {k}"));
        }
    }

    #[test]
    fn intrinsics_jacobian_matches_finite_differences() {
        let (camera, pose, point, measured) = setup();
        let lin = linearize(&camera, &pose, point, measured).expect("in front");
        let steps = [1e-4, 1e-4, 1e-4, 1e-7, 1e-7];
        for k in 0..INTRINSICS {
            let numeric = central(steps[k], |h| {
                let mut delta = [0.0; INTRINSICS];
                delta[k] = h;
                let moved = apply_intrinsics_increment(&camera, &delta, &[true; INTRINSICS]);
                residual(&moved, &pose, point, measured).expect("in front")
            });
            assert_close((lin.d_intrinsics[(0, k)], lin.d_intrinsics[(1, k)]), numeric, &format!("intrinsic {k}"));
        }
    }

    #[test]
    fn disabled_intrinsics_are_not_touched() {
        let (camera, ..) = setup();
        let moved = apply_intrinsics_increment(&camera, &[1.0; INTRINSICS], &[true, false, false, false, true]);
        assert_eq!(
            (moved.focal, moved.cx, moved.cy, moved.k1, moved.k2),
            (701.0, camera.cx, camera.cy, camera.k1, camera.k2 + 1.0)
        );
    }

    #[test]
    fn behind_the_camera_gives_none() {
        let (camera, pose, _, measured) = setup();
        let behind = pose.inverse().transform_point(DVec3::new(0.1, 0.1, -1.0));
        assert!(linearize(&camera, &pose, behind, measured).is_none());
        assert!(residual(&camera, &pose, behind, measured).is_none());
        let on_plane = pose.inverse().transform_point(DVec3::new(0.1, 0.1, 0.0));
        assert!(linearize(&camera, &pose, on_plane, measured).is_none());
    }

    #[test]
    fn pose_increment_keeps_rotation_orthonormal() {
        let (_, pose, ..) = setup();
        let moved = apply_pose_increment(&pose, DVec3::new(0.1, -0.2, 0.05), DVec3::new(1.0, 2.0, 3.0));
        let should_be_identity = moved.rotation * moved.rotation.transpose();
        assert!(should_be_identity.abs_diff_eq(DMat3::IDENTITY, 1e-12));
        let expected =
            DMat3::from_axis_angle(DVec3::new(0.1, -0.2, 0.05).normalize(), DVec3::new(0.1, -0.2, 0.05).length())
                * pose.rotation;
        assert!(moved.rotation.abs_diff_eq(expected, 1e-12));
    }
}
