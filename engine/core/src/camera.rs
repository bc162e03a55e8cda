//! Cameras: pinhole intrinsics, lens distortion and poses whose axis convention is part of the type.
//!
//! Two camera-axis conventions meet in this field and are the first source of bugs:
//! - **OpenCV / COLMAP**: +X right, +Y down, camera looks along **+Z**.
//! - **OpenGL / Blender / nerfstudio**: +X right, +Y up, camera looks along **−Z**.
//!
//! A pose is a rigid transform named by its spaces (`world_from_camera * point_in_camera`).
//! [`WorldFromCameraCv`] and [`WorldFromCameraGl`] are distinct types; the only way between them is
//! [`WorldFromCameraGl::to_cv`] / [`WorldFromCameraCv::to_gl`]. Everything inside the engine
//! (rendering, training, SfM) works in the OpenCV convention.

use glam::{Mat3, Mat4, Vec3};

use crate::camera_model::RigidCv;

/// Splats closer than this (in camera-frame units along +Z) are culled: their projection is
/// numerically meaningless and usually a splat the camera sits inside.
pub const NEAR_PLANE: f32 = 0.01;

/// Pinhole intrinsics in pixels.
///
/// The principal point is measured from the top-left corner of the top-left pixel, so pixel
/// `(i, j)` covers `[i, i+1) × [j, j+1)` and its centre is `(i + 0.5, j + 0.5)` (COLMAP's and
/// nerfstudio's convention).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Intrinsics {
    pub fx: f32,
    pub fy: f32,
    pub cx: f32,
    pub cy: f32,
    pub width: u32,
    pub height: u32,
}

impl Intrinsics {
    /// The same camera sampled on an image resized to `width × height`.
    pub fn resized(&self, width: u32, height: u32) -> Self {
        let sx = width as f32 / self.width as f32;
        let sy = height as f32 / self.height as f32;
        Self { fx: self.fx * sx, fy: self.fy * sy, cx: self.cx * sx, cy: self.cy * sy, width, height }
    }

    /// The ray through the centre of pixel `(x, y)` in the OpenCV camera frame, scaled to z = 1
    /// (so `ray * depth` is the point at camera-frame depth `depth`).
    pub fn ray_through_pixel_centre(&self, x: u32, y: u32) -> Vec3 {
        Vec3::new((x as f32 + 0.5 - self.cx) / self.fx, (y as f32 + 0.5 - self.cy) / self.fy, 1.0)
    }

    /// Pixel coordinates of a point in the OpenCV camera frame (no distortion).
    pub fn project(&self, point_in_camera: Vec3) -> [f32; 2] {
        [
            self.fx * point_in_camera.x / point_in_camera.z + self.cx,
            self.fy * point_in_camera.y / point_in_camera.z + self.cy,
        ]
    }
}

/// OpenCV's radial-tangential ("OPENCV" / "FULL_OPENCV" prefix) distortion, applied to normalised
/// image coordinates. COLMAP's SIMPLE_RADIAL and RADIAL models are the special cases with
/// `k2 = p1 = p2 = 0` and `p1 = p2 = 0`.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Distortion {
    pub k1: f32,
    pub k2: f32,
    pub p1: f32,
    pub p2: f32,
    pub k3: f32,
}

impl Distortion {
    pub fn is_identity(&self) -> bool {
        *self == Self::default()
    }

    /// Distorts normalised coordinates `(x, y) = (X/Z, Y/Z)`.
    pub fn distort(&self, x: f32, y: f32) -> [f32; 2] {
        let r2 = x * x + y * y;
        let radial = 1.0 + r2 * (self.k1 + r2 * (self.k2 + r2 * self.k3));
        let xd = x * radial + 2.0 * self.p1 * x * y + self.p2 * (r2 + 2.0 * x * x);
        let yd = y * radial + self.p1 * (r2 + 2.0 * y * y) + 2.0 * self.p2 * x * y;
        [xd, yd]
    }
}

/// Rigid transform taking points from an OpenCV-convention camera frame (+X right, +Y down,
/// +Z forward) to world: `point_in_world = rotation * point_in_camera + translation`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorldFromCameraCv {
    pub rotation: Mat3,
    pub translation: Vec3,
}

/// Rigid transform taking points from an OpenGL-convention camera frame (+X right, +Y up,
/// −Z forward) to world. This is nerfstudio's and Blender's `transform_matrix`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorldFromCameraGl {
    pub rotation: Mat3,
    pub translation: Vec3,
}

/// Rigid transform from world to an OpenCV-convention camera frame (COLMAP's `images.txt` pose).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CameraFromWorldCv {
    pub rotation: Mat3,
    pub translation: Vec3,
}

/// `diag(1, −1, −1)`: flips Y and Z, mapping OpenGL camera axes to OpenCV ones and back.
const FLIP_YZ: Mat3 = Mat3::from_cols(Vec3::X, Vec3::NEG_Y, Vec3::NEG_Z);

impl WorldFromCameraGl {
    pub fn to_cv(&self) -> WorldFromCameraCv {
        WorldFromCameraCv { rotation: self.rotation * FLIP_YZ, translation: self.translation }
    }

    /// As a 4×4 matrix (column-major in memory, as glam stores it).
    pub fn to_mat4(&self) -> Mat4 {
        affine(self.rotation, self.translation)
    }
}

impl WorldFromCameraCv {
    /// A camera at `eye` looking at `target` (its +Z), turned about that axis so that world `up`
    /// points to the top of the image (OpenCV −Y). `up` need not be perpendicular to the view, but
    /// must not be parallel to it (the pose is then NaN). Computed in `f64` by
    /// [`RigidCv::look_at`], the one place that builds a look-at pose.
    pub fn look_at(eye: Vec3, target: Vec3, up: Vec3) -> Self {
        let camera_from_world = RigidCv::look_at(eye.as_dvec3(), target.as_dvec3(), up.as_dvec3());
        Self { rotation: camera_from_world.rotation.transpose().as_mat3(), translation: eye }
    }

    pub fn to_gl(&self) -> WorldFromCameraGl {
        WorldFromCameraGl { rotation: self.rotation * FLIP_YZ, translation: self.translation }
    }

    pub fn inverse(&self) -> CameraFromWorldCv {
        let rotation = self.rotation.transpose();
        CameraFromWorldCv { rotation, translation: -(rotation * self.translation) }
    }

    /// Camera centre in world coordinates.
    pub fn center(&self) -> Vec3 {
        self.translation
    }

    pub fn transform_point(&self, point_in_camera: Vec3) -> Vec3 {
        self.rotation * point_in_camera + self.translation
    }

    /// Viewing direction (+Z of the camera) in world coordinates.
    pub fn forward(&self) -> Vec3 {
        self.rotation.z_axis
    }

    pub fn to_mat4(&self) -> Mat4 {
        affine(self.rotation, self.translation)
    }
}

impl CameraFromWorldCv {
    /// The `f32` pose of pose estimation's `f64` one.
    pub fn from_rigid(camera_from_world: &RigidCv) -> Self {
        Self { rotation: camera_from_world.rotation.as_mat3(), translation: camera_from_world.translation.as_vec3() }
    }

    pub fn inverse(&self) -> WorldFromCameraCv {
        let rotation = self.rotation.transpose();
        WorldFromCameraCv { rotation, translation: -(rotation * self.translation) }
    }

    pub fn transform_point(&self, point_in_world: Vec3) -> Vec3 {
        self.rotation * point_in_world + self.translation
    }
}

fn affine(rotation: Mat3, translation: Vec3) -> Mat4 {
    Mat4::from_cols(
        rotation.x_axis.extend(0.0),
        rotation.y_axis.extend(0.0),
        rotation.z_axis.extend(0.0),
        translation.extend(1.0),
    )
}

/// A posed pinhole camera, as the renderer and trainer see it: undistorted, OpenCV convention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Camera {
    pub intrinsics: Intrinsics,
    pub world_from_camera: WorldFromCameraCv,
}

impl Camera {
    pub fn camera_from_world(&self) -> CameraFromWorldCv {
        self.world_from_camera.inverse()
    }

    pub fn center(&self) -> Vec3 {
        self.world_from_camera.center()
    }

    pub fn width(&self) -> u32 {
        self.intrinsics.width
    }

    pub fn height(&self) -> u32 {
        self.intrinsics.height
    }

    /// The same camera on an image resized to `width × height`.
    pub fn resized(&self, width: u32, height: u32) -> Self {
        Self { intrinsics: self.intrinsics.resized(width, height), ..*self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gl_and_cv_agree_on_what_is_in_front() {
        // A camera at the origin looking down world −Z in OpenGL terms (identity GL pose).
        let gl = WorldFromCameraGl { rotation: Mat3::IDENTITY, translation: Vec3::ZERO };
        let cv = gl.to_cv();
        let point_in_world = Vec3::new(0.1, 0.2, -2.0);
        let point_in_camera = cv.inverse().transform_point(point_in_world);
        assert!(point_in_camera.z > 0.0, "in front of an OpenCV camera means +Z");
        // World +Y is up for the GL camera, so it must be image-up (negative v) for OpenCV.
        assert!(point_in_camera.y < 0.0);
        let round_trip = cv.to_gl();
        assert_eq!(round_trip, gl);
    }

    #[test]
    fn look_at_puts_the_target_ahead_on_the_image_centre_and_up_at_the_top() {
        let eye = Vec3::new(3.0, -2.0, 1.5);
        let target = Vec3::new(0.5, 0.25, 0.0);
        let camera_from_world = WorldFromCameraCv::look_at(eye, target, Vec3::Z).inverse();
        let ahead = camera_from_world.transform_point(target);
        assert!(ahead.z > 0.0 && ahead.x.abs() < 1e-5 && ahead.y.abs() < 1e-5, "{ahead}");
        let above = camera_from_world.transform_point(target + Vec3::Z);
        assert!(above.y < 0.0 && above.x.abs() < 1e-5, "world up is image up (OpenCV −Y): {above}");
        let rotation = camera_from_world.rotation;
        assert!((rotation * rotation.transpose()).abs_diff_eq(Mat3::IDENTITY, 1e-6));
        assert!((rotation.determinant() - 1.0).abs() < 1e-6, "a rotation, not a reflection");
        assert!(camera_from_world.inverse().center().abs_diff_eq(eye, 1e-6));
    }

    #[test]
    fn inverse_round_trips() {
        let rotation = Mat3::from_quat(glam::Quat::from_euler(glam::EulerRot::XYZ, 0.3, -0.7, 1.1));
        let pose = WorldFromCameraCv { rotation, translation: Vec3::new(1.0, -2.0, 0.5) };
        let p = Vec3::new(0.3, 0.4, 2.0);
        let back = pose.inverse().inverse();
        assert!((back.to_mat4().transform_point3(p) - pose.to_mat4().transform_point3(p)).length() < 1e-5);
        assert!((pose.center() - pose.to_mat4().transform_point3(Vec3::ZERO)).length() < 1e-6);
    }
}
