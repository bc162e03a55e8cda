//! A queued job that runs in the cloud: the runner's other road. The photos are quoted against the
//! balance, uploaded (resumable: the job folder's `cloud-upload.json`), the job created and
//! recorded in the folder's `cloud-job.json`, its remote stages followed live (the worker's typed
//! engine events reach the queue as a local job's do) and its outputs downloaded into the same job
//! folder, where a local run writes them; then validated here, as a local job's are.
//!
//! The steps are `kiln_cloud::job`'s, the CLI's too. A job the app was stopped during (quit,
//! killed, canceled) goes on from its record: a remote job still queued or running is followed
//! again, a finished one downloaded, and one that failed or was canceled is created again from
//! the same upload, so no photo is sent twice.

use std::path::Path;
use std::time::{Duration, Instant};

use kiln_api::jobs::{Job, JobState as RemoteState};
use kiln_api::prices::Priority;
use kiln_cloud::JobStreamEvent;
use kiln_cloud::job::{self, JobRecord, JobUpdate};
use kiln_cloud::login::Session;
use kiln_job::validate::{Validators, validate_outputs};
use kiln_job::{CancelFlag, JobEvent, JobLayout, JobReport, Stage};
use kiln_protocol::app::{AppError, CloudPhase};
use kiln_protocol::{ErrorClass, SettingsOverrides};
use kiln_queue::store::QueuedJob;
use uuid::Uuid;

use crate::cloud::{Cloud, job_error};
use crate::error::{CommandResult, internal};

/// How often a running step looks at the job's cancel flag: a press of Cancel takes effect within
/// this, and a flag read is nothing next to the network calls it interrupts.
const CANCEL_POLL: Duration = Duration::from_millis(200);

/// The least time between two progress updates of an upload or a download sent to the queue: a
/// progress bar's pace; each part would otherwise be a row event.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What the runner hears from a cloud job: the phase it is in with that phase's fraction, and
/// the remote engine's events. Shared with the transfers' progress callbacks, hence `Sync`.
pub trait CloudProgress: Sync {
    fn phase(&self, phase: CloudPhase, fraction: f64);
    fn engine_event(&self, event: &JobEvent);
    /// A poll's view of the remote job (when its event stream cannot be followed).
    fn polled(&self, stage: Option<Stage>, fraction: f64, eta_s: Option<f64>);
}

/// Runs `job` in the cloud to its end (or its cancel), on this thread: the runner's.
pub fn run(
    cloud: &Cloud,
    job: &QueuedJob,
    cancel: &CancelFlag,
    progress: &dyn CloudProgress,
) -> CommandResult<JobReport> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| internal(format!("cannot start the cloud job's runtime: {e}")))?;
    runtime.block_on(run_async(cloud, job, cancel, progress))
}

async fn run_async(
    cloud: &Cloud,
    job: &QueuedJob,
    cancel: &CancelFlag,
    progress: &dyn CloudProgress,
) -> CommandResult<JobReport> {
    let session = cloud.signed_in_session().await?;
    let remote = until_canceled(cancel, remote_job(&session, job, progress)).await??;
    // Queued there, it holds its quote: the pane's balance says so.
    cloud.account_changed();
    let ended = match until_canceled(cancel, follow(&session, remote.id, progress)).await {
        Ok(ended) => ended?,
        Err(canceled) => {
            // Stop the worker too: nothing more is charged than the stages it finished.
            if let Err(error) = session.call(async |client| client.cancel_job(remote.id).await).await {
                tracing::warn!(%error, job = %remote.id, "the cloud job could not be canceled there");
            }
            return Err(canceled);
        }
    };
    match ended.state {
        RemoteState::Succeeded => {}
        RemoteState::Canceled => return Err(AppError::new(ErrorClass::Cancelled, "the job was canceled in the cloud")),
        RemoteState::Expired => {
            return Err(AppError::new(
                ErrorClass::BadInput,
                "the cloud job's outputs have expired: retry runs it again",
            ));
        }
        _ => return Err(remote_failure(&ended)),
    }
    let downloads = Throttled::new(CloudPhase::Downloading, progress);
    progress.phase(CloudPhase::Downloading, 0.0);
    let fetched =
        job::download_into(&session, &ended, &job.job_dir, |p| downloads.report(p.received_bytes, p.total_bytes));
    until_canceled(cancel, fetched).await?.map_err(job_error)?;
    local_report(&job.job_dir)
}

/// The remote job this queued job stands for: the one its folder records (created again from the
/// same upload when it failed or was canceled), or a new one from the photos.
async fn remote_job(session: &Session, job: &QueuedJob, progress: &dyn CloudProgress) -> CommandResult<Job> {
    let overrides = job::cloud_overrides(&job.settings);
    let server = session.client().server().to_string();
    if let Some(record) = JobRecord::read(&job.job_dir).map_err(job_error)?
        && record.server == server
    {
        let found =
            session.call(async |client| client.job(record.job_id).await).await.map_err(|e| job_error(e.into()))?;
        if !matches!(found.state, RemoteState::Failed | RemoteState::Canceled | RemoteState::Expired) {
            tracing::info!(job = %found.id, "following the cloud job this folder records");
            return Ok(found);
        }
        return create(session, job, record.upload_id, &overrides).await;
    }
    let estimate = job::estimate(session, &job.input, &overrides, Priority::Standard).await.map_err(job_error)?;
    estimate.check().map_err(job_error)?;
    let uploads = Throttled::new(CloudPhase::Uploading, progress);
    progress.phase(CloudPhase::Uploading, 0.0);
    let uploaded = job::upload(session, &job.input, &job.job_dir, |p| uploads.report(p.sent_bytes, p.total_bytes));
    let uploaded = uploaded.await.map_err(job_error)?;
    create(session, job, uploaded.upload_id, &overrides).await
}

async fn create(
    session: &Session,
    job: &QueuedJob,
    upload_id: Uuid,
    overrides: &SettingsOverrides,
) -> CommandResult<Job> {
    let created = job::create(session, upload_id, overrides, Priority::Standard, &job.job_dir).await;
    let created = created.map_err(job_error)?;
    tracing::info!(job = %created.id, "cloud job created");
    Ok(created)
}

/// Follows the remote job to its end, passing on its phases and engine events.
async fn follow(session: &Session, job_id: Uuid, progress: &dyn CloudProgress) -> CommandResult<Job> {
    let ended = job::follow(session, job_id, |update| match update {
        JobUpdate::Event(JobStreamEvent::State { change, .. }) => {
            if let Some(phase) = phase_of(change.state) {
                progress.phase(phase, 0.0);
            }
        }
        JobUpdate::Event(JobStreamEvent::Progress { progress: remote, .. }) => {
            progress.phase(CloudPhase::Running, remote.event.stage_fraction);
            progress.engine_event(&remote.event);
        }
        JobUpdate::Polling(error) => tracing::info!(%error, "the cloud job's events cannot be followed; polling it"),
        JobUpdate::Polled(job) => {
            if let Some(phase) = phase_of(job.state) {
                progress.phase(phase, 0.0);
            }
            let stage = job.stage.as_deref().and_then(|s| s.parse().ok());
            progress.polled(stage, f64::from(job.fraction), job.eta_seconds.map(f64::from));
        }
    });
    ended.await.map_err(job_error)
}

fn phase_of(state: RemoteState) -> Option<CloudPhase> {
    match state {
        RemoteState::Queued => Some(CloudPhase::Waiting),
        RemoteState::Running => Some(CloudPhase::Running),
        _ => None,
    }
}

/// A remote failure as the queue shows it: the engine's class and message, said to be the cloud's.
fn remote_failure(job: &Job) -> AppError {
    match &job.error {
        Some(failure) => AppError::new(failure.class, format!("in the cloud: {}", failure.message)),
        None => internal(format!("the cloud job ended {} without saying why", job.state.as_str())),
    }
}

/// The downloaded report, validated here with the validators the environment names, as a local
/// job's is.
fn local_report(job_dir: &Path) -> CommandResult<JobReport> {
    let path = JobLayout::new(job_dir).report();
    let bytes = std::fs::read(&path)
        .map_err(|e| internal(format!("the cloud job's report did not arrive ({e}): {}", path.display())))?;
    let mut report: JobReport = serde_json::from_slice(&bytes)
        .map_err(|e| internal(format!("the cloud job's report is not a report ({e}): {}", path.display())))?;
    validate_outputs(&mut report, &Validators::from_env()).map_err(|e| internal(e.to_string()))?;
    Ok(report)
}

/// `work`, unless the job is canceled first: then a [`ErrorClass::Cancelled`] error, and `work` is
/// dropped (its requests aborted; an upload resumes from the parts storage holds).
async fn until_canceled<T>(cancel: &CancelFlag, work: impl Future<Output = T>) -> CommandResult<T> {
    let canceled = async {
        while !cancel.is_cancelled() {
            tokio::time::sleep(CANCEL_POLL).await;
        }
    };
    tokio::select! {
        done = work => Ok(done),
        () = canceled => Err(AppError::new(ErrorClass::Cancelled, "canceled")),
    }
}

/// A transfer's progress, passed on at most every [`PROGRESS_EVERY`], and at its end.
struct Throttled<'a> {
    phase: CloudPhase,
    progress: &'a dyn CloudProgress,
    sent_at: std::sync::Mutex<Option<Instant>>,
}

impl<'a> Throttled<'a> {
    fn new(phase: CloudPhase, progress: &'a dyn CloudProgress) -> Self {
        Throttled { phase, progress, sent_at: std::sync::Mutex::new(None) }
    }

    fn report(&self, done: u64, total: u64) {
        let Ok(mut sent_at) = self.sent_at.lock() else { return };
        let finished = done >= total;
        if finished || sent_at.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
            let fraction = if total == 0 { 1.0 } else { (done as f64 / total as f64).clamp(0.0, 1.0) };
            self.progress.phase(self.phase, fraction);
            *sent_at = Some(Instant::now());
        }
    }
}
