//! Image-quality metrics (PSNR, SSIM) of renders against held-out photos.
//!
//! Renders are clamped to `[0, 1]` first, as they are when saved as 8-bit images; SSIM is the
//! standard 11×11 Gaussian-window variant of [`super::ssim`].

use kiln_core::camera::Camera;
use kiln_core::image_buf::ImageRgb;

use crate::train::TrainError;
use crate::train::backend::TrainBackend;
use crate::train::ssim::ssim;

/// Mean quality over a set of views.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalMetrics {
    /// Mean over views of the per-view PSNR in dB (the convention of 3DGS's `metrics.py`).
    pub psnr: f32,
    /// Mean over views of the per-view SSIM.
    pub ssim: f32,
    pub views: usize,
}

/// Peak signal-to-noise ratio in dB for a peak of 1 (both images the same size).
pub fn psnr(rendered: &ImageRgb, target: &ImageRgb) -> f32 {
    let n = (rendered.pixels.len() * 3).max(1) as f64;
    let sse: f64 = rendered
        .pixels
        .iter()
        .zip(&target.pixels)
        .flat_map(|(r, t)| (0..3).map(move |c| (r[c].clamp(0.0, 1.0) - t[c]) as f64))
        .map(|d| d * d)
        .sum();
    let mse = (sse / n).max(1e-12);
    (-10.0 * mse.log10()) as f32
}

fn clamped(image: &ImageRgb) -> ImageRgb {
    ImageRgb { pixels: image.pixels.iter().map(|p| p.map(|v| v.clamp(0.0, 1.0))).collect(), ..*image }
}

/// PSNR and SSIM of one render.
pub fn image_metrics(rendered: &ImageRgb, target: &ImageRgb) -> (f32, f32) {
    (psnr(rendered, target), ssim(&clamped(rendered), target))
}

/// Renders every camera with `backend` and averages PSNR and SSIM against `targets`.
pub fn eval(
    backend: &mut dyn TrainBackend,
    cameras: &[Camera],
    targets: &[ImageRgb],
    background: [f32; 3],
) -> Result<EvalMetrics, TrainError> {
    super::check_count(cameras, targets)?;
    let (mut psnr_sum, mut ssim_sum) = (0.0f64, 0.0f64);
    for (index, (camera, target)) in cameras.iter().zip(targets).enumerate() {
        super::check_size(index, camera, target)?;
        let out = backend.render(camera, background)?;
        let (p, s) = image_metrics(&out.image, target);
        psnr_sum += p as f64;
        ssim_sum += s as f64;
    }
    let views = cameras.len();
    let d = views.max(1) as f64;
    Ok(EvalMetrics { psnr: (psnr_sum / d) as f32, ssim: (ssim_sum / d) as f32, views })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_a_known_error() {
        let a = ImageRgb::new(8, 8, [0.5; 3]);
        let b = ImageRgb::new(8, 8, [0.6; 3]);
        // MSE = 0.01 -> 20 dB.
        assert!((psnr(&a, &b) - 20.0).abs() < 1e-3, "{}", psnr(&a, &b));
        let (p, s) = image_metrics(&a, &a);
        assert!(p > 100.0 && (s - 1.0).abs() < 1e-6);
    }
}
