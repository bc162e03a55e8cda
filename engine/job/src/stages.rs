//! The five stages as a job runs them, each reading what the earlier stages left in the job
//! folder and writing into its own subfolder: the capture check, poses
//! ([`kiln_sfm::pipeline`]), training ([`super::train_stage`], with checkpoints), the mesh
//! ([`crate::mesh_stage::run_mesh_stage`]) and the export
//! ([`crate::mesh_stage::export_mesh_dir`]).

use std::path::{Path, PathBuf};

use crate::capture::{self, sfm_error, usable_photos};
use crate::device::open_backend;
use crate::error::{device_error, stage_error};
use crate::layout::JobLayout;
use crate::layout::{BASE_COLOR_FILE, FAILED_MODEL_STEM, MODEL_STEM, SPLATS_FILE};
use crate::mesh_stage::{MeshOptions, MeshProgress, MeshStageError, export_mesh_dir, run_mesh_stage};
use crate::progress::{Reporter, Update};
use crate::report::{
    CheckSummary, ExportSummary, JobReport, MeshFigures, OutputFile, PosesSummary, StageRecord, StageSummary,
    TrainSummary, read_json, write_json,
};
use crate::train_stage::{LoadedViews, load_dataset_views, metrics_json, write_train_outputs};
use crate::verdict::{Judged, ModelVerdict, Strip, VerdictReport, judge};
use crate::{CancelFlag, JobError, JobSettings, Stage};
use kiln_check::{CheckReport, Verdict};
use kiln_dataset::Dataset;
use kiln_export::frame::FrameOptions;
use kiln_protocol::{Phase, Resolved, TrainMetrics};
use kiln_sfm::pipeline::outputs::write_outputs;
use kiln_sfm::pipeline::{MIN_PHOTOS, estimate_poses};
use kiln_sfm::{Phase as SfmPhase, PhaseProgress};
use kiln_splats::train::background::auto_background;
use kiln_splats::train::config::TrainConfig;
use kiln_splats::train::{Checkpointing, Progress, TrainError, TrainResult, run_resumable};

/// Share of the training stage spent loading the photos before the first step.
const TRAIN_LOAD_SHARE: f64 = 0.05;

/// What every stage needs to know about its job.
pub(crate) struct Context<'a> {
    /// The input as given (for messages).
    pub input: PathBuf,
    pub photos_dir: PathBuf,
    pub layout: JobLayout,
    pub settings: &'a JobSettings,
    pub resolved: Resolved,
    pub cancel: &'a CancelFlag,
}

impl Context<'_> {
    fn create_dir(&self, stage: Stage) -> Result<PathBuf, JobError> {
        let dir = self.layout.stage(stage);
        std::fs::create_dir_all(&dir).map_err(|source| JobError::Io { path: dir.clone(), source })?;
        Ok(dir)
    }

    /// The capture check's report, as the check stage wrote it.
    pub fn check_report(&self) -> Result<CheckReport, JobError> {
        read_json(&self.layout.check_report())
    }
}

/// Runs `stage`; `previous` is its completion record from an earlier call, if any (now stale).
pub(crate) fn run_stage(
    ctx: &Context,
    stage: Stage,
    previous: Option<&StageRecord>,
    reporter: &mut Reporter,
) -> Result<StageSummary, JobError> {
    match stage {
        Stage::Check => check(ctx, reporter),
        Stage::Poses => poses(ctx, reporter),
        Stage::Train => train(ctx, reporter),
        Stage::Mesh => mesh(ctx, reporter),
        Stage::Export => export(ctx, previous, reporter),
    }
}

fn check(ctx: &Context, reporter: &mut Reporter) -> Result<StageSummary, JobError> {
    ctx.create_dir(Stage::Check)?;
    let report = capture::check(&ctx.photos_dir, &mut |done, total, phase| {
        let update = Update::step(phase, done, total);
        reporter.progress(Stage::Check, done as f64 / total.max(1) as f64, update);
    })?;
    write_json(&ctx.layout.check_report(), &report)?;
    let count = |verdict| report.photos.iter().filter(|p| p.verdict == verdict).count();
    Ok(StageSummary::Check(CheckSummary {
        photos: report.photos.len(),
        rejected: count(Verdict::Reject),
        warned: count(Verdict::Warn),
        outcome: report.outcome,
        advice: report.advice.clone(),
    }))
}

fn poses(ctx: &Context, reporter: &mut Reporter) -> Result<StageSummary, JobError> {
    let usable = usable_photos(&ctx.check_report()?, ctx.settings.keep_all, &ctx.input)?;
    let dir = ctx.create_dir(Stage::Poses)?;
    let mut options = crate::settings::poses_options(&ctx.resolved);
    options.only = Some(usable.clone());
    let mut fraction: f64 = 0.0;
    let mut progress = |p: &PhaseProgress| {
        fraction = fraction.max(poses_fraction(p));
        let update =
            Update { note: p.message.trim().to_string(), ..Update::step(poses_phase(p.phase), p.done, p.total) };
        reporter.progress(Stage::Poses, fraction, update);
    };
    let result = estimate_poses(&ctx.photos_dir, &options, &mut progress, &|| ctx.cancel.is_cancelled())
        .map_err(|e| sfm_error(Stage::Poses, e))?;
    let report = write_outputs(&result, &dir).map_err(|e| sfm_error(Stage::Poses, e))?;
    if report.registered < MIN_PHOTOS {
        return Err(JobError::BadInput {
            input: ctx.input.clone(),
            problem: format!(
                "only {} of {} photos got a camera pose (at least {MIN_PHOTOS} are needed): the photos overlap too \
                 little; see {} for each photo's reason",
                report.registered,
                usable.len(),
                ctx.layout.poses_report().display()
            ),
        });
    }
    Ok(StageSummary::Poses(PosesSummary {
        photos: usable.len(),
        registered_images: report.registered,
        mean_reprojection_error_px: report.mean_reprojection_error_px,
        points: result.reconstruction.points.len(),
    }))
}

/// The protocol's name for a pose-estimation phase.
fn poses_phase(phase: SfmPhase) -> Phase {
    match phase {
        SfmPhase::Photos => Phase::ReadingPhotos,
        SfmPhase::Features => Phase::Features,
        SfmPhase::Matching => Phase::Matching,
        SfmPhase::Verification => Phase::Verification,
        SfmPhase::Reconstruction => Phase::Mapping,
        SfmPhase::BundleAdjustment => Phase::BundleAdjustment,
        SfmPhase::Output => Phase::WritingPoses,
    }
}

/// Where pose estimation is, 0..=1, from its phase: extraction and verification take most of it.
fn poses_fraction(p: &PhaseProgress) -> f64 {
    let (start, end) = match p.phase {
        SfmPhase::Photos => (0.0, 0.02),
        SfmPhase::Features => (0.02, 0.3),
        SfmPhase::Matching => (0.3, 0.45),
        SfmPhase::Verification => (0.45, 0.75),
        SfmPhase::Reconstruction | SfmPhase::BundleAdjustment => (0.75, 0.98),
        SfmPhase::Output => (0.98, 1.0),
    };
    start + (end - start) * p.done as f64 / p.total.max(1) as f64
}

fn train(ctx: &Context, reporter: &mut Reporter) -> Result<StageSummary, JobError> {
    let dir = ctx.create_dir(Stage::Train)?;
    let transforms = ctx.layout.transforms();
    let dataset = Dataset::open(&transforms).map_err(|e| stage_error(Stage::Train, &e))?;
    let max_side = ctx.resolved.max_side;
    let views = load_dataset_views(&dataset, max_side, &mut |done, total| {
        let update =
            Update { note: format!("at ≤ {max_side} px"), ..Update::step(Phase::LoadingPhotos, done, total) };
        reporter.progress(Stage::Train, TRAIN_LOAD_SHARE * done as f64 / total.max(1) as f64, update);
    })
    .map_err(|e| stage_error(Stage::Train, &e))?;
    let config = train_config(ctx, &views);
    let (result, resumed_from_step) = train_with_checkpoints(ctx, &dataset, &views, &config, reporter)?;
    let metrics = metrics_json(&result, &dataset, &views, &config, max_side);
    write_train_outputs(&dir, &result, &metrics).map_err(|e| stage_error(Stage::Train, &e))?;
    Ok(StageSummary::Train(TrainSummary {
        psnr: result.test.as_ref().map(|t| t.psnr),
        ssim: result.test.as_ref().map(|t| t.ssim),
        splats: result.num_splats,
        steps: result.steps,
        train_views: views.train_cameras.len(),
        test_views: views.test_cameras.len(),
        device: result.device,
        resumed_from_step,
    }))
}

fn train_config(ctx: &Context, views: &LoadedViews) -> TrainConfig {
    let mut config = TrainConfig::for_steps(ctx.resolved.train_steps);
    config.seed = ctx.settings.seed;
    config.max_splats = ctx.resolved.max_splats;
    config.background = auto_background(&views.train_images);
    config
}

/// Trains with a checkpoint in the train folder every `checkpoint_every` steps, going on from an earlier
/// checkpoint of the same run; stops (checkpoint written) when the job is cancelled. Returns the
/// result and the step it resumed from, if it did.
fn train_with_checkpoints(
    ctx: &Context,
    dataset: &Dataset,
    views: &LoadedViews,
    config: &TrainConfig,
    reporter: &mut Reporter,
) -> Result<(TrainResult, Option<u32>), JobError> {
    let mut backend = open_backend(ctx.settings.device, config.background, config.ssim_weight)
        .map_err(|e| device_error(Stage::Train, &e))?;
    let device = backend.device_name();
    let checkpoint = ctx.layout.checkpoint();
    let cancel = ctx.cancel.clone();
    let should_stop = move || cancel.is_cancelled();
    let checkpointing =
        Checkpointing { path: &checkpoint, every: ctx.settings.checkpoint_every, should_stop: &should_stop };
    let mut first_step = None;
    let mut last_loss = None;
    let mut report = |p: &Progress| {
        first_step.get_or_insert(p.step);
        if let Some(loss) = p.loss {
            last_loss = Some(loss.total);
        }
        let metrics = TrainMetrics {
            loss: last_loss,
            psnr: p.psnr,
            splats: p.num_splats,
            device: device.clone(),
            resumed_from_step: resumed_from(first_step),
        };
        let update =
            Update { metrics: Some(metrics), ..Update::step(Phase::Training, p.step as usize, p.total as usize) };
        let fraction = TRAIN_LOAD_SHARE + (1.0 - TRAIN_LOAD_SHARE) * f64::from(p.step) / f64::from(p.total.max(1));
        reporter.progress(Stage::Train, fraction, update);
    };
    let result = run_resumable(&views.train_input(dataset), config, backend.as_mut(), &mut report, &checkpointing);
    match result {
        Ok(result) => Ok((result, resumed_from(first_step))),
        Err(TrainError::Stopped { .. }) => Err(JobError::Cancelled(Stage::Train)),
        Err(error) => Err(stage_error(Stage::Train, &error)),
    }
}

/// The checkpoint's step a run went on from, given the first step it reported (steps count from
/// 1: a fresh run's first step is 1).
fn resumed_from(first_step: Option<u32>) -> Option<u32> {
    first_step.filter(|&s| s > 1).map(|s| s - 1)
}

/// Removes the training checkpoint once the stage's outputs and record are written.
pub(crate) fn remove_checkpoint(ctx: &Context) -> Result<(), JobError> {
    let path = ctx.layout.checkpoint();
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(JobError::Io { path, source: e }),
        _ => Ok(()),
    }
}

fn mesh(ctx: &Context, reporter: &mut Reporter) -> Result<StageSummary, JobError> {
    let dir = ctx.create_dir(Stage::Mesh)?;
    let options = MeshOptions {
        preset: ctx.settings.preset,
        max_triangles: ctx.settings.max_triangles,
        texture_size: ctx.settings.texture_size,
        frame: FrameOptions { size_mm: ctx.settings.size_mm, ..FrameOptions::default() },
        // The job's own poses, by their place in the folder (not the path `metrics.json` recorded,
        // which names the folder where training ran: another machine's for a downloaded job).
        dataset: Some(ctx.layout.transforms()),
        ..MeshOptions::default()
    };
    let mut fraction: f64 = 0.0;
    let mut progress = |p: MeshProgress| {
        fraction = fraction.max(mesh_fraction(&p));
        reporter.progress(Stage::Mesh, fraction, Update::step(p.phase, p.done, p.total));
    };
    let summary =
        run_mesh_stage(&ctx.layout.stage(Stage::Train), &dir, &options, &mut progress, &|| ctx.cancel.is_cancelled())
            .map_err(|e| match e {
            MeshStageError::Cancelled => JobError::Cancelled(Stage::Mesh),
            e => stage_error(Stage::Mesh, &e),
        })?;
    Ok(StageSummary::Mesh(MeshFigures {
        triangles: summary.triangles,
        vertices: summary.vertices,
        texture_size: summary.texture_size,
        size_m: summary.size_m,
        scale_source: summary.scale_source,
        mat: summary.mat.clone(),
        subject: summary.subject,
        observed_fraction: summary.observed_fraction,
        holes_left_open: summary.holes_left_open,
    }))
}

/// Where the mesh stage is, 0..=1, from its sub-stage: surface extraction takes most of it.
fn mesh_fraction(p: &MeshProgress) -> f64 {
    let (start, end) = match p.phase {
        Phase::LoadingSplats => (0.0, 0.05),
        Phase::Surface => (0.05, 0.6),
        Phase::Cleanup => (0.6, 0.7),
        Phase::Decimation => (0.7, 0.75),
        Phase::Atlas => (0.75, 0.8),
        Phase::Baking => (0.8, 0.97),
        _ => (0.97, 1.0),
    };
    start + (end - start) * p.done as f64 / p.total.max(1) as f64
}

/// The verdict on the mesh stage's model: read back when the stage was skipped and its verdict
/// is on file, else measured (see [`super::verdict`]) and written to `mesh/verdict.json`.
pub(crate) fn judge_model(
    ctx: &Context,
    report: &JobReport,
    skipped: bool,
    reporter: &mut Reporter,
) -> Result<VerdictReport, JobError> {
    let path = ctx.layout.verdict();
    if skipped && let Ok(verdict) = read_json::<VerdictReport>(&path) {
        return Ok(verdict);
    }
    let update = Update { note: "comparing the model with the held-out photos".into(), ..Update::new(Phase::Verdict) };
    reporter.progress(Stage::Mesh, 1.0, update);
    let check = report.metrics.check.as_ref();
    let judged =
        Judged { mesh_dir: &ctx.layout.stage(Stage::Mesh), capture: check.map(|c| (c.outcome, c.advice.as_slice())) };
    let judgement = judge(&judged)?;
    write_strips(&ctx.layout.verdict_views(), &judgement.strips)?;
    write_json(&path, &judgement.report)?;
    Ok(judgement.report)
}

/// Writes each compared view's photo | textured mesh | splats strip as `<dir>/<photo>.png`.
fn write_strips(dir: &Path, strips: &[Strip]) -> Result<(), JobError> {
    std::fs::create_dir_all(dir).map_err(|source| JobError::Io { path: dir.to_path_buf(), source })?;
    for (name, strip) in strips {
        let path = dir.join(format!("{name}.png"));
        kiln_core::atomic_file::write_atomically(&path, |w| {
            strip.write_to(w, image::ImageFormat::Png).map_err(std::io::Error::other)
        })
        .map_err(|source| JobError::Io { path: path.clone(), source })?;
    }
    Ok(())
}

/// The stem of the exported files: a model the verdict failed is kept, named as such.
fn model_stem(ctx: &Context) -> &'static str {
    let path = ctx.layout.verdict();
    match read_json::<VerdictReport>(&path) {
        Ok(v) if v.verdict == ModelVerdict::Failed => FAILED_MODEL_STEM,
        _ => MODEL_STEM,
    }
}

/// Whether a finished stage's files are named as the verdict on file says (an export made
/// before the verdict failed the model must be made again under the failed name).
pub(crate) fn outputs_follow_verdict(ctx: &Context, record: &StageRecord) -> bool {
    let StageSummary::Export(export) = &record.summary else { return true };
    let stem = model_stem(ctx);
    export.files.iter().all(|file| {
        let name = file.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        name == SPLATS_FILE || name.strip_prefix(stem).is_some_and(|rest| rest.matches('.').count() == 1)
    })
}

/// The mesh stage's preview image (its base-colour texture).
pub(crate) fn mesh_preview(ctx: &Context) -> Option<PathBuf> {
    Some(ctx.layout.stage(Stage::Mesh).join(BASE_COLOR_FILE)).filter(|p| p.is_file())
}

fn export(ctx: &Context, previous: Option<&StageRecord>, reporter: &mut Reporter) -> Result<StageSummary, JobError> {
    let dir = ctx.create_dir(Stage::Export)?;
    remove_previous_exports(previous)?;
    let formats = &ctx.settings.formats;
    let stem = model_stem(ctx);
    let mut files = Vec::new();
    for (i, format) in formats.iter().enumerate() {
        reporter.progress(
            Stage::Export,
            i as f64 / formats.len() as f64,
            Update::step(Phase::Exporting(*format), i, formats.len()),
        );
        let written = export_mesh_dir(&ctx.layout.stage(Stage::Mesh), &dir, std::slice::from_ref(format), stem)
            .map_err(|e| stage_error(Stage::Export, &e))?;
        files.extend(written);
    }
    let files = files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::metadata(&path).map_err(|source| JobError::Io { path: path.clone(), source })?.len();
            Ok(OutputFile { path, bytes })
        })
        .collect::<Result<Vec<_>, JobError>>()?;
    Ok(StageSummary::Export(ExportSummary { files }))
}

/// Removes the files an earlier export delivered, so formats no longer asked for do not linger
/// beside the new ones.
fn remove_previous_exports(previous: Option<&StageRecord>) -> Result<(), JobError> {
    let Some(StageRecord { summary: StageSummary::Export(old), .. }) = previous else { return Ok(()) };
    for file in &old.files {
        match std::fs::remove_file(&file.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(JobError::Io { path: file.path.clone(), source: e });
            }
            _ => {}
        }
    }
    Ok(())
}
