//! A view's pixels: decode (JPEG / PNG), remove lens distortion, downscale, and the pinhole camera
//! that matches the result.
//!
//! Undistortion inverse-maps every output pixel centre through [`Distortion::distort`] and samples
//! the photo bilinearly; the output keeps the photo's pinhole `K`. Output pixels whose source lies
//! outside the photo get mask 0. Downscaling averages `f × f` blocks for an integer factor `f`,
//! otherwise it uses a separable tent filter widened to the scale (so it never aliases).

use std::path::Path;

use rayon::prelude::*;

use crate::{DatasetError, View};
use kiln_core::camera::{Camera, Distortion, Intrinsics};
use kiln_core::image_buf::{ImageGray, ImageRgb};

/// Largest relative difference between the photo's aspect ratio and the dataset's `w/h` that is
/// taken as "the photo was resized" (intrinsics rescaled) rather than "wrong photo" (an error).
/// One pixel of rounding on a 100-pixel side stays inside it.
const ASPECT_TOLERANCE: f32 = 0.01;

/// A view loaded for training or evaluation: undistorted, at most `max_side` pixels on its longer
/// side, the matching camera, and a mask (1 = use the pixel) when the dataset has one or when
/// undistortion left pixels without photo data. Pass `max_side = u32::MAX` for full resolution.
pub fn load_view(view: &View, max_side: u32) -> Result<(Camera, ImageRgb, Option<ImageGray>), DatasetError> {
    let mut image = decode_rgb(&view.image_path)?;
    let camera = camera_for_image(view, &image)?;
    let mut mask = match &view.mask_path {
        Some(path) => Some(decode_mask(path, image.width, image.height)?),
        None => None,
    };
    if !view.distortion.is_identity() {
        let (undistorted, undistorted_mask) = undistort(&image, mask.as_ref(), &camera.intrinsics, &view.distortion);
        image = undistorted;
        mask = undistorted_mask;
    }
    let (width, height) = fit_within(image.width, image.height, max_side);
    if (width, height) == (image.width, image.height) {
        return Ok((camera, image, mask));
    }
    let image = ImageRgb { width, height, pixels: resize(&image.pixels, image.width, image.height, width, height) };
    let mask = mask.map(|m| ImageGray { width, height, pixels: resize(&m.pixels, m.width, m.height, width, height) });
    Ok((camera.resized(width, height), image, mask))
}

/// [`load_view`] for many views, in parallel; the result is in the order of `views`.
pub fn load_views(views: &[View], max_side: u32) -> Result<Vec<(Camera, ImageRgb, Option<ImageGray>)>, DatasetError> {
    views.par_iter().map(|view| load_view(view, max_side)).collect()
}

/// Decodes a photo with its EXIF orientation applied (the same pixels structure from motion sees).
fn decode(path: &Path) -> Result<image::DynamicImage, DatasetError> {
    use kiln_core::photos::PhotoError;
    kiln_core::photos::decode_oriented(path).map_err(|error| match error {
        PhotoError::Io { path, source } => DatasetError::Io { path, source },
        PhotoError::Decode { path, source } => DatasetError::Decode { path, source },
        PhotoError::BadPhoto { path, problem } => DatasetError::BadImage { path, problem },
        other => DatasetError::BadImage { path: path.to_path_buf(), problem: other.to_string() },
    })
}

fn decode_rgb(path: &Path) -> Result<ImageRgb, DatasetError> {
    Ok(ImageRgb::from_rgb8(&decode(path)?.to_rgb8()))
}

fn decode_mask(path: &Path, width: u32, height: u32) -> Result<ImageGray, DatasetError> {
    let mask = decode(path)?.to_luma8();
    if mask.dimensions() != (width, height) {
        return Err(DatasetError::BadImage {
            path: path.to_path_buf(),
            problem: format!("mask is {}×{} but its image is {width}×{height}", mask.width(), mask.height()),
        });
    }
    Ok(ImageGray { width, height, pixels: mask.pixels().map(|p| p[0] as f32 / 255.0).collect() })
}

/// The view's camera for the decoded photo: the dataset's, rescaled when the photo was stored at
/// another resolution with the same aspect ratio.
fn camera_for_image(view: &View, image: &ImageRgb) -> Result<Camera, DatasetError> {
    let camera = view.camera;
    if (image.width, image.height) == (camera.width(), camera.height()) {
        return Ok(camera);
    }
    let aspect = |w: u32, h: u32| w as f32 / h as f32;
    let expected = aspect(camera.width(), camera.height());
    if (aspect(image.width, image.height) / expected - 1.0).abs() > ASPECT_TOLERANCE {
        return Err(DatasetError::BadImage {
            path: view.image_path.clone(),
            problem: format!(
                "image is {}×{} but the dataset describes it as {}×{}",
                image.width,
                image.height,
                camera.width(),
                camera.height()
            ),
        });
    }
    tracing::debug!(
        "rescaling intrinsics to the stored {}×{}: {}",
        image.width,
        image.height,
        view.image_path.display()
    );
    Ok(camera.resized(image.width, image.height))
}

/// The largest size with the same aspect ratio whose longer side is at most `max_side`.
fn fit_within(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max_side {
        return (width, height);
    }
    let scale = max_side.max(1) as f64 / longest as f64;
    let side = |s: u32| ((s as f64 * scale).round() as u32).clamp(1, max_side.max(1));
    (side(width), side(height))
}

/// A pixel value the resamplers can blend.
trait Pixel: Copy + Send + Sync {
    const ZERO: Self;
    fn add_scaled(self, other: Self, weight: f32) -> Self;
}

impl Pixel for f32 {
    const ZERO: Self = 0.0;
    fn add_scaled(self, other: Self, weight: f32) -> Self {
        self + other * weight
    }
}

impl Pixel for [f32; 3] {
    const ZERO: Self = [0.0; 3];
    fn add_scaled(self, other: Self, weight: f32) -> Self {
        [self[0] + other[0] * weight, self[1] + other[1] * weight, self[2] + other[2] * weight]
    }
}

/// Bilinear sample at continuous index coordinates (pixel `(i, j)` centred at `(i, j)`), clamped
/// to the edge.
fn bilinear<P: Pixel>(pixels: &[P], width: u32, height: u32, x: f32, y: f32) -> P {
    let x = x.clamp(0.0, (width - 1) as f32);
    let y = y.clamp(0.0, (height - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(width as usize - 1), (y0 + 1).min(height as usize - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let at = |xi: usize, yi: usize| pixels[yi * width as usize + xi];
    P::ZERO
        .add_scaled(at(x0, y0), (1.0 - fx) * (1.0 - fy))
        .add_scaled(at(x1, y0), fx * (1.0 - fy))
        .add_scaled(at(x0, y1), (1.0 - fx) * fy)
        .add_scaled(at(x1, y1), fx * fy)
}

/// Removes `distortion` from `image` (and its mask); see the module doc.
fn undistort(
    image: &ImageRgb,
    mask: Option<&ImageGray>,
    intrinsics: &Intrinsics,
    distortion: &Distortion,
) -> (ImageRgb, Option<ImageGray>) {
    let (width, height) = (image.width, image.height);
    let k = intrinsics;
    let mut pixels = vec![[0.0f32; 3]; image.pixels.len()];
    // The dataset mask where the output pixel has a source in the photo, 0 where it has none.
    let mut valid = vec![0.0f32; image.pixels.len()];
    let rows = pixels.par_chunks_mut(width as usize).zip(valid.par_chunks_mut(width as usize));
    rows.enumerate().for_each(|(j, (row, valid_row))| {
        let y = (j as f32 + 0.5 - k.cy) / k.fy;
        for (i, (pixel, valid)) in row.iter_mut().zip(valid_row).enumerate() {
            let x = (i as f32 + 0.5 - k.cx) / k.fx;
            let [xd, yd] = distortion.distort(x, y);
            // Source position in index coordinates (pixel centres at integers).
            let (u, v) = (k.fx * xd + k.cx - 0.5, k.fy * yd + k.cy - 0.5);
            *pixel = bilinear(&image.pixels, width, height, u, v);
            let inside = u >= -0.5 && v >= -0.5 && u <= width as f32 - 0.5 && v <= height as f32 - 0.5;
            *valid = match (inside, mask) {
                (false, _) => 0.0,
                (true, Some(m)) => bilinear(&m.pixels, width, height, u, v),
                (true, None) => 1.0,
            };
        }
    });
    let keep_mask = mask.is_some() || valid.contains(&0.0);
    (ImageRgb { width, height, pixels }, keep_mask.then_some(ImageGray { width, height, pixels: valid }))
}

/// Resizes a row-major image: block average for an integer factor, tent filter otherwise.
fn resize<P: Pixel>(pixels: &[P], width: u32, height: u32, new_width: u32, new_height: u32) -> Vec<P> {
    let factor = width / new_width;
    if factor * new_width == width && factor * new_height == height {
        return box_downscale(pixels, width, new_width, new_height, factor);
    }
    let rows = resample_rows(pixels, width, height, new_width);
    transpose(
        &resample_rows(&transpose(&rows, new_width, height), height, new_width, new_height),
        new_height,
        new_width,
    )
}

fn box_downscale<P: Pixel>(pixels: &[P], width: u32, new_width: u32, new_height: u32, factor: u32) -> Vec<P> {
    let weight = 1.0 / (factor * factor) as f32;
    (0..new_height)
        .into_par_iter()
        .flat_map_iter(|y| {
            (0..new_width).map(move |x| {
                let mut sum = P::ZERO;
                for sy in y * factor..(y + 1) * factor {
                    for sx in x * factor..(x + 1) * factor {
                        sum = sum.add_scaled(pixels[(sy * width + sx) as usize], weight);
                    }
                }
                sum
            })
        })
        .collect()
}

/// Resamples every row of a `width × height` image to `new_width` with a tent filter whose
/// radius is one output pixel when shrinking (one input pixel when enlarging).
fn resample_rows<P: Pixel>(pixels: &[P], width: u32, height: u32, new_width: u32) -> Vec<P> {
    let scale = width as f32 / new_width as f32;
    let radius = scale.max(1.0);
    // Per output column: first source column and normalised weights.
    let taps: Vec<(usize, Vec<f32>)> = (0..new_width)
        .map(|x| {
            let centre = (x as f32 + 0.5) * scale - 0.5;
            let first = (centre - radius).ceil().max(0.0) as usize;
            let last = ((centre + radius).floor() as usize).min(width as usize - 1);
            let weights: Vec<f32> =
                (first..=last).map(|s| (1.0 - (s as f32 - centre).abs() / radius).max(0.0)).collect();
            let total: f32 = weights.iter().sum();
            (first, weights.into_iter().map(|w| w / total.max(f32::MIN_POSITIVE)).collect())
        })
        .collect();
    (0..height as usize)
        .into_par_iter()
        .flat_map_iter(|y| {
            let row = &pixels[y * width as usize..(y + 1) * width as usize];
            taps.iter().map(move |(first, weights)| {
                weights.iter().enumerate().fold(P::ZERO, |sum, (k, &w)| sum.add_scaled(row[first + k], w))
            })
        })
        .collect()
}

fn transpose<P: Pixel>(pixels: &[P], width: u32, height: u32) -> Vec<P> {
    let (width, height) = (width as usize, height as usize);
    (0..width * height).map(|i| pixels[(i % height) * width + i / height]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_fit_within_keeps_aspect() {
        assert_eq!(fit_within(800, 600, 200), (200, 150));
        assert_eq!(fit_within(1080, 1920, 1000), (563, 1000));
        assert_eq!(fit_within(100, 50, 400), (100, 50));
    }

    #[test]
    fn dataset_box_and_tent_preserve_constant_and_mean() {
        let (w, h) = (12u32, 9u32);
        let ramp: Vec<f32> = (0..w * h).map(|i| (i % w) as f32).collect();
        let boxed = resize(&ramp, w, h, 4, 3);
        // Block of columns 0..3 averages to 1, 3..6 to 4, ...
        for (got, want) in boxed[..4].iter().zip([1.0, 4.0, 7.0, 10.0]) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        let tent = resize(&ramp, w, h, 5, 4);
        // A tent filter reproduces a linear ramp exactly away from the borders.
        let scale = w as f32 / 5.0;
        let expected = 2.5 * scale - 0.5;
        assert!((tent[2] - expected).abs() < 1e-4, "{} vs {expected}", tent[2]);
        let constant = resize(&vec![0.25f32; (w * h) as usize], w, h, 7, 5);
        assert!(constant.iter().all(|v| (v - 0.25).abs() < 1e-6));
    }
}
