//! The OAuth 2.0 authorization server's rules for Kiln's own native apps (RFC 6749's
//! authorization-code grant, PKCE per RFC 7636, native apps per RFC 8252): which clients exist,
//! which redirect URIs they may use, the S256 check, authorization codes (single use, short-lived,
//! stored as a hash) and the signed token that ties the consent form to the request it was
//! rendered for. The HTTP side (pages, form parsing, the token endpoint) is `routes::oauth`.
//!
//! Redirect URIs are loopback IP literals only. Private-use URI schemes (RFC 8252 §7.1,
//! `com.example.app:/cb`) are not supported: any app on the machine can claim such a scheme,
//! and both Kiln clients can listen on a loopback port, which the operating system gives to one
//! process at a time.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Duration, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use url::{Host, Url};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::tokens::{self, Grant, TokenPair};
use crate::auth::{Role, Scope, secret};
use crate::error::ApiError;

/// A client the server knows. All are public native apps: they hold no secret (anything shipped
/// in an app can be extracted), so PKCE is what binds a code to the app instance that asked.
#[derive(Debug, PartialEq)]
pub struct Client {
    pub id: &'static str,
    /// Shown on the consent page.
    pub name: &'static str,
}

/// The clients: Kiln's own apps, and only them. Integrations use API keys; adding a client is a
/// code change on purpose (no dynamic registration, so no unvetted app can ask users for access).
pub const CLIENTS: [Client; 2] =
    [Client { id: "kiln-cli", name: "Kiln command line" }, Client { id: "kiln-desktop", name: "Kiln desktop app" }];

/// Codes live 60 seconds: the app redeems its code a moment after the browser delivers it, and
/// RFC 6749 §4.1.2 recommends at most 10 minutes.
pub const CODE_SECONDS: i64 = 60;

/// Codes are kept a day after they expire, so a code presented again within that day still
/// revokes the tokens it produced; after that they are only clutter and are deleted.
const CODE_RETENTION_HOURS: i64 = 24;

/// A consent form may be submitted within 10 minutes of being shown: time to find a password,
/// short enough that a form left open on a shared screen goes stale.
pub const FORM_SECONDS: i64 = 10 * 60;

/// Loopback redirect URIs are short (`http://127.0.0.1:53121/callback`); the cap bounds what the
/// page echoes and the database stores.
const MAX_REDIRECT_URI_LENGTH: usize = 1024;

/// A `state` is a nonce of a few dozen characters; the cap bounds the page and the redirect.
const MAX_STATE_LENGTH: usize = 512;

/// Label mixed into the consent form's MAC, so the JWT secret it shares signs nothing that could
/// be mistaken for another use of that key.
const FORM_MAC_LABEL: &[u8] = b"kiln oauth consent form v1";

/// The client it is, if known.
pub fn client(id: &str) -> Option<&'static Client> {
    CLIENTS.iter().find(|c| c.id == id)
}

/// Why a redirect URI is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RedirectError {
    #[error("the redirect_uri is not a valid absolute URI")]
    NotUri,
    #[error("the redirect_uri is longer than {MAX_REDIRECT_URI_LENGTH} characters")]
    TooLong,
    #[error("the redirect_uri must be http://127.0.0.1:PORT/… or http://[::1]:PORT/… (RFC 8252 loopback)")]
    NotLoopback,
    #[error("the redirect_uri must use the IP literal 127.0.0.1 or [::1], not the name localhost (RFC 8252 §8.3)")]
    Localhost,
    #[error("the redirect_uri must not contain a fragment (RFC 6749 §3.1.2)")]
    Fragment,
    #[error("the redirect_uri must not contain a user name or password")]
    Userinfo,
}

/// Checks a native app's redirect URI (RFC 8252 §7.3): `http` to the loopback IP literal
/// `127.0.0.1` or `[::1]`, any port (the app listens on whichever is free), any path.
///
/// `localhost` is refused (RFC 8252 §8.3 calls it NOT RECOMMENDED): a name can be resolved by
/// the hosts file or DNS to something other than the loopback interface, and it may resolve to
/// the IPv6 loopback while the app listens on the IPv4 one or the reverse; an IP literal
/// leaves the browser no choice.
pub fn loopback_redirect(text: &str) -> Result<Url, RedirectError> {
    if text.len() > MAX_REDIRECT_URI_LENGTH {
        return Err(RedirectError::TooLong);
    }
    // The URL parser drops tabs and newlines and encodes other controls, so the URI the token
    // request must repeat exactly would differ from the one checked here.
    if text.chars().any(|c| c.is_control() || c == ' ') {
        return Err(RedirectError::NotUri);
    }
    let url = Url::parse(text).map_err(|_| RedirectError::NotUri)?;
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        Some(Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") && url.scheme() == "http" => {
            return Err(RedirectError::Localhost);
        }
        _ => false,
    };
    if url.scheme() != "http" || !loopback {
        return Err(RedirectError::NotLoopback);
    }
    if url.fragment().is_some() {
        return Err(RedirectError::Fragment);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectError::Userinfo);
    }
    Ok(url)
}

/// Whether `text` is 256 bits in unpadded base64url, the form of an S256 challenge (RFC 7636
/// §4.2: BASE64URL(SHA256(verifier)), 43 characters) and of the form nonce.
pub fn is_256_bits(text: &str) -> bool {
    text.len() == 43 && URL_SAFE_NO_PAD.decode(text).is_ok_and(|bytes| bytes.len() == 32)
}

/// Whether `verifier` has RFC 7636 §4.1's form: 43 to 128 unreserved characters.
pub fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.2's S256 transform.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` hashes to `challenge`, compared in constant time.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    secret::equal(s256(verifier).as_bytes(), challenge.as_bytes())
}

/// The authorization request's parameters as sent (RFC 6749 §4.1.1, RFC 7636 §4.3): the query
/// of `GET /oauth/authorize`, and hidden fields of the consent form. All optional here so that a
/// missing one gets the RFC's error rather than a parser's.
#[derive(Debug, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeParams {
    /// `kiln-cli` or `kiln-desktop`.
    #[param(example = "kiln-cli")]
    #[schema(example = "kiln-cli")]
    pub client_id: Option<String>,
    /// A loopback URI: `http://127.0.0.1:PORT/…` or `http://[::1]:PORT/…`, any port.
    #[param(example = "http://127.0.0.1:53121/callback")]
    #[schema(example = "http://127.0.0.1:53121/callback")]
    pub redirect_uri: Option<String>,
    /// Always `code`.
    #[param(example = "code")]
    #[schema(example = "code")]
    pub response_type: Option<String>,
    /// BASE64URL(SHA-256(code_verifier)), 43 characters.
    #[param(example = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")]
    #[schema(example = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")]
    pub code_challenge: Option<String>,
    /// Always `S256` (`plain` is refused).
    #[param(example = "S256")]
    #[schema(example = "S256")]
    pub code_challenge_method: Option<String>,
    /// Space-separated scopes, a subset of the user's role's; the role's scopes when absent.
    #[param(example = "jobs:read jobs:write")]
    #[schema(example = "jobs:read jobs:write")]
    pub scope: Option<String>,
    /// Returned unchanged with the code or the error.
    pub state: Option<String>,
}

/// An authorization request that failed validation, and where its answer goes.
#[derive(Debug, PartialEq)]
pub enum AuthorizeError {
    /// Nothing shows that the redirect URI belongs to a known client: the person is told, and
    /// nothing is redirected (RFC 6749 §4.1.2.1), so the server is no open redirector.
    Untrusted(String),
    /// Client and redirect URI are good: the error goes back to the app (RFC 6749 §4.1.2.1).
    ToClient(Url),
}

/// A validated authorization request.
#[derive(Debug)]
pub struct AuthorizeRequest {
    pub client: &'static Client,
    /// As the client sent it: the token request must repeat it exactly (RFC 6749 §4.1.3).
    pub redirect_uri: String,
    redirect: Url,
    pub code_challenge: String,
    /// The scopes asked for; None for the user's role's.
    pub scopes: Option<Vec<Scope>>,
    pub state: Option<String>,
}

impl AuthorizeRequest {
    /// Validates the parameters: client and redirect URI first (refusals shown to the person),
    /// then the rest (refusals sent to the app).
    pub fn parse(params: &AuthorizeParams) -> Result<Self, AuthorizeError> {
        let untrusted = |message: &str| AuthorizeError::Untrusted(message.to_string());
        let client_id = params.client_id.as_deref().ok_or_else(|| untrusted("The request names no client_id."))?;
        let client = client(client_id).ok_or_else(|| untrusted("The request comes from an app Kiln does not know."))?;
        let redirect_uri =
            params.redirect_uri.as_deref().ok_or_else(|| untrusted("The request has no redirect_uri."))?;
        let redirect =
            loopback_redirect(redirect_uri).map_err(|e| AuthorizeError::Untrusted(format!("Refused: {e}.")))?;
        if params.state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LENGTH) {
            return Err(untrusted("The request's state is too long."));
        }
        let mut request = AuthorizeRequest {
            client,
            redirect_uri: redirect_uri.to_string(),
            redirect,
            code_challenge: String::new(),
            scopes: None,
            state: params.state.clone(),
        };
        let to_client = |error: &str, description: &str| {
            AuthorizeError::ToClient(request.redirect_to(&[("error", error), ("error_description", description)]))
        };
        match params.response_type.as_deref() {
            Some("code") => {}
            None => return Err(to_client("invalid_request", "response_type is required")),
            Some(_) => return Err(to_client("unsupported_response_type", "only response_type=code is supported")),
        }
        match params.code_challenge_method.as_deref() {
            Some("S256") => {}
            None => return Err(to_client("invalid_request", "PKCE is required: code_challenge_method=S256")),
            Some(_) => return Err(to_client("invalid_request", "only code_challenge_method=S256 is supported")),
        }
        let challenge = params.code_challenge.as_deref().unwrap_or_default();
        if !is_256_bits(challenge) {
            return Err(to_client("invalid_request", "code_challenge must be 43 base64url characters (S256)"));
        }
        let scopes = match params.scope.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(Scope::parse_list(text).map_err(|e| to_client("invalid_scope", &e))?),
        };
        request.code_challenge = challenge.to_string();
        request.scopes = scopes;
        Ok(request)
    }

    /// The redirect URI with `pairs`, then the state, added to its query (RFC 6749 §4.1.2 keeps
    /// any query the URI had).
    pub fn redirect_to(&self, pairs: &[(&str, &str)]) -> Url {
        let mut url = self.redirect.clone();
        {
            let mut query = url.query_pairs_mut();
            query.extend_pairs(pairs);
            if let Some(state) = &self.state {
                query.append_pair("state", state);
            }
        }
        url
    }

    /// An error sent back to the app.
    pub fn error_redirect(&self, error: &str, description: &str) -> Url {
        self.redirect_to(&[("error", error), ("error_description", description)])
    }

    /// The origin the browser is sent back to, `http://127.0.0.1:PORT` (for the page and its
    /// Content-Security-Policy).
    pub fn redirect_origin(&self) -> String {
        self.redirect.origin().ascii_serialization()
    }

    /// Whether the redirect goes to the IPv6 loopback, which a CSP source cannot name.
    pub fn redirect_is_ipv6(&self) -> bool {
        matches!(self.redirect.host(), Some(Host::Ipv6(_)))
    }

    /// The scopes to grant a user of `role`: those asked for, which the role must hold, or
    /// the role's when none were named.
    pub fn granted_scopes(&self, role: Role) -> Result<Vec<Scope>, AuthorizeError> {
        let allowed = role.scopes();
        match &self.scopes {
            None => Ok(allowed),
            Some(asked) => match asked.iter().find(|s| !allowed.contains(s)) {
                Some(scope) => Err(AuthorizeError::ToClient(self.error_redirect(
                    "invalid_scope",
                    &format!("this account's role does not hold {}", scope.as_str()),
                ))),
                None => Ok(asked.clone()),
            },
        }
    }

    /// The consent form's token: `ISSUED_AT.MAC`, an HMAC-SHA-256 under the server's secret over
    /// the browser's nonce (its cookie), the time it was issued and every parameter of this
    /// request. The form's submit checks it, so the hidden fields cannot be changed, the form
    /// goes stale after [`FORM_SECONDS`], and a form posted from another site (which the
    /// `SameSite=Strict` nonce cookie does not accompany) is refused.
    pub fn form_token(&self, key: &[u8], nonce: &str, issued_at: i64) -> Result<String, ApiError> {
        let mac = self.form_mac(key, nonce, issued_at)?.finalize().into_bytes();
        Ok(format!("{issued_at}.{}", URL_SAFE_NO_PAD.encode(mac)))
    }

    /// Whether `token` is this request's form token for `nonce`, issued within [`FORM_SECONDS`]
    /// of `now`.
    pub fn check_form_token(&self, key: &[u8], nonce: &str, token: &str, now: i64) -> Result<bool, ApiError> {
        let Some((issued_at, mac)) = token.split_once('.') else { return Ok(false) };
        let (Ok(issued_at), Ok(mac)) = (issued_at.parse::<i64>(), URL_SAFE_NO_PAD.decode(mac)) else {
            return Ok(false);
        };
        // A minute of slack for a clock stepped back between showing and submitting.
        if !(now - FORM_SECONDS..=now + 60).contains(&issued_at) {
            return Ok(false);
        }
        Ok(self.form_mac(key, nonce, issued_at)?.verify_slice(&mac).is_ok())
    }

    fn form_mac(&self, key: &[u8], nonce: &str, issued_at: i64) -> Result<Hmac<Sha256>, ApiError> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(key).map_err(|e| ApiError::internal(anyhow::anyhow!("HMAC key: {e}")))?;
        let scope = self.scopes.as_deref().map(Scope::join);
        let fields: [Option<&[u8]>; 8] = [
            Some(FORM_MAC_LABEL),
            Some(nonce.as_bytes()),
            Some(&issued_at.to_be_bytes()),
            Some(self.client.id.as_bytes()),
            Some(self.redirect_uri.as_bytes()),
            Some(self.code_challenge.as_bytes()),
            scope.as_deref().map(str::as_bytes),
            self.state.as_deref().map(str::as_bytes),
        ];
        // Each field length-prefixed (and marked present or absent), so no two requests share
        // an input by moving bytes between fields.
        for field in fields {
            let bytes = field.unwrap_or_default();
            mac.update(&[u8::from(field.is_some())]);
            mac.update(&(bytes.len() as u64).to_be_bytes());
            mac.update(bytes);
        }
        Ok(mac)
    }
}

/// Stores a fresh code for `request`, granted to the user in `org_id` with `scopes`, and returns
/// it (only its hash is kept). Codes long expired are deleted on the way.
pub async fn create_code(
    db: &PgPool,
    request: &AuthorizeRequest,
    user_id: Uuid,
    org_id: Uuid,
    scopes: &[Scope],
) -> Result<String, ApiError> {
    let code = secret::token("");
    let now = Utc::now();
    sqlx::query(
        "INSERT INTO oauth_codes (code_hash, org_id, user_id, client_id, redirect_uri, code_challenge, scopes, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(secret::hash(&code))
    .bind(org_id)
    .bind(user_id)
    .bind(request.client.id)
    .bind(&request.redirect_uri)
    .bind(&request.code_challenge)
    .bind(Scope::to_strings(scopes))
    .bind(now + Duration::seconds(CODE_SECONDS))
    .execute(db)
    .await?;
    sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1")
        .bind(now - Duration::hours(CODE_RETENTION_HOURS))
        .execute(db)
        .await?;
    Ok(code)
}

/// What a token request presents to redeem a code (RFC 6749 §4.1.3, RFC 7636 §4.5).
pub struct Exchange<'a> {
    pub code: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_verifier: &'a str,
}

#[derive(sqlx::FromRow)]
struct CodeRow {
    org_id: Uuid,
    user_id: Uuid,
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    scopes: Vec<String>,
    expired: bool,
    used: bool,
    family_id: Option<Uuid>,
}

/// Redeems a code for a token pair of a new refresh family, recorded on the code. A code is
/// good once: presented again, it is refused and the family it produced is revoked (RFC 6749
/// §4.1.2), since one of the two presenters stole it. A wrong verifier does not spend the code.
pub async fn redeem_code(db: &PgPool, jwt_secret: &[u8], exchange: &Exchange<'_>) -> Result<TokenPair, OAuthError> {
    let mut tx = db.begin().await?;
    let row: Option<CodeRow> = sqlx::query_as(
        "SELECT org_id, user_id, client_id, redirect_uri, code_challenge, scopes,
                expires_at <= now() AS expired, used_at IS NOT NULL AS used, family_id
         FROM oauth_codes WHERE code_hash = $1 FOR UPDATE",
    )
    .bind(secret::hash(exchange.code))
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or_else(|| OAuthError::invalid_grant("the authorization code is not valid"))?;
    if row.used {
        tracing::warn!(family = ?row.family_id, "an authorization code was presented again: revoking its tokens");
        if let Some(family_id) = row.family_id {
            tokens::revoke_family(&mut tx, family_id).await?;
        }
        tx.commit().await?;
        return Err(OAuthError::invalid_grant(
            "the authorization code was already used; the tokens issued for it are revoked",
        ));
    }
    if row.expired {
        return Err(OAuthError::invalid_grant("the authorization code has expired"));
    }
    if row.client_id != exchange.client_id {
        return Err(OAuthError::invalid_grant("the authorization code was issued to another client"));
    }
    if row.redirect_uri != exchange.redirect_uri {
        return Err(OAuthError::invalid_grant("redirect_uri differs from the one the code was issued for"));
    }
    if !verifier_matches(exchange.code_verifier, &row.code_challenge) {
        return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"));
    }
    let scopes = Scope::from_strings(&row.scopes);
    let grant =
        Grant { user_id: row.user_id, org_id: row.org_id, scopes: &scopes, client_id: Some(exchange.client_id) };
    let pair = tokens::issue(&mut tx, jwt_secret, &grant).await?;
    sqlx::query(
        "UPDATE oauth_codes SET used_at = now(), family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $2)
         WHERE code_hash = $1",
    )
    .bind(secret::hash(exchange.code))
    .bind(secret::hash(&pair.refresh_token))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(user_id = %row.user_id, client_id = exchange.client_id, "oauth code redeemed");
    Ok(pair)
}

/// The client a refresh token was issued to: `Some(None)` for a password login's token, `None`
/// for an unknown token.
pub async fn refresh_token_client(db: &PgPool, refresh_token: &str) -> Result<Option<Option<String>>, ApiError> {
    let client: Option<(Option<String>,)> =
        sqlx::query_as("SELECT client_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(secret::hash(refresh_token))
            .fetch_optional(db)
            .await?;
    Ok(client.map(|(c,)| c))
}

/// RFC 6749 §5.2's error codes (those this server answers with).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnsupportedGrantType,
    InvalidScope,
}

/// The body of an OAuth error (RFC 6749 §5.2).
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    pub error: ErrorCode,
    /// For people; may change.
    pub error_description: String,
}

/// An error of the token and revocation endpoints, answered in RFC 6749 §5.2's shape: HTTP 400
/// with `{"error": "invalid_grant", "error_description": "…"}`. This is the one deliberate
/// exception to [`ApiError`]'s `{"error": {"code", "message"}}` shape: RFC 6749 fixes these
/// field names, and OAuth client libraries everywhere parse exactly them. Failures of the server
/// itself (database down, a bug) are not the client's to handle and still answer as
/// [`ApiError`] (5xx).
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{description}")]
    Refused { error: ErrorCode, description: String },
    #[error(transparent)]
    Server(#[from] ApiError),
}

impl OAuthError {
    pub fn new(error: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError::Refused { error, description: description.into() }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        OAuthError::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        OAuthError::new(ErrorCode::InvalidGrant, description)
    }
}

impl From<sqlx::Error> for OAuthError {
    fn from(error: sqlx::Error) -> Self {
        OAuthError::Server(error.into())
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        match self {
            OAuthError::Refused { error, description } => {
                (StatusCode::BAD_REQUEST, Json(OAuthErrorBody { error, error_description: description }))
                    .into_response()
            }
            OAuthError::Server(error) => error.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(is_verifier(verifier));
        assert_eq!(s256(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(verifier_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!verifier_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(is_256_bits("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!is_256_bits("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"));
        assert!(!is_256_bits("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"));
        assert!(!is_verifier("short"));
        assert!(!is_verifier(&"a b".repeat(20)));
    }

    #[test]
    fn only_loopback_ip_literals_are_redirect_uris() {
        for good in ["http://127.0.0.1:53121/callback", "http://[::1]:8000/", "http://127.0.0.1/cb?x=1"] {
            assert!(loopback_redirect(good).is_ok(), "{good}");
        }
        let refused = [
            ("http://localhost:53121/cb", RedirectError::Localhost),
            ("https://evil.example/cb", RedirectError::NotLoopback),
            ("http://10.0.0.1:80/cb", RedirectError::NotLoopback),
            ("http://127.0.0.2:80/cb", RedirectError::NotLoopback),
            ("https://127.0.0.1:80/cb", RedirectError::NotLoopback),
            ("com.kiln.app:/cb", RedirectError::NotLoopback),
            ("http://127.0.0.1.evil.example/cb", RedirectError::NotLoopback),
            ("http://127.0.0.1:80/cb#x", RedirectError::Fragment),
            ("http://me@127.0.0.1:80/cb", RedirectError::Userinfo),
            ("/cb", RedirectError::NotUri),
            ("http://127.0.0.1:80/c\nb", RedirectError::NotUri),
        ];
        for (uri, error) in refused {
            assert_eq!(loopback_redirect(uri), Err(error), "{uri}");
        }
    }

    fn params() -> AuthorizeParams {
        AuthorizeParams {
            client_id: Some("kiln-cli".into()),
            redirect_uri: Some("http://127.0.0.1:4000/cb?keep=1".into()),
            response_type: Some("code".into()),
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            code_challenge_method: Some("S256".into()),
            scope: Some("jobs:write jobs:read".into()),
            state: Some("s&t".into()),
        }
    }

    #[test]
    fn requests_are_refused_to_the_person_or_to_the_app() {
        let request = AuthorizeRequest::parse(&params()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(request.scopes, Some(vec![Scope::JobsRead, Scope::JobsWrite]));
        assert_eq!(
            request.redirect_to(&[("code", "c")]).as_str(),
            "http://127.0.0.1:4000/cb?keep=1&code=c&state=s%26t"
        );
        assert!(matches!(
            AuthorizeRequest::parse(&AuthorizeParams { client_id: Some("evil".into()), ..params() }),
            Err(AuthorizeError::Untrusted(_))
        ));
        let plain =
            AuthorizeRequest::parse(&AuthorizeParams { code_challenge_method: Some("plain".into()), ..params() });
        let Err(AuthorizeError::ToClient(url)) = plain else { panic!("{plain:?}") };
        assert!(url.as_str().starts_with("http://127.0.0.1:4000/cb?keep=1&error=invalid_request&"), "{url}");
        assert!(url.as_str().ends_with("&state=s%26t"), "{url}");
        let member = AuthorizeRequest::parse(&AuthorizeParams { scope: Some("keys:manage".into()), ..params() });
        assert!(matches!(member.map(|r| r.granted_scopes(Role::Member)), Ok(Err(AuthorizeError::ToClient(_)))));
    }

    #[test]
    fn the_form_token_binds_nonce_time_and_every_parameter() {
        let request = AuthorizeRequest::parse(&params()).unwrap_or_else(|e| panic!("{e:?}"));
        let token = request.form_token(b"key", "nonce", 1000).unwrap_or_default();
        assert_eq!(request.check_form_token(b"key", "nonce", &token, 1000 + FORM_SECONDS).ok(), Some(true));
        assert_eq!(request.check_form_token(b"key", "nonce", &token, 1001 + FORM_SECONDS).ok(), Some(false));
        assert_eq!(request.check_form_token(b"key", "other", &token, 1000).ok(), Some(false));
        assert_eq!(request.check_form_token(b"other", "nonce", &token, 1000).ok(), Some(false));
        let changed =
            AuthorizeRequest::parse(&AuthorizeParams { scope: None, ..params() }).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(changed.check_form_token(b"key", "nonce", &token, 1000).ok(), Some(false));
        let later = token.replacen("1000.", "1001.", 1);
        assert_eq!(request.check_form_token(b"key", "nonce", &later, 1000).ok(), Some(false));
    }
}
