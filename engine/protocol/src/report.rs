//! What a job reports: `report.json` ([`JobReport`]: per-stage status, seconds, device, metrics,
//! output files, validator results) and the job's verdict on its model ([`ModelVerdict`] with its
//! [`Finding`]s and the [`ModelQuality`] figures they rest on).

use std::path::{Path, PathBuf};

use crate::check::Outcome;
use crate::settings::Stage;

/// Where the export's metric scale came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ScaleSource {
    /// Photos alone fix no scale: one world unit was taken as a metre.
    #[default]
    Unknown,
    /// A size or distance the user gave.
    User,
    /// The calibration mat (`kiln mat`) seen in the photos.
    Mat,
}

/// How the calibration mat was fitted to the reconstruction (`mesh.json`, `report.json`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MatFigures {
    /// The printed layout, e.g. `kiln-mat-a4-v1`.
    pub layout: String,
    /// Markers with a corner in the fit.
    pub markers: usize,
    /// Corners in the fit (seen in two photos or more, consistent).
    pub corners: usize,
    /// Corners left out as outliers.
    pub corners_rejected: usize,
    /// Root-mean-square distance of the fitted corners from their printed places, millimetres.
    pub rms_mm: f64,
    /// Whether the export frame came from the mat (`false`: the user's size or distance won).
    pub used: bool,
}

/// What the mesh is of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// The object the cameras converge on, found and masked automatically (see
    /// [`super::object`]); its masks are in the mesh folder's `masks/`.
    Object,
    /// The object the given masks mark.
    Masked,
    /// The whole surface: the cameras do not converge on an object (a façade, a room), or none
    /// was found where they do.
    #[default]
    Scene,
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Running,
    Finished,
    Failed,
    Cancelled,
}

/// Where one stage stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
    /// After [`crate::JobSettings::until`].
    NotRequested,
}

/// One stage in `report.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MeshFigures {
    pub triangles: usize,
    pub vertices: usize,
    pub texture_size: u32,
    /// Extent along x, y, z in metres.
    pub size_m: [f32; 3],
    /// Where the metric scale came from (`unknown`: a world unit was taken as a metre).
    #[serde(default)]
    pub scale_source: ScaleSource,
    /// The calibration mat, when the photos show one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mat: Option<MatFigures>,
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
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OutputFile {
    pub path: PathBuf,
    pub bytes: u64,
}

/// The export stage's figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ExportSummary {
    pub files: Vec<OutputFile>,
}

/// What one stage made, as its completion record and the report hold it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
                    ScaleSource::Mat => "scale from the mat",
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
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct JobMetrics {
    pub check: Option<CheckSummary>,
    pub poses: Option<PosesSummary>,
    pub train: Option<TrainSummary>,
    pub mesh: Option<MeshFigures>,
    /// The model against its held-out photos and the splats .
    #[serde(default)]
    pub quality: Option<ModelQuality>,
    pub export: Option<ExportSummary>,
}

/// The outcome of running a third-party validator on an output (filled in by the caller that
/// ran it, e.g. the CLI when `KILN_GLTF_VALIDATOR` is set).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ValidatorResult {
    pub file: PathBuf,
    pub validator: String,
    pub passed: bool,
    /// The validator's own summary (its last lines of output).
    pub detail: String,
}

/// `report.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
    /// The job's verdict on its model, once the mesh stage finished .
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
    pub fn new(engine_version: &str, input: &Path, photos_dir: &Path, job_dir: &Path) -> Self {
        Self {
            engine_version: engine_version.to_string(),
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

    pub fn set_status(&mut self, stage: Stage, status: StageStatus, message: String) {
        if let Some(report) = self.stages.iter_mut().find(|s| s.stage == stage) {
            report.status = status;
            report.message = message;
        }
    }

    /// Records what a finished (or skipped) stage made.
    pub fn record(&mut self, summary: &StageSummary, seconds: f64, status: StageStatus) {
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
    pub fn record_verdict(&mut self, verdict: &VerdictReport) {
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
}

/// The verdict on a job's model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ModelVerdict {
    Good,
    /// Usable; the findings say what is wrong and where.
    Warnings,
    /// Not the object: the export is kept, named as failed.
    Failed,
}

/// Why a finding was made: a stable code for programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum FindingCode {
    /// The mesh covers other pixels than the object (silhouette IoU).
    Silhouette,
    /// The mesh's surface is at other depths than the splats'.
    Depth,
    /// The texture is much worse than the splats on the same pixels.
    Texture,
    /// Part of the surface was never photographed.
    Unobserved,
    /// The capture check said the set was risky.
    Capture,
    /// No held-out views: the model could not be compared with photos it was not made from.
    NotMeasured,
    /// No object was singled out: the model is the scene's whole surface.
    Scene,
}

/// One reason for the verdict, in words for the user.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
// In TypeScript `VerdictFinding`: one namespace holds it and the capture check's `Finding`.
#[cfg_attr(feature = "ts", ts(rename = "VerdictFinding"))]
pub struct Finding {
    pub code: FindingCode,
    /// `warnings` or `failed`: what this finding alone makes of the verdict.
    pub severity: ModelVerdict,
    pub message: String,
}

/// One held-out view compared.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ViewQuality {
    pub view: String,
    pub silhouette_iou: f64,
    pub depth_agreement: f64,
    pub mesh_psnr: Option<f64>,
    pub splat_psnr: Option<f64>,
}

/// The figures the verdict rests on (pixels of every compared view pooled).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ModelQuality {
    pub views: Vec<ViewQuality>,
    pub silhouette_iou: f64,
    pub depth_agreement: f64,
    /// Textured mesh against the photos inside the object region it covers, dB.
    pub mesh_psnr: Option<f64>,
    /// Splats against the photos on the same pixels, dB.
    pub splat_psnr: Option<f64>,
    /// Where the object region came from.
    pub object_region: RegionSource,
}

/// What marks the object in the held-out views.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum RegionSource {
    /// The dataset's (or the user's) object masks.
    Masks,
    /// The masks the mesh stage found (`mesh/masks/`).
    AutomaticMasks,
    /// The splats' surface inside the mesh's box (no masks at all).
    Splats,
}

/// `report.json`'s verdict with its reasons and figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct VerdictReport {
    pub verdict: ModelVerdict,
    pub findings: Vec<Finding>,
    pub quality: Option<ModelQuality>,
}

impl VerdictReport {
    /// One line for people: the verdict and its first reasons.
    pub fn summary(&self) -> String {
        let word = match self.verdict {
            ModelVerdict::Good => "good",
            ModelVerdict::Warnings => "warnings",
            ModelVerdict::Failed => "failed",
        };
        let figures = self.quality.as_ref().map_or_else(String::new, |q| {
            let psnr = q.mesh_psnr.map_or_else(String::new, |p| format!(", textured mesh {p:.1} dB held out"));
            format!(" (silhouette IoU {:.2}, depth agreement {:.2}{psnr})", q.silhouette_iou, q.depth_agreement)
        });
        let reasons: Vec<&str> = self.findings.iter().map(|f| f.message.as_str()).collect();
        if reasons.is_empty() { format!("{word}{figures}") } else { format!("{word}{figures}: {}", reasons.join("; ")) }
    }
}
