//! Kiln's engine: posed photos in, Gaussian splats out, through a plain-Rust CPU reference or a
//! wgpu GPU backend that share one interface ([`train::backend::TrainBackend`]).

pub mod atomic_file;
pub mod camera;
pub mod check;
pub mod dataset;
pub mod error_text;
pub mod export;
pub mod image_buf;
pub mod job;
pub mod mesh;
pub mod ply;
pub mod render;
pub mod sfm;
pub mod splats;
pub mod texture;
pub mod train;

#[cfg(feature = "gpu")]
pub mod gpu;
#[cfg(feature = "queue")]
pub mod queue;
