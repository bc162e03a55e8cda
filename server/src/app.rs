//! The HTTP application: the routes, the OpenAPI document and the layers every request passes
//! (request ids, tracing, metrics, CORS, security headers, rate limits, body limit, idempotency
//! keys).

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::openapi::ApiDoc;
use crate::state::AppState;
use crate::{idempotency, metrics, ratelimit, routes};

/// JSON bodies are small: settings, file lists, CSV manifests. Photos never pass through the
/// API (they go to storage by presigned URL), so 4 MiB is generous.
const BODY_LIMIT: usize = 4 << 20;

/// The routes and their OpenAPI document.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::meta::routes())
        .merge(routes::accounts::routes())
        .merge(routes::api_keys::routes())
        .merge(routes::me::routes())
        .merge(routes::uploads::routes())
        .merge(routes::metrics::routes())
        .merge(routes::oauth::routes())
        .merge(routes::jobs::routes())
        .merge(routes::worker_api::routes())
        .merge(routes::webhooks::routes())
        .merge(routes::batches::routes())
        .merge(routes::billing::routes())
        .merge(routes::stripe::routes())
        .merge(routes::studio::routes())
        .merge(routes::ledger::routes())
        .merge(routes::admin::routes())
        .split_for_parts()
}

pub fn app(state: AppState) -> Router {
    let (router, mut openapi) = api();
    idempotency::document(&mut openapi);
    crate::openapi::add_common_errors(&mut openapi);
    let request_id = HeaderName::from_static("x-request-id");
    router
        .route("/openapi.json", get(move || async move { axum::Json(openapi) }))
        // Idempotency keys next to the handler: inside the body limit (it buffers the body) and
        // the rate limits (a refused request claims no key), keeping only what the handler said.
        .layer(from_fn_with_state(state.clone(), idempotency::idempotency))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        // axum's extractors apply their own 2 MiB default on top; one limit, stated once.
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        // Rate limits before any body is read or database touched; inside CORS, so a browser
        // can read the 429 and its Retry-After (preflights are answered by CORS and not counted).
        .layer(from_fn_with_state(state.ops.limiter.clone(), ratelimit::limit))
        .layer(cors(&state.config.cors_origins))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        // JSON loads nothing; the OAuth pages set their own policy.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        // Browsers heed it only over HTTPS, which is how the service is reached in production.
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        // Metrics outside every refusal above (CORS, 429, 413, idempotency conflicts), so all
        // are counted and timed; routes are labelled by template (the layers wrap each route).
        .layer(from_fn_with_state(state.ops.metrics.clone(), metrics::track))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %request.method(), uri = %request.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST, axum::http::Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("idempotency-key")])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
            HeaderName::from_static("idempotent-replayed"),
        ])
}
