//! Local features: SIFT keypoints and descriptors, per photo.
//!
//! [`sift`] runs Lowe's detector and descriptor (the accuracy refinements of VLFeat / COLMAP
//! included) on a grey image; [`extract_features`] on a photo. The stages live in
//! `scale_space` (octaves, blur, DoG), `detect` (extrema, sub-pixel refinement), `orientation`
//! and `descriptor`.

mod descriptor;
mod detect;
mod orientation;
mod scale_space;
mod sift;

pub use sift::{SiftOptions, extract_features, sift};

/// Length of a SIFT descriptor (4×4 spatial cells × 8 orientation bins).
pub const DESCRIPTOR_LEN: usize = 128;

/// A keypoint in the photo's oriented, full-resolution pixel frame (pixel centres at `i + 0.5`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Keypoint {
    pub x: f32,
    pub y: f32,
    /// Scale (σ of the detection's Gaussian) in full-resolution pixels.
    pub scale: f32,
    /// Dominant gradient orientation in radians.
    pub orientation: f32,
}

/// The features of one photo. `descriptors` is `keypoints.len() × DESCRIPTOR_LEN`, row-major,
/// each row RootSIFT-normalised to unit L2 length, so a dot product is a similarity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Features {
    pub keypoints: Vec<Keypoint>,
    pub descriptors: Vec<f32>,
    /// sRGB colour of the photo at each keypoint (for the sparse cloud).
    pub colors: Vec<[u8; 3]>,
}

impl Features {
    pub fn len(&self) -> usize {
        self.keypoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keypoints.is_empty()
    }

    pub fn descriptor(&self, index: usize) -> &[f32] {
        &self.descriptors[index * DESCRIPTOR_LEN..(index + 1) * DESCRIPTOR_LEN]
    }
}
