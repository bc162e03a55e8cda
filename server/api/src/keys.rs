//! API keys (`kiln_live_…`, `kiln_test_…`) and what a credential may do: creating a key, a key as
//! listings show it (never its secret), the one answer that carries the secret, scopes and modes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a credential may do. API keys carry the scopes they were created with; access tokens
/// carry their user's role's scopes (or fewer, for OAuth clients that asked for fewer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Scope {
    #[serde(rename = "jobs:read")]
    JobsRead,
    /// Uploads, jobs and batches.
    #[serde(rename = "jobs:write")]
    JobsWrite,
    #[serde(rename = "keys:manage")]
    KeysManage,
    #[serde(rename = "webhooks:manage")]
    WebhooksManage,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::JobsRead, Scope::JobsWrite, Scope::KeysManage, Scope::WebhooksManage];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::JobsRead => "jobs:read",
            Scope::JobsWrite => "jobs:write",
            Scope::KeysManage => "keys:manage",
            Scope::WebhooksManage => "webhooks:manage",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Parses a space-separated list (OAuth's `scope`), refusing unknown names.
    pub fn parse_list(text: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for word in text.split_whitespace() {
            let scope = Scope::parse(word).ok_or_else(|| format!("unknown scope '{word}'"))?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        scopes.sort();
        Ok(scopes)
    }

    pub fn join(scopes: &[Scope]) -> String {
        scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
    }

    pub fn to_strings(scopes: &[Scope]) -> Vec<String> {
        scopes.iter().map(|s| s.as_str().to_string()).collect()
    }

    /// Scopes read back from storage; names this build does not know are dropped.
    pub fn from_strings(texts: &[String]) -> Vec<Scope> {
        texts.iter().filter_map(|t| Scope::parse(t)).collect()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Live keys run and bill jobs; test keys run at `preview` at most and are never charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/api-keys`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[cfg_attr(feature = "openapi", schema(example = "shop integration"))]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, example = json!(["jobs:read", "jobs:write"])))]
    pub scopes: Vec<Scope>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "test"))]
    pub mode: Mode,
    /// When the key stops working; none for a key that lasts until revoked.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key as listings show it: never its secret, only its first characters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    /// The key's first characters, to tell keys apart.
    #[cfg_attr(feature = "openapi", schema(example = "kiln_test_Xk2b"))]
    pub prefix: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub scopes: Vec<Scope>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "test"))]
    pub mode: Mode,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether the key works at `now`: neither revoked nor expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// The answer to `POST /v1/api-keys`: the key, with its secret this once.
// Its `Debug` (below) leaves the secret out.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedKey {
    #[serde(flatten)]
    pub api_key: ApiKey,
    /// The secret, shown this once: store it now.
    #[cfg_attr(feature = "openapi", schema(example = "kiln_test_Xk2bq4…"))]
    pub key: String,
}

impl fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedKey").field("api_key", &self.api_key).field("key", &"<redacted>").finish()
    }
}

/// `GET /v1/api-keys`: the organisation's keys, newest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyList {
    pub data: Vec<ApiKey>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_parse_sorted_and_refuse_unknown_names() {
        assert_eq!(Scope::parse_list("jobs:write jobs:read jobs:write"), Ok(vec![Scope::JobsRead, Scope::JobsWrite]));
        assert!(Scope::parse_list("jobs:read admin").is_err());
        assert_eq!(serde_json::to_string(&Scope::KeysManage).ok().as_deref(), Some("\"keys:manage\""));
        assert_eq!(Scope::from_strings(&["jobs:read".into(), "later:scope".into()]), vec![Scope::JobsRead]);
    }

    #[test]
    fn a_created_key_reads_back_and_never_shows_its_secret_in_debug() {
        let body = r#"{"id":"0190a0a0-0000-7000-8000-000000000001","name":"ci","prefix":"kiln_test_Xk2b",
            "scopes":["jobs:read"],"mode":"test","created_at":"2026-01-02T03:04:05Z","expires_at":null,
            "last_used_at":null,"revoked_at":null,"key":"kiln_test_Xk2bSECRET"}"#;
        let created: CreatedKey = serde_json::from_str(body).unwrap();
        assert_eq!((created.api_key.mode, created.api_key.scopes.as_slice()), (Mode::Test, &[Scope::JobsRead][..]));
        let later: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
        assert!(created.api_key.is_active(later));
        let revoked = ApiKey { revoked_at: Some(later), ..created.api_key.clone() };
        assert!(!revoked.is_active(later));
        let expired = ApiKey { expires_at: Some(later), ..created.api_key.clone() };
        assert!(!expired.is_active(later));
        assert!(!format!("{created:?}").contains("SECRET"));
    }
}
