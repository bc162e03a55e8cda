//! Incremental reconstruction (phase 5), COLMAP-style: feature tracks from the verified matches,
//! an initial pair from its relative pose, then next-best-view registration by PnP, triangulation
//! of new tracks, local and global bundle adjustment and filtering, until no photo registers.
//! Photos left over may start further, separate models; the largest model is the result and the
//! others are reported as `components`, with a reason for every photo the result lacks.
//!
//! Poses are `camera_from_world`, OpenCV axes; one [`RadialCamera`] per camera group, starting
//! from the group's prior.

mod adjust;
mod init;
mod register;
mod tracks;
mod triangulation;

use std::collections::BTreeMap;

use glam::DVec2;

use crate::{Phase, PhaseProgress, SfmError};
use kiln_core::photos::PhotoSet;
use kiln_vision::features::Features;
use kiln_vision::model::{ImageState, PointId, RadialCamera, Reconstruction};
use kiln_vision::verify::TwoViewGeometry;
pub use tracks::Tracks;

/// Settings of [`reconstruct`]. Pixel thresholds are in full-resolution pixels. The defaults
/// follow COLMAP's incremental mapper where it has one; each field says where they differ.
#[derive(Clone, Debug, PartialEq)]
pub struct MapperOptions {
    /// An initial pair needs at least this many verified inliers (COLMAP: 100; 50 lets small
    /// photos start, and the pair must still triangulate `min_init_points`).
    pub min_init_inliers: usize,
    /// Pairs with a median triangulation angle below this (degrees) are not tried as initial pair:
    /// their depths are too uncertain to build on.
    pub min_init_angle_deg: f64,
    /// Angle (degrees) from which a wider baseline no longer raises an initial pair's score
    /// (COLMAP requires 16°, which turntable-like captures with ~10° steps never reach).
    pub init_target_angle_deg: f64,
    /// Points the initial pair must keep after adjustment and filtering to be accepted.
    pub min_init_points: usize,
    /// Initial pairs tried per model before giving up.
    pub max_init_trials: usize,
    /// PnP inlier threshold as a fraction of the photo's longer side, clamped to
    /// `[abs_pose_min_error_px, abs_pose_max_error_px]` (COLMAP: a fixed 12 px): 0.3 % gives
    /// 4 px at 800 px and 8.5 px at 2832 px, where keypoints are coarser.
    pub abs_pose_error_fraction: f64,
    /// Lower clamp of the PnP threshold (pixels).
    pub abs_pose_min_error_px: f64,
    /// Upper clamp of the PnP threshold (pixels; COLMAP's fixed value).
    pub abs_pose_max_error_px: f64,
    /// PnP needs at least this many inliers to register a photo (COLMAP: 30).
    pub min_registration_inliers: usize,
    /// … and at least this fraction of its 2D–3D correspondences (COLMAP: 0.25).
    pub min_registration_inlier_ratio: f64,
    /// Candidates tried per round before the mapper gives up on the model.
    pub max_registration_trials: usize,
    /// A new point needs two rays at least this far apart (degrees; COLMAP: 1.5).
    pub triangulation_min_angle_deg: f64,
    /// A new point (or a new observation of one) reprojects within this many pixels (COLMAP: 4).
    pub triangulation_max_error_px: f64,
    /// Observations above this error are removed after bundle adjustment (COLMAP: 4).
    pub filter_max_error_px: f64,
    /// Points whose widest ray pair is below this angle (degrees) are removed after bundle
    /// adjustment (COLMAP: 1.5).
    pub filter_min_angle_deg: f64,
    /// Photos varied by local bundle adjustment: the new photo and its best-connected neighbours
    /// (COLMAP: 6).
    pub local_ba_images: usize,
    /// Global bundle adjustment once the model grew by this fraction since the last (COLMAP: 0.1).
    pub global_ba_growth: f64,
    /// Intrinsics (focal, k1, k2) are refined in global adjustments from this many photos on:
    /// fewer views cannot tell focal length from depth.
    pub min_images_for_intrinsics: usize,
    /// Also refine the principal point in the final adjustment (COLMAP does not by default).
    pub refine_principal_point: bool,
    /// Levenberg–Marquardt iterations of a local adjustment (COLMAP: 25).
    pub local_ba_iterations: usize,
    /// Levenberg–Marquardt iterations of a global adjustment (COLMAP: 50).
    pub global_ba_iterations: usize,
    /// Separate models tried from the photos the previous models could not register.
    pub max_models: usize,
}

impl Default for MapperOptions {
    fn default() -> Self {
        Self {
            min_init_inliers: 50,
            min_init_angle_deg: 2.0,
            init_target_angle_deg: 10.0,
            min_init_points: 30,
            max_init_trials: 20,
            abs_pose_error_fraction: 0.003,
            abs_pose_min_error_px: 4.0,
            abs_pose_max_error_px: 12.0,
            min_registration_inliers: 20,
            min_registration_inlier_ratio: 0.2,
            max_registration_trials: 10,
            triangulation_min_angle_deg: 1.5,
            triangulation_max_error_px: 4.0,
            filter_max_error_px: 4.0,
            filter_min_angle_deg: 1.5,
            local_ba_images: 6,
            global_ba_growth: 0.1,
            min_images_for_intrinsics: 5,
            refine_principal_point: false,
            local_ba_iterations: 25,
            global_ba_iterations: 50,
            max_models: 8,
        }
    }
}

/// Why a photo is not in the returned reconstruction.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DropReason {
    /// No other photo was verified to overlap it (no shared view, blur, no texture).
    NoVerifiedPairs,
    /// Verified pairs exist, but the best has too few inlier matches to place the photo.
    TooFewMatches { best_inliers: usize },
    /// Registered in a separate model, `components[component]`, not connected to the result.
    SeparateModel { component: usize },
    /// Every photo it matches lies outside the result (unregistered or in a separate model).
    OnlyMatchedOtherModel { partners: usize },
    /// Pose estimation against the result's points failed: `candidates` 2D–3D matches at the
    /// last attempt, `inliers` of them consistent with the best pose.
    RegistrationFailed { candidates: usize, inliers: usize },
}

/// The reconstruction and what became of every photo.
#[derive(Clone, Debug, PartialEq)]
pub struct MapperResult {
    /// The largest model.
    pub reconstruction: Reconstruction,
    /// Registered photos per model, largest first (`components[0]` is `reconstruction`'s).
    pub components: Vec<Vec<usize>>,
    /// Photos missing from `reconstruction`, with the reason, sorted by photo.
    pub dropped: Vec<(usize, DropReason)>,
}

/// Builds the reconstruction from the verified pairs. Errors when the inputs disagree (Kiln's
/// fault) or when no pair of photos can start a model (the input's fault, said in words).
/// `should_stop` is checked before each initial-pair trial, registration and bundle adjustment;
/// once it is true the mapper ends with [`SfmError::Cancelled`].
pub fn reconstruct(
    photos: &PhotoSet,
    features: &[Features],
    pairs: &[TwoViewGeometry],
    options: &MapperOptions,
    progress: &mut dyn FnMut(&PhaseProgress),
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Result<MapperResult, SfmError> {
    let context = Context::new(photos, features, pairs, options, should_stop)?;
    let mut available: Vec<bool> = (0..context.num_images()).map(|i| context.degree[i] > 0).collect();
    let mut models: Vec<Model> = Vec::new();
    while models.len() < options.max_models && available.iter().filter(|&&a| a).count() >= 2 {
        let Some(mut model) = Model::initialize(&context, available.clone(), progress)? else { break };
        model.grow(progress)?;
        model.finish(progress)?;
        for image in model.rec.registered_images() {
            available[image] = false;
        }
        tracing::info!(
            "model {}: {} photos, {} points",
            models.len(),
            model.rec.num_registered(),
            model.rec.points.len()
        );
        models.push(model);
    }
    if models.is_empty() {
        return Err(SfmError::Unusable { input: photos.input.clone(), problem: context.why_no_initial_pair() });
    }
    models.sort_by_key(|m| std::cmp::Reverse(m.rec.num_registered()));
    let components: Vec<Vec<usize>> = models.iter().map(|m| m.rec.registered_images().collect()).collect();
    let dropped = context.drop_reasons(&models, &components);
    let main = models.swap_remove(0);
    progress(&PhaseProgress {
        phase: Phase::Reconstruction,
        done: main.rec.num_registered(),
        total: context.num_images(),
        message: format!("{} of {} photos registered", main.rec.num_registered(), context.num_images()),
    });
    Ok(MapperResult { reconstruction: main.rec, components, dropped })
}

/// Everything the models share: inputs, tracks, per-photo facts.
struct Context<'a> {
    photos: &'a PhotoSet,
    features: &'a [Features],
    pairs: &'a [TwoViewGeometry],
    options: &'a MapperOptions,
    should_stop: &'a (dyn Fn() -> bool + Sync),
    tracks: Tracks,
    /// Number of verified pairs (with inliers) each photo is in.
    degree: Vec<usize>,
    /// Most inliers of any pair each photo is in.
    best_inliers: Vec<usize>,
}

impl<'a> Context<'a> {
    fn new(
        photos: &'a PhotoSet,
        features: &'a [Features],
        pairs: &'a [TwoViewGeometry],
        options: &'a MapperOptions,
        should_stop: &'a (dyn Fn() -> bool + Sync),
    ) -> Result<Self, SfmError> {
        let n = photos.photos.len();
        if features.len() != n {
            return Err(SfmError::Internal(format!("{} photos but features for {}", n, features.len())));
        }
        if let Some(photo) = photos.photos.iter().find(|p| p.group >= photos.groups.len()) {
            return Err(SfmError::Internal(format!("camera group {} does not exist: {}", photo.group, photo.name)));
        }
        let mut degree = vec![0; n];
        let mut best_inliers = vec![0; n];
        for pair in pairs.iter().filter(|p| p.i < n && p.j < n && p.i != p.j && !p.inliers.is_empty()) {
            for image in [pair.i, pair.j] {
                degree[image] += 1;
                best_inliers[image] = best_inliers[image].max(pair.inliers.len());
            }
        }
        let tracks = Tracks::build(features, pairs);
        tracing::info!(
            "{} tracks ({} inconsistent dropped, {} invalid matches)",
            tracks.tracks.len(),
            tracks.inconsistent,
            tracks.invalid_matches
        );
        Ok(Self { photos, features, pairs, options, should_stop, tracks, degree, best_inliers })
    }

    fn num_images(&self) -> usize {
        self.photos.photos.len()
    }

    /// [`SfmError::Cancelled`] once the caller asked to stop.
    fn check_stop(&self) -> Result<(), SfmError> {
        if (self.should_stop)() { Err(SfmError::Cancelled) } else { Ok(()) }
    }

    /// A fresh reconstruction: every photo unregistered, group priors as cameras.
    fn empty_reconstruction(&self) -> Reconstruction {
        let cameras: Vec<RadialCamera> = self.photos.groups.iter().map(|g| g.prior).collect();
        let images = self
            .photos
            .photos
            .iter()
            .zip(self.features)
            .map(|(photo, f)| ImageState {
                camera: photo.group,
                camera_from_world: None,
                keypoints: f.keypoints.iter().map(|k| DVec2::new(f64::from(k.x), f64::from(k.y))).collect(),
                point_of_keypoint: vec![None; f.len()],
            })
            .collect();
        Reconstruction::new(cameras, images)
    }

    fn why_no_initial_pair(&self) -> String {
        let verified = self.pairs.iter().filter(|p| !p.inliers.is_empty()).count();
        let best = self.best_inliers.iter().copied().max().unwrap_or(0);
        format!(
            "no two photos overlap enough to start a reconstruction ({} photos, {} verified pairs, best pair {} \
             matches; need a pair with ≥ {} matches seen from viewpoints ≥ {}° apart). Take more photos with \
             more overlap, moving around the object rather than turning on the spot.",
            self.num_images(),
            verified,
            best,
            self.options.min_init_inliers,
            self.options.min_init_angle_deg
        )
    }

    fn drop_reasons(&self, models: &[Model], components: &[Vec<usize>]) -> Vec<(usize, DropReason)> {
        let Some(main) = models.first() else { return Vec::new() };
        let mut component_of = BTreeMap::new();
        for (c, images) in components.iter().enumerate() {
            for &image in images {
                component_of.insert(image, c);
            }
        }
        (0..self.num_images())
            .filter(|&image| !main.rec.is_registered(image))
            .map(|image| (image, self.drop_reason(image, main, &component_of)))
            .collect()
    }

    fn drop_reason(&self, image: usize, main: &Model, component_of: &BTreeMap<usize, usize>) -> DropReason {
        if let Some(&component) = component_of.get(&image) {
            return DropReason::SeparateModel { component };
        }
        if self.degree[image] == 0 {
            return DropReason::NoVerifiedPairs;
        }
        if self.best_inliers[image] < self.options.min_registration_inliers {
            return DropReason::TooFewMatches { best_inliers: self.best_inliers[image] };
        }
        let partners_in_main = self
            .pairs
            .iter()
            .filter(|p| !p.inliers.is_empty() && (p.i == image || p.j == image))
            .any(|p| main.rec.is_registered(if p.i == image { p.j } else { p.i }));
        match main.attempts.get(&image) {
            Some(a) => DropReason::RegistrationFailed { candidates: a.candidates, inliers: a.inliers },
            None if !partners_in_main => DropReason::OnlyMatchedOtherModel { partners: self.degree[image] },
            None => DropReason::RegistrationFailed { candidates: main.correspondences(image).len(), inliers: 0 },
        }
    }
}

/// A failed registration: 2D–3D matches offered and the best PnP's inliers.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Attempt {
    candidates: usize,
    inliers: usize,
}

/// One model being built.
struct Model<'c> {
    context: &'c Context<'c>,
    rec: Reconstruction,
    /// The point each track became, if any (may name a point since removed: check `rec.points`).
    track_point: Vec<Option<PointId>>,
    /// Photos this model may register (those no earlier model took).
    allowed: Vec<bool>,
    /// The last failed registration per photo.
    attempts: BTreeMap<usize, Attempt>,
    /// Registered photos at the last global adjustment.
    registered_at_last_global: usize,
}

impl<'c> Model<'c> {
    fn empty(context: &'c Context<'c>, allowed: Vec<bool>) -> Self {
        Self {
            context,
            rec: context.empty_reconstruction(),
            track_point: vec![None; context.tracks.tracks.len()],
            allowed,
            attempts: BTreeMap::new(),
            registered_at_last_global: 0,
        }
    }

    fn options(&self) -> &'c MapperOptions {
        self.context.options
    }

    /// The live point of a track.
    fn point_of_track(&self, track: usize) -> Option<PointId> {
        self.track_point.get(track).copied().flatten().filter(|id| self.rec.points.contains_key(id))
    }

    fn report(&self, progress: &mut dyn FnMut(&PhaseProgress), phase: Phase, message: String) {
        progress(&PhaseProgress { phase, done: self.rec.num_registered(), total: self.context.num_images(), message });
    }
}
