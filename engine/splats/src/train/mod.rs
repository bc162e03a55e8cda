//! Training Gaussian splats from posed images: the loss, the optimiser, densification and the
//! loop ([`run`], and [`run_resumable`] with [`checkpoint`]s) that drives a
//! [`backend::TrainBackend`].

pub mod adam;
pub mod backend;
pub mod background;
pub mod checkpoint;
pub mod config;
pub mod cpu;
pub mod densify;
pub mod eval;
pub mod loss;
pub mod schedule;
pub mod ssim;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::init::{from_point_cloud, random_in_view, scene_extent};
use kiln_core::camera::Camera;
use kiln_core::image_buf::ImageRgb;
use kiln_core::point_cloud::PointCloud;
use kiln_core::rng::Pcg32;
use kiln_core::splats::Splats;

use backend::{AdamMoments, DensifyStats, StepLoss, TrainBackend, TrainState};
use checkpoint::{Checkpoint, Fingerprint, LoopPosition};
use config::TrainConfig;
use eval::EvalMetrics;

/// Errors of the training stage.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no training views")]
    NoViews,
    #[error("view {index}: image is {got_w}×{got_h} but its camera expects {want_w}×{want_h}")]
    ImageSize { index: usize, got_w: u32, got_h: u32, want_w: u32, want_h: u32 },
    #[error("{cameras} cameras but {images} images")]
    ViewCount { cameras: usize, images: usize },
    #[error("view index {index} out of range ({count} views)")]
    ViewIndex { index: usize, count: usize },
    #[error("no loss yet: no training step has run")]
    NoStepYet,
    #[error("initialisation produced no splats (no point cloud, and no camera sees the sampled region)")]
    EmptyInit,
    #[error("GPU: {0}")]
    Gpu(String),
    #[error("training stopped at step {step} (a checkpoint was written)")]
    Stopped { step: u32 },
    #[error("checkpoint: {source}: {}", path.display())]
    CheckpointIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint unusable: {problem}: {}", path.display())]
    CheckpointCorrupt { path: PathBuf, problem: String },
    #[error("checkpoint is from another run (the {what} differ): {}", path.display())]
    CheckpointMismatch { path: PathBuf, what: &'static str },
}

/// Checks that there is one image per camera.
pub(crate) fn check_count(cameras: &[Camera], images: &[ImageRgb]) -> Result<(), TrainError> {
    if cameras.len() == images.len() {
        return Ok(());
    }
    Err(TrainError::ViewCount { cameras: cameras.len(), images: images.len() })
}

/// Checks that `target` has the size `camera` expects.
pub(crate) fn check_size(index: usize, camera: &Camera, target: &ImageRgb) -> Result<(), TrainError> {
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

/// Where and how often a run saves its state, and when it should stop early.
pub struct Checkpointing<'a> {
    /// The checkpoint file (written atomically, replaced every `every` steps).
    pub path: &'a Path,
    /// Steps between checkpoints; 0: only when stopped.
    pub every: u32,
    /// Polled before every step; when true, a checkpoint is written and the run ends with
    /// [`TrainError::Stopped`].
    pub should_stop: &'a (dyn Fn() -> bool + Sync),
}

/// Trains splats on `input` with `backend` (see the module docs of [`schedule`] and [`densify`]
/// for what happens when), then evaluates on the test views.
pub fn run(
    input: &TrainInput,
    config: &TrainConfig,
    backend: &mut dyn TrainBackend,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainResult, TrainError> {
    check_input(input)?;
    backend.set_views(input.train_cameras, input.train_images)?;
    let (position, num_splats) = initialise(input, config, backend)?;
    let session = Session { input, config, saver: None };
    session.train(backend, progress, position, num_splats)
}

/// [`run`], resumable: continues from the checkpoint at `checkpointing.path` when it comes from
/// the same configuration and views (otherwise warns and starts afresh), writes a checkpoint every
/// `checkpointing.every` steps and stops with [`TrainError::Stopped`] when
/// `checkpointing.should_stop` says so. A resumed run continues exactly as the uninterrupted run
/// would have (bit for bit on the CPU backend). The checkpoint is left in place at the end: the
/// caller removes it once it has saved the result.
pub fn run_resumable(
    input: &TrainInput,
    config: &TrainConfig,
    backend: &mut dyn TrainBackend,
    progress: &mut dyn FnMut(&Progress),
    checkpointing: &Checkpointing,
) -> Result<TrainResult, TrainError> {
    check_input(input)?;
    let fingerprint = Fingerprint::of(config, input);
    backend.set_views(input.train_cameras, input.train_images)?;
    let (position, num_splats) = match checkpoint::load_matching(checkpointing.path, &fingerprint) {
        Some(Checkpoint { position, state, .. }) => {
            tracing::info!(
                step = position.step,
                splats = state.splats.len(),
                path = %checkpointing.path.display(),
                "training resumes from its checkpoint"
            );
            backend.set_state(&state)?;
            (position, state.splats.len())
        }
        None => initialise(input, config, backend)?,
    };
    let saver = Saver { checkpointing, fingerprint };
    let session = Session { input, config, saver: Some(saver) };
    session.train(backend, progress, position, num_splats)
}

/// Checks that there are training views and that every image fits its camera.
fn check_input(input: &TrainInput) -> Result<(), TrainError> {
    if input.train_cameras.is_empty() {
        return Err(TrainError::NoViews);
    }
    for (views, images) in [(input.train_cameras, input.train_images), (input.test_cameras, input.test_images)] {
        check_count(views, images)?;
        for (index, (camera, image)) in views.iter().zip(images).enumerate() {
            check_size(index, camera, image)?;
        }
    }
    Ok(())
}

/// Creates the initial splats (from the point cloud, else at random in the views) and uploads
/// them; returns the loop's starting position and the splat count.
fn initialise(
    input: &TrainInput,
    config: &TrainConfig,
    backend: &mut dyn TrainBackend,
) -> Result<(LoopPosition, usize), TrainError> {
    let cameras = input.train_cameras;
    let mut splats = match input.points {
        Some(cloud) if !cloud.positions.is_empty() => from_point_cloud(cloud),
        _ => random_in_view(cameras, input.train_images, config.background, config.init_random_splats, config.seed),
    };
    if splats.is_empty() {
        return Err(TrainError::EmptyInit);
    }
    splats.sh_degree = 0;
    let n = splats.len();
    tracing::info!(splats = n, scene_extent = scene_extent(cameras), views = cameras.len(), "training starts");
    backend.set_state(&TrainState { splats, adam: AdamMoments::zeros(n), stats: DensifyStats::zeros(n) })?;
    Ok((LoopPosition::start(config.seed), n))
}

/// Writes the checkpoints of a resumable run.
struct Saver<'a> {
    checkpointing: &'a Checkpointing<'a>,
    fingerprint: Fingerprint,
}

impl Saver<'_> {
    fn save(&self, backend: &mut dyn TrainBackend, position: &LoopPosition) -> Result<(), TrainError> {
        let state = backend.state()?;
        let path = self.checkpointing.path;
        checkpoint::save(path, &self.fingerprint, position, &state)?;
        tracing::debug!(step = position.step, path = %path.display(), "checkpoint written");
        Ok(())
    }

    /// Whether the periodic schedule asks for a checkpoint after `step` (never after the last).
    fn is_due(&self, step: u32, total: u32) -> bool {
        let every = self.checkpointing.every;
        every > 0 && step.is_multiple_of(every) && step < total
    }
}

/// The fixed parts of one training session.
struct Session<'a> {
    input: &'a TrainInput<'a>,
    config: &'a TrainConfig,
    saver: Option<Saver<'a>>,
}

impl Session<'_> {
    /// The optimisation loop from `position` (the backend already holds the matching state) to
    /// the last step, then the evaluation.
    fn train(
        &self,
        backend: &mut dyn TrainBackend,
        progress: &mut dyn FnMut(&Progress),
        mut position: LoopPosition,
        mut num_splats: usize,
    ) -> Result<TrainResult, TrainError> {
        let config = self.config;
        let (before, start) = (position.elapsed, Instant::now());
        while position.step < config.steps {
            if let Some(saver) = self.saver.as_ref().filter(|s| (s.checkpointing.should_stop)()) {
                position.elapsed = before + start.elapsed();
                saver.save(backend, &position)?;
                tracing::info!(step = position.step, "training stopped on request");
                return Err(TrainError::Stopped { step: position.step });
            }
            let view = self.advance(backend, &mut position, &mut num_splats)?;
            position.elapsed = before + start.elapsed();
            progress(&self.report(backend, &position, view, num_splats)?);
            if let Some(saver) = self.saver.as_ref().filter(|s| s.is_due(position.step, config.steps)) {
                saver.save(backend, &position)?;
            }
        }
        self.finish(backend, position.elapsed)
    }

    /// One optimisation step (and the density control after it); returns the view it used.
    fn advance(
        &self,
        backend: &mut dyn TrainBackend,
        position: &mut LoopPosition,
        num_splats: &mut usize,
    ) -> Result<usize, TrainError> {
        let (config, cameras) = (self.config, self.input.train_cameras);
        let step = position.step + 1;
        if position.order.is_empty() {
            position.order = (0..cameras.len()).collect();
            position.rng.shuffle(&mut position.order);
        }
        let view = position.order.pop().unwrap_or(0);
        let wanted_degree = schedule::sh_degree(config, step - 1);
        if wanted_degree != position.sh_degree {
            let mut state = backend.state()?;
            state.splats.sh_degree = wanted_degree;
            backend.set_state(&state)?;
            position.sh_degree = wanted_degree;
        }
        let extent = scene_extent(cameras);
        backend.step(view, &schedule::learning_rates(config, extent, step), step)?;
        if let Some(count) = control_density(config, step, extent, backend, &mut position.rng)? {
            *num_splats = count;
        }
        position.step = step;
        Ok(view)
    }

    /// The progress report after the step that used `view`.
    fn report(
        &self,
        backend: &mut dyn TrainBackend,
        position: &LoopPosition,
        view: usize,
        num_splats: usize,
    ) -> Result<Progress, TrainError> {
        let (config, step) = (self.config, position.step);
        let wants_loss = (config.loss_every > 0 && step % config.loss_every == 0) || step == config.steps;
        let loss = if wants_loss { Some(backend.last_loss()?) } else { None };
        let psnr = if config.psnr_every > 0 && step % config.psnr_every == 0 {
            let rendered = backend.render(&self.input.train_cameras[view], config.background)?;
            Some(eval::psnr(&rendered.image, &self.input.train_images[view]))
        } else {
            None
        };
        Ok(Progress { step, total: config.steps, loss, psnr, num_splats, elapsed: position.elapsed })
    }

    /// The trained splats, evaluated on the test views.
    fn finish(&self, backend: &mut dyn TrainBackend, elapsed: Duration) -> Result<TrainResult, TrainError> {
        let input = self.input;
        let state = backend.state()?;
        let test = if input.test_cameras.is_empty() {
            None
        } else {
            Some(eval::eval(backend, input.test_cameras, input.test_images, self.config.background)?)
        };
        Ok(TrainResult {
            num_splats: state.splats.len(),
            splats: state.splats,
            test,
            steps: self.config.steps,
            train_seconds: elapsed.as_secs_f64(),
            device: backend.device_name(),
        })
    }
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
        let report =
            densify::densify_and_prune(&mut state, &config.densify, config.max_splats, extent, prune_large, rng);
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
    use cpu::CpuBackend;
    use kiln_core::camera::{Intrinsics, WorldFromCameraCv};

    fn camera() -> Camera {
        let intrinsics = Intrinsics { fx: 20.0, fy: 20.0, cx: 8.0, cy: 6.0, width: 16, height: 12 };
        Camera {
            intrinsics,
            world_from_camera: WorldFromCameraCv { rotation: glam::Mat3::IDENTITY, translation: glam::Vec3::ZERO },
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
        run(&input, &config, &mut CpuBackend::new(config.background, config.ssim_weight), &mut |_| {})
    }

    #[test]
    fn run_rejects_missing_mismatched_and_missized_views() {
        assert!(matches!(run_on(&[], &[]), Err(TrainError::NoViews)));
        let image = ImageRgb::new(16, 12, [0.5; 3]);
        assert!(matches!(run_on(&[camera()], &[]), Err(TrainError::ViewCount { cameras: 1, images: 0 })));
        let wrong = ImageRgb::new(8, 12, [0.5; 3]);
        assert!(matches!(
            run_on(&[camera(), camera()], &[image, wrong]),
            Err(TrainError::ImageSize { index: 1, got_w: 8, .. })
        ));
    }
}
