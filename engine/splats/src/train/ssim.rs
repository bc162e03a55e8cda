//! Structural similarity (SSIM) of two images, with its hand-derived gradient.
//!
//! The variant is the one 3DGS trains and evaluates with: an 11×11 Gaussian window (σ = 1.5)
//! applied as two separable 1D passes, **same-size output with zero padding** (PyTorch's
//! `conv2d(padding = 5)`), per colour channel, averaged over every pixel and channel. Near the
//! border the window weights therefore sum to less than one, exactly as in the reference code.
//!
//! Maths, per channel, with `G∗` the zero-padded blur:
//! `μx = G∗x`, `μy = G∗y`, `σxx = G∗x² − μx²`, `σyy = G∗y² − μy²`, `σxy = G∗(xy) − μxμy`,
//! `S = (2μxμy + C1)(2σxy + C2) / ((μx² + μy² + C1)(σxx + σyy + C2))`, `SSIM = mean(S)`.
//!
//! Backward (w.r.t. `x` only; `y` is the target): write `S` as a function of the three blurred
//! maps that depend on `x`: `μx`, `ex = G∗x²`, `exy = G∗(xy)`. With `A1 = 2μxμy + C1`,
//! `A2 = 2σxy + C2`, `B1 = μx² + μy² + C1`, `B2 = σxx + σyy + C2`:
//! `∂S/∂μx = 2μy(A2 − A1)/(B1B2) − 2μx S (1/B1 − 1/B2)`, `∂S/∂ex = −S/B2`,
//! `∂S/∂exy = 2A1/(B1B2)`. The blur is symmetric and zero-padded, so it is its own adjoint:
//! `∂SSIM/∂x = G∗gμ + 2x·(G∗gex) + y·(G∗gexy)` with `g• = (1/N)·∂S/∂•`.
//!
//! The core works on `f64` planes (accurate finite-difference tests, and the cost is small next
//! to rendering); [`ssim`] and [`ssim_with_grad`] wrap it for [`ImageRgb`].

use rayon::prelude::*;

use kiln_core::image_buf::ImageRgb;

/// Window side: 11 taps, the SSIM paper's and 3DGS's choice.
pub const WINDOW: usize = 11;
/// Standard deviation of the Gaussian window in pixels (SSIM paper, 3DGS).
pub const SIGMA: f64 = 1.5;
/// `(K1·L)²` with `K1 = 0.01`, `L = 1` (dynamic range of `[0, 1]` images): stabilises the
/// luminance term where both means are near zero.
pub const C1: f64 = 0.01 * 0.01;
/// `(K2·L)²` with `K2 = 0.03`, `L = 1`: stabilises the contrast-structure term in flat regions.
pub const C2: f64 = 0.03 * 0.03;

/// Half the window: the zero padding on each side.
const HALF: usize = WINDOW / 2;

/// The normalised 1D Gaussian window.
pub(crate) fn kernel() -> [f64; WINDOW] {
    let mut k = [0.0; WINDOW];
    for (i, v) in k.iter_mut().enumerate() {
        let d = i as f64 - HALF as f64;
        *v = (-(d * d) / (2.0 * SIGMA * SIGMA)).exp();
    }
    let sum: f64 = k.iter().sum();
    k.map(|v| v / sum)
}

/// Same-size, zero-padded separable Gaussian blur of a `width × height` plane.
fn blur(src: &[f64], width: usize, height: usize, k: &[f64; WINDOW]) -> Vec<f64> {
    let mut rows = vec![0.0; src.len()];
    for (src_row, dst_row) in src.chunks_exact(width).zip(rows.chunks_exact_mut(width)) {
        for (x, dst) in dst_row.iter_mut().enumerate() {
            let lo = x.saturating_sub(HALF);
            let hi = (x + HALF + 1).min(width);
            *dst = (lo..hi).map(|sx| k[sx + HALF - x] * src_row[sx]).sum();
        }
    }
    let mut out = vec![0.0; src.len()];
    for (y, dst_row) in out.chunks_exact_mut(width).enumerate() {
        let lo = y.saturating_sub(HALF);
        let hi = (y + HALF + 1).min(height);
        for sy in lo..hi {
            let w = k[sy + HALF - y];
            let src_row = &rows[sy * width..(sy + 1) * width];
            for (d, s) in dst_row.iter_mut().zip(src_row) {
                *d += w * s;
            }
        }
    }
    out
}

fn product(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a * b).collect()
}

/// The blurred statistics of one channel.
struct Moments {
    mu_x: Vec<f64>,
    mu_y: Vec<f64>,
    e_xx: Vec<f64>,
    e_yy: Vec<f64>,
    e_xy: Vec<f64>,
}

impl Moments {
    fn new(x: &[f64], y: &[f64], width: usize, height: usize, k: &[f64; WINDOW]) -> Self {
        Self {
            mu_x: blur(x, width, height, k),
            mu_y: blur(y, width, height, k),
            e_xx: blur(&product(x, x), width, height, k),
            e_yy: blur(&product(y, y), width, height, k),
            e_xy: blur(&product(x, y), width, height, k),
        }
    }

    /// `(S, A1, A2, B1, B2)` at pixel `i`.
    fn terms(&self, i: usize) -> [f64; 5] {
        let (mx, my) = (self.mu_x[i], self.mu_y[i]);
        let a1 = 2.0 * mx * my + C1;
        let a2 = 2.0 * (self.e_xy[i] - mx * my) + C2;
        let b1 = mx * mx + my * my + C1;
        let b2 = (self.e_xx[i] - mx * mx) + (self.e_yy[i] - my * my) + C2;
        [a1 * a2 / (b1 * b2), a1, a2, b1, b2]
    }
}

/// Sum over pixels of the SSIM map of one channel (`x`, `y`: `width × height` planes).
pub fn ssim_plane_sum(x: &[f64], y: &[f64], width: usize, height: usize) -> f64 {
    let m = Moments::new(x, y, width, height, &kernel());
    (0..x.len()).map(|i| m.terms(i)[0]).sum()
}

/// Sum over pixels of the SSIM map of one channel and `scale ·` its gradient w.r.t. `x`.
pub fn ssim_plane_sum_with_grad(x: &[f64], y: &[f64], width: usize, height: usize, scale: f64) -> (f64, Vec<f64>) {
    let k = kernel();
    let m = Moments::new(x, y, width, height, &k);
    let n = x.len();
    let (mut g_mu, mut g_xx, mut g_xy) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut sum = 0.0;
    for i in 0..n {
        let [s, a1, a2, b1, b2] = m.terms(i);
        sum += s;
        let (mx, my) = (m.mu_x[i], m.mu_y[i]);
        let b12 = b1 * b2;
        g_mu[i] = scale * (2.0 * my * (a2 - a1) / b12 - 2.0 * mx * s * (1.0 / b1 - 1.0 / b2));
        g_xx[i] = scale * (-s / b2);
        g_xy[i] = scale * (2.0 * a1 / b12);
    }
    let (b_mu, b_xx, b_xy) =
        (blur(&g_mu, width, height, &k), blur(&g_xx, width, height, &k), blur(&g_xy, width, height, &k));
    let grad = (0..n).map(|i| b_mu[i] + 2.0 * x[i] * b_xx[i] + y[i] * b_xy[i]).collect();
    (sum, grad)
}

/// Splits an image into three `f64` channel planes.
pub(crate) fn planes(image: &ImageRgb) -> [Vec<f64>; 3] {
    std::array::from_fn(|c| image.pixels.iter().map(|p| p[c] as f64).collect())
}

/// Mean SSIM over all pixels and channels. Both images must have the same size.
pub fn ssim(a: &ImageRgb, b: &ImageRgb) -> f32 {
    let (pa, pb) = (planes(a), planes(b));
    let (w, h) = (a.width as usize, a.height as usize);
    let sum: f64 = (0..3).into_par_iter().map(|c| ssim_plane_sum(&pa[c], &pb[c], w, h)).sum();
    (sum / (3 * w * h).max(1) as f64) as f32
}

/// Mean SSIM of `rendered` against `target` and its gradient w.r.t. `rendered`.
pub fn ssim_with_grad(rendered: &ImageRgb, target: &ImageRgb) -> (f32, ImageRgb) {
    let (px, py) = (planes(rendered), planes(target));
    let (w, h) = (rendered.width as usize, rendered.height as usize);
    let inv_n = 1.0 / (3 * w * h).max(1) as f64;
    let per_channel: Vec<(f64, Vec<f64>)> =
        (0..3).into_par_iter().map(|c| ssim_plane_sum_with_grad(&px[c], &py[c], w, h, inv_n)).collect();
    let mut grad = ImageRgb::new(rendered.width, rendered.height, [0.0; 3]);
    for (c, (_, g)) in per_channel.iter().enumerate() {
        for (dst, v) in grad.pixels.iter_mut().zip(g) {
            dst[c] = *v as f32;
        }
    }
    let sum: f64 = per_channel.iter().map(|(s, _)| s).sum();
    ((sum * inv_n) as f32, grad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic generator for test images.
    fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64) / ((1u64 << 53) as f64)
            })
            .collect()
    }

    #[test]
    fn identical_images_have_ssim_one_and_zero_gradient() {
        let (w, h) = (17, 13);
        let x = noise(w * h, 1);
        let (sum, grad) = ssim_plane_sum_with_grad(&x, &x, w, h, 1.0);
        assert!((sum / (w * h) as f64 - 1.0).abs() < 1e-12, "ssim {sum}");
        assert!(grad.iter().all(|g| g.abs() < 1e-9), "SSIM is maximal at x = y");
    }

    #[test]
    fn ssim_gradient_matches_central_differences() {
        let (w, h) = (19, 14);
        let x = noise(w * h, 2);
        let y: Vec<f64> = noise(w * h, 3).iter().zip(&x).map(|(n, x)| 0.6 * x + 0.4 * n).collect();
        let (_, grad) = ssim_plane_sum_with_grad(&x, &y, w, h, 1.0);
        let eps = 1e-6;
        // Corners, edges (where the zero padding matters) and interior pixels.
        for &i in &[0, 1, w - 1, w + 3, (h / 2) * w + w / 2, w * h - 1, w * h - w, 5 * w + 9] {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += eps;
            xm[i] -= eps;
            let fd = (ssim_plane_sum(&xp, &y, w, h) - ssim_plane_sum(&xm, &y, w, h)) / (2.0 * eps);
            assert!((fd - grad[i]).abs() <= 1e-6 * (1.0 + fd.abs()), "pixel {i}: analytic {} vs fd {fd}", grad[i]);
        }
    }

    #[test]
    fn ssim_drops_with_noise_and_matches_between_entry_points() {
        let (w, h) = (32, 24);
        let clean = noise(w * h * 3, 4);
        let mk = |v: &[f64]| ImageRgb {
            width: w as u32,
            height: h as u32,
            pixels: v.chunks_exact(3).map(|p| [p[0] as f32, p[1] as f32, p[2] as f32]).collect(),
        };
        let a = mk(&clean);
        let noisy: Vec<f64> = clean.iter().zip(noise(w * h * 3, 5)).map(|(c, n)| c + (n - 0.5)).collect();
        let b = mk(&noisy);
        let s = ssim(&a, &b);
        assert!(s < 0.8 && s > 0.0, "noisy image ssim {s}");
        assert!((ssim(&a, &a) - 1.0).abs() < 1e-6);
        let (s2, _) = ssim_with_grad(&b, &a);
        assert!((s - s2).abs() < 1e-6, "ssim is symmetric: {s} vs {s2}");
    }
}
