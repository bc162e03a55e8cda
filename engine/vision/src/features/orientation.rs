//! Gradients of a Gaussian level and the dominant orientations of a keypoint: a 36-bin histogram
//! of gradient directions weighted by magnitude and a Gaussian window, smoothed, with each peak
//! within 80 % of the highest refined by a parabola (Lowe 2004, §5; VLFeat's smoothing).

use std::f32::consts::TAU;

use rayon::prelude::*;

use crate::features::scale_space::Plane;

/// Histogram bins over the full circle (10° each).
const BINS: usize = 36;

/// The orientation window's σ as a multiple of the keypoint's scale (Lowe: 1.5).
const WINDOW_FACTOR: f32 = 1.5;

/// The window is cut at this many window σ (VLFeat: 3).
const WINDOW_RADIUS_SIGMAS: f32 = 3.0;

/// Passes of the circular [1 1 1]/3 box filter over the histogram (VLFeat: 6, close to a
/// Gaussian of σ ≈ 2 bins); they suppress spurious peaks from the sampling of the window.
const SMOOTHING_PASSES: usize = 6;

/// A secondary peak at least this fraction of the highest makes another keypoint (Lowe: 0.8).
const SECONDARY_PEAK_RATIO: f32 = 0.8;

/// Orientations kept per keypoint (COLMAP's default `max_num_orientations`): a third peak
/// within 80 % is rare and mostly noise.
pub(super) const MAX_ORIENTATIONS: usize = 2;

/// Gradient magnitude and direction (radians in [0, 2π), atan2 of (dy, dx) with y down) of a
/// plane, by central differences (one-sided at the border).
pub(super) struct Gradients {
    pub width: usize,
    pub height: usize,
    pub magnitude: Vec<f32>,
    pub angle: Vec<f32>,
}

impl Gradients {
    pub fn of(plane: &Plane) -> Gradients {
        let (width, height) = (plane.width, plane.height);
        let mut magnitude = vec![0.0; width * height];
        let mut angle = vec![0.0; width * height];
        magnitude.par_chunks_mut(width).zip(angle.par_chunks_mut(width)).enumerate().for_each(
            |(y, (magnitudes, angles))| {
                let row = plane.row(y);
                let (above, below) = (plane.row(y.saturating_sub(1)), plane.row((y + 1).min(height - 1)));
                let vertical_span = ((y + 1).min(height - 1) - y.saturating_sub(1)) as f32;
                for x in 0..width {
                    let (left, right) = (x.saturating_sub(1), (x + 1).min(width - 1));
                    let dx = (row[right] - row[left]) / (right - left).max(1) as f32;
                    let dy = (below[x] - above[x]) / vertical_span.max(1.0);
                    magnitudes[x] = (dx * dx + dy * dy).sqrt();
                    angles[x] = fast_atan2(dy, dx);
                }
            },
        );
        Gradients { width, height, magnitude, angle }
    }
}

/// `atan2(y, x)` in [0, 2π), within 2e-5 rad: a minimax polynomial for atan on [0, 1] and the
/// octant symmetries. Several times faster than `f32::atan2`, which dominates otherwise.
pub(super) fn fast_atan2(y: f32, x: f32) -> f32 {
    let (ax, ay) = (x.abs(), y.abs());
    let (small, large) = if ax > ay { (ay, ax) } else { (ax, ay) };
    if large == 0.0 {
        return 0.0;
    }
    let z = small / large;
    let z2 = z * z;
    let mut a = z
        * (0.999_977_26
            + z2 * (-0.332_623_47
                + z2 * (0.193_543_46 + z2 * (-0.116_432_87 + z2 * (0.052_653_32 + z2 * -0.011_721_2)))));
    if ay > ax {
        a = std::f32::consts::FRAC_PI_2 - a;
    }
    if x < 0.0 {
        a = std::f32::consts::PI - a;
    }
    if y < 0.0 {
        a = TAU - a;
    }
    if a >= TAU { 0.0 } else { a }
}

/// The dominant orientations (radians, as in [`Gradients`]) of a keypoint at `(x, y)` with scale
/// `sigma`, all in the gradients' sample units. Highest peak first; empty when the window has no
/// gradient.
pub(super) fn orientations(gradients: &Gradients, x: f32, y: f32, sigma: f32) -> Vec<f32> {
    let histogram = smoothed(histogram(gradients, x, y, sigma));
    let highest = histogram.iter().copied().fold(0.0f32, f32::max);
    if highest <= 0.0 {
        return Vec::new();
    }
    let mut peaks: Vec<(f32, f32)> = (0..BINS)
        .filter_map(|i| {
            let (previous, here, next) = (histogram[(i + BINS - 1) % BINS], histogram[i], histogram[(i + 1) % BINS]);
            // A plateau of two equal bins counts once, at its first bin.
            if here < SECONDARY_PEAK_RATIO * highest || here <= previous || here < next {
                return None;
            }
            // Parabola through the three bins; bin i covers [i, i + 1) × 10°.
            let offset = 0.5 * (previous - next) / (previous - 2.0 * here + next);
            let angle = (i as f32 + 0.5 + offset) * TAU / BINS as f32;
            Some((here, angle.rem_euclid(TAU)))
        })
        .collect();
    peaks.sort_by(|a, b| b.0.total_cmp(&a.0));
    peaks.into_iter().take(MAX_ORIENTATIONS).map(|(_, angle)| angle).collect()
}

fn histogram(gradients: &Gradients, x: f32, y: f32, sigma: f32) -> [f32; BINS] {
    let mut histogram = [0.0f32; BINS];
    let window_sigma = WINDOW_FACTOR * sigma;
    let radius = (WINDOW_RADIUS_SIGMAS * window_sigma).floor().max(1.0);
    let (xi, yi) = (x.round() as isize, y.round() as isize);
    let r = radius as isize;
    let (x0, x1) = ((xi - r).max(1), (xi + r).min(gradients.width as isize - 2));
    let (y0, y1) = ((yi - r).max(1), (yi + r).min(gradients.height as isize - 2));
    let inverse_two_variance = 1.0 / (2.0 * window_sigma * window_sigma);
    let max_distance_squared = radius * radius + 0.6;
    for py in y0..=y1 {
        let row = py as usize * gradients.width;
        let dy = py as f32 - y;
        for px in x0..=x1 {
            let dx = px as f32 - x;
            let distance_squared = dx * dx + dy * dy;
            if distance_squared > max_distance_squared {
                continue;
            }
            let index = row + px as usize;
            let weight = (-distance_squared * inverse_two_variance).exp() * gradients.magnitude[index];
            // Linear vote between the two bins whose centres surround the angle.
            let position = gradients.angle[index] * (BINS as f32 / TAU) - 0.5;
            let lower = position.floor();
            let fraction = position - lower;
            let lower = (lower as isize).rem_euclid(BINS as isize) as usize;
            histogram[lower] += (1.0 - fraction) * weight;
            histogram[(lower + 1) % BINS] += fraction * weight;
        }
    }
    histogram
}

fn smoothed(mut histogram: [f32; BINS]) -> [f32; BINS] {
    for _ in 0..SMOOTHING_PASSES {
        let previous = histogram;
        for (i, h) in histogram.iter_mut().enumerate() {
            *h = (previous[(i + BINS - 1) % BINS] + previous[i] + previous[(i + 1) % BINS]) / 3.0;
        }
    }
    histogram
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_atan2_matches_the_library() {
        let mut worst = 0.0f32;
        for i in 0..3600 {
            let t = i as f32 * TAU / 3600.0 + 0.0003;
            for radius in [1e-3f32, 1.0, 250.0] {
                let (y, x) = (radius * t.sin(), radius * t.cos());
                let exact = y.atan2(x).rem_euclid(TAU);
                let error = (fast_atan2(y, x) - exact).abs();
                worst = worst.max(error.min(TAU - error));
            }
        }
        assert!(worst < 2e-5, "{worst}");
    }

    #[test]
    fn a_ramp_has_one_orientation_along_its_gradient() {
        for degrees in [0.0f32, 37.0, 123.0, 250.0] {
            let theta = degrees.to_radians();
            let (width, height) = (41, 41);
            let data = (0..width * height)
                .map(|i| 0.01 * (theta.cos() * (i % width) as f32 + theta.sin() * (i / width) as f32))
                .collect();
            let gradients = Gradients::of(&Plane { width, height, data });
            let found = orientations(&gradients, 20.3, 19.8, 3.0);
            assert_eq!(found.len(), 1);
            let error = (found[0] - theta).rem_euclid(TAU);
            assert!(error.min(TAU - error) < 0.01, "{degrees}° → {}", found[0].to_degrees());
        }
    }
}
