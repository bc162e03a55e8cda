//! Signup, login and refresh for people (email and password). Signup creates the user's own
//! organisation, with the user as its owner.

use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::tokens::{self, Grant, TokenPair};
use crate::auth::{Role, password};
use crate::billing::ledger::{self, Account, Reason, Reference};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::state::AppState;
pub use kiln_api::accounts::{Credentials, RefreshRequest};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(signup)).routes(routes!(login)).routes(routes!(refresh))
}

/// Longest address RFC 5321 lets through (a 64-byte local part, `@`, a 255-byte domain).
const MAX_EMAIL_LENGTH: usize = 320;

/// A light check: one `@` with something on both sides and a dot in the domain. Whether the
/// address receives mail is for a confirmation email to find out, not a regular expression.
fn normalise_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= MAX_EMAIL_LENGTH
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !domain.contains('@'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid { Ok(email) } else { Err(ApiError::bad_request("invalid_email", "the email address is not valid")) }
}

/// Creates an account and its organisation.
#[utoipa::path(post, path = "/v1/auth/signup", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "The account, its organisation and a first token pair", body = TokenPair),
        (status = 400, description = "Invalid email or weak password (`invalid_email`, `weak_password`)", body = crate::openapi::ErrorBody),
        (status = 409, description = "The email has an account (`email_taken`)", body = crate::openapi::ErrorBody),
    ))]
async fn signup(
    State(state): State<AppState>,
    Json(body): Json<Credentials>,
) -> ApiResult<(StatusCode, Json<TokenPair>)> {
    let email = normalise_email(&body.email)?;
    password::check_strength(&body.password)?;
    let hash = password::hash(body.password).await?;
    let (user_id, org_id) = (Uuid::now_v7(), Uuid::now_v7());
    let mut tx = state.db.begin().await?;
    let inserted =
        sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING")
            .bind(user_id)
            .bind(&email)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::conflict("email_taken", "an account with this email exists; log in instead"));
    }
    sqlx::query("INSERT INTO orgs (id, name) VALUES ($1, $2)").bind(org_id).bind(&email).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)")
        .bind(org_id)
        .bind(user_id)
        .bind(Role::Owner.as_str())
        .execute(&mut *tx)
        .await?;
    let welcome = state.config.billing.signup_credits;
    if welcome > 0 {
        let reference = Reference { note: Some("signup credits".into()), ..Reference::default() };
        ledger::credit(&mut tx, org_id, Reason::Grant, Account::Grants, welcome, &reference).await?;
    }
    let scopes = Role::Owner.scopes();
    let grant = Grant { user_id, org_id, scopes: &scopes, client_id: None };
    let pair = tokens::issue(&mut tx, &state.config.jwt_secret, &grant).await?;
    tx.commit().await?;
    tracing::info!(%user_id, %org_id, "signup");
    Ok((StatusCode::CREATED, Json(pair)))
}

#[derive(sqlx::FromRow)]
struct Login {
    user_id: Uuid,
    password_hash: String,
    org_id: Uuid,
    role: String,
}

/// The user and their first organisation (by membership age) if the password matches. The
/// timing is the same for unknown emails (a decoy hash is verified).
pub async fn check_password(state: &AppState, email: &str, password: String) -> ApiResult<(Uuid, Uuid, Role)> {
    let email = email.trim().to_lowercase();
    let refused = || ApiError::unauthorized("invalid_credentials", "the email or the password is wrong");
    // PostgreSQL text cannot hold NUL: such an address has no account, and must not reach it.
    if email.contains('\0') {
        password::verify(password, password::decoy().await?).await?;
        return Err(refused());
    }
    let row: Option<Login> = sqlx::query_as(
        "SELECT u.id AS user_id, u.password_hash, m.org_id, m.role
         FROM users u JOIN memberships m ON m.user_id = u.id
         WHERE u.email = $1 ORDER BY m.created_at LIMIT 1",
    )
    .bind(&email)
    .fetch_optional(&state.db)
    .await?;
    let Some(row) = row else {
        password::verify(password, password::decoy().await?).await?;
        return Err(refused());
    };
    if !password::verify(password, row.password_hash).await? {
        return Err(refused());
    }
    let role =
        Role::parse(&row.role).ok_or_else(|| ApiError::internal(anyhow::anyhow!("membership role {}", row.role)))?;
    Ok((row.user_id, row.org_id, role))
}

/// Logs in with email and password.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "A new token pair", body = TokenPair),
        (status = 401, description = "Wrong email or password (`invalid_credentials`)", body = crate::openapi::ErrorBody),
    ))]
async fn login(State(state): State<AppState>, Json(body): Json<Credentials>) -> ApiResult<Json<TokenPair>> {
    let (user_id, org_id, role) = check_password(&state, &body.email, body.password).await?;
    let scopes = role.scopes();
    let mut connection = state.db.acquire().await?;
    let grant = Grant { user_id, org_id, scopes: &scopes, client_id: None };
    Ok(Json(tokens::issue(&mut connection, &state.config.jwt_secret, &grant).await?))
}

/// Trades a refresh token for a new pair; the old refresh token is spent. Presenting a spent one
/// again revokes the whole session (`refresh_token_reused`).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = TokenPair),
        (status = 401, description = "Unknown, expired, revoked or reused token (`invalid_grant`, `refresh_token_reused`)", body = crate::openapi::ErrorBody),
    ))]
async fn refresh(State(state): State<AppState>, Json(body): Json<RefreshRequest>) -> ApiResult<Json<TokenPair>> {
    let mut tx = state.db.begin().await?;
    let result = tokens::rotate(&mut tx, &state.config.jwt_secret, &body.refresh_token, None).await;
    // A reuse revokes the family: that must be committed even though the request is refused.
    tx.commit().await?;
    Ok(Json(result?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalise_email(" Ada@Example.COM ").ok().as_deref(), Some("ada@example.com"));
        for bad in [
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@.com",
            "a b@example.com",
            "a@b@c.com",
            "a\0@example.com",
        ] {
            assert!(normalise_email(bad).is_err(), "{bad}");
        }
    }
}
