//! `GET /metrics`: the Prometheus exposition of [`crate::metrics`], behind a bearer token when
//! the server has `KILN_METRICS_TOKEN`.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus metrics in the text format 0.0.4: requests by route template and status, latency
/// histograms, requests in flight, queue depth by priority, jobs by state, job stage durations,
/// active workers and GPU-seconds. When the server sets `KILN_METRICS_TOKEN`, send it as
/// `Authorization: Bearer <token>`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "The exposition", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 401, description = "The metrics token is missing or wrong (`unauthorized`)", body = crate::openapi::ErrorBody),
    ))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(token) = &state.config.operations.metrics_token {
        authorize(&headers, token)?;
    }
    let snapshot = match crate::metrics::snapshot(&state.db).await {
        Ok(snapshot) => Some(snapshot),
        Err(error) => {
            tracing::warn!(%error, "metrics: the database's figures could not be read");
            None
        }
    };
    let text = state.ops.metrics.render(snapshot.as_ref()).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

fn authorize(headers: &HeaderMap, token: &str) -> ApiResult<()> {
    let presented = crate::auth::bearer_token(headers).is_some_and(|t| crate::auth::secret::matches(t, token));
    if presented {
        Ok(())
    } else {
        Err(ApiError::unauthorized("unauthorized", "/metrics needs Authorization: Bearer <the metrics token>"))
    }
}
