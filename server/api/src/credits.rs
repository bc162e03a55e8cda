//! Balances, quotes, buying credits and the ledger as the customer sees it.

use chrono::{DateTime, Utc};
use kiln_protocol::Preset;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::prices::Priority;

/// An organisation's balances, as every route shows them: sums of the ledger's entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Balances {
    /// Credits that new jobs may reserve.
    pub available: i64,
    /// Credits held by queued and running jobs.
    pub reserved: i64,
    /// Credits owed after a refund of credits already spent; the next purchase settles it first.
    pub debt: i64,
}

#[derive(Deserialize, Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    pub photos: u32,
    /// kiln-protocol's preset (`preview`, `reduced`, `medium`, `full`, `raw`); default `medium`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "full"))]
    pub preset: Option<Preset>,
    #[serde(default)]
    pub priority: Priority,
}

#[derive(Deserialize, Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BuyPack {
    /// A pack's id from `GET /v1/prices`.
    #[cfg_attr(feature = "openapi", schema(example = "pack_100"))]
    pub pack: String,
}

#[derive(Deserialize, Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    /// A plan's id from `GET /v1/prices`.
    #[cfg_attr(feature = "openapi", schema(example = "monthly_500"))]
    pub plan: String,
}

/// A Checkout Session to pay on Stripe's page.
#[derive(Serialize, Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Checkout {
    /// Stripe's Checkout Session id (`cs_…`).
    pub session_id: String,
    /// Send the customer here.
    pub checkout_url: String,
}

/// One ledger transaction as the organisation sees it: why, what it refers to, and how it moved
/// each of the organisation's balances.
#[derive(Serialize, Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerTransaction {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub reason: Reason,
    /// The job it reserved, captured or released credits for.
    pub job_id: Option<Uuid>,
    /// The Stripe object behind it: a Checkout Session, an invoice or a charge.
    pub stripe_ref: Option<String>,
    /// Why, in words: an administrator's reason, `signup credits`, ….
    pub note: Option<String>,
    /// What it added to (or, negative, took from) the available balance.
    pub available: i64,
    /// What it added to the reserved balance.
    pub reserved: i64,
    /// What it added to the debt (credits owed; negative when a purchase settled some).
    pub debt: i64,
    /// The organisation's balances once it was posted.
    pub balance_after: Balances,
}

/// Which transactions `GET /v1/credits/ledger` lists, as its query string (every field optional).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    /// 1 to 100, default 20.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// The `next` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Only this job's transactions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Uuid>,
    /// Created at or after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

#[derive(Serialize, Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerPage {
    /// Newest first.
    pub data: Vec<LedgerTransaction>,
    /// Pass as `after` for the next page; null on the last one.
    pub next: Option<Uuid>,
}

/// Why credits moved: the `reason` of a ledger transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// A credit pack paid through Checkout.
    Purchase,
    /// A paid invoice of a monthly plan.
    Subscription,
    /// A Studio purchase (one model, no account).
    Studio,
    /// Credits an administrator granted.
    Grant,
    /// Credits an administrator took back.
    Revoke,
    /// A job queued: its quote moves from available to reserved.
    Reserve,
    /// A job succeeded: its reservation is spent.
    Capture,
    /// A job failed, was canceled or expired: its reservation goes back to available.
    Release,
    /// A refund in Stripe took the credits of a purchase back.
    Refund,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::Purchase,
        Reason::Subscription,
        Reason::Studio,
        Reason::Grant,
        Reason::Revoke,
        Reason::Reserve,
        Reason::Capture,
        Reason::Release,
        Reason::Refund,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Purchase => "purchase",
            Reason::Subscription => "subscription",
            Reason::Studio => "studio",
            Reason::Grant => "grant",
            Reason::Revoke => "revoke",
            Reason::Reserve => "reserve",
            Reason::Capture => "capture",
            Reason::Release => "release",
            Reason::Refund => "refund",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}
