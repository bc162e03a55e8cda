//! Liveness, readiness and the published limits.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Limits;
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(limits))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is up (it answers; nothing else is checked).
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database and the object storage are reachable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = crate::openapi::ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> ApiResult<(StatusCode, Json<Health>)> {
    sqlx::query("SELECT 1").execute(&state.db).await.map_err(|e| {
        tracing::warn!(error = %e, "readyz: database unreachable");
        ApiError::Unavailable { message: "the database is unreachable".into() }
    })?;
    state.storage.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readyz: storage unreachable");
        ApiError::Unavailable { message: "the object storage is unreachable".into() }
    })?;
    Ok((StatusCode::OK, Json(Health { status: "ready" })))
}

/// What one upload may hold and how long things are kept; enforced before any compute.
#[utoipa::path(get, path = "/v1/limits", tag = "uploads", responses((status = 200, body = Limits)))]
async fn limits(State(state): State<AppState>) -> Json<Limits> {
    Json(state.config.limits.clone())
}
