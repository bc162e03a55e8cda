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
pub mod hash;
pub mod lock;
pub mod manifest;
pub mod mesh_stage;
mod progress;
pub mod report;
mod run;
pub mod settings;
mod stages;
pub mod train_stage;
pub mod verdict;
pub mod zip_input;

pub use hash::hash_file;
pub use report::JobReport;
pub use run::{ZIP_INPUT_DIR, run_job};
pub use stages::CHECKPOINT_FILE;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::mesh_stage::Format;
use kiln_mesh::preset::Preset;

/// The engine's version, recorded in manifests, reports and stage records.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The stages of a job, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Check,
    Poses,
    Train,
    Mesh,
    Export,
}

impl Stage {
    pub const ALL: [Stage; 5] = [Stage::Check, Stage::Poses, Stage::Train, Stage::Mesh, Stage::Export];

    /// The stage's subfolder in the job folder.
    pub fn dir_name(self) -> &'static str {
        match self {
            Stage::Check => "check",
            Stage::Poses => "poses",
            Stage::Train => "train",
            Stage::Mesh => "mesh",
            Stage::Export => "export",
        }
    }
}

/// What happened, for progress displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Started,
    Progress,
    /// The stage's output was already complete in the job folder.
    Skipped,
    Finished,
    Failed,
}

/// A typed progress event: what a CLI bar, the app and a server worker all consume.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobEvent {
    pub stage: Stage,
    pub kind: EventKind,
    /// Fraction of the stage done, 0..=1.
    pub stage_fraction: f64,
    /// Fraction of the whole job done, 0..=1 (stages weighted by their expected cost).
    pub job_fraction: f64,
    /// Seconds the whole job is expected to need from now, once there is a basis for a guess.
    pub eta_s: Option<f64>,
    /// One line for people ("matching 120/780 pairs", "PSNR 31.2 dB · 84k splats").
    pub message: String,
    /// A preview image the stage just wrote (a render, a thumbnail), if any.
    pub preview: Option<PathBuf>,
}

/// Which compute device trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// The plain-Rust CPU reference backend.
    Cpu,
    /// The wgpu backend on any adapter, software ones (lavapipe) included.
    Gpu,
    /// A hardware GPU if wgpu finds one, else the CPU.
    #[default]
    Auto,
}

/// Every setting of a job. Recorded in `manifest.json`; a stage's output is reused only when the
/// settings it depends on are unchanged.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobSettings {
    pub preset: Preset,
    pub formats: Vec<Format>,
    pub device: Device,
    /// Keep photos the capture check rejects (by default they are left out of the job).
    pub keep_all: bool,
    /// Training steps; `None`: the preset's.
    pub train_steps: Option<u32>,
    /// Longer image side for training and baking; `None`: the preset's.
    pub max_side: Option<u32>,
    /// Training writes a checkpoint every this many steps.
    pub checkpoint_every: u32,
    pub max_triangles: Option<usize>,
    pub texture_size: Option<u32>,
    pub seed: u64,
    /// The object's longest side in millimetres, when the user knows it: the export's metric
    /// scale (photos alone fix none).
    #[serde(default)]
    pub size_mm: Option<f64>,
    /// The last stage to run (`Export` for a full job; `Poses` for cameras only).
    pub until: Stage,
}

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

/// Errors of a job. Each names the file or setting involved and says what to change.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The photos (or ZIP) cannot give a model; the message says why and what to do.
    #[error("{input}: {problem}")]
    BadInput { input: PathBuf, problem: String },
    /// The capture check predicts failure; `advice` is what the user should change.
    #[error("{input}: the capture check refuses this photo set: {advice}")]
    CaptureRefused { input: PathBuf, advice: String },
    #[error(transparent)]
    Zip(#[from] zip_input::ZipInputError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("stage {stage:?} failed: {message}")]
    Stage { stage: Stage, message: String },
    #[error("cancelled during stage {0:?}; run the same command again to resume")]
    Cancelled(Stage),
    /// Another process runs this job now (its lock is on `job.lock` in the folder).
    #[error(
        "{}: another kiln process{} is running this job; wait for it to finish or stop it",
        job_dir.display(),
        holder.map_or_else(String::new, |pid| format!(" (pid {pid})"))
    )]
    Busy { job_dir: PathBuf, holder: Option<u32> },
}

impl JobError {
    /// Whether the error is about the input given (exit code 2) rather than a failure.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, JobError::BadInput { .. } | JobError::CaptureRefused { .. } | JobError::Zip(_))
    }
}
