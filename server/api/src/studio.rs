//! Studio: one model bought without an account, and the claim that authorises it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Deserialize, Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StudioCheckout {
    /// Where Stripe sends the receipt; optional (Stripe's page asks otherwise).
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Serialize, Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StudioPurchase {
    pub claim_id: Uuid,
    /// Shown once: the bearer credential for the upload, the job and the downloads.
    #[cfg_attr(feature = "openapi", schema(example = "kiln_claim_…"))]
    pub claim_token: String,
    pub session_id: String,
    pub checkout_url: String,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: String,
    /// The job it buys: this preset (or a smaller one) for up to `max_photos` photos.
    pub preset: String,
    pub max_photos: u32,
    pub credits: i64,
}

/// A claim, as `GET /v1/studio/claim` shows it to its holder.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Claim {
    pub id: Uuid,
    /// `pending` until Stripe reports the payment, then `paid`.
    #[cfg_attr(feature = "openapi", schema(example = "paid"))]
    pub state: String,
    pub preset: String,
    pub max_photos: i32,
    pub upload_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
}
