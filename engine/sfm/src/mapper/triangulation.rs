//! Turning tracks into 3D points: a track without a point is triangulated from its registered
//! observations (robustly, dropping views that disagree); a track with a point gains the
//! registered observations that reproject well.

use crate::mapper::Model;
use kiln_vision::geometry::triangulate::{self, Checks, View};
use kiln_vision::model::Observation;

/// Colour of a point whose keypoint has none recorded (mid grey).
const UNKNOWN_COLOR: [u8; 3] = [128, 128, 128];

impl Model<'_> {
    /// Triangulates or extends every track through `image`; returns the observations added.
    pub(super) fn triangulate_image(&mut self, image: usize) -> usize {
        let tracks: Vec<usize> = self.context.tracks.of_image(image).map(|(_, t)| t).collect();
        tracks.into_iter().map(|t| self.triangulate_track(t)).sum()
    }

    /// Triangulates or extends every track; returns the observations added.
    pub(super) fn retriangulate_all(&mut self) -> usize {
        (0..self.context.tracks.tracks.len()).map(|t| self.triangulate_track(t)).sum()
    }

    /// Registered observations of track `t` not yet linked to a point.
    fn free_observations(&self, t: usize) -> Vec<Observation> {
        self.context.tracks.tracks[t]
            .iter()
            .copied()
            .filter(|o| {
                self.rec.is_registered(o.image)
                    && self.rec.images[o.image].point_of_keypoint[o.keypoint as usize].is_none()
            })
            .collect()
    }

    /// Creates the point of track `t` or extends it; returns the observations added.
    fn triangulate_track(&mut self, t: usize) -> usize {
        let free = self.free_observations(t);
        if free.is_empty() {
            return 0;
        }
        match self.point_of_track(t) {
            Some(id) => self.extend_point(id, &free),
            None if free.len() >= 2 => self.create_point(t, &free),
            None => 0,
        }
    }

    fn extend_point(&mut self, id: u64, free: &[Observation]) -> usize {
        let Some(position) = self.rec.points.get(&id).map(|p| p.position) else { return 0 };
        let max_error = self.options().triangulation_max_error_px;
        let mut added = 0;
        for &o in free {
            if self.rec.reprojection_error(o, position).is_some_and(|e| e <= max_error)
                && self.rec.add_observation(id, o)
            {
                added += 1;
            }
        }
        added
    }

    fn create_point(&mut self, t: usize, free: &[Observation]) -> usize {
        let views: Option<Vec<View>> = free.iter().map(|&o| self.view_of(o)).collect();
        let Some(views) = views else { return 0 };
        let checks = Checks {
            max_error_px: self.options().triangulation_max_error_px,
            min_angle_rad: self.options().triangulation_min_angle_deg.to_radians(),
        };
        let Some((position, kept)) = triangulate::triangulate_robust(&views, &checks) else { return 0 };
        let track: Vec<Observation> = free.iter().zip(&kept).filter(|(_, k)| **k).map(|(o, _)| *o).collect();
        let Some(&first) = track.first() else { return 0 };
        let color =
            self.context.features[first.image].colors.get(first.keypoint as usize).copied().unwrap_or(UNKNOWN_COLOR);
        let added = track.len();
        let id = self.rec.add_point(position, color, track);
        self.track_point[t] = Some(id);
        added
    }

    /// The triangulation view of a registered observation.
    pub(super) fn view_of(&self, o: Observation) -> Option<View> {
        let image = self.rec.images.get(o.image)?;
        let camera = self.rec.cameras.get(image.camera)?;
        let pixel = *image.keypoints.get(o.keypoint as usize)?;
        Some(View {
            camera_from_world: image.camera_from_world?,
            normalized: camera.normalize(pixel),
            focal: camera.focal,
        })
    }
}
