//! Who is calling: the `Auth` extractor takes `Authorization: Bearer …` with either an access
//! token (JWT) or an API key (`kiln_live_…`, `kiln_test_…`), and yields the organisation every
//! query is then scoped by, with the caller's scopes and mode.

pub mod jwt;
pub mod password;
pub mod scope;
pub mod secret;
pub mod tokens;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use uuid::Uuid;

pub use scope::{Role, Scope};

use crate::error::ApiError;
use crate::state::AppState;

/// API keys start with this, then the mode and `_`.
pub const KEY_PREFIX: &str = "kiln_";

/// Live keys run and bill jobs; test keys run at `preview` at most and are never charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Live,
    Test,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Test => "test",
        }
    }

    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "live" => Some(Mode::Live),
            "test" => Some(Mode::Test),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Principal {
    User(Uuid),
    ApiKey(Uuid),
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Auth {
    pub org_id: Uuid,
    pub principal: Principal,
    pub scopes: Vec<Scope>,
    pub mode: Mode,
}

impl Auth {
    /// Refuses with 403 `missing_scope` unless the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden("missing_scope", format!("this credential lacks the scope {}", scope.as_str())))
        }
    }

    /// The user behind the call, refusing API keys (for routes about a person, like consent).
    pub fn user(&self) -> Result<Uuid, ApiError> {
        match self.principal {
            Principal::User(id) => Ok(id),
            Principal::ApiKey(_) => Err(ApiError::forbidden("user_required", "this route needs a user's token, not an API key")),
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("unauthorized", "missing Authorization: Bearer credentials"))?;
    let text = header.to_str().map_err(|_| ApiError::unauthorized("unauthorized", "malformed Authorization header"))?;
    match text.split_once(' ') {
        Some((scheme, credential)) if scheme.eq_ignore_ascii_case("bearer") && !credential.trim().is_empty() => {
            Ok(credential.trim())
        }
        _ => Err(ApiError::unauthorized("unauthorized", "the Authorization header must be 'Bearer <token or API key>'")),
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let credential = bearer(parts)?;
        let auth = if credential.starts_with(KEY_PREFIX) {
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
}

async fn api_key(state: &AppState, key: &str) -> Result<Auth, ApiError> {
    // Looked up by hash (an index probe on a SHA-256 of a 256-bit secret); marking it used in
    // the same statement costs one round trip.
    let row: Option<KeyRow> = sqlx::query_as(
        "UPDATE api_keys SET last_used_at = now()
         WHERE secret_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
         RETURNING id, org_id, scopes, mode",
    )
    .bind(secret::hash(key))
    .fetch_optional(&state.db)
    .await?;
    let row = row.ok_or_else(|| ApiError::unauthorized("invalid_api_key", "the API key is not valid (unknown, revoked or expired)"))?;
    let mode = Mode::parse(&row.mode).ok_or_else(|| ApiError::internal(anyhow::anyhow!("api key {} has mode {}", row.id, row.mode)))?;
    Ok(Auth { org_id: row.org_id, principal: Principal::ApiKey(row.id), scopes: Scope::from_strings(&row.scopes), mode })
}
