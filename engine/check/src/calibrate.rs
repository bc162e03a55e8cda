//! Self-calibration of the focal length for the capture check: one focal length per camera
//! group without an EXIF focal length, from the fundamental matrices of the quick pass's verified
//! pairs, and the pairs' relative rotations recomputed with it.
//!
//! Why: essential matrices on a wrong focal length give relative rotations whose angles are
//! shrunk (too long a focal) or stretched, so chained around the object they misplace the
//! photos' viewing directions and the coverage gap. With the principal point at the image centre,
//! `E = Kⱼᵀ F Kᵢ` is an essential matrix (two equal singular values) only at the true focal
//! length (Mendonça–Cipolla). Each pair's cost is how far `E` is from that; the group's cost is
//! the median over its well-matched pairs, minimised on a log grid of multiples of the prior and
//! refined by a parabola. A pair whose optical axes meet at a point equidistant from both
//! cameras fits every focal length (Sturm et al., "Focal length calibration from two views",
//! 2005): an orbit at a constant distance aimed at the object's centre is close to that, and
//! noisy pairs (few features, a dominant ground plane) flatten the cost further. Then the minimum
//! is not sharp, the focal length stays a guess, and the coverage gap is only bounded over the
//! plausible focal lengths ([`gap_bounds`]).

use glam::{DMat3, DVec3};
use rayon::prelude::*;

use crate::advice::median;
use crate::overlap::{EpipolarPair, OverlapGraph, coverage_gap};
use crate::{FocalEstimate, FocalSource};
use kiln_core::photos::PhotoSet;
use kiln_vision::features::Keypoint;
use kiln_vision::geometry::linalg::svd3;
use kiln_vision::model::RadialCamera;
use kiln_vision::verify::{VerifyOptions, verify_pair};

/// Pairs with fewer inliers (at the quick pass's 640 px) take no part in the focal estimate.
/// Measured on fox at its true focal length: pairs with ≥ 100 inliers give rotations within 0.4°
/// (median) of the reference poses, those with 30–100 inliers 11–32° (matches on few, distant
/// features; their fundamental matrices are poorly conditioned).
const MIN_CALIBRATION_INLIERS: usize = 100;

/// Fewer well-matched pairs than this and a group's focal length stays the prior: a median over
/// fewer pairs is swayed by one bad fundamental matrix.
const MIN_CALIBRATION_PAIRS: usize = 8;

/// The grid of focal lengths searched, as multiples of the prior (1.2 × the longer side):
/// 0.36–3 × the longer side, from a wide phone lens (0.7×) to a short telephoto, with margin.
const FOCAL_GRID: (f64, f64) = (0.3, 2.5);

/// Ratio between neighbouring focal lengths of the grid: 4 % steps, finer than the parabola's
/// refinement needs.
const FOCAL_GRID_STEP: f64 = 1.04;

/// A focal length is trusted when the cost a quarter away on either side (×1.25, ÷1.25) is at
/// least this many times the minimum. Measured: fox's minimum (1366 px against COLMAP's 1375 px)
/// rises 2.5× there; bunny-synth's, flattened by its ground plane and orbit, 1.07× (all 80
/// views) and 1.08× (half of them).
const MIN_SHARPNESS: f64 = 1.6;

/// How far (ratio) from the minimum [`MIN_SHARPNESS`] is measured.
const SHARPNESS_SPAN: f64 = 1.25;

/// Costs under this count as this in [`MIN_SHARPNESS`]'s ratio: σ₂ within 0.02 % of σ₁ is far
/// below what pixel noise leaves (fox's minimum is 0.0045), so a cost this low everywhere means
/// the pairs fit every focal length (the degenerate case), not a sharp minimum.
const COST_FLOOR: f64 = 1e-4;

/// The focal length of every camera group: from EXIF, self-calibrated, or the prior guessed. For
/// self-calibrated groups `graph`'s cameras take the new focal length and the pairs touching them
/// are verified again on their inliers, giving their rotations on the calibrated cameras.
pub fn calibrate_focals(graph: &mut OverlapGraph, listed: &PhotoSet, verify: &VerifyOptions) -> Vec<FocalEstimate> {
    let estimates: Vec<FocalEstimate> = listed
        .groups
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let members = |i: &usize| listed.photos.get(*i).is_some_and(|p| p.group == g);
            let multiplier = if group.focal_from_exif { None } else { focal_multiplier(graph, &members) };
            let (focal_px, source) = match (group.focal_from_exif, multiplier) {
                (true, _) => (group.prior.focal, FocalSource::Exif),
                (false, Some(k)) => (k * group.prior.focal, FocalSource::SelfCalibrated),
                (false, None) => (group.prior.focal, FocalSource::Guessed),
            };
            FocalEstimate { camera: group.key.clone(), focal_px, prior_px: group.prior.focal, source }
        })
        .collect();
    let group_of = |i: usize| listed.photos.get(i).map(|p| p.group);
    let recalibrated: Vec<usize> = graph
        .cameras
        .keys()
        .copied()
        .filter(|&i| {
            group_of(i).and_then(|g| estimates.get(g)).is_some_and(|e| e.source == FocalSource::SelfCalibrated)
        })
        .collect();
    for &i in &recalibrated {
        let Some(estimate) = group_of(i).and_then(|g| estimates.get(g)) else { continue };
        if let Some(camera) = graph.cameras.get_mut(&i) {
            camera.focal *= estimate.focal_px / estimate.prior_px;
        }
    }
    reverify_rotations(graph, &|i| recalibrated.binary_search(&i).is_ok(), verify);
    estimates
}

/// The focal lengths, as multiples of the 1.2 × longer side prior, that bound a guessed focal
/// length: 0.48–1.5 × the longer side, fields of view of 37°–92° along it (an ultra-wide phone
/// lens to a short telephoto). Fox's COLMAP focal length is 0.60 × the prior, bunny-synth's 0.69.
const GUESSED_FOCAL_BOUNDS: [f64; 2] = [0.4, 1.25];

/// The narrowest and widest coverage gap of `component` (degrees) over the plausible focal
/// lengths of the photos `guessed` names (the others keep theirs): with the pairs touching them
/// verified again at each bound, and the prior's rotations already in `graph`. `None` when any
/// of them gives no gap.
pub fn gap_bounds(
    graph: &OverlapGraph,
    component: &[usize],
    guessed: &(dyn Fn(usize) -> bool + Sync),
    verify: &VerifyOptions,
) -> Option<(f64, f64)> {
    let mut gaps = vec![coverage_gap(graph, component)?.degrees];
    for multiplier in GUESSED_FOCAL_BOUNDS {
        let mut scaled = graph.clone();
        for (_, camera) in scaled.cameras.iter_mut().filter(|(i, _)| guessed(**i)) {
            camera.focal *= multiplier;
        }
        reverify_rotations(&mut scaled, guessed, verify);
        gaps.push(coverage_gap(&scaled, component)?.degrees);
    }
    tracing::debug!(?gaps, "coverage gap over the plausible focal lengths");
    Some((gaps.iter().copied().fold(f64::INFINITY, f64::min), gaps.iter().copied().fold(0.0, f64::max)))
}

/// The multiple of the prior focal length that makes the pairs among `members` most nearly
/// calibrated, when the minimum is sharp.
fn focal_multiplier(graph: &OverlapGraph, members: &dyn Fn(&usize) -> bool) -> Option<f64> {
    let pairs: Vec<(&EpipolarPair, &RadialCamera, &RadialCamera)> = graph
        .epipolar
        .iter()
        .filter(|((i, j), pair)| members(i) && members(j) && pair.inliers.len() >= MIN_CALIBRATION_INLIERS)
        .filter_map(|(&(i, j), pair)| Some((pair, graph.cameras.get(&i)?, graph.cameras.get(&j)?)))
        .collect();
    if pairs.len() < MIN_CALIBRATION_PAIRS {
        return None;
    }
    let cost = |k: f64| median(pairs.iter().filter_map(|(pair, ci, cj)| calibration_cost(pair, ci, cj, k)));
    let steps = ((FOCAL_GRID.1 / FOCAL_GRID.0).ln() / FOCAL_GRID_STEP.ln()).ceil() as i32;
    let grid: Vec<(f64, f64)> =
        (0..=steps).map(|s| FOCAL_GRID.0 * FOCAL_GRID_STEP.powi(s)).filter_map(|k| Some((k, cost(k)?))).collect();
    let best = (1..grid.len().saturating_sub(1)).min_by(|&a, &b| grid[a].1.total_cmp(&grid[b].1))?;
    if grid[best].1 > grid[best - 1].1 || grid[best].1 > grid[best + 1].1 {
        return None;
    }
    let k = parabola_vertex(grid[best - 1], grid[best], grid[best + 1]);
    let minimum = cost(k)?.max(COST_FLOOR);
    let sharpness = cost(k * SHARPNESS_SPAN)?.min(cost(k / SHARPNESS_SPAN)?) / minimum;
    tracing::debug!(pairs = pairs.len(), multiplier = k, minimum, sharpness, "focal length self-calibration");
    (sharpness >= MIN_SHARPNESS).then_some(k)
}

/// Mendonça–Cipolla cost of a pair at focal multiplier `k`: `(σ₁ − σ₂) / (σ₁ + σ₂)` of
/// `E = Kⱼᵀ F Kᵢ` (0 for an essential matrix).
fn calibration_cost(pair: &EpipolarPair, ci: &RadialCamera, cj: &RadialCamera, k: f64) -> Option<f64> {
    let essential = intrinsics(cj, k * cj.focal).transpose() * pair.fundamental * intrinsics(ci, k * ci.focal);
    let (_, s, _) = svd3(essential)?;
    let cost = (s.x - s.y) / (s.x + s.y);
    cost.is_finite().then_some(cost)
}

/// The pinhole matrix `K` of `camera` with focal length `focal` (pixels).
fn intrinsics(camera: &RadialCamera, focal: f64) -> DMat3 {
    DMat3::from_cols(DVec3::new(focal, 0.0, 0.0), DVec3::new(0.0, focal, 0.0), DVec3::new(camera.cx, camera.cy, 1.0))
}

/// The abscissa of the vertex of the parabola through three grid points, in log space (the grid
/// is geometric); the middle point when they are collinear.
fn parabola_vertex(a: (f64, f64), b: (f64, f64), c: (f64, f64)) -> f64 {
    let (xa, xb, xc) = (a.0.ln(), b.0.ln(), c.0.ln());
    let denominator = (xb - xa) * (b.1 - c.1) - (xb - xc) * (b.1 - a.1);
    if denominator.abs() <= f64::EPSILON {
        return b.0;
    }
    let numerator = (xb - xa).powi(2) * (b.1 - c.1) - (xb - xc).powi(2) * (b.1 - a.1);
    (xb - 0.5 * numerator / denominator).clamp(xa, xc).exp()
}

/// Verifies again, on their inliers and `graph`'s cameras, the pairs touching a photo that
/// `changed` names, replacing their rotations (or dropping them when no pose is found).
fn reverify_rotations(graph: &mut OverlapGraph, changed: &(dyn Fn(usize) -> bool + Sync), verify: &VerifyOptions) {
    let cameras = &graph.cameras;
    let updated: Vec<((usize, usize), Option<DMat3>)> = graph
        .epipolar
        .par_iter()
        .filter(|((i, j), _)| changed(*i) || changed(*j))
        .map(|(&(i, j), pair)| {
            let rotation = match (cameras.get(&i), cameras.get(&j)) {
                (Some(ci), Some(cj)) => rotation_on_inliers(i, j, pair, ci, cj, verify),
                _ => None,
            };
            ((i, j), rotation)
        })
        .collect();
    for (pair, rotation) in updated {
        match rotation {
            Some(rotation) => graph.rotations.insert(pair, rotation),
            None => graph.rotations.remove(&pair),
        };
    }
}

/// `camera_j_from_camera_i` of a pair verified again on its inlier pixels with the given cameras.
fn rotation_on_inliers(
    i: usize,
    j: usize,
    pair: &EpipolarPair,
    ci: &RadialCamera,
    cj: &RadialCamera,
    verify: &VerifyOptions,
) -> Option<DMat3> {
    let keypoint = |p: glam::DVec2| Keypoint { x: p.x as f32, y: p.y as f32, scale: 1.0, orientation: 0.0 };
    let keypoints_i: Vec<Keypoint> = pair.inliers.iter().map(|(a, _)| keypoint(*a)).collect();
    let keypoints_j: Vec<Keypoint> = pair.inliers.iter().map(|(_, b)| keypoint(*b)).collect();
    let matches: Vec<(u32, u32)> = (0..pair.inliers.len() as u32).map(|k| (k, k)).collect();
    let geometry = verify_pair(i, j, &keypoints_i, &keypoints_j, ci, cj, &matches, verify)?;
    Some(geometry.relative_pose?.rotation)
}

#[cfg(test)]
mod tests {
    use glam::DVec2;

    use super::*;
    use kiln_core::rng::Pcg32;
    use kiln_vision::geometry::linalg::skew;
    use kiln_vision::model::RigidCv;

    /// Twelve cameras with focal length 500 px (640×480) on a ring around random points, each
    /// verified with its next two; each at a random height and aimed at the centre plus a random
    /// offset, both up to `jitter`. The graph's cameras carry `prior_focal`.
    fn ring_scene(jitter: f64, prior_focal: f64) -> (OverlapGraph, Vec<RigidCv>) {
        let mut rng = Pcg32::new(7);
        let mut uniform = || 2.0 * f64::from(rng.uniform()) - 1.0;
        let points: Vec<DVec3> = (0..150).map(|_| DVec3::new(uniform(), uniform(), uniform()) * 0.5).collect();
        let poses: Vec<RigidCv> = (0..12)
            .map(|k| {
                let angle = f64::from(k) * 30f64.to_radians();
                let position = DVec3::new(4.0 * angle.cos(), 4.0 * angle.sin(), 1.0 + 0.4 * jitter * uniform());
                let target = DVec3::new(uniform(), uniform(), uniform()) * jitter;
                RigidCv::look_at(position, target, DVec3::Z)
            })
            .collect();
        let truth = RadialCamera::pinhole(640, 480, 500.0);
        let k = intrinsics(&truth, truth.focal);
        let pairs: Vec<(usize, usize)> =
            (0..12).flat_map(|i| [(i, (i + 1) % 12), (i, (i + 2) % 12)]).map(|(i, j)| (i.min(j), i.max(j))).collect();
        let mut graph = OverlapGraph::from_edges(12, pairs.iter().copied());
        for i in 0..12 {
            graph.cameras.insert(i, RadialCamera::pinhole(640, 480, prior_focal));
        }
        let project = |pose: &RigidCv, p: DVec3| {
            let x = k * pose.transform_point(p);
            DVec2::new(x.x / x.z, x.y / x.z)
        };
        for &(i, j) in &pairs {
            let rotation = poses[j].rotation * poses[i].rotation.transpose();
            let j_from_i = RigidCv { rotation, translation: poses[j].translation - rotation * poses[i].translation };
            let fundamental = k.inverse().transpose() * skew(j_from_i.translation) * j_from_i.rotation * k.inverse();
            let inliers = points.iter().map(|&p| (project(&poses[i], p), project(&poses[j], p))).collect();
            graph.epipolar.insert((i, j), EpipolarPair { fundamental, inliers });
        }
        (graph, poses)
    }

    #[test]
    fn the_focal_length_is_found_when_the_views_aim_apart() {
        let (graph, _) = ring_scene(0.8, 768.0);
        let k = focal_multiplier(&graph, &|_| true).expect("a sharp minimum");
        assert!((k * 768.0 - 500.0).abs() < 5.0, "{} px", k * 768.0);
    }

    #[test]
    fn views_aimed_through_one_point_at_one_distance_leave_the_focal_length_open() {
        // Every pair's optical axes meet at a point equidistant from both cameras: `Kᵀ F K` is
        // essential at any focal length.
        let (graph, _) = ring_scene(0.0, 768.0);
        assert_eq!(focal_multiplier(&graph, &|_| true), None);
    }

    #[test]
    fn verifying_again_on_the_true_focal_length_gives_the_true_rotations() {
        let (mut graph, poses) = ring_scene(0.8, 500.0);
        reverify_rotations(&mut graph, &|_| true, &VerifyOptions::default());
        assert_eq!(graph.rotations.len(), graph.epipolar.len());
        for (&(i, j), rotation) in &graph.rotations {
            let truth = poses[j].rotation * poses[i].rotation.transpose();
            let error = kiln_sfm::eval::rotation_angle_deg(&(*rotation * truth.transpose()));
            assert!(error < 0.01, "pair {i}-{j}: {error}°");
        }
    }
}
