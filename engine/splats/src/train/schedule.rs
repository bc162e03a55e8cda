//! What changes with the step count: decayed learning rates, the active SH degree and when to
//! densify or reset opacities.
//!
//! Steps here are 1-based counts of completed optimisation steps, as in 3DGS's `iteration`.

use crate::train::backend::LearningRates;
use crate::train::config::TrainConfig;

/// Learning rates for step `step` of a run in a scene of size `scene_extent`. The position rate
/// decays exponentially (log-linear) from `means_start` to `means_end` over the run.
pub fn learning_rates(config: &TrainConfig, scene_extent: f32, step: u32) -> LearningRates {
    let lr = &config.lr;
    let t = (step as f32 / config.steps.max(1) as f32).clamp(0.0, 1.0);
    let means = (lr.means_start.ln() * (1.0 - t) + lr.means_end.ln() * t).exp() * scene_extent;
    LearningRates {
        means,
        log_scales: lr.log_scales,
        rotations: lr.rotations,
        opacity_logits: lr.opacity_logits,
        sh_dc: lr.sh_dc,
        sh_rest: lr.sh_dc / lr.sh_rest_divisor,
    }
}

/// SH degree in use during step `step`.
pub fn sh_degree(config: &TrainConfig, step: u32) -> u32 {
    (step / config.sh_degree_interval.max(1)).min(config.max_sh_degree)
}

/// Whether densification statistics are still being gathered after step `step`.
pub fn gathers_stats(config: &TrainConfig, step: u32) -> bool {
    step < config.densify.end
}

/// Whether to clone, split and prune after step `step`.
pub fn densifies(config: &TrainConfig, step: u32) -> bool {
    let d = &config.densify;
    step > d.start && step < d.end && d.interval > 0 && step.is_multiple_of(d.interval)
}

/// Whether to reset opacities after step `step`.
pub fn resets_opacity(config: &TrainConfig, step: u32) -> bool {
    let d = &config.densify;
    d.opacity_reset_interval > 0 && step < d.end && step.is_multiple_of(d.opacity_reset_interval)
}

/// Whether the pruning of oversized splats is active after step `step` (3DGS starts it after the
/// first opacity reset, when the scene's large-scale structure has formed).
pub fn prunes_large(config: &TrainConfig, step: u32) -> bool {
    step > config.densify.opacity_reset_interval
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_rate_decays_from_start_to_end() {
        let config = TrainConfig::for_steps(1000);
        let first = learning_rates(&config, 2.0, 0).means;
        let mid = learning_rates(&config, 2.0, 500).means;
        let last = learning_rates(&config, 2.0, 1000).means;
        assert!((first - 3.2e-4).abs() < 1e-9 && (last - 3.2e-6).abs() < 1e-10);
        assert!((mid - 3.2e-5).abs() < 1e-8, "geometric midpoint, got {mid}");
        assert_eq!(learning_rates(&config, 2.0, 10).sh_rest, config.lr.sh_dc / 20.0);
    }

    #[test]
    fn sh_degree_grows_to_its_maximum() {
        let config = TrainConfig::for_steps(3000);
        assert_eq!(config.sh_degree_interval, 100);
        assert_eq!(sh_degree(&config, 0), 0);
        assert_eq!(sh_degree(&config, 199), 1);
        assert_eq!(sh_degree(&config, 2999), 3);
    }

    #[test]
    fn densification_window_matches_the_scaled_recipe() {
        let config = TrainConfig::for_steps(30_000);
        assert!(!densifies(&config, 1500) && densifies(&config, 1600) && !densifies(&config, 15_000));
        assert!(resets_opacity(&config, 3000) && !resets_opacity(&config, 15_000));
        assert!(gathers_stats(&config, 14_999) && !gathers_stats(&config, 15_000));
    }
}
