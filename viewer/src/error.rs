//! The viewer's error type: every failure says what went wrong first, then names the file or the
//! GPU stage at fault.

use std::path::PathBuf;

/// Errors loading a scene or rendering it.
#[derive(Debug, thiserror::Error)]
pub enum ViewerError {
    #[error("{source}: {}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("nothing the viewer can show: {problem}: {}", path.display())]
    Unsupported { path: PathBuf, problem: String },
    #[error("{problem}: {}", path.display())]
    Invalid { path: PathBuf, problem: String },
    #[error(transparent)]
    SplatPly(#[from] kiln_core::splats::ply::PlyError),
    #[error(transparent)]
    Mesh(#[from] kiln_core::mesh::error::MeshError),
    #[error(transparent)]
    Dataset(#[from] kiln_dataset::DatasetError),
    #[error("glTF: {source}: {}", path.display())]
    Gltf { path: PathBuf, source: gltf::Error },
    #[error("cannot decode image: {source}: {}", path.display())]
    Image { path: PathBuf, source: image::ImageError },
    #[error(transparent)]
    Gpu(#[from] kiln_splats::gpu::GpuError),
    #[error("render target is {width}×{height}; both sides must be between 1 and {max}")]
    TargetSize { width: u32, height: u32, max: u32 },
    /// A GPU-side failure outside wgpu's validation (a readback, a wait).
    #[error("rendering: {0}")]
    Render(String),
}

impl ViewerError {
    /// Whether the input is at fault (a file that cannot be read or shown, a bad size), as
    /// opposed to the GPU or the machine.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ViewerError::Gpu(_) | ViewerError::Render(_))
    }
}
