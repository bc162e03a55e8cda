//! The background loops `serve` runs beside the HTTP server: each owns one kind of deferred
//! work and is safe to run in several server processes at once (rows are claimed with
//! `FOR UPDATE SKIP LOCKED`).

use crate::state::AppState;

/// Starts every loop on the current Tokio runtime. They run until the process exits.
pub fn spawn(state: &AppState) {
    tokio::spawn(crate::queue::reap_forever(state.clone()));
    tokio::spawn(crate::idempotency::purge_loop(state.db.clone()));
    tokio::spawn(crate::uploads::expire_forever(state.clone()));
    crate::webhooks::deliver::spawn(state);
}
