//! The capture check: verdicts on a photo set before any compute is spent on it.
//!
//! Per photo: blur, exposure clipping, resolution, near-duplicates, EXIF (camera, focal length,
//! orientation). For the set: the count, mixed cameras, an overlap and coverage estimate from a
//! quick match pass, a predicted outcome and advice the user can act on. `kiln check` prints it;
//! a job runs it first, refuses a set that cannot work and leaves out photos that fail.

mod advice;
mod calibrate;
mod image_quality;
mod overlap;
mod run;

pub use advice::Thresholds;
pub use image_quality::measure_image;
pub use overlap::{CoverageGap, EpipolarPair, OverlapGraph, QuickMatchOptions, coverage_gap, loop_closes};
pub use run::{CheckOptions, check_photos};

pub use kiln_protocol::check::{
    CheckCode, CheckReport, Finding, FocalEstimate, FocalSource, ImageMeasures, Outcome, PhotoCheck, PhotoMeasures,
    SetSummary, Verdict,
};

/// Errors of the capture check as a whole (a photo that cannot be read is a finding, not an error).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Photos(#[from] kiln_core::photos::PhotoError),
    /// Kiln's fault, not the photos'.
    #[error("capture check failed: {0}")]
    Internal(String),
}
