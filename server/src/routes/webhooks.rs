//! Webhook endpoints: create (the signing secret shown once), list, read, delete, rotate the
//! secret (the old one keeps signing beside the new one for a day), send a test event, read the
//! delivery log; and redeliver a message by hand. All under the `webhooks:manage` scope.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Auth, Scope};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::openapi::ErrorBody;
use crate::state::AppState;
use crate::webhooks::{self, EVENT_TYPES, address, sign};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(get_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(send_test))
        .routes(routes!(list_deliveries))
        .routes(routes!(redeliver))
}

/// Endpoints one organisation may have: plenty for fan-out to several systems, few enough that
/// one event cannot become a flood of requests.
const MAX_ENDPOINTS: i64 = 20;

/// Longest description.
const MAX_DESCRIPTION: usize = 500;

/// How long the secret before a rotation keeps signing: a day for receivers to switch.
const ROTATION_OVERLAP_HOURS: i32 = 24;

/// Attempts per page of the delivery log unless `limit` says otherwise, and the most one page holds.
const DEFAULT_LOG_PAGE: i64 = 50;
const MAX_LOG_PAGE: i64 = 500;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// `https://` and resolving to public addresses only.
    #[schema(example = "https://example.com/kiln/webhooks")]
    pub url: String,
    /// The event types to send; omitted or null for all of them.
    #[schema(example = json!(["job.succeeded", "job.failed"]))]
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub description: String,
    /// The event types sent; null for all.
    #[schema(example = json!(["job.succeeded", "job.failed"]))]
    pub events: Option<Vec<String>>,
    /// False once the receiver answered 410 Gone: nothing is sent to it any more.
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    /// After a rotation, until when the previous secret still signs (beside the new one).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// The signing secret, shown this once: store it now.
    #[schema(example = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")]
    pub secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointList {
    pub data: Vec<Endpoint>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageSent {
    /// The `webhook-id` of the message.
    #[schema(example = "msg_2KWPBgLlAfxdpx2AI54pPJ85")]
    pub message_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct Redelivered {
    pub message_id: String,
    /// Deliveries queued again (one per endpoint the message went to).
    pub deliveries: u64,
}

/// One attempt of the delivery log.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Attempt {
    /// The `webhook-id` sent.
    pub message_id: String,
    #[schema(example = "job.succeeded")]
    pub event_type: String,
    /// 1 for the first attempt of the message to this endpoint.
    pub attempt: i32,
    /// Made by a redelivery asked for by hand.
    pub manual: bool,
    pub attempted_at: DateTime<Utc>,
    /// The receiver's HTTP status; null when it did not answer.
    pub status_code: Option<i32>,
    /// Why the attempt failed; null when delivered.
    pub error: Option<String>,
    pub duration_ms: i32,
    /// Where the delivery stands now: `pending` (retrying), `delivered` or `failed`.
    #[schema(example = "delivered")]
    pub delivery_state: String,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptList {
    /// Newest first.
    pub data: Vec<Attempt>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Attempts to return (default 50, at most 500).
    pub limit: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RedeliverQuery {
    /// Only to this endpoint; by default to every endpoint the message went to.
    pub endpoint_id: Option<Uuid>,
}

/// The columns of [`Endpoint`], as a literal so queries stay static strings.
macro_rules! columns {
    () => {
        "id, url, description, events, enabled, created_at,
         CASE WHEN previous_expires_at > now() THEN previous_expires_at END AS previous_secret_expires_at"
    };
}

fn invalid_url(error: address::UrlError) -> ApiError {
    ApiError::bad_request("invalid_webhook_url", error.to_string())
}

/// The event types, checked and deduplicated; None for all.
fn checked_events(events: Option<Vec<String>>) -> ApiResult<Option<Vec<String>>> {
    let Some(mut events) = events else { return Ok(None) };
    if events.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_events",
            "events must name at least one event type, or be omitted for all",
        ));
    }
    if let Some(unknown) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
        return Err(ApiError::bad_request(
            "invalid_events",
            format!("unknown event type {unknown:?}; expected one of {}", EVENT_TYPES.join(", ")),
        ));
    }
    events.sort();
    events.dedup();
    Ok(Some(events))
}

/// Lists the organisation's endpoints (secrets are never shown again).
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = EndpointList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_endpoints(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<EndpointList>> {
    auth.require(Scope::WebhooksManage)?;
    let data =
        sqlx::query_as(concat!("SELECT ", columns!(), " FROM webhook_endpoints WHERE org_id = $1 ORDER BY created_at"))
            .bind(auth.org_id)
            .fetch_all(&state.db)
            .await?;
    Ok(Json(EndpointList { data }))
}

/// Creates an endpoint. The URL must be `https://` and resolve to public addresses only
/// (`invalid_webhook_url`). Its signing secret is in this response only.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhooks", security(("bearer" = [])), request_body = CreateEndpoint,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key")),
    responses((status = 201, body = EndpointWithSecret), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn create_endpoint(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CreateEndpoint>,
) -> ApiResult<(StatusCode, Json<EndpointWithSecret>)> {
    auth.require(Scope::WebhooksManage)?;
    let allow_loopback = state.config.webhooks_allow_loopback;
    let url = address::check_url(body.url.trim(), allow_loopback).map_err(invalid_url)?;
    address::resolve(&url, allow_loopback).await.map_err(invalid_url)?;
    let events = checked_events(body.events)?;
    let description = body.description.unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::bad_request(
            "invalid_description",
            format!("a description is at most {MAX_DESCRIPTION} characters"),
        ));
    }
    let secret = sign::new_secret();
    let mut tx = state.db.begin().await?;
    // One at a time per organisation, so the limit holds under concurrent creations.
    sqlx::query("SELECT id FROM orgs WHERE id = $1 FOR UPDATE").bind(auth.org_id).execute(&mut *tx).await?;
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM webhook_endpoints WHERE org_id = $1")
        .bind(auth.org_id)
        .fetch_one(&mut *tx)
        .await?;
    if count >= MAX_ENDPOINTS {
        return Err(ApiError::conflict(
            "too_many_endpoints",
            format!("an organisation has at most {MAX_ENDPOINTS} webhook endpoints"),
        ));
    }
    let endpoint: Endpoint = sqlx::query_as(concat!(
        "INSERT INTO webhook_endpoints (id, org_id, url, description, events, secret) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
        columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(auth.org_id)
    .bind(url.as_str())
    .bind(description.trim())
    .bind(&events)
    .bind(&secret)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(endpoint_id = %endpoint.id, org_id = %auth.org_id, "webhook endpoint created");
    Ok((StatusCode::CREATED, Json(EndpointWithSecret { endpoint, secret })))
}

/// One endpoint (without its secret).
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Endpoint), (status = 404, body = ErrorBody)))]
async fn get_endpoint(State(state): State<AppState>, auth: Auth, Path(id): Path<Uuid>) -> ApiResult<Json<Endpoint>> {
    auth.require(Scope::WebhooksManage)?;
    let endpoint: Option<Endpoint> =
        sqlx::query_as(concat!("SELECT ", columns!(), " FROM webhook_endpoints WHERE id = $1 AND org_id = $2"))
            .bind(id)
            .bind(auth.org_id)
            .fetch_optional(&state.db)
            .await?;
    endpoint.map(Json).ok_or(ApiError::NotFound { what: "webhook endpoint" })
}

/// Deletes an endpoint at once, with its pending deliveries and its log.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Endpoint), (status = 404, body = ErrorBody)))]
async fn delete_endpoint(State(state): State<AppState>, auth: Auth, Path(id): Path<Uuid>) -> ApiResult<Json<Endpoint>> {
    auth.require(Scope::WebhooksManage)?;
    let endpoint: Option<Endpoint> =
        sqlx::query_as(concat!("DELETE FROM webhook_endpoints WHERE id = $1 AND org_id = $2 RETURNING ", columns!()))
            .bind(id)
            .bind(auth.org_id)
            .fetch_optional(&state.db)
            .await?;
    let endpoint = endpoint.ok_or(ApiError::NotFound { what: "webhook endpoint" })?;
    tracing::info!(endpoint_id = %id, org_id = %auth.org_id, "webhook endpoint deleted");
    Ok(Json(endpoint))
}

/// Draws a new signing secret, shown in this response only. The previous one keeps signing
/// beside it for 24 hours (both signatures are sent), so receivers switch without a gap.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = EndpointWithSecret), (status = 404, body = ErrorBody)))]
async fn rotate_secret(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<EndpointWithSecret>> {
    auth.require(Scope::WebhooksManage)?;
    let secret = sign::new_secret();
    let endpoint: Option<Endpoint> = sqlx::query_as(concat!(
        "UPDATE webhook_endpoints SET previous_secret = secret, secret = $3,
             previous_expires_at = now() + make_interval(hours => $4)
         WHERE id = $1 AND org_id = $2 RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(auth.org_id)
    .bind(&secret)
    .bind(ROTATION_OVERLAP_HOURS)
    .fetch_optional(&state.db)
    .await?;
    let endpoint = endpoint.ok_or(ApiError::NotFound { what: "webhook endpoint" })?;
    tracing::info!(endpoint_id = %id, org_id = %auth.org_id, "webhook secret rotated");
    Ok(Json(EndpointWithSecret { endpoint, secret }))
}

/// Sends a `webhook.test` event to this endpoint (whatever its subscriptions), through the same
/// outbox, signatures and retries as every event.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/test", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 202, body = MessageSent), (status = 404, body = ErrorBody)))]
async fn send_test(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<Uuid>,
) -> ApiResult<(StatusCode, Json<MessageSent>)> {
    auth.require(Scope::WebhooksManage)?;
    let mut tx = state.db.begin().await?;
    let data = json!({ "endpoint_id": id, "message": "a test event from Kiln" });
    let message_id = webhooks::enqueue_test(&mut tx, auth.org_id, id, &data)
        .await?
        .ok_or(ApiError::NotFound { what: "webhook endpoint" })?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(MessageSent { message_id })))
}

/// The delivery log: every attempt to this endpoint, newest first, with its status code, error,
/// duration and message id.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path), LogQuery),
    responses((status = 200, body = AttemptList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_deliveries(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<Uuid>,
    Query(query): Query<LogQuery>,
) -> ApiResult<Json<AttemptList>> {
    auth.require(Scope::WebhooksManage)?;
    let limit = query.limit.unwrap_or(DEFAULT_LOG_PAGE);
    if !(1..=MAX_LOG_PAGE).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", format!("limit is 1 to {MAX_LOG_PAGE}")));
    }
    let exists: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM webhook_endpoints WHERE id = $1 AND org_id = $2")
        .bind(id)
        .bind(auth.org_id)
        .fetch_optional(&state.db)
        .await?;
    if exists.is_none() {
        return Err(ApiError::NotFound { what: "webhook endpoint" });
    }
    let data = sqlx::query_as(
        "SELECT a.message_id, m.event_type, a.attempt, a.manual, a.at AS attempted_at, a.status_code, a.error,
                a.duration_ms, d.state AS delivery_state
         FROM webhook_attempts a
         JOIN webhook_deliveries d ON d.id = a.delivery_id
         JOIN webhook_messages m ON m.id = a.message_id
         WHERE a.endpoint_id = $1 AND a.org_id = $2
         ORDER BY a.id DESC LIMIT $3",
    )
    .bind(id)
    .bind(auth.org_id)
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(AttemptList { data }))
}

/// Sends a message again, now, with the same `webhook-id`: one more attempt to each endpoint it
/// went to (or to `endpoint_id` only), logged as manual.
#[utoipa::path(post, path = "/v1/webhook-messages/{msg_id}/redeliver", tag = "webhooks", security(("bearer" = [])),
    params(("msg_id" = String, Path), RedeliverQuery),
    responses((status = 202, body = Redelivered), (status = 404, body = ErrorBody)))]
async fn redeliver(
    State(state): State<AppState>,
    auth: Auth,
    Path(message_id): Path<String>,
    Query(query): Query<RedeliverQuery>,
) -> ApiResult<(StatusCode, Json<Redelivered>)> {
    auth.require(Scope::WebhooksManage)?;
    let mut tx = state.db.begin().await?;
    let deliveries = webhooks::redeliver(&mut tx, auth.org_id, &message_id, query.endpoint_id).await?;
    if deliveries == 0 {
        return Err(ApiError::NotFound { what: "webhook message" });
    }
    tx.commit().await?;
    tracing::info!(message_id, org_id = %auth.org_id, deliveries, "webhook message redelivered");
    Ok((StatusCode::ACCEPTED, Json(Redelivered { message_id, deliveries })))
}
