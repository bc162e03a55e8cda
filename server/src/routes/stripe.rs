//! `POST /v1/stripe/webhook`: Stripe's events. The `Stripe-Signature` header is checked over the
//! raw body before it is parsed (HMAC-SHA256, five minutes' tolerance, any of several `v1`
//! values and configured secrets during a rotation, compared in constant time); a refusal is 400
//! and changes nothing. Each event is then applied once (`billing::events`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::billing::events::{self, Event, Outcome};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::openapi::ErrorBody;
use crate::payments::signature;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(webhook))
}

#[derive(Serialize, ToSchema)]
pub struct Received {
    pub received: bool,
    /// `applied`, `duplicate` (seen before: nothing changed) or `ignored` (not acted on).
    #[schema(example = "applied")]
    pub outcome: &'static str,
}

/// Receives Stripe's events (Checkout Sessions paid, invoices paid, charges refunded). Only
/// Stripe can call it: the body must carry Stripe's signature with the endpoint's secret.
#[utoipa::path(post, path = "/v1/stripe/webhook", tag = "credits",
    params(("Stripe-Signature" = String, Header, description = "t=…,v1=… as Stripe signs")),
    request_body(content = Object, description = "A Stripe event", content_type = "application/json"),
    responses((status = 200, body = Received), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Json<Received>> {
    let secrets = &state.config.billing.stripe_webhook_secrets;
    if secrets.is_empty() {
        return Err(ApiError::Unavailable { message: "Stripe webhooks are not configured on this server".into() });
    }
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_request("invalid_signature", "the Stripe-Signature header is missing"))?;
    signature::verify(header, &body, secrets, chrono::Utc::now().timestamp())
        .map_err(|e| ApiError::bad_request("invalid_signature", e.to_string()))?;
    let event: Event = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_event", format!("the body is not a Stripe event: {e}")))?;
    let outcome = events::apply(&state.db, &state.config.billing.prices, &event).await?;
    let outcome = match outcome {
        Outcome::Applied => "applied",
        Outcome::Duplicate => "duplicate",
        Outcome::Ignored => "ignored",
    };
    Ok(Json(Received { received: true, outcome }))
}
