//! The HTTP client of the hosted API: one [`Client`] (cheap to clone) holding the server's URL,
//! the credential, the retry policy and two connection pools, one for the API (bearer auth, no
//! redirects) and one for presigned storage URLs (no auth at all).
//!
//! Every call goes through [`Client::get`], [`Client::post`] or [`Client::delete`], which retry
//! connection failures, 5xx and 429 (honouring `Retry-After`) with the [`RetryPolicy`]. A `POST`
//! or `DELETE` carries an `Idempotency-Key` made once per call and sent unchanged with each of its
//! retries, so the server runs it once and replays its first answer to the others. Refusals come
//! back as [`CloudError::Api`] with the server's `code` and `x-request-id`.
//!
//! TLS is rustls on *ring*, configured here and handed to reqwest, so the library never installs
//! a process-wide crypto provider; certificates are checked by the operating system's verifier
//! (`rustls-platform-verifier`, which reqwest's rustls build already compiles): the system's roots
//! and policies on Linux, macOS and Windows, corporate roots included.

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;
use uuid::Uuid;

use crate::error::CloudError;
use crate::retry::{RetryPolicy, parse_retry_after, retryable_status};

/// The header the server reads to replay a repeated request's first answer.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The header every answer of the server names its request with.
pub const REQUEST_ID: &str = "x-request-id";

/// What a whole API call (connect, send, answer) may take unless the config says otherwise: API
/// answers come in well under a second; 30 s covers a slow link without leaving a person staring
/// at a hung command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The code of the server's 409 to a repeat of a request still running under the same key: the
/// first try's connection died but the server is still working on it, so waiting and retrying
/// gets its answer.
const IDEMPOTENCY_IN_PROGRESS: &str = "idempotency_in_progress";

/// How a request proves who is calling; both go as `Authorization: Bearer`.
#[derive(Clone)]
pub enum Credential {
    /// A `kiln_live_…` or `kiln_test_…` key (scripts, CI, `KILN_API_KEY`).
    ApiKey(String),
    /// An access token from the login flow.
    AccessToken(String),
}

impl Credential {
    fn secret(&self) -> &str {
        match self {
            Credential::ApiKey(secret) | Credential::AccessToken(secret) => secret,
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
            Credential::AccessToken(_) => f.write_str("AccessToken(<redacted>)"),
        }
    }
}

/// What a [`Client`] is made from.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The API's base URL, e.g. `https://api.kiln.example` (a path prefix is kept).
    pub server: Url,
    pub credential: Option<Credential>,
    pub retry: RetryPolicy,
    /// The longest one try of an API call may take (connect to last byte). Event streams and
    /// storage transfers use it only as their connect and read-idle timeout.
    pub timeout: Duration,
}

impl ClientConfig {
    /// `server` with no credential, the default retries and [`DEFAULT_TIMEOUT`].
    pub fn new(server: Url) -> ClientConfig {
        ClientConfig { server, credential: None, retry: RetryPolicy::default(), timeout: DEFAULT_TIMEOUT }
    }
}

/// The hosted API's client. Clones share connections and the credential.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// Ends with `/`, so relative paths join under it.
    server: Url,
    api: reqwest::Client,
    storage: reqwest::Client,
    retry: RetryPolicy,
    timeout: Duration,
    credential: RwLock<Option<Credential>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("server", &self.inner.server.as_str()).finish_non_exhaustive()
    }
}

/// One try's outcome, for [`Client::with_retries`].
pub(crate) enum Attempt<T> {
    Done(T),
    /// Worth another try, after the server's `Retry-After` if it gave one.
    Retry(CloudError, Option<Duration>),
    Fail(CloudError),
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, CloudError> {
        let server = base_url(config.server)?;
        let user_agent = concat!("kiln-cloud/", env!("CARGO_PKG_VERSION"));
        let api = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config()?)
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| CloudError::Protocol(format!("cannot build the HTTP client: {e}")))?;
        let storage = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config()?)
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeout)
            .read_timeout(config.timeout)
            .build()
            .map_err(|e| CloudError::Protocol(format!("cannot build the HTTP client: {e}")))?;
        let inner = Inner {
            server,
            api,
            storage,
            retry: config.retry,
            timeout: config.timeout,
            credential: RwLock::new(config.credential),
        };
        Ok(Client { inner: Arc::new(inner) })
    }

    /// The API's base URL (with a trailing `/`).
    pub fn server(&self) -> &Url {
        &self.inner.server
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// For presigned storage URLs: no `Authorization` header, redirects off, the config's timeout
    /// as connect and read-idle timeout (a long transfer is fine, a stalled one fails).
    pub fn storage(&self) -> &reqwest::Client {
        &self.inner.storage
    }

    /// Replaces the credential (after a token refresh); calls already retrying use the new one
    /// from their next try.
    pub fn set_credential(&self, credential: Option<Credential>) {
        *self.inner.credential.write().unwrap_or_else(PoisonError::into_inner) = credential;
    }

    /// `GET path` (relative to the server, e.g. `/v1/jobs`, query included), answered as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CloudError> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with `body` as JSON, answered as `T`; one idempotency key for all its tries.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CloudError> {
        let body =
            serde_json::to_vec(body).map_err(|e| CloudError::Protocol(format!("cannot encode the request: {e}")))?;
        self.call(Method::POST, path, Some(body)).await
    }

    /// `DELETE path`, answered as `T` (`()` for an empty answer); one idempotency key.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, CloudError> {
        self.call(Method::DELETE, path, None).await
    }

    /// `path` under the server's URL.
    pub(crate) fn url(&self, path: &str) -> Result<Url, CloudError> {
        self.inner
            .server
            .join(path.trim_start_matches('/'))
            .map_err(|e| CloudError::Protocol(format!("bad API path {path:?}: {e}")))
    }

    /// A request to the API with the current credential.
    pub(crate) fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = self.inner.api.request(method, url);
        match &*self.inner.credential.read().unwrap_or_else(PoisonError::into_inner) {
            Some(credential) => request.bearer_auth(credential.secret()),
            None => request,
        }
    }

    /// The config's timeout: per try of an API call, and for an event stream's answer.
    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, CloudError> {
        self.call_url(method, self.url(path)?, body).await
    }

    /// One logical API call to `url`, retried; a `POST` or `DELETE` carries one idempotency key
    /// across its tries.
    pub(crate) async fn call_url<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<T, CloudError> {
        let key = (method == Method::POST || method == Method::DELETE).then(|| Uuid::new_v4().to_string());
        let (status, bytes) = self
            .with_retries(|| async {
                let mut request = self
                    .request(method.clone(), url.clone())
                    .timeout(self.inner.timeout)
                    .header(ACCEPT, "application/json");
                if let Some(key) = &key {
                    request = request.header(IDEMPOTENCY_KEY, key);
                }
                if let Some(body) = &body {
                    request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
                }
                match request.send().await {
                    Ok(response) => read_answer(&url, response).await,
                    Err(error) => Attempt::Retry(CloudError::network(&url, error), None),
                }
            })
            .await?;
        decode(status, &bytes).map_err(|e| CloudError::Protocol(format!("{method} {}: {e}", url.path())))
    }

    /// Runs `attempt` until it is done or fails for good, waiting the policy's backoff between
    /// tries; the last retryable error is the answer once the tries are spent.
    pub(crate) async fn with_retries<T, F, Fut>(&self, mut attempt: F) -> Result<T, CloudError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let policy = &self.inner.retry;
        let mut tried = 0;
        loop {
            tried += 1;
            match attempt().await {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fail(error) => return Err(error),
                Attempt::Retry(error, _) if tried >= policy.attempts => return Err(error),
                Attempt::Retry(error, retry_after) => {
                    let wait = policy.delay(tried, retry_after);
                    tracing::debug!(attempt = tried, wait_ms = wait.as_millis() as u64, error = %error, "retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Reads an answer: a success (2xx, or the 303 the outputs route answers with a JSON body) with
/// its body, or the refusal as an error, retryable or not.
pub(crate) async fn read_answer(url: &Url, response: Response) -> Attempt<(StatusCode, Vec<u8>)> {
    let status = response.status();
    if status.is_success() || status == StatusCode::SEE_OTHER {
        return match response.bytes().await {
            Ok(bytes) => Attempt::Done((status, Vec::from(bytes))),
            Err(error) => Attempt::Retry(CloudError::network(url, error), None),
        };
    }
    match refusal(url, response).await {
        (error, retry_after, true) => Attempt::Retry(error, retry_after),
        (error, _, false) => Attempt::Fail(error),
    }
}

/// A refusal as an error, the `Retry-After` it asked for, and whether another try may succeed.
pub(crate) async fn refusal(url: &Url, response: Response) -> (CloudError, Option<Duration>, bool) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let request_id = header_text(&headers, REQUEST_ID);
    let retry_after =
        header_text(&headers, RETRY_AFTER.as_str()).and_then(|value| parse_retry_after(&value, SystemTime::now()));
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(error) => return (CloudError::network(url, error), retry_after, true),
    };
    let error = CloudError::from_response(status, request_id, &body);
    let again = retryable_status(status) || (status == 409 && error.code() == Some(IDEMPOTENCY_IN_PROGRESS));
    (error, retry_after, again)
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_string)
}

/// The body as `T`; an empty body reads as JSON `null` (so `()` takes a 204).
fn decode<T: DeserializeOwned>(status: StatusCode, bytes: &[u8]) -> Result<T, String> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { b"null".as_slice() } else { bytes };
    serde_json::from_slice(bytes).map_err(|e| format!("HTTP {} answer is not the expected JSON: {e}", status.as_u16()))
}

/// The server's URL as a base: http or https, with a trailing `/` so paths join under it.
fn base_url(mut server: Url) -> Result<Url, CloudError> {
    if !matches!(server.scheme(), "http" | "https") || server.cannot_be_a_base() {
        return Err(CloudError::Protocol(format!("the server URL must be http(s)://…, not {}", server.scheme())));
    }
    if !server.path().ends_with('/') {
        let path = format!("{}/", server.path());
        server.set_path(&path);
    }
    server.set_query(None);
    server.set_fragment(None);
    Ok(server)
}

/// rustls on *ring* with the platform's verifier, HTTP/1.1 only (reqwest's HTTP/2 is not built).
fn tls_config() -> Result<rustls::ClientConfig, CloudError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    // ring, as the server: it builds without a C toolchain. Its post-quantum-less default is the
    // deprecation; the suites it has are what the API and S3 storage offer.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_error = |e: rustls::Error| CloudError::Protocol(format!("cannot set up TLS: {e}"));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_platform_verifier()
        .map_err(tls_error)?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_under_the_server_prefix() {
        let client = Client::new(ClientConfig::new(Url::parse("https://api.example.com/kiln").unwrap())).unwrap();
        assert_eq!(client.server().as_str(), "https://api.example.com/kiln/");
        assert_eq!(client.url("/v1/jobs?limit=5").unwrap().as_str(), "https://api.example.com/kiln/v1/jobs?limit=5");
        let plain = Client::new(ClientConfig::new(Url::parse("http://127.0.0.1:8080").unwrap())).unwrap();
        assert_eq!(plain.url("/v1/limits").unwrap().as_str(), "http://127.0.0.1:8080/v1/limits");
        assert!(Client::new(ClientConfig::new(Url::parse("ftp://example.com").unwrap())).is_err());
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let config = ClientConfig {
            credential: Some(Credential::ApiKey("kiln_live_secret".into())),
            ..ClientConfig::new(Url::parse("https://api.example.com").unwrap())
        };
        let shown = format!("{config:?} {:?}", Credential::AccessToken("eyJ.secret".into()));
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("ApiKey(<redacted>)") && shown.contains("AccessToken(<redacted>)"));
    }

    #[test]
    fn empty_answers_read_as_unit_and_bad_ones_are_protocol_errors() {
        assert!(decode::<()>(StatusCode::NO_CONTENT, b"").is_ok());
        assert_eq!(decode::<serde_json::Value>(StatusCode::OK, br#"{"a":1}"#).unwrap()["a"], 1);
        assert!(decode::<u32>(StatusCode::OK, b"<html>").is_err_and(|e| e.contains("HTTP 200")));
    }
}
