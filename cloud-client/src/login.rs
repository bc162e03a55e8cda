//! Desktop login and the session it leaves: OAuth 2.0's authorization-code grant with PKCE S256
//! (RFC 6749, RFC 7636) through the system browser and a loopback redirect on `127.0.0.1` with
//! a port the system picks (RFC 8252), endpoints discovered from the server's RFC 8414 metadata;
//! a [`Session`] that hands out a valid access token, refreshing it (shortly before it expires,
//! or after a `token_expired` refusal) and storing the rotated refresh token; and logout, which
//! revokes the refresh token at the server (RFC 7009) before forgetting it.
//!
//! `KILN_API_KEY` overrides all of it: with it set, [`Session::open`] uses that key and no login.
//!
//! The OAuth requests go through the `oauth2` crate over this crate's own reqwest client (the
//! crate's reqwest integration pins another major version of reqwest). Revocation is one form
//! POST, written here: `oauth2` refuses a revocation URL that is not https, which the loopback
//! test server is; instead every endpoint must share the server's origin, so the tokens travel
//! exactly as securely as every other call to the server the person chose.

use std::time::Duration;

use chrono::Utc;
use oauth2::basic::{BasicClient, BasicErrorResponse, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, EndpointNotSet, EndpointSet, PkceCodeChallenge, RedirectUrl,
    RefreshToken, RequestTokenError, TokenResponse, TokenUrl,
};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, OnceCell};
use url::Url;

use crate::client::{Client, Credential, REQUEST_ID};
use crate::error::{CloudError, ErrorKind};
use crate::token_store::{StoreError, StoreKind, StoredTokens, TokenStore};

/// The OAuth client id of the command line (the server's `oauth::CLIENTS`).
pub const CLI_CLIENT_ID: &str = "kiln-cli";
/// The OAuth client id of the desktop app.
pub const DESKTOP_CLIENT_ID: &str = "kiln-desktop";

/// The environment variable whose API key replaces any login (scripts, CI, headless servers).
pub const API_KEY_ENV: &str = "KILN_API_KEY";

/// Where RFC 8414 puts the authorization server's metadata.
const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// The loopback redirect's path.
const CALLBACK_PATH: &str = "/callback";

/// How long [`login`] waits for the browser by default: time to find a password and approve,
/// not so long that a forgotten terminal keeps a port open for hours.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// An access token is refreshed this long before it expires, so a request sent with it does not
/// arrive just after (clock skew, a slow link).
const REFRESH_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// The loopback listener reads at most this much of a request: a browser's GET with a code and a
/// state and its headers fits in a fraction of it.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// A connection to the loopback listener that has not sent its request within this long is
/// dropped (a browser sends it at once; a stray connection must not hold the login up).
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("not signed in to {server}: run `kiln login` (or set {API_KEY_ENV})")]
    NotLoggedIn { server: String },
    /// The refresh token was refused (expired, revoked, or reused elsewhere).
    #[error("the sign-in to {server} has expired or was revoked: run `kiln login` again")]
    LoginAgain { server: String },
    #[error("the sign-in was not completed in the browser: {error}{}", description_suffix(.description))]
    Denied { error: String, description: String },
    #[error("no answer from the browser within {} s: run `kiln login` again", .0.as_secs())]
    TimedOut(Duration),
    /// The authorization server refused a request (RFC 6749 §5.2 error).
    #[error("the server refused the login: {error}{}", description_suffix(.description))]
    OAuth { error: String, description: String },
    #[error("cannot listen on 127.0.0.1 for the browser's answer: {0}")]
    Listener(std::io::Error),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn description_suffix(description: &str) -> String {
    if description.is_empty() { String::new() } else { format!(" ({description})") }
}

impl LoginError {
    /// The kind of failure, for the CLI's exit codes: every "sign in (again)" case is
    /// [`ErrorKind::Unauthorized`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            LoginError::NotLoggedIn { .. } | LoginError::LoginAgain { .. } | LoginError::Denied { .. } => {
                ErrorKind::Unauthorized
            }
            LoginError::TimedOut(_) | LoginError::OAuth { .. } => ErrorKind::Invalid,
            LoginError::Listener(_) | LoginError::Store(_) => ErrorKind::Io,
            LoginError::Cloud(error) => error.kind(),
        }
    }
}

/// The authorization server's metadata (RFC 8414 §2), the fields used here.
#[derive(Clone, Debug, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    revocation_endpoint: Url,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
}

type OAuthClient = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

impl Metadata {
    /// Fetches and checks the metadata of `client`'s server: the issuer is the server itself
    /// (RFC 8414 §3.3), every endpoint is on its origin, and S256 is offered.
    async fn discover(client: &Client) -> Result<Metadata, CloudError> {
        let metadata: Metadata = client.get(METADATA_PATH).await?;
        let server = client.server();
        let bad = |what: String| CloudError::Protocol(format!("the server's OAuth metadata is not usable: {what}"));
        if metadata.issuer.trim_end_matches('/') != server.as_str().trim_end_matches('/') {
            return Err(bad(format!("its issuer {} is not {}", metadata.issuer, server)));
        }
        for endpoint in [&metadata.authorization_endpoint, &metadata.token_endpoint, &metadata.revocation_endpoint] {
            if endpoint.origin() != server.origin() {
                return Err(bad(format!("{endpoint} is not on {}", server.origin().ascii_serialization())));
            }
        }
        if !metadata.code_challenge_methods_supported.iter().any(|m| m == "S256") {
            return Err(bad("it does not offer PKCE S256".into()));
        }
        Ok(metadata)
    }

    fn oauth_client(&self, client_id: &str) -> OAuthClient {
        BasicClient::new(ClientId::new(client_id.to_string()))
            .set_auth_uri(AuthUrl::from_url(self.authorization_endpoint.clone()))
            .set_token_uri(TokenUrl::from_url(self.token_endpoint.clone()))
    }
}

/// What [`login`] is asked for.
#[derive(Clone, Debug)]
pub struct LoginOptions {
    /// [`CLI_CLIENT_ID`] or [`DESKTOP_CLIENT_ID`].
    pub client_id: &'static str,
    /// How long to wait for the browser.
    pub timeout: Duration,
}

impl Default for LoginOptions {
    fn default() -> Self {
        LoginOptions { client_id: CLI_CLIENT_ID, timeout: DEFAULT_LOGIN_TIMEOUT }
    }
}

/// Signs in to `client`'s server through a browser and returns the tokens (not yet stored: see
/// [`TokenStore::save`] and [`server_key`]). `opener` is handed the authorization URL once the
/// loopback listener is ready: [`open_browser`] for a person (say the URL too, in case no
/// browser opens); a test plays the browser there.
pub async fn login(
    client: &Client,
    options: &LoginOptions,
    opener: impl FnOnce(&Url),
) -> Result<StoredTokens, LoginError> {
    let metadata = Metadata::discover(client).await?;
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await.map_err(LoginError::Listener)?;
    let port = listener.local_addr().map_err(LoginError::Listener)?.port();
    let redirect = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
    let redirect = RedirectUrl::new(redirect).map_err(|e| CloudError::Protocol(e.to_string()))?;
    let oauth = metadata.oauth_client(options.client_id).set_redirect_uri(redirect);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (authorize_url, state) = oauth.authorize_url(CsrfToken::new_random).set_pkce_challenge(challenge).url();
    tracing::info!(port, client_id = options.client_id, "waiting for the browser's sign-in");
    opener(&authorize_url);
    let code = tokio::time::timeout(options.timeout, receive_code(&listener, &state))
        .await
        .map_err(|_| LoginError::TimedOut(options.timeout))??;
    let http = client.storage();
    let response = oauth
        .exchange_code(code)
        .set_pkce_verifier(verifier)
        .request_async(&|request| send(http, request))
        .await
        .map_err(|e| token_error(e, client, false))?;
    tokens(options.client_id, &response, None)
}

/// Opens `url` in the system browser: `xdg-open` on Linux and the BSDs, `open` on macOS, the
/// URL protocol handler on Windows (not `cmd /c start`: cmd would split the URL at its `&`s).
pub fn open_browser(url: &Url) -> std::io::Result<()> {
    let mut command = if cfg!(target_os = "macos") {
        std::process::Command::new("open")
    } else if cfg!(windows) {
        let mut command = std::process::Command::new("rundll32.exe");
        command.arg("url.dll,FileProtocolHandler");
        command
    } else {
        std::process::Command::new("xdg-open")
    };
    command
        .arg(url.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(drop)
}

/// The environment variable naming the browser to open (a command; `%s` stands for the URL, else
/// the URL is its last argument): the convention xdg-open, git and Python's webbrowser follow.
/// Tests set it to a script that plays the browser.
pub const BROWSER_ENV: &str = "BROWSER";

/// Opens `url` without waiting for the browser: [`BROWSER_ENV`]'s command when it is set (and not
/// blank), else the platform's opener ([`open_browser`]). Front ends say the URL too, in case no
/// browser opens.
pub fn open_in_browser(url: &Url) -> std::io::Result<()> {
    match std::env::var(BROWSER_ENV) {
        Ok(command) if !command.trim().is_empty() => run_browser(&command, url),
        _ => open_browser(url),
    }
}

/// Runs the `BROWSER` command `command` on `url` (split on whitespace; `%s` replaced by the URL,
/// else the URL appended).
fn run_browser(command: &str, url: &Url) -> std::io::Result<()> {
    let words = browser_words(command, url);
    let Some((program, arguments)) = words.split_first() else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{BROWSER_ENV} is empty")));
    };
    std::process::Command::new(program)
        .args(arguments)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(drop)
}

fn browser_words(command: &str, url: &Url) -> Vec<String> {
    let mut words: Vec<String> = command.split_whitespace().map(str::to_string).collect();
    if words.iter().any(|w| w.contains("%s")) {
        for word in &mut words {
            *word = word.replace("%s", url.as_str());
        }
    } else {
        words.push(url.to_string());
    }
    words
}

/// The store key for `client`'s server: its base URL without the trailing `/`.
pub fn server_key(client: &Client) -> String {
    client.server().as_str().trim_end_matches('/').to_string()
}

/// Serves the loopback listener until the browser brings this login's answer: a code, or an
/// error. Requests for other paths, and answers with another state (a page elsewhere poking the
/// port), get an error page and are otherwise ignored.
async fn receive_code(listener: &TcpListener, state: &CsrfToken) -> Result<AuthorizationCode, LoginError> {
    loop {
        let (stream, _) = listener.accept().await.map_err(LoginError::Listener)?;
        match answer(stream, state).await {
            Ok(Some(outcome)) => return outcome,
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "a loopback connection failed"),
        }
    }
}

/// Reads one request off `stream` and answers it; the login's outcome if it carried one.
async fn answer(
    mut stream: TcpStream,
    state: &CsrfToken,
) -> std::io::Result<Option<Result<AuthorizationCode, LoginError>>> {
    let target = tokio::time::timeout(REQUEST_READ_TIMEOUT, read_request_target(&mut stream))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let (status, page, outcome) = match Callback::parse(&target) {
        None => ("404 Not Found", page("Not found", "This address only takes Kiln's sign-in answer."), None),
        Some(callback) if !callback.state_is(state) => {
            tracing::warn!("the loopback redirect got an answer for another sign-in: ignored");
            (
                "400 Bad Request",
                page("Not this sign-in", "This answer is not for the sign-in Kiln is waiting for."),
                None,
            )
        }
        Some(Callback { code: Some(code), .. }) => (
            "200 OK",
            page("Signed in to Kiln", "You can close this tab and go back to Kiln."),
            Some(Ok(AuthorizationCode::new(code))),
        ),
        Some(Callback { error, description, .. }) => {
            let error = error.unwrap_or_else(|| "invalid_request".into());
            let description = description.unwrap_or_default();
            let text =
                format!("Kiln was not signed in ({}). You can close this tab.", description_or(&error, &description));
            (
                "400 Bad Request",
                page("Sign-in not completed", &text),
                Some(Err(LoginError::Denied { error, description })),
            )
        }
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nContent-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n\
         Referrer-Policy: no-referrer\r\nConnection: close\r\n\r\n",
        page.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(page.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(outcome)
}

fn description_or<'a>(error: &'a str, description: &'a str) -> &'a str {
    if description.is_empty() { error } else { description }
}

/// The request target (`/callback?code=…`) of the HTTP request on `stream`.
async fn read_request_target(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return Err(std::io::Error::other("request head too long"));
        }
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default();
    match line.split(' ').collect::<Vec<_>>()[..] {
        ["GET", target, version] if version.starts_with("HTTP/1.") => Ok(target.to_string()),
        _ => Err(std::io::Error::other("not an HTTP/1.x GET")),
    }
}

/// The redirect's parameters (RFC 6749 §4.1.2).
#[derive(Debug, Default, PartialEq)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    description: Option<String>,
}

impl Callback {
    /// The parameters of a request for [`CALLBACK_PATH`]; None for any other path.
    fn parse(target: &str) -> Option<Callback> {
        let url = Url::parse("http://127.0.0.1").ok()?.join(target).ok()?;
        if url.path() != CALLBACK_PATH {
            return None;
        }
        let mut callback = Callback::default();
        for (name, value) in url.query_pairs() {
            let slot = match &*name {
                "code" => &mut callback.code,
                "state" => &mut callback.state,
                "error" => &mut callback.error,
                "error_description" => &mut callback.description,
                _ => continue,
            };
            *slot = Some(value.into_owned());
        }
        Some(callback)
    }

    fn state_is(&self, expected: &CsrfToken) -> bool {
        self.state.as_deref() == Some(expected.secret().as_str())
    }
}

/// A small page for the browser tab, `message` escaped.
fn page(title: &str, message: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:30rem;margin:4rem auto;padding:0 1rem;color:#222}}</style>\
</head><body>\n<h1>{title}</h1>\n<p>{}</p>\n</body></html>\n",
        escape(message),
        title = escape(title)
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Sends one OAuth request with this crate's reqwest client. 5xx and 429 come back as the
/// server's [`CloudError`]; other answers go to `oauth2` to read (400 is how RFC 6749 refuses).
async fn send(http: &reqwest::Client, request: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, CloudError> {
    let request =
        reqwest::Request::try_from(request).map_err(|e| CloudError::Protocol(format!("bad OAuth request: {e}")))?;
    let url = request.url().clone();
    let response = http.execute(request).await.map_err(|e| CloudError::network(&url, e))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|e| CloudError::network(&url, e))?;
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let request_id = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_string);
        return Err(CloudError::from_response(status.as_u16(), request_id, &body));
    }
    let mut answer = oauth2::http::Response::builder().status(status);
    for (name, value) in &headers {
        answer = answer.header(name, value);
    }
    answer.body(body.to_vec()).map_err(|e| CloudError::Protocol(format!("bad OAuth answer: {e}")))
}

/// A token endpoint failure as a [`LoginError`]. A refused refresh means signing in again.
/// Parse failures name only the field, never the body (it may hold tokens).
fn token_error(error: RequestTokenError<CloudError, BasicErrorResponse>, client: &Client, refresh: bool) -> LoginError {
    match error {
        RequestTokenError::ServerResponse(response)
            if refresh && *response.error() == BasicErrorResponseType::InvalidGrant =>
        {
            LoginError::LoginAgain { server: server_key(client) }
        }
        RequestTokenError::ServerResponse(response) => LoginError::OAuth {
            error: response.error().as_ref().to_string(),
            description: response.error_description().cloned().unwrap_or_default(),
        },
        RequestTokenError::Request(error) => LoginError::Cloud(error),
        RequestTokenError::Parse(error, _) => LoginError::Cloud(CloudError::Protocol(format!(
            "the token endpoint's answer is not an OAuth token response (at `{}`)",
            error.path()
        ))),
        RequestTokenError::Other(text) => LoginError::Cloud(CloudError::Protocol(text)),
    }
}

/// The record to store from a token response; a refresh that names no scope keeps `scope`.
fn tokens(client_id: &str, response: &BasicTokenResponse, scope: Option<&str>) -> Result<StoredTokens, LoginError> {
    let refresh_token = response
        .refresh_token()
        .ok_or_else(|| CloudError::Protocol("the token endpoint issued no refresh token".into()))?;
    let lifetime = response.expires_in().unwrap_or_default();
    let granted = response.scopes().map(|scopes| scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "));
    Ok(StoredTokens {
        client_id: client_id.to_string(),
        access_token: response.access_token().secret().clone(),
        refresh_token: refresh_token.secret().clone(),
        expires_at: Utc::now() + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::zero()),
        scope: granted.or_else(|| scope.map(str::to_string)).unwrap_or_default(),
    })
}

/// Where a [`Session`]'s credential comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// An API key from [`API_KEY_ENV`]: no login, no refresh.
    ApiKeyFromEnv,
    /// A login's tokens, kept in this store.
    Login(StoreKind),
}

impl std::fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::ApiKeyFromEnv => write!(f, "the API key in {API_KEY_ENV}"),
            CredentialSource::Login(store) => write!(f, "a login kept in {store}"),
        }
    }
}

/// A [`Client`] with a credential that stays valid: an API key, or a login's access token that is
/// refreshed when needed (the rotated refresh token stored at once). Share it by reference;
/// concurrent calls refresh once.
pub struct Session {
    client: Client,
    auth: Auth,
}

enum Auth {
    ApiKey(String),
    Login(Box<LoginState>),
}

struct LoginState {
    store: TokenStore,
    server: String,
    tokens: Mutex<StoredTokens>,
    metadata: OnceCell<Metadata>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("client", &self.client).field("source", &self.source()).finish()
    }
}

impl Session {
    /// The session for `client`'s server: [`API_KEY_ENV`]'s key when it is set (and not empty),
    /// otherwise the login stored in `store` ([`LoginError::NotLoggedIn`] without one).
    pub async fn open(client: Client, store: TokenStore) -> Result<Session, LoginError> {
        match std::env::var(API_KEY_ENV) {
            Ok(key) if !key.trim().is_empty() => Ok(Session::with_api_key(client, key.trim().to_string())),
            _ => Session::resume(client, store).await,
        }
    }

    /// A session on an API key.
    pub fn with_api_key(client: Client, key: String) -> Session {
        client.set_credential(Some(Credential::ApiKey(key.clone())));
        Session { client, auth: Auth::ApiKey(key) }
    }

    /// The session of the login stored in `store` for `client`'s server.
    pub async fn resume(client: Client, store: TokenStore) -> Result<Session, LoginError> {
        let server = server_key(&client);
        let tokens = store.load(&server).await?.ok_or_else(|| LoginError::NotLoggedIn { server: server.clone() })?;
        client.set_credential(Some(Credential::AccessToken(tokens.access_token.clone())));
        let login = LoginState { store, server, tokens: Mutex::new(tokens), metadata: OnceCell::new() };
        Ok(Session { client, auth: Auth::Login(Box::new(login)) })
    }

    /// The client, with the current credential. Prefer [`Session::call`], which refreshes.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn source(&self) -> CredentialSource {
        match &self.auth {
            Auth::ApiKey(_) => CredentialSource::ApiKeyFromEnv,
            Auth::Login(login) => CredentialSource::Login(login.store.kind().clone()),
        }
    }

    /// Runs `call` with a valid credential: the access token is refreshed first when it expires
    /// within a minute, and once more, with `call` repeated, when the server still answers
    /// `token_expired`.
    pub async fn call<T>(&self, call: impl AsyncFn(&Client) -> Result<T, CloudError>) -> Result<T, LoginError> {
        let Auth::Login(login) = &self.auth else { return Ok(call(&self.client).await?) };
        let used = self.fresh_token(login).await?;
        match call(&self.client).await {
            Err(error) if error.code() == Some("token_expired") => {
                tracing::debug!("the server says the access token expired: refreshing");
                self.refresh_unless_done(login, &used).await?;
                Ok(call(&self.client).await?)
            }
            other => Ok(other?),
        }
    }

    /// A valid access token (refreshed when it expires within a minute); for an API-key session,
    /// the key.
    pub async fn access_token(&self) -> Result<String, LoginError> {
        match &self.auth {
            Auth::ApiKey(key) => Ok(key.clone()),
            Auth::Login(login) => self.fresh_token(login).await,
        }
    }

    /// Refreshes now, whatever the access token's expiry; the new tokens are stored. Nothing to do
    /// for an API key.
    pub async fn refresh(&self) -> Result<(), LoginError> {
        let Auth::Login(login) = &self.auth else { return Ok(()) };
        let mut tokens = login.tokens.lock().await;
        self.rotate(login, &mut tokens).await
    }

    /// The stored access token, refreshed first if it is (about to be) expired.
    async fn fresh_token(&self, login: &LoginState) -> Result<String, LoginError> {
        let mut tokens = login.tokens.lock().await;
        if tokens.expires_at - REFRESH_MARGIN <= Utc::now() {
            self.rotate(login, &mut tokens).await?;
        }
        Ok(tokens.access_token.clone())
    }

    /// Refreshes after `rejected` was refused, unless another call already replaced it.
    async fn refresh_unless_done(&self, login: &LoginState, rejected: &str) -> Result<(), LoginError> {
        let mut tokens = login.tokens.lock().await;
        if tokens.access_token == rejected { self.rotate(login, &mut tokens).await } else { Ok(()) }
    }

    /// Trades the refresh token for new tokens and stores them. If another process (another
    /// `kiln` command) rotated the stored tokens meanwhile, its fresh ones are taken instead:
    /// presenting the spent refresh token would revoke the whole session.
    async fn rotate(&self, login: &LoginState, tokens: &mut StoredTokens) -> Result<(), LoginError> {
        if let Some(stored) = login.store.load(&login.server).await?
            && stored.refresh_token != tokens.refresh_token
            && stored.expires_at - REFRESH_MARGIN > Utc::now()
        {
            tracing::debug!("the stored tokens were refreshed elsewhere: using them");
            *tokens = stored;
            self.client.set_credential(Some(Credential::AccessToken(tokens.access_token.clone())));
            return Ok(());
        }
        let metadata = login.metadata.get_or_try_init(|| Metadata::discover(&self.client)).await?;
        let oauth = metadata.oauth_client(&tokens.client_id);
        let http = self.client.storage();
        let refresh_token = RefreshToken::new(tokens.refresh_token.clone());
        let response = oauth
            .exchange_refresh_token(&refresh_token)
            .request_async(&|request| send(http, request))
            .await
            .map_err(|e| token_error(e, &self.client, true))?;
        let fresh = self::tokens(&tokens.client_id, &response, Some(&tokens.scope))?;
        login.store.save(&login.server, &fresh).await?;
        tracing::info!(server = %login.server, "access token refreshed");
        *tokens = fresh;
        self.client.set_credential(Some(Credential::AccessToken(tokens.access_token.clone())));
        Ok(())
    }
}

/// What [`logout`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Logout {
    /// The refresh token was revoked at the server and removed from the store.
    Revoked(StoreKind),
    /// There was no login to end.
    NotLoggedIn,
}

/// Ends the login to `client`'s server: revokes its refresh token at the server (RFC 7009, which
/// ends the whole session: every token rotated from the same login) and deletes it from `store`.
/// If the server cannot be reached, the tokens stay stored and the error says why, so the logout
/// can be tried again rather than leaving a live token forgotten.
pub async fn logout(client: &Client, store: &TokenStore) -> Result<Logout, LoginError> {
    let server = server_key(client);
    let Some(tokens) = store.load(&server).await? else { return Ok(Logout::NotLoggedIn) };
    let metadata = Metadata::discover(client).await?;
    revoke(client, &metadata.revocation_endpoint, &tokens).await?;
    store.delete(&server).await?;
    tracing::info!(%server, "logged out");
    Ok(Logout::Revoked(store.kind().clone()))
}

/// RFC 7009 §2.1: a form POST of the refresh token; 200 whether or not the token was still
/// valid, RFC 6749 §5.2's error otherwise.
async fn revoke(client: &Client, endpoint: &Url, tokens: &StoredTokens) -> Result<(), LoginError> {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", &tokens.refresh_token)
        .append_pair("token_type_hint", "refresh_token")
        .append_pair("client_id", &tokens.client_id)
        .finish();
    let request = oauth2::http::Request::builder()
        .method("POST")
        .uri(endpoint.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(form.into_bytes())
        .map_err(|e| CloudError::Protocol(format!("bad revocation request: {e}")))?;
    let response = send(client.storage(), request).await?;
    if response.status().is_success() {
        return Ok(());
    }
    match serde_json::from_slice::<BasicErrorResponse>(response.body()) {
        Ok(refusal) => Err(LoginError::OAuth {
            error: refusal.error().as_ref().to_string(),
            description: refusal.error_description().cloned().unwrap_or_default(),
        }),
        Err(_) => Err(CloudError::from_response(response.status().as_u16(), None, response.body()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_are_read_from_the_redirect_target() {
        let callback = Callback::parse("/callback?code=c%2B1&state=s&other=x").unwrap();
        assert_eq!(callback, Callback { code: Some("c+1".into()), state: Some("s".into()), ..Callback::default() });
        assert!(callback.state_is(&CsrfToken::new("s".into())));
        assert!(!callback.state_is(&CsrfToken::new("t".into())));
        let refused = Callback::parse("/callback?error=access_denied&error_description=no%20thanks&state=s").unwrap();
        assert_eq!(refused.error.as_deref(), Some("access_denied"));
        assert_eq!(refused.description.as_deref(), Some("no thanks"));
        assert!(Callback::parse("/favicon.ico").is_none());
        assert!(!Callback::parse("/callback?code=c").unwrap().state_is(&CsrfToken::new("s".into())));
    }

    #[test]
    fn browser_commands_take_the_url_in_place_of_percent_s_or_last() {
        let url = Url::parse("https://checkout.stripe.com/c/pay/cs_test_1").unwrap();
        assert_eq!(browser_words("firefox --new-tab", &url), ["firefox", "--new-tab", url.as_str()]);
        assert_eq!(browser_words("open -u %s --now", &url), ["open", "-u", url.as_str(), "--now"]);
    }

    #[test]
    fn pages_escape_what_they_echo() {
        let html = page("Sign-in not completed", "<script>alert('x')</script> & \"more\"");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;"), "{html}");
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn sign_in_failures_are_unauthorized_for_the_exit_code() {
        assert_eq!(LoginError::LoginAgain { server: "https://a".into() }.kind(), ErrorKind::Unauthorized);
        assert_eq!(LoginError::NotLoggedIn { server: "https://a".into() }.kind(), ErrorKind::Unauthorized);
        let network = CloudError::Network { url_host: "a".into(), detail: "refused".into() };
        assert_eq!(LoginError::Cloud(network).kind(), ErrorKind::Network);
        let again = LoginError::LoginAgain { server: "https://api.kiln.example".into() }.to_string();
        assert!(again.contains("kiln login"), "{again}");
    }

    #[tokio::test]
    async fn the_listener_answers_the_right_state_and_ignores_others() {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = CsrfToken::new("right".into());
        let browser = tokio::spawn(async move {
            let get = |target: &'static str| async move {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
                stream.write_all(request.as_bytes()).await.unwrap();
                let mut answer = String::new();
                stream.read_to_string(&mut answer).await.unwrap();
                answer
            };
            let stray = get("/favicon.ico").await;
            let forged = get("/callback?code=evil&state=wrong").await;
            let real = get("/callback?code=good&state=right").await;
            (stray, forged, real)
        });
        let code = receive_code(&listener, &state).await.unwrap();
        assert_eq!(code.secret(), "good");
        let (stray, forged, real) = browser.await.unwrap();
        assert!(stray.starts_with("HTTP/1.1 404"), "{stray}");
        assert!(forged.starts_with("HTTP/1.1 400") && forged.contains("not for the sign-in"), "{forged}");
        assert!(real.starts_with("HTTP/1.1 200") && real.contains("You can close this tab"), "{real}");
    }
}
