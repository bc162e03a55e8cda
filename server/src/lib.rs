//! Kiln's hosted API and its workers.
//!
//! `serve` answers HTTP (accounts, API keys, uploads, jobs, batches, webhooks) over PostgreSQL
//! and S3-compatible storage; `worker` leases queued jobs over HTTP and runs them with
//! `kiln-job`, the same job layer as `kiln reconstruct`; `migrate` applies the schema.

pub mod app;
pub mod auth;
pub mod batches;
pub mod billing;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod jobs;
pub mod metrics;
pub mod oauth;
pub mod openapi;
pub mod ops;
pub mod payments;
pub mod queue;
pub mod ratelimit;
pub mod routes;
pub mod state;
pub mod storage;
pub mod tasks;
pub mod uploads;
pub mod webhooks;
pub mod worker;
