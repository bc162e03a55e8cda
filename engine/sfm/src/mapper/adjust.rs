//! Refinement inside the mapper: local bundle adjustment around each new photo, global
//! adjustment when the model has grown, the final adjustment with intrinsics, and the filtering
//! of observations with large errors and of points seen under too small an angle.

use std::collections::{BTreeMap, BTreeSet};

use crate::ba::{BaOptions, bundle_adjust};
use crate::mapper::Model;
use crate::{Phase, PhaseProgress, SfmError};
use kiln_vision::geometry::triangulate::triangulation_angle;
use kiln_vision::model::PointId;

/// Rounds of adjust → filter → re-triangulate in the final refinement; COLMAP iterates until
/// few observations change, which in practice takes two or three rounds.
const FINAL_ROUNDS: usize = 3;
/// A final round that changes fewer than this fraction of the observations ends the loop.
const FINAL_CHANGE_FRACTION: f64 = 0.001;

impl Model<'_> {
    /// Triangulation, local adjustment and filtering after `image` registered; a global
    /// adjustment when the model grew enough since the last.
    pub(super) fn after_registration(
        &mut self,
        image: usize,
        progress: &mut dyn FnMut(&PhaseProgress),
    ) -> Result<(), SfmError> {
        self.triangulate_image(image);
        self.local_adjustment(image)?;
        let registered = self.rec.num_registered() as f64;
        if registered >= (1.0 + self.options().global_ba_growth) * self.registered_at_last_global as f64 {
            let intrinsics = self.rec.num_registered() >= self.options().min_images_for_intrinsics;
            self.global_adjustment(intrinsics, progress)?;
        }
        Ok(())
    }

    /// Adjusts `image` and its best-connected neighbours (by shared points), then filters their
    /// points and completes the tracks through `image`.
    fn local_adjustment(&mut self, image: usize) -> Result<(), SfmError> {
        let mut shared: BTreeMap<usize, usize> = BTreeMap::new();
        for id in self.rec.images[image].point_of_keypoint.iter().flatten() {
            let Some(point) = self.rec.points.get(id) else { continue };
            for o in point.track.iter().filter(|o| o.image != image) {
                *shared.entry(o.image).or_default() += 1;
            }
        }
        let mut neighbours: Vec<(usize, usize)> = shared.into_iter().collect();
        neighbours.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut variable: BTreeSet<usize> = BTreeSet::from([image]);
        variable.extend(neighbours.iter().take(self.options().local_ba_images.saturating_sub(1)).map(|n| n.0));
        let options = BaOptions {
            variable_images: Some(variable.clone()),
            refine_focal: false,
            refine_principal_point: false,
            refine_distortion: false,
            max_iterations: self.options().local_ba_iterations,
            ..BaOptions::default()
        };
        let summary = bundle_adjust(&mut self.rec, &options)?;
        tracing::debug!(
            "local adjustment of {image}: rms {:.3} → {:.3} px",
            summary.initial_rms_px,
            summary.final_rms_px
        );
        self.filter(Some(&variable));
        self.triangulate_image(image);
        Ok(())
    }

    /// Adjusts every registered photo (with focal and k1, k2 when `refine_intrinsics`), filters,
    /// and re-triangulates tracks that can now be completed.
    pub(super) fn global_adjustment(
        &mut self,
        refine_intrinsics: bool,
        progress: &mut dyn FnMut(&PhaseProgress),
    ) -> Result<(), SfmError> {
        self.adjust_all(refine_intrinsics, false, progress)?;
        self.filter(None);
        self.retriangulate_all();
        self.registered_at_last_global = self.rec.num_registered();
        Ok(())
    }

    fn adjust_all(
        &mut self,
        intrinsics: bool,
        principal_point: bool,
        progress: &mut dyn FnMut(&PhaseProgress),
    ) -> Result<(), SfmError> {
        self.context.check_stop()?;
        self.report(progress, Phase::BundleAdjustment, format!("adjusting {} photos", self.rec.num_registered()));
        let options = BaOptions {
            variable_images: None,
            refine_focal: intrinsics,
            refine_principal_point: principal_point,
            refine_distortion: intrinsics,
            max_iterations: self.options().global_ba_iterations,
            ..BaOptions::default()
        };
        let summary = bundle_adjust(&mut self.rec, &options)?;
        tracing::info!(
            "global adjustment of {} photos, {} observations: rms {:.3} → {:.3} px",
            self.rec.num_registered(),
            summary.observations,
            summary.initial_rms_px,
            summary.final_rms_px
        );
        Ok(())
    }

    /// Final refinement: complete tracks, then adjust with intrinsics, filter and re-triangulate
    /// until few observations change.
    pub(super) fn finish(&mut self, progress: &mut dyn FnMut(&PhaseProgress)) -> Result<(), SfmError> {
        let intrinsics = self.rec.num_registered() >= self.options().min_images_for_intrinsics;
        let principal_point = intrinsics && self.options().refine_principal_point;
        self.retriangulate_all();
        for _ in 0..FINAL_ROUNDS {
            self.adjust_all(intrinsics, principal_point, progress)?;
            let removed = self.filter(None);
            let added = self.retriangulate_all();
            let (_, observations) = self.rec.mean_reprojection_error();
            if ((removed + added) as f64) < FINAL_CHANGE_FRACTION * observations as f64 {
                break;
            }
        }
        // Points added by the last re-triangulation were not adjusted: one more pass.
        self.adjust_all(intrinsics, principal_point, progress)?;
        self.filter(None);
        Ok(())
    }

    /// Removes observations above the error threshold (or behind their camera) and points whose
    /// widest ray pair is below the angle threshold, among points seen by `images` (all when
    /// `None`). Returns the observations removed.
    pub(super) fn filter(&mut self, images: Option<&BTreeSet<usize>>) -> usize {
        let ids: Vec<PointId> = match images {
            None => self.rec.points.keys().copied().collect(),
            Some(set) => {
                let mut ids: BTreeSet<PointId> = BTreeSet::new();
                for &image in set {
                    ids.extend(self.rec.images[image].point_of_keypoint.iter().flatten());
                }
                ids.into_iter().collect()
            }
        };
        ids.into_iter().map(|id| self.filter_point(id)).sum()
    }

    fn filter_point(&mut self, id: PointId) -> usize {
        let Some(point) = self.rec.points.get(&id) else { return 0 };
        let max_error = self.options().filter_max_error_px;
        let bad: Vec<_> = point
            .track
            .iter()
            .copied()
            .filter(|&o| self.rec.reprojection_error(o, point.position).is_none_or(|e| e > max_error))
            .collect();
        let mut removed = bad.len();
        for o in bad {
            self.rec.remove_observation(id, o);
        }
        if self.rec.points.contains_key(&id) && !self.wide_enough(id) {
            removed += self.rec.remove_point(id).map_or(0, |p| p.track.len());
        }
        removed
    }

    /// Whether two of the point's cameras see it at least the filter angle apart.
    fn wide_enough(&self, id: PointId) -> bool {
        let Some(point) = self.rec.points.get(&id) else { return false };
        let min_angle = self.options().filter_min_angle_deg.to_radians();
        let centers: Vec<_> = point
            .track
            .iter()
            .filter_map(|o| self.rec.images[o.image].camera_from_world.map(|pose| pose.center()))
            .collect();
        centers
            .iter()
            .enumerate()
            .any(|(k, &a)| centers[k + 1..].iter().any(|&b| triangulation_angle(a, b, point.position) >= min_angle))
    }
}
