//! Request extractors whose rejections are [`ApiError`]s, so a malformed body gets the same
//! JSON error shape and a stable code like every other refusal; and the [`Auth`] extractor,
//! which takes `Authorization: Bearer …` with an access token or an API key.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::auth::{Auth, KEY_PREFIX, Mode, Principal, Scope, jwt, secret};
use crate::billing::studio::{self, CLAIM_PREFIX};
use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body: `invalid_json` for bad syntax or shape, `unsupported_media_type` without
/// `Content-Type: application/json`, `too_large` over the body limit.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::bad_request("unsupported_media_type", "the body must be JSON (Content-Type: application/json)")
        }
        JsonRejection::BytesRejection(_) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::too_large("body_too_large", "the request body is larger than the API accepts")
        }
        other => ApiError::bad_request("invalid_json", other.body_text()),
    }
}

/// Path parameters: `invalid_id` when one does not parse (a malformed UUID, say).
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::bad_request("invalid_id", rejection.body_text())
}

/// Query parameters: `invalid_query` when they do not parse.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rejection.body_text())
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    if !parts.headers.contains_key(AUTHORIZATION) {
        return Err(ApiError::unauthorized("unauthorized", "missing Authorization: Bearer credentials"));
    }
    crate::auth::bearer_token(&parts.headers).ok_or_else(|| {
        ApiError::unauthorized("unauthorized", "the Authorization header must be 'Bearer <token or API key>'")
    })
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let credential = bearer(parts)?;
        let auth = if credential.starts_with(CLAIM_PREFIX) {
            let mut conn = state.db.acquire().await?;
            studio::authenticate(&mut conn, credential).await?
        } else if credential.starts_with(KEY_PREFIX) {
            api_key(state, credential).await?
        } else {
            access_token(state, credential)?
        };
        parts.extensions.insert(auth.clone());
        Ok(auth)
    }
}

fn access_token(state: &AppState, token: &str) -> Result<Auth, ApiError> {
    let now = chrono::Utc::now().timestamp();
    let claims = jwt::decode(token, &state.config.jwt_secret, now).map_err(|error| match error {
        jwt::TokenError::Expired => ApiError::unauthorized("token_expired", "the access token has expired; refresh it"),
        _ => ApiError::unauthorized("invalid_token", "the access token is not valid"),
    })?;
    let scopes = Scope::parse_list(&claims.scope).unwrap_or_default();
    Ok(Auth { org_id: claims.org, principal: Principal::User(claims.sub), scopes, mode: Mode::Live })
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    org_id: Uuid,
    scopes: Vec<String>,
    mode: String,
    used_recently: bool,
}

/// `last_used_at` is kept to this precision: writing it on every request would turn each read
/// into a write and serialise a busy key's requests on its row lock.
const LAST_USED_PRECISION_SECONDS: f64 = 60.0;

async fn api_key(state: &AppState, key: &str) -> Result<Auth, ApiError> {
    // Looked up by hash: an index probe on the SHA-256 of a 256-bit secret.
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT id, org_id, scopes, mode,
                coalesce(last_used_at > now() - make_interval(secs => $2), false) AS used_recently
         FROM api_keys
         WHERE secret_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(secret::hash(key))
    .bind(LAST_USED_PRECISION_SECONDS)
    .fetch_optional(&state.db)
    .await?;
    let row = row.ok_or_else(|| {
        ApiError::unauthorized("invalid_api_key", "the API key is not valid (unknown, revoked or expired)")
    })?;
    let mode = Mode::parse(&row.mode)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("api key {} has mode {}", row.id, row.mode)))?;
    if !row.used_recently {
        sqlx::query("UPDATE api_keys SET last_used_at = now() WHERE id = $1").bind(row.id).execute(&state.db).await?;
    }
    Ok(Auth {
        org_id: row.org_id,
        principal: Principal::ApiKey(row.id),
        scopes: Scope::from_strings(&row.scopes),
        mode,
    })
}
