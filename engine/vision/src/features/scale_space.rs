//! The Gaussian scale space of SIFT, one octave at a time: float planes, separable Gaussian blur,
//! the ×2 upsampling and ×½ decimation between octaves, and differences of Gaussians.
//!
//! Coordinates: every octave maps its sample index `k` to the input image's corner-origin pixel
//! coordinate `origin + step × k` ([`Octave::origin`], [`Octave::step`]). Upsampling puts new samples at and
//! half-way between old samples, and decimation keeps every other sample, so both keep `origin`
//! and only scale `step`: sample 0 always sits on the centre of input pixel 0.

use rayon::prelude::*;

/// Blur kernels are cut at this many σ (VLFeat's choice: the tail beyond is < 1e-4 of the mass).
const KERNEL_RADIUS_SIGMAS: f32 = 4.0;

/// Rows per rayon task: below this the task overhead costs more than the blur of the rows.
const ROWS_PER_TASK: usize = 16;

/// A row-major single-channel float image.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Plane {
    pub fn new(width: usize, height: usize) -> Self {
        Self { width, height, data: vec![0.0; width * height] }
    }

    pub fn row(&self, y: usize) -> &[f32] {
        &self.data[y * self.width..(y + 1) * self.width]
    }

    /// Doubles the size: samples `2i` copy sample `i`, samples `2i + 1` average `i` and `i + 1`
    /// (the last one repeats the border), so new sample `k` sits at old coordinate `k / 2`.
    pub fn upsampled(&self) -> Plane {
        let (width, height) = (self.width * 2, self.height * 2);
        let mut wide = Plane::new(width, self.height);
        for (out, row) in wide.data.chunks_exact_mut(width).zip(self.data.chunks_exact(self.width)) {
            for (x, pair) in out.chunks_exact_mut(2).enumerate() {
                let next = row[(x + 1).min(self.width - 1)];
                pair[0] = row[x];
                pair[1] = 0.5 * (row[x] + next);
            }
        }
        let mut out = Plane::new(width, height);
        for (y, pair) in out.data.chunks_exact_mut(2 * width).enumerate() {
            let (even, odd) = pair.split_at_mut(width);
            let (a, b) = (wide.row(y), wide.row((y + 1).min(self.height - 1)));
            even.copy_from_slice(a);
            for ((o, &a), &b) in odd.iter_mut().zip(a).zip(b) {
                *o = 0.5 * (a + b);
            }
        }
        out
    }

    /// Keeps every other sample in each direction: new sample `k` is old sample `2k`.
    pub fn decimated(&self) -> Plane {
        let (width, height) = ((self.width / 2).max(1), (self.height / 2).max(1));
        let mut out = Plane::new(width, height);
        for (y, row) in out.data.chunks_exact_mut(width).enumerate() {
            let source = self.row(2 * y);
            for (x, o) in row.iter_mut().enumerate() {
                *o = source[2 * x];
            }
        }
        out
    }

    /// `self - other`, sample by sample.
    pub fn minus(&self, other: &Plane) -> Plane {
        let data = self.data.iter().zip(&other.data).map(|(a, b)| a - b).collect();
        Plane { width: self.width, height: self.height, data }
    }

    /// Convolution with a Gaussian of standard deviation `sigma` samples, borders replicated.
    pub fn blurred(&self, sigma: f32) -> Plane {
        let kernel = half_kernel(sigma);
        let radius = kernel.len() - 1;
        let width = self.width;
        let mut horizontal = Plane::new(width, self.height);
        horizontal
            .data
            .par_chunks_mut(width)
            .zip(self.data.par_chunks(width))
            .with_min_len(ROWS_PER_TASK)
            .for_each_init(
                || vec![0.0f32; width + 2 * radius],
                |padded, (out, row)| {
                    padded[..radius].fill(row[0]);
                    padded[radius..radius + width].copy_from_slice(row);
                    padded[radius + width..].fill(row[width - 1]);
                    blur_row(padded, &kernel, out);
                },
            );
        let mut out = Plane::new(width, self.height);
        let last = self.height - 1;
        out.data.par_chunks_mut(width).enumerate().with_min_len(ROWS_PER_TASK).for_each(|(y, out)| {
            for (o, &c) in out.iter_mut().zip(horizontal.row(y)) {
                *o = kernel[0] * c;
            }
            for (j, &w) in kernel.iter().enumerate().skip(1) {
                let above = horizontal.row(y.saturating_sub(j));
                let below = horizontal.row((y + j).min(last));
                for ((o, &a), &b) in out.iter_mut().zip(above).zip(below) {
                    *o += w * (a + b);
                }
            }
        });
        out
    }
}

/// One row of the horizontal pass: `padded` is the row with `radius` replicated samples on each
/// side; sums run over whole shifted slices so they vectorise.
fn blur_row(padded: &[f32], kernel: &[f32], out: &mut [f32]) {
    let radius = kernel.len() - 1;
    let width = out.len();
    for (o, &c) in out.iter_mut().zip(&padded[radius..radius + width]) {
        *o = kernel[0] * c;
    }
    for (j, &w) in kernel.iter().enumerate().skip(1) {
        let left = &padded[radius - j..radius - j + width];
        let right = &padded[radius + j..radius + j + width];
        for ((o, &a), &b) in out.iter_mut().zip(left).zip(right) {
            *o += w * (a + b);
        }
    }
}

/// Taps `0..=radius` of a normalised Gaussian (the kernel is symmetric).
fn half_kernel(sigma: f32) -> Vec<f32> {
    let radius = (KERNEL_RADIUS_SIGMAS * sigma).ceil().max(1.0) as usize;
    let taps: Vec<f32> = (0..=radius).map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp()).collect();
    let total = taps[0] + 2.0 * taps[1..].iter().sum::<f32>();
    taps.into_iter().map(|t| t / total).collect()
}

/// One octave of the scale space: `levels + 3` Gaussian images with σ = `sigma0 × 2^(i/levels)`
/// samples, and the `levels + 2` differences between consecutive ones.
pub(super) struct Octave {
    /// Octave number: −1 is the upsampled octave, 0 the input resolution, …
    pub number: i32,
    /// Input coordinate (corner origin, pixels) of sample 0.
    pub origin: f32,
    /// Input pixels per sample.
    pub step: f32,
    pub gaussians: Vec<Plane>,
    pub dogs: Vec<Plane>,
}

impl Octave {
    /// Builds the octave from its base image, which already has blur `sigma0` (in samples).
    pub fn build(number: i32, origin: f32, step: f32, base: Plane, levels: usize, sigma0: f32) -> Octave {
        let mut gaussians = Vec::with_capacity(levels + 3);
        gaussians.push(base);
        for i in 1..levels + 3 {
            let previous = sigma0 * level_factor(i - 1, levels);
            let current = sigma0 * level_factor(i, levels);
            let increment = (current * current - previous * previous).sqrt();
            let next = gaussians[i - 1].blurred(increment);
            gaussians.push(next);
        }
        let dogs = gaussians.windows(2).map(|pair| pair[1].minus(&pair[0])).collect();
        Octave { number, origin, step, gaussians, dogs }
    }

    /// The next octave's base: the level with twice the base blur, decimated.
    pub fn next_base(&self, levels: usize) -> Plane {
        self.gaussians[levels].decimated()
    }
}

/// `2^(i / levels)`: the blur of level `i` relative to the octave's base.
fn level_factor(i: usize, levels: usize) -> f32 {
    (i as f32 / levels as f32).exp2()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(width: usize, height: usize) -> Plane {
        let data = (0..width * height).map(|i| ((i % width) as f32) * 0.5 + ((i / width) as f32) * 0.25).collect();
        Plane { width, height, data }
    }

    #[test]
    fn resampling_keeps_sample_positions() {
        let plane = ramp(7, 5);
        let up = plane.upsampled();
        // New sample k sits at old coordinate k / 2, and the ramp is linear there.
        assert_eq!((up.width, up.height), (14, 10));
        assert!((up.row(3)[5] - (2.5 * 0.5 + 1.5 * 0.25)).abs() < 1e-6);
        let down = up.decimated();
        assert_eq!(down, plane);
    }

    #[test]
    fn blur_keeps_mass_and_matches_the_gaussian_variance() {
        let mut plane = Plane::new(61, 61);
        plane.data[30 * 61 + 30] = 1.0;
        let blurred = plane.blurred(2.5);
        let total: f32 = blurred.data.iter().sum();
        let variance_x: f32 = blurred.data.iter().enumerate().map(|(i, v)| v * ((i % 61) as f32 - 30.0).powi(2)).sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        // Sampling a Gaussian adds ~1/12 px² of variance at worst; 2.5² = 6.25.
        assert!((variance_x - 6.25).abs() < 0.1, "{variance_x}");
    }
}
