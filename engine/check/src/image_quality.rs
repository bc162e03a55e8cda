//! Pixel statistics of one photo for the capture check: sharpness (the width of its sharpest
//! edges, and the variance of the Laplacian for reference), exposure (mean luminance and clipped
//! fractions) and hashes for duplicate detection (a DCT perceptual hash and an exact pixel hash).
//!
//! Everything except the exact hash is measured on the "analysis image": the photo as grey levels
//! in [0, 1], oriented and downscaled to a fixed longer side, so figures do not depend on the
//! camera's resolution.

use kiln_protocol::check::ImageMeasures;
use std::hash::{Hash, Hasher};

use kiln_core::image_buf::ImageGray;

/// Grey level taken as clipped white: 250 of 255 (JPEG ringing keeps clipped areas a few levels
/// under 255, and the downscale averages their borders).
pub const CLIPPED_HIGH: f32 = 250.0 / 255.0;

/// Grey level taken as crushed black: 5 of 255.
pub const CLIPPED_LOW: f32 = 5.0 / 255.0;

/// σ (analysis pixels) of the Gaussian the image is blurred again with to measure its edges: an
/// edge of width σ_b keeps `σ_b / √(σ_b² + σ²)` of its gradient peak, which is most sensitive
/// for σ_b around σ; 1 px separates sharp (0.5–1 px) from blurred (2+ px) photos best.
const REBLUR_SIGMA: f64 = 1.0;

/// Fraction of the pixel differences, the largest, taken as the photo's edges: a few percent of
/// a photo's pixels lie on the edges of its sharpest structures; flat areas (sky, walls,
/// background) are left out, which makes the measure independent of how much of the frame they
/// fill.
const EDGE_FRACTION: f64 = 0.02;

/// A pixel difference below this (grey levels in [0, 1]; ~5 of 255) is noise, not an edge.
const MIN_EDGE_STEP: f32 = 0.02;

/// Fewer edge pixels than this and the photo is taken as showing no edges.
const MIN_EDGE_PIXELS: usize = 64;

/// Side of the perceptual hash's thumbnail, and of its kept low-frequency block.
const HASH_THUMB: usize = 32;
const HASH_BLOCK: usize = 8;

/// Measures a decoded photo; `analysis` is its grey analysis image.
pub fn measure_image(decoded: &image::DynamicImage, analysis: &ImageGray) -> ImageMeasures {
    let (mean_luminance, clipped_highlights, clipped_shadows, bright_level) = exposure(&analysis.pixels);
    ImageMeasures {
        edge_blur_px: edge_blur(analysis),
        laplacian_variance: laplacian_variance(analysis),
        mean_luminance,
        clipped_highlights,
        clipped_shadows,
        bright_level,
        perceptual_hash: perceptual_hash(analysis),
        pixel_hash: pixel_hash(decoded),
    }
}

/// Bits that differ between two perceptual hashes.
pub fn hash_distance(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// Mean, clipped-highlight and clipped-shadow fractions, and the 95th percentile.
fn exposure(pixels: &[f32]) -> (f64, f64, f64, f64) {
    if pixels.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let n = pixels.len() as f64;
    let mean = pixels.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let high = pixels.iter().filter(|&&v| v >= CLIPPED_HIGH).count() as f64 / n;
    let low = pixels.iter().filter(|&&v| v <= CLIPPED_LOW).count() as f64 / n;
    let mut sorted = pixels.to_vec();
    let at = ((sorted.len() as f64 * 0.95) as usize).min(sorted.len() - 1);
    let bright = f64::from(*sorted.select_nth_unstable_by(at, f32::total_cmp).1);
    (mean, high, low, bright)
}

/// The width (Gaussian σ, pixels) of the image's sharpest edges, from how much of their gradient
/// survives a further blur of [`REBLUR_SIGMA`]: `r = σ_b / √(σ_b² + σ²)` inverted.
fn edge_blur(image: &ImageGray) -> Option<f64> {
    let blurred = gaussian_blur(image, REBLUR_SIGMA as f32);
    let (w, h) = (image.width as usize, image.height as usize);
    let mut steps: Vec<(f32, f32)> = Vec::with_capacity(2 * w * h);
    let at = |p: &[f32], x: usize, y: usize| p[y * w + x];
    for y in 0..h {
        for x in 0..w {
            let here = (at(&image.pixels, x, y), at(&blurred, x, y));
            if x + 1 < w {
                steps.push(((at(&image.pixels, x + 1, y) - here.0).abs(), (at(&blurred, x + 1, y) - here.1).abs()));
            }
            if y + 1 < h {
                steps.push(((at(&image.pixels, x, y + 1) - here.0).abs(), (at(&blurred, x, y + 1) - here.1).abs()));
            }
        }
    }
    let keep = ((steps.len() as f64 * EDGE_FRACTION) as usize).max(1).min(steps.len());
    if keep < MIN_EDGE_PIXELS {
        return None;
    }
    steps.select_nth_unstable_by(keep - 1, |a, b| b.0.total_cmp(&a.0));
    let edges: Vec<&(f32, f32)> = steps[..keep].iter().filter(|s| s.0 >= MIN_EDGE_STEP).collect();
    if edges.len() < MIN_EDGE_PIXELS {
        return None;
    }
    let sharp: f64 = edges.iter().map(|s| f64::from(s.0)).sum();
    let reblurred: f64 = edges.iter().map(|s| f64::from(s.1)).sum();
    let ratio = (reblurred / sharp).clamp(0.0, 0.999);
    Some(REBLUR_SIGMA * ratio / (1.0 - ratio * ratio).sqrt())
}

/// Separable Gaussian blur with clamped borders.
fn gaussian_blur(image: &ImageGray, sigma: f32) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as isize;
    let weights: Vec<f32> = (-radius..=radius).map(|d| (-(d * d) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f32 = weights.iter().sum();
    let weights: Vec<f32> = weights.iter().map(|w| w / total).collect();
    let (w, h) = (image.width as isize, image.height as isize);
    let pass = |source: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0.0f32; source.len()];
        for y in 0..h {
            for x in 0..w {
                let mut sum = 0.0;
                for (k, weight) in weights.iter().enumerate() {
                    let d = k as isize - radius;
                    let (sx, sy) = if horizontal { ((x + d).clamp(0, w - 1), y) } else { (x, (y + d).clamp(0, h - 1)) };
                    sum += weight * source[(sy * w + sx) as usize];
                }
                out[(y * w + x) as usize] = sum;
            }
        }
        out
    };
    pass(&pass(&image.pixels, true), false)
}

/// Variance of the 4-neighbour Laplacian over the interior pixels.
fn laplacian_variance(image: &ImageGray) -> f64 {
    let (w, h) = (image.width as usize, image.height as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let p = &image.pixels;
    let values: Vec<f64> = (1..h - 1)
        .flat_map(|y| (1..w - 1).map(move |x| (x, y)))
        .map(|(x, y)| {
            let i = y * w + x;
            f64::from(p[i - 1] + p[i + 1] + p[i - w] + p[i + w] - 4.0 * p[i])
        })
        .collect();
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n
}

/// DCT hash: the 8×8 lowest frequencies (DC left out) of a 32×32 thumbnail, one bit each for
/// being above their median.
fn perceptual_hash(image: &ImageGray) -> u64 {
    let Some(buffer) =
        image::ImageBuffer::<image::Luma<f32>, Vec<f32>>::from_raw(image.width, image.height, image.pixels.clone())
    else {
        return 0;
    };
    let side = HASH_THUMB as u32;
    let thumb = image::imageops::resize(&buffer, side, side, image::imageops::FilterType::Triangle).into_raw();
    let basis: Vec<Vec<f64>> = (0..HASH_BLOCK)
        .map(|u| {
            (0..HASH_THUMB)
                .map(|x| ((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / (2 * HASH_THUMB) as f64).cos())
                .collect()
        })
        .collect();
    let mut coefficients = Vec::with_capacity(HASH_BLOCK * HASH_BLOCK - 1);
    for v in 0..HASH_BLOCK {
        for u in 0..HASH_BLOCK {
            if u == 0 && v == 0 {
                continue;
            }
            let mut sum = 0.0;
            for y in 0..HASH_THUMB {
                for x in 0..HASH_THUMB {
                    sum += f64::from(thumb[y * HASH_THUMB + x]) * basis[u][x] * basis[v][y];
                }
            }
            coefficients.push(sum);
        }
    }
    let mut sorted = coefficients.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    coefficients.iter().enumerate().filter(|(_, c)| **c > median).fold(0u64, |hash, (bit, _)| hash | (1 << bit))
}

fn pixel_hash(decoded: &image::DynamicImage) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (decoded.width(), decoded.height(), decoded.color()).hash(&mut hasher);
    decoded.as_bytes().hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disc of grey 0.8 on 0.2, its edge blurred by a Gaussian of `sigma` (exact, via the
    /// error-function-free approximation of averaging a 16× supersampled disc then blurring).
    fn disc(sigma: f32) -> ImageGray {
        let (w, h) = (200u32, 150u32);
        let pixels = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| {
                let (dx, dy) = (x as f32 + 0.5 - 100.0, y as f32 + 0.5 - 75.0);
                if dx.hypot(dy) < 50.0 { 0.8 } else { 0.2 }
            })
            .collect();
        let sharp = ImageGray { width: w, height: h, pixels };
        if sigma == 0.0 { sharp } else { ImageGray { width: w, height: h, pixels: gaussian_blur(&sharp, sigma) } }
    }

    #[test]
    fn edge_blur_recovers_the_blur_of_an_edge() {
        // A hard edge is about half a pixel wide (one pixel step); blurred edges widen as σ_b.
        let hard = edge_blur(&disc(0.0)).unwrap();
        assert!(hard < 0.8, "hard edge {hard}");
        for sigma in [2.0f32, 3.0, 4.0] {
            let measured = edge_blur(&disc(sigma)).unwrap();
            assert!((measured - f64::from(sigma)).abs() < 0.25 * f64::from(sigma), "σ {sigma}: measured {measured}");
        }
        let flat = ImageGray::new(100, 100, 0.5);
        assert_eq!(edge_blur(&flat), None);
    }

    #[test]
    fn exposure_fractions_count_clipped_pixels() {
        let pixels = [vec![1.0f32; 25], vec![0.0; 25], vec![0.5; 50]].concat();
        let (mean, high, low, bright) = exposure(&pixels);
        assert!((mean - 0.5).abs() < 1e-9);
        assert!((high - 0.25).abs() < 1e-9 && (low - 0.25).abs() < 1e-9);
        assert_eq!(bright, 1.0);
    }

    #[test]
    fn perceptual_hash_tolerates_small_changes_but_not_other_images() {
        // An asymmetric scene (a symmetric one has many zero DCT coefficients, whose signs are
        // noise): a bright blob off-centre over a ramp.
        let pixels = (0..150)
            .flat_map(|y| (0..200).map(move |x| (x as f32, y as f32)))
            .map(|(x, y)| 0.2 + 0.002 * x + if (x - 60.0).hypot(y - 45.0) < 30.0 { 0.4 } else { 0.0 })
            .collect();
        let a = ImageGray { width: 200, height: 150, pixels };
        let mut brighter = a.clone();
        brighter.pixels.iter_mut().for_each(|v| *v = (*v * 1.1).min(1.0));
        let mut shifted = a.clone();
        shifted.pixels.rotate_left(40 * 200);
        assert!(hash_distance(perceptual_hash(&a), perceptual_hash(&brighter)) <= 2);
        assert!(hash_distance(perceptual_hash(&a), perceptual_hash(&shifted)) > 8);
    }
}
