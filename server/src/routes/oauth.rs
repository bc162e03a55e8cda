//! The OAuth 2.0 endpoints for the desktop app and the CLI (RFC 6749 authorization code with
//! PKCE S256, RFC 8252 loopback redirects, RFC 7009 revocation, RFC 8414 metadata): the sign-in
//! and consent page, its submit, the token endpoint and revocation. The rules (clients, redirect
//! URIs, codes, the form's token) live in [`crate::oauth`].
//!
//! The page and its submit answer in HTML, for a person in a browser: a request that cannot be
//! trusted to redirect gets an error page, never a redirect. The token and revocation endpoints
//! answer in RFC 6749 §5.2's JSON shape ([`OAuthError`]), which OAuth clients parse.

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use url::Url;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::tokens::{self, TokenPair};
use crate::auth::{Scope, secret};
use crate::error::ApiError;
use crate::extract::Json;
use crate::oauth::{
    self, AuthorizeError, AuthorizeParams, AuthorizeRequest, CLIENTS, ErrorCode, Exchange, FORM_SECONDS, OAuthError,
    OAuthErrorBody,
};
use crate::routes::accounts::check_password;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(authorize_page, authorize_submit))
        .routes(routes!(token))
        .routes(routes!(revoke))
        .routes(routes!(metadata))
}

/// The consent form's nonce cookie. `SameSite=Strict` keeps it off any request another site
/// starts, so a form posted from elsewhere (login CSRF) lacks it and is refused; `HttpOnly`
/// keeps it from scripts; its path is the one route that reads it.
const FORM_COOKIE: &str = "kiln_oauth_form";

/// The Content-Security-Policy of the pages apart from `form-action`: nothing loads or runs
/// but the page's own inline style, and no frame may hold it (clickjacking the Approve button).
const CSP_BASE: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/// Why a browser request to the authorization endpoint ends elsewhere than the form.
enum Refusal {
    /// An HTML error page for the person.
    Page(StatusCode, String),
    /// Back to the app's (verified) redirect URI.
    Redirect(Url),
    Server(ApiError),
}

impl From<AuthorizeError> for Refusal {
    fn from(error: AuthorizeError) -> Self {
        match error {
            AuthorizeError::Untrusted(message) => Refusal::Page(StatusCode::BAD_REQUEST, message),
            AuthorizeError::ToClient(url) => Refusal::Redirect(url),
        }
    }
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal::Server(error)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Page(status, message) => error_page(status, &message),
            Refusal::Redirect(url) => see_other(&url),
            Refusal::Server(error) => error.into_response(),
        }
    }
}

/// Shows the sign-in and consent page for an app's authorization request.
#[utoipa::path(get, path = "/oauth/authorize", tag = "oauth", params(AuthorizeParams),
    responses(
        (status = 200, description = "The sign-in and consent page (HTML)", content_type = "text/html", body = String),
        (status = 303, description = "Back to the app's loopback redirect_uri with `error` and `state` (RFC 6749 §4.1.2.1)"),
        (status = 400, description = "Unknown client or a redirect_uri that is not loopback: an HTML page, no redirect", content_type = "text/html", body = String),
    ))]
async fn authorize_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AuthorizeParams>, QueryRejection>,
) -> Response {
    let shown = query
        .map_err(|rejection| {
            Refusal::Page(StatusCode::BAD_REQUEST, format!("The request is malformed: {}", rejection.body_text()))
        })
        .and_then(|Query(params)| Ok(AuthorizeRequest::parse(&params)?))
        .and_then(|request| {
            // The browser's nonce is kept across pages, so two tabs of the form both stay valid.
            let nonce = form_nonce(&headers).map_or_else(|| secret::token(""), str::to_string);
            Ok(form_page(&state, &request, &nonce, "", None, StatusCode::OK)?)
        });
    shown.unwrap_or_else(IntoResponse::into_response)
}

/// What the consent form posts: the request's parameters (hidden fields), the form's token, the
/// credentials and the decision.
#[derive(Deserialize, ToSchema)]
pub struct ConsentForm {
    #[serde(flatten)]
    pub request: AuthorizeParams,
    /// The token the page was rendered with.
    pub form_token: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    /// `approve` or `deny`.
    #[schema(example = "approve")]
    pub decision: Option<String>,
}

/// The consent form's submit: checks the form's token and the password, then sends the browser
/// back to the app with a code (Approve) or `error=access_denied` (Deny).
#[utoipa::path(post, path = "/oauth/authorize", tag = "oauth",
    request_body(content = ConsentForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Back to the app's redirect_uri with `code` and `state`, or `error` and `state`"),
        (status = 400, description = "A wrong password (the form again), a stale or forged form, or an untrusted request: HTML, no redirect", content_type = "text/html", body = String),
    ))]
async fn authorize_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<ConsentForm>, FormRejection>,
) -> Response {
    consent(&state, &headers, form).await.unwrap_or_else(IntoResponse::into_response)
}

async fn consent(
    state: &AppState,
    headers: &HeaderMap,
    form: Result<Form<ConsentForm>, FormRejection>,
) -> Result<Response, Refusal> {
    let Form(form) = form.map_err(|rejection| {
        Refusal::Page(StatusCode::BAD_REQUEST, format!("The form could not be read: {}", rejection.body_text()))
    })?;
    let request = AuthorizeRequest::parse(&form.request)?;
    let key = &state.config.jwt_secret;
    let now = chrono::Utc::now().timestamp();
    let token = form.form_token.as_deref().unwrap_or_default();
    let nonce = match form_nonce(headers) {
        Some(nonce) if request.check_form_token(key, nonce, token, now)? => nonce,
        _ => {
            return Err(Refusal::Page(
                StatusCode::BAD_REQUEST,
                "This sign-in form has expired or was not sent from this page. Start again from the app.".into(),
            ));
        }
    };
    match form.decision.as_deref() {
        Some("approve") => {}
        Some("deny") => {
            return Err(Refusal::Redirect(request.error_redirect("access_denied", "the user denied the request")));
        }
        _ => return Err(Refusal::Page(StatusCode::BAD_REQUEST, "Choose Approve or Deny.".into())),
    }
    let email = form.email.unwrap_or_default();
    let (user_id, org_id, role) = match check_password(state, &email, form.password.unwrap_or_default()).await {
        Ok(found) => found,
        Err(ApiError::Unauthorized { .. }) => {
            let wrong = Some("The email or the password is wrong.");
            return Ok(form_page(state, &request, nonce, &email, wrong, StatusCode::BAD_REQUEST)?);
        }
        Err(error) => return Err(error.into()),
    };
    let scopes = request.granted_scopes(role)?;
    let code = oauth::create_code(&state.db, &request, user_id, org_id, &scopes).await?;
    tracing::info!(%user_id, %org_id, client_id = request.client.id, scope = Scope::join(&scopes), "oauth code issued");
    Ok(see_other(&request.redirect_to(&[("code", &code)])))
}

/// The nonce in the browser's form cookie, if it has one of the right form.
fn form_nonce(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == FORM_COOKIE && oauth::is_256_bits(value))
        .map(|(_, value)| value)
}

/// The form for `request`, with a fresh form token for `nonce` and the cookie that carries it.
fn form_page(
    state: &AppState,
    request: &AuthorizeRequest,
    nonce: &str,
    email: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let token = request.form_token(&state.config.jwt_secret, nonce, chrono::Utc::now().timestamp())?;
    // Browsers check `form-action` against where the form's answer redirects too, so the app's
    // loopback origin is allowed beside 'self'. A CSP source cannot name an IPv6 literal; for
    // [::1] the directive falls back to any http: target (the form's own action is fixed).
    let form_action = if request.redirect_is_ipv6() {
        "'self' http:".to_string()
    } else {
        format!("'self' {}", request.redirect_origin())
    };
    let mut response = html(status, &form_action, render_form(request, &token, email, error));
    let secure = if state.config.public_url.starts_with("https://") { "; Secure" } else { "" };
    let cookie = format!(
        "{FORM_COOKIE}={nonce}; Path=/oauth/authorize; Max-Age={FORM_SECONDS}; HttpOnly; SameSite=Strict{secure}"
    );
    let cookie = HeaderValue::try_from(cookie).map_err(ApiError::internal)?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// An HTML page with the security headers every page here carries.
fn html(status: StatusCode, form_action: &str, body: String) -> Response {
    let csp = HeaderValue::try_from(format!("{CSP_BASE}; form-action {form_action}"))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; form-action 'none'; frame-ancestors 'none'"));
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    (status, headers, body).into_response()
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "{HEAD}<h1>This sign-in cannot go on</h1>\n<p>{}</p>\n<p>Start again from the Kiln app.</p>\n</body></html>\n",
        escape(message)
    );
    html(status, "'none'", body)
}

/// 303 See Other to `url`: the browser follows with a GET whatever the method was.
fn see_other(url: &Url) -> Response {
    match HeaderValue::try_from(url.as_str()) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

const HEAD: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Sign in to Kiln</title>\n\
<style>body{font-family:system-ui,sans-serif;max-width:30rem;margin:3rem auto;padding:0 1rem;color:#222}\
label{display:block;margin:.8rem 0}input{display:block;width:100%;padding:.4rem;box-sizing:border-box}\
button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem}.error{color:#b00020;font-weight:bold}code{font-size:.9em}</style>\n\
</head><body>\n";

fn render_form(request: &AuthorizeRequest, form_token: &str, email: &str, error: Option<&str>) -> String {
    let scopes = match &request.scopes {
        Some(scopes) => scopes.iter().map(|s| scope_item(*s)).collect::<String>(),
        None => format!(
            "<li>everything your role in your organisation allows:<ul>{}</ul></li>",
            Scope::ALL.iter().map(|s| scope_item(*s)).collect::<String>()
        ),
    };
    let mut hidden = vec![
        ("client_id", request.client.id.to_string()),
        ("redirect_uri", request.redirect_uri.clone()),
        ("response_type", "code".to_string()),
        ("code_challenge", request.code_challenge.clone()),
        ("code_challenge_method", "S256".to_string()),
    ];
    if let Some(scopes) = &request.scopes {
        hidden.push(("scope", Scope::join(scopes)));
    }
    if let Some(state) = &request.state {
        hidden.push(("state", state.clone()));
    }
    hidden.push(("form_token", form_token.to_string()));
    let hidden: String = hidden
        .iter()
        .map(|(name, value)| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n", escape(value)))
        .collect();
    let error = error.map(|e| format!("<p class=\"error\">{}</p>\n", escape(e))).unwrap_or_default();
    format!(
        "{HEAD}<h1>Sign in to Kiln</h1>\n\
<p><strong>{name}</strong> (<code>{id}</code>) asks to use your Kiln account to:</p>\n<ul>{scopes}</ul>\n\
<p>Afterwards your browser returns to the app on this computer (<code>{origin}</code>).</p>\n{error}\
<form method=\"post\" action=\"/oauth/authorize\">\n{hidden}\
<label>Email <input type=\"email\" name=\"email\" autocomplete=\"username\" required value=\"{email}\"></label>\n\
<label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label>\n\
<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\n\
<button type=\"submit\" name=\"decision\" value=\"deny\" formnovalidate>Deny</button>\n\
</form>\n</body></html>\n",
        name = escape(request.client.name),
        id = escape(request.client.id),
        origin = escape(&request.redirect_origin()),
        email = escape(email),
    )
}

fn scope_item(scope: Scope) -> String {
    let what = match scope {
        Scope::JobsRead => "see your jobs and download their models",
        Scope::JobsWrite => "upload photos and start, cancel and batch jobs",
        Scope::KeysManage => "create and revoke API keys",
        Scope::WebhooksManage => "manage webhook endpoints",
    };
    format!("<li>{what} (<code>{}</code>)</li>", scope.as_str())
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A token request (RFC 6749 §4.1.3 and §6), form-encoded.
#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    /// `authorization_code` or `refresh_token`.
    #[schema(example = "authorization_code")]
    pub grant_type: Option<String>,
    #[schema(example = "kiln-cli")]
    pub client_id: Option<String>,
    /// For `authorization_code`.
    pub code: Option<String>,
    /// For `authorization_code`: exactly the one sent to `/oauth/authorize`.
    pub redirect_uri: Option<String>,
    /// For `authorization_code`: the PKCE verifier whose S256 is the code's challenge.
    pub code_verifier: Option<String>,
    /// For `refresh_token`.
    pub refresh_token: Option<String>,
    /// For `refresh_token`: if given, the scopes of the grant (a refresh cannot change them).
    pub scope: Option<String>,
}

/// Trades an authorization code (with its PKCE verifier) or a refresh token for tokens. A
/// refresh token rotates: the one presented is spent, and presenting it again revokes the
/// session. Errors follow RFC 6749 §5.2.
#[utoipa::path(post, path = "/oauth/token", tag = "oauth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens (RFC 6749 §5.1)", body = TokenPair),
        (status = 400, description = "RFC 6749 §5.2: `invalid_request`, `invalid_client`, `invalid_grant`, `unsupported_grant_type`, `invalid_scope`", body = OAuthErrorBody),
    ))]
async fn token(
    State(state): State<AppState>,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Result<impl IntoResponse, OAuthError> {
    let Form(form) = form.map_err(|rejection| OAuthError::invalid_request(rejection.body_text()))?;
    let grant_type = required(&form.grant_type, "grant_type")?;
    if !matches!(grant_type, "authorization_code" | "refresh_token") {
        return Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            format!("grant_type {grant_type} is not supported"),
        ));
    }
    let client_id = known_client(&form.client_id)?;
    let pair = if grant_type == "authorization_code" {
        authorization_code(&state, &form, client_id).await?
    } else {
        refresh(&state, &form, client_id).await?
    };
    let headers = [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")];
    Ok((headers, Json(pair)))
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, OAuthError> {
    value.as_deref().filter(|v| !v.is_empty()).ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
}

fn known_client(client_id: &Option<String>) -> Result<&'static str, OAuthError> {
    let client_id = required(client_id, "client_id")?;
    oauth::client(client_id).map(|c| c.id).ok_or_else(|| {
        let known = CLIENTS.iter().map(|c| c.id).collect::<Vec<_>>().join(", ");
        OAuthError::new(ErrorCode::InvalidClient, format!("unknown client_id (known: {known})"))
    })
}

async fn authorization_code(state: &AppState, form: &TokenRequest, client_id: &str) -> Result<TokenPair, OAuthError> {
    let exchange = Exchange {
        code: required(&form.code, "code")?,
        client_id,
        redirect_uri: required(&form.redirect_uri, "redirect_uri")?,
        code_verifier: required(&form.code_verifier, "code_verifier")?,
    };
    if !oauth::is_verifier(exchange.code_verifier) {
        return Err(OAuthError::invalid_request(
            "code_verifier must be 43 to 128 unreserved characters (RFC 7636 §4.1)",
        ));
    }
    oauth::redeem_code(&state.db, &state.config.jwt_secret, &exchange).await
}

async fn refresh(state: &AppState, form: &TokenRequest, client_id: &str) -> Result<TokenPair, OAuthError> {
    let refresh_token = required(&form.refresh_token, "refresh_token")?;
    let asked = form
        .scope
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(Scope::parse_list)
        .transpose()
        .map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e))?;
    let mut tx = state.db.begin().await?;
    match tokens::rotate(&mut tx, &state.config.jwt_secret, refresh_token, Some(client_id)).await {
        Ok(pair) if asked.as_ref().is_some_and(|asked| Scope::join(asked) != pair.scope) => {
            tx.rollback().await?;
            Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "a refresh keeps the grant's scopes; authorize again for others",
            ))
        }
        Ok(pair) => {
            tx.commit().await?;
            Ok(pair)
        }
        Err(error) => {
            // A reuse revokes the family: that must be committed though the request is refused.
            tx.commit().await?;
            match error {
                ApiError::Unauthorized { message, .. } => Err(OAuthError::invalid_grant(message)),
                other => Err(other.into()),
            }
        }
    }
}

/// A revocation request (RFC 7009 §2.1), form-encoded.
#[derive(Deserialize, ToSchema)]
pub struct RevokeRequest {
    /// A refresh token: its whole session (family) is revoked.
    pub token: Option<String>,
    #[schema(example = "kiln-cli")]
    pub client_id: Option<String>,
}

/// Revokes a refresh token's session (RFC 7009). An unknown or already invalid token is not an
/// error. Access tokens are short-lived JWTs and expire on their own.
#[utoipa::path(post, path = "/oauth/revoke", tag = "oauth",
    request_body(content = RevokeRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, description = "RFC 6749 §5.2: `invalid_request`, `invalid_client` (unknown client, or the token is another client's)", body = OAuthErrorBody),
    ))]
async fn revoke(
    State(state): State<AppState>,
    form: Result<Form<RevokeRequest>, FormRejection>,
) -> Result<StatusCode, OAuthError> {
    let Form(form) = form.map_err(|rejection| OAuthError::invalid_request(rejection.body_text()))?;
    let client_id = known_client(&form.client_id)?;
    let token = required(&form.token, "token")?;
    match oauth::refresh_token_client(&state.db, token).await? {
        None => {}
        Some(owner) if owner.as_deref() == Some(client_id) => {
            let mut connection = state.db.acquire().await.map_err(ApiError::from)?;
            tokens::revoke(&mut connection, token).await?;
            tracing::info!(client_id, "oauth refresh family revoked");
        }
        Some(_) => return Err(OAuthError::new(ErrorCode::InvalidClient, "the token was not issued to this client")),
    }
    Ok(StatusCode::OK)
}

/// The authorization server's metadata (RFC 8414 §2).
#[derive(Serialize, ToSchema)]
pub struct ServerMetadata {
    #[schema(example = "https://api.kiln.example")]
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub revocation_endpoint: String,
    pub response_types_supported: Vec<&'static str>,
    pub grant_types_supported: Vec<&'static str>,
    pub code_challenge_methods_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    pub scopes_supported: Vec<&'static str>,
}

/// Where the OAuth endpoints are and what they support (RFC 8414).
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth",
    responses((status = 200, description = "RFC 8414 metadata", body = ServerMetadata)))]
async fn metadata(State(state): State<AppState>) -> Json<ServerMetadata> {
    let issuer = state.config.public_url.trim_end_matches('/').to_string();
    Json(ServerMetadata {
        authorization_endpoint: format!("{issuer}/oauth/authorize"),
        token_endpoint: format!("{issuer}/oauth/token"),
        revocation_endpoint: format!("{issuer}/oauth/revoke"),
        issuer,
        response_types_supported: vec!["code"],
        grant_types_supported: vec!["authorization_code", "refresh_token"],
        code_challenge_methods_supported: vec!["S256"],
        // Public clients: no client secret, PKCE instead.
        token_endpoint_auth_methods_supported: vec!["none"],
        revocation_endpoint_auth_methods_supported: vec!["none"],
        scopes_supported: Scope::ALL.iter().map(|s| s.as_str()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_both_quotes() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
