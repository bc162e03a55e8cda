//! The error type of every exporter in [`kiln_export`].

use std::path::PathBuf;

/// Why an export failed. Each says what is wrong first and names the file, if any, last.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{source}: {}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("encoding {what} as PNG: {source}")]
    Png { what: &'static str, source: image::ImageError },
    #[error("cannot decode image: {source}: {}", path.display())]
    Decode { path: PathBuf, source: image::ImageError },
    #[error("mesh cannot be exported: {0}")]
    InvalidMesh(String),
    #[error("{problem}: {}", path.display())]
    Invalid { path: PathBuf, problem: String },
    #[error("bad export frame: {0}")]
    Frame(String),
    /// Building a zip archive in memory (USDZ) failed.
    #[error("cannot build the zip archive: {0}")]
    Zip(#[from] zip::result::ZipError),
}

impl ExportError {
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| ExportError::Io { path: path.to_path_buf(), source }
    }
}
