//! Access tokens: compact JWS with HS256 (RFC 7515/7519), short-lived, verified in constant
//! time. Only HS256 is accepted whatever the header says, so `alg: none` and algorithm
//! confusion cannot apply.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

/// Access tokens live 15 minutes: long enough for a session of calls, short enough that a
/// revoked refresh family stops working soon.
pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// The user.
    pub sub: Uuid,
    /// The organisation the token acts in.
    pub org: Uuid,
    /// Space-separated scopes (RFC 8693 §4.2).
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    }
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    tracing::error!("HMAC refused a key length, which RFC 2104 allows");
    std::process::abort()
}

pub fn encode(claims: &Claims, secret: &[u8]) -> String {
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(payload));
    let mut mac = mac(secret);
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// The claims of a token this server signed and that has not expired at `now` (Unix seconds).
pub fn decode(token: &str, secret: &[u8], now: i64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
    let mut mac = mac(secret);
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| TokenError::Malformed)?;
    let header: serde_json::Value = serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(TokenError::Malformed);
    }
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims { sub: Uuid::nil(), org: Uuid::max(), scope: "jobs:read".into(), iat: 0, exp }
    }

    #[test]
    fn a_token_round_trips_until_it_expires() {
        let token = encode(&claims(100), b"secret");
        assert_eq!(decode(&token, b"secret", 99), Ok(claims(100)));
        assert_eq!(decode(&token, b"secret", 100), Err(TokenError::Expired));
    }

    #[test]
    fn another_key_or_a_changed_payload_is_refused() {
        let token = encode(&claims(100), b"secret");
        assert_eq!(decode(&token, b"other", 0), Err(TokenError::BadSignature));
        let forged = encode(&claims(10_000), b"secret");
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = forged.split('.').nth(1).unwrap_or_default();
        assert_eq!(decode(&parts.join("."), b"secret", 0), Err(TokenError::BadSignature));
    }

    #[test]
    fn alg_none_is_refused() {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(100)).unwrap_or_default());
        let token = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_ne!(decode(&token, b"secret", 0).ok(), Some(claims(100)));
    }
}
