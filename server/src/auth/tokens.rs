//! Access and refresh tokens for users, from a password login or the OAuth token endpoint.
//! Refresh tokens rotate: every use returns a new one in the same family and retires the old;
//! presenting a retired one revokes the family (RFC 6819 §5.2.2.3, OAuth 2.1 §4.3.1).

use chrono::{Duration, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Scope, jwt, secret};
use crate::error::ApiError;
pub use kiln_api::accounts::TokenPair;

/// Refresh tokens last 30 days from their issue; each rotation issues a fresh one.
pub const REFRESH_TOKEN_DAYS: i64 = 30;

/// Refresh tokens carry this prefix so they are told from API keys and access tokens at a
/// glance (in a leak report, say).
const REFRESH_PREFIX: &str = "krt_";

/// Who a token pair is for.
pub struct Grant<'a> {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub scopes: &'a [Scope],
    pub client_id: Option<&'a str>,
}

/// Issues an access token and the first refresh token of a new family.
pub async fn issue(db: &mut PgConnection, jwt_secret: &[u8], grant: &Grant<'_>) -> Result<TokenPair, ApiError> {
    issue_in_family(db, jwt_secret, grant, Uuid::now_v7()).await
}

async fn issue_in_family(
    db: &mut PgConnection,
    jwt_secret: &[u8],
    grant: &Grant<'_>,
    family_id: Uuid,
) -> Result<TokenPair, ApiError> {
    let now = Utc::now();
    let refresh_token = secret::token(REFRESH_PREFIX);
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, org_id, user_id, token_hash, client_id, scopes, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7())
    .bind(family_id)
    .bind(grant.org_id)
    .bind(grant.user_id)
    .bind(secret::hash(&refresh_token))
    .bind(grant.client_id)
    .bind(Scope::to_strings(grant.scopes))
    .bind(now + Duration::days(REFRESH_TOKEN_DAYS))
    .execute(&mut *db)
    .await?;
    let scope = Scope::join(grant.scopes);
    let claims = jwt::Claims {
        sub: grant.user_id,
        org: grant.org_id,
        scope: scope.clone(),
        iat: now.timestamp(),
        exp: now.timestamp() + jwt::ACCESS_TOKEN_SECONDS,
    };
    Ok(TokenPair {
        access_token: jwt::encode(&claims, jwt_secret),
        refresh_token,
        token_type: "Bearer",
        expires_in: jwt::ACCESS_TOKEN_SECONDS,
        scope,
        org_id: grant.org_id,
    })
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    id: Uuid,
    family_id: Uuid,
    org_id: Uuid,
    user_id: Uuid,
    client_id: Option<String>,
    scopes: Vec<String>,
    expired: bool,
    used: bool,
    revoked: bool,
}

/// Trades a refresh token for a new pair. `client_id` must match the family's (None for
/// password logins). A reused token revokes its whole family and is refused.
pub async fn rotate(
    db: &mut PgConnection,
    jwt_secret: &[u8],
    refresh_token: &str,
    client_id: Option<&str>,
) -> Result<TokenPair, ApiError> {
    let invalid =
        || ApiError::unauthorized("invalid_grant", "the refresh token is not valid (unknown, expired or revoked)");
    let row: Option<RefreshRow> = sqlx::query_as(
        "SELECT id, family_id, org_id, user_id, client_id, scopes,
                expires_at <= now() AS expired, used_at IS NOT NULL AS used, revoked_at IS NOT NULL AS revoked
         FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(secret::hash(refresh_token))
    .fetch_optional(&mut *db)
    .await?;
    let row = row.ok_or_else(invalid)?;
    if row.client_id.as_deref() != client_id {
        return Err(invalid());
    }
    if row.used && !row.revoked {
        tracing::warn!(family = %row.family_id, "a rotated refresh token was presented again: revoking its family");
        revoke_family(db, row.family_id).await?;
        return Err(ApiError::unauthorized(
            "refresh_token_reused",
            "the refresh token was already used; its session is revoked",
        ));
    }
    if row.used || row.revoked || row.expired {
        return Err(invalid());
    }
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE id = $1").bind(row.id).execute(&mut *db).await?;
    let scopes = Scope::from_strings(&row.scopes);
    let grant = Grant { user_id: row.user_id, org_id: row.org_id, scopes: &scopes, client_id };
    issue_in_family(db, jwt_secret, &grant, row.family_id).await
}

/// Revokes every token of a family (a leaked token, a reused OAuth code).
pub async fn revoke_family(db: &mut PgConnection, family_id: Uuid) -> Result<(), ApiError> {
    sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL")
        .bind(family_id)
        .execute(&mut *db)
        .await?;
    Ok(())
}

/// Revokes the family of `refresh_token` (RFC 7009: unknown tokens are not an error).
pub async fn revoke(db: &mut PgConnection, refresh_token: &str) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now()
         WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1) AND revoked_at IS NULL",
    )
    .bind(secret::hash(refresh_token))
    .execute(&mut *db)
    .await?;
    Ok(())
}
