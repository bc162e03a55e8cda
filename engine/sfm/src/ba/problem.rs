//! The bundle-adjustment problem built from a [`Reconstruction`]: which observations, points,
//! poses and intrinsics take part, the parameter layout of the reduced camera system, the gauge,
//! and the working copy of the parameters ([`State`]).
//!
//! Layout of the reduced (camera-side) parameters: 6 per variable pose (`ω, δt`, see
//! [`super::residual`]), then 5 per variable camera group (f, cx, cy, k1, k2). Parameters that do
//! not move are *masked*: intrinsics the options do not refine, and the gauge coordinate.
//!
//! Gauge: when no registered photo outside the variable set sees a point of the problem (global
//! BA), the lowest-index variable photo becomes fixed (its pose is the anchor); when exactly one
//! such fixed photo exists (after that rule, or in a local BA with a single fixed neighbour), the
//! scale is fixed by masking one translation coordinate of the variable photo whose centre is
//! farthest from the fixed one: the coordinate, in that photo's camera frame, along which the
//! direction towards the fixed centre is largest (the scale null space moves `δt` along that
//! direction). Two or more fixed photos fix the gauge themselves.

use std::collections::BTreeSet;

use glam::{DVec2, DVec3};
use rayon::prelude::*;

use crate::ba::residual::{self, INTRINSICS, Linearization};
use crate::ba::{BaOptions, RobustLoss};
use kiln_vision::model::{PointId, RadialCamera, Reconstruction, RigidCv};

/// One observation in the problem.
#[derive(Clone, Copy, Debug)]
pub(super) struct Obs {
    pub image: usize,
    pub camera: usize,
    pub point: usize,
    pub pose_block: Option<usize>,
    /// Index into [`Problem::entry_block`] when the photo's camera group is refined.
    pub intr_entry: Option<usize>,
    pub measured: DVec2,
}

/// Structure of the problem; fixed for one call of [`super::bundle_adjust`].
pub(super) struct Problem {
    pub point_ids: Vec<PointId>,
    /// Observations of point `p` are `obs[point_obs[p]..point_obs[p + 1]]`.
    pub point_obs: Vec<usize>,
    pub obs: Vec<Obs>,
    /// The photo of each variable pose block, and its camera group.
    pub pose_images: Vec<usize>,
    pub pose_cameras: Vec<usize>,
    /// Observations of each pose block, in point order.
    pub pose_obs: Vec<Vec<usize>>,
    /// The camera group of each intrinsics block, and which of its parameters vary.
    pub intr_cameras: Vec<usize>,
    pub intr_enabled: [bool; INTRINSICS],
    /// Observations of each intrinsics block (all photos of the group, fixed ones included).
    pub intr_obs: Vec<Vec<usize>>,
    /// Intrinsics *entries*: one per (point, refined camera group) pair. Entries of point `p` are
    /// `point_entries[p]..point_entries[p + 1]`; `entry_block[e]` is the intrinsics block.
    pub point_entries: Vec<usize>,
    pub entry_block: Vec<usize>,
    pub entry_point: Vec<usize>,
    /// Entries of each intrinsics block, in point order.
    pub intr_entries: Vec<Vec<usize>>,
    /// Per reduced parameter: held at zero step.
    pub masked: Vec<bool>,
}

/// The parameters being optimised (copies; written back only at the end).
#[derive(Clone)]
pub(super) struct State {
    /// Indexed like `Reconstruction::images`; unregistered photos hold the identity, unused.
    pub poses: Vec<RigidCv>,
    pub cameras: Vec<RadialCamera>,
    pub points: Vec<DVec3>,
}

/// Cost of the parameters over a set of observations.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Evaluation {
    /// `½ Σ ρ(|r|²)`.
    pub cost: f64,
    /// `Σ |r|²` (no loss), for the RMS.
    pub squared_sum: f64,
    pub count: usize,
}

impl Evaluation {
    pub fn rms(&self) -> f64 {
        if self.count == 0 { 0.0 } else { (self.squared_sum / self.count as f64).sqrt() }
    }

    fn add(self, other: Self) -> Self {
        Self {
            cost: self.cost + other.cost,
            squared_sum: self.squared_sum + other.squared_sum,
            count: self.count + other.count,
        }
    }
}

impl Problem {
    pub fn new(reconstruction: &Reconstruction, options: &BaOptions) -> Self {
        let registered: BTreeSet<usize> = reconstruction.registered_images().collect();
        let requested: BTreeSet<usize> = match &options.variable_images {
            Some(set) => set.intersection(&registered).copied().collect(),
            None => registered.clone(),
        };
        let points = select_points(reconstruction, &registered, &requested);
        let seen: BTreeSet<usize> =
            points.iter().flat_map(|(_, track)| track.iter().map(|&(image, _)| image)).collect();
        let mut variable: BTreeSet<usize> = requested.intersection(&seen).copied().collect();
        let mut fixed: Vec<usize> = seen.difference(&variable).copied().collect();
        if fixed.is_empty()
            && let Some(anchor) = variable.pop_first()
        {
            fixed.push(anchor);
        }
        let pose_images: Vec<usize> = variable.iter().copied().collect();
        let pose_block_of = |image: usize| pose_images.binary_search(&image).ok();

        let refined = [
            options.refine_focal,
            options.refine_principal_point,
            options.refine_principal_point,
            options.refine_distortion,
            options.refine_distortion,
        ];
        let intr_cameras: Vec<usize> = if refined.iter().any(|&r| r) {
            requested
                .iter()
                .map(|&image| reconstruction.images[image].camera)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        let intr_block_of = |camera: usize| intr_cameras.binary_search(&camera).ok();

        let mut problem = Problem {
            point_ids: Vec::with_capacity(points.len()),
            point_obs: vec![0],
            obs: Vec::new(),
            pose_obs: vec![Vec::new(); pose_images.len()],
            pose_cameras: pose_images.iter().map(|&image| reconstruction.images[image].camera).collect(),
            pose_images: pose_images.clone(),
            intr_cameras: intr_cameras.clone(),
            intr_enabled: refined,
            intr_obs: vec![Vec::new(); intr_cameras.len()],
            point_entries: vec![0],
            entry_block: Vec::new(),
            entry_point: Vec::new(),
            intr_entries: vec![Vec::new(); intr_cameras.len()],
            masked: Vec::new(),
        };
        for (id, track) in points {
            let point = problem.point_ids.len();
            problem.point_ids.push(id);
            let blocks: BTreeSet<usize> =
                track.iter().filter_map(|&(image, _)| intr_block_of(reconstruction.images[image].camera)).collect();
            let first_entry = problem.entry_block.len();
            for &block in &blocks {
                problem.intr_entries[block].push(problem.entry_block.len());
                problem.entry_block.push(block);
                problem.entry_point.push(point);
            }
            for (image, measured) in track {
                let camera = reconstruction.images[image].camera;
                let pose_block = pose_block_of(image);
                let intr_block = intr_block_of(camera);
                let intr_entry = intr_block.and_then(|b| blocks.iter().position(|&x| x == b)).map(|k| first_entry + k);
                let index = problem.obs.len();
                if let Some(b) = pose_block {
                    problem.pose_obs[b].push(index);
                }
                if let Some(b) = intr_block {
                    problem.intr_obs[b].push(index);
                }
                problem.obs.push(Obs { image, camera, point, pose_block, intr_entry, measured });
            }
            problem.point_obs.push(problem.obs.len());
            problem.point_entries.push(problem.entry_block.len());
        }
        problem.masked = problem.initial_mask(reconstruction, &fixed);
        problem
    }

    pub fn num_points(&self) -> usize {
        self.point_ids.len()
    }

    /// Size of the reduced camera system.
    pub fn num_camera_params(&self) -> usize {
        6 * self.pose_images.len() + INTRINSICS * self.intr_cameras.len()
    }

    /// Offset of intrinsics block `b` in the reduced system.
    pub fn intr_offset(&self, block: usize) -> usize {
        6 * self.pose_images.len() + INTRINSICS * block
    }

    fn initial_mask(&self, reconstruction: &Reconstruction, fixed: &[usize]) -> Vec<bool> {
        let mut masked = vec![false; self.num_camera_params()];
        for block in 0..self.intr_cameras.len() {
            for (q, enabled) in self.intr_enabled.iter().enumerate() {
                masked[self.intr_offset(block) + q] = !enabled;
            }
        }
        if let [anchor] = fixed
            && let Some((block, coordinate)) = self.scale_coordinate(reconstruction, *anchor)
        {
            masked[6 * block + 3 + coordinate] = true;
        }
        masked
    }

    /// The pose block and translation coordinate that fix the scale around `anchor`'s centre.
    fn scale_coordinate(&self, reconstruction: &Reconstruction, anchor: usize) -> Option<(usize, usize)> {
        let pose = |image: usize| reconstruction.images[image].camera_from_world;
        let anchor_center = pose(anchor)?.center();
        let (block, pose, distance) = self
            .pose_images
            .iter()
            .enumerate()
            .filter_map(|(block, &image)| pose(image).map(|p| (block, p, p.center().distance(anchor_center))))
            .max_by(|a, b| a.2.total_cmp(&b.2))?;
        if distance.is_nan() || distance <= 0.0 {
            return None;
        }
        let towards_anchor = (pose.rotation * (anchor_center - pose.center())).abs();
        let coordinate = if towards_anchor.x >= towards_anchor.y.max(towards_anchor.z) {
            0
        } else if towards_anchor.y >= towards_anchor.z {
            1
        } else {
            2
        };
        Some((block, coordinate))
    }

    /// Cost over the observations flagged in `valid` (all when `None`). `None` when an observation
    /// that should count cannot be projected (the step moved a point behind a camera).
    pub fn evaluate(&self, state: &State, loss: &RobustLoss, valid: Option<&[bool]>) -> Option<Evaluation> {
        let per_point: Vec<Option<Evaluation>> = (0..self.num_points())
            .into_par_iter()
            .map(|p| {
                let mut sum = Evaluation::default();
                for o in self.point_obs[p]..self.point_obs[p + 1] {
                    let counted = valid.is_none_or(|v| v[o]);
                    match (self.residual(state, o), counted) {
                        (Some(r), true) => {
                            let s = r.length_squared();
                            sum = sum.add(Evaluation { cost: 0.5 * loss.rho(s), squared_sum: s, count: 1 });
                        }
                        (None, true) if valid.is_some() => return None,
                        _ => {}
                    }
                }
                Some(sum)
            })
            .collect();
        per_point.into_iter().try_fold(Evaluation::default(), |acc, e| e.map(|e| acc.add(e)))
    }

    fn residual(&self, state: &State, o: usize) -> Option<DVec2> {
        let obs = &self.obs[o];
        residual::residual(&state.cameras[obs.camera], &state.poses[obs.image], state.points[obs.point], obs.measured)
    }

    /// Per observation: the residual and Jacobians scaled by `sqrt(ρ'(s))` (zero when it cannot
    /// be projected), whether it counts, and the cost over those that count.
    pub fn linearize(&self, state: &State, loss: &RobustLoss) -> (Vec<Linearization>, Vec<bool>, Evaluation) {
        let lins: Vec<Option<Linearization>> = self
            .obs
            .par_iter()
            .map(|obs| {
                let mut lin = residual::linearize(
                    &state.cameras[obs.camera],
                    &state.poses[obs.image],
                    state.points[obs.point],
                    obs.measured,
                )?;
                let s = lin.residual.norm_squared();
                let scale = loss.weight(s).sqrt();
                lin.residual *= scale;
                lin.d_pose *= scale;
                lin.d_intrinsics *= scale;
                lin.d_point *= scale;
                Some(lin)
            })
            .collect();
        let valid: Vec<bool> = lins.iter().map(Option::is_some).collect();
        let evaluation = self.evaluate(state, loss, Some(&valid)).unwrap_or_default();
        (lins.into_iter().map(Option::unwrap_or_default).collect(), valid, evaluation)
    }
}

/// Points that take part, as `(id, [(image, measured pixel)])`: at least two observations in
/// registered photos, one of them in a requested (variable) photo.
fn select_points(
    reconstruction: &Reconstruction,
    registered: &BTreeSet<usize>,
    variable: &BTreeSet<usize>,
) -> Vec<(PointId, Vec<(usize, DVec2)>)> {
    reconstruction
        .points
        .iter()
        .filter_map(|(&id, point)| {
            let track: Vec<(usize, DVec2)> = point
                .track
                .iter()
                .filter(|o| registered.contains(&o.image))
                .filter_map(|o| Some((o.image, *reconstruction.images[o.image].keypoints.get(o.keypoint as usize)?)))
                .collect();
            let useful = track.len() >= 2 && track.iter().any(|(image, _)| variable.contains(image));
            useful.then_some((id, track))
        })
        .collect()
}

impl State {
    pub fn new(reconstruction: &Reconstruction, problem: &Problem) -> Self {
        let poses = reconstruction.images.iter().map(|i| i.camera_from_world.unwrap_or(RigidCv::IDENTITY)).collect();
        let points = problem
            .point_ids
            .iter()
            .map(|id| reconstruction.points.get(id).map_or(DVec3::ZERO, |p| p.position))
            .collect();
        Self { poses, cameras: reconstruction.cameras.clone(), points }
    }

    /// The parameters after a step (`camera_step` in the reduced layout, `point_steps` per point).
    pub fn stepped(&self, problem: &Problem, camera_step: &[f64], point_steps: &[DVec3]) -> Self {
        let mut next = self.clone();
        for (block, &image) in problem.pose_images.iter().enumerate() {
            let s = &camera_step[6 * block..6 * block + 6];
            next.poses[image] = residual::apply_pose_increment(
                &self.poses[image],
                DVec3::new(s[0], s[1], s[2]),
                DVec3::new(s[3], s[4], s[5]),
            );
        }
        for (block, &camera) in problem.intr_cameras.iter().enumerate() {
            let offset = problem.intr_offset(block);
            let mut delta = [0.0; INTRINSICS];
            delta.copy_from_slice(&camera_step[offset..offset + INTRINSICS]);
            next.cameras[camera] =
                residual::apply_intrinsics_increment(&self.cameras[camera], &delta, &problem.intr_enabled);
        }
        for (point, step) in next.points.iter_mut().zip(point_steps) {
            *point += *step;
        }
        next
    }

    /// Norm of the translations and points, the scale of [`super::STEP_TOLERANCE`].
    pub fn norm(&self, problem: &Problem) -> f64 {
        let translations: f64 = problem.pose_images.iter().map(|&i| self.poses[i].translation.length_squared()).sum();
        let points: f64 = self.points.iter().map(|p| p.length_squared()).sum();
        (translations + points).sqrt()
    }

    /// Writes the refined poses, intrinsics and points back; nothing else is touched.
    pub fn write_back(&self, problem: &Problem, reconstruction: &mut Reconstruction) {
        for &image in &problem.pose_images {
            reconstruction.images[image].camera_from_world = Some(self.poses[image]);
        }
        for &camera in &problem.intr_cameras {
            reconstruction.cameras[camera] = self.cameras[camera];
        }
        for (id, position) in problem.point_ids.iter().zip(&self.points) {
            if let Some(point) = reconstruction.points.get_mut(id) {
                point.position = *position;
            }
        }
    }
}
