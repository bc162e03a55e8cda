//! The window's interactive camera: an orbit around a target point with world +Y up, turned into
//! the engine's OpenCV-convention [`Camera`] (+X right, +Y down, looking along +Z) for any
//! viewport size. Orbit, pan, zoom, fit-to-view and reset act on the scene's bounding box; a
//! snapped input camera can be taken over (`from_camera`) so that dragging after "snap to input
//! camera" continues from that pose.

use glam::{Mat3, Vec3};
use kiln_core::camera::{Camera, Intrinsics, WorldFromCameraCv};

/// Vertical field of view of the free camera: a normal lens (about a 35 mm lens on full frame),
/// wide enough to see a whole object up close without strong perspective distortion.
const FOV_Y_RADIANS: f32 = 50.0 * std::f32::consts::PI / 180.0;

/// Azimuth of the reset view, measured from world +Z towards +X: a three-quarter view shows two
/// sides of an object at once.
const RESET_YAW_RADIANS: f32 = 30.0 * std::f32::consts::PI / 180.0;

/// Elevation of the reset view: slightly from above, as a person looks at an object on a table.
const RESET_PITCH_RADIANS: f32 = 20.0 * std::f32::consts::PI / 180.0;

/// Largest elevation magnitude: the view never reaches the poles, where "up" flips.
const MAX_PITCH_RADIANS: f32 = 89.0 * std::f32::consts::PI / 180.0;

/// Radians of orbit per pixel dragged: a drag across a 1000-pixel viewport turns about 1.6 turns.
const ORBIT_RADIANS_PER_PIXEL: f32 = 0.01;

/// Distance factor per wheel "point" (egui reports about 50 points per notch): one notch moves
/// about 10 % closer or farther.
const ZOOM_PER_POINT: f32 = 0.002;

/// Extra room around the bounding sphere when fitting, so the model does not touch the edges.
const FIT_MARGIN: f32 = 1.1;

/// Radius used when the scene has no extent (an empty scene or a single point), in scene units.
const FALLBACK_RADIUS: f32 = 1.0;

/// Closest the orbit may come to its target, as a fraction of the scene radius; zooming further
/// in would stall (each step is a fraction of the distance).
const MIN_DISTANCE_OF_RADIUS: f32 = 1e-3;

/// An orbit camera: the eye sits at `distance` from `target`, in the direction given by `yaw`
/// (about world +Y, from +Z towards +X) and `pitch` (elevation above the XZ plane).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrbitCamera {
    pub target: Vec3,
    pub yaw: f32,
    pub pitch: f32,
    pub distance: f32,
    /// Radius of the scene's bounding sphere; scales zoom limits.
    scene_radius: f32,
}

impl OrbitCamera {
    /// The reset view of a scene whose axis-aligned bounds are `(min, max)`: three-quarter view
    /// from slightly above, the whole bounding sphere in view.
    pub fn reset(bounds: ([f32; 3], [f32; 3])) -> Self {
        let mut orbit = Self {
            target: Vec3::ZERO,
            yaw: RESET_YAW_RADIANS,
            pitch: RESET_PITCH_RADIANS,
            distance: 1.0,
            scene_radius: FALLBACK_RADIUS,
        };
        orbit.fit(bounds, 1.0);
        orbit
    }

    /// Keeps the viewing direction and frames the bounding sphere of `(min, max)` in a viewport of
    /// `aspect = width / height`.
    pub fn fit(&mut self, bounds: ([f32; 3], [f32; 3]), aspect: f32) {
        let (center, radius) = bounding_sphere(bounds);
        let fov_x = 2.0 * ((FOV_Y_RADIANS / 2.0).tan() * aspect.max(f32::EPSILON)).atan();
        let half_fov = FOV_Y_RADIANS.min(fov_x) / 2.0;
        self.target = center;
        self.scene_radius = radius;
        self.distance = FIT_MARGIN * radius / half_fov.sin();
    }

    /// The orbit that continues from `camera`: same eye and viewing direction (roll is dropped:
    /// the orbit keeps world +Y up), its target where the view ray passes the scene centre.
    pub fn from_camera(camera: &Camera, bounds: ([f32; 3], [f32; 3])) -> Self {
        let (center, radius) = bounding_sphere(bounds);
        let eye = camera.center();
        let forward = camera.world_from_camera.forward().normalize_or(Vec3::NEG_Z);
        let distance = (center - eye).dot(forward).max(radius * MIN_DISTANCE_OF_RADIUS).max(f32::EPSILON);
        let pitch = (-forward.y).clamp(-1.0, 1.0).asin().clamp(-MAX_PITCH_RADIANS, MAX_PITCH_RADIANS);
        let yaw = (-forward.x).atan2(-forward.z);
        Self { target: eye + forward * distance, yaw, pitch, distance, scene_radius: radius }
    }

    /// Unit vector from the target towards the eye.
    fn eye_direction(&self) -> Vec3 {
        let (sin_yaw, cos_yaw) = self.yaw.sin_cos();
        let (sin_pitch, cos_pitch) = self.pitch.sin_cos();
        Vec3::new(cos_pitch * sin_yaw, sin_pitch, cos_pitch * cos_yaw)
    }

    pub fn eye(&self) -> Vec3 {
        self.target + self.distance * self.eye_direction()
    }

    /// Camera axes in world coordinates, OpenCV convention: `(right, down, forward)`.
    fn axes(&self) -> (Vec3, Vec3, Vec3) {
        // The pitch never reaches the poles, so world +Y is never along the view.
        let rotation = WorldFromCameraCv::look_at(self.eye(), self.target, Vec3::Y).rotation;
        (rotation.x_axis, rotation.y_axis, rotation.z_axis)
    }

    /// The engine camera for a `width × height` viewport: square pixels, principal point at the
    /// centre, vertical field of view [`FOV_Y_RADIANS`].
    pub fn camera(&self, width: u32, height: u32) -> Camera {
        let (right, down, forward) = self.axes();
        let focal = height as f32 / 2.0 / (FOV_Y_RADIANS / 2.0).tan();
        Camera {
            intrinsics: Intrinsics {
                fx: focal,
                fy: focal,
                cx: width as f32 / 2.0,
                cy: height as f32 / 2.0,
                width,
                height,
            },
            world_from_camera: WorldFromCameraCv {
                rotation: Mat3::from_cols(right, down, forward),
                translation: self.eye(),
            },
        }
    }

    /// Turns around the target by a drag of `(dx, dy)` pixels: right drags turn the object to the
    /// right, down drags look from higher up.
    pub fn orbit(&mut self, dx: f32, dy: f32) {
        self.yaw -= dx * ORBIT_RADIANS_PER_PIXEL;
        self.pitch = (self.pitch + dy * ORBIT_RADIANS_PER_PIXEL).clamp(-MAX_PITCH_RADIANS, MAX_PITCH_RADIANS);
    }

    /// Moves the target in the view plane so that the point under the cursor follows a drag of
    /// `(dx, dy)` pixels in a viewport `height` pixels tall.
    pub fn pan(&mut self, dx: f32, dy: f32, height: f32) {
        let (right, down, _) = self.axes();
        let world_per_pixel = self.distance * 2.0 * (FOV_Y_RADIANS / 2.0).tan() / height.max(1.0);
        self.target -= (right * dx + down * dy) * world_per_pixel;
    }

    /// Moves closer (positive `scroll`, in egui points) or farther, never through the target.
    pub fn zoom(&mut self, scroll: f32) {
        self.zoom_by((scroll * ZOOM_PER_POINT).exp());
    }

    /// Magnifies by `factor` (a pinch: above 1 moves closer), never through the target.
    pub fn zoom_by(&mut self, factor: f32) {
        if factor.is_finite() && factor > 0.0 {
            let min_distance = self.scene_radius * MIN_DISTANCE_OF_RADIUS;
            self.distance = (self.distance / factor).max(min_distance);
        }
    }
}

/// Centre and radius of the sphere around an axis-aligned box; [`FALLBACK_RADIUS`] around the
/// origin for an empty or inverted box, and at least a small radius for a single point.
fn bounding_sphere((min, max): ([f32; 3], [f32; 3])) -> (Vec3, f32) {
    let (min, max) = (Vec3::from(min), Vec3::from(max));
    if !(min.is_finite() && max.is_finite()) || min.cmpgt(max).any() {
        return (Vec3::ZERO, FALLBACK_RADIUS);
    }
    let radius = (max - min).length() / 2.0;
    let radius = if radius > 0.0 { radius } else { FALLBACK_RADIUS };
    ((min + max) / 2.0, radius)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: ([f32; 3], [f32; 3]) = ([-1.0, 0.0, -0.5], [1.0, 2.0, 0.5]);

    fn project(camera: &Camera, point: Vec3) -> [f32; 2] {
        camera.intrinsics.project(camera.camera_from_world().transform_point(point))
    }

    fn box_corners((min, max): ([f32; 3], [f32; 3])) -> Vec<Vec3> {
        (0..8)
            .map(|i| {
                Vec3::new(
                    if i & 1 == 0 { min[0] } else { max[0] },
                    if i & 2 == 0 { min[1] } else { max[1] },
                    if i & 4 == 0 { min[2] } else { max[2] },
                )
            })
            .collect()
    }

    #[test]
    fn camera_is_a_rotation_and_looks_at_the_target() {
        let orbit = OrbitCamera::reset(BOUNDS);
        let camera = orbit.camera(640, 480);
        let rotation = camera.world_from_camera.rotation;
        assert!((rotation.determinant() - 1.0).abs() < 1e-5);
        assert!((rotation.transpose() * rotation).abs_diff_eq(Mat3::IDENTITY, 1e-5));
        let [u, v] = project(&camera, orbit.target);
        assert!((u - 320.0).abs() < 1e-3 && (v - 240.0).abs() < 1e-3, "target at ({u}, {v})");
        let in_camera = camera.camera_from_world().transform_point(orbit.target);
        assert!((in_camera.z - orbit.distance).abs() < 1e-4, "target depth {}", in_camera.z);
    }

    #[test]
    fn world_up_is_image_up() {
        let orbit = OrbitCamera::reset(BOUNDS);
        let camera = orbit.camera(640, 480);
        let below = project(&camera, orbit.target);
        let above = project(&camera, orbit.target + Vec3::Y * 0.1);
        // OpenCV image rows grow downwards: a point higher in the world has a smaller row.
        assert!(above[1] < below[1], "above {above:?}, below {below:?}");
    }

    #[test]
    fn reset_and_fit_show_the_whole_box() {
        for aspect in [(640, 480), (300, 900), (1920, 200)] {
            let mut orbit = OrbitCamera::reset(BOUNDS);
            orbit.orbit(123.0, -45.0);
            orbit.fit(BOUNDS, aspect.0 as f32 / aspect.1 as f32);
            let camera = orbit.camera(aspect.0, aspect.1);
            for corner in box_corners(BOUNDS) {
                let [u, v] = project(&camera, corner);
                assert!(
                    u > 0.0 && u < aspect.0 as f32 && v > 0.0 && v < aspect.1 as f32,
                    "{corner} at ({u}, {v}) in {aspect:?}"
                );
            }
        }
    }

    #[test]
    fn pan_moves_the_point_under_the_cursor_with_the_drag() {
        let mut orbit = OrbitCamera::reset(BOUNDS);
        let before = orbit.camera(640, 480);
        let point = orbit.target;
        let [u0, v0] = project(&before, point);
        orbit.pan(40.0, -25.0, 480.0);
        let [u1, v1] = project(&orbit.camera(640, 480), point);
        assert!((u1 - u0 - 40.0).abs() < 1e-2 && (v1 - v0 + 25.0).abs() < 1e-2, "moved by ({}, {})", u1 - u0, v1 - v0);
    }

    #[test]
    fn zoom_keeps_the_target_and_changes_distance() {
        let mut orbit = OrbitCamera::reset(BOUNDS);
        let (target, distance) = (orbit.target, orbit.distance);
        orbit.zoom(50.0);
        assert_eq!(orbit.target, target);
        assert!(orbit.distance < distance);
        orbit.zoom(-100.0);
        assert!(orbit.distance > distance);
        orbit.zoom(1e4);
        assert!(orbit.distance >= orbit.scene_radius * MIN_DISTANCE_OF_RADIUS * 0.999 && orbit.distance < distance);
        let distance = orbit.distance * 10.0;
        orbit.distance = distance;
        orbit.zoom_by(2.0);
        assert!((orbit.distance - distance / 2.0).abs() < 1e-6 * distance);
    }

    #[test]
    fn orbit_keeps_distance_and_clamps_pitch() {
        let mut orbit = OrbitCamera::reset(BOUNDS);
        let distance_to_target = (orbit.eye() - orbit.target).length();
        orbit.orbit(300.0, 1e5);
        assert!(((orbit.eye() - orbit.target).length() - distance_to_target).abs() < 1e-4);
        assert!(orbit.pitch <= MAX_PITCH_RADIANS);
        let camera = orbit.camera(100, 100);
        assert!(camera.world_from_camera.rotation.determinant() > 0.99);
    }

    #[test]
    fn from_camera_round_trips_an_orbit_pose() {
        let mut original = OrbitCamera::reset(BOUNDS);
        original.orbit(-80.0, 30.0);
        let camera = original.camera(800, 600);
        let continued = OrbitCamera::from_camera(&camera, BOUNDS);
        let again = continued.camera(800, 600);
        assert!(again.center().abs_diff_eq(camera.center(), 1e-4));
        assert!(again.world_from_camera.rotation.abs_diff_eq(camera.world_from_camera.rotation, 1e-4));
    }

    #[test]
    fn empty_bounds_give_a_usable_camera() {
        let orbit = OrbitCamera::reset(([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]));
        assert!(orbit.distance.is_finite() && orbit.distance > 0.0);
        assert!(orbit.eye().is_finite());
    }
}
