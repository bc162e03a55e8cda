//! Typed progress events: what a CLI bar, the app and the hosted API's event stream all consume.
//! Programs read the typed fields; [`JobEvent::message`] is the same facts in one line for people.

use std::path::PathBuf;

use crate::settings::{Format, Stage};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Started,
    Progress,
    /// The stage's output was already complete in the job folder.
    Skipped,
    Finished,
    Failed,
}

/// Where within its stage a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    // The capture check.
    ListingPhotos,
    MeasuringPhotos,
    EstimatingFocalLengths,
    QuickMatching,
    // Pose estimation.
    ReadingPhotos,
    Features,
    Matching,
    Verification,
    Mapping,
    BundleAdjustment,
    WritingPoses,
    // Training.
    LoadingPhotos,
    Training,
    // The mesh stage.
    LoadingSplats,
    Surface,
    Cleanup,
    Decimation,
    Atlas,
    Baking,
    WritingMesh,
    /// The model compared with the held-out photos.
    Verdict,
    // The export.
    Exporting(Format),
}

impl Phase {
    /// A short name for progress lines.
    pub fn name(self) -> &'static str {
        match self {
            Phase::ListingPhotos => "listing photos",
            Phase::MeasuringPhotos => "measuring photos",
            Phase::EstimatingFocalLengths => "estimating focal lengths",
            Phase::QuickMatching => "matching pairs",
            Phase::ReadingPhotos => "photos",
            Phase::Features => "features",
            Phase::Matching => "matching",
            Phase::Verification => "verify",
            Phase::Mapping => "mapping",
            Phase::BundleAdjustment => "adjust",
            Phase::WritingPoses => "output",
            Phase::LoadingPhotos => "loading photos",
            Phase::Training => "step",
            Phase::LoadingSplats => "load",
            Phase::Surface => "surface",
            Phase::Cleanup => "cleanup",
            Phase::Decimation => "decimate",
            Phase::Atlas => "atlas",
            Phase::Baking => "bake",
            Phase::WritingMesh => "write",
            Phase::Verdict => "verdict",
            Phase::Exporting(format) => format.name(),
        }
    }
}

/// `done` of `total` units of the current phase (photos, pairs, steps, views).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Step {
    pub done: u64,
    pub total: u64,
}

/// Training's live figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TrainMetrics {
    /// The last training loss.
    pub loss: Option<f32>,
    /// The latest held-out PSNR, dB, when one was measured.
    pub psnr: Option<f32>,
    pub splats: usize,
    /// The backend that trains (`cpu`, or the GPU adapter's name).
    pub device: String,
    /// The step of the checkpoint this run went on from, when it resumed an interrupted one.
    #[serde(default)]
    pub resumed_from_step: Option<u32>,
}

/// A progress event.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct JobEvent {
    pub stage: Stage,
    pub kind: EventKind,
    /// Where within the stage, for progress events that know.
    #[serde(default)]
    pub phase: Option<Phase>,
    #[serde(default)]
    pub step: Option<Step>,
    /// Training's figures, on training progress events.
    #[serde(default)]
    pub metrics: Option<TrainMetrics>,
    /// Fraction of the stage done, 0..=1.
    pub stage_fraction: f64,
    /// Fraction of the whole job done, 0..=1 (stages weighted by their expected cost).
    pub job_fraction: f64,
    /// Seconds the whole job is expected to need from now, once there is a basis for a guess.
    pub eta_s: Option<f64>,
    /// The same facts in one line for people ("matching 120/780", "step 300/1500 · loss 0.0421").
    pub message: String,
    /// A preview image the stage just wrote (a render, a thumbnail), if any.
    pub preview: Option<PathBuf>,
}
