//! Errors of the mesh stage: reading and writing mesh files, and extracting a surface from splats.

use std::path::PathBuf;

/// Everything that can go wrong turning splats into a mesh or moving a mesh through a file. Each
/// names the problem first and the file, if any, last.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("{source}: {}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A malformed or unsupported PLY file; `problem` says where and what.
    #[error("{problem}: {}", path.display())]
    Ply { path: PathBuf, problem: String },
    /// The inputs cannot give a surface (no views, an empty region, an inconsistent mesh).
    #[error("{0}")]
    InvalidInput(String),
    /// The fused volume holds no iso-surface: nothing was seen inside the region of interest.
    #[error("no surface found: {0}")]
    NoSurface(String),
    /// A closed surface whose triangles face inwards (negative enclosed volume).
    #[error("inverted mesh: {0}")]
    Inverted(String),
    /// The caller's `should_stop` asked the work to stop.
    #[error("stopped on request")]
    Cancelled,
}
