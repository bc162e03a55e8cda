//! The one state every handler shares.

use std::sync::Arc;

use sqlx::PgPool;

use crate::config::Config;
use crate::ops::Ops;
use crate::storage::Storage;

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<Config>,
    pub storage: Storage,
    /// Metrics and rate limiters: in this process's memory.
    pub ops: Arc<Ops>,
}
