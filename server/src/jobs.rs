//! Jobs, the domain: creating one from a complete upload (settings validated with the protocol
//! crate, test keys held to `preview`), reading them as the API shows them, the event log the
//! SSE stream replays, and [`end_job`], the one place every job reaches a final state.
//!
//! States: `queued → running → succeeded | failed | canceled | expired`. Final states never change
//! (the database's `jobs_final_states_stay` trigger refuses it whatever the code does). `expired`
//! is for jobs that never ran and waited past the retention period; a finished job whose outputs
//! passed `expires_at` keeps its state and shows `outputs_expired: true`.

use chrono::{DateTime, Utc};
use kiln_protocol::{ErrorClass, JobSettings, Preset, SettingsOverrides};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::{Auth, Mode, Principal};
use crate::billing::ledger;
use crate::billing::prices::PriceTable;
pub use crate::billing::prices::Priority;
use crate::billing::studio::{self, Use};
use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use kiln_api::events::StateChange;
/// The event names of the job's log (what the SSE stream calls its events).
pub use kiln_api::events::{PROGRESS_EVENT, STATE_EVENT};
pub use kiln_api::jobs::{Job, JobCredits, JobFailure, JobOutput, JobState};

/// What a new job is made of (`POST /v1/jobs`, and one per batch item).
#[derive(Clone, Debug)]
pub struct NewJob {
    pub upload_id: Uuid,
    pub settings: SettingsOverrides,
    pub priority: Priority,
    /// The batch and the item's index in it.
    pub batch: Option<(Uuid, i32)>,
}

/// An output as stored: the file and where it lies in the bucket.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredOutput {
    #[serde(flatten)]
    pub file: JobOutput,
    pub object_key: String,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: Uuid,
    state: String,
    priority: String,
    mode: String,
    settings: Value,
    upload_id: Uuid,
    batch_id: Option<Uuid>,
    batch_item: Option<i32>,
    stage: Option<String>,
    fraction: f32,
    eta_seconds: Option<f32>,
    queue_position: Option<i64>,
    attempts: i32,
    cancel_requested: bool,
    heartbeat_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    report: Option<Value>,
    outputs: Value,
    error: Option<Value>,
    gpu_seconds: f64,
    photos: i32,
    credits_quoted: i64,
    credits_reserved: i64,
    credits_charged: i64,
    credits_released: i64,
}

/// The columns of [`JobRow`] from `jobs j`, with the queue position of a queued job: the queued
/// jobs a worker leases first (rush before standard, then older), across organisations.
macro_rules! job_columns {
    () => {
        "j.id, j.state, j.priority, j.mode, j.settings, j.upload_id, j.batch_id, j.batch_item, j.stage, \
         j.fraction, j.eta_seconds, \
         CASE WHEN j.state = 'queued' THEN (SELECT count(*) FROM jobs q WHERE q.state = 'queued' AND \
           ((q.priority = 'rush') > (j.priority = 'rush') OR ((q.priority = 'rush') = (j.priority = 'rush') \
           AND (q.created_at, q.id) < (j.created_at, j.id)))) END AS queue_position, \
         j.attempts, j.cancel_requested, j.heartbeat_at, j.created_at, j.started_at, j.finished_at, \
         j.expires_at, j.report, j.outputs, j.error, j.gpu_seconds, j.photos, j.credits_quoted, \
         j.credits_reserved, j.credits_charged, j.credits_released"
    };
}

impl JobRow {
    fn into_job(self) -> ApiResult<Job> {
        let corrupt = |what: &str| ApiError::internal(anyhow::anyhow!("job {} has an invalid {what}", self.id));
        let state = JobState::parse(&self.state).ok_or_else(|| corrupt("state"))?;
        let priority = Priority::parse(&self.priority).ok_or_else(|| corrupt("priority"))?;
        let outputs: Vec<StoredOutput> =
            serde_json::from_value(self.outputs.clone()).map_err(|_| corrupt("outputs"))?;
        let error = match &self.error {
            Some(value) => Some(serde_json::from_value(value.clone()).map_err(|_| corrupt("error"))?),
            None => None,
        };
        Ok(Job {
            id: self.id,
            state,
            priority,
            mode: self.mode,
            settings: self.settings,
            upload_id: self.upload_id,
            batch_id: self.batch_id,
            batch_item: self.batch_item,
            stage: self.stage,
            fraction: self.fraction,
            eta_seconds: self.eta_seconds,
            queue_position: self.queue_position,
            attempts: self.attempts,
            cancel_requested: self.cancel_requested,
            heartbeat_at: self.heartbeat_at,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            expires_at: self.expires_at,
            outputs_expired: self.expires_at.is_some_and(|at| at <= Utc::now()),
            report: self.report,
            outputs: outputs.into_iter().map(|o| o.file).collect(),
            error,
            gpu_seconds: self.gpu_seconds,
            photos: self.photos,
            credits: JobCredits {
                quoted: self.credits_quoted,
                reserved: self.credits_reserved,
                charged: self.credits_charged,
                released: self.credits_released,
            },
        })
    }
}

/// The settings a job runs with, or why they are refused: the protocol's own checks, `device`
/// dropped (the worker runs on its device), and overrides held to a ceiling preset's own
/// values: `preview` for test keys (their default; more is 403 `test_mode_preset`), `raw` for
/// live ones (more is 400 `setting_too_large`). Past the largest preset a job is not a better
/// model but a way to hold a worker for hours, or to crash it with a 64k texture.
pub fn accepted_settings(settings: &SettingsOverrides, mode: Mode) -> ApiResult<SettingsOverrides> {
    settings.validate().map_err(|message| ApiError::bad_request("invalid_settings", message))?;
    let mut accepted = SettingsOverrides { device: None, ..settings.clone() };
    if mode == Mode::Live {
        return within(&accepted, Preset::Raw).map(|()| accepted).map_err(|message| {
            ApiError::bad_request("setting_too_large", format!("{message}, the most the service runs"))
        });
    }
    match accepted.preset {
        None => accepted.preset = Some(Preset::Preview),
        Some(Preset::Preview) => {}
        Some(other) => {
            return Err(ApiError::forbidden(
                "test_mode_preset",
                format!("test keys run jobs at the preview preset at most, not {}; use a live key", other.name()),
            ));
        }
    }
    within(&accepted, Preset::Preview).map_err(|message| {
        ApiError::forbidden(
            "test_mode_preset",
            format!("{message}, the preview preset's value (test keys); use a live key"),
        )
    })?;
    Ok(accepted)
}

/// Whether every size override of `settings` is within `ceiling`'s own values; if not, which.
fn within(settings: &SettingsOverrides, ceiling: Preset) -> Result<(), String> {
    let most = JobSettings::for_preset(ceiling).resolved();
    let asked: [(&str, Option<u64>, Option<u64>); 4] = [
        ("train_steps", settings.train_steps.map(u64::from), Some(u64::from(most.train_steps))),
        ("max_side", settings.max_side.map(u64::from), Some(u64::from(most.max_side))),
        ("texture_size", settings.texture_size.map(u64::from), Some(u64::from(most.texture_size))),
        ("max_triangles", settings.max_triangles.map(|n| n as u64), most.max_triangles.map(|n| n as u64)),
    ];
    match asked.into_iter().find(|(_, asked, most)| matches!((asked, most), (Some(a), Some(m)) if a > m)) {
        Some((name, Some(asked), Some(most))) => Err(format!("{name} {asked} is over {most}")),
        _ => Ok(()),
    }
}

/// Parses a job's `settings` JSON as kiln-protocol's overrides (absent or `null`: none): 400
/// `invalid_settings` with the protocol's message (an unknown preset or field, a wrong type).
pub fn parse_settings(value: Value) -> ApiResult<SettingsOverrides> {
    match value {
        Value::Null => Ok(SettingsOverrides::default()),
        value => serde_json::from_value(value).map_err(|e| ApiError::bad_request("invalid_settings", e.to_string())),
    }
}

/// Creates a queued job of `new` for the caller's organisation in the caller's transaction:
/// the upload must be complete and the organisation's (404 / 409 `upload_not_complete`), the
/// settings valid ([`accepted_settings`]), and a live job's quote reserved from the
/// organisation's credits (402 `insufficient_credits`). Nothing is written when it is refused
/// (the caller rolls its transaction back).
pub async fn create_job(tx: &mut PgConnection, auth: &Auth, prices: &PriceTable, new: NewJob) -> ApiResult<Job> {
    let settings = accepted_settings(&new.settings, auth.mode)?;
    // Rush goes before everyone's standard work: free test jobs must not jump that queue.
    if auth.mode == Mode::Test && new.priority == Priority::Rush {
        return Err(ApiError::forbidden(
            "test_mode_priority",
            "test keys run jobs at standard priority; use a live key for rush",
        ));
    }
    let upload: Option<(String,)> = sqlx::query_as("SELECT state FROM uploads WHERE id = $1 AND org_id = $2 FOR SHARE")
        .bind(new.upload_id)
        .bind(auth.org_id)
        .fetch_optional(&mut *tx)
        .await?;
    match upload {
        None => return Err(ApiError::NotFound { what: "upload" }),
        Some((state,)) if state != "complete" => {
            return Err(ApiError::conflict(
                "upload_not_complete",
                format!(
                    "upload {} is {state}; complete it first (POST /v1/uploads/{}/complete)",
                    new.upload_id, new.upload_id
                ),
            ));
        }
        Some(_) => {}
    }
    let (photos,): (i64,) = sqlx::query_as("SELECT count(*) FROM upload_files WHERE upload_id = $1")
        .bind(new.upload_id)
        .fetch_one(&mut *tx)
        .await?;
    let photos = u32::try_from(photos).map_err(ApiError::internal)?;
    let quote = prices.quote(photos, settings.preset.unwrap_or_default(), new.priority);
    let reserved = if auth.mode == Mode::Live { quote.credits } else { 0 };
    let id = Uuid::now_v7();
    let settings_json = serde_json::to_value(&settings).map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO jobs (id, org_id, upload_id, batch_id, batch_item, state, priority, mode, settings,
                           photos, credits_quoted, credits_reserved)
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(auth.org_id)
    .bind(new.upload_id)
    .bind(new.batch.map(|(batch, _)| batch))
    .bind(new.batch.map(|(_, item)| item))
    .bind(new.priority.as_str())
    .bind(auth.mode.as_str())
    .bind(&settings_json)
    .bind(i32::try_from(photos).map_err(ApiError::internal)?)
    .bind(quote.credits)
    .bind(reserved)
    .execute(&mut *tx)
    .await?;
    if reserved > 0 {
        ledger::reserve(tx, auth.org_id, id, reserved).await?;
    }
    if let Principal::Claim(claim) = auth.principal {
        studio::check_job(tx, claim, settings.preset.unwrap_or_default(), new.priority).await?;
        studio::take(tx, claim, Use::Job, id).await?;
    }
    record_state(tx, auth.org_id, id, JobState::Queued, 0, "created", None).await?;
    tracing::info!(job_id = %id, org_id = %auth.org_id, "job created");
    fetch_job(tx, auth.org_id, id).await
}

/// The job `id` of `org_id`, or 404.
pub async fn fetch_job(db: &mut PgConnection, org_id: Uuid, id: Uuid) -> ApiResult<Job> {
    let row: Option<JobRow> =
        sqlx::query_as(concat!("SELECT ", job_columns!(), " FROM jobs j WHERE j.id = $1 AND j.org_id = $2"))
            .bind(id)
            .bind(org_id)
            .fetch_optional(db)
            .await?;
    row.ok_or(ApiError::NotFound { what: "job" })?.into_job()
}

/// Up to `limit` of the organisation's jobs, newest first, after the job `after` when given
/// (400 `invalid_cursor` when that is not one of the organisation's jobs).
pub async fn list_jobs(db: &mut PgConnection, org_id: Uuid, limit: i64, after: Option<Uuid>) -> ApiResult<Vec<Job>> {
    let rows: Vec<JobRow> = match after {
        None => {
            sqlx::query_as(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs j WHERE j.org_id = $1 ORDER BY j.created_at DESC, j.id DESC LIMIT $2"
            ))
            .bind(org_id)
            .bind(limit)
            .fetch_all(&mut *db)
            .await?
        }
        Some(cursor) => {
            let exists: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM jobs WHERE id = $1 AND org_id = $2")
                .bind(cursor)
                .bind(org_id)
                .fetch_optional(&mut *db)
                .await?;
            if exists.is_none() {
                return Err(ApiError::bad_request("invalid_cursor", "after must be the id of one of your jobs"));
            }
            sqlx::query_as(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs j WHERE j.org_id = $1 AND (j.created_at, j.id) < \
                 (SELECT created_at, id FROM jobs WHERE id = $3 AND org_id = $1) \
                 ORDER BY j.created_at DESC, j.id DESC LIMIT $2"
            ))
            .bind(org_id)
            .bind(limit)
            .bind(cursor)
            .fetch_all(&mut *db)
            .await?
        }
    };
    rows.into_iter().map(JobRow::into_job).collect()
}

/// Appends an event to the job's log (what `GET /v1/jobs/{id}/events` replays); its id orders it.
pub async fn record_event(
    db: &mut PgConnection,
    org_id: Uuid,
    job_id: Uuid,
    kind: &str,
    body: &Value,
) -> ApiResult<i64> {
    let (id,): (i64,) =
        sqlx::query_as("INSERT INTO job_events (job_id, org_id, kind, body) VALUES ($1, $2, $3, $4) RETURNING id")
            .bind(job_id)
            .bind(org_id)
            .bind(kind)
            .bind(body)
            .fetch_one(db)
            .await?;
    Ok(id)
}

/// Records a `state` event: the new state, the attempt, why, and the error of a failure.
pub async fn record_state(
    db: &mut PgConnection,
    org_id: Uuid,
    job_id: Uuid,
    state: JobState,
    attempts: i32,
    reason: &str,
    error: Option<&JobFailure>,
) -> ApiResult<i64> {
    let change = StateChange { state, attempts, reason: reason.into(), error: error.cloned() };
    let body = serde_json::to_value(&change).map_err(ApiError::internal)?;
    record_event(db, org_id, job_id, STATE_EVENT, &body).await
}

/// The webhook event a job reaching `state` sends.
fn webhook_event(state: JobState) -> &'static str {
    match state {
        JobState::Succeeded => "job.succeeded",
        JobState::Failed => "job.failed",
        JobState::Canceled => "job.canceled",
        JobState::Queued | JobState::Running | JobState::Expired => "job.expired",
    }
}

/// How a job ends.
#[derive(Clone, Debug)]
pub struct Ending {
    /// A final state.
    pub state: JobState,
    /// Why, in the `state` event: `finished`, `canceled_by_user`, `worker_lost`, `not_run`, ….
    pub reason: &'static str,
    pub error: Option<JobFailure>,
    /// The engine's report.json, when a worker sent one.
    pub report: Option<Value>,
    pub outputs: Vec<StoredOutput>,
    /// Device seconds of the attempt that ends it (added to the job's).
    pub gpu_seconds: f64,
    /// The worker holding the job ended it (its finish): the worker keeps its name on the job, so
    /// a retry of that finish is answered with the final state. Any other ending forgets the
    /// worker, whose late finish is then refused.
    pub by_worker: bool,
}

impl Ending {
    /// An ending with nothing from a worker: no report, no outputs, no device time.
    pub fn bare(state: JobState, reason: &'static str, error: Option<JobFailure>) -> Self {
        Ending { state, reason, error, report: None, outputs: Vec::new(), gpu_seconds: 0.0, by_worker: false }
    }
}

/// Moves job `job_id` of `org_id` from queued or running to the final state of `ending`, in the
/// caller's transaction, with everything that goes with it: `finished_at`, `expires_at` (the
/// retention), the `state` event, the webhook, the batch's bookkeeping. A job already final
/// answers 409 `job_final`. Keys a worker staged but the ending does not keep are left in
/// `staged_keys` for the reaper to delete.
pub async fn end_job(
    tx: &mut PgConnection,
    config: &Config,
    org_id: Uuid,
    job_id: Uuid,
    ending: Ending,
) -> ApiResult<Job> {
    debug_assert!(ending.state.is_final());
    let kept: Vec<String> = ending.outputs.iter().map(|o| o.object_key.clone()).collect();
    let outputs = serde_json::to_value(&ending.outputs).map_err(ApiError::internal)?;
    let error = ending.error.as_ref().map(serde_json::to_value).transpose().map_err(ApiError::internal)?;
    let ended: Option<(i32, Option<Uuid>, i64)> = sqlx::query_as(
        "UPDATE jobs SET state = $3, finished_at = now(), expires_at = now() + make_interval(days => $4),
             error = $5, report = coalesce($6, report), outputs = $7, gpu_seconds = gpu_seconds + $8,
             staged_keys = array(SELECT k FROM unnest(staged_keys) k WHERE NOT k = ANY($9)),
             lease_expires_at = NULL, eta_seconds = NULL, worker_id = CASE WHEN $10 THEN worker_id END,
             fraction = CASE WHEN $3 = 'succeeded' THEN 1 ELSE fraction END,
             credits_charged = CASE WHEN $3 = 'succeeded' THEN credits_reserved ELSE 0 END,
             credits_released = CASE WHEN $3 = 'succeeded' THEN 0 ELSE credits_reserved END
         WHERE id = $1 AND org_id = $2 AND state IN ('queued', 'running')
         RETURNING attempts, batch_id, credits_reserved",
    )
    .bind(job_id)
    .bind(org_id)
    .bind(ending.state.as_str())
    .bind(i32::try_from(config.limits.output_retention_days).unwrap_or(i32::MAX))
    .bind(error)
    .bind(&ending.report)
    .bind(outputs)
    .bind(ending.gpu_seconds)
    .bind(&kept)
    .bind(ending.by_worker)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((attempts, batch_id, reserved)) = ended else {
        return Err(ApiError::conflict("job_final", "the job has already ended; final states never change"));
    };
    record_state(tx, org_id, job_id, ending.state, attempts, ending.reason, ending.error.as_ref()).await?;
    // The job's state moved once (the UPDATE's guard), so its reservation settles once.
    if reserved > 0 {
        match ending.state {
            JobState::Succeeded => ledger::capture(tx, org_id, job_id, reserved).await?,
            _ => ledger::release(tx, org_id, job_id, reserved).await?,
        }
    }
    let job = fetch_job(tx, org_id, job_id).await?;
    let job_json = serde_json::to_value(&job).map_err(ApiError::internal)?;
    crate::webhooks::enqueue(tx, org_id, webhook_event(ending.state), &job_json).await?;
    if let Some(batch_id) = batch_id {
        crate::batches::job_ended(tx, org_id, batch_id).await?;
    }
    tracing::info!(job_id = %job_id, state = ending.state.as_str(), reason = ending.reason, "job ended");
    Ok(job)
}

/// Cancels job `job_id` of `org_id`: a queued job ends `canceled` at once; a running one is
/// flagged and stops at its worker's next heartbeat (or when its lease expires, if the worker is
/// gone). 409 `job_final` when it has already ended.
pub async fn cancel_job(tx: &mut PgConnection, config: &Config, org_id: Uuid, job_id: Uuid) -> ApiResult<Job> {
    let state: Option<(String,)> = sqlx::query_as("SELECT state FROM jobs WHERE id = $1 AND org_id = $2 FOR UPDATE")
        .bind(job_id)
        .bind(org_id)
        .fetch_optional(&mut *tx)
        .await?;
    let (state,) = state.ok_or(ApiError::NotFound { what: "job" })?;
    match JobState::parse(&state) {
        Some(JobState::Queued) => {
            let failure = JobFailure::new("canceled", ErrorClass::Cancelled, "canceled before a worker started it");
            end_job(tx, config, org_id, job_id, Ending::bare(JobState::Canceled, "canceled_by_user", Some(failure)))
                .await
        }
        Some(JobState::Running) => {
            sqlx::query("UPDATE jobs SET cancel_requested = true WHERE id = $1 AND org_id = $2")
                .bind(job_id)
                .bind(org_id)
                .execute(&mut *tx)
                .await?;
            fetch_job(tx, org_id, job_id).await
        }
        _ => Err(ApiError::conflict("job_final", format!("the job is {state}; final states never change"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn test_keys_run_at_preview_at_most() {
        let none = SettingsOverrides::default();
        assert_eq!(accepted_settings(&none, Mode::Test).ok().and_then(|s| s.preset), Some(Preset::Preview));
        assert_eq!(accepted_settings(&none, Mode::Live).ok().and_then(|s| s.preset), None);
        let full = SettingsOverrides { preset: Some(Preset::Full), ..SettingsOverrides::default() };
        assert!(accepted_settings(&full, Mode::Test).is_err_and(|e| e.code() == "test_mode_preset"));
        assert!(accepted_settings(&full, Mode::Live).is_ok());
    }

    #[test]
    fn settings_are_checked_and_device_is_dropped() {
        assert!(parse_settings(json!({"preset": "huge"})).is_err_and(|e| e.code() == "invalid_settings"));
        assert!(parse_settings(json!({"presets": "full"})).is_err_and(|e| e.code() == "invalid_settings"));
        let zero = parse_settings(json!({"max_side": 0})).and_then(|s| accepted_settings(&s, Mode::Live));
        assert!(zero.is_err_and(|e| e.code() == "invalid_settings"));
        let with_device =
            parse_settings(json!({"device": "gpu", "train_steps": 10})).and_then(|s| accepted_settings(&s, Mode::Live));
        assert!(with_device.is_ok_and(|s| s.device.is_none() && s.train_steps == Some(10)));
    }

    #[test]
    fn states_name_their_finality() {
        for state in [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Canceled,
            JobState::Expired,
        ] {
            assert_eq!(JobState::parse(state.as_str()), Some(state));
        }
        assert!(!JobState::Running.is_final() && JobState::Expired.is_final());
    }
}
