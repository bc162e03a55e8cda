//! What a credential may do. API keys carry the scopes they were created with; access tokens
//! carry their user's role's scopes (or fewer, for OAuth clients that asked for fewer).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

    /// Scopes read back from the database; names this build does not know are dropped.
    pub fn from_strings(texts: &[String]) -> Vec<Scope> {
        texts.iter().filter_map(|t| Scope::parse(t)).collect()
    }
}

/// A member of an organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_parse_sorted_and_refuse_unknown_names() {
        assert_eq!(Scope::parse_list("jobs:write jobs:read jobs:write"), Ok(vec![Scope::JobsRead, Scope::JobsWrite]));
        assert!(Scope::parse_list("jobs:read admin").is_err());
        assert_eq!(serde_json::to_string(&Scope::KeysManage).ok().as_deref(), Some("\"keys:manage\""));
    }
}
