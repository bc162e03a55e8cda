//! Training Gaussian splats from posed images: the loss, the optimiser, densification and the
//! loop ([`run`]) that drives a [`backend::TrainBackend`].

pub mod adam;
pub mod backend;
pub mod background;
pub mod config;
pub mod cpu;
pub mod densify;
pub mod eval;
pub mod loss;
pub mod schedule;
pub mod ssim;

use std::time::{Duration, Instant};

use crate::camera::Camera;
use crate::dataset::PointCloud;
use crate::image_buf::ImageRgb;
use crate::splats::Splats;
use crate::splats::init::{Pcg32, from_point_cloud, random_in_view, scene_extent};

use backend::{AdamMoments, DensifyStats, StepLoss, TrainBackend, TrainState};
use config::TrainConfig;
use eval::EvalMetrics;

/// Errors of the training stage.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no training views")]
    NoViews,
    #[error("view {index}: image is {got_w}×{got_h} but its camera expects {want_w}×{want_h}")]
    ImageSize {
        index: usize,
        got_w: u32,
        got_h: u32,
        want_w: u32,
        want_h: u32,
    },
    #[error("{cameras} cameras but {images} images")]
    ViewCount { cameras: usize, images: usize },
    #[error("view index {index} out of range ({count} views)")]
    ViewIndex { index: usize, count: usize },
    #[error("no loss yet: no training step has run")]
    NoStepYet,
    #[error(
        "initialisation produced no splats (no point cloud, and no camera sees the sampled region)"
    )]
    EmptyInit,
    #[error("GPU: {0}")]
    Gpu(String),
}

/// Checks that there is one image per camera.
pub(crate) fn check_count(cameras: &[Camera], images: &[ImageRgb]) -> Result<(), TrainError> {
    if cameras.len() == images.len() {
        return Ok(());
    }
    Err(TrainError::ViewCount {
        cameras: cameras.len(),
        images: images.len(),
    })
}

/// Checks that `target` has the size `camera` expects.
pub(crate) fn check_size(
    index: usize,
    camera: &Camera,
    target: &ImageRgb,
) -> Result<(), TrainError> {
    if (target.width, target.height) == (camera.width(), camera.height()) {
        return Ok(());
    }
    Err(TrainError::ImageSize {
        index,
        got_w: target.width,
        got_h: target.height,
        want_w: camera.width(),
        want_h: camera.height(),
    })
}

/// What a run learns from: posed training images, held-out ones, and an optional sparse cloud.
#[derive(Clone, Copy, Debug)]
pub struct TrainInput<'a> {
    pub train_cameras: &'a [Camera],
    pub train_images: &'a [ImageRgb],
    pub test_cameras: &'a [Camera],
    pub test_images: &'a [ImageRgb],
    pub points: Option<&'a PointCloud>,
}

/// Reported after every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    pub step: u32,
    pub total: u32,
    /// Present every `loss_every` steps and at the last step.
    pub loss: Option<StepLoss>,
    /// PSNR of a fresh render of the step's training view, every `psnr_every` steps.
    pub psnr: Option<f32>,
    pub num_splats: usize,
    pub elapsed: Duration,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct TrainResult {
    pub splats: Splats,
    /// Quality on the held-out views (`None` without test views).
    pub test: Option<EvalMetrics>,
    pub steps: u32,
    pub num_splats: usize,
    /// Wall-clock time of the optimisation, without the final evaluation.
    pub train_seconds: f64,
    pub device: String,
}

/// Trains splats on `input` with `backend` (see the module docs of [`schedule`] and [`densify`]
/// for what happens when), then evaluates on the test views.
pub fn run(
    input: &TrainInput,
    config: &TrainConfig,
    backend: &mut dyn TrainBackend,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainResult, TrainError> {
    let cameras = input.train_cameras;
    if cameras.is_empty() {
        return Err(TrainError::NoViews);
    }
    for (views, images) in [
        (cameras, input.train_images),
        (input.test_cameras, input.test_images),
    ] {
        check_count(views, images)?;
        for (index, (camera, image)) in views.iter().zip(images).enumerate() {
            check_size(index, camera, image)?;
        }
    }
    let extent = scene_extent(cameras);
    let mut splats = match input.points {
        Some(cloud) if !cloud.positions.is_empty() => from_point_cloud(cloud),
        _ => random_in_view(
            cameras,
            input.train_images,
            config.background,
            config.init_random_splats,
            config.seed,
        ),
    };
    if splats.is_empty() {
        return Err(TrainError::EmptyInit);
    }
    splats.sh_degree = 0;
    let n = splats.len();
    tracing::info!(
        splats = n,
        scene_extent = extent,
        views = cameras.len(),
        "training starts"
    );
    backend.set_views(cameras, input.train_images)?;
    backend.set_state(&TrainState {
        splats,
        adam: AdamMoments::zeros(n),
        stats: DensifyStats::zeros(n),
    })?;

    let mut rng = Pcg32::new(config.seed.wrapping_add(1));
    let mut order: Vec<usize> = Vec::new();
    let mut num_splats = n;
    let mut sh_degree = 0;
    let start = Instant::now();
    for step in 1..=config.steps {
        if order.is_empty() {
            order = (0..cameras.len()).collect();
            rng.shuffle(&mut order);
        }
        let view = order.pop().unwrap_or(0);
        let wanted_degree = schedule::sh_degree(config, step - 1);
        if wanted_degree != sh_degree {
            let mut state = backend.state()?;
            state.splats.sh_degree = wanted_degree;
            backend.set_state(&state)?;
            sh_degree = wanted_degree;
        }
        backend.step(view, &schedule::learning_rates(config, extent, step), step)?;
        if let Some(count) = control_density(config, step, extent, backend, &mut rng)? {
            num_splats = count;
        }
        let wants_loss =
            (config.loss_every > 0 && step % config.loss_every == 0) || step == config.steps;
        let loss = if wants_loss {
            Some(backend.last_loss()?)
        } else {
            None
        };
        let psnr = if config.psnr_every > 0 && step % config.psnr_every == 0 {
            let rendered = backend.render(&cameras[view], config.background)?;
            Some(eval::psnr(&rendered.image, &input.train_images[view]))
        } else {
            None
        };
        progress(&Progress {
            step,
            total: config.steps,
            loss,
            psnr,
            num_splats,
            elapsed: start.elapsed(),
        });
    }
    let train_seconds = start.elapsed().as_secs_f64();
    let state = backend.state()?;
    let test = if input.test_cameras.is_empty() {
        None
    } else {
        Some(eval::eval(
            backend,
            input.test_cameras,
            input.test_images,
            config.background,
        )?)
    };
    Ok(TrainResult {
        num_splats: state.splats.len(),
        splats: state.splats,
        test,
        steps: config.steps,
        train_seconds,
        device: backend.device_name(),
    })
}

/// Densifies and/or resets opacities after `step` when the schedule says so; returns the new
/// splat count if the state was touched.
fn control_density(
    config: &TrainConfig,
    step: u32,
    extent: f32,
    backend: &mut dyn TrainBackend,
    rng: &mut Pcg32,
) -> Result<Option<usize>, TrainError> {
    let densify = schedule::densifies(config, step);
    let reset = schedule::resets_opacity(config, step);
    if !densify && !reset {
        return Ok(None);
    }
    let mut state = backend.state()?;
    if densify {
        let prune_large = schedule::prunes_large(config, step);
        let report = densify::densify_and_prune(
            &mut state,
            &config.densify,
            config.max_splats,
            extent,
            prune_large,
            rng,
        );
        tracing::debug!(step, ?report, splats = state.splats.len(), "densified");
    }
    if reset {
        densify::reset_opacity(&mut state);
    }
    backend.set_state(&state)?;
    Ok(Some(state.splats.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::{Intrinsics, WorldFromCameraCv};
    use cpu::CpuBackend;

    fn camera() -> Camera {
        let intrinsics = Intrinsics {
            fx: 20.0,
            fy: 20.0,
            cx: 8.0,
            cy: 6.0,
            width: 16,
            height: 12,
        };
        Camera {
            intrinsics,
            world_from_camera: WorldFromCameraCv {
                rotation: glam::Mat3::IDENTITY,
                translation: glam::Vec3::ZERO,
            },
        }
    }

    fn run_on(cameras: &[Camera], images: &[ImageRgb]) -> Result<TrainResult, TrainError> {
        let input = TrainInput {
            train_cameras: cameras,
            train_images: images,
            test_cameras: &[],
            test_images: &[],
            points: None,
        };
        let config = TrainConfig::for_steps(10);
        run(
            &input,
            &config,
            &mut CpuBackend::new(config.background, config.ssim_weight),
            &mut |_| {},
        )
    }

    #[test]
    fn run_rejects_missing_mismatched_and_missized_views() {
        assert!(matches!(run_on(&[], &[]), Err(TrainError::NoViews)));
        let image = ImageRgb::new(16, 12, [0.5; 3]);
        assert!(matches!(
            run_on(&[camera()], &[]),
            Err(TrainError::ViewCount {
                cameras: 1,
                images: 0
            })
        ));
        let wrong = ImageRgb::new(8, 12, [0.5; 3]);
        assert!(matches!(
            run_on(&[camera(), camera()], &[image, wrong]),
            Err(TrainError::ImageSize {
                index: 1,
                got_w: 8,
                ..
            })
        ));
    }
}
