//! Credentials and who is calling: passwords, access tokens (JWT), refresh tokens, API keys
//! (`kiln_live_…`, `kiln_test_…`), scopes and roles, and [`Auth`], the authenticated caller
//! whose organisation every query is scoped by. (Its extractor, which reads the database, is
//! in `crate::extract`, above the application state.)

pub mod jwt;
pub mod password;
pub mod scope;
pub mod secret;
pub mod tokens;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use uuid::Uuid;

pub use scope::{Role, Scope};

use crate::error::ApiError;

/// API keys start with this, then the mode and `_`.
pub const KEY_PREFIX: &str = "kiln_";

/// Live keys run and bill jobs; test keys run at `preview` at most and are never charged.
pub use kiln_api::keys::Mode;

#[derive(Clone, Debug, PartialEq)]
pub enum Principal {
    User(Uuid),
    ApiKey(Uuid),
    /// A Studio claim token (`billing::studio`): one upload, one job, their reads.
    Claim(Uuid),
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
            Principal::ApiKey(_) | Principal::Claim(_) => {
                Err(ApiError::forbidden("user_required", "this route needs a user's token, not an API key"))
            }
        }
    }
}

/// The credential of an `Authorization: Bearer <credential>` header (the scheme in any case,
/// RFC 7235), or None when there is no such header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let text = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = text.split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}
