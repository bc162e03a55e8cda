//! The HTTP routes, one module per resource; each gives an `OpenApiRouter` so the OpenAPI
//! document is generated from the handlers themselves.

pub mod accounts;
pub mod api_keys;
pub mod batches;
pub mod jobs;
pub mod meta;
pub mod metrics;
pub mod oauth;
pub mod uploads;
pub mod webhooks;
pub mod worker_api;
