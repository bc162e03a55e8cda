//! Webhooks to customers, per the Standard Webhooks spec: an outbox written in the same
//! transaction as the change it reports ([`enqueue`]: one message, one delivery per subscribed
//! endpoint), delivered by the dispatcher loop ([`deliver`]) with retries over more than a day,
//! each attempt logged; signatures in [`sign`], the address rules in [`address`].
//!
//! Events: `job.succeeded`, `job.failed`, `job.canceled`, `job.expired` (data: the job, with its
//! `batch_id`), `batch.completed` (data: the batch) and `webhook.test`. Every message is
//! `{"type", "timestamp", "data"}`, sent with the same `webhook-id` on every attempt.

pub mod address;
pub mod deliver;
pub mod sign;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::secret::random_bytes;
use crate::error::ApiError;

/// Every event type an endpoint can subscribe to.
pub const EVENT_TYPES: [&str; 6] =
    ["job.succeeded", "job.failed", "job.canceled", "job.expired", "batch.completed", TEST_EVENT];

/// What `POST /v1/webhook-endpoints/{id}/test` sends (to that endpoint only).
pub const TEST_EVENT: &str = "webhook.test";

/// The PostgreSQL channel that wakes the dispatchers; `NOTIFY` is sent at commit, so a
/// dispatcher never looks for a message before it is visible.
const NOTIFY_CHANNEL: &str = "kiln_webhooks";

/// Random bytes in a message id: 144 bits, unguessable and without `.` (the spec forbids it in
/// ids, which are part of the signed content).
const MESSAGE_ID_BYTES: usize = 18;

/// Records `event_type` with `data` for every enabled endpoint of `org_id` subscribed to it, in
/// the caller's transaction, so the event exists exactly when the change it reports is committed.
pub async fn enqueue(db: &mut PgConnection, org_id: Uuid, event_type: &str, data: &Value) -> Result<(), ApiError> {
    insert(db, org_id, event_type, data, None).await.map(|_| ())
}

/// Records a `webhook.test` message for the one endpoint `endpoint_id` (whatever its
/// subscriptions); returns the message id, or None when the endpoint is not the organisation's.
pub async fn enqueue_test(
    db: &mut PgConnection,
    org_id: Uuid,
    endpoint_id: Uuid,
    data: &Value,
) -> Result<Option<String>, ApiError> {
    insert(db, org_id, TEST_EVENT, data, Some(endpoint_id)).await
}

/// Inserts the message and its deliveries (none, and no message, when no endpoint takes it).
async fn insert(
    db: &mut PgConnection,
    org_id: Uuid,
    event_type: &str,
    data: &Value,
    only_endpoint: Option<Uuid>,
) -> Result<Option<String>, ApiError> {
    let message_id = format!("msg_{}", URL_SAFE_NO_PAD.encode(random_bytes::<MESSAGE_ID_BYTES>()));
    let timestamp = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let body = serde_json::to_string(&json!({ "type": event_type, "timestamp": timestamp, "data": data }))
        .map_err(ApiError::internal)?;
    let inserted = sqlx::query(
        "WITH targets AS (
             SELECT id FROM webhook_endpoints
             WHERE org_id = $2 AND CASE WHEN $5::uuid IS NULL THEN enabled AND (events IS NULL OR $3 = ANY (events))
                                        ELSE id = $5 END),
         message AS (
             INSERT INTO webhook_messages (id, org_id, event_type, body)
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM targets) RETURNING id)
         INSERT INTO webhook_deliveries (id, org_id, message_id, endpoint_id, state, max_attempts)
         SELECT gen_random_uuid(), $2, message.id, targets.id, 'pending', $6 FROM message, targets",
    )
    .bind(&message_id)
    .bind(org_id)
    .bind(event_type)
    .bind(&body)
    .bind(only_endpoint)
    .bind(deliver::MAX_ATTEMPTS)
    .execute(&mut *db)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    notify(db).await?;
    tracing::debug!(%org_id, event_type, message_id, endpoints = inserted, "webhook enqueued");
    Ok(Some(message_id))
}

/// Wakes the dispatchers when the caller's transaction commits.
async fn notify(db: &mut PgConnection) -> Result<(), ApiError> {
    sqlx::query("SELECT pg_notify($1, '')").bind(NOTIFY_CHANNEL).execute(db).await?;
    Ok(())
}

/// Sends message `message_id` of `org_id` again, now, with the same `webhook-id`, to every
/// endpoint it went to (or only `endpoint_id`): one more attempt for a delivery that ended
/// (delivered or failed), an immediate one for a delivery still retrying. Returns how many
/// deliveries that touched: 0 when the organisation has no such message.
pub async fn redeliver(
    db: &mut PgConnection,
    org_id: Uuid,
    message_id: &str,
    endpoint_id: Option<Uuid>,
) -> Result<u64, ApiError> {
    let touched = sqlx::query(
        "UPDATE webhook_deliveries
         SET max_attempts = CASE WHEN state = 'pending' THEN max_attempts ELSE attempts + 1 END,
             state = 'pending', manual = true, next_attempt_at = now()
         WHERE org_id = $1 AND message_id = $2 AND ($3::uuid IS NULL OR endpoint_id = $3)",
    )
    .bind(org_id)
    .bind(message_id)
    .bind(endpoint_id)
    .execute(&mut *db)
    .await?
    .rows_affected();
    if touched > 0 {
        notify(db).await?;
    }
    Ok(touched)
}
