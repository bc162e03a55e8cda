//! Training Gaussian splats from posed images: the loss, the optimiser, densification and the
//! loop that drives a [`backend::TrainBackend`].

pub mod backend;

/// Errors of the training stage.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no training views")]
    NoViews,
    #[error("view {index}: image is {got_w}×{got_h} but its camera expects {want_w}×{want_h}")]
    ImageSize { index: usize, got_w: u32, got_h: u32, want_w: u32, want_h: u32 },
    #[error("GPU: {0}")]
    Gpu(String),
}
