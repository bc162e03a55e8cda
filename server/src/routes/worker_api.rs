//! The workers' API under `/v1/worker/…`, authenticated by the shared worker token
//! (`Authorization: Bearer $KILN_WORKER_TOKEN`, [`WorkerAuth`]) and left out of the public
//! OpenAPI document (customers never call it). All bodies are JSON; the types are shared with
//! the worker process (`crate::worker`).
//!
//! - `POST /v1/worker/lease` `{worker_id, device}`: 200 [`Lease`] (job, attempt, settings, input
//!   files with presigned GET URLs), or 204 when the queue is empty.
//! - `POST /v1/worker/jobs/{id}/heartbeat` [`Heartbeat`]: records the engine's events, extends the
//!   lease, answers [`HeartbeatReply`] (`cancel: true` once the customer canceled).
//! - `POST /v1/worker/jobs/{id}/outputs` [`OutputsRequest`]: presigned PUT URLs for the named
//!   files, under the attempt's own prefix.
//! - `POST /v1/worker/jobs/{id}/finish` [`Finish`]: the job ends succeeded (outputs checked
//!   against storage with HEAD), failed or canceled. Repeating an accepted finish answers the
//!   same (a worker whose reply was lost retries); any other caller gets 409 `lease_lost`.
//! - `POST /v1/worker/jobs/{id}/release` [`LeaseRef`]: the worker is shutting down; the job goes
//!   back to the queue now rather than when its lease runs out.
//!
//! Every call but `lease` names the job, the worker and the attempt; 409 `lease_lost` means the
//! worker no longer holds the job and must drop it.

use std::collections::HashSet;

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use kiln_protocol::{ErrorClass, JobEvent, SettingsOverrides};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::auth::secret;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::jobs::{self, Ending, JobFailure, JobOutput, JobState, PROGRESS_EVENT, StoredOutput};
use crate::queue::{self, Lapsed, lapsed_columns};
use crate::state::AppState;
use kiln_api::events::Progress;

/// Not in the OpenAPI document: plain routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route("/v1/worker/lease", post(lease))
        .route("/v1/worker/jobs/{id}/heartbeat", post(heartbeat))
        .route("/v1/worker/jobs/{id}/outputs", post(outputs))
        .route("/v1/worker/jobs/{id}/finish", post(finish))
        .route("/v1/worker/jobs/{id}/release", post(release))
}

/// Longest worker id (host names and pids fit easily).
const MAX_WORKER_ID: usize = 100;
/// Most events one heartbeat carries (a second of engine events is at most ten).
const MAX_EVENTS: usize = 1000;
/// Most output files of one job (the export formats, the report, a few extras).
const MAX_OUTPUTS: usize = 32;
/// Longest output file name.
const MAX_OUTPUT_NAME: usize = 100;

/// A request from one of the service's workers: the bearer credential is the shared worker
/// token, compared in constant time (as SHA-256 digests, so not even its length leaks).
pub struct WorkerAuth;

impl FromRequestParts<AppState> for WorkerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let refused = || ApiError::unauthorized("invalid_worker_token", "this route takes the worker token");
        let token = crate::auth::bearer_token(&parts.headers).ok_or_else(refused)?;
        let expected = &state.config.worker_token;
        if !expected.is_empty() && secret::matches(token, expected) { Ok(WorkerAuth) } else { Err(refused()) }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    pub worker_id: String,
    /// `cpu`, `gpu` or `auto`: what the worker trains on.
    pub device: String,
}

/// A job leased to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub struct Lease {
    pub job_id: Uuid,
    pub attempt: i32,
    pub settings: SettingsOverrides,
    pub inputs: Vec<InputUrl>,
    /// The lease runs out this long after the last heartbeat.
    pub lease_seconds: f64,
}

/// One input file and where to download it.
#[derive(Debug, Serialize, Deserialize)]
pub struct InputUrl {
    pub name: String,
    pub size: i64,
    /// Hex SHA-256, for the worker to check what it downloaded.
    pub sha256: String,
    pub url: String,
}

/// Names the lease a call is made under.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRef {
    pub worker_id: String,
    pub attempt: i32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub worker_id: String,
    pub attempt: i32,
    /// The engine's events since the last heartbeat, in order (may be empty).
    #[serde(default)]
    pub events: Vec<JobEvent>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The customer canceled: stop the engine and finish as `canceled`.
    pub cancel: bool,
    pub lease_expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsRequest {
    pub worker_id: String,
    pub attempt: i32,
    pub files: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OutputsReply {
    pub uploads: Vec<OutputUpload>,
}

/// Where to PUT one output file.
#[derive(Debug, Serialize, Deserialize)]
pub struct OutputUpload {
    pub name: String,
    pub url: String,
}

/// How an attempt ended, on the worker's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    Failed,
    Canceled,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finish {
    pub worker_id: String,
    pub attempt: i32,
    pub outcome: Outcome,
    /// kiln-job's report.json, when the engine wrote one.
    #[serde(default)]
    pub report: Option<Value>,
    /// Files uploaded through `outputs` (a failed job may keep some: its report, a failed model).
    #[serde(default)]
    pub outputs: Vec<JobOutput>,
    /// Why it failed: `bad_input`, `model_failed`, `device_error` or `internal_error`.
    #[serde(default)]
    pub error: Option<JobFailure>,
    /// Seconds the worker's device ran the job (metered as the job's GPU-seconds).
    pub device_seconds: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Finished {
    pub state: JobState,
}

/// Failure codes a worker may report.
const WORKER_FAILURE_CODES: [&str; 4] = ["bad_input", "model_failed", "device_error", "internal_error"];

fn check_worker_id(worker_id: &str) -> ApiResult<()> {
    let valid = !worker_id.is_empty()
        && worker_id.len() <= MAX_WORKER_ID
        && worker_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c));
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_worker_id",
            format!("a worker id is 1 to {MAX_WORKER_ID} of [A-Za-z0-9-_.:@]"),
        ))
    }
}

/// An output's name: a plain file name (no folders), so keys stay under the attempt's prefix.
fn check_output_name(name: &str) -> ApiResult<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_OUTPUT_NAME
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request("invalid_output_name", format!("'{name}' is not a plain file name")))
    }
}

async fn lease(State(state): State<AppState>, _: WorkerAuth, Json(body): Json<LeaseRequest>) -> ApiResult<Response> {
    check_worker_id(&body.worker_id)?;
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO workers (id, device) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET device = excluded.device, last_seen = now()",
    )
    .bind(&body.worker_id)
    .bind(&body.device)
    .execute(&mut *tx)
    .await?;
    let claimed = queue::claim(&mut tx, &state.config, &body.worker_id).await?;
    tx.commit().await?;
    let Some(job) = claimed else { return Ok(StatusCode::NO_CONTENT.into_response()) };
    let settings: SettingsOverrides = serde_json::from_value(job.settings).map_err(ApiError::internal)?;
    let files = match crate::uploads::complete_inputs(&state.db, job.org_id, job.upload_id).await {
        Ok(files) => files,
        Err(error) if matches!(error, ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {
            // The upload went away after the job was accepted: the job cannot run anywhere.
            let failure =
                JobFailure::new("bad_input", ErrorClass::BadInput, format!("the job's upload is unusable: {error}"));
            let mut tx = state.db.begin().await?;
            jobs::end_job(
                &mut tx,
                &state.config,
                job.org_id,
                job.id,
                Ending::bare(JobState::Failed, "input_unavailable", Some(failure)),
            )
            .await?;
            tx.commit().await?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        Err(error) => return Err(error),
    };
    let inputs = files
        .into_iter()
        .map(|f| InputUrl {
            url: state.storage.presign_get(&f.object_key).to_string(),
            name: f.name,
            size: f.size,
            sha256: hex::encode(f.sha256),
        })
        .collect();
    let lease = Lease {
        job_id: job.id,
        attempt: job.attempts,
        settings,
        inputs,
        lease_seconds: state.config.queue.lease.as_secs_f64(),
    };
    Ok(Json(lease).into_response())
}

async fn heartbeat(
    State(state): State<AppState>,
    _: WorkerAuth,
    Path(job_id): Path<Uuid>,
    Json(body): Json<Heartbeat>,
) -> ApiResult<Json<HeartbeatReply>> {
    if body.events.len() > MAX_EVENTS {
        return Err(ApiError::bad_request("too_many_events", format!("at most {MAX_EVENTS} events per heartbeat")));
    }
    let mut tx = state.db.begin().await?;
    // The lease's row lock comes first: every event of a job is inserted under it, so event ids
    // commit in order and a stream reading `id > last` never skips one.
    let held = queue::hold(&mut tx, &state.config, job_id, &body.worker_id, body.attempt, true).await?;
    // The job's fraction only rises within an attempt (the engine's restarts with each phase of
    // the capture check); the engine's own figures stay in the event.
    let mut fraction = f64::from(held.fraction);
    for event in &body.events {
        fraction = fraction.max(event.job_fraction.clamp(0.0, 1.0));
        // A preview is a path on the worker's disk: meaningless to anyone else.
        let event = JobEvent { preview: None, ..event.clone() };
        let progress = Progress { stage: event.stage, fraction, eta_seconds: event.eta_s, event };
        let value = serde_json::to_value(&progress).map_err(ApiError::internal)?;
        jobs::record_event(&mut tx, held.org_id, job_id, PROGRESS_EVENT, &value).await?;
    }
    if let Some(last) = body.events.last() {
        queue::set_progress(&mut tx, job_id, last.stage.name(), fraction, last.eta_s).await?;
    }
    sqlx::query("UPDATE workers SET last_seen = now() WHERE id = $1").bind(&body.worker_id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Json(HeartbeatReply { cancel: held.cancel_requested, lease_expires_at: held.lease_expires_at }))
}

async fn outputs(
    State(state): State<AppState>,
    _: WorkerAuth,
    Path(job_id): Path<Uuid>,
    Json(body): Json<OutputsRequest>,
) -> ApiResult<Json<OutputsReply>> {
    if body.files.len() > MAX_OUTPUTS {
        return Err(ApiError::bad_request("too_many_outputs", format!("at most {MAX_OUTPUTS} output files")));
    }
    for name in &body.files {
        check_output_name(name)?;
    }
    let mut tx = state.db.begin().await?;
    let held = queue::hold(&mut tx, &state.config, job_id, &body.worker_id, body.attempt, true).await?;
    let keys: Vec<String> =
        body.files.iter().map(|name| queue::output_key(held.org_id, job_id, body.attempt, name)).collect();
    queue::stage_keys(&mut tx, job_id, &keys).await?;
    tx.commit().await?;
    let uploads = body
        .files
        .iter()
        .zip(&keys)
        .map(|(name, key)| OutputUpload { name: name.clone(), url: state.storage.presign_put(key).to_string() })
        .collect();
    Ok(Json(OutputsReply { uploads }))
}

async fn finish(
    State(state): State<AppState>,
    _: WorkerAuth,
    Path(job_id): Path<Uuid>,
    Json(body): Json<Finish>,
) -> ApiResult<Json<Finished>> {
    check_worker_id(&body.worker_id)?;
    if !(body.device_seconds.is_finite() && body.device_seconds >= 0.0) {
        return Err(ApiError::bad_request("invalid_device_seconds", "device_seconds is a non-negative number"));
    }
    let mut tx = state.db.begin().await?;
    let held = match queue::hold(&mut tx, &state.config, job_id, &body.worker_id, body.attempt, false).await {
        Ok(held) => held,
        Err(lost) => return replay(&state, job_id, &body, lost).await.map(Json),
    };
    let outputs = verify_outputs(&state, held.org_id, job_id, body.attempt, &body.outputs).await?;
    let (state_to, reason, error) = match body.outcome {
        Outcome::Succeeded => (JobState::Succeeded, "finished", None),
        Outcome::Canceled => {
            let failure = JobFailure::new("canceled", ErrorClass::Cancelled, "canceled while running");
            (JobState::Canceled, "canceled_by_user", Some(failure))
        }
        Outcome::Failed => {
            let failure =
                body.error.clone().filter(|e| WORKER_FAILURE_CODES.contains(&e.code.as_str())).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_error",
                        format!("a failure names one of the codes {WORKER_FAILURE_CODES:?}"),
                    )
                })?;
            (JobState::Failed, "failed", Some(failure))
        }
    };
    let ending = Ending {
        state: state_to,
        reason,
        error,
        report: body.report.clone(),
        outputs,
        gpu_seconds: body.device_seconds,
        by_worker: true,
    };
    let report = body.report.clone();
    jobs::end_job(&mut tx, &state.config, held.org_id, job_id, ending).await?;
    tx.commit().await?;
    // Once per accepted finish (a replayed finish returned above): stage timings into the
    // histograms of /metrics.
    if let Some(report) = &report {
        state.ops.metrics.observe_job(report);
    }
    Ok(Json(Finished { state: state_to }))
}

/// A finish from a worker that no longer holds the job: the same worker and attempt retrying an
/// accepted finish gets the job's final state; anyone else the `lease_lost` refusal.
async fn replay(state: &AppState, job_id: Uuid, body: &Finish, lost: ApiError) -> ApiResult<Finished> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT state FROM jobs WHERE id = $1 AND worker_id = $2 AND attempts = $3")
            .bind(job_id)
            .bind(&body.worker_id)
            .bind(body.attempt)
            .fetch_optional(&state.db)
            .await?;
    match row.and_then(|(s,)| JobState::parse(&s)).filter(|s| s.is_final()) {
        Some(final_state) => Ok(Finished { state: final_state }),
        None => Err(lost),
    }
}

/// The outputs a worker says it uploaded, each checked to be in storage at the attempt's key
/// with the size the worker gives (HEAD); 400 `output_mismatch` otherwise.
async fn verify_outputs(
    state: &AppState,
    org_id: Uuid,
    job_id: Uuid,
    attempt: i32,
    outputs: &[JobOutput],
) -> ApiResult<Vec<StoredOutput>> {
    let mut names = HashSet::new();
    let mut stored = Vec::with_capacity(outputs.len());
    for output in outputs {
        check_output_name(&output.name)?;
        if !names.insert(output.name.as_str()) {
            return Err(ApiError::bad_request("invalid_output_name", format!("{} is listed twice", output.name)));
        }
        let sha_ok = output.sha256.len() == 64 && output.sha256.chars().all(|c| c.is_ascii_hexdigit());
        if !sha_ok {
            return Err(ApiError::bad_request("invalid_sha256", format!("{}: sha256 is 64 hex digits", output.name)));
        }
        let key = queue::output_key(org_id, job_id, attempt, &output.name);
        let size = state.storage.head(&key).await?.map(|s| i64::try_from(s).unwrap_or(i64::MAX));
        if size != Some(output.size) {
            let found = size.map_or_else(|| "nothing".to_string(), |s| format!("{s} bytes"));
            return Err(ApiError::bad_request(
                "output_mismatch",
                format!("{} is {} bytes by the worker's count, storage holds {found}", output.name, output.size),
            ));
        }
        let file = JobOutput { sha256: output.sha256.to_ascii_lowercase(), ..output.clone() };
        stored.push(StoredOutput { file, object_key: key });
    }
    Ok(stored)
}

async fn release(
    State(state): State<AppState>,
    _: WorkerAuth,
    Path(job_id): Path<Uuid>,
    Json(body): Json<LeaseRef>,
) -> ApiResult<Json<Finished>> {
    let mut tx = state.db.begin().await?;
    queue::hold(&mut tx, &state.config, job_id, &body.worker_id, body.attempt, false).await?;
    let lapsed: Lapsed = sqlx::query_as(concat!("SELECT ", lapsed_columns!(), " FROM jobs WHERE id = $2"))
        .bind(state.config.queue.max_attempts)
        .bind(job_id)
        .fetch_one(&mut *tx)
        .await?;
    let state_to = queue::requeue_or_end(&mut tx, &state.config, &lapsed, "released").await?;
    tx.commit().await?;
    Ok(Json(Finished { state: state_to }))
}
