//! Webhooks to customers (Standard Webhooks): an outbox written in the same transaction as the
//! change it reports, delivered by a background loop with retries. (Being built.)

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ApiError;

/// Records `event_type` with `data` for every endpoint of `org_id` subscribed to it, in the
/// caller's transaction, so the event exists exactly when the change it reports is committed.
pub async fn enqueue(db: &mut PgConnection, org_id: Uuid, event_type: &str, data: &Value) -> Result<(), ApiError> {
    let _ = (db, org_id, event_type, data);
    Ok(())
}
