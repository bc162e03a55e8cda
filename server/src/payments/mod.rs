//! Payments behind one small trait: creating Stripe Checkout Sessions ([`Payments`], served in
//! production by [`stripe::StripePayments`] and, when no Stripe key is configured, by
//! [`Unconfigured`]), and checking the signatures of Stripe's webhook deliveries
//! ([`signature`]). Crediting what was paid is the ledger's business, not this module's.

pub mod signature;
pub mod stripe;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// Creates the payment pages customers pay on.
pub trait Payments: Send + Sync + 'static {
    /// Creates a Checkout Session; Stripe's answer's id and url.
    fn create_checkout<'a>(
        &'a self,
        request: &'a CheckoutRequest,
    ) -> Pin<Box<dyn Future<Output = Result<CheckoutSession, PaymentsError>> + Send + 'a>>;
}

/// What a Checkout Session sells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckoutMode {
    /// One payment (a credit pack, a Studio model).
    Payment,
    /// A monthly subscription, billed by an invoice each month.
    Subscription,
}

/// A Checkout Session to create: one line item priced inline, so amounts come from Kiln's own
/// price table rather than from prices kept in Stripe.
#[derive(Clone, Debug)]
pub struct CheckoutRequest {
    pub mode: CheckoutMode,
    /// Shown on Stripe's page, e.g. "Kiln credits: 100".
    pub product_name: String,
    /// Minor units (cents) of `currency`, per unit.
    pub unit_amount: i64,
    /// ISO 4217, lower case ("eur").
    pub currency: String,
    pub quantity: u64,
    /// Put on the session; for Subscription also on subscription_data.metadata (so every invoice
    /// of the subscription carries it), for Payment also on payment_intent_data.metadata.
    pub metadata: BTreeMap<String, String>,
    pub client_reference_id: Option<String>,
    pub customer_email: Option<String>,
    pub success_url: String,
    pub cancel_url: String,
    /// Sent as Stripe's Idempotency-Key, so a retried request creates one session.
    pub idempotency_key: String,
}

/// A created Checkout Session: its id (`cs_…`) and the page to send the customer to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutSession {
    pub id: String,
    pub url: String,
}

/// Why no payment page was created.
#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    #[error("payments are not configured on this server (KILN_STRIPE_SECRET_KEY is not set)")]
    NotConfigured,
    /// What Stripe (or the way to it) answered; never carries the secret key.
    #[error("Stripe refused or failed: {0}")]
    Stripe(String),
}

/// Used when no Stripe key is configured: every call answers NotConfigured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unconfigured;

impl Payments for Unconfigured {
    fn create_checkout<'a>(
        &'a self,
        _request: &'a CheckoutRequest,
    ) -> Pin<Box<dyn Future<Output = Result<CheckoutSession, PaymentsError>> + Send + 'a>> {
        Box::pin(std::future::ready(Err(PaymentsError::NotConfigured)))
    }
}
