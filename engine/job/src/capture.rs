//! The capture check as a job runs it: the verdicts go to `check/check-report.json`, a set that
//! cannot work stops the job before any compute is spent, and the photos the check rejects are
//! left out unless the settings keep them all.

use std::path::{Path, PathBuf};

use crate::JobError;
use kiln_check::{CheckError, CheckOptions, CheckReport, check_photos};
use kiln_core::photos::MIN_PHOTOS;
use kiln_protocol::{ErrorClass, Phase};
use kiln_sfm::SfmError;

/// Runs the capture check on the photos in `photos_dir`; `progress(done, total, phase)`.
pub fn check(photos_dir: &Path, progress: &mut dyn FnMut(usize, usize, Phase)) -> Result<CheckReport, JobError> {
    check_photos(photos_dir, &CheckOptions::default(), progress).map_err(|error| match error {
        CheckError::Photos(error) => sfm_error(super::Stage::Check, error.into()),
        CheckError::Internal(message) => {
            JobError::Stage { stage: super::Stage::Check, class: ErrorClass::Internal, message }
        }
    })
}

/// The photos a job goes on with, or why it must not start.
pub fn usable_photos(report: &CheckReport, keep_all: bool, input: &Path) -> Result<Vec<PathBuf>, JobError> {
    if !report.can_proceed() {
        let advice = if report.advice.is_empty() {
            "the photo set cannot give a model".to_string()
        } else {
            report.advice.join("; ")
        };
        return Err(JobError::CaptureRefused { input: input.to_path_buf(), advice });
    }
    let usable: Vec<PathBuf> = report.usable_photos(keep_all).into_iter().map(Path::to_path_buf).collect();
    if usable.len() < MIN_PHOTOS {
        return Err(JobError::CaptureRefused {
            input: input.to_path_buf(),
            advice: format!(
                "only {} photo(s) pass the capture check; at least {MIN_PHOTOS} are needed (keeping all photos uses the rejected ones too): {}",
                usable.len(),
                report.advice.join("; ")
            ),
        });
    }
    Ok(usable)
}

/// An SfM error as a job error: problems with the photos are bad input, a stop on request is the
/// job's cancellation, the rest a stage failure.
pub fn sfm_error(stage: super::Stage, error: SfmError) -> JobError {
    match error {
        SfmError::BadPhoto { path, problem } => JobError::BadInput { input: path, problem },
        SfmError::Unusable { input, problem } => JobError::BadInput { input, problem },
        SfmError::Decode { path, source } => {
            JobError::BadInput { input: path, problem: format!("cannot decode image: {source}") }
        }
        SfmError::Io { path, source } => JobError::Io { path, source },
        SfmError::Internal(message) => JobError::Stage { stage, class: ErrorClass::Internal, message },
        SfmError::Cancelled => JobError::Cancelled(stage),
    }
}
