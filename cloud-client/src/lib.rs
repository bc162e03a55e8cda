//! `kiln-cloud`: the one client of Kiln's hosted API that the CLI and the desktop app share. It
//! speaks the API's own types (`kiln-api`), retries what is safe to retry with one idempotency
//! key per logical request, moves photos and outputs through presigned storage URLs (resumable
//! both ways), follows a job's events live, and writes a cloud job's outputs into the same job
//! folder a local run makes (`kiln_protocol::layout::JobLayout`).

pub mod account;
pub mod api;
pub mod client;
pub mod download;
pub mod error;
pub mod events;
pub mod job;
pub mod login;
pub mod retry;
pub mod token_store;
pub mod upload;

pub use client::{Client, ClientConfig, Credential};
pub use error::{CloudError, ErrorKind};
pub use events::JobStreamEvent;
pub use job::JobError;
pub use retry::RetryPolicy;
