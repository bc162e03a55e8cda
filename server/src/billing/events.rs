//! Stripe's events, applied to the ledger: each event once (`stripe_events`), each purchase once
//! (`UNIQUE` on its Checkout Session or invoice), in the same database transaction as its grant.
//! Events arrive twice and in any order, so every handler works from what is already recorded:
//! `async_payment_succeeded` before `completed` grants once, a refund whose purchase is not yet
//! known is kept by payment intent and applied when the purchase arrives.
//!
//! The event's signature is checked before anything here runs (`routes::stripe`). Only the
//! fields used are read, so Stripe's API version changes elsewhere in its objects do not matter.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::billing::ledger::{self, Account, Reason, Reference};
use crate::billing::prices::PriceTable;
use crate::error::{ApiError, ApiResult};

/// Metadata keys Kiln puts on the Checkout Sessions (and subscriptions) it creates.
pub const META_ORG: &str = "kiln_org";
pub const META_PLAN: &str = "kiln_plan";

/// A Stripe event: only what Kiln reads.
#[derive(Debug, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    pub object: Value,
}

/// What became of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now.
    Applied,
    /// Seen before: nothing changed.
    Duplicate,
    /// A type Kiln does not act on, or an object that is not Kiln's: recorded, nothing changed.
    Ignored,
}

#[derive(Debug, Deserialize)]
struct SessionObject {
    id: String,
    mode: String,
    payment_status: String,
    payment_intent: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InvoiceObject {
    id: String,
    amount_paid: i64,
    currency: String,
    #[serde(default)]
    payment_intent: Option<String>,
    #[serde(default)]
    parent: Option<InvoiceParent>,
    /// Before Stripe's 2025-03-31 API version the subscription's details were here.
    #[serde(default)]
    subscription_details: Option<SubscriptionDetails>,
}

#[derive(Debug, Deserialize)]
struct InvoiceParent {
    #[serde(default)]
    subscription_details: Option<SubscriptionDetails>,
}

#[derive(Debug, Deserialize)]
struct SubscriptionDetails {
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct ChargeObject {
    id: String,
    payment_intent: Option<String>,
    amount_refunded: i64,
    receipt_url: Option<String>,
}

/// Applies `event` once.
pub async fn apply(db: &PgPool, prices: &PriceTable, event: &Event) -> ApiResult<Outcome> {
    let mut tx = db.begin().await?;
    let fresh = sqlx::query("INSERT INTO stripe_events (event_id, type) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(&event.id)
        .bind(&event.kind)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if !fresh {
        return Ok(Outcome::Duplicate);
    }
    let object = &event.data.object;
    let outcome = match event.kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            session_paid(&mut tx, parse(object)?).await?
        }
        "invoice.paid" => invoice_paid(&mut tx, prices, parse(object)?).await?,
        "charge.succeeded" | "charge.updated" | "charge.refunded" => charge(&mut tx, parse(object)?).await?,
        _ => Outcome::Ignored,
    };
    tx.commit().await?;
    tracing::info!(event_id = %event.id, kind = %event.kind, ?outcome, "stripe event");
    Ok(outcome)
}

fn parse<T: serde::de::DeserializeOwned>(object: &Value) -> ApiResult<T> {
    serde_json::from_value(object.clone())
        .map_err(|e| ApiError::bad_request("invalid_event", format!("the event's object does not parse: {e}")))
}

/// A Checkout Session paid (at once, or later for asynchronous methods): grants what Kiln sold
/// in it, once. Subscriptions are granted per invoice instead.
async fn session_paid(tx: &mut PgConnection, session: SessionObject) -> ApiResult<Outcome> {
    if session.mode != "payment" || session.payment_status != "paid" {
        return Ok(Outcome::Ignored);
    }
    let sold: Option<(Uuid, String, String, i64, i64, String)> =
        sqlx::query_as("SELECT org_id, kind, product, credits, amount, currency FROM checkout_sessions WHERE id = $1")
            .bind(&session.id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((org_id, kind, product, credits, amount, currency)) = sold else {
        tracing::warn!(session = %session.id, "a paid Checkout Session Kiln did not create: ignored");
        return Ok(Outcome::Ignored);
    };
    let inserted = sqlx::query(
        "INSERT INTO purchases (id, org_id, kind, product, checkout_session_id, payment_intent, credits, amount, currency)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (checkout_session_id) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(org_id)
    .bind(&kind)
    .bind(&product)
    .bind(&session.id)
    .bind(&session.payment_intent)
    .bind(credits)
    .bind(amount)
    .bind(&currency)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        return Ok(Outcome::Duplicate);
    }
    let reason = if kind == "studio" { Reason::Studio } else { Reason::Purchase };
    ledger::credit(tx, org_id, reason, Account::Stripe, credits, &Reference::stripe(&session.id)).await?;
    if kind == "studio" {
        sqlx::query("UPDATE studio_claims SET paid_at = now() WHERE checkout_session_id = $1 AND paid_at IS NULL")
            .bind(&session.id)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(payment_intent) = &session.payment_intent {
        sync_refund(tx, payment_intent).await?;
    }
    Ok(Outcome::Applied)
}

/// A monthly plan's invoice paid: grants the plan's credits, once per invoice. The organisation
/// and plan come from the metadata Kiln put on the subscription, checked against a plan
/// Checkout Session of that organisation.
async fn invoice_paid(tx: &mut PgConnection, prices: &PriceTable, invoice: InvoiceObject) -> ApiResult<Outcome> {
    let details = invoice.parent.and_then(|p| p.subscription_details).or(invoice.subscription_details);
    let metadata = details.map(|d| d.metadata).unwrap_or_default();
    let (Some(org), Some(plan_id)) = (metadata.get(META_ORG), metadata.get(META_PLAN)) else {
        return Ok(Outcome::Ignored);
    };
    let (Ok(org_id), Some(plan)) = (org.parse::<Uuid>(), prices.plan(plan_id)) else {
        tracing::warn!(invoice = %invoice.id, plan = %plan_id, "an invoice of an unknown organisation or plan: ignored");
        return Ok(Outcome::Ignored);
    };
    let bought: Option<(String,)> =
        sqlx::query_as("SELECT id FROM checkout_sessions WHERE org_id = $1 AND kind = 'plan' AND product = $2 LIMIT 1")
            .bind(org_id)
            .bind(plan_id)
            .fetch_optional(&mut *tx)
            .await?;
    if bought.is_none() || invoice.amount_paid <= 0 {
        return Ok(Outcome::Ignored);
    }
    let inserted = sqlx::query(
        "INSERT INTO purchases (id, org_id, kind, product, invoice_id, payment_intent, credits, amount, currency)
         VALUES ($1, $2, 'plan', $3, $4, $5, $6, $7, $8) ON CONFLICT (invoice_id) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(org_id)
    .bind(plan_id)
    .bind(&invoice.id)
    .bind(&invoice.payment_intent)
    .bind(plan.credits_per_month)
    .bind(invoice.amount_paid)
    .bind(&invoice.currency)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        return Ok(Outcome::Duplicate);
    }
    let reference = Reference::stripe(&invoice.id);
    ledger::credit(tx, org_id, Reason::Subscription, Account::Stripe, plan.credits_per_month, &reference).await?;
    if let Some(payment_intent) = &invoice.payment_intent {
        sync_refund(tx, payment_intent).await?;
    }
    Ok(Outcome::Applied)
}

/// A charge's news: its receipt, and how much of it was refunded (Stripe's running total), kept
/// by payment intent; a refund takes the matching share of the purchase's credits back.
async fn charge(tx: &mut PgConnection, charge: ChargeObject) -> ApiResult<Outcome> {
    let Some(payment_intent) = charge.payment_intent else {
        return Ok(Outcome::Ignored);
    };
    sqlx::query(
        "INSERT INTO stripe_charges (payment_intent, charge_id, receipt_url, amount_refunded) VALUES ($1, $2, $3, $4)
         ON CONFLICT (payment_intent) DO UPDATE SET
             charge_id = EXCLUDED.charge_id,
             receipt_url = coalesce(EXCLUDED.receipt_url, stripe_charges.receipt_url),
             amount_refunded = greatest(EXCLUDED.amount_refunded, stripe_charges.amount_refunded),
             updated_at = now()",
    )
    .bind(&payment_intent)
    .bind(&charge.id)
    .bind(&charge.receipt_url)
    .bind(charge.amount_refunded)
    .execute(&mut *tx)
    .await?;
    sync_refund(tx, &payment_intent).await?;
    Ok(Outcome::Applied)
}

/// Brings a purchase's refunded credits up to its charge's refunded share: `credits ×
/// refunded / paid`, rounded down, all of them for a full refund. What is still available is
/// taken back; credits already spent become debt, which the next purchase settles.
async fn sync_refund(tx: &mut PgConnection, payment_intent: &str) -> ApiResult<()> {
    let row: Option<(Uuid, i64, i64, i64, i64, String)> = sqlx::query_as(
        "SELECT p.org_id, p.credits, p.amount, p.credits_refunded, c.amount_refunded, c.charge_id
         FROM purchases p JOIN stripe_charges c ON c.payment_intent = p.payment_intent
         WHERE p.payment_intent = $1 FOR UPDATE OF p",
    )
    .bind(payment_intent)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((org_id, credits, amount, already, refunded, charge_id)) = row else {
        return Ok(());
    };
    let target = refunded_credits(credits, amount, refunded);
    if target <= already {
        return Ok(());
    }
    sqlx::query("UPDATE purchases SET credits_refunded = $2, amount_refunded = $3 WHERE payment_intent = $1")
        .bind(payment_intent)
        .bind(target)
        .bind(refunded.min(amount))
        .execute(&mut *tx)
        .await?;
    ledger::take_back(
        tx,
        org_id,
        Reason::Refund,
        Account::Refunds,
        target - already,
        true,
        &Reference::stripe(&charge_id),
    )
    .await?;
    Ok(())
}

/// The credits a refund of `refunded` out of `amount` paid takes back from `credits` bought.
fn refunded_credits(credits: i64, amount: i64, refunded: i64) -> i64 {
    if amount <= 0 || refunded >= amount {
        return credits;
    }
    // i128: credits × refunded can pass i64 for large packs paid in small units.
    let share = i128::from(credits) * i128::from(refunded.max(0)) / i128::from(amount);
    i64::try_from(share).unwrap_or(credits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refunds_take_back_their_share_rounded_down() {
        assert_eq!(refunded_credits(100, 1_000, 500), 50);
        assert_eq!(refunded_credits(100, 1_000, 1_000), 100);
        assert_eq!(refunded_credits(100, 1_000, 1_500), 100);
        assert_eq!(refunded_credits(100, 1_000, 1), 0);
        assert_eq!(refunded_credits(3, 1_000, 999), 2);
        assert_eq!(refunded_credits(i64::MAX / 2, i64::MAX / 3, i64::MAX / 6), i64::MAX / 4);
    }

    #[test]
    fn invoices_read_the_subscription_metadata_where_either_api_version_puts_it() {
        let current: InvoiceObject = serde_json::from_value(serde_json::json!({
            "id": "in_1", "amount_paid": 3900, "currency": "eur",
            "parent": {"subscription_details": {"metadata": {"kiln_org": "x", "kiln_plan": "p"}}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let legacy: InvoiceObject = serde_json::from_value(serde_json::json!({
            "id": "in_2", "amount_paid": 3900, "currency": "eur", "payment_intent": "pi_1",
            "subscription_details": {"metadata": {"kiln_plan": "p"}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let plan = |i: InvoiceObject| {
            i.parent.and_then(|p| p.subscription_details).or(i.subscription_details).map(|d| d.metadata)
        };
        assert_eq!(plan(current).and_then(|m| m.get(META_PLAN).cloned()).as_deref(), Some("p"));
        assert_eq!(plan(legacy).and_then(|m| m.get(META_PLAN).cloned()).as_deref(), Some("p"));
    }
}
