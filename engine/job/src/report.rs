//! What a job folder says about the job: `report.json` ([`JobReport`]: per-stage status, seconds,
//! device, metrics, output files, validator results) and each stage's completion record
//! `<stage>/stage.json` ([`StageRecord`]), written last, whose presence with the right key is
//! what makes a stage count as finished.

use crate::layout::JobLayout;
use std::path::{Path, PathBuf};

use crate::mesh_stage::Subject;
use crate::verdict::{Finding, ModelQuality, ModelVerdict, VerdictReport};
use crate::{JobError, Stage};
use kiln_check::Outcome;
use kiln_core::atomic_file::write_atomically;
use kiln_export::frame::ScaleSource;

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Running,
    Finished,
    Failed,
    Cancelled,
}

/// Where one stage stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    Pending,
    Running,
    /// Ran in this call.
    Finished,
    /// Finished by an earlier call with the same inputs and settings; not run again.
    Skipped,
    Failed,
    Cancelled,
    /// After [`super::JobSettings::until`].
    NotRequested,
}

/// One stage in `report.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageReport {
    pub stage: Stage,
    pub status: StageStatus,
    /// Wall-clock seconds the stage took when it ran (for a skipped stage: in the call that ran it).
    pub seconds: Option<f64>,
    /// One line for people: what it made, or why it failed.
    pub message: String,
}

/// The capture check's figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckSummary {
    /// Photo files in the input.
    pub photos: usize,
    /// Photos the check rejects (left out unless `keep_all`).
    pub rejected: usize,
    /// Photos the check warns about (used).
    pub warned: usize,
    pub outcome: Outcome,
    pub advice: Vec<String>,
}

/// The pose stage's figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PosesSummary {
    /// Photos given to pose estimation.
    pub photos: usize,
    /// Photos that got a pose.
    pub registered_images: usize,
    pub mean_reprojection_error_px: f64,
    pub points: usize,
}

/// The training stage's figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainSummary {
    /// Held-out PSNR, dB (`None` without test views).
    pub psnr: Option<f32>,
    pub ssim: Option<f32>,
    pub splats: usize,
    pub steps: u32,
    pub train_views: usize,
    pub test_views: usize,
    /// The backend that trained, e.g. `cpu (2 threads)`.
    pub device: String,
    /// The checkpoint step training went on from, when it resumed after an interruption.
    pub resumed_from_step: Option<u32>,
}

/// The mesh stage's figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeshFigures {
    pub triangles: usize,
    pub vertices: usize,
    pub texture_size: u32,
    /// Extent along x, y, z in metres.
    pub size_m: [f32; 3],
    /// Where the metric scale came from (`unknown`: a world unit was taken as a metre).
    #[serde(default)]
    pub scale_source: ScaleSource,
    /// What the mesh is of: the object found automatically, the masked object, or the scene.
    #[serde(default)]
    pub subject: Subject,
    /// Share of the surface the photos showed (the rest is capped holes), 0..=1.
    #[serde(default)]
    pub observed_fraction: f64,
    /// Openings of a partial capture left open.
    #[serde(default)]
    pub holes_left_open: usize,
}

/// A file the job delivered.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutputFile {
    pub path: PathBuf,
    pub bytes: u64,
}

/// The export stage's figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExportSummary {
    pub files: Vec<OutputFile>,
}

/// What one stage made, as its completion record and the report hold it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum StageSummary {
    Check(CheckSummary),
    Poses(PosesSummary),
    Train(TrainSummary),
    Mesh(MeshFigures),
    Export(ExportSummary),
}

impl StageSummary {
    /// One line for people.
    pub fn message(&self) -> String {
        match self {
            StageSummary::Check(c) => {
                format!("{} photos, {} rejected, {} with warnings: {:?}", c.photos, c.rejected, c.warned, c.outcome)
            }
            StageSummary::Poses(p) => format!(
                "{}/{} photos registered, {:.2} px mean reprojection error",
                p.registered_images, p.photos, p.mean_reprojection_error_px
            ),
            StageSummary::Train(t) => {
                let psnr = t.psnr.map_or_else(|| "no test views".to_string(), |v| format!("held-out PSNR {v:.2} dB"));
                format!("{psnr} · {} splats · {} steps on {}", t.splats, t.steps, t.device)
            }
            StageSummary::Mesh(m) => {
                let subject = match m.subject {
                    Subject::Object => "the object found in the photos",
                    Subject::Masked => "the masked object",
                    Subject::Scene => "the whole scene (no single object)",
                };
                let [x, y, z] = m.size_m;
                let scale = match m.scale_source {
                    ScaleSource::User => "scale given",
                    ScaleSource::Unknown => "scale unknown",
                };
                format!(
                    "{} triangles, {}² texture · {subject} · {x:.3} × {y:.3} × {z:.3} m ({scale}) · {:.0} % of the surface seen",
                    m.triangles,
                    m.texture_size,
                    100.0 * m.observed_fraction
                )
            }
            StageSummary::Export(e) => format!("{} files", e.files.len()),
        }
    }
}

/// Per-stage figures (present once the stage finished).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobMetrics {
    pub check: Option<CheckSummary>,
    pub poses: Option<PosesSummary>,
    pub train: Option<TrainSummary>,
    pub mesh: Option<MeshFigures>,
    /// The model against its held-out photos and the splats (see [`super::verdict`]).
    #[serde(default)]
    pub quality: Option<ModelQuality>,
    pub export: Option<ExportSummary>,
}

/// The outcome of running a third-party validator on an output (filled in by the caller that
/// ran it, e.g. the CLI when `KILN_GLTF_VALIDATOR` is set).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ValidatorResult {
    pub file: PathBuf,
    pub validator: String,
    pub passed: bool,
    /// The validator's own summary (its last lines of output).
    pub detail: String,
}

/// `report.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobReport {
    pub engine_version: String,
    /// The input as given (photo folder or ZIP).
    pub input: PathBuf,
    /// The folder the photos are read from (the input, or the ZIP's extraction in the job).
    pub photos_dir: PathBuf,
    pub job_dir: PathBuf,
    pub status: JobStatus,
    /// The error that ended the job, when it did not finish.
    pub error: Option<String>,
    /// Every stage, in order.
    pub stages: Vec<StageReport>,
    /// The training backend, once known.
    pub device: Option<String>,
    pub metrics: JobMetrics,
    #[serde(default)]
    pub validators: Vec<ValidatorResult>,
    /// The job's verdict on its model, once the mesh stage finished (see [`super::verdict`]).
    #[serde(default)]
    pub verdict: Option<ModelVerdict>,
    /// The verdict's reasons, worst first.
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// Wall-clock seconds of this call (stages skipped because finished earlier cost nothing).
    pub seconds: f64,
}

impl JobReport {
    /// A report with every stage pending.
    pub fn new(input: &Path, photos_dir: &Path, job_dir: &Path) -> Self {
        Self {
            engine_version: super::ENGINE_VERSION.to_string(),
            input: input.to_path_buf(),
            photos_dir: photos_dir.to_path_buf(),
            job_dir: job_dir.to_path_buf(),
            status: JobStatus::Running,
            error: None,
            stages: Stage::ALL
                .iter()
                .map(|&stage| StageReport {
                    stage,
                    status: StageStatus::Pending,
                    seconds: None,
                    message: String::new(),
                })
                .collect(),
            device: None,
            metrics: JobMetrics::default(),
            validators: Vec::new(),
            verdict: None,
            findings: Vec::new(),
            seconds: 0.0,
        }
    }

    pub fn stage(&self, stage: Stage) -> Option<&StageReport> {
        self.stages.iter().find(|s| s.stage == stage)
    }

    pub(crate) fn set_status(&mut self, stage: Stage, status: StageStatus, message: String) {
        if let Some(report) = self.stages.iter_mut().find(|s| s.stage == stage) {
            report.status = status;
            report.message = message;
        }
    }

    /// Records what a finished (or skipped) stage made.
    pub(crate) fn record(&mut self, summary: &StageSummary, seconds: f64, status: StageStatus) {
        let stage = match summary {
            StageSummary::Check(c) => {
                self.metrics.check = Some(c.clone());
                Stage::Check
            }
            StageSummary::Poses(p) => {
                self.metrics.poses = Some(p.clone());
                Stage::Poses
            }
            StageSummary::Train(t) => {
                self.device = Some(t.device.clone());
                self.metrics.train = Some(t.clone());
                Stage::Train
            }
            StageSummary::Mesh(m) => {
                self.metrics.mesh = Some(m.clone());
                Stage::Mesh
            }
            StageSummary::Export(e) => {
                self.metrics.export = Some(e.clone());
                Stage::Export
            }
        };
        self.set_status(stage, status, summary.message());
        if let Some(report) = self.stages.iter_mut().find(|s| s.stage == stage) {
            report.seconds = Some(seconds);
        }
    }

    /// Records the verdict on the model.
    pub(crate) fn record_verdict(&mut self, verdict: &VerdictReport) {
        self.verdict = Some(verdict.verdict);
        let mut findings = verdict.findings.clone();
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        self.findings = findings;
        self.metrics.quality.clone_from(&verdict.quality);
    }

    /// The files the export stage delivered.
    pub fn outputs(&self) -> &[OutputFile] {
        self.metrics.export.as_ref().map_or(&[], |e| e.files.as_slice())
    }

    /// Reads `report.json` from a job folder.
    pub fn read(job_dir: &Path) -> Result<Self, JobError> {
        read_json(&JobLayout::new(job_dir).report())
    }

    /// Writes `report.json` into the job folder, atomically.
    pub fn write(&self, job_dir: &Path) -> Result<(), JobError> {
        write_json(&JobLayout::new(job_dir).report(), self)
    }
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

    /// The stage's record, if there is a readable one.
    pub fn read(job_dir: &Path, stage: Stage) -> Option<Self> {
        let path = Self::path(job_dir, stage);
        match read_json::<Self>(&path) {
            Ok(record) => Some(record),
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
