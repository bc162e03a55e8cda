//! A job's errors ([`JobError`]) and their class ([`ErrorClass`]), which every front end maps to
//! what it shows: the CLI to exit codes, the server to HTTP statuses. [`classify`] gives the class
//! of any engine error met in a chain of causes, so that no front end decides it again.

use std::path::PathBuf;

use kiln_check::CheckError;
use kiln_core::error_text::chain_text;
use kiln_core::photos::PhotoError;
use kiln_core::splats::ply::PlyError;
use kiln_dataset::DatasetError;
use kiln_protocol::{ErrorClass, Stage};
use kiln_sfm::SfmError;

use crate::mesh_stage::MeshStageError;
use crate::zip_input::ZipInputError;

/// Errors of a job. Each says what is wrong first and names the file or folder last.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The photos (or ZIP) cannot give a model; the message says why and what to do.
    #[error("{problem}: {input}")]
    BadInput { input: PathBuf, problem: String },
    /// The capture check predicts failure; `advice` is what the user should change.
    #[error("the capture check refuses this photo set: {advice}: {input}")]
    CaptureRefused { input: PathBuf, advice: String },
    #[error(transparent)]
    Zip(#[from] ZipInputError),
    #[error("{source}: {path}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A stage failed; `class` says whose problem it is.
    #[error("stage {stage} failed: {message}")]
    Stage { stage: Stage, class: ErrorClass, message: String },
    /// Stopped on request; the job folder is kept, and running the job again resumes it.
    #[error("cancelled during stage {0}; the job resumes from there when run again")]
    Cancelled(Stage),
    /// Another process runs this job now (its lock is on `job.lock` in the folder).
    #[error(
        "another kiln process{} is running this job; wait for it to finish or stop it: {}",
        holder.map_or_else(String::new, |pid| format!(" (pid {pid})")),
        job_dir.display()
    )]
    Busy { job_dir: PathBuf, holder: Option<u32> },
}

impl JobError {
    pub fn class(&self) -> ErrorClass {
        match self {
            JobError::BadInput { .. } | JobError::CaptureRefused { .. } | JobError::Zip(_) => ErrorClass::BadInput,
            JobError::Io { .. } => ErrorClass::Internal,
            JobError::Stage { class, .. } => *class,
            JobError::Cancelled(_) => ErrorClass::Cancelled,
            JobError::Busy { .. } => ErrorClass::Busy,
        }
    }

    /// Whether the error is about the input given rather than a failure of the work.
    pub fn is_bad_input(&self) -> bool {
        self.class() == ErrorClass::BadInput
    }
}

/// The class of `error` when it is one of the engine's errors, else `None`. Front ends walk an
/// error's chain of causes with it and take the first class found.
pub fn classify(error: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    if let Some(e) = error.downcast_ref::<JobError>() {
        return Some(e.class());
    }
    if let Some(e) = error.downcast_ref::<MeshStageError>() {
        return Some(e.class());
    }
    if let Some(e) = error.downcast_ref::<SfmError>() {
        return Some(sfm_class(e));
    }
    if let Some(e) = error.downcast_ref::<CheckError>() {
        return Some(match e {
            CheckError::Photos(e) => photo_class(e),
            CheckError::Internal(_) => ErrorClass::Internal,
        });
    }
    if let Some(e) = error.downcast_ref::<PhotoError>() {
        return Some(photo_class(e));
    }
    if error.is::<DatasetError>() || error.is::<PlyError>() || error.is::<ZipInputError>() {
        return Some(ErrorClass::BadInput);
    }
    None
}

/// Pose estimation's errors: the photos' fault, a stop, or Kiln's.
pub fn sfm_class(error: &SfmError) -> ErrorClass {
    match error {
        SfmError::BadPhoto { .. } | SfmError::Unusable { .. } | SfmError::Decode { .. } => ErrorClass::BadInput,
        SfmError::Cancelled => ErrorClass::Cancelled,
        SfmError::Io { .. } | SfmError::Internal(_) => ErrorClass::Internal,
    }
}

fn photo_class(error: &PhotoError) -> ErrorClass {
    match error {
        PhotoError::Io { .. } => ErrorClass::Internal,
        PhotoError::Decode { .. } | PhotoError::BadPhoto { .. } | PhotoError::Unusable { .. } => ErrorClass::BadInput,
    }
}

/// A stage failure, with the error's whole chain of causes in the message. Inside a job, the
/// stage's inputs are the job's own files, so a failure there is Kiln's, not the user's input.
pub(crate) fn stage_error(stage: Stage, error: &dyn std::error::Error) -> JobError {
    JobError::Stage { stage, class: ErrorClass::Internal, message: chain_text(error) }
}

/// A failure of the compute device (no adapter, device lost).
pub(crate) fn device_error(stage: Stage, error: &dyn std::error::Error) -> JobError {
    JobError::Stage { stage, class: ErrorClass::Device, message: chain_text(error) }
}
