//! Selling credits: a Checkout Session for a pack, a monthly plan or a Studio model, created
//! through [`Payments`] and recorded in `checkout_sessions`, so a webhook later grants exactly
//! what was sold here and to whom.

use std::collections::BTreeMap;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::billing::events::{META_ORG, META_PLAN};
use crate::billing::prices::{Pack, Plan, PriceTable};
use crate::error::{ApiError, ApiResult};
use crate::payments::{CheckoutMode, CheckoutRequest, CheckoutSession, Payments, PaymentsError};

/// What a Checkout Session sells.
#[derive(Clone, Debug)]
pub enum Product {
    Pack(Pack),
    Plan(Plan),
    Studio,
}

/// A Checkout Session about to be created: who buys what, and where Stripe sends them back.
pub struct Sale<'a> {
    pub org_id: Uuid,
    pub user_id: Option<Uuid>,
    pub customer_email: Option<String>,
    pub product: &'a Product,
    /// The API's public address: the return page is under it.
    pub public_url: &'a str,
}

/// Fields of a recorded session: (kind, product id, credits, amount, currency, line item name).
fn terms(product: &Product, prices: &PriceTable) -> (&'static str, String, i64, i64, String, String) {
    match product {
        Product::Pack(pack) => (
            "pack",
            pack.id.clone(),
            pack.credits,
            pack.amount,
            pack.currency.clone(),
            format!("Kiln credits: {}", pack.credits),
        ),
        Product::Plan(plan) => (
            "plan",
            plan.id.clone(),
            plan.credits_per_month,
            plan.amount,
            plan.currency.clone(),
            format!("Kiln monthly plan: {} credits a month", plan.credits_per_month),
        ),
        Product::Studio => {
            let studio = &prices.studio;
            (
                "studio",
                "studio".into(),
                prices.studio_credits(),
                studio.amount,
                studio.currency.clone(),
                format!("Kiln Studio: one {} model of up to {} photos", studio.preset.name(), studio.max_photos),
            )
        }
    }
}

/// Asks Stripe for the Checkout Session of `sale`. Nothing is recorded yet: see [`record`].
pub async fn create(payments: &dyn Payments, prices: &PriceTable, sale: &Sale<'_>) -> ApiResult<CheckoutSession> {
    let (kind, product_id, _, amount, currency, name) = terms(sale.product, prices);
    let mut metadata = BTreeMap::from([(META_ORG.to_string(), sale.org_id.to_string())]);
    if kind == "plan" {
        metadata.insert(META_PLAN.to_string(), product_id);
    }
    let back = |result: &str| format!("{}/checkout/return?result={result}", sale.public_url.trim_end_matches('/'));
    let request = CheckoutRequest {
        mode: if kind == "plan" { CheckoutMode::Subscription } else { CheckoutMode::Payment },
        product_name: name,
        unit_amount: amount,
        currency,
        quantity: 1,
        metadata,
        client_reference_id: Some(sale.org_id.to_string()),
        customer_email: sale.customer_email.clone(),
        // Stripe replaces {CHECKOUT_SESSION_ID} itself.
        success_url: format!("{}&session_id={{CHECKOUT_SESSION_ID}}", back("paid")),
        cancel_url: back("canceled"),
        idempotency_key: Uuid::new_v4().to_string(),
    };
    payments.create_checkout(&request).await.map_err(|error| match error {
        PaymentsError::NotConfigured => {
            ApiError::Unavailable { message: "payments are not configured on this server; ask its operator".into() }
        }
        PaymentsError::Stripe(cause) => {
            tracing::warn!(%cause, "Stripe refused a Checkout Session");
            ApiError::Unavailable { message: "the payment provider failed; retry shortly".into() }
        }
    })
}

/// Records a created session in the caller's transaction.
pub async fn record(
    tx: &mut PgConnection,
    prices: &PriceTable,
    sale: &Sale<'_>,
    session: &CheckoutSession,
) -> ApiResult<()> {
    let (kind, product_id, credits, amount, currency, _) = terms(sale.product, prices);
    sqlx::query(
        "INSERT INTO checkout_sessions (id, org_id, kind, product, credits, amount, currency, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&session.id)
    .bind(sale.org_id)
    .bind(kind)
    .bind(product_id)
    .bind(credits)
    .bind(amount)
    .bind(currency)
    .bind(sale.user_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
