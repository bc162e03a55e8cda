//! What can go wrong talking to the hosted API, as one typed error: the server's refusal with its
//! stable `code` and request id, an unreachable server, the local disk, a transfer whose hash is
//! wrong, or an answer this client cannot read. [`ErrorKind`] sorts them for the CLI's exit codes.
//! [`crate::job::JobError`] adds what a cloud job's flow refuses before or around the service.
//!
//! No variant ever holds a credential or a presigned URL's query string: [`CloudError::network`]
//! keeps only the host and the transport's own words, with the URL taken out.

use std::path::PathBuf;

use kiln_api::error::ErrorBody;

/// Longest piece of a non-JSON error body kept as the message (a proxy's HTML page, say): enough
/// to recognise it, short enough for one line of a terminal.
const MAX_RAW_MESSAGE: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The server refused: its stable `code`, message, HTTP status, and the request id
    /// (`x-request-id`) to quote to support.
    #[error("{message} ({code}, HTTP {status}{})", request_suffix(.request_id))]
    Api { status: u16, code: String, message: String, request_id: Option<String> },
    /// The server could not be reached (DNS, connect, TLS, timeout, a dropped connection) after
    /// the retries.
    #[error("cannot reach {url_host}: {detail}")]
    Network { url_host: String, detail: String },
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A transferred file's SHA-256 is not what the server declared.
    #[error("{file} is corrupt: its SHA-256 is {actual}, the server declared {expected}")]
    Integrity { file: String, expected: String, actual: String },
    /// The server answered something this client cannot read.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

fn request_suffix(request_id: &Option<String>) -> String {
    request_id.as_ref().map(|id| format!(", request {id}")).unwrap_or_default()
}

/// What kind of failure an error is, for a front end to act on (the CLI maps each to its own exit
/// code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 401: no credential, or one that is invalid, expired or revoked: log in again.
    Unauthorized,
    /// 402: `insufficient_credits`, `payment_pending`: buy credits or wait for the payment.
    PaymentRequired,
    /// 404 (or 410, gone for good: `outputs_expired`).
    NotFound,
    /// 409: the resource's state forbids it (`job_final`, `upload_not_complete`, …).
    Conflict,
    /// Any other 4xx: the request itself is wrong or not allowed (400, 403, 413, 422, …).
    Invalid,
    /// 5xx, or 429 still refused after the retries: the service cannot serve it now.
    Server,
    Network,
    Io,
    Integrity,
    Protocol,
}

impl CloudError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CloudError::Api { status, .. } => kind_of_status(*status),
            CloudError::Network { .. } => ErrorKind::Network,
            CloudError::Io { .. } => ErrorKind::Io,
            CloudError::Integrity { .. } => ErrorKind::Integrity,
            CloudError::Protocol(_) => ErrorKind::Protocol,
        }
    }

    /// The server's error code, for an [`CloudError::Api`].
    pub fn code(&self) -> Option<&str> {
        match self {
            CloudError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A transport failure reaching `url`: the host and reqwest's words, without the URL (whose
    /// query may be a presigned signature).
    pub fn network(url: &url::Url, error: reqwest::Error) -> CloudError {
        CloudError::Network { url_host: url_host(url), detail: transport_detail(error) }
    }

    /// The refusal `status` answered with `body` and the `x-request-id` header's value: the
    /// server's `{"error": {"code", "message"}}`, or (a proxy's page, an empty body) a code made
    /// from the status and the start of the body.
    pub fn from_response(status: u16, request_id: Option<String>, body: &[u8]) -> CloudError {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(parsed) => {
                CloudError::Api { status, code: parsed.error.code, message: parsed.error.message, request_id }
            }
            Err(_) => CloudError::Api {
                status,
                code: format!("http_{status}"),
                message: raw_message(status, body),
                request_id,
            },
        }
    }
}

fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        401 => ErrorKind::Unauthorized,
        402 => ErrorKind::PaymentRequired,
        404 | 410 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        429 | 500..=599 => ErrorKind::Server,
        _ => ErrorKind::Invalid,
    }
}

/// `host[:port]` of `url`, all an error needs to say where.
pub(crate) fn url_host(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => url.scheme().to_string(),
    }
}

/// The error and its causes in one line, the URL left out.
fn transport_detail(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut parts = vec![error.to_string()];
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

fn raw_message(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("HTTP {status} with no error body");
    }
    let mut cut: String = text.chars().take(MAX_RAW_MESSAGE).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_keep_code_message_status_and_request_id() {
        let body = br#"{"error":{"code":"insufficient_credits","message":"6 credits needed, 2 available"}}"#;
        let error = CloudError::from_response(402, Some("req-1".into()), body);
        assert!(matches!(&error, CloudError::Api { status: 402, code, message, request_id: Some(id) }
            if code == "insufficient_credits" && message.starts_with("6 credits") && id == "req-1"));
        assert_eq!(error.kind(), ErrorKind::PaymentRequired);
        assert_eq!(error.code(), Some("insufficient_credits"));
        assert_eq!(error.to_string(), "6 credits needed, 2 available (insufficient_credits, HTTP 402, request req-1)");
    }

    #[test]
    fn a_body_that_is_not_the_error_shape_still_gives_a_code() {
        let error = CloudError::from_response(502, None, b"<html>Bad Gateway</html>");
        assert!(
            matches!(&error, CloudError::Api { code, message, .. } if code == "http_502" && message.contains("Bad Gateway"))
        );
        assert_eq!(error.kind(), ErrorKind::Server);
        let empty = CloudError::from_response(403, None, b"");
        assert!(matches!(&empty, CloudError::Api { message, .. } if message == "HTTP 403 with no error body"));
        let long = CloudError::from_response(400, None, "x".repeat(1000).as_bytes());
        assert!(matches!(&long, CloudError::Api { message, .. } if message.chars().count() == MAX_RAW_MESSAGE + 1));
    }

    #[test]
    fn statuses_sort_into_kinds() {
        let kind = |status| CloudError::from_response(status, None, b"{}").kind();
        assert_eq!(kind(401), ErrorKind::Unauthorized);
        assert_eq!(kind(404), ErrorKind::NotFound);
        assert_eq!(kind(410), ErrorKind::NotFound);
        assert_eq!(kind(409), ErrorKind::Conflict);
        assert_eq!(kind(400), ErrorKind::Invalid);
        assert_eq!(kind(403), ErrorKind::Invalid);
        assert_eq!(kind(422), ErrorKind::Invalid);
        assert_eq!(kind(429), ErrorKind::Server);
        assert_eq!(kind(503), ErrorKind::Server);
    }

    #[test]
    fn hosts_name_the_port_only_when_given() {
        let url = url::Url::parse("https://s3.example.com/bucket/key?X-Amz-Signature=secret").unwrap();
        assert_eq!(url_host(&url), "s3.example.com");
        let url = url::Url::parse("http://127.0.0.1:9/v1").unwrap();
        assert_eq!(url_host(&url), "127.0.0.1:9");
    }
}
