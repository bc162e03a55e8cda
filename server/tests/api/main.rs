//! The hosted API's integration tests, one binary (linking the server and the engine once rather
//! than once per file): each module covers one part of the API against the real PostgreSQL and
//! SeaweedFS that `scripts/services.sh` starts, with real `kiln-server worker` processes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod support;

mod accounts;
mod admin;
mod batches;
mod billing_jobs;
mod billing_stripe;
mod cloud_account;
mod cloud_cli;
mod cloud_client;
mod cloud_job;
mod cloud_login;
mod cloud_resume;
mod cloud_spec;
mod cloud_transfers;
mod isolation;
mod jobs;
mod ledger;
mod oauth;
mod operations;
mod payments;
mod uploads;
mod webhooks;
mod worker;
