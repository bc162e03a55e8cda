//! The interface both compute backends implement: one optimisation step at a time, with the
//! parameters, optimiser moments and densification statistics living on the backend between
//! steps. Densification and checkpoints move the whole state through [`TrainState`] (a readback
//! every few hundred steps, never per step).

use crate::render::RasterOutput;
use kiln_core::camera::Camera;
use kiln_core::image_buf::ImageRgb;
use kiln_core::splats::{SplatGrads, Splats};

use crate::train::TrainError;

/// Learning rates for one step (already decayed by the schedule).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LearningRates {
    pub means: f32,
    pub log_scales: f32,
    pub rotations: f32,
    pub opacity_logits: f32,
    pub sh_dc: f32,
    pub sh_rest: f32,
}

/// Adam's first and second moments, in the parameters' own layout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdamMoments {
    pub m: SplatGrads,
    pub v: SplatGrads,
}

/// Per-splat statistics accumulated between densification passes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DensifyStats {
    /// Sum over views of ‖∂L/∂mean2d‖ in normalised device units (pixels · 2 / image side).
    pub grad2d_sum: Vec<f32>,
    /// Number of views in which the splat was visible.
    pub visible_count: Vec<u32>,
    /// Largest screen radius seen, as a fraction of the image's larger side.
    pub max_radius: Vec<f32>,
}

impl DensifyStats {
    pub fn zeros(n: usize) -> Self {
        Self { grad2d_sum: vec![0.0; n], visible_count: vec![0; n], max_radius: vec![0.0; n] }
    }
}

/// Everything that survives between steps: parameters, optimiser state, statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainState {
    pub splats: Splats,
    pub adam: AdamMoments,
    pub stats: DensifyStats,
}

/// Loss values of one step, only produced when asked for (a GPU readback).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLoss {
    pub total: f32,
    pub l1: f32,
    pub ssim: f32,
}

/// A compute backend for training: the CPU reference or the wgpu GPU backend.
pub trait TrainBackend {
    /// Human-readable device name (`"cpu (2 threads)"`, the wgpu adapter name, ...).
    fn device_name(&self) -> String;

    /// Uploads the training images; `cameras[i]` sees `targets[i]`.
    fn set_views(&mut self, cameras: &[Camera], targets: &[ImageRgb]) -> Result<(), TrainError>;

    /// Replaces the whole training state (initialisation, after densification, on resume).
    fn set_state(&mut self, state: &TrainState) -> Result<(), TrainError>;

    /// Reads the whole training state back.
    fn state(&mut self) -> Result<TrainState, TrainError>;

    /// One step on view `view`: render, loss, backward, Adam update, statistics.
    /// `adam_step` is Adam's 1-based bias-correction step count.
    fn step(&mut self, view: usize, lr: &LearningRates, adam_step: u32) -> Result<(), TrainError>;

    /// Loss of the most recent step (may cost a GPU readback: call it rarely).
    fn last_loss(&mut self) -> Result<StepLoss, TrainError>;

    /// Renders the current splats for evaluation or preview.
    fn render(&mut self, camera: &Camera, background: [f32; 3]) -> Result<RasterOutput, TrainError>;
}
