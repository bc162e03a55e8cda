//! `GET /v1/me`: who is calling. The user and their role for an access token, the key's name and
//! prefix for an API key, the claim for a Studio claim token; always the organisation the
//! credential acts in, its scopes and its mode. Never the credential itself.

use axum::extract::State;
use chrono::{DateTime, Utc};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Auth, Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::openapi::ErrorBody;
use crate::state::AppState;
pub use kiln_api::accounts::{CredentialInfo, Me, Organisation, User};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}

/// Who is calling: the user (for an access token) and their role, the organisation, the
/// credential's kind (an API key by its name and prefix), scopes and mode. Any credential may
/// ask, whatever its scopes.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
async fn me(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Me>> {
    let organisation = organisation(&state, auth.org_id).await?;
    let (user, role, credential) = match auth.principal {
        Principal::User(user_id) => {
            let (user, role) = member(&state, auth.org_id, user_id).await?;
            (Some(user), Some(role), CredentialInfo::AccessToken)
        }
        Principal::ApiKey(key_id) => (None, None, api_key(&state, auth.org_id, key_id).await?),
        Principal::Claim(id) => (None, None, CredentialInfo::StudioClaim { id }),
    };
    Ok(Json(Me { user, role, organisation, scopes: auth.scopes.clone(), mode: auth.mode, credential }))
}

async fn organisation(state: &AppState, org_id: Uuid) -> ApiResult<Organisation> {
    let (name,): (String,) =
        sqlx::query_as("SELECT name FROM orgs WHERE id = $1").bind(org_id).fetch_one(&state.db).await?;
    Ok(Organisation { id: org_id, name })
}

/// The user and their role in the organisation. A token outlives a removed membership by at
/// most its lifetime; such a caller is told to log in again rather than shown a role it lost.
async fn member(state: &AppState, org_id: Uuid, user_id: Uuid) -> ApiResult<(User, Role)> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT u.email, m.role FROM users u JOIN memberships m ON m.user_id = u.id
         WHERE u.id = $1 AND m.org_id = $2",
    )
    .bind(user_id)
    .bind(org_id)
    .fetch_optional(&state.db)
    .await?;
    let (email, role) = row.ok_or_else(|| {
        ApiError::unauthorized(
            "not_a_member",
            "this token's user is no longer a member of its organisation; log in again",
        )
    })?;
    let role = Role::parse(&role).ok_or_else(|| ApiError::internal(anyhow::anyhow!("membership role {role}")))?;
    Ok((User { id: user_id, email }, role))
}

/// The calling key's listing fields (the extractor already checked it is live).
async fn api_key(state: &AppState, org_id: Uuid, key_id: Uuid) -> ApiResult<CredentialInfo> {
    let (name, prefix, expires_at): (String, String, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT name, prefix, expires_at FROM api_keys WHERE id = $1 AND org_id = $2")
            .bind(key_id)
            .bind(org_id)
            .fetch_one(&state.db)
            .await?;
    Ok(CredentialInfo::ApiKey { id: key_id, name, prefix, expires_at })
}
