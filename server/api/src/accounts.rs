//! Signing up, logging in, the token pair every login answers, roles, and who is calling
//! (`GET /v1/me`).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::{Mode, Scope};

/// What a login, a signup or a refresh answers with (RFC 6749 §5.1 field names).
#[derive(Debug, Serialize, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token is valid.
    pub expires_in: i64,
    /// Space-separated scopes of the access token.
    pub scope: String,
    pub org_id: Uuid,
}

#[derive(Deserialize, Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[cfg_attr(feature = "openapi", schema(example = "ada@example.com"))]
    pub email: String,
    #[cfg_attr(feature = "openapi", schema(example = "correct horse battery staple"))]
    pub password: String,
}

#[derive(Deserialize, Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// A member of an organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "owner" => Some(Role::Owner),
            "member" => Some(Role::Member),
            _ => None,
        }
    }

    /// Owners manage keys and webhooks; members run and read jobs.
    pub fn scopes(self) -> Vec<Scope> {
        match self {
            Role::Owner => Scope::ALL.to_vec(),
            Role::Member => vec![Scope::JobsRead, Scope::JobsWrite],
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GET /v1/me`: who is calling, in which organisation, and with what credential.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    /// The person calling with their access token; none for an API key or a Studio claim, which
    /// act for the organisation rather than for a person.
    pub user: Option<User>,
    /// The user's role in the organisation; none when there is no user.
    pub role: Option<Role>,
    pub organisation: Organisation,
    /// What this credential may do.
    pub scopes: Vec<Scope>,
    /// Test credentials run at `preview` at most and are never charged.
    pub mode: Mode,
    pub credential: CredentialInfo,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: Uuid,
    #[cfg_attr(feature = "openapi", schema(example = "ada@example.com"))]
    pub email: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Organisation {
    pub id: Uuid,
    #[cfg_attr(feature = "openapi", schema(example = "Ada's workshop"))]
    pub name: String,
}

/// How the caller authenticated (never the credential itself).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CredentialInfo {
    /// An access token from a login (password or OAuth).
    AccessToken,
    /// An API key, named by its listing's fields (`GET /v1/api-keys`).
    ApiKey {
        id: Uuid,
        name: String,
        /// The key's first characters.
        #[cfg_attr(feature = "openapi", schema(example = "kiln_live_Xk2b"))]
        prefix: String,
        expires_at: Option<DateTime<Utc>>,
    },
    /// A Studio claim token (one upload and one job, no account).
    StudioClaim { id: Uuid },
}
