//! Jobs: one reconstruction from photos to exported files, carried by a folder.
//!
//! A job folder holds `manifest.json` (engine version, every setting, the input photos by name
//! with content hashes), `report.json` (per-stage status, timings, device, metrics) and one
//! subfolder per stage (`check/`, `poses/`, `train/`, `mesh/`, `export/`). Photos are referenced,
//! never copied (except out of a ZIP) and never modified. A stage whose output is complete is not
//! run again, and training resumes from its last checkpoint, so the same call after a crash or
//! `kill -9` goes on where the job stopped.
//!
//! The CLI (`kiln reconstruct`, `kiln batch`, `kiln watch`), the desktop app and the server's
//! workers are all clients of [`run_job`] and its [`JobEvent`]s.

pub mod capture;
pub mod device;
mod error;
pub mod estimate;
pub mod hash;
pub use kiln_protocol::layout;
pub mod lock;
pub mod manifest;
pub mod mesh_stage;
mod progress;
mod relocate;
pub mod report;
mod run;
pub mod settings;
mod stages;
pub mod train_stage;
pub mod validate;
pub mod verdict;
pub mod zip_input;

pub use error::{JobError, classify};
pub use hash::hash_file;
pub use layout::JobLayout;
pub use report::JobReport;
pub use run::{ArchiveSource, JobInput, run_job, run_job_from};

pub use kiln_protocol::{
    Device, ErrorClass, EventKind, Format, JobEvent, JobSettings, Phase, Preset, Resolved, SettingsOverrides, Stage,
    Step, TrainMetrics,
};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The engine's version, recorded in manifests, reports and stage records.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A flag the caller sets to stop a job between steps (Ctrl-C, a cancel button). The job then
/// ends with [`JobError::Cancelled`] and leaves the folder resumable.
#[derive(Clone, Debug, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
