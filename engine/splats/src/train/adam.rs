//! The Adam optimiser over [`Splats`], with one learning rate per parameter group.
//!
//! Same update as PyTorch's `Adam` that 3DGS uses: `m ← β1 m + (1 − β1) g`,
//! `v ← β2 v + (1 − β2) g²`, `p ← p − lr / (1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)`.
//! Splats with a zero gradient (not visible this step) still move by their momentum, as in 3DGS.

use rayon::prelude::*;

use kiln_core::splats::{SH_COEFFS, SplatGrads, Splats};

use crate::train::backend::{AdamMoments, LearningRates};

/// First-moment decay (3DGS, PyTorch default).
pub const BETA1: f32 = 0.9;
/// Second-moment decay (3DGS, PyTorch default).
pub const BETA2: f32 = 0.999;
/// 3DGS's `eps = 1e-15`: tiny, so that even parameters with minute gradients take full-size
/// steps (SH coefficients of rarely-seen directions).
pub const EPSILON: f32 = 1e-15;

/// Floats per splat in the SH block: 16 coefficients × 3 channels.
const SH_FLOATS: usize = SH_COEFFS * 3;

impl AdamMoments {
    /// Zero moments for `n` splats.
    pub fn zeros(n: usize) -> Self {
        Self { m: SplatGrads::zeros(n), v: SplatGrads::zeros(n) }
    }

    /// Number of splats the moments are sized for.
    pub fn len(&self) -> usize {
        self.m.means.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bias corrections `(1 − β1ᵗ, √(1 − β2ᵗ))` for 1-based step `t`.
pub(crate) fn bias_corrections(step: u32) -> (f32, f32) {
    let t = step.max(1) as i32;
    (1.0 - BETA1.powi(t), (1.0 - BETA2.powi(t)).sqrt())
}

/// One Adam update of a flat parameter block; `lr_of(i)` is the learning rate of element `i`.
fn update(
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    step: u32,
    lr_of: impl Fn(usize) -> f32 + Sync,
) {
    let (bc1, bc2_sqrt) = bias_corrections(step);
    (params.par_iter_mut(), grads.par_iter(), m.par_iter_mut(), v.par_iter_mut()).into_par_iter().enumerate().for_each(
        |(i, (p, &g, m, v))| {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *p -= lr_of(i) / bc1 * *m / (v.sqrt() / bc2_sqrt + EPSILON);
        },
    );
}

fn flat<T: bytemuck::Pod>(v: &[T]) -> &[f32] {
    bytemuck::cast_slice(v)
}

fn flat_mut<T: bytemuck::Pod>(v: &mut [T]) -> &mut [f32] {
    bytemuck::cast_slice_mut(v)
}

/// Applies one Adam step (1-based `step`) to every parameter of `splats`. `moments` are resized
/// with zeros if they do not match the number of splats.
pub fn adam_step(splats: &mut Splats, grads: &SplatGrads, moments: &mut AdamMoments, lr: &LearningRates, step: u32) {
    if moments.len() != splats.len() {
        *moments = AdamMoments::zeros(splats.len());
    }
    let AdamMoments { m, v } = moments;
    update(
        flat_mut(&mut splats.means),
        flat(&grads.means),
        flat_mut(&mut m.means),
        flat_mut(&mut v.means),
        step,
        |_| lr.means,
    );
    update(
        flat_mut(&mut splats.log_scales),
        flat(&grads.log_scales),
        flat_mut(&mut m.log_scales),
        flat_mut(&mut v.log_scales),
        step,
        |_| lr.log_scales,
    );
    update(
        flat_mut(&mut splats.rotations),
        flat(&grads.rotations),
        flat_mut(&mut m.rotations),
        flat_mut(&mut v.rotations),
        step,
        |_| lr.rotations,
    );
    update(
        &mut splats.opacity_logits,
        &grads.opacity_logits,
        &mut m.opacity_logits,
        &mut v.opacity_logits,
        step,
        |_| lr.opacity_logits,
    );
    update(flat_mut(&mut splats.sh), flat(&grads.sh), flat_mut(&mut m.sh), flat_mut(&mut v.sh), step, |i| {
        if i % SH_FLOATS < 3 { lr.sh_dc } else { lr.sh_rest }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(value: f32) -> LearningRates {
        LearningRates {
            means: value,
            log_scales: value,
            rotations: value,
            opacity_logits: value,
            sh_dc: value,
            sh_rest: value / 20.0,
        }
    }

    #[test]
    fn first_step_moves_each_parameter_by_its_learning_rate() {
        let mut splats = Splats::default();
        splats.push([0.0; 3], [0.0; 3], [1.0, 0.0, 0.0, 0.0], 0.0, [[0.0; 3]; SH_COEFFS]);
        let mut grads = SplatGrads::zeros(1);
        grads.means[0] = [2.0, -0.5, 0.0];
        grads.opacity_logits[0] = 1e-6;
        grads.sh[0][0] = [1.0, 1.0, 1.0];
        grads.sh[0][5] = [1.0, 1.0, 1.0];
        let mut moments = AdamMoments::default();
        adam_step(&mut splats, &grads, &mut moments, &lr(0.1), 1);
        // With bias correction the first Adam step is lr · sign(g).
        assert!((splats.means[0][0] + 0.1).abs() < 1e-6 && (splats.means[0][1] - 0.1).abs() < 1e-6);
        assert_eq!(splats.means[0][2], 0.0);
        assert!((splats.opacity_logits[0] + 0.1).abs() < 1e-4, "tiny gradients still take full steps");
        assert!((splats.sh[0][0][1] + 0.1).abs() < 1e-6);
        assert!((splats.sh[0][5][2] + 0.005).abs() < 1e-6, "rest coefficients use the rest rate");
        assert_eq!(moments.len(), 1);
    }

    #[test]
    fn adam_minimises_a_quadratic() {
        let mut splats = Splats::default();
        splats.push([3.0, -2.0, 1.0], [0.0; 3], [1.0, 0.0, 0.0, 0.0], 0.0, [[0.0; 3]; SH_COEFFS]);
        let mut moments = AdamMoments::default();
        for step in 1..=500 {
            let mut grads = SplatGrads::zeros(1);
            grads.means[0] = splats.means[0].map(|x| 2.0 * x);
            adam_step(&mut splats, &grads, &mut moments, &lr(0.05), step);
        }
        assert!(splats.means[0].iter().all(|x| x.abs() < 0.05), "{:?}", splats.means[0]);
    }
}
