//! The one state every handler shares.

use std::sync::Arc;

use sqlx::PgPool;

use crate::config::{BillingConfig, Config};
use crate::ops::Ops;
use crate::payments::stripe::StripePayments;
use crate::payments::{Payments, PaymentsError, Unconfigured};
use crate::storage::Storage;

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<Config>,
    pub storage: Storage,
    /// Metrics and rate limiters: in this process's memory.
    pub ops: Arc<Ops>,
    /// Stripe Checkout, or [`Unconfigured`] without a Stripe key.
    pub payments: Arc<dyn Payments>,
}

/// The payments `billing` configures: Stripe when it has a secret key, otherwise none.
pub fn payments(billing: &BillingConfig) -> Result<Arc<dyn Payments>, PaymentsError> {
    Ok(match &billing.stripe_secret_key {
        Some(key) => Arc::new(StripePayments::new(key, &billing.stripe_api_base)?),
        None => Arc::new(Unconfigured),
    })
}
