//! Structure from motion: camera poses, intrinsics and a sparse point cloud from unposed photos.
//!
//! The phases, each its own module, data flowing one way:
//! 1. [`photos`]: list a folder, read EXIF, group photos into shared intrinsics, load grey images
//!    with the EXIF orientation applied.
//! 2. [`features`]: SIFT keypoints and descriptors.
//! 3. [`matching`]: which pairs to match, and descriptor matching (ratio test, mutual best).
//! 4. [`verify`]: two-view geometry (E / F / H) by robust estimation; [`geometry`] holds the
//!    minimal solvers, triangulation, PnP and the RANSAC machinery.
//! 5. [`mapper`]: tracks, initial pair, next-best-view registration, triangulation, filtering,
//!    with [`ba`] (bundle adjustment) refining the [`model::Reconstruction`].
//! 6. [`pipeline`]: runs the phases with progress and writes the outputs (COLMAP model,
//!    nerfstudio `transforms.json`, [`report`]'s `poses-report.json`). [`eval`] compares poses
//!    with a reference after a similarity alignment.
//!
//! Conventions everywhere in this module tree:
//! - `f64` for all geometry;
//! - OpenCV camera axes (+X right, +Y down, +Z forward), poses named by their spaces
//!   (`camera_from_world`);
//! - pixel coordinates in the photo **as displayed** (EXIF orientation applied) at full
//!   resolution, origin at the top-left corner of the top-left pixel (pixel centres at `i + 0.5`,
//!   as COLMAP and the renderer use).

pub mod ba;
pub mod eval;
pub mod mapper;
pub mod pipeline;
pub mod report;

use std::path::PathBuf;

/// Errors of the SfM stage. Each says what is wrong and what to do, then names the file or folder
/// at fault, last.
#[derive(Debug, thiserror::Error)]
pub enum SfmError {
    #[error("{source}: {}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot decode image: {source}: {}", path.display())]
    Decode { path: PathBuf, source: image::ImageError },
    /// A photo Kiln cannot use (unsupported size, unreadable EXIF that matters, …).
    #[error("{problem}: {}", path.display())]
    BadPhoto { path: PathBuf, problem: String },
    /// The input as a whole cannot give poses: too few photos, no overlap, no texture.
    /// `problem` says why in words a photographer acts on.
    #[error("{problem}: {}", input.display())]
    Unusable { input: PathBuf, problem: String },
    /// The robust estimation or the optimisation failed in a way that is Kiln's fault.
    #[error("structure from motion failed: {0}")]
    Internal(String),
    /// The caller's `should_stop` asked the run to stop; nothing was written.
    #[error("pose estimation stopped on request")]
    Cancelled,
}

/// The phases, for progress reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Photos,
    Features,
    Matching,
    Verification,
    Reconstruction,
    BundleAdjustment,
    Output,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Photos => "photos",
            Phase::Features => "features",
            Phase::Matching => "matching",
            Phase::Verification => "verify",
            Phase::Reconstruction => "mapping",
            Phase::BundleAdjustment => "adjust",
            Phase::Output => "output",
        }
    }
}

/// Progress within a phase: `done` of `total` units (images, pairs, …), with a short message.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseProgress {
    pub phase: Phase,
    pub done: usize,
    pub total: usize,
    pub message: String,
}

impl From<kiln_core::photos::PhotoError> for SfmError {
    fn from(error: kiln_core::photos::PhotoError) -> Self {
        use kiln_core::photos::PhotoError;
        match error {
            PhotoError::Io { path, source } => SfmError::Io { path, source },
            PhotoError::Decode { path, source } => SfmError::Decode { path, source },
            PhotoError::BadPhoto { path, problem } => SfmError::BadPhoto { path, problem },
            PhotoError::Unusable { input, problem } => SfmError::Unusable { input, problem },
        }
    }
}
