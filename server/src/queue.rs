//! The durable queue: queued jobs are rows of `jobs`, claimed by workers with
//! `FOR UPDATE SKIP LOCKED` (rush before standard, then oldest first), held by a lease that each
//! heartbeat extends, and given up by the reaper when the lease runs out. Everything here is safe
//! with several server processes on one database: rows are claimed, never assumed.
//!
//! A lease is held by a worker id *and* an attempt number (`attempts`, raised at each lease), so
//! a worker that lost its lease (killed, partitioned, then back) can neither heartbeat, stage
//! outputs nor finish the job its successor now runs.
//!
//! The reaper ([`reap_forever`]) puts running jobs whose lease expired back in the queue (keeping
//! their attempt count), fails them with `worker_lost` after `max_attempts`, cancels those whose
//! cancellation was asked for, expires jobs that waited in the queue past the retention period,
//! deletes objects lost attempts staged, and deletes outputs past `expires_at`.

use std::time::Duration;

use kiln_protocol::ErrorClass;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::jobs::{Ending, JobFailure, JobState, StoredOutput, end_job, record_state};
use crate::state::AppState;

/// How often the reaper looks: a lost worker's job waits at most this long after its lease ran
/// out (leases are a minute by default; tests use a few seconds).
const REAP_INTERVAL: Duration = Duration::from_secs(1);

/// Rows one reaper pass handles per kind of work, so one pass stays short however far behind.
const REAP_BATCH: usize = 100;

/// A job a worker just leased.
#[derive(Debug, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub org_id: Uuid,
    pub attempts: i32,
    pub upload_id: Uuid,
    pub settings: Value,
}

/// Claims the next queued job for `worker_id` (rush first, then the oldest), in the caller's
/// transaction: it becomes `running` with a lease of `config.queue.lease`, one more attempt and
/// a `state` event. `None` when the queue is empty (or every queued row is being claimed).
pub async fn claim(tx: &mut PgConnection, config: &Config, worker_id: &str) -> ApiResult<Option<Claimed>> {
    let claimed: Option<Claimed> = sqlx::query_as(
        "WITH next AS (
             SELECT id FROM jobs WHERE state = 'queued'
             ORDER BY (priority = 'rush') DESC, created_at, id
             LIMIT 1 FOR UPDATE SKIP LOCKED
         )
         UPDATE jobs j SET state = 'running', attempts = j.attempts + 1, max_attempts = $2, worker_id = $1,
             lease_expires_at = now() + make_interval(secs => $3), heartbeat_at = now(),
             started_at = coalesce(j.started_at, now()), stage = NULL, fraction = 0, eta_seconds = NULL
         FROM next WHERE j.id = next.id
         RETURNING j.id, j.org_id, j.attempts, j.upload_id, j.settings",
    )
    .bind(worker_id)
    .bind(config.queue.max_attempts)
    .bind(config.queue.lease.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(job) = &claimed {
        record_state(tx, job.org_id, job.id, JobState::Running, job.attempts, "leased", None).await?;
        tracing::info!(job_id = %job.id, worker_id, attempt = job.attempts, "job leased");
    }
    Ok(claimed)
}

/// A lease as its holder sees it.
#[derive(Debug, sqlx::FromRow)]
pub struct Held {
    pub org_id: Uuid,
    pub cancel_requested: bool,
    /// The job's progress so far in this attempt.
    pub fraction: f32,
    pub lease_expires_at: chrono::DateTime<chrono::Utc>,
}

/// The lease of job `job_id`, locked for the caller's transaction, if `worker_id` holds it at
/// `attempt`; else 409 `lease_lost` (the lease expired and the job was requeued, ended, or given
/// to another attempt). With `extend`, the lease is renewed and the heartbeat time set.
pub async fn hold(
    tx: &mut PgConnection,
    config: &Config,
    job_id: Uuid,
    worker_id: &str,
    attempt: i32,
    extend: bool,
) -> ApiResult<Held> {
    let held: Option<Held> = sqlx::query_as(
        "UPDATE jobs SET
             lease_expires_at = CASE WHEN $4 THEN now() + make_interval(secs => $5) ELSE lease_expires_at END,
             heartbeat_at = CASE WHEN $4 THEN now() ELSE heartbeat_at END
         WHERE id = $1 AND state = 'running' AND worker_id = $2 AND attempts = $3
         RETURNING org_id, cancel_requested, fraction, lease_expires_at",
    )
    .bind(job_id)
    .bind(worker_id)
    .bind(attempt)
    .bind(extend)
    .bind(config.queue.lease.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    held.ok_or_else(|| {
        ApiError::conflict(
            "lease_lost",
            format!("worker {worker_id} no longer holds job {job_id} at attempt {attempt}"),
        )
    })
}

/// Sets the job's progress (the caller holds the lease).
pub async fn set_progress(
    tx: &mut PgConnection,
    job_id: Uuid,
    stage: &str,
    fraction: f64,
    eta: Option<f64>,
) -> ApiResult<()> {
    sqlx::query("UPDATE jobs SET stage = $2, fraction = $3, eta_seconds = $4 WHERE id = $1")
        .bind(job_id)
        .bind(stage)
        .bind(fraction.clamp(0.0, 1.0) as f32)
        .bind(eta.map(|e| e.max(0.0) as f32))
        .execute(tx)
        .await?;
    Ok(())
}

/// Records object keys a worker is about to upload, so that whatever the job does not keep is
/// deleted once it ends.
pub async fn stage_keys(tx: &mut PgConnection, job_id: Uuid, keys: &[String]) -> ApiResult<()> {
    sqlx::query(
        "UPDATE jobs SET staged_keys = array(SELECT DISTINCT k FROM unnest(staged_keys || $2) k) WHERE id = $1",
    )
    .bind(job_id)
    .bind(keys)
    .execute(tx)
    .await?;
    Ok(())
}

/// Where attempt `attempt` of a job puts its output `name`: attempts never share objects, so a
/// lost attempt's late upload cannot overwrite its successor's files.
pub fn output_key(org_id: Uuid, job_id: Uuid, attempt: i32, name: &str) -> String {
    format!("orgs/{org_id}/jobs/{job_id}/attempt-{attempt}/{name}")
}

/// A running job whose worker stopped holding it (lease expired, or the worker released it):
/// canceled if that was asked for, failed with `worker_lost` after its last attempt, else queued
/// again with its attempt count.
pub async fn requeue_or_end(
    tx: &mut PgConnection,
    config: &Config,
    job: &Lapsed,
    reason: &'static str,
) -> ApiResult<JobState> {
    if job.cancel_requested {
        let failure = JobFailure::new("canceled", ErrorClass::Cancelled, "canceled while running; its worker stopped");
        end_job(tx, config, job.org_id, job.id, Ending::bare(JobState::Canceled, "canceled_by_user", Some(failure)))
            .await?;
        return Ok(JobState::Canceled);
    }
    if job.attempts >= job.max_attempts {
        let failure = JobFailure::new(
            "worker_lost",
            ErrorClass::Internal,
            format!("the job's worker stopped answering on each of its {} attempts; submit it again", job.attempts),
        );
        end_job(tx, config, job.org_id, job.id, Ending::bare(JobState::Failed, "worker_lost", Some(failure))).await?;
        return Ok(JobState::Failed);
    }
    sqlx::query(
        "UPDATE jobs SET state = 'queued', worker_id = NULL, lease_expires_at = NULL, stage = NULL, fraction = 0,
             eta_seconds = NULL
         WHERE id = $1",
    )
    .bind(job.id)
    .execute(&mut *tx)
    .await?;
    record_state(tx, job.org_id, job.id, JobState::Queued, job.attempts, reason, None).await?;
    tracing::warn!(job_id = %job.id, attempts = job.attempts, reason, "job back in the queue");
    Ok(JobState::Queued)
}

/// A running job whose lease is over.
#[derive(Debug, sqlx::FromRow)]
pub struct Lapsed {
    pub id: Uuid,
    pub org_id: Uuid,
    pub attempts: i32,
    pub max_attempts: i32,
    pub cancel_requested: bool,
}

/// The columns of [`Lapsed`]; a job leased before `max_attempts` was set at lease counts the
/// configured limit.
macro_rules! lapsed_columns {
    () => {
        "id, org_id, attempts, coalesce(max_attempts, $1) AS max_attempts, cancel_requested"
    };
}
pub(crate) use lapsed_columns;

/// Runs [`reap_once`] every [`REAP_INTERVAL`] until the process exits.
pub async fn reap_forever(state: AppState) {
    let mut ticks = tokio::time::interval(REAP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = reap_once(&state).await {
            tracing::warn!(error = %error, "reaper pass failed; retrying");
        }
    }
}

/// One pass of every kind of reaping.
pub async fn reap_once(state: &AppState) -> ApiResult<()> {
    expire_leases(state).await?;
    expire_unrun(state).await?;
    discard_staged(state).await?;
    delete_expired_outputs(state).await
}

/// Running jobs whose lease ran out: [`requeue_or_end`], one transaction each.
async fn expire_leases(state: &AppState) -> ApiResult<()> {
    for _ in 0..REAP_BATCH {
        let mut tx = state.db.begin().await?;
        let lapsed: Option<Lapsed> = sqlx::query_as(concat!(
            "SELECT ",
            lapsed_columns!(),
            " FROM jobs WHERE state = 'running' AND lease_expires_at < now()
             ORDER BY lease_expires_at LIMIT 1 FOR UPDATE SKIP LOCKED"
        ))
        .bind(state.config.queue.max_attempts)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(job) = lapsed else { return Ok(()) };
        requeue_or_end(&mut tx, &state.config, &job, "lease_expired").await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Queued jobs no worker took within the retention period end `expired`.
async fn expire_unrun(state: &AppState) -> ApiResult<()> {
    let days = i32::try_from(state.config.limits.output_retention_days).unwrap_or(i32::MAX);
    for _ in 0..REAP_BATCH {
        let mut tx = state.db.begin().await?;
        let due: Option<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT id, org_id FROM jobs WHERE state = 'queued' AND created_at < now() - make_interval(days => $1)
             ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .bind(days)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, org_id)) = due else { return Ok(()) };
        let failure =
            JobFailure::new("not_run", ErrorClass::Internal, format!("no worker ran the job within {days} days"));
        end_job(&mut tx, &state.config, org_id, id, Ending::bare(JobState::Expired, "not_run", Some(failure))).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Deletes the objects ended jobs staged but do not keep (a lost attempt's uploads).
async fn discard_staged(state: &AppState) -> ApiResult<()> {
    for _ in 0..REAP_BATCH {
        let mut tx = state.db.begin().await?;
        let due: Option<(Uuid, Vec<String>)> = sqlx::query_as(
            "SELECT id, staged_keys FROM jobs WHERE finished_at IS NOT NULL AND cardinality(staged_keys) > 0
             ORDER BY finished_at LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, keys)) = due else { return Ok(()) };
        delete_objects(state, &keys).await?;
        sqlx::query("UPDATE jobs SET staged_keys = '{}' WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Deletes the outputs of jobs past `expires_at` (the job keeps its state and its outputs list;
/// downloads answer 410 `outputs_expired`).
async fn delete_expired_outputs(state: &AppState) -> ApiResult<()> {
    for _ in 0..REAP_BATCH {
        let mut tx = state.db.begin().await?;
        let due: Option<(Uuid, Value)> = sqlx::query_as(
            "SELECT id, outputs FROM jobs WHERE outputs_deleted_at IS NULL AND expires_at <= now()
             ORDER BY expires_at LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, outputs)) = due else { return Ok(()) };
        let outputs: Vec<StoredOutput> = serde_json::from_value(outputs).map_err(ApiError::internal)?;
        let keys: Vec<String> = outputs.into_iter().map(|o| o.object_key).collect();
        delete_objects(state, &keys).await?;
        sqlx::query("UPDATE jobs SET outputs_deleted_at = now() WHERE id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        tracing::info!(job_id = %id, files = keys.len(), "expired outputs deleted");
    }
    Ok(())
}

async fn delete_objects(state: &AppState, keys: &[String]) -> ApiResult<()> {
    for key in keys {
        state.storage.delete(key).await.map_err(ApiError::internal)?;
    }
    Ok(())
}
