//! `Idempotency-Key` with Stripe's semantics, for every authenticated `POST` under `/v1/` except
//! `/v1/auth/*` (signup, login and refresh create sessions, not resources, and carry no org yet).
//!
//! The first request with a key claims it for the caller's organisation (a row marked running,
//! with a hash of method, path and body) and runs; its response (status, `Content-Type`, body) is
//! kept for 24 hours and replayed byte for byte, with `Idempotent-Replayed: true`, to every repeat
//! of the same request. The same key with a different request is refused (422
//! `idempotency_key_reused`), a repeat while the first still runs too (409
//! `idempotency_in_progress`). A 5xx is not kept (the key is freed, so a retry runs again); a 4xx
//! is, as Stripe does. Requests without the header, or whose credentials do not check out, pass
//! through untouched (the handler refuses the latter itself).
//!
//! The handler runs in its own task, so a client that hangs up mid-request cannot cancel it
//! half-way: its retry gets the stored response.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tracing::Instrument;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, Ref, RefOr, Required};
use uuid::Uuid;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The request header.
const HEADER: &str = "idempotency-key";

/// Set on a replayed response.
const REPLAYED: &str = "idempotent-replayed";

/// Longest key, as Stripe allows (a UUID fits many times over).
const MAX_KEY_LENGTH: usize = 255;

/// How long a key and its response are kept: Stripe's 24 hours, long enough for a client's
/// retries to span an outage.
const RETENTION_SECONDS: f64 = 24.0 * 3600.0;

/// A key still marked running after this long belonged to a process that died mid-request (API
/// handlers answer in well under a second); a repeat of the same request may then take it over
/// rather than be refused until the key expires.
const ABANDONED_SECONDS: f64 = 120.0;

/// Largest response kept. Responses to POSTs are small JSON objects; this is the request body
/// limit, far above any of them.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Tries at claiming a key whose row vanishes between looking and reading (a 5xx freeing it).
const CLAIM_ATTEMPTS: usize = 3;

/// How often expired keys are deleted.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(3600);

/// The middleware.
pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match handle(state, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn applies(request: &Request) -> bool {
    request.method() == Method::POST && applies_to_path(request.uri().path())
}

fn applies_to_path(path: &str) -> bool {
    path.starts_with("/v1/") && !path.starts_with("/v1/auth/")
}

/// Documents `Idempotency-Key` and its refusals (409, 422) on every authenticated POST it
/// applies to, so the OpenAPI document says what the middleware does.
pub fn document(openapi: &mut utoipa::openapi::OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let Some(operation) = item.post.as_mut().filter(|_| applies_to_path(path)) else { continue };
        if operation.security.as_ref().is_none_or(Vec::is_empty) {
            continue;
        }
        let parameters = operation.parameters.get_or_insert_with(Vec::new);
        let documented = parameters.iter().any(|p| matches!(p, RefOr::T(p) if p.name.eq_ignore_ascii_case(HEADER)));
        if !documented {
            parameters.push(RefOr::T(header_parameter()));
        }
        for (status, description) in [
            ("409", "A request with this Idempotency-Key is still running (`idempotency_in_progress`)"),
            ("422", "This Idempotency-Key was used with a different request (`idempotency_key_reused`)"),
        ] {
            operation.responses.responses.entry(status.to_string()).or_insert_with(|| {
                RefOr::T(
                    utoipa::openapi::Response::builder()
                        .description(description)
                        .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
                        .build(),
                )
            });
        }
    }
}

fn header_parameter() -> Parameter {
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_KEY_LENGTH))
        .pattern(Some("^[ -~]+$"));
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some("Replays the first response to this key for 24 hours (header `Idempotent-Replayed: true`)"))
        .schema(Some(schema))
        .build()
}

async fn handle(state: AppState, request: Request, next: Next) -> ApiResult<Response> {
    if !applies(&request) {
        return Ok(next.run(request).await);
    }
    let Some(key) = request.headers().get(HEADER) else {
        return Ok(next.run(request).await);
    };
    let key = parse_key(key)?;
    let (mut parts, body) = request.into_parts();
    let Ok(auth) = Auth::from_request_parts(&mut parts, &state).await else {
        return Ok(next.run(Request::from_parts(parts, body)).await);
    };
    // Buffered under the same limits the handler's extractor applies (the route's, and the body
    // limit layer's outside), so a body too large is refused here exactly as it would be there.
    let mut buffered = Request::new(body);
    *buffered.extensions_mut() = parts.extensions.clone();
    let body = Bytes::from_request(buffered, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large("body_too_large", "the request body is larger than the API accepts")
        } else {
            ApiError::bad_request("invalid_body", "the request body could not be read")
        }
    })?;
    // The credential is part of the request: another key of the same organisation presenting the
    // same Idempotency-Key gets 422, never the first caller's response (whose scopes it may lack).
    let principal = format!("{:?}", auth.principal);
    let path = parts.uri.path_and_query().map_or("", |p| p.as_str());
    let hash = request_hash(&principal, &parts.method, path, &body);
    match claim(&state.db, auth.org_id, &key, &hash).await? {
        Claim::Run => Ok(run(state.db, auth.org_id, key, Request::from_parts(parts, Body::from(body)), next).await),
        Claim::Replay(stored) => replay(stored),
        Claim::InProgress => Err(ApiError::conflict(
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still being handled; retry shortly",
        )),
        Claim::Reused => Err(ApiError::Unprocessable {
            code: "idempotency_key_reused",
            message: "this Idempotency-Key was used with a different request (method, path or body)".into(),
        }),
    }
}

/// The key, if it is 1 to 255 printable ASCII characters.
fn parse_key(value: &HeaderValue) -> ApiResult<String> {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KEY_LENGTH || !bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"),
        ));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// SHA-256 of the caller, method, path with query, and body, with separators none of the first
/// three contains.
fn request_hash(principal: &str, method: &Method, path_and_query: &str, body: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(principal);
    hasher.update([0]);
    hasher.update(method.as_str());
    hasher.update([0]);
    hasher.update(path_and_query);
    hasher.update([0]);
    hasher.update(body);
    hasher.finalize().to_vec()
}

#[derive(sqlx::FromRow)]
struct Stored {
    request_hash: Vec<u8>,
    status: Option<i16>,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
}

enum Claim {
    /// The key is this request's: run it.
    Run,
    Replay(Stored),
    InProgress,
    Reused,
}

/// Claims the key for this request, or says what became of the request that claimed it.
async fn claim(db: &PgPool, org_id: Uuid, key: &str, hash: &[u8]) -> ApiResult<Claim> {
    for _ in 0..CLAIM_ATTEMPTS {
        // A new key, an expired one, or the same request abandoned by a dead process: ours.
        let claimed: Option<(bool,)> = sqlx::query_as(
            "INSERT INTO idempotency_keys (org_id, key, request_hash, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))
             ON CONFLICT (org_id, key) DO UPDATE
                SET request_hash = EXCLUDED.request_hash, status = NULL, content_type = NULL, body = NULL,
                    created_at = now(), expires_at = EXCLUDED.expires_at
              WHERE idempotency_keys.expires_at <= now()
                 OR (idempotency_keys.status IS NULL AND idempotency_keys.request_hash = EXCLUDED.request_hash
                     AND idempotency_keys.created_at < now() - make_interval(secs => $5))
             RETURNING true",
        )
        .bind(org_id)
        .bind(key)
        .bind(hash)
        .bind(RETENTION_SECONDS)
        .bind(ABANDONED_SECONDS)
        .fetch_optional(db)
        .await?;
        if claimed.is_some() {
            return Ok(Claim::Run);
        }
        let stored: Option<Stored> = sqlx::query_as(
            "SELECT request_hash, status, content_type, body FROM idempotency_keys WHERE org_id = $1 AND key = $2",
        )
        .bind(org_id)
        .bind(key)
        .fetch_optional(db)
        .await?;
        match stored {
            None => continue,
            Some(stored) if stored.request_hash != hash => return Ok(Claim::Reused),
            Some(Stored { status: None, .. }) => return Ok(Claim::InProgress),
            Some(stored) => return Ok(Claim::Replay(stored)),
        }
    }
    Ok(Claim::InProgress)
}

/// Runs the handler in its own task and keeps its response, or frees the key after a 5xx.
async fn run(db: PgPool, org_id: Uuid, key: String, request: Request, next: Next) -> Response {
    let task = {
        let (db, key) = (db.clone(), key.clone());
        let work = async move { keep(&db, org_id, &key, next.run(request).await).await };
        // In the request's span, so the handler's logs keep the request id.
        tokio::spawn(work.instrument(tracing::Span::current()))
    };
    match task.await {
        Ok(response) => response,
        Err(error) => {
            release(&db, org_id, &key).await;
            ApiError::internal(anyhow::anyhow!("handler task failed: {error}")).into_response()
        }
    }
}

/// Stores a 2xx–4xx response under the key and returns it; frees the key for a 5xx.
async fn keep(db: &PgPool, org_id: Uuid, key: &str, response: Response) -> Response {
    if response.status().is_server_error() {
        release(db, org_id, key).await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, MAX_RESPONSE_BYTES).await {
        Ok(body) => body,
        Err(error) => {
            release(db, org_id, key).await;
            return ApiError::internal(anyhow::anyhow!("buffering the response to keep it: {error}")).into_response();
        }
    };
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    // A response that shows a secret once (an API key, a webhook signing secret) is not kept:
    // what is kept is a refusal naming what was created, so a retry learns it without the
    // secret sitting in this table for a day.
    let (status, content_type, kept) = match secret_shown(&body) {
        Some(refusal) => (StatusCode::CONFLICT, Some("application/json"), refusal),
        None => (parts.status, content_type, body.to_vec()),
    };
    let stored = sqlx::query(
        "UPDATE idempotency_keys SET status = $3, content_type = $4, body = $5
         WHERE org_id = $1 AND key = $2 AND status IS NULL",
    )
    .bind(org_id)
    .bind(key)
    .bind(i16::try_from(status.as_u16()).unwrap_or(i16::MAX))
    .bind(content_type)
    .bind(kept)
    .execute(db)
    .await;
    if let Err(error) = stored {
        // The response still goes out; a retry finds the key running until it is abandoned.
        tracing::error!(%error, %org_id, "keeping an idempotent response failed");
    }
    Response::from_parts(parts, Body::from(body))
}

/// For a response carrying a secret shown once (`key`: `kiln_…`, `secret`: `whsec_…`), the
/// refusal kept in its place (409 `idempotency_secret_shown`, naming the resource's id).
fn secret_shown(body: &[u8]) -> Option<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let shows =
        |field: &str, prefix: &str| value.get(field).and_then(|v| v.as_str()).is_some_and(|v| v.starts_with(prefix));
    if !(shows("key", crate::auth::KEY_PREFIX) || shows("secret", "whsec_")) {
        return None;
    }
    let id = value.get("id").and_then(|v| v.as_str()).unwrap_or("?");
    let message = format!(
        "the first request with this Idempotency-Key created {id} and showed its secret, which is never kept: \
         use that secret, or revoke {id} and create another"
    );
    serde_json::to_vec(&serde_json::json!({"error": {"code": "idempotency_secret_shown", "message": message}})).ok()
}

/// Frees a key whose request failed on our side, so a retry runs again.
async fn release(db: &PgPool, org_id: Uuid, key: &str) {
    let released = sqlx::query("DELETE FROM idempotency_keys WHERE org_id = $1 AND key = $2 AND status IS NULL")
        .bind(org_id)
        .bind(key)
        .execute(db)
        .await;
    if let Err(error) = released {
        tracing::error!(%error, %org_id, "freeing an idempotency key failed; it frees itself when abandoned");
    }
}

/// The kept response, byte for byte, marked as a replay.
fn replay(stored: Stored) -> ApiResult<Response> {
    let status =
        stored.status.and_then(|s| u16::try_from(s).ok()).and_then(|s| StatusCode::from_u16(s).ok()).ok_or_else(
            || ApiError::internal(anyhow::anyhow!("kept idempotent response has status {:?}", stored.status)),
        )?;
    let mut response = Response::new(Body::from(stored.body.unwrap_or_default()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(content_type) = stored.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    Ok(response)
}

/// Deletes expired keys; returns how many.
pub async fn purge_expired(db: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= now()").execute(db).await?.rows_affected())
}

/// The loop `tasks::spawn` runs: purges expired keys every hour. (An expired key is already
/// treated as new when it is used again; this only frees the space.)
pub async fn purge_loop(db: PgPool) {
    let mut interval = tokio::time::interval(CLEANUP_INTERVAL);
    loop {
        interval.tick().await;
        match purge_expired(&db).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired idempotency keys deleted"),
            Err(error) => tracing::warn!(%error, "deleting expired idempotency keys failed; trying again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_and_bounded() {
        assert_eq!(parse_key(&HeaderValue::from_static("order-42 retry")).unwrap(), "order-42 retry");
        assert!(parse_key(&HeaderValue::from_str(&"k".repeat(255)).unwrap()).is_ok());
        for bad in [String::new(), "k".repeat(256), "tab\there".into()] {
            let value = HeaderValue::from_str(&bad).unwrap();
            assert_eq!(parse_key(&value).unwrap_err().code(), "invalid_idempotency_key", "{bad:?}");
        }
        let non_ascii = HeaderValue::from_bytes("clé".as_bytes()).unwrap();
        assert!(parse_key(&non_ascii).is_err());
    }

    #[test]
    fn the_hash_tells_method_path_and_body_apart() {
        let base = request_hash("k", &Method::POST, "/v1/jobs", b"{}");
        assert_eq!(base, request_hash("k", &Method::POST, "/v1/jobs", b"{}"));
        assert_ne!(base, request_hash("other", &Method::POST, "/v1/jobs", b"{}"));
        assert_ne!(base, request_hash("k", &Method::POST, "/v1/jobs", b"{ }"));
        assert_ne!(base, request_hash("k", &Method::POST, "/v1/batches", b"{}"));
        assert_ne!(base, request_hash("k", &Method::PUT, "/v1/jobs", b"{}"));
        assert_ne!(request_hash("k", &Method::POST, "/v1/a", b"b"), request_hash("k", &Method::POST, "/v1/", b"ab"));
    }
}
