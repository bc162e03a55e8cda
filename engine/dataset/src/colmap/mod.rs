//! COLMAP sparse models: the in-memory model, reading and writing both the text and the binary
//! format, and turning a model into a [`Dataset`].
//!
//! COLMAP poses are `camera_from_world` in the OpenCV convention: `qvec = (w, x, y, z)` and `tvec`
//! with `point_in_camera = R(qvec) · point_in_world + tvec`. Supported camera models are those
//! Kiln can undistort exactly: SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL and OPENCV.

mod binary;
mod text;

use std::path::{Path, PathBuf};

use crate::{Dataset, DatasetError, OpenOptions, PointCloud, Split, View, every_eighth_is_test, keep_present_images};
use glam::{Mat3, Vec3};

use kiln_core::camera::{Camera, CameraFromWorldCv, Distortion, Intrinsics};

/// A COLMAP camera model Kiln supports, with COLMAP's numeric id and parameter order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CameraModel {
    /// `f, cx, cy`
    SimplePinhole,
    /// `fx, fy, cx, cy`
    Pinhole,
    /// `f, cx, cy, k`
    SimpleRadial,
    /// `f, cx, cy, k1, k2`
    Radial,
    /// `fx, fy, cx, cy, k1, k2, p1, p2`
    OpenCv,
}

/// Every supported model, for lookups by name or id.
const MODELS: [CameraModel; 5] = [
    CameraModel::SimplePinhole,
    CameraModel::Pinhole,
    CameraModel::SimpleRadial,
    CameraModel::Radial,
    CameraModel::OpenCv,
];

impl CameraModel {
    /// COLMAP's `model_id` (`colmap/sensor/models.h`).
    pub fn id(self) -> i32 {
        match self {
            Self::SimplePinhole => 0,
            Self::Pinhole => 1,
            Self::SimpleRadial => 2,
            Self::Radial => 3,
            Self::OpenCv => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::SimplePinhole => "SIMPLE_PINHOLE",
            Self::Pinhole => "PINHOLE",
            Self::SimpleRadial => "SIMPLE_RADIAL",
            Self::Radial => "RADIAL",
            Self::OpenCv => "OPENCV",
        }
    }

    pub fn num_params(self) -> usize {
        match self {
            Self::SimplePinhole => 3,
            Self::Pinhole | Self::SimpleRadial => 4,
            Self::Radial => 5,
            Self::OpenCv => 8,
        }
    }

    pub fn from_id(id: i32) -> Option<Self> {
        MODELS.into_iter().find(|m| m.id() == id)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        MODELS.into_iter().find(|m| m.name() == name)
    }
}

/// What an unsupported model is called in error messages.
fn unsupported_model(model: &str) -> String {
    let names: Vec<&str> = MODELS.iter().map(|m| m.name()).collect();
    format!("camera model {model} is not supported (supported: {})", names.join(", "))
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColmapCamera {
    pub camera_id: u32,
    pub model: CameraModel,
    pub width: u64,
    pub height: u64,
    /// Exactly [`CameraModel::num_params`] values, in COLMAP's order.
    pub params: Vec<f64>,
}

impl ColmapCamera {
    /// Pinhole intrinsics and distortion of this camera.
    pub fn intrinsics(&self) -> (Intrinsics, Distortion) {
        let p = |i: usize| self.params.get(i).copied().unwrap_or(0.0) as f32;
        let (fx, fy, cx, cy) = match self.model {
            CameraModel::SimplePinhole | CameraModel::SimpleRadial | CameraModel::Radial => (p(0), p(0), p(1), p(2)),
            CameraModel::Pinhole | CameraModel::OpenCv => (p(0), p(1), p(2), p(3)),
        };
        let distortion = match self.model {
            CameraModel::SimplePinhole | CameraModel::Pinhole => Distortion::default(),
            CameraModel::SimpleRadial => Distortion { k1: p(3), ..Default::default() },
            CameraModel::Radial => Distortion { k1: p(3), k2: p(4), ..Default::default() },
            CameraModel::OpenCv => Distortion { k1: p(4), k2: p(5), p1: p(6), p2: p(7), k3: 0.0 },
        };
        let intrinsics = Intrinsics { fx, fy, cx, cy, width: self.width as u32, height: self.height as u32 };
        (intrinsics, distortion)
    }

    /// The camera that represents `intrinsics` + `distortion`: PINHOLE without distortion, else
    /// OPENCV. `None` when `k3` is non-zero (that needs FULL_OPENCV, which Kiln does not write).
    pub fn from_intrinsics(camera_id: u32, intrinsics: &Intrinsics, distortion: &Distortion) -> Option<Self> {
        let i = intrinsics;
        let (model, params) = if distortion.is_identity() {
            (CameraModel::Pinhole, vec![i.fx, i.fy, i.cx, i.cy])
        } else if distortion.k3 == 0.0 {
            let d = distortion;
            (CameraModel::OpenCv, vec![i.fx, i.fy, i.cx, i.cy, d.k1, d.k2, d.p1, d.p2])
        } else {
            return None;
        };
        let params = params.into_iter().map(f64::from).collect();
        Some(Self { camera_id, model, width: i.width.into(), height: i.height.into(), params })
    }
}

/// One 2D feature of an image; `point3d_id` is `None` where COLMAP writes −1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point2D {
    pub xy: [f64; 2],
    pub point3d_id: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColmapImage {
    pub image_id: u32,
    /// Rotation of `camera_from_world`, `(w, x, y, z)`.
    pub qvec: [f64; 4],
    /// Translation of `camera_from_world`.
    pub tvec: [f64; 3],
    pub camera_id: u32,
    pub name: String,
    pub points2d: Vec<Point2D>,
}

impl ColmapImage {
    /// The pose, with `qvec` normalised; `None` when `qvec` is zero.
    pub fn camera_from_world(&self) -> Option<CameraFromWorldCv> {
        let norm = self.qvec.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm.is_nan() || norm <= 0.0 {
            return None;
        }
        let [w, x, y, z] = self.qvec.map(|v| v / norm);
        let vec3 = |a: f64, b: f64, c: f64| Vec3::new(a as f32, b as f32, c as f32);
        let rotation = Mat3::from_cols(
            vec3(1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y)),
            vec3(2.0 * (x * y - w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + w * x)),
            vec3(2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y)),
        );
        let [tx, ty, tz] = self.tvec;
        Some(CameraFromWorldCv { rotation, translation: vec3(tx, ty, tz) })
    }
}

/// One observation of a 3D point: image and index into its `points2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackElement {
    pub image_id: u32,
    pub point2d_idx: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColmapPoint3D {
    pub point3d_id: u64,
    pub xyz: [f64; 3],
    pub rgb: [u8; 3],
    pub error: f64,
    pub track: Vec<TrackElement>,
}

/// A COLMAP sparse model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColmapModel {
    pub cameras: Vec<ColmapCamera>,
    pub images: Vec<ColmapImage>,
    pub points3d: Vec<ColmapPoint3D>,
}

/// The two on-disk encodings of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    Text,
    Binary,
}

impl ModelFormat {
    fn extension(self) -> &'static str {
        match self {
            Self::Text => "txt",
            Self::Binary => "bin",
        }
    }
}

impl ColmapModel {
    /// The format of the model in `dir`: binary when `cameras.bin` and `images.bin` exist, else
    /// text when the `.txt` files do.
    pub fn detect(dir: &Path) -> Option<ModelFormat> {
        [ModelFormat::Binary, ModelFormat::Text].into_iter().find(|format| {
            let ext = format.extension();
            dir.join(format!("cameras.{ext}")).is_file() && dir.join(format!("images.{ext}")).is_file()
        })
    }

    /// Reads `cameras`, `images` and (if present) `points3D` from `dir`.
    pub fn read(dir: &Path) -> Result<Self, DatasetError> {
        let format = Self::detect(dir).ok_or_else(|| DatasetError::NotADataset { path: dir.to_path_buf() })?;
        let file = |name: &str| dir.join(format!("{name}.{}", format.extension()));
        let points_path = file("points3D");
        let model = match format {
            ModelFormat::Text => Self {
                cameras: text::read_cameras(&file("cameras"))?,
                images: text::read_images(&file("images"))?,
                points3d: if points_path.is_file() { text::read_points3d(&points_path)? } else { Vec::new() },
            },
            ModelFormat::Binary => Self {
                cameras: binary::read_cameras(&file("cameras"))?,
                images: binary::read_images(&file("images"))?,
                points3d: if points_path.is_file() { binary::read_points3d(&points_path)? } else { Vec::new() },
            },
        };
        Ok(model)
    }

    /// Writes the three files into `dir` (created if needed), each atomically.
    pub fn write(&self, dir: &Path, format: ModelFormat) -> Result<(), DatasetError> {
        std::fs::create_dir_all(dir).map_err(|source| DatasetError::Io { path: dir.to_path_buf(), source })?;
        let file = |name: &str| dir.join(format!("{name}.{}", format.extension()));
        for camera in &self.cameras {
            if camera.params.len() != camera.model.num_params() {
                return Err(DatasetError::Invalid {
                    path: file("cameras"),
                    location: format!("camera {}", camera.camera_id),
                    problem: format!(
                        "{} has {} parameters, not {}",
                        camera.model.name(),
                        camera.params.len(),
                        camera.model.num_params()
                    ),
                });
            }
        }
        match format {
            ModelFormat::Text => {
                text::write_cameras(&file("cameras"), &self.cameras)?;
                text::write_images(&file("images"), &self.images)?;
                text::write_points3d(&file("points3D"), &self.points3d)
            }
            ModelFormat::Binary => {
                binary::write_cameras(&file("cameras"), &self.cameras)?;
                binary::write_images(&file("images"), &self.images)?;
                binary::write_points3d(&file("points3D"), &self.points3d)
            }
        }
    }

    /// The views of this model, sorted by image name, every 8th a test view; image paths are
    /// `images_dir/name`. `source` names the model in messages.
    pub fn views(&self, source: &Path, images_dir: &Path) -> Result<Vec<View>, DatasetError> {
        let mut images: Vec<&ColmapImage> = self.images.iter().collect();
        images.sort_by(|a, b| a.name.cmp(&b.name));
        images
            .into_iter()
            .enumerate()
            .map(|(index, image)| self.view(image, source, images_dir, every_eighth_is_test(index)))
            .collect()
    }

    fn view(&self, image: &ColmapImage, source: &Path, images_dir: &Path, split: Split) -> Result<View, DatasetError> {
        let invalid =
            |location: String, problem: String| DatasetError::Invalid { path: source.to_path_buf(), location, problem };
        let image_location = || format!("image {} ({})", image.image_id, image.name);
        let camera = self
            .cameras
            .iter()
            .find(|c| c.camera_id == image.camera_id)
            .ok_or_else(|| invalid(image_location(), format!("camera {} does not exist", image.camera_id)))?;
        let usable = 1..=u64::from(u32::MAX);
        if !usable.contains(&camera.width) || !usable.contains(&camera.height) {
            let size = format!("image size {}×{} is not usable", camera.width, camera.height);
            return Err(invalid(format!("camera {}", camera.camera_id), size));
        }
        let camera_from_world =
            image.camera_from_world().ok_or_else(|| invalid(image_location(), "qvec is zero".into()))?;
        let (intrinsics, distortion) = camera.intrinsics();
        if !(intrinsics.fx > 0.0 && intrinsics.fy > 0.0) {
            let focal = format!("focal lengths {}, {} are not positive", intrinsics.fx, intrinsics.fy);
            return Err(invalid(format!("camera {}", camera.camera_id), focal));
        }
        Ok(View {
            name: image.name.clone(),
            image_path: images_dir.join(&image.name),
            mask_path: None,
            camera: Camera { intrinsics, world_from_camera: camera_from_world.inverse() },
            distortion,
            split,
        })
    }

    /// The 3D points as a point cloud (colours scaled to `[0, 1]`).
    pub fn point_cloud(&self) -> PointCloud {
        PointCloud {
            positions: self.points3d.iter().map(|p| p.xyz.map(|v| v as f32)).collect(),
            colors: self.points3d.iter().map(|p| p.rgb.map(|c| c as f32 / 255.0)).collect(),
        }
    }
}

/// Opens a COLMAP layout: `dir` itself, `dir/sparse/0` or `dir/sparse` holding the model.
pub(super) fn read_dataset(dir: &Path, options: &OpenOptions) -> Result<Dataset, DatasetError> {
    let candidates = [dir.join("sparse").join("0"), dir.join("sparse"), dir.to_path_buf()];
    let model_dir = candidates
        .into_iter()
        .find(|candidate| ColmapModel::detect(candidate).is_some())
        .ok_or_else(|| DatasetError::NotADataset { path: dir.to_path_buf() })?;
    let images_dir = match &options.images_dir {
        Some(images_dir) => images_dir.clone(),
        None => default_images_dir(dir, &model_dir)?,
    };
    let model = ColmapModel::read(&model_dir)?;
    let views = model.views(&model_dir, &images_dir)?;
    let views = keep_present_images(&model_dir, views, |v| &v.image_path, options)?;
    let points = (!model.points3d.is_empty()).then(|| model.point_cloud());
    Ok(Dataset { source: model_dir, views, points })
}

/// `dir/images` when the model sits below `dir`; for a bare model folder, the `images` folder of
/// the dataset it belongs to (`../images` or `../../images`), if one exists.
fn default_images_dir(dir: &Path, model_dir: &Path) -> Result<PathBuf, DatasetError> {
    if model_dir != dir {
        return Ok(dir.join("images"));
    }
    model_dir
        .ancestors()
        .skip(1)
        .take(2)
        .map(|ancestor| ancestor.join("images"))
        .find(|candidate| candidate.is_dir())
        .ok_or_else(|| DatasetError::Invalid {
            path: model_dir.to_path_buf(),
            location: "images".into(),
            problem: "no images folder found beside the model; set OpenOptions::images_dir".into(),
        })
}
