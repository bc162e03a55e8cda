//! Next-best-view registration: rank unregistered photos by how many (and how well spread)
//! triangulated points they see, place the best by P3P inside LO-RANSAC with a robust pose
//! refinement, and link its inlier keypoints to the points. A photo that fails is retried only
//! once it sees more points.

use crate::mapper::{Attempt, Model};
use crate::{Phase, PhaseProgress, SfmError};
use kiln_vision::geometry::pnp::{Correspondence, PnpEstimator, refine_pose};
use kiln_vision::geometry::ransac::{RansacOptions, inlier_indices, lo_ransac};
use kiln_vision::model::{Observation, PointId};

/// Levels of the visibility pyramid (COLMAP uses 6): level `l` splits the photo into
/// `2^l × 2^l` cells and scores each occupied cell `2^l`, rewarding well-spread points.
const VISIBILITY_LEVELS: u32 = 6;
/// Cauchy scale of the pose refinement in pixels: inliers carry ~1 px of noise.
const POSE_LOSS_SCALE_PX: f64 = 1.0;

impl Model<'_> {
    /// Keypoints of `image` whose track has a point: `(keypoint, point)`.
    pub(super) fn correspondences(&self, image: usize) -> Vec<(u32, PointId)> {
        self.context.tracks.of_image(image).filter_map(|(k, t)| self.point_of_track(t).map(|id| (k, id))).collect()
    }

    /// COLMAP's visibility-pyramid score of the keypoints that see points.
    fn visibility_score(&self, image: usize, correspondences: &[(u32, PointId)]) -> f64 {
        let state = &self.rec.images[image];
        let Some(camera) = self.rec.cameras.get(state.camera) else { return 0.0 };
        let (w, h) = (f64::from(camera.width.max(1)), f64::from(camera.height.max(1)));
        let mut score = 0.0;
        for level in 1..=VISIBILITY_LEVELS {
            let cells = 1usize << level;
            let mut occupied = vec![false; cells * cells];
            for &(k, _) in correspondences {
                let Some(p) = state.keypoints.get(k as usize) else { continue };
                let cx = ((p.x / w * cells as f64).max(0.0) as usize).min(cells - 1);
                let cy = ((p.y / h * cells as f64).max(0.0) as usize).min(cells - 1);
                occupied[cy * cells + cx] = true;
            }
            score += occupied.iter().filter(|&&o| o).count() as f64 * cells as f64;
        }
        score
    }

    /// Unregistered allowed photos that see enough points, best score first, skipping photos
    /// that already failed with at least as many correspondences.
    fn next_candidates(&self) -> Vec<usize> {
        let min = self.options().min_registration_inliers;
        let mut scored: Vec<(f64, usize)> = (0..self.context.num_images())
            .filter(|&i| self.allowed[i] && !self.rec.is_registered(i))
            .filter_map(|i| {
                let c = self.correspondences(i);
                let retry = self.attempts.get(&i).is_none_or(|a| c.len() > a.candidates);
                (c.len() >= min && retry).then(|| (self.visibility_score(i, &c), i))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, i)| i).collect()
    }

    /// PnP inlier threshold for `image` in pixels, scaled with the photo size.
    fn abs_pose_threshold_px(&self, image: usize) -> f64 {
        let o = self.options();
        let longer = self.rec.cameras.get(self.rec.images[image].camera).map_or(0, |c| c.width.max(c.height));
        (o.abs_pose_error_fraction * f64::from(longer)).clamp(o.abs_pose_min_error_px, o.abs_pose_max_error_px)
    }

    /// Registers `image` if PnP finds a pose with enough inliers; records the attempt otherwise.
    fn try_register(&mut self, image: usize) -> bool {
        let state = &self.rec.images[image];
        let Some(&camera) = self.rec.cameras.get(state.camera) else { return false };
        let (matches, data): (Vec<(u32, PointId)>, Vec<Correspondence>) = self
            .correspondences(image)
            .into_iter()
            .filter_map(|(k, id)| {
                let pixel = *state.keypoints.get(k as usize)?;
                let point_in_world = self.rec.points.get(&id)?.position;
                Some(((k, id), Correspondence { point_in_world, bearing: camera.bearing(pixel) }))
            })
            .unzip();
        let threshold = self.abs_pose_threshold_px(image);
        let estimator = PnpEstimator { correspondences: &data, focal: camera.focal, loss_scale_px: POSE_LOSS_SCALE_PX };
        let ransac = RansacOptions { max_error: threshold, seed: 0x9A9 ^ image as u64, ..RansacOptions::default() };
        let mut attempt = Attempt { candidates: data.len(), inliers: 0 };
        let Some(found) = lo_ransac(&estimator, &ransac) else {
            self.attempts.insert(image, attempt);
            return false;
        };
        let inlier_data: Vec<Correspondence> = found.inliers.iter().map(|&i| data[i]).collect();
        let pose = refine_pose(&inlier_data, found.model, POSE_LOSS_SCALE_PX / camera.focal);
        let inliers = inlier_indices(&estimator, &pose, threshold * threshold);
        attempt.inliers = inliers.len();
        let o = self.options();
        let enough = inliers.len() >= o.min_registration_inliers
            && inliers.len() as f64 >= o.min_registration_inlier_ratio * data.len() as f64;
        if !enough {
            tracing::debug!("photo {image}: PnP {} of {} inliers, not registered", inliers.len(), data.len());
            self.attempts.insert(image, attempt);
            return false;
        }
        self.rec.images[image].camera_from_world = Some(pose);
        for &i in &inliers {
            let (keypoint, id) = matches[i];
            self.rec.add_observation(id, Observation { image, keypoint });
        }
        self.attempts.remove(&image);
        tracing::debug!("photo {image}: registered with {} of {} inliers", inliers.len(), data.len());
        true
    }

    /// Registers photos one at a time until none of the candidates registers.
    pub(super) fn grow(&mut self, progress: &mut dyn FnMut(&PhaseProgress)) -> Result<(), SfmError> {
        loop {
            self.context.check_stop()?;
            let candidates = self.next_candidates();
            let trials = self.options().max_registration_trials;
            let Some(image) = candidates.into_iter().take(trials).find(|&i| self.try_register(i)) else {
                return Ok(());
            };
            let name = &self.context.photos.photos[image].name;
            self.report(progress, Phase::Reconstruction, format!("registered {name}"));
            self.after_registration(image, progress)?;
        }
    }
}
