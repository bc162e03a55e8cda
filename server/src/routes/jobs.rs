//! The jobs routes: submit a job for a complete upload, list and read jobs, follow one's progress
//! as Server-Sent Events, cancel it, and download its outputs through presigned URLs.
//!
//! `GET /v1/jobs/{id}/outputs/{file}` answers **303 See Other** with the presigned URL in
//! `Location` (so `curl -L` and browsers download directly from storage) and the same URL in a
//! JSON body (`{"url", "expires_at"}`) for clients that do not follow redirects. Each call signs a
//! new URL. After the job's `expires_at` the outputs are deleted and the route answers 410
//! `outputs_expired`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Auth, Scope};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::jobs::{self, Job, JobState, NewJob, STATE_EVENT, StoredOutput};
use crate::openapi::ErrorBody;
use crate::state::AppState;
pub use kiln_api::jobs::{CreateJob, JobList, OutputLink};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs, create_job))
        .routes(routes!(get_job))
        .routes(routes!(job_events))
        .routes(routes!(cancel_job))
        .routes(routes!(job_output))
}

/// Jobs per page unless `limit` says otherwise, and the most one page holds.
const DEFAULT_PAGE: i64 = 20;
const MAX_PAGE: i64 = 100;

/// How often the event stream looks for new events: progress reaches clients within a quarter
/// second, and an idle stream costs four indexed queries a second.
const EVENT_POLL: Duration = Duration::from_millis(250);

/// Events read per query when replaying a long log.
const EVENT_BATCH: i64 = 200;

/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<i64>,
    after: Option<Uuid>,
}

/// Lists the organisation's jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, description = "1 to 100, default 20"),
           ("after" = Option<Uuid>, Query, description = "The `next` of the previous page")),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_jobs(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<JobList>> {
    auth.require(Scope::JobsRead)?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", format!("limit is 1 to {MAX_PAGE}")));
    }
    let mut conn = state.db.acquire().await?;
    let data = jobs::list_jobs(&mut conn, auth.org_id, limit, query.after).await?;
    let next = if data.len() as i64 == limit { data.last().map(|j| j.id) } else { None };
    Ok(Json(JobList { data, next }))
}

/// Submits a job: a complete upload, settings and a priority. It is queued at once.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", security(("bearer" = [])), request_body = CreateJob,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key")),
    responses((status = 201, body = Job), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 402, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn create_job(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CreateJob>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    auth.require(Scope::JobsWrite)?;
    let settings = jobs::parse_settings(body.settings)?;
    let mut tx = state.db.begin().await?;
    let job = jobs::create_job(
        &mut tx,
        &auth,
        &state.config.billing.prices,
        NewJob { upload_id: body.upload_id, settings, priority: body.priority, batch: None },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(job)))
}

/// One job: state, progress, queue position, report, outputs, error.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = Job), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_job(State(state): State<AppState>, auth: Auth, Path(id): Path<Uuid>) -> ApiResult<Json<Job>> {
    auth.require(Scope::JobsRead)?;
    let mut conn = state.db.acquire().await?;
    Ok(Json(jobs::fetch_job(&mut conn, auth.org_id, id).await?))
}

/// Asks the job to stop: a queued job is canceled at once; a running one stops at its worker's
/// next heartbeat (`cancel_requested` shows it until then). 409 `job_final` once it has ended.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = Job), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_job(State(state): State<AppState>, auth: Auth, Path(id): Path<Uuid>) -> ApiResult<Json<Job>> {
    auth.require(Scope::JobsWrite)?;
    let mut tx = state.db.begin().await?;
    let job = jobs::cancel_job(&mut tx, &state.config, auth.org_id, id).await?;
    tx.commit().await?;
    Ok(Json(job))
}

/// The job's events as Server-Sent Events: the log from `Last-Event-ID` (every event from the
/// start without it), then new ones as they come. Each event's `id` is its place in the log;
/// `event: state` carries `{"state", "attempts", "reason", "error"}`, `event: progress` the
/// engine's progress (`{"stage", "fraction", "eta_seconds", "event": <kiln-protocol JobEvent>}`).
/// The stream ends after the final `state` event.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event")),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn job_events(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    auth.require(Scope::JobsRead)?;
    let mut conn = state.db.acquire().await?;
    jobs::fetch_job(&mut conn, auth.org_id, id).await?;
    drop(conn);
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|text| text.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let cursor =
        Cursor { db: state.db.clone(), org_id: auth.org_id, job_id: id, after, pending: VecDeque::new(), ended: false };
    let stream = futures_util::stream::unfold(cursor, |mut cursor| async move {
        let event = cursor.next().await?;
        Some((Ok(event), cursor))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    kind: String,
    body: Value,
}

/// Where an event stream is in the job's log.
struct Cursor {
    db: PgPool,
    org_id: Uuid,
    job_id: Uuid,
    after: i64,
    pending: VecDeque<EventRow>,
    /// The final state event was sent.
    ended: bool,
}

impl Cursor {
    /// The next event, waiting for one; `None` once the job's final state was sent (or the log
    /// can no longer be read: the client reconnects with `Last-Event-ID`).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(row) = self.pending.pop_front() {
                self.ended = row.kind == STATE_EVENT
                    && row.body["state"].as_str().and_then(JobState::parse).is_some_and(JobState::is_final);
                return Some(Event::default().id(row.id.to_string()).event(row.kind).data(row.body.to_string()));
            }
            if self.ended {
                return None;
            }
            match self.poll().await {
                Ok(true) => {}
                Ok(false) => tokio::time::sleep(EVENT_POLL).await,
                Err(error) => {
                    tracing::warn!(job_id = %self.job_id, error = %error, "event stream stopped");
                    return None;
                }
            }
        }
    }

    /// Reads new events into `pending`; false when there were none. When the job was already
    /// final before the read and nothing is left, the stream is over (a client that resumed
    /// after the final event). The state is read first: the final event is committed with the
    /// final state, so a read after seeing the state sees the event.
    async fn poll(&mut self) -> Result<bool, sqlx::Error> {
        let state: Option<(String,)> = sqlx::query_as("SELECT state FROM jobs WHERE id = $1 AND org_id = $2")
            .bind(self.job_id)
            .bind(self.org_id)
            .fetch_optional(&self.db)
            .await?;
        let was_final = state.is_none_or(|(s,)| JobState::parse(&s).is_some_and(JobState::is_final));
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT id, kind, body FROM job_events WHERE job_id = $1 AND org_id = $2 AND id > $3 ORDER BY id LIMIT $4",
        )
        .bind(self.job_id)
        .bind(self.org_id)
        .bind(self.after)
        .bind(EVENT_BATCH)
        .fetch_all(&self.db)
        .await?;
        if let Some(last) = rows.last() {
            self.after = last.id;
        }
        let any = !rows.is_empty();
        self.pending.extend(rows);
        if !any && was_final {
            self.ended = true;
        }
        Ok(any)
    }
}

/// Downloads an output: 303 to a presigned URL signed for this call (also in the JSON body).
#[utoipa::path(get, path = "/v1/jobs/{id}/outputs/{file}", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("file" = String, Path, description = "An output's name, e.g. model.glb")),
    responses((status = 303, body = OutputLink, headers(("Location" = String, description = "The presigned URL"))),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
async fn job_output(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, file)): Path<(Uuid, String)>,
) -> ApiResult<Response> {
    auth.require(Scope::JobsRead)?;
    let row: Option<(Value, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT outputs, expires_at FROM jobs WHERE id = $1 AND org_id = $2")
            .bind(id)
            .bind(auth.org_id)
            .fetch_optional(&state.db)
            .await?;
    let (outputs, expires_at) = row.ok_or(ApiError::NotFound { what: "job" })?;
    if let Some(at) = expires_at.filter(|at| *at <= Utc::now()) {
        let message = format!("the job's outputs were kept until {at} and are deleted");
        return Err(ApiError::Gone { code: "outputs_expired", message });
    }
    let outputs: Vec<StoredOutput> = serde_json::from_value(outputs).map_err(ApiError::internal)?;
    let output = outputs.iter().find(|o| o.file.name == file).ok_or(ApiError::NotFound { what: "output file" })?;
    let url = state.storage.presign_get(&output.object_key).to_string();
    let expires_at = Utc::now() + state.storage.presign;
    let mut response = (StatusCode::SEE_OTHER, Json(OutputLink { url: url.clone(), expires_at })).into_response();
    let location = header::HeaderValue::from_str(&url).map_err(ApiError::internal)?;
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}
