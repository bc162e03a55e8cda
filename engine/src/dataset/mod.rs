//! Posed image datasets: nerfstudio `transforms.json` and COLMAP models in, undistorted and
//! downscaled training views out.

use std::path::PathBuf;

use crate::camera::{Camera, Distortion};

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

/// A sparse point cloud (COLMAP `points3D`, or nerfstudio's `ply_file_path`), world frame.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PointCloud {
    pub positions: Vec<[f32; 3]>,
    /// RGB in `[0, 1]`.
    pub colors: Vec<[f32; 3]>,
}

/// A posed image dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The folder or file the dataset was read from (for messages).
    pub source: PathBuf,
    pub views: Vec<View>,
    pub points: Option<PointCloud>,
}
