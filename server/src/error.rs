//! The API's one error type: every handler returns it, and it answers with an HTTP status and a
//! JSON body `{"error": {"code", "message"}}` whose `code` is stable for machines to branch on.
//! Internal causes are logged once, here, and never sent to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or names something invalid (400).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// No valid credentials (401).
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    /// Valid credentials without the right (403).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// Nothing of that id in the caller's organisation (404): the same answer whether it exists
    /// elsewhere or not, so ids cannot be probed across organisations.
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// Money is missing (402): not enough credits, or a purchase not paid yet.
    #[error("{message}")]
    PaymentRequired { code: &'static str, message: String },
    /// The resource is in a state that refuses the request (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Well-formed, but refused as it stands (422), like an idempotency key reused with another
    /// request.
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// It existed and is gone for good, like outputs past their retention (410).
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    /// Over a published limit (413).
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    /// Over a rate limit (429), with the seconds to wait.
    #[error("too many requests; retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// A dependency (database, storage) is unreachable (503).
    #[error("{message}")]
    Unavailable { message: String },
    /// A bug or an unexpected failure (500). The cause is logged, never returned.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into() }
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unauthorized { code, message: message.into() }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Forbidden { code, message: message.into() }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict { code, message: message.into() }
    }

    pub fn payment_required(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::PaymentRequired { code, message: message.into() }
    }

    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::TooLarge { code, message: message.into() }
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(cause.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::PaymentRequired { .. } => StatusCode::PAYMENT_REQUIRED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Unauthorized { code, .. }
            | ApiError::Forbidden { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::PaymentRequired { code, .. }
            | ApiError::Gone { code, .. }
            | ApiError::TooLarge { code, .. }
            | ApiError::Unprocessable { code, .. } => code,
            ApiError::NotFound { .. } => "not_found",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => {
                tracing::error!(error = %error, "database unreachable");
                ApiError::Unavailable { message: "the database is unreachable; retry shortly".into() }
            }
            _ => ApiError::Internal(error.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
        let body = Body { error: Detail { code: self.code(), message: self.to_string() } };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::RateLimited { retry_after } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
