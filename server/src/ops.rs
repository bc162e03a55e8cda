//! The operations layer's in-process state, shared by every request through
//! [`AppState::ops`](crate::state::AppState): the metrics registry and the rate limiters.
//! (Idempotency keys live in the database, so they hold across processes.)

use std::sync::Arc;

use crate::config::OperationsConfig;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// Each part is shared on its own, so its middleware holds only what it uses.
pub struct Ops {
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<RateLimiter>,
}

impl Ops {
    pub fn new(config: &OperationsConfig, worker_token: &str) -> Ops {
        Ops { metrics: Arc::new(Metrics::new()), limiter: Arc::new(RateLimiter::new(config, worker_token)) }
    }
}
