//! API keys: `kiln_live_…` or `kiln_test_…`, stored as a SHA-256 hash, shown once at creation,
//! named, scoped, optionally expiring, revocable, with their last use recorded.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Auth, KEY_PREFIX, Mode, Principal, Scope, secret};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::state::AppState;
pub use kiln_api::keys::{ApiKey, CreateKey, CreatedKey, KeyList};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_keys, create_key)).routes(routes!(revoke_key))
}

/// Characters of the key kept in the clear for listings: the prefix and 4 of the secret, too
/// few to help guess the rest.
const SHOWN_SECRET_CHARS: usize = 4;

/// Longest key name.
const MAX_NAME_LENGTH: usize = 100;

/// An `api_keys` row as the queries below select it ([`columns!`]), before it becomes the API's
/// [`ApiKey`].
#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    name: String,
    prefix: String,
    scopes: Vec<String>,
    mode: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl KeyRow {
    /// The key as the API shows it; a mode the schema's CHECK does not allow is a bug, not input.
    fn into_key(self) -> ApiResult<ApiKey> {
        let mode = Mode::parse(&self.mode)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("api key {} has mode {}", self.id, self.mode)))?;
        Ok(ApiKey {
            id: self.id,
            name: self.name,
            prefix: self.prefix,
            scopes: Scope::from_strings(&self.scopes),
            mode,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// The columns of [`KeyRow`], as a literal so queries stay static strings (sqlx refuses
/// formatted SQL).
macro_rules! columns {
    () => {
        "id, name, prefix, scopes, mode, created_at, expires_at, last_used_at, revoked_at"
    };
}

/// Lists the organisation's keys, newest first (secrets are never shown again).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", security(("bearer" = [])),
    responses((status = 200, body = KeyList), (status = 401, body = crate::openapi::ErrorBody), (status = 403, body = crate::openapi::ErrorBody)))]
async fn list_keys(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<KeyList>> {
    auth.require(Scope::KeysManage)?;
    let rows: Vec<KeyRow> =
        sqlx::query_as(concat!("SELECT ", columns!(), " FROM api_keys WHERE org_id = $1 ORDER BY created_at DESC"))
            .bind(auth.org_id)
            .fetch_all(&state.db)
            .await?;
    let data = rows.into_iter().map(KeyRow::into_key).collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(KeyList { data }))
}

/// Creates a key. Its secret is in this response only.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", security(("bearer" = [])), request_body = CreateKey,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key")),
    responses((status = 201, body = CreatedKey), (status = 400, body = crate::openapi::ErrorBody), (status = 403, body = crate::openapi::ErrorBody)))]
async fn create_key(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CreateKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    auth.require(Scope::KeysManage)?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LENGTH {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("a key's name is 1 to {MAX_NAME_LENGTH} characters"),
        ));
    }
    if body.scopes.is_empty() {
        return Err(ApiError::bad_request("invalid_scopes", "a key needs at least one scope"));
    }
    // A key never holds more than its creator: a key made by a key is bounded by that key.
    if let Some(scope) = body.scopes.iter().find(|s| !auth.scopes.contains(s)) {
        return Err(ApiError::forbidden(
            "missing_scope",
            format!("cannot grant {}, which this credential lacks", scope.as_str()),
        ));
    }
    if auth.mode == Mode::Test && body.mode == Mode::Live {
        return Err(ApiError::forbidden("test_mode", "a test key cannot create live keys"));
    }
    if body.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ApiError::bad_request("invalid_expiry", "expires_at is in the past"));
    }
    let mut scopes = body.scopes.clone();
    scopes.sort();
    scopes.dedup();
    let key = secret::token(&format!("{KEY_PREFIX}{}_", body.mode.as_str()));
    let prefix: String =
        key.chars().take(format!("{KEY_PREFIX}{}_", body.mode.as_str()).len() + SHOWN_SECRET_CHARS).collect();
    let created_by = match auth.principal {
        Principal::User(id) => Some(id),
        Principal::ApiKey(_) | Principal::Claim(_) => None,
    };
    let row: KeyRow = sqlx::query_as(concat!(
        "INSERT INTO api_keys (id, org_id, name, prefix, secret_hash, scopes, mode, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
        columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(auth.org_id)
    .bind(name)
    .bind(&prefix)
    .bind(secret::hash(&key))
    .bind(Scope::to_strings(&scopes))
    .bind(body.mode.as_str())
    .bind(created_by)
    .bind(body.expires_at)
    .fetch_one(&state.db)
    .await?;
    let api_key = row.into_key()?;
    tracing::info!(key_id = %api_key.id, org_id = %auth.org_id, "api key created");
    Ok((StatusCode::CREATED, Json(CreatedKey { api_key, key })))
}

/// Revokes a key at once. Revoking twice is not an error.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ApiKey), (status = 404, body = crate::openapi::ErrorBody)))]
async fn revoke_key(State(state): State<AppState>, auth: Auth, Path(id): Path<Uuid>) -> ApiResult<Json<ApiKey>> {
    auth.require(Scope::KeysManage)?;
    let row: Option<KeyRow> = sqlx::query_as(concat!(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND org_id = $2 RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(auth.org_id)
    .fetch_optional(&state.db)
    .await?;
    let row = row.ok_or(ApiError::NotFound { what: "api key" })?;
    Ok(Json(row.into_key()?))
}
