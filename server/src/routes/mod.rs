//! The HTTP routes, one module per resource; each gives an `OpenApiRouter` so the OpenAPI
//! document is generated from the handlers themselves.

pub mod accounts;
pub mod admin;
pub mod api_keys;
pub mod batches;
pub mod billing;
pub mod jobs;
pub mod ledger;
pub mod me;
pub mod meta;
pub mod metrics;
pub mod oauth;
pub mod stripe;
pub mod studio;
pub mod uploads;
pub mod webhooks;
pub mod worker_api;
