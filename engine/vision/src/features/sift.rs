//! SIFT over a whole image: the octaves of the scale space one at a time (detect, then keep only
//! the gradients of the levels descriptors read), the strongest keypoints across octaves, their
//! orientations and descriptors; and [`extract_features`], the per-photo entry point.

use rayon::prelude::*;

use crate::features::detect::{Extremum, detect};
use crate::features::orientation::{Gradients, orientations};
use crate::features::scale_space::{Octave, Plane};
use crate::features::{DESCRIPTOR_LEN, Features, Keypoint, descriptor};
use kiln_core::image_buf::ImageGray;
use kiln_core::photos::PhotoError;
use kiln_core::photos::{PhotoInfo, decode_oriented, gray_fitting};

/// Scales per octave (Lowe, COLMAP, VLFeat: 3).
const LEVELS: usize = 3;

/// Blur of each octave's base level in its samples (Lowe: 1.6).
const SIGMA0: f32 = 1.6;

/// Blur a camera's image is assumed to have already, in input pixels (Lowe: 0.5).
const INPUT_BLUR: f32 = 0.5;

/// Reported keypoint scale over the scale the windows use. DoG level `l` is the difference of
/// Gaussian levels `l` and `l + 1`, so it responds most to blobs of the σ half-way between them
/// (geometric mean: `2^(1 / (2 × LEVELS))` above level `l`'s), not level `l`'s σ that Lowe,
/// VLFeat and COLMAP report (≈ 11 % small). Windows keep Lowe's convention, which their constants
/// were tuned for; only the reported σ is calibrated, so it matches the blob's.
const REPORTED_SCALE_FACTOR: f32 = 1.122_462; // 2^(1/6) for LEVELS = 3

/// No octave is built whose shorter side would have fewer samples: with the detection border
/// nothing would be left to detect.
const MIN_OCTAVE_SIDE: usize = 16;

/// Settings of the SIFT extractor.
#[derive(Clone, Debug, PartialEq)]
pub struct SiftOptions {
    /// Keypoints kept per photo, strongest DoG responses first.
    pub max_features: usize,
    /// Photos are downscaled so their longer side is at most this before extraction.
    pub max_image_side: u32,
    /// −1 doubles the image first (more, finer keypoints on small photos); 0 starts at the
    /// photo's resolution; n > 0 starts at 1/2ⁿ.
    pub first_octave: i32,
    /// Smallest |DoG| of a kept extremum, for grey levels in [0, 1].
    pub peak_threshold: f32,
    /// Largest ratio of principal curvatures of a kept extremum (Lowe's r).
    pub edge_threshold: f32,
}

/// Default longer side for extraction. Measured (release, 2-core machine, 2026-11-23): at
/// COLMAP's 3200 px, sceaux-castle (2832×2128) registered 10/11 photos in 73 s; at 1600 px,
/// 11/11 in 41 s. On fox (1080×1920) 1600 px gave the same accuracy as full size (median
/// pairwise rotation difference to its COLMAP poses 0.233° vs 0.230°) in 140 s instead of 186 s.
/// Photos of 1600 px and less (bunny-synth) are unaffected.
pub const DEFAULT_MAX_IMAGE_SIDE: u32 = 1600;

impl Default for SiftOptions {
    /// COLMAP's detector defaults (8192 features, upsampled first octave, peak 0.02 / 3 levels,
    /// edge 10), with photos downscaled to [`DEFAULT_MAX_IMAGE_SIDE`].
    fn default() -> Self {
        Self {
            max_features: 8192,
            max_image_side: DEFAULT_MAX_IMAGE_SIDE,
            first_octave: -1,
            peak_threshold: 0.02 / 3.0,
            edge_threshold: 10.0,
        }
    }
}

/// The features of a photo: decoded with its orientation, downscaled to
/// `options.max_image_side`, SIFT in grey, coordinates in the full-resolution oriented photo.
pub fn extract_features(photo: &PhotoInfo, options: &SiftOptions) -> Result<Features, PhotoError> {
    let decoded = decode_oriented(&photo.path)?;
    if (decoded.width(), decoded.height()) != (photo.width, photo.height) {
        return Err(PhotoError::BadPhoto {
            path: photo.path.clone(),
            problem: format!(
                "the photo decodes to {}×{} but its header said {}×{} (was it replaced while Kiln ran?)",
                decoded.width(),
                decoded.height(),
                photo.width,
                photo.height
            ),
        });
    }
    let (gray, scale) = gray_fitting(&decoded, options.max_image_side);
    let (mut keypoints, descriptors) = sift(&gray, options);
    let to_photo = 1.0 / scale as f32;
    for keypoint in &mut keypoints {
        keypoint.x *= to_photo;
        keypoint.y *= to_photo;
        keypoint.scale *= to_photo;
    }
    let rgb = decoded.to_rgb8();
    let colors = keypoints
        .iter()
        .map(|k| {
            let x = (k.x.max(0.0) as u32).min(rgb.width() - 1);
            let y = (k.y.max(0.0) as u32).min(rgb.height() - 1);
            rgb.get_pixel(x, y).0
        })
        .collect();
    tracing::debug!("{}: {} keypoints", photo.name, keypoints.len());
    Ok(Features { keypoints, descriptors, colors })
}

/// SIFT keypoints (corner-origin pixel coordinates of `image`) and their RootSIFT descriptors
/// (`keypoints.len() × DESCRIPTOR_LEN`, row-major). Grey levels are expected in [0, 1].
pub fn sift(image: &ImageGray, options: &SiftOptions) -> (Vec<Keypoint>, Vec<f32>) {
    let octaves = scale_space_extrema(image, options);
    let mut candidates: Vec<(usize, Extremum)> =
        octaves.iter().enumerate().flat_map(|(o, octave)| octave.extrema.iter().map(move |&e| (o, e))).collect();
    candidates.sort_by(|a, b| b.1.response.abs().total_cmp(&a.1.response.abs()));
    let oriented = oriented_keypoints(&octaves, &candidates, options.max_features);
    let mut descriptors = vec![0.0f32; oriented.len() * DESCRIPTOR_LEN];
    descriptors.par_chunks_mut(DESCRIPTOR_LEN).zip(&oriented).for_each(|(out, k)| {
        let octave = &octaves[k.octave];
        let gradients = octave.gradients_for(k.extremum.level);
        descriptor::describe(gradients, k.extremum.x, k.extremum.y, k.sigma, k.angle, out);
    });
    let keypoints = oriented
        .iter()
        .map(|k| {
            let octave = &octaves[k.octave];
            Keypoint {
                x: octave.to_input(k.extremum.x),
                y: octave.to_input(k.extremum.y),
                scale: octave.step * k.sigma * REPORTED_SCALE_FACTOR,
                orientation: k.angle,
            }
        })
        .collect();
    (keypoints, descriptors)
}

/// What an octave leaves once detection is done: its extrema and the gradients of the levels
/// `1..=LEVELS` from which orientations and descriptors are read.
struct OctaveFeatures {
    origin: f32,
    step: f32,
    extrema: Vec<Extremum>,
    gradients: Vec<Gradients>,
}

impl OctaveFeatures {
    /// Input-image coordinate (corner origin) of a fractional sample index.
    fn to_input(&self, index: f32) -> f32 {
        self.origin + self.step * index
    }

    /// The Gaussian level nearest an extremum's scale (DoG level `l` has the blur of Gaussian
    /// level `l`), among those with gradients.
    fn gradients_for(&self, dog_level: f32) -> &Gradients {
        let level = (dog_level.round() as usize).clamp(1, LEVELS);
        &self.gradients[level - 1]
    }
}

fn scale_space_extrema(image: &ImageGray, options: &SiftOptions) -> Vec<OctaveFeatures> {
    let (mut base, mut octave_number, origin, mut step) = first_base(image, options.first_octave);
    let mut octaves = Vec::new();
    while base.width.min(base.height) >= MIN_OCTAVE_SIDE {
        let octave = Octave::build(octave_number, origin, step, base, LEVELS, SIGMA0);
        let extrema = detect(&octave, LEVELS, options.peak_threshold, options.edge_threshold);
        let gradients = octave.gaussians[1..=LEVELS].iter().map(Gradients::of).collect();
        base = octave.next_base(LEVELS);
        tracing::trace!("octave {}: {} extrema", octave.number, extrema.len());
        octaves.push(OctaveFeatures { origin: octave.origin, step: octave.step, extrema, gradients });
        octave_number += 1;
        step *= 2.0;
    }
    octaves
}

/// The first octave's base image blurred to [`SIGMA0`] samples, its octave number, and the input
/// coordinate of its sample 0 and input pixels per sample.
fn first_base(image: &ImageGray, first_octave: i32) -> (Plane, i32, f32, f32) {
    let input = Plane { width: image.width as usize, height: image.height as usize, data: image.pixels.clone() };
    // Sample 0 stays on input pixel 0's centre through upsampling and decimation.
    let origin = 0.5;
    let (plane, number, existing_blur) = if first_octave < 0 {
        (input.upsampled(), -1, 2.0 * INPUT_BLUR)
    } else {
        let mut plane = input;
        let mut halvings = 0;
        for _ in 0..first_octave {
            if plane.width.min(plane.height) < 2 * MIN_OCTAVE_SIDE {
                break;
            }
            // Blur to 1 sample first so the decimation does not alias; after it, the blur is
            // again INPUT_BLUR samples.
            plane = plane.blurred((1.0 - INPUT_BLUR * INPUT_BLUR).sqrt()).decimated();
            halvings += 1;
        }
        (plane, halvings, INPUT_BLUR)
    };
    let base = if existing_blur < SIGMA0 {
        plane.blurred((SIGMA0 * SIGMA0 - existing_blur * existing_blur).sqrt())
    } else {
        plane
    };
    (base, number, origin, (number as f32).exp2())
}

/// A candidate with one of its orientations.
struct Oriented {
    octave: usize,
    extremum: Extremum,
    /// Scale in the octave's samples.
    sigma: f32,
    angle: f32,
}

/// Orientations of the strongest candidates, taken in order until `max_features` keypoints.
fn oriented_keypoints(
    octaves: &[OctaveFeatures],
    candidates: &[(usize, Extremum)],
    max_features: usize,
) -> Vec<Oriented> {
    let mut oriented = Vec::new();
    for chunk in candidates.chunks(max_features.max(1)) {
        if oriented.len() >= max_features {
            break;
        }
        let found: Vec<Vec<Oriented>> = chunk
            .par_iter()
            .map(|&(o, extremum)| {
                let sigma = SIGMA0 * (extremum.level / LEVELS as f32).exp2();
                let gradients = octaves[o].gradients_for(extremum.level);
                orientations(gradients, extremum.x, extremum.y, sigma)
                    .into_iter()
                    .map(|angle| Oriented { octave: o, extremum, sigma, angle })
                    .collect()
            })
            .collect();
        oriented.extend(found.into_iter().flatten());
    }
    oriented.truncate(max_features);
    oriented
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_scale_factor_is_half_a_level() {
        assert!((REPORTED_SCALE_FACTOR - (0.5 / LEVELS as f32).exp2()).abs() < 1e-6);
    }
}
