//! Studio, one model without an account: `POST /v1/studio/checkout` answers a Checkout URL and a
//! claim token; `GET /v1/studio/claim` shows the claim's state to its holder. Once paid, the token
//! is a bearer credential for one upload (`POST /v1/uploads`), one job (`POST /v1/jobs`) and that
//! job's reads and downloads.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::bearer_token;
use crate::billing::checkout::{self, Product, Sale};
use crate::billing::studio::{self, CLAIM_PREFIX, Claim};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::openapi::ErrorBody;
use crate::state::AppState;
pub use kiln_api::studio::{StudioCheckout, StudioPurchase};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(studio_checkout)).routes(routes!(get_claim))
}

/// Longest email accepted (RFC 5321's path limit).
const MAX_EMAIL: usize = 254;

/// Buys one model without an account: a Checkout Session for Studio's price and a claim token.
/// Once Stripe reports the payment, the token uploads the photos, starts the job and downloads
/// its outputs.
#[utoipa::path(post, path = "/v1/studio/checkout", tag = "studio", request_body = StudioCheckout,
    responses((status = 201, body = StudioPurchase), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn studio_checkout(
    State(state): State<AppState>,
    Json(body): Json<StudioCheckout>,
) -> ApiResult<(StatusCode, Json<StudioPurchase>)> {
    let email = body.email.map(|e| e.trim().to_lowercase()).filter(|e| !e.is_empty());
    if email.as_ref().is_some_and(|e| e.len() > MAX_EMAIL || !e.contains('@') || e.contains('\0')) {
        return Err(ApiError::bad_request("invalid_email", "email must be an email address"));
    }
    let prices = &state.config.billing.prices;
    let org_id = Uuid::now_v7();
    let sale = Sale {
        org_id,
        user_id: None,
        customer_email: email,
        product: &Product::Studio,
        public_url: &state.config.public_url,
    };
    let session = checkout::create(state.payments.as_ref(), prices, &sale).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("INSERT INTO orgs (id, name) VALUES ($1, 'Studio purchase')").bind(org_id).execute(&mut *tx).await?;
    checkout::record(&mut tx, prices, &sale, &session).await?;
    let studio_price = &prices.studio;
    let (claim_token, claim_id) =
        studio::open(&mut tx, org_id, studio_price.preset.name(), studio_price.max_photos, &session.id).await?;
    tx.commit().await?;
    tracing::info!(%claim_id, %org_id, session = %session.id, "studio checkout created");
    Ok((
        StatusCode::CREATED,
        Json(StudioPurchase {
            claim_id,
            claim_token,
            session_id: session.id,
            checkout_url: session.url,
            amount: studio_price.amount,
            currency: studio_price.currency.clone(),
            preset: studio_price.preset.name().into(),
            max_photos: studio_price.max_photos,
            credits: prices.studio_credits(),
        }),
    ))
}

/// The claim of the bearer claim token: `pending` until paid, then `paid`, with its upload and
/// job once made.
#[utoipa::path(get, path = "/v1/studio/claim", tag = "studio", security(("bearer" = [])),
    responses((status = 200, body = Claim), (status = 401, body = ErrorBody)))]
async fn get_claim(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Claim>> {
    let token = bearer_token(&headers)
        .filter(|t| t.starts_with(CLAIM_PREFIX))
        .ok_or_else(|| ApiError::unauthorized("invalid_claim", "send the claim token as Authorization: Bearer"))?;
    let mut conn = state.db.acquire().await?;
    Ok(Json(studio::claim(&mut conn, token).await?))
}
