//! The mat's markers in a photo: AprilTag 36h11 detection by AprilTag's own C detector.
//!
//! Library choice: the `apriltag` crate (0.4, safe bindings over `apriltag-sys`, which vendors
//! the AprilRobotics C sources and compiles them with `cc`: no bindgen or libclang, no system
//! library; about 15 s of C on two cores, once). It is the reference implementation the tag
//! families were designed with: sub-pixel edge refinement, one-bit error correction, decimation
//! for large photos. The pure-Rust `aprilgrid` was the other candidate; it detects Kalibr's
//! *aprilgrid* boards (a tag grid with black squares between the tags, not free-standing tags
//! around an object), and brings `faer`, `imageproc`, `kdtree` and a second `glam` into the
//! build, minutes of compiling for a layout we do not print.
//!
//! Corners are in Kiln's pixel convention (the top-left pixel's centre at (0.5, 0.5)), in the
//! order of [`crate::layout::Marker::corners_mm`].

use apriltag::{Detector, DetectorBuilder, Family, Image};
use glam::DVec2;

use kiln_core::image_buf::ImageRgb;

use crate::layout::Layout;

/// Detections whose bits were decoded with less margin than this (the mean distance of the
/// data cells' intensities from the threshold, 0..255) are dropped: AprilTag's authors suggest
/// filtering weak ones, and texture on a real object decodes to a valid code at margins of a few
/// units, while a printed tag seen at 6 pixels a cell scores 50 or more.
const MIN_DECISION_MARGIN: f32 = 25.0;
/// Photos wider or taller than this are decimated by 2 for the quad search (corners are still
/// refined on the full image): the mat's markers span tens of pixels at that size, and the
/// search is quadratic in nothing but linear in pixels, so this halves the work on big photos.
const DECIMATE_ABOVE_SIDE: u32 = 1200;
/// Error bits the detector corrects: one keeps tag36h11's false-positive rate negligible
/// (its codes are 11 bits apart) while tolerating a speck on a print.
const BITS_CORRECTED: usize = 1;

/// One marker of the mat seen in one photo.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sighting {
    pub id: u32,
    /// The black square's corners, pixels, in the layout's corner order.
    pub corners_px: [DVec2; 4],
    /// AprilTag's decision margin (how clearly the bits were read).
    pub margin: f32,
}

/// Errors of the marker detector.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("the AprilTag detector could not be created: {0}")]
    Detector(String),
    #[error("an image of {width} × {height} pixels could not be handed to the detector: {reason}")]
    Image { width: u32, height: u32, reason: String },
}

/// The mat's markers in `image` (ids of other tags and weak detections left out).
pub fn detect_markers(image: &ImageRgb) -> Result<Vec<Sighting>, DetectError> {
    let mut detector = detector(image.width.max(image.height))?;
    let grey = grey_image(image)?;
    let sightings: Vec<Sighting> = detector
        .detect(&grey)
        .iter()
        .filter(|d| d.decision_margin() >= MIN_DECISION_MARGIN)
        .filter_map(|d| {
            let id = u32::try_from(d.id()).ok()?;
            Layout::of_marker(id)?;
            let corners_px = d.corners().map(|[x, y]| DVec2::new(x, y));
            Some(Sighting { id, corners_px, margin: d.decision_margin() })
        })
        .collect();
    tracing::debug!(markers = sightings.len(), "mat markers detected");
    Ok(sightings)
}

fn detector(longest_side: u32) -> Result<Detector, DetectError> {
    let mut detector = DetectorBuilder::new()
        .add_family_bits(Family::tag_36h11(), BITS_CORRECTED)
        .build()
        .map_err(|e| DetectError::Detector(e.to_string()))?;
    detector.set_decimation(if longest_side > DECIMATE_ABOVE_SIDE { 2.0 } else { 1.0 });
    detector.set_refine_edges(true);
    detector.set_thread_number(1);
    Ok(detector)
}

/// Luma (Rec. 601 weights on the stored values) as AprilTag's 8-bit image.
fn grey_image(image: &ImageRgb) -> Result<Image, DetectError> {
    let (width, height) = (image.width as usize, image.height as usize);
    let bad = |reason: String| DetectError::Image { width: image.width, height: image.height, reason };
    let mut grey = Image::zeros_with_alignment(width, height, apriltag::image_buf::DEFAULT_ALIGNMENT_U8)
        .map_err(|e| bad(e.to_string()))?;
    let stride = grey.stride();
    let buffer = grey.as_slice_mut();
    for (row, pixels) in image.pixels.chunks_exact(width.max(1)).enumerate() {
        for (col, [r, g, b]) in pixels.iter().enumerate() {
            let luma = 0.299 * r + 0.587 * g + 0.114 * b;
            if let Some(value) = buffer.get_mut(row * stride + col) {
                *value = (luma.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    Ok(grey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Paper;
    use crate::sheet::render_png;

    /// The sheet rendered flat at `px_per_mm`: every marker found, each corner where the layout
    /// puts it (pixel centres at +0.5), in the layout's order.
    #[test]
    fn finds_every_marker_of_a_flat_sheet_at_its_layout_corners() {
        let layout = Paper::A4.layout();
        let px_per_mm = 2.0;
        let png = render_png(layout, px_per_mm * 25.4);
        let rgb = ImageRgb {
            width: png.width(),
            height: png.height(),
            pixels: png.pixels().map(|p| [f32::from(p[0]) / 255.0; 3]).collect(),
        };
        let sightings = detect_markers(&rgb).unwrap();
        assert_eq!(sightings.len(), layout.markers.len(), "{sightings:?}");
        let [w, h] = layout.paper.size_mm();
        for sighting in &sightings {
            let (_, marker) = Layout::of_marker(sighting.id).unwrap();
            for (corner, seen) in marker.corners_mm(layout).iter().zip(&sighting.corners_px) {
                let expected = DVec2::new((corner.x + 0.5 * w) * px_per_mm, (0.5 * h - corner.y) * px_per_mm);
                assert!(expected.distance(*seen) < 0.3, "marker {} corner {expected} seen at {seen}", sighting.id);
            }
        }
    }

    #[test]
    fn a_blank_image_has_no_markers() {
        let blank = ImageRgb::new(320, 240, [0.8; 3]);
        assert!(detect_markers(&blank).unwrap().is_empty());
    }
}
