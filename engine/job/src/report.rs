//! Reading and writing what a job folder says about the job: `report.json` (the protocol's
//! [`JobReport`]) and each stage's completion record
//! `<stage>/stage.json` ([`StageRecord`]), written last, whose presence with the right key is
//! what makes a stage count as finished.

use crate::layout::JobLayout;
use std::path::{Path, PathBuf};

use crate::{JobError, Stage};
use kiln_core::atomic_file::write_atomically;

pub use kiln_protocol::report::{
    CheckSummary, ExportSummary, JobMetrics, JobReport, JobStatus, MeshFigures, OutputFile, PosesSummary, StageReport,
    StageStatus, StageSummary, TrainSummary, ValidatorResult,
};

/// Reads `report.json` from a job folder.
pub fn read_report(job_dir: &Path) -> Result<JobReport, JobError> {
    read_json(&JobLayout::new(job_dir).report())
}

/// Writes `report.json` into the job folder, atomically.
pub fn write_report(report: &JobReport, job_dir: &Path) -> Result<(), JobError> {
    write_json(&JobLayout::new(job_dir).report(), report)
}

/// `<stage>/stage.json`: written last by a stage, so its presence means the stage's outputs are
/// complete. `key` is the hash of everything the outputs depend on (inputs, settings, the keys of
/// earlier stages); a record with another key belongs to other inputs or settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageRecord {
    pub key: String,
    pub engine_version: String,
    pub seconds: f64,
    pub summary: StageSummary,
}

impl StageRecord {
    pub fn path(job_dir: &Path, stage: Stage) -> PathBuf {
        JobLayout::new(job_dir).stage_record(stage)
    }

    /// The stage's record, if there is a readable one. An export record's files are given back
    /// in this folder's `export/` (where the stage writes them), whatever folder the record was
    /// written in: a job folder copied or downloaded from elsewhere names its own files.
    pub fn read(job_dir: &Path, stage: Stage) -> Option<Self> {
        let path = Self::path(job_dir, stage);
        match read_json::<Self>(&path) {
            Ok(mut record) => {
                if let StageSummary::Export(export) = &mut record.summary {
                    let dir = JobLayout::new(job_dir).stage(Stage::Export);
                    for file in &mut export.files {
                        if let Some(name) = file.path.file_name() {
                            file.path = dir.join(name);
                        }
                    }
                }
                Some(record)
            }
            Err(JobError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                tracing::warn!("{error}; the stage runs again");
                None
            }
        }
    }

    pub fn write(&self, job_dir: &Path, stage: Stage) -> Result<(), JobError> {
        write_json(&Self::path(job_dir, stage), self)
    }

    /// Removes the stage's record (its outputs then count as unfinished).
    pub fn remove(job_dir: &Path, stage: Stage) -> Result<(), JobError> {
        let path = Self::path(job_dir, stage);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(JobError::Io { path, source: e }),
            _ => Ok(()),
        }
    }
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, JobError> {
    let text = std::fs::read_to_string(path).map_err(|source| JobError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| JobError::Io { path: path.to_path_buf(), source: std::io::Error::other(e) })
}

pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), JobError> {
    let io_error = |source| JobError::Io { path: path.to_path_buf(), source };
    let text = serde_json::to_string_pretty(value).map_err(|e| io_error(std::io::Error::other(e)))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| JobError::Io { path: parent.to_path_buf(), source })?;
    }
    write_atomically(path, |w| std::io::Write::write_all(w, text.as_bytes())).map_err(io_error)
}
