//! Prices, quotes, balances and buying credits: `GET /v1/prices`, `POST /v1/quotes`,
//! `GET /v1/credits`, Checkout for a credit pack (`POST /v1/credits/checkout`) or a monthly plan
//! (`POST /v1/plans/checkout`), and the page Stripe sends the customer back to.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Auth, Scope};
use crate::billing::checkout::{self, Product, Sale};
use crate::billing::ledger::{self, Balances};
use crate::billing::prices::{PriceTable, Quote};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Query};
use crate::openapi::ErrorBody;
use crate::state::AppState;
pub use kiln_api::credits::{BuyPack, Checkout, QuoteRequest, Subscribe};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(prices))
        .routes(routes!(quote))
        .routes(routes!(credits))
        .routes(routes!(buy_pack))
        .routes(routes!(subscribe))
        .routes(routes!(checkout_return))
}

/// The price table: credits per preset and photo, the rush surcharge, the packs and plans on
/// sale, and Studio's price.
#[utoipa::path(get, path = "/v1/prices", tag = "credits", responses((status = 200, body = PriceTable)))]
async fn prices(State(state): State<AppState>) -> Json<PriceTable> {
    Json(state.config.billing.prices.clone())
}

/// The most photos a quote is asked about: past any upload the service accepts.
const MAX_QUOTE_PHOTOS: u32 = 100_000;

/// What a job of that many photos, preset and priority costs, before it runs. A job submitted
/// with those is reserved exactly this (test keys: quoted, never charged).
#[utoipa::path(post, path = "/v1/quotes", tag = "credits", request_body = QuoteRequest,
    responses((status = 200, body = Quote), (status = 400, body = ErrorBody)))]
async fn quote(State(state): State<AppState>, Json(body): Json<QuoteRequest>) -> ApiResult<Json<Quote>> {
    if body.photos > MAX_QUOTE_PHOTOS {
        return Err(ApiError::bad_request("invalid_quote", format!("photos is at most {MAX_QUOTE_PHOTOS}")));
    }
    let preset = body.preset.unwrap_or_default();
    Ok(Json(state.config.billing.prices.quote(body.photos, preset, body.priority)))
}

/// The organisation's balances: what new jobs may reserve, what queued and running jobs hold,
/// and any debt a refund left. Sums of the ledger (`GET /v1/credits/ledger`).
#[utoipa::path(get, path = "/v1/credits", tag = "credits", security(("bearer" = [])),
    responses((status = 200, body = Balances), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn credits(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Balances>> {
    auth.require(Scope::JobsRead)?;
    let mut conn = state.db.acquire().await?;
    Ok(Json(ledger::balances(&mut conn, auth.org_id).await?))
}

/// Buys a credit pack: a Checkout Session (`mode=payment`). The credits are granted when Stripe
/// reports the payment (at once for cards, later for bank debits). A signed-in user's token.
#[utoipa::path(post, path = "/v1/credits/checkout", tag = "credits", security(("bearer" = [])), request_body = BuyPack,
    responses((status = 201, body = Checkout), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn buy_pack(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<BuyPack>,
) -> ApiResult<(StatusCode, Json<Checkout>)> {
    let pack = state.config.billing.prices.pack(&body.pack).cloned().ok_or_else(|| {
        ApiError::bad_request("unknown_pack", format!("there is no pack {:?}; GET /v1/prices lists them", body.pack))
    })?;
    sell(&state, &auth, Product::Pack(pack)).await
}

/// Subscribes to a monthly plan: a Checkout Session (`mode=subscription`); every paid monthly
/// invoice grants the plan's credits. A signed-in user's token.
#[utoipa::path(post, path = "/v1/plans/checkout", tag = "credits", security(("bearer" = [])), request_body = Subscribe,
    responses((status = 201, body = Checkout), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn subscribe(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<Subscribe>,
) -> ApiResult<(StatusCode, Json<Checkout>)> {
    let plan = state.config.billing.prices.plan(&body.plan).cloned().ok_or_else(|| {
        ApiError::bad_request("unknown_plan", format!("there is no plan {:?}; GET /v1/prices lists them", body.plan))
    })?;
    sell(&state, &auth, Product::Plan(plan)).await
}

/// Money is a person's decision: only a user's token buys, never an API key.
async fn sell(state: &AppState, auth: &Auth, product: Product) -> ApiResult<(StatusCode, Json<Checkout>)> {
    let user_id = auth.user()?;
    let email: (String,) =
        sqlx::query_as("SELECT email FROM users WHERE id = $1").bind(user_id).fetch_one(&state.db).await?;
    let sale = Sale {
        org_id: auth.org_id,
        user_id: Some(user_id),
        customer_email: Some(email.0),
        product: &product,
        public_url: &state.config.public_url,
    };
    let prices = &state.config.billing.prices;
    let session = checkout::create(state.payments.as_ref(), prices, &sale).await?;
    let mut tx = state.db.begin().await?;
    checkout::record(&mut tx, prices, &sale, &session).await?;
    tx.commit().await?;
    tracing::info!(org_id = %auth.org_id, session = %session.id, "checkout created");
    Ok((StatusCode::CREATED, Json(Checkout { session_id: session.id, checkout_url: session.url })))
}

#[derive(Deserialize)]
pub struct ReturnQuery {
    result: Option<String>,
}

/// Where Stripe's Checkout page sends the customer back: a page saying what happens next.
#[utoipa::path(get, path = "/checkout/return", tag = "credits",
    params(("result" = Option<String>, Query, description = "`paid` or `canceled`")),
    responses((status = 200, description = "An HTML page", content_type = "text/html")))]
async fn checkout_return(Query(query): Query<ReturnQuery>) -> impl IntoResponse {
    let (title, text) = match query.result.as_deref() {
        Some("paid") => (
            "Payment received",
            "Thank you. Your credits appear as soon as Stripe confirms the payment. You can close this tab.",
        ),
        _ => ("Payment canceled", "Nothing was charged. You can close this tab."),
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Kiln: {title}</title>\
         <body style=\"font-family: system-ui; margin: 4rem auto; max-width: 32rem\"><h1>{title}</h1><p>{text}</p></body></html>"
    );
    ([(header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'")], Html(page))
}
