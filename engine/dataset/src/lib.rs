//! Posed image datasets: nerfstudio `transforms.json` and COLMAP models in, undistorted and
//! downscaled training views out.
//!
//! [`Dataset::open`] recognises a `transforms.json` file, a folder holding one, or a COLMAP
//! layout (`<dir>/sparse/0/`, `<dir>/sparse/`, or the model folder itself). Listing a dataset
//! reads no pixels; [`load_view`] / [`load_views`] decode, undistort and downscale.

pub mod colmap;
mod load;
mod nerfstudio;

use std::path::{Path, PathBuf};

use kiln_core::camera::{Camera, Distortion};
use kiln_core::splats::ply::PlyError;

pub use kiln_core::point_cloud::PointCloud;
pub use load::{load_view, load_views};

/// Which split a view belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

/// One posed photo, as listed by the dataset (nothing loaded yet).
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// The name the dataset gives the image (its `file_path` or COLMAP image name).
    pub name: String,
    pub image_path: PathBuf,
    pub mask_path: Option<PathBuf>,
    /// Pose and intrinsics at the image's full, original resolution.
    pub camera: Camera,
    /// Lens distortion of the original image; removed when the image is loaded.
    pub distortion: Distortion,
    pub split: Split,
}

/// A posed image dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The folder or file the dataset was read from (for messages).
    pub source: PathBuf,
    pub views: Vec<View>,
    pub points: Option<PointCloud>,
}

/// How many missing image names an error message spells out before summarising the rest.
const MISSING_NAMES_SHOWN: usize = 8;

/// Errors reading a dataset. Each says what is wrong, where it can in which frame / line / record
/// and field, and names the file last.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{source}: {}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid JSON: {source}: {}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    /// Bad content: `location` is e.g. `frames[3].transform_matrix`, `line 12` or
    /// `byte 96 (image record 2)`.
    #[error("{location}: {problem}: {}", path.display())]
    Invalid { path: PathBuf, location: String, problem: String },
    /// Images the dataset lists that do not exist ([`OpenOptions::skip_missing_images`] leaves
    /// them out instead).
    #[error("{} listed image(s) do not exist: {}: {}", missing.len(), summarize(missing), path.display())]
    MissingImages { path: PathBuf, missing: Vec<PathBuf> },
    #[error("cannot decode image: {source}: {}", path.display())]
    Decode { path: PathBuf, source: image::ImageError },
    #[error("{problem}: {}", path.display())]
    BadImage { path: PathBuf, problem: String },
    #[error("not a dataset: expected a transforms.json file, a folder holding one, or a COLMAP model (cameras, images, points3D .bin or .txt) in the folder, its sparse/0/ or its sparse/: {}", path.display())]
    NotADataset { path: PathBuf },
    #[error(transparent)]
    Ply(#[from] PlyError),
}

fn summarize(missing: &[PathBuf]) -> String {
    let mut names: Vec<String> = missing.iter().take(MISSING_NAMES_SHOWN).map(|p| p.display().to_string()).collect();
    if missing.len() > MISSING_NAMES_SHOWN {
        names.push(format!("and {} more", missing.len() - MISSING_NAMES_SHOWN));
    }
    names.join(", ")
}

/// Choices when opening a dataset.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Leave out (with a warning) views whose image file does not exist, instead of failing.
    /// instant-ngp's fox `transforms.json` lists 67 frames of which 50 images exist.
    pub skip_missing_images: bool,
    /// For a COLMAP model: the folder the image names are relative to. Default: `<dir>/images`
    /// for a dataset folder `<dir>` holding `sparse/`.
    pub images_dir: Option<PathBuf>,
}

impl Dataset {
    /// Opens a `transforms.json` file, a folder holding one, or a COLMAP layout, with default
    /// [`OpenOptions`].
    pub fn open(path: &Path) -> Result<Self, DatasetError> {
        Self::open_with(path, &OpenOptions::default())
    }

    pub fn open_with(path: &Path, options: &OpenOptions) -> Result<Self, DatasetError> {
        if path.is_file() {
            return match path.extension().and_then(|e| e.to_str()) {
                Some("json") => nerfstudio::read(path, options),
                _ => Err(DatasetError::NotADataset { path: path.to_path_buf() }),
            };
        }
        let transforms = path.join("transforms.json");
        if transforms.is_file() {
            return nerfstudio::read(&transforms, options);
        }
        colmap::read_dataset(path, options)
    }

    pub fn train_views(&self) -> impl Iterator<Item = &View> {
        self.views.iter().filter(|v| v.split == Split::Train)
    }

    pub fn test_views(&self) -> impl Iterator<Item = &View> {
        self.views.iter().filter(|v| v.split == Split::Test)
    }
}

/// Gives views that have no split from the dataset the conventional hold-out: every 8th view, in
/// the order given, is a test view (`i % 8 == 0`, as Mip-NeRF 360 and 3DGS evaluate).
#[expect(clippy::manual_is_multiple_of, reason = "usize::is_multiple_of needs Rust 1.87; the workspace targets 1.85")]
fn every_eighth_is_test(index: usize) -> Split {
    if index % HOLDOUT_EVERY == 0 { Split::Test } else { Split::Train }
}

/// The hold-out stride of [`every_eighth_is_test`] (the `llffhold = 8` of NeRF / 3DGS evaluation).
const HOLDOUT_EVERY: usize = 8;

/// Keeps the items whose image exists; the others are dropped with a warning, or are an error
/// naming them all unless [`OpenOptions::skip_missing_images`].
fn keep_present_images<T>(
    source: &Path,
    items: Vec<T>,
    image_path: impl Fn(&T) -> &Path,
    options: &OpenOptions,
) -> Result<Vec<T>, DatasetError> {
    let (present, missing): (Vec<T>, Vec<T>) = items.into_iter().partition(|item| image_path(item).is_file());
    if missing.is_empty() {
        return Ok(present);
    }
    let missing: Vec<PathBuf> = missing.iter().map(|item| image_path(item).to_path_buf()).collect();
    if !options.skip_missing_images {
        return Err(DatasetError::MissingImages { path: source.to_path_buf(), missing });
    }
    tracing::warn!(
        "leaving out {} views whose image does not exist: {}: {}",
        missing.len(),
        summarize(&missing),
        source.display()
    );
    Ok(present)
}
