//! The training stage as `kiln train` and a job both run it: a posed dataset loaded at training
//! resolution, the backend a [`Device`] asks for, and the output folder (`splats.ply` +
//! `metrics.json`, which names the dataset so the mesh stage can load the same photos).

use std::path::Path;

use crate::layout::{SPLATS_FILE, TRAIN_METRICS_FILE};
use kiln_core::atomic_file::write_atomically;
use kiln_core::camera::Camera;
use kiln_core::image_buf::ImageRgb;
use kiln_core::splats::ply::{PlyError, write_splats};
use kiln_dataset::{Dataset, DatasetError, View, load_views};
use kiln_splats::train::config::TrainConfig;
use kiln_splats::train::{Progress, TrainError, TrainInput, TrainResult};

use crate::Device;
use crate::device::{BackendError, open_backend};

/// Errors of the training stage.
#[derive(Debug, thiserror::Error)]
pub enum TrainStageError {
    #[error("reading the dataset")]
    Dataset(#[from] DatasetError),
    #[error("choosing the training device")]
    Backend(#[from] BackendError),
    #[error("training")]
    Train(#[from] TrainError),
    #[error("writing the splats")]
    Splats(#[from] PlyError),
    #[error("{source}: {}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

/// Posed images loaded at training resolution.
pub struct LoadedViews {
    pub train_cameras: Vec<Camera>,
    pub train_images: Vec<ImageRgb>,
    pub test_cameras: Vec<Camera>,
    pub test_images: Vec<ImageRgb>,
}

impl LoadedViews {
    /// What a training run learns from.
    pub fn train_input<'a>(&'a self, dataset: &'a Dataset) -> TrainInput<'a> {
        TrainInput {
            train_cameras: &self.train_cameras,
            train_images: &self.train_images,
            test_cameras: &self.test_cameras,
            test_images: &self.test_images,
            points: dataset.points.as_ref(),
        }
    }
}

/// Loads the dataset's train and test views, downscaled so their longer side is at most
/// `max_side`; `progress(done, total)` after the train views and after the test views.
pub fn load_dataset_views(
    dataset: &Dataset,
    max_side: u32,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LoadedViews, DatasetError> {
    let split = |views: Vec<View>| -> Result<(Vec<Camera>, Vec<ImageRgb>), DatasetError> {
        Ok(load_views(&views, max_side)?.into_iter().map(|(camera, image, _mask)| (camera, image)).unzip())
    };
    let total = dataset.views.len();
    let (train_cameras, train_images) = split(dataset.train_views().cloned().collect())?;
    progress(train_cameras.len(), total);
    let (test_cameras, test_images) = split(dataset.test_views().cloned().collect())?;
    progress(total, total);
    Ok(LoadedViews { train_cameras, train_images, test_cameras, test_images })
}

/// Trains on `views` with the backend `device` asks for, without checkpoints.
pub fn train(
    dataset: &Dataset,
    views: &LoadedViews,
    config: &TrainConfig,
    device: Device,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainResult, TrainStageError> {
    let mut backend = open_backend(device, config.background, config.ssim_weight)?;
    tracing::info!(device = %backend.device_name(), "training backend");
    Ok(kiln_splats::train::run(&views.train_input(dataset), config, backend.as_mut(), progress)?)
}

/// `metrics.json`: held-out quality, counts, timing, device, the dataset (the mesh stage reads
/// its path and `max_side`) and the exact configuration.
pub fn metrics_json(
    result: &TrainResult,
    dataset: &Dataset,
    views: &LoadedViews,
    config: &TrainConfig,
    max_side: u32,
) -> serde_json::Value {
    let (psnr, ssim) = result.test.as_ref().map_or((None, None), |t| (Some(t.psnr), Some(t.ssim)));
    serde_json::json!({
        "psnr": psnr,
        "ssim": ssim,
        "steps": result.steps,
        "num_splats": result.num_splats,
        "train_seconds": result.train_seconds,
        "steps_per_second": f64::from(result.steps) / result.train_seconds.max(1e-9),
        "device": result.device,
        "dataset": dataset.source.display().to_string(),
        "train_views": views.train_cameras.len(),
        "test_views": views.test_cameras.len(),
        "max_side": max_side,
        "background": config.background,
        "image_size": views.train_images.first().map(|i| [i.width, i.height]),
        "config": config,
    })
}

/// Writes `splats.ply` and then `metrics.json` into `out` (created if missing), each atomically.
pub fn write_train_outputs(
    out: &Path,
    result: &TrainResult,
    metrics: &serde_json::Value,
) -> Result<(), TrainStageError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainStageError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    write_splats(&out.join(SPLATS_FILE), &result.splats)?;
    let metrics_path = out.join(TRAIN_METRICS_FILE);
    let text = serde_json::to_string_pretty(metrics)
        .map_err(|e| TrainStageError::Io { path: metrics_path.clone(), source: std::io::Error::other(e) })?;
    write_atomically(&metrics_path, |w| std::io::Write::write_all(w, text.as_bytes()))
        .map_err(io_error(&metrics_path))?;
    Ok(())
}
