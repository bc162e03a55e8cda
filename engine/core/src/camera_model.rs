//! The `f64` camera models of pose estimation: COLMAP's `RADIAL` intrinsics ([`RadialCamera`]) and
//! a rigid `camera_from_world` pose in the OpenCV convention ([`RigidCv`]).

use glam::{DMat3, DVec2, DVec3};

/// COLMAP's `RADIAL` camera: one focal length, a principal point and two radial coefficients.
///
/// Projection of a point in the OpenCV camera frame: `(x, y) = (X/Z, Y/Z)`,
/// `d = 1 + k1 r² + k2 r⁴` with `r² = x² + y²`, pixel `= (f x d + cx, f y d + cy)`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RadialCamera {
    pub width: u32,
    pub height: u32,
    pub focal: f64,
    pub cx: f64,
    pub cy: f64,
    pub k1: f64,
    pub k2: f64,
}

/// Fixed-point iterations that invert the radial distortion in [`RadialCamera::normalize`].
/// Converges to ~1e-12 within 20 steps for |k1 r²| < 0.3; more is wasted, fewer is inexact.
const UNDISTORT_ITERATIONS: usize = 20;

impl RadialCamera {
    /// A pinhole prior: principal point at the image centre, no distortion.
    pub fn pinhole(width: u32, height: u32, focal: f64) -> Self {
        Self { width, height, focal, cx: f64::from(width) / 2.0, cy: f64::from(height) / 2.0, k1: 0.0, k2: 0.0 }
    }

    /// Radial factor `d(r²)`.
    pub fn radial(&self, r2: f64) -> f64 {
        1.0 + r2 * (self.k1 + r2 * self.k2)
    }

    /// Pixel of a point in the camera frame, or `None` behind (or on) the image plane.
    pub fn project(&self, point_in_camera: DVec3) -> Option<DVec2> {
        if point_in_camera.z <= f64::EPSILON {
            return None;
        }
        let xy = point_in_camera.truncate() / point_in_camera.z;
        Some(self.pixel_from_normalized(xy))
    }

    /// Pixel of normalised (undistorted) coordinates `(X/Z, Y/Z)`.
    pub fn pixel_from_normalized(&self, xy: DVec2) -> DVec2 {
        let d = self.radial(xy.length_squared());
        DVec2::new(self.focal * xy.x * d + self.cx, self.focal * xy.y * d + self.cy)
    }

    /// Normalised undistorted coordinates `(X/Z, Y/Z)` of a pixel (inverse of
    /// [`Self::pixel_from_normalized`]).
    pub fn normalize(&self, pixel: DVec2) -> DVec2 {
        let distorted = DVec2::new((pixel.x - self.cx) / self.focal, (pixel.y - self.cy) / self.focal);
        if self.k1 == 0.0 && self.k2 == 0.0 {
            return distorted;
        }
        let mut xy = distorted;
        for _ in 0..UNDISTORT_ITERATIONS {
            xy = distorted / self.radial(xy.length_squared());
        }
        xy
    }

    /// Unit bearing vector (OpenCV camera frame) of a pixel.
    pub fn bearing(&self, pixel: DVec2) -> DVec3 {
        self.normalize(pixel).extend(1.0).normalize()
    }
}

/// A rigid transform between the world and an OpenCV-convention camera frame, in `f64`.
/// As a field it is named by its spaces: `camera_from_world.transform_point(point_in_world)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RigidCv {
    pub rotation: DMat3,
    pub translation: DVec3,
}

impl RigidCv {
    pub const IDENTITY: Self = Self { rotation: DMat3::IDENTITY, translation: DVec3::ZERO };

    /// The `camera_from_world` pose of a camera at `eye` looking at `target` (its +Z), turned about
    /// that axis so that world `up` points to the top of the image (OpenCV −Y). `up` need not be
    /// perpendicular to the view, but must not be parallel to it (the pose is then NaN).
    pub fn look_at(eye: DVec3, target: DVec3, up: DVec3) -> Self {
        let forward = (target - eye).normalize();
        let right = forward.cross(up).normalize();
        let down = forward.cross(right);
        let rotation = DMat3::from_cols(right, down, forward).transpose();
        Self { rotation, translation: -(rotation * eye) }
    }

    pub fn transform_point(&self, point: DVec3) -> DVec3 {
        self.rotation * point + self.translation
    }

    pub fn inverse(&self) -> Self {
        let rotation = self.rotation.transpose();
        Self { rotation, translation: -(rotation * self.translation) }
    }

    /// `a_from_c = a_from_b.then(b_from_c)`… read right to left: `self * other`.
    pub fn compose(&self, other: &Self) -> Self {
        Self {
            rotation: self.rotation * other.rotation,
            translation: self.rotation * other.translation + self.translation,
        }
    }

    /// For a `camera_from_world` transform: the camera centre in world coordinates.
    pub fn center(&self) -> DVec3 {
        -(self.rotation.transpose() * self.translation)
    }
}
