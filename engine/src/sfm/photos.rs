//! The input photos: listing a folder, EXIF (orientation, focal length, camera), grouping photos
//! that share intrinsics, and decoding them with the orientation applied. Photos are only read.

use std::path::PathBuf;

use super::model::RadialCamera;

/// What EXIF says about a photo (all optional: many photos carry none).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExifSummary {
    pub make: Option<String>,
    pub model: Option<String>,
    pub lens: Option<String>,
    pub focal_length_mm: Option<f64>,
    pub focal_length_35mm: Option<f64>,
    /// EXIF orientation, 1–8 (1 = as stored).
    pub orientation: u16,
}

/// One usable photo.
#[derive(Clone, Debug, PartialEq)]
pub struct PhotoInfo {
    pub path: PathBuf,
    /// Path relative to the input folder, with `/` separators (the COLMAP image name).
    pub name: String,
    /// Size as displayed (after the EXIF orientation).
    pub width: u32,
    pub height: u32,
    pub exif: ExifSummary,
    /// Index into [`PhotoSet::groups`].
    pub group: usize,
}

/// Photos that share camera, lens and image size, and so share intrinsics.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraGroup {
    /// Human-readable key, e.g. `"Apple iPhone 12 · 4.2 mm · 4032×3024"`.
    pub key: String,
    /// The starting intrinsics: EXIF focal length if known, else 1.2 × the longer side.
    pub prior: RadialCamera,
    pub focal_from_exif: bool,
}

/// A photo that could not be used, and why (in words the user acts on).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RejectedPhoto {
    pub path: PathBuf,
    pub reason: String,
}

/// The photos of one input folder.
#[derive(Clone, Debug, PartialEq)]
pub struct PhotoSet {
    pub input: PathBuf,
    pub photos: Vec<PhotoInfo>,
    pub groups: Vec<CameraGroup>,
    pub rejected: Vec<RejectedPhoto>,
}
