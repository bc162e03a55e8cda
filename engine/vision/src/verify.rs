//! Geometric verification of matched photo pairs: robust two-view geometry (essential,
//! fundamental or homography) and the inlier matches it explains.
//!
//! Per pair, as COLMAP does: LO-RANSAC fits `E` on normalised coordinates (5-point), `F` on
//! pixels (7-point) and `H` on pixels (4-point). The inlier counts choose the configuration:
//! `E` explaining nearly as many matches as `F` means the intrinsics priors hold
//! ([`TwoViewConfig::Calibrated`]); a homography explaining most of them means a planar scene or
//! a pure rotation ([`TwoViewConfig::Planar`]). Whenever `E` is usable the relative pose is
//! recovered (cheirality), refined on the Sampson error of the inliers, and the median
//! triangulation angle says whether it has parallax (≈ 0 for duplicated photos or pure rotation).

use glam::{DMat3, DVec2};
use rayon::prelude::*;

use crate::features::{Features, Keypoint};
use crate::geometry::essential::{EssentialEstimator, sampson_error_sq};
use crate::geometry::fundamental::FundamentalEstimator;
use crate::geometry::homography::HomographyEstimator;
use crate::geometry::pose::{
    essential_from_pose, pose_from_essential, refine_relative_pose, robust_residual_sigma, triangulate_midpoint,
    triangulation_angle,
};
use crate::geometry::ransac::{Estimator, RansacOptions, lo_ransac};
use crate::matching::PairMatches;
use crate::model::{RadialCamera, RigidCv};

/// Which model explains a pair best (COLMAP's two-view configurations, simplified).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TwoViewConfig {
    /// Essential matrix with a general (non-planar) scene: a usable relative pose.
    Calibrated,
    /// Only a fundamental matrix fits (intrinsics priors are off).
    Uncalibrated,
    /// A homography explains the inliers: planar scene or pure rotation (weak for initialisation).
    Planar,
}

/// The verified geometry of photos `i < j`.
#[derive(Clone, Debug, PartialEq)]
pub struct TwoViewGeometry {
    pub i: usize,
    pub j: usize,
    pub config: TwoViewConfig,
    /// Inlier matches as `(keypoint in i, keypoint in j)`.
    pub inliers: Vec<(u32, u32)>,
    /// `camera_j_from_camera_i` with unit-length translation, when `config` is `Calibrated`
    /// (or a homography decomposition gave one).
    pub relative_pose: Option<RigidCv>,
    pub essential: Option<DMat3>,
    pub fundamental: Option<DMat3>,
    pub homography: Option<DMat3>,
    /// Median triangulation angle of the inliers in degrees (0 when no pose).
    pub median_triangulation_angle_deg: f64,
}

/// Settings of [`verify_pair`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VerifyOptions {
    /// Inlier threshold in pixels (Sampson distance for E and F, symmetric transfer for H).
    pub max_error_px: f64,
    /// Fewer inliers than this and the pair is rejected.
    pub min_inliers: usize,
    /// Inliers below this fraction of the matches and the pair is rejected: thousands of samples
    /// on unrelated photos find a model for ~5 % of random matches by chance.
    pub min_inlier_ratio: f64,
    /// RANSAC confidence.
    pub confidence: f64,
    pub max_iterations: usize,
    /// `E` inliers over `F` inliers at or above which the pair is calibrated.
    pub min_e_f_inlier_ratio: f64,
    /// `H` inliers over `E` (or `F`) inliers above which the pair is planar.
    pub max_h_inlier_ratio: f64,
    /// Base seed of the samplers (each pair mixes in its indices).
    pub seed: u64,
}

/// COLMAP's default; pixel-accurate SIFT with LO-RANSAC and a refined pose keeps the accuracy.
const DEFAULT_MAX_ERROR_PX: f64 = 4.0;
/// COLMAP's default minimum number of inliers of a verified pair.
const DEFAULT_MIN_INLIERS: usize = 15;
/// Overlapping photos keep far more of their mutual ratio-test matches; random ones ~5 %.
const DEFAULT_MIN_INLIER_RATIO: f64 = 0.1;
/// Below this E/F inlier ratio the intrinsics priors are too wrong to trust `E`.
const DEFAULT_MIN_E_F_INLIER_RATIO: f64 = 0.7;
/// COLMAP's `max_H_inlier_ratio`.
const DEFAULT_MAX_H_INLIER_RATIO: f64 = 0.8;
/// COLMAP's two-view iteration cap.
const DEFAULT_MAX_ITERATIONS: usize = 10_000;
/// Fixed, so verification is reproducible.
const DEFAULT_SEED: u64 = 0x7B0_7137;

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            max_error_px: DEFAULT_MAX_ERROR_PX,
            min_inliers: DEFAULT_MIN_INLIERS,
            min_inlier_ratio: DEFAULT_MIN_INLIER_RATIO,
            confidence: RansacOptions::default().confidence,
            max_iterations: DEFAULT_MAX_ITERATIONS,
            min_e_f_inlier_ratio: DEFAULT_MIN_E_F_INLIER_RATIO,
            max_h_inlier_ratio: DEFAULT_MAX_H_INLIER_RATIO,
            seed: DEFAULT_SEED,
        }
    }
}

impl VerifyOptions {
    fn ransac(&self, max_error: f64, i: usize, j: usize) -> RansacOptions {
        let pair = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (j as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        RansacOptions {
            max_error,
            confidence: self.confidence,
            max_iterations: self.max_iterations,
            seed: self.seed ^ pair,
            ..RansacOptions::default()
        }
    }
}

/// A fitted model with its inliers (indices into the pair's matches).
struct Fit<M> {
    model: M,
    inliers: Vec<usize>,
}

fn fit<E: Estimator>(estimator: &E, options: &RansacOptions) -> Option<Fit<E::Model>> {
    lo_ransac(estimator, options).map(|r| Fit { model: r.model, inliers: r.inliers })
}

fn count<M>(fit: &Option<Fit<M>>) -> usize {
    fit.as_ref().map_or(0, |f| f.inliers.len())
}

/// Verifies the matches of photos `i` and `j`; `None` when no model has `min_inliers` inliers.
#[allow(clippy::too_many_arguments)]
pub fn verify_pair(
    i: usize,
    j: usize,
    keypoints_i: &[Keypoint],
    keypoints_j: &[Keypoint],
    camera_i: &RadialCamera,
    camera_j: &RadialCamera,
    matches: &[(u32, u32)],
    options: &VerifyOptions,
) -> Option<TwoViewGeometry> {
    let pixel = |k: &Keypoint| DVec2::new(f64::from(k.x), f64::from(k.y));
    let matches: Vec<(u32, u32)> = matches
        .iter()
        .copied()
        .filter(|&(a, b)| (a as usize) < keypoints_i.len() && (b as usize) < keypoints_j.len())
        .collect();
    if matches.len() < options.min_inliers.max(EssentialEstimator::SAMPLE_SIZE) {
        return None;
    }
    let pixels_i: Vec<DVec2> = matches.iter().map(|m| pixel(&keypoints_i[m.0 as usize])).collect();
    let pixels_j: Vec<DVec2> = matches.iter().map(|m| pixel(&keypoints_j[m.1 as usize])).collect();
    let normalized_i: Vec<DVec2> = pixels_i.iter().map(|&p| camera_i.normalize(p)).collect();
    let normalized_j: Vec<DVec2> = pixels_j.iter().map(|&p| camera_j.normalize(p)).collect();
    let essential_threshold = 2.0 * options.max_error_px / (camera_i.focal + camera_j.focal);

    let essential_estimator = EssentialEstimator { xi: &normalized_i, xj: &normalized_j };
    let essential = fit(&essential_estimator, &options.ransac(essential_threshold, i, j));
    let fundamental_estimator = FundamentalEstimator::new(&pixels_i, &pixels_j);
    let fundamental = fundamental_estimator.as_ref().and_then(|e| {
        fit(e, &options.ransac(options.max_error_px * e.normalization.scale, i, j))
            .and_then(|f| Some(Fit { model: e.to_pixels(&f.model)?, inliers: f.inliers }))
    });
    let homography_estimator = HomographyEstimator::new(&pixels_i, &pixels_j);
    let homography = homography_estimator.as_ref().and_then(|e| {
        fit(e, &options.ransac(options.max_error_px * e.normalization.scale, i, j))
            .and_then(|h| Some(Fit { model: e.to_pixels(&h.model)?, inliers: h.inliers }))
    });

    let (n_e, n_f, n_h) = (count(&essential), count(&fundamental), count(&homography));
    let enough = |n: usize| n >= options.min_inliers;
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let config = if enough(n_e) && ratio(n_e, n_f) >= options.min_e_f_inlier_ratio {
        if ratio(n_h, n_e) > options.max_h_inlier_ratio { TwoViewConfig::Planar } else { TwoViewConfig::Calibrated }
    } else if enough(n_f) {
        if ratio(n_h, n_f) > options.max_h_inlier_ratio { TwoViewConfig::Planar } else { TwoViewConfig::Uncalibrated }
    } else if enough(n_h) {
        TwoViewConfig::Planar
    } else {
        return None;
    };

    // The pose, whenever E is trusted (calibrated, or planar with E as good as F).
    let trusted_essential = essential.filter(|_| enough(n_e) && ratio(n_e, n_f) >= options.min_e_f_inlier_ratio);
    let relative =
        trusted_essential.as_ref().and_then(|e| relative_pose(e, &normalized_i, &normalized_j, essential_threshold));
    let inlier_indices = match config {
        TwoViewConfig::Calibrated => {
            relative.as_ref().map(|r| r.inliers.clone()).or(trusted_essential.map(|e| e.inliers))
        }
        TwoViewConfig::Uncalibrated => fundamental.as_ref().map(|f| f.inliers.clone()),
        TwoViewConfig::Planar => [
            relative.as_ref().map(|r| &r.inliers),
            fundamental.as_ref().map(|f| &f.inliers),
            homography.as_ref().map(|h| &h.inliers),
        ]
        .into_iter()
        .flatten()
        .max_by_key(|v| v.len())
        .cloned(),
    }?;
    if !enough(inlier_indices.len()) || (inlier_indices.len() as f64) < options.min_inlier_ratio * matches.len() as f64
    {
        return None;
    }
    Some(TwoViewGeometry {
        i,
        j,
        config,
        inliers: inlier_indices.iter().map(|&k| matches[k]).collect(),
        relative_pose: relative.as_ref().map(|r| r.pose),
        essential: relative.as_ref().map(|r| essential_from_pose(&r.pose)),
        fundamental: fundamental.map(|f| f.model),
        homography: homography.map(|h| h.model.j_from_i),
        median_triangulation_angle_deg: relative.map_or(0.0, |r| r.median_angle_deg),
    })
}

/// Floor of the Cauchy scale of the pose refinement as a fraction of the inlier threshold: a
/// near-perfect RANSAC fit on few points must not make the loss reject everything.
const MIN_CAUCHY_SCALE_FRACTION: f64 = 0.02;

/// Refinement rounds, each re-estimating the Cauchy scale from the residuals of the last: the
/// RANSAC pose overestimates the noise, so the first round is only mildly robust.
const REFINE_ROUNDS: usize = 3;

/// Matches within this many robust σ of the refined pose feed the next refinement round (3σ
/// keeps 99.7 % of Gaussian inliers).
const CORE_SIGMAS: f64 = 3.0;
/// Fewer core matches than this and the refinement keeps every inlier.
const MIN_CORE_MATCHES: usize = 8;

/// A refined relative pose with the inliers of its essential matrix.
struct RelativePose {
    pose: RigidCv,
    inliers: Vec<usize>,
    median_angle_deg: f64,
}

/// Cheirality on the RANSAC inliers of `E`, then rounds of robust refinement, each followed by
/// re-selecting the inliers under the refined `E`; and the inliers' median triangulation angle.
fn relative_pose(essential: &Fit<DMat3>, xi: &[DVec2], xj: &[DVec2], threshold: f64) -> Option<RelativePose> {
    let select = |indices: &[usize]| -> (Vec<DVec2>, Vec<DVec2>) {
        (indices.iter().map(|&k| xi[k]).collect(), indices.iter().map(|&k| xj[k]).collect())
    };
    let (inlier_i, inlier_j) = select(&essential.inliers);
    let (mut pose, _) = pose_from_essential(&essential.model, &inlier_i, &inlier_j)?;
    let threshold_sq = threshold * threshold;
    let mut inliers = essential.inliers.clone();
    let mut core = inliers.clone();
    for _ in 0..REFINE_ROUNDS {
        let (core_i, core_j) = select(&core);
        let sigma = robust_residual_sigma(&pose, &core_i, &core_j).max(threshold * MIN_CAUCHY_SCALE_FRACTION);
        pose = refine_relative_pose(&pose, &core_i, &core_j, sigma);
        let e = essential_from_pose(&pose);
        inliers = (0..xi.len()).filter(|&k| sampson_error_sq(&e, xi[k], xj[k]) <= threshold_sq).collect();
        // The next round fits only matches within a few σ: outliers that fell inside the RANSAC
        // band would otherwise bias poorly conditioned (forward-moving) pairs.
        let core_threshold_sq = (CORE_SIGMAS * sigma).min(threshold).powi(2);
        let tight: Vec<usize> =
            inliers.iter().copied().filter(|&k| sampson_error_sq(&e, xi[k], xj[k]) <= core_threshold_sq).collect();
        core = if tight.len() >= MIN_CORE_MATCHES { tight } else { inliers.clone() };
    }
    let mut angles: Vec<f64> = inliers
        .iter()
        .map(|&k| triangulate_midpoint(&pose, xi[k], xj[k]).map_or(0.0, |p| triangulation_angle(&pose, p)))
        .collect();
    let median_angle_deg = median(&mut angles).to_degrees();
    Some(RelativePose { pose, inliers, median_angle_deg })
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mid = values.len() / 2;
    *values.select_nth_unstable_by(mid, f64::total_cmp).1
}

/// Verifies every matched pair in parallel. `cameras[k]` is photo `k`'s camera (its group's
/// prior); `progress(done, total)` is called as pairs finish. Rejected pairs are left out; the
/// result keeps the order of `matches`. `should_stop()` is checked before each pair: once it is
/// true, pairs not yet started are skipped and the result is `None`.
pub fn verify_pairs(
    features: &[Features],
    cameras: &[RadialCamera],
    matches: &[PairMatches],
    options: &VerifyOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Option<Vec<TwoViewGeometry>> {
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = matches.len();
    let verified: Option<Vec<Option<TwoViewGeometry>>> = matches
        .par_iter()
        .map(|((i, j), pair_matches)| {
            if should_stop() {
                return None;
            }
            let result = match (features.get(*i), features.get(*j), cameras.get(*i), cameras.get(*j)) {
                (Some(fi), Some(fj), Some(ci), Some(cj)) => {
                    verify_pair(*i, *j, &fi.keypoints, &fj.keypoints, ci, cj, pair_matches, options)
                }
                _ => None,
            };
            progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
            Some(result)
        })
        .collect();
    verified.map(|pairs| pairs.into_iter().flatten().collect())
}
