//! The job runner: one thread that takes the oldest queued job from the store, runs it through
//! the job layer (never on the UI thread), keeps what the UI shows of it current, and sends the
//! job layer's typed events on as app events. One job at a time: a reconstruction uses the whole
//! GPU (or every CPU core), so two at once only finish later.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_job::validate::{Validators, validate_outputs};
use kiln_job::{CancelFlag, EventKind, JobError, JobEvent, JobReport, run_job};
use kiln_protocol::ErrorClass;
use kiln_protocol::app::TrainPoint;
use kiln_queue::KeyMetrics;
use kiln_queue::store::QueuedJob;

use crate::error::{CommandResult, app_error, lock};
use crate::events::Emitter;
use crate::state::{Live, MAX_TRAIN_POINTS, Shared};

/// How often the runner looks at the queue without being woken: a job deferred because another
/// process held its folder becomes due without anyone waking the runner.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long a job whose folder another process holds waits before it is tried again.
const BUSY_RETRY: Duration = Duration::from_secs(30);

/// Starts the runner thread.
pub fn spawn(shared: Arc<Shared>, emitter: Emitter) -> std::io::Result<()> {
    std::thread::Builder::new().name("kiln-runner".into()).spawn(move || run_forever(&shared, &emitter)).map(drop)
}

fn run_forever(shared: &Shared, emitter: &Emitter) {
    loop {
        wait_for_work(shared);
        loop {
            match run_next(shared, emitter) {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    tracing::error!(%error, "the job runner could not use the queue");
                    std::thread::sleep(POLL_INTERVAL);
                    break;
                }
            }
        }
    }
}

fn wait_for_work(shared: &Shared) {
    let (flag, signal) = &shared.wake;
    let Ok(mut pending) = flag.lock() else { return std::thread::sleep(POLL_INTERVAL) };
    if !*pending {
        pending = match signal.wait_timeout(pending, POLL_INTERVAL) {
            Ok((guard, _)) => guard,
            Err(_) => return,
        };
    }
    *pending = false;
}

/// Runs the next queued job to its end; `false` when none was queued.
pub fn run_next(shared: &Shared, emitter: &Emitter) -> CommandResult<bool> {
    let Some(job) = lock(&shared.store)?.claim_next().map_err(|e| app_error(&e))? else { return Ok(false) };
    let cancel = CancelFlag::default();
    *lock(&shared.running)? = Some((job.id, cancel.clone()));
    start_live(shared, job.id)?;
    changed(shared, emitter, job.id);
    let outcome = run_one(shared, emitter, &job, &cancel);
    stop_live(shared, job.id)?;
    *lock(&shared.running)? = None;
    lock(&shared.interrupted)?.retain(|id| *id != job.id);
    let store = lock(&shared.store)?;
    let recorded = match outcome {
        Ok(report) => store.mark_done(job.id, &KeyMetrics::from_report(&report)),
        Err(error) if error.class() == ErrorClass::Cancelled => store.mark_canceled(job.id),
        Err(error) if error.class() == ErrorClass::Busy => store.defer(job.id, BUSY_RETRY),
        Err(error) => {
            let stored = serde_json::to_string(&app_error(&error)).unwrap_or_else(|_| error.to_string());
            store.mark_failed(job.id, &stored)
        }
    };
    drop(store);
    recorded.map_err(|e| app_error(&e))?;
    changed(shared, emitter, job.id);
    Ok(true)
}

/// The job through the job layer, then its files through the validators the environment names
/// (`KILN_GLTF_VALIDATOR`, `KILN_USDZ_VALIDATOR`), as `kiln reconstruct` does.
fn run_one(shared: &Shared, emitter: &Emitter, job: &QueuedJob, cancel: &CancelFlag) -> Result<JobReport, JobError> {
    let mut on_event = |event: &JobEvent| {
        record(shared, job.id, event);
        emitter.job_event(job.id, event);
        if matches!(event.kind, EventKind::Started | EventKind::Finished | EventKind::Skipped | EventKind::Failed) {
            changed(shared, emitter, job.id);
        }
    };
    let mut report = run_job(&job.input, &job.job_dir, &job.settings, cancel, &mut on_event)?;
    let validators = Validators::from_env();
    if let Err(error) = validate_outputs(&mut report, &validators) {
        return Err(JobError::Stage {
            stage: kiln_job::Stage::Export,
            class: ErrorClass::Internal,
            message: error.to_string(),
        });
    }
    Ok(report)
}

fn start_live(shared: &Shared, id: i64) -> CommandResult<()> {
    let mut live = lock(&shared.live)?;
    let entry = live.entry(id).or_default();
    entry.running_since = Some(Instant::now());
    entry.eta_s = None;
    Ok(())
}

fn stop_live(shared: &Shared, id: i64) -> CommandResult<()> {
    if let Some(entry) = lock(&shared.live)?.get_mut(&id)
        && let Some(since) = entry.running_since.take()
    {
        entry.elapsed_before_s += since.elapsed().as_secs_f64();
        entry.eta_s = None;
    }
    Ok(())
}

/// Keeps the job's stage, fractions, ETA and training plot current.
fn record(shared: &Shared, id: i64, event: &JobEvent) {
    let Ok(mut live) = shared.live.lock() else { return };
    let entry: &mut Live = live.entry(id).or_default();
    entry.stage = Some(event.stage);
    entry.stage_fraction = event.stage_fraction;
    entry.job_fraction = event.job_fraction;
    entry.eta_s = event.eta_s;
    if let Some(preview) = &event.preview {
        entry.preview = Some(preview.clone());
    }
    if let (Some(metrics), Some(step)) = (&event.metrics, &event.step) {
        entry.history.push(TrainPoint { step: step.done, loss: metrics.loss, psnr: metrics.psnr });
        if entry.history.len() > MAX_TRAIN_POINTS {
            // Halve the density, keeping the newest point: the plot keeps its whole span.
            let last = entry.history.len() - 1;
            let kept =
                entry.history.iter().enumerate().filter(|(i, _)| i % 2 == 0 || *i == last).map(|(_, p)| p.clone());
            entry.history = kept.collect();
        }
    }
}

fn changed(shared: &Shared, emitter: &Emitter, id: i64) {
    match crate::jobs::row(shared, id) {
        Ok(row) => emitter.job_changed(&row),
        Err(error) => tracing::warn!(%error, job = id, "the job's row could not be read"),
    }
}
