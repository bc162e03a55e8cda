//! The photometric training loss `L = (1 − λ)·L1 + λ·(1 − SSIM)` (3DGS), and its gradient with
//! respect to the rendered image.
//!
//! `L1` is the mean absolute difference over every pixel and channel; SSIM is the zero-padded,
//! same-size variant of [`super::ssim`]. The L1 subgradient at equality is taken as 0.

use kiln_core::image_buf::ImageRgb;

use crate::train::backend::StepLoss;
use crate::train::ssim::ssim_with_grad;

/// The loss of `rendered` against `target` (same size) and `∂L/∂rendered`.
/// [`StepLoss::ssim`] holds the SSIM value itself (1 is a perfect match), not `1 − SSIM`.
pub fn loss_with_grad(rendered: &ImageRgb, target: &ImageRgb, ssim_weight: f32) -> (StepLoss, ImageRgb) {
    let n = (rendered.pixels.len() * 3).max(1) as f32;
    let (ssim, ssim_grad) = ssim_with_grad(rendered, target);
    let l1_scale = (1.0 - ssim_weight) / n;
    let mut l1_sum = 0.0f64;
    let mut grad = ssim_grad;
    for ((g, r), t) in grad.pixels.iter_mut().zip(&rendered.pixels).zip(&target.pixels) {
        for c in 0..3 {
            let d = r[c] - t[c];
            l1_sum += d.abs() as f64;
            let sign = if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            };
            // d(λ(1 − SSIM))/dx = −λ dSSIM/dx.
            g[c] = l1_scale * sign - ssim_weight * g[c];
        }
    }
    let l1 = (l1_sum / n as f64) as f32;
    let total = (1.0 - ssim_weight) * l1 + ssim_weight * (1.0 - ssim);
    (StepLoss { total, l1, ssim }, grad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, seed: u32) -> ImageRgb {
        let mut s = seed.wrapping_mul(747796405).wrapping_add(2891336453);
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32
        };
        ImageRgb { width: w, height: h, pixels: (0..w * h).map(|_| [next(), next(), next()]).collect() }
    }

    #[test]
    fn loss_gradient_matches_central_differences() {
        let (w, h) = (16, 12);
        let target = image(w, h, 7);
        // Offsets of at least 0.05 keep every pixel away from the L1 kink at r = t.
        let mut rendered = target.clone();
        for (i, p) in rendered.pixels.iter_mut().enumerate() {
            for (c, v) in p.iter_mut().enumerate() {
                *v += if (i + c) % 2 == 0 { 0.1 } else { -0.07 };
            }
        }
        let (loss, grad) = loss_with_grad(&rendered, &target, 0.2);
        assert!(loss.total > 0.0 && loss.l1 > 0.05 && loss.ssim < 1.0);
        let eps = 1e-2_f32;
        for &(i, c) in &[(0usize, 0usize), (5, 1), (w as usize * 6 + 7, 2), (w as usize * h as usize - 1, 1)] {
            let (mut rp, mut rm) = (rendered.clone(), rendered.clone());
            rp.pixels[i][c] += eps;
            rm.pixels[i][c] -= eps;
            let fd =
                (loss_with_grad(&rp, &target, 0.2).0.total - loss_with_grad(&rm, &target, 0.2).0.total) / (2.0 * eps);
            let g = grad.pixels[i][c];
            assert!((fd - g).abs() <= 2e-3 * g.abs().max(1e-3), "pixel {i} channel {c}: analytic {g} vs fd {fd}");
        }
    }

    #[test]
    fn perfect_render_has_zero_loss() {
        let target = image(20, 10, 3);
        let (loss, grad) = loss_with_grad(&target, &target, 0.2);
        assert!(loss.total.abs() < 1e-6 && loss.l1 == 0.0 && (loss.ssim - 1.0).abs() < 1e-6);
        assert!(grad.pixels.iter().flatten().all(|g| g.abs() < 1e-6));
    }
}
