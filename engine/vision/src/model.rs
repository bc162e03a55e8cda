//! The reconstruction being built: intrinsics per camera group, a pose per registered photo, and
//! 3D points with their tracks. Shared by the mapper, bundle adjustment and the outputs.

use std::collections::BTreeMap;

use glam::{DVec2, DVec3};

pub use kiln_core::camera_model::{RadialCamera, RigidCv};

/// Identifies a 3D point; never reused within one reconstruction.
pub type PointId = u64;

/// One sighting of a point: keypoint `keypoint` of photo `image`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Observation {
    pub image: usize,
    pub keypoint: u32,
}

/// A triangulated point and every photo keypoint that sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Point3d {
    pub position: DVec3,
    pub color: [u8; 3],
    pub track: Vec<Observation>,
}

/// Per input photo: its camera group, its pose once registered, and its keypoints.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageState {
    /// Index into [`Reconstruction::cameras`].
    pub camera: usize,
    /// `None` until the photo is registered.
    pub camera_from_world: Option<RigidCv>,
    /// Keypoint positions in pixels (oriented, full resolution).
    pub keypoints: Vec<DVec2>,
    /// For each keypoint, the point it observes, if any.
    pub point_of_keypoint: Vec<Option<PointId>>,
}

/// The state of an incremental reconstruction. `images` is indexed like the input photos.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reconstruction {
    pub cameras: Vec<RadialCamera>,
    pub images: Vec<ImageState>,
    pub points: BTreeMap<PointId, Point3d>,
    next_point_id: PointId,
}

impl Reconstruction {
    pub fn new(cameras: Vec<RadialCamera>, images: Vec<ImageState>) -> Self {
        Self { cameras, images, points: BTreeMap::new(), next_point_id: 0 }
    }

    pub fn is_registered(&self, image: usize) -> bool {
        self.images.get(image).is_some_and(|i| i.camera_from_world.is_some())
    }

    pub fn registered_images(&self) -> impl Iterator<Item = usize> + '_ {
        self.images.iter().enumerate().filter(|(_, i)| i.camera_from_world.is_some()).map(|(index, _)| index)
    }

    pub fn num_registered(&self) -> usize {
        self.registered_images().count()
    }

    /// Adds a point and links each observation's keypoint to it. Observations whose keypoint
    /// already observes another point are skipped; the caller merges tracks explicitly.
    pub fn add_point(&mut self, position: DVec3, color: [u8; 3], track: Vec<Observation>) -> PointId {
        let id = self.next_point_id;
        self.next_point_id += 1;
        let mut kept = Vec::with_capacity(track.len());
        for observation in track {
            if let Some(slot) = self.slot_mut(observation)
                && slot.is_none()
            {
                *slot = Some(id);
                kept.push(observation);
            }
        }
        self.points.insert(id, Point3d { position, color, track: kept });
        id
    }

    /// Removes a point and unlinks its keypoints.
    pub fn remove_point(&mut self, id: PointId) -> Option<Point3d> {
        let point = self.points.remove(&id)?;
        for &observation in &point.track {
            if let Some(slot) = self.slot_mut(observation) {
                *slot = None;
            }
        }
        Some(point)
    }

    /// Adds one observation to an existing point; false if the keypoint is taken or the point is
    /// unknown.
    pub fn add_observation(&mut self, id: PointId, observation: Observation) -> bool {
        if !self.points.contains_key(&id) || !matches!(self.slot_mut(observation), Some(None)) {
            return false;
        }
        if let Some(slot) = self.slot_mut(observation) {
            *slot = Some(id);
        }
        if let Some(point) = self.points.get_mut(&id) {
            point.track.push(observation);
        }
        true
    }

    /// Removes one observation from a point (and the point if fewer than two remain).
    pub fn remove_observation(&mut self, id: PointId, observation: Observation) {
        let Some(point) = self.points.get_mut(&id) else { return };
        point.track.retain(|o| *o != observation);
        let too_short = point.track.len() < 2;
        if let Some(slot) = self.slot_mut(observation) {
            *slot = None;
        }
        if too_short {
            self.remove_point(id);
        }
    }

    /// Reprojection error in pixels of `position` in `observation`'s photo, or `None` when the
    /// photo is unregistered or the point is behind it.
    pub fn reprojection_error(&self, observation: Observation, position: DVec3) -> Option<f64> {
        let image = self.images.get(observation.image)?;
        let pose = image.camera_from_world?;
        let camera = self.cameras.get(image.camera)?;
        let measured = *image.keypoints.get(observation.keypoint as usize)?;
        let projected = camera.project(pose.transform_point(position))?;
        Some(projected.distance(measured))
    }

    /// Mean reprojection error over every observation of every point (pixels), and the number of
    /// observations. Observations that cannot be projected count as missing, not as zero.
    pub fn mean_reprojection_error(&self) -> (f64, usize) {
        let (sum, count) = self
            .points
            .values()
            .flat_map(|p| p.track.iter().filter_map(|&o| self.reprojection_error(o, p.position)))
            .fold((0.0, 0usize), |(sum, count), e| (sum + e, count + 1));
        (if count > 0 { sum / count as f64 } else { 0.0 }, count)
    }

    fn slot_mut(&mut self, observation: Observation) -> Option<&mut Option<PointId>> {
        self.images.get_mut(observation.image)?.point_of_keypoint.get_mut(observation.keypoint as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_inverts_distortion() {
        let camera = RadialCamera { k1: -0.12, k2: 0.03, ..RadialCamera::pinhole(1920, 1080, 1500.0) };
        for pixel in [DVec2::new(10.0, 20.0), DVec2::new(960.0, 540.0), DVec2::new(1900.0, 1070.0)] {
            let back = camera.pixel_from_normalized(camera.normalize(pixel));
            assert!(back.distance(pixel) < 1e-9, "{pixel} -> {back}");
        }
    }

    #[test]
    fn points_and_observations_stay_linked() {
        let image = |n| ImageState {
            camera: 0,
            camera_from_world: Some(RigidCv::IDENTITY),
            keypoints: vec![DVec2::new(50.0, 50.0); n],
            point_of_keypoint: vec![None; n],
        };
        let mut rec = Reconstruction::new(vec![RadialCamera::pinhole(100, 100, 100.0)], vec![image(3), image(3)]);
        let a = Observation { image: 0, keypoint: 1 };
        let b = Observation { image: 1, keypoint: 2 };
        let id = rec.add_point(DVec3::new(0.0, 0.0, 2.0), [1, 2, 3], vec![a, b]);
        assert_eq!(rec.images[0].point_of_keypoint[1], Some(id));
        // The same keypoint cannot join a second point.
        let other = rec.add_point(DVec3::Z, [0; 3], vec![a, Observation { image: 1, keypoint: 0 }]);
        assert_eq!(rec.points[&other].track.len(), 1);
        assert!(rec.reprojection_error(a, DVec3::new(0.0, 0.0, 2.0)).is_some_and(|e| e < 1e-12));
        rec.remove_observation(id, b);
        assert!(!rec.points.contains_key(&id), "a one-view track is dropped");
        assert_eq!(rec.images[0].point_of_keypoint[1], None);
    }
}
