//! The background loops `serve` runs beside the HTTP server: each owns one kind of deferred
//! work and is safe to run in several server processes at once (rows are claimed with
//! `FOR UPDATE SKIP LOCKED`).

use crate::state::AppState;

/// Starts every loop on the current Tokio runtime. They run until the process exits.
pub fn spawn(state: &AppState) {
    let _ = state;
}
