//! The initial pair: choosing two photos with many verified inliers, a wide enough baseline and
//! many connections, placing them by their verified relative pose, triangulating their shared
//! tracks and adjusting. A pair that triangulates too few points is abandoned for the next.

use std::cmp::Ordering;

use crate::mapper::{Context, Model};
use crate::{PhaseProgress, SfmError};
use kiln_vision::model::RigidCv;
use kiln_vision::verify::{TwoViewConfig, TwoViewGeometry};

/// Initial pair candidates, best first: calibrated pairs of allowed photos with a relative pose,
/// enough inliers and baseline. Score: inliers × min(angle / target, 1) × connectivity.
fn candidates<'a>(context: &'a Context, allowed: &[bool]) -> Vec<&'a TwoViewGeometry> {
    let options = context.options;
    let n = context.num_images();
    let mut scored: Vec<(f64, &TwoViewGeometry)> = context
        .pairs
        .iter()
        .filter(|p| p.i < n && p.j < n && p.i != p.j && allowed[p.i] && allowed[p.j])
        .filter(|p| p.config == TwoViewConfig::Calibrated && p.relative_pose.is_some())
        .filter(|p| {
            p.inliers.len() >= options.min_init_inliers
                && p.median_triangulation_angle_deg >= options.min_init_angle_deg
        })
        .map(|p| {
            let baseline = (p.median_triangulation_angle_deg / options.init_target_angle_deg).min(1.0);
            // Photos that match many others let the model grow from the start.
            let connectivity = ((1 + context.degree[p.i].min(context.degree[p.j])) as f64).ln_1p();
            (p.inliers.len() as f64 * baseline * connectivity, p)
        })
        .collect();
    scored.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal));
    scored.into_iter().map(|(_, p)| p).collect()
}

impl<'c> Model<'c> {
    /// A model started from the best initial pair among `allowed` photos that triangulates
    /// enough points, or `None` when no candidate does.
    pub(super) fn initialize(
        context: &'c Context<'c>,
        allowed: Vec<bool>,
        progress: &mut dyn FnMut(&PhaseProgress),
    ) -> Result<Option<Self>, SfmError> {
        for pair in candidates(context, &allowed).into_iter().take(context.options.max_init_trials) {
            context.check_stop()?;
            let mut model = Model::empty(context, allowed.clone());
            if model.try_initial_pair(pair, progress)? {
                return Ok(Some(model));
            }
        }
        Ok(None)
    }

    fn try_initial_pair(
        &mut self,
        pair: &TwoViewGeometry,
        progress: &mut dyn FnMut(&PhaseProgress),
    ) -> Result<bool, SfmError> {
        let Some(camera_j_from_camera_i) = pair.relative_pose else { return Ok(false) };
        self.rec.images[pair.i].camera_from_world = Some(RigidCv::IDENTITY);
        self.rec.images[pair.j].camera_from_world = Some(camera_j_from_camera_i);
        self.triangulate_image(pair.i);
        let triangulated = self.rec.points.len();
        if triangulated < self.options().min_init_points {
            tracing::debug!("initial pair {}–{}: only {triangulated} points", pair.i, pair.j);
            return Ok(false);
        }
        self.global_adjustment(false, progress)?;
        let kept = self.rec.points.len();
        let accepted = kept >= self.options().min_init_points;
        tracing::info!(
            "initial pair {} – {}: {} inliers, {:.1}°, {triangulated} points triangulated, {kept} kept{}",
            self.context.photos.photos[pair.i].name,
            self.context.photos.photos[pair.j].name,
            pair.inliers.len(),
            pair.median_triangulation_angle_deg,
            if accepted { "" } else { " (rejected)" }
        );
        Ok(accepted)
    }
}
