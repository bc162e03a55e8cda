//! Adaptive density control on a [`TrainState`]: gathering per-splat statistics, cloning,
//! splitting, pruning and opacity resets. Both backends use it (the GPU one through
//! `state()` / `set_state()`), so the model grows the same way on either.
//!
//! # Why classic 3DGS density control and not MCMC relocation
//!
//! We use the original 3DGS scheme (Kerbl et al. 2023): splats whose mean screen-space positional
//! gradient exceeds a threshold are *cloned* when small and *split* into two smaller samples when
//! large; nearly transparent and oversized splats are pruned; opacities are periodically reset
//! so that occluded floaters can be pruned. MCMC-style relocation (Kheradmand et al. 2024) grows
//! the model to a fixed budget, needs an opacity and a scale regulariser plus position noise
//! scaled by opacity, and its advantage shows mostly on real, badly initialised captures at long
//! schedules. The classic rule has fewer moving parts, is the behaviour users compare against,
//! and its thresholds are known for short schedules. A splat budget (`max_splats`) keeps CPU
//! training bounded: when more splats qualify than fit, those with the largest gradient win.
//!
//! New splats start with zero Adam moments, as in 3DGS; statistics are cleared after every pass.

use glam::{Quat, Vec3};

use crate::render::{ProjectedGrad, ProjectedSplat};
use kiln_core::rng::Pcg32;
use kiln_core::splats::{SplatGrads, Splats, logit, sigmoid};

use crate::train::backend::{AdamMoments, DensifyStats, TrainState};
use crate::train::config::DensifyConfig;

/// A split replaces one splat with this many (3DGS's `N = 2`).
const SPLIT_CHILDREN: usize = 2;
/// Children of a split are this much smaller than their parent (3DGS: `1 / (0.8 · N)`).
const SPLIT_SCALE_DIVISOR: f32 = 0.8 * SPLIT_CHILDREN as f32;
/// Opacity after a reset (3DGS): low enough that splats must re-earn their opacity, high enough
/// that they still receive gradients.
const RESET_OPACITY: f32 = 0.01;

/// What one density-control pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DensifyReport {
    pub cloned: usize,
    pub split: usize,
    pub pruned: usize,
}

/// Adds one view's statistics: for every splat visible in a `width × height` view, the norm of its
/// screen-space position gradient in NDC units and its screen radius relative to the image.
pub fn accumulate_stats(
    stats: &mut DensifyStats,
    projected: &[ProjectedSplat],
    grads: &[ProjectedGrad],
    width: u32,
    height: u32,
) {
    if stats.grad2d_sum.len() != projected.len() {
        *stats = DensifyStats::zeros(projected.len());
    }
    // d(ndc)/d(pixel) = 2 / side, so ∂L/∂ndc = ∂L/∂pixel · side / 2.
    let (half_w, half_h) = (width as f32 * 0.5, height as f32 * 0.5);
    let side = width.max(height).max(1) as f32;
    for (i, (p, g)) in projected.iter().zip(grads).enumerate() {
        if p.radius == 0 {
            continue;
        }
        let (gx, gy) = (g.mean2d[0] * half_w, g.mean2d[1] * half_h);
        stats.grad2d_sum[i] += (gx * gx + gy * gy).sqrt();
        stats.visible_count[i] += 1;
        stats.max_radius[i] = stats.max_radius[i].max(p.radius as f32 / side);
    }
}

/// Clones, splits and prunes (see the module doc). `prune_large` enables the pruning of splats
/// that are large on screen or in the world. Statistics are cleared afterwards.
pub fn densify_and_prune(
    state: &mut TrainState,
    config: &DensifyConfig,
    max_splats: usize,
    scene_extent: f32,
    prune_large: bool,
    rng: &mut Pcg32,
) -> DensifyReport {
    let n = state.splats.len();
    ensure_moments(state);
    let mean_grad: Vec<f32> = (0..n)
        .map(|i| match state.stats.visible_count.get(i) {
            Some(&c) if c > 0 => state.stats.grad2d_sum[i] / c as f32,
            _ => 0.0,
        })
        .collect();
    let mut candidates: Vec<usize> = (0..n).filter(|&i| mean_grad[i] >= config.grad_threshold).collect();
    candidates.sort_by(|&a, &b| mean_grad[b].total_cmp(&mean_grad[a]).then(a.cmp(&b)));
    candidates.truncate(max_splats.saturating_sub(n));

    let dense_scale = config.percent_dense * scene_extent;
    let mut replaced = vec![false; n];
    let mut report = DensifyReport::default();
    for &i in &candidates {
        if max_scale(&state.splats, i) <= dense_scale {
            push_copy(state, i);
            report.cloned += 1;
        } else {
            for _ in 0..SPLIT_CHILDREN {
                push_split_child(state, i, rng);
            }
            replaced[i] = true;
            report.split += 1;
        }
    }

    let splats = &state.splats;
    let max_world = config.max_world_fraction * scene_extent;
    let keep: Vec<bool> = (0..splats.len())
        .map(|i| {
            let too_faint = sigmoid(splats.opacity_logits[i]) < config.min_opacity;
            let too_large = prune_large
                && (config.max_screen_fraction.zip(state.stats.max_radius.get(i)).is_some_and(|(limit, &r)| r > limit)
                    || max_scale(splats, i) > max_world);
            !(replaced.get(i).copied().unwrap_or(false) || too_faint || too_large)
        })
        .collect();
    report.pruned = keep.iter().filter(|k| !**k).count() - report.split;
    retain(state, &keep);
    state.stats = DensifyStats::zeros(state.splats.len());
    report
}

/// Caps every opacity at [`RESET_OPACITY`] and clears the opacity moments.
pub fn reset_opacity(state: &mut TrainState) {
    ensure_moments(state);
    let cap = logit(RESET_OPACITY);
    for o in &mut state.splats.opacity_logits {
        *o = o.min(cap);
    }
    state.adam.m.opacity_logits.fill(0.0);
    state.adam.v.opacity_logits.fill(0.0);
}

fn ensure_moments(state: &mut TrainState) {
    if state.adam.len() != state.splats.len() {
        state.adam = AdamMoments::zeros(state.splats.len());
    }
}

fn max_scale(splats: &Splats, i: usize) -> f32 {
    splats.log_scales[i].iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)).exp()
}

fn push_zero_moment(g: &mut SplatGrads) {
    g.means.push([0.0; 3]);
    g.log_scales.push([0.0; 3]);
    g.rotations.push([0.0; 4]);
    g.opacity_logits.push(0.0);
    g.sh.push(Default::default());
}

fn push_row(state: &mut TrainState, mean: [f32; 3], log_scale: [f32; 3], i: usize) {
    let s = &mut state.splats;
    let (rotation, opacity, sh) = (s.rotations[i], s.opacity_logits[i], s.sh[i]);
    s.push(mean, log_scale, rotation, opacity, sh);
    push_zero_moment(&mut state.adam.m);
    push_zero_moment(&mut state.adam.v);
}

fn push_copy(state: &mut TrainState, i: usize) {
    let (mean, log_scale) = (state.splats.means[i], state.splats.log_scales[i]);
    push_row(state, mean, log_scale, i);
}

/// A child of splat `i`: centre drawn from the parent's Gaussian, scale divided by
/// [`SPLIT_SCALE_DIVISOR`].
fn push_split_child(state: &mut TrainState, i: usize, rng: &mut Pcg32) {
    let s = &state.splats;
    let scale = Vec3::from(s.log_scales[i].map(f32::exp));
    let [w, x, y, z] = s.rotations[i];
    let rotation = Quat::from_xyzw(x, y, z, w).normalize();
    let offset_local = Vec3::new(rng.normal(), rng.normal(), rng.normal()) * scale;
    let mean = (Vec3::from(s.means[i]) + rotation * offset_local).to_array();
    let log_scale = s.log_scales[i].map(|l| l - SPLIT_SCALE_DIVISOR.ln());
    push_row(state, mean, log_scale, i);
}

fn retain(state: &mut TrainState, keep: &[bool]) {
    state.splats.retain_indices(|i| keep[i]);
    for g in [&mut state.adam.m, &mut state.adam.v] {
        retain_grads(g, keep);
    }
}

fn retain_grads(g: &mut SplatGrads, keep: &[bool]) {
    fn filter<T>(v: &mut Vec<T>, keep: &[bool]) {
        let mut i = 0;
        v.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
    filter(&mut g.means, keep);
    filter(&mut g.log_scales, keep);
    filter(&mut g.rotations, keep);
    filter(&mut g.opacity_logits, keep);
    filter(&mut g.sh, keep);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::TrainConfig;

    fn state_with(log_scales: &[f32], opacities: &[f32]) -> TrainState {
        let mut splats = Splats::default();
        for (i, (&s, &o)) in log_scales.iter().zip(opacities).enumerate() {
            splats.push([i as f32, 0.0, 0.0], [s; 3], [1.0, 0.0, 0.0, 0.0], logit(o), Default::default());
        }
        let n = splats.len();
        TrainState { splats, adam: AdamMoments::zeros(n), stats: DensifyStats::zeros(n) }
    }

    #[test]
    fn clones_small_splits_large_and_prunes_faint() {
        let config = TrainConfig::for_steps(30_000).densify;
        // Scene extent 10: splats up to 0.1 are "small".
        let mut state =
            state_with(&[(0.05f32).ln(), (0.5f32).ln(), (0.05f32).ln(), (0.05f32).ln()], &[0.5, 0.5, 0.5, 0.001]);
        state.adam.m.means[0] = [1.0; 3];
        state.stats.grad2d_sum = vec![1e-3, 1e-3, 1e-5, 0.0];
        state.stats.visible_count = vec![2, 1, 1, 0];
        let report = densify_and_prune(&mut state, &config, 100, 10.0, false, &mut Pcg32::new(1));
        assert_eq!(report, DensifyReport { cloned: 1, split: 1, pruned: 1 });
        // Kept: 0, 2, then (largest gradient first) two children of 1 and the clone of 0.
        assert_eq!(state.splats.len(), 5);
        assert_eq!(state.adam.len(), 5);
        assert_eq!(state.stats.grad2d_sum, vec![0.0; 5]);
        assert_eq!(state.adam.m.means[0], [1.0; 3], "survivors keep their moments");
        assert_eq!(state.adam.m.means[2], [0.0; 3], "new splats start with zero moments");
        assert_eq!(state.splats.means[4], state.splats.means[0], "a clone sits on its parent");
        let child_scale = state.splats.log_scales[3][0].exp();
        assert!((child_scale - 0.5 / 1.6).abs() < 1e-5);
        let offset = Vec3::from(state.splats.means[3]) - Vec3::new(1.0, 0.0, 0.0);
        assert!(offset.length() > 0.0 && offset.length() < 5.0 * 0.5, "children are sampled from the parent");
    }

    #[test]
    fn the_splat_budget_keeps_the_largest_gradients() {
        let config = TrainConfig::for_steps(30_000).densify;
        let mut state = state_with(&[(0.01f32).ln(); 4], &[0.5; 4]);
        state.stats.grad2d_sum = vec![1e-3, 5e-3, 2e-3, 4e-3];
        state.stats.visible_count = vec![1; 4];
        let report = densify_and_prune(&mut state, &config, 6, 10.0, false, &mut Pcg32::new(1));
        assert_eq!(report.cloned, 2);
        assert_eq!(state.splats.means[4], state.splats.means[1]);
        assert_eq!(state.splats.means[5], state.splats.means[3]);
    }

    #[test]
    fn prunes_large_splats_only_when_asked() {
        let config = DensifyConfig { max_screen_fraction: Some(0.1), ..TrainConfig::for_steps(30_000).densify };
        let mut state = state_with(&[(0.01f32).ln(), (5.0f32).ln()], &[0.5, 0.5]);
        state.stats.max_radius = vec![0.5, 0.0];
        let report = densify_and_prune(&mut state.clone(), &config, 10, 10.0, false, &mut Pcg32::new(1));
        assert_eq!(report.pruned, 0);
        let report = densify_and_prune(&mut state, &config, 10, 10.0, true, &mut Pcg32::new(1));
        assert_eq!(report.pruned, 2, "one large on screen, one large in the world");
    }

    #[test]
    fn opacity_reset_caps_and_clears_moments() {
        let mut state = state_with(&[0.0, 0.0], &[0.9, 0.001]);
        state.adam.v.opacity_logits = vec![3.0, 3.0];
        reset_opacity(&mut state);
        assert!((sigmoid(state.splats.opacity_logits[0]) - RESET_OPACITY).abs() < 1e-6);
        assert!((sigmoid(state.splats.opacity_logits[1]) - 0.001).abs() < 1e-6);
        assert_eq!(state.adam.v.opacity_logits, vec![0.0, 0.0]);
    }

    #[test]
    fn stats_use_ndc_units_and_skip_culled_splats() {
        let projected = [ProjectedSplat { radius: 10, ..Default::default() }, ProjectedSplat::default()];
        let grads = [
            ProjectedGrad { mean2d: [0.01, 0.0], ..Default::default() },
            ProjectedGrad { mean2d: [1.0, 1.0], ..Default::default() },
        ];
        let mut stats = DensifyStats::default();
        accumulate_stats(&mut stats, &projected, &grads, 200, 100);
        assert!((stats.grad2d_sum[0] - 1.0).abs() < 1e-6);
        assert_eq!(stats.visible_count, vec![1, 0]);
        assert!((stats.max_radius[0] - 0.05).abs() < 1e-6);
        assert_eq!(stats.grad2d_sum[1], 0.0);
    }
}
