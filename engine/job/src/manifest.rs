//! `manifest.json`: what a job was asked to do. The engine version, every setting (as given and
//! as resolved), the input, and each input photo by name with its size and content hash, so a
//! later call can tell whether the photos changed.

use crate::layout::JobLayout;
use kiln_core::photos::{PhotoError, folder_files, relative_name};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::hash::hash_file;
use crate::report::{read_json, write_json};
use crate::{JobError, JobSettings};
use kiln_protocol::Resolved;

/// What the input was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    Folder,
    Zip,
}

/// One input photo.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputFile {
    /// Path relative to the photo folder, `/`-separated.
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub engine_version: String,
    /// The input as given (absolute).
    pub input: PathBuf,
    pub input_kind: InputKind,
    /// Content hash of the ZIP itself, for ZIP input.
    pub input_sha256: Option<String>,
    /// The folder the photos are read from: the input folder, or the ZIP's extraction.
    pub photos_dir: PathBuf,
    pub photos: Vec<InputFile>,
    pub settings: JobSettings,
    pub resolved: Resolved,
}

impl Manifest {
    /// Lists and hashes the photos under `photos_dir` (recursively, hidden entries skipped,
    /// sorted by name).
    pub fn build(
        input: &Path,
        input_kind: InputKind,
        photos_dir: &Path,
        settings: &JobSettings,
    ) -> Result<Self, JobError> {
        let input_sha256 = match input_kind {
            InputKind::Zip => Some(hash_file(input)?),
            InputKind::Folder => None,
        };
        let files = folder_files(photos_dir)
            .map_err(|error| match error {
                PhotoError::Io { path, source } => JobError::Io { path, source },
                other => JobError::BadInput { input: photos_dir.to_path_buf(), problem: other.to_string() },
            })?
            .photos;
        let photos = files
            .par_iter()
            .map(|path| {
                let bytes =
                    std::fs::metadata(path).map_err(|source| JobError::Io { path: path.clone(), source })?.len();
                Ok(InputFile { name: relative_name(photos_dir, path), bytes, sha256: hash_file(path)? })
            })
            .collect::<Result<Vec<_>, JobError>>()?;
        Ok(Self {
            engine_version: super::ENGINE_VERSION.to_string(),
            input: input.to_path_buf(),
            input_kind,
            input_sha256,
            photos_dir: photos_dir.to_path_buf(),
            photos,
            settings: settings.clone(),
            resolved: settings.resolved(),
        })
    }

    pub fn read(job_dir: &Path) -> Result<Self, JobError> {
        read_json(&JobLayout::new(job_dir).manifest())
    }

    pub fn write(&self, job_dir: &Path) -> Result<(), JobError> {
        write_json(&JobLayout::new(job_dir).manifest(), self)
    }
}
