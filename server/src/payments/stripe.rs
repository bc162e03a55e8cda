//! [`Payments`] served by Stripe through async-stripe: one Checkout Session per request, its
//! single line item priced inline (`price_data` with `product_data`), sent with the request's
//! idempotency key. The base URL is configurable so the tests can point the real client at a stub.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

// `::stripe` is the async-stripe crate (its library name), not this module.
use ::stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    CreateCheckoutSessionLineItemsPriceDataRecurring, CreateCheckoutSessionLineItemsPriceDataRecurringInterval,
    CreateCheckoutSessionPaymentIntentData, CreateCheckoutSessionSubscriptionData, ProductData,
};
use stripe_types::Currency;

use super::{CheckoutMode, CheckoutRequest, CheckoutSession, Payments, PaymentsError};

/// Stripe's API, for production; the client appends `v1/…` to it.
pub const STRIPE_API_BASE: &str = "https://api.stripe.com/";

/// How long one call to Stripe may take: a customer waits on it for the redirect to the payment
/// page, and async-stripe's own client would otherwise wait forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates Checkout Sessions with a Stripe secret key.
pub struct StripePayments {
    client: Client,
    /// Kept only to scrub it from error messages, should Stripe ever echo it.
    secret_key: String,
}

impl fmt::Debug for StripePayments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripePayments").field("secret_key", &"[redacted]").finish_non_exhaustive()
    }
}

impl StripePayments {
    /// A client for `secret_key` (`sk_live_…`, `sk_test_…` or a restricted `rk_…` key) against
    /// `api_base`: [`STRIPE_API_BASE`], or a stub such as `http://127.0.0.1:PORT/`. The base is
    /// what comes before `v1/`; a missing trailing slash is added.
    pub fn new(secret_key: &str, api_base: &str) -> Result<Self, PaymentsError> {
        let client = ClientBuilder::new(secret_key)
            .url(normalised_base(api_base)?)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| failure(&error, secret_key))?;
        Ok(Self { client, secret_key: secret_key.to_owned() })
    }

    async fn create(&self, request: &CheckoutRequest) -> Result<CheckoutSession, PaymentsError> {
        let key = IdempotencyKey::new(&request.idempotency_key)
            .map_err(|error| PaymentsError::Stripe(format!("idempotency key: {error}")))?;
        let session = checkout_session(request)
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await
            .map_err(|error| failure(&error, &self.secret_key))?;
        let url = session
            .url
            .ok_or_else(|| PaymentsError::Stripe(format!("checkout session {} came back with no url", session.id)))?;
        Ok(CheckoutSession { id: session.id.to_string(), url })
    }
}

impl Payments for StripePayments {
    fn create_checkout<'a>(
        &'a self,
        request: &'a CheckoutRequest,
    ) -> Pin<Box<dyn Future<Output = Result<CheckoutSession, PaymentsError>> + Send + 'a>> {
        Box::pin(self.create(request))
    }
}

/// `api_base` as an http(s) URL ending in `/`: async-stripe sends to `{base}v1/…`.
fn normalised_base(api_base: &str) -> Result<String, PaymentsError> {
    let url = url::Url::parse(api_base)
        .map_err(|error| PaymentsError::Stripe(format!("the Stripe API base {api_base:?} is not a URL: {error}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.cannot_be_a_base() {
        return Err(PaymentsError::Stripe(format!("the Stripe API base {api_base:?} is not an http(s) URL")));
    }
    let mut base = url.to_string();
    if !base.ends_with('/') {
        base.push('/');
    }
    Ok(base)
}

/// The request async-stripe sends for `request`.
fn checkout_session(request: &CheckoutRequest) -> CreateCheckoutSession {
    let metadata: HashMap<String, String> = request.metadata.clone().into_iter().collect();
    // Any code parses (an unknown one as `Currency::Unknown`, for Stripe to judge).
    let Ok(currency) = request.currency.parse::<Currency>();
    let mut price = CreateCheckoutSessionLineItemsPriceData::new(currency);
    price.product_data = Some(ProductData::new(request.product_name.clone()));
    price.unit_amount = Some(request.unit_amount);
    let mut item = CreateCheckoutSessionLineItems::new();
    item.quantity = Some(request.quantity);
    let mut session = CreateCheckoutSession::new()
        .success_url(request.success_url.clone())
        .cancel_url(request.cancel_url.clone())
        .metadata(metadata.clone());
    match request.mode {
        CheckoutMode::Payment => {
            let mut payment_intent = CreateCheckoutSessionPaymentIntentData::new();
            payment_intent.metadata = Some(metadata);
            session = session.mode(CheckoutSessionMode::Payment).payment_intent_data(payment_intent);
        }
        CheckoutMode::Subscription => {
            price.recurring = Some(CreateCheckoutSessionLineItemsPriceDataRecurring::new(
                CreateCheckoutSessionLineItemsPriceDataRecurringInterval::Month,
            ));
            let mut subscription = CreateCheckoutSessionSubscriptionData::new();
            subscription.metadata = Some(metadata);
            session = session.mode(CheckoutSessionMode::Subscription).subscription_data(subscription);
        }
    }
    item.price_data = Some(price);
    session = session.line_items(vec![item]);
    if let Some(id) = &request.client_reference_id {
        session = session.client_reference_id(id.clone());
    }
    if let Some(email) = &request.customer_email {
        session = session.customer_email(email.clone());
    }
    session
}

/// A [`PaymentsError::Stripe`] for `error`, with the secret key scrubbed should it appear.
fn failure(error: &StripeError, secret_key: &str) -> PaymentsError {
    let message = match error {
        StripeError::Stripe(api, status) => format!(
            "HTTP {status}, {}{}: {}",
            api.type_.as_str(),
            api.code.as_ref().map(|code| format!(" ({code})")).unwrap_or_default(),
            api.message.as_deref().unwrap_or("no message"),
        ),
        other => other.to_string(),
    };
    let message = if secret_key.is_empty() { message } else { message.replace(secret_key, "[redacted]") };
    PaymentsError::Stripe(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_get_a_trailing_slash_and_must_be_http() {
        assert_eq!(normalised_base("https://api.stripe.com/").ok().as_deref(), Some(STRIPE_API_BASE));
        assert_eq!(normalised_base("http://127.0.0.1:4242").ok().as_deref(), Some("http://127.0.0.1:4242/"));
        assert_eq!(normalised_base("http://stub/stripe").ok().as_deref(), Some("http://stub/stripe/"));
        for bad in ["", "api.stripe.com", "ftp://api.stripe.com/", "mailto:a@b.c"] {
            assert!(normalised_base(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let payments = StripePayments::new("sk_test_secret_value", STRIPE_API_BASE);
        let shown = format!("{payments:?}");
        assert!(shown.contains("StripePayments") && !shown.contains("sk_test_secret_value"), "{shown}");
    }

    #[test]
    fn errors_never_echo_the_key() {
        let error = StripeError::ClientError("refused for sk_test_abc".into());
        let PaymentsError::Stripe(message) = failure(&error, "sk_test_abc") else { return };
        assert!(!message.contains("sk_test_abc") && message.contains("[redacted]"), "{message}");
    }
}
