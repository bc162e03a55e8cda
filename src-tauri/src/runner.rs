//! The job runner: one thread that takes the oldest queued job from the store, runs it through
//! the job layer (never on the UI thread) or in the cloud ([`crate::cloud_jobs`]), keeps what the
//! UI shows of it current, and sends the job layer's typed events on as app events. One job at a
//! time: a reconstruction uses the whole GPU (or every CPU core), so two at once only finish
//! later; a cloud job is one at a time too, so the queue keeps its order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_job::validate::{Validators, validate_outputs};
use kiln_job::{CancelFlag, EventKind, JobError, JobEvent, JobReport, Stage, run_job};
use kiln_protocol::ErrorClass;
use kiln_protocol::app::{CloudPhase, TrainPoint};
use kiln_queue::KeyMetrics;
use kiln_queue::store::{QueuedJob, RunsOn};

use crate::cloud::Cloud;
use crate::cloud_jobs::CloudProgress;
use crate::error::{CommandResult, app_error, lock};
use crate::events::Emitter;
use crate::state::{Live, MAX_TRAIN_POINTS, Shared};

/// How often the runner looks at the queue without being woken: a job deferred because another
/// process held its folder becomes due without anyone waking the runner.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long a job whose folder another process holds waits before it is tried again.
const BUSY_RETRY: Duration = Duration::from_secs(30);

/// Starts the runner thread.
pub fn spawn(shared: Arc<Shared>, emitter: Emitter, cloud: Arc<Cloud>) -> std::io::Result<()> {
    let thread = std::thread::Builder::new().name("kiln-runner".into());
    thread.spawn(move || run_forever(&shared, &emitter, &cloud)).map(drop)
}

fn run_forever(shared: &Shared, emitter: &Emitter, cloud: &Cloud) {
    loop {
        wait_for_work(shared);
        loop {
            match run_next(shared, emitter, cloud) {
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
fn run_next(shared: &Shared, emitter: &Emitter, cloud: &Cloud) -> CommandResult<bool> {
    let Some(job) = lock(&shared.store)?.claim_next().map_err(|e| app_error(&e))? else { return Ok(false) };
    let cancel = CancelFlag::default();
    *lock(&shared.running)? = Some((job.id, cancel.clone()));
    start_live(shared, job.id)?;
    changed(shared, emitter, job.id);
    let outcome = match job.runs_on {
        RunsOn::Local => run_local(shared, emitter, &job, &cancel).map_err(|error| app_error(&error)),
        RunsOn::Cloud => crate::cloud_jobs::run(cloud, &job, &cancel, &Reporter { shared, emitter, id: job.id }),
    };
    stop_live(shared, job.id)?;
    *lock(&shared.running)? = None;
    lock(&shared.interrupted)?.retain(|id| *id != job.id);
    let store = lock(&shared.store)?;
    let recorded = match outcome {
        Ok(report) => store.mark_done(job.id, &KeyMetrics::from_report(&report)),
        Err(error) if error.class == ErrorClass::Cancelled => store.mark_canceled(job.id),
        // Another process holds the local job's folder: it becomes due again by itself. A cloud
        // job that is busy (the network, the service) fails with the reason shown, and its retry
        // goes on from where it stopped: waiting in silence would hide a lost connection.
        Err(error) if error.class == ErrorClass::Busy && job.runs_on == RunsOn::Local => {
            store.defer(job.id, BUSY_RETRY)
        }
        Err(error) => {
            let stored = serde_json::to_string(&error).unwrap_or_else(|_| error.message.clone());
            store.mark_failed(job.id, &stored)
        }
    };
    drop(store);
    recorded.map_err(|e| app_error(&e))?;
    changed(shared, emitter, job.id);
    if job.runs_on == RunsOn::Cloud {
        // Its end charged or released credits: the cloud pane's balance reads them again.
        emitter.cloud_changed();
    }
    Ok(true)
}

/// The job through the job layer, then its files through the validators the environment names
/// (`KILN_GLTF_VALIDATOR`, `KILN_USDZ_VALIDATOR`), as `kiln reconstruct` does.
fn run_local(shared: &Shared, emitter: &Emitter, job: &QueuedJob, cancel: &CancelFlag) -> Result<JobReport, JobError> {
    let reporter = Reporter { shared, emitter, id: job.id };
    let mut on_event = |event: &JobEvent| reporter.engine_event(event);
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

/// Passes a running job's events to its live state and the UI.
struct Reporter<'a> {
    shared: &'a Shared,
    emitter: &'a Emitter,
    id: i64,
}

impl CloudProgress for Reporter<'_> {
    fn phase(&self, phase: CloudPhase, fraction: f64) {
        let Ok(mut live) = self.shared.live.lock() else { return };
        let entry = live.entry(self.id).or_default();
        let moved = entry.cloud_phase != Some(phase);
        entry.cloud_phase = Some(phase);
        if phase != CloudPhase::Running {
            entry.stage_fraction = fraction;
        }
        drop(live);
        if moved || phase != CloudPhase::Running {
            changed(self.shared, self.emitter, self.id);
        }
    }

    fn engine_event(&self, event: &JobEvent) {
        record(self.shared, self.id, event);
        self.emitter.job_event(self.id, event);
        if matches!(event.kind, EventKind::Started | EventKind::Finished | EventKind::Skipped | EventKind::Failed) {
            changed(self.shared, self.emitter, self.id);
        }
    }

    fn polled(&self, stage: Option<Stage>, fraction: f64, eta_s: Option<f64>) {
        if let Ok(mut live) = self.shared.live.lock() {
            let entry = live.entry(self.id).or_default();
            entry.stage = stage.or(entry.stage);
            entry.job_fraction = fraction;
            entry.eta_s = eta_s;
        }
        changed(self.shared, self.emitter, self.id);
    }
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
        entry.cloud_phase = None;
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
    if let Some(step) = event.metrics.as_ref().and_then(|m| m.resumed_from_step) {
        entry.resumed_from_step = Some(step);
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
