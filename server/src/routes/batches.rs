//! The batches routes: submit many jobs at once (a CSV manifest or a list of items, all or
//! nothing) and follow them through one batch object.

use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Auth, Scope};
use crate::batches::{self, Batch, Item, MAX_ITEMS};
use crate::billing::studio;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::jobs::{self, NewJob};
use crate::openapi::ErrorBody;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_batch)).routes(routes!(get_batch))
}

pub use kiln_api::batches::{CreateBatch, CreateItem};

/// Creates one job per item, all in one transaction: an item that is refused (an upload that
/// is not complete or not the organisation's, bad settings, a bad manifest row) refuses the
/// whole batch, with the item's code and a message naming it (`items[2]: …`, `line 4: …`).
#[utoipa::path(post, path = "/v1/batches", tag = "batches", security(("bearer" = [])), request_body = CreateBatch,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key")),
    responses((status = 201, body = Batch), (status = 400, body = ErrorBody), (status = 402, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn create_batch(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CreateBatch>,
) -> ApiResult<(StatusCode, Json<Batch>)> {
    auth.require(Scope::JobsWrite)?;
    studio::refuse_claim(&auth, "submit batches")?;
    let defaults = jobs::parse_settings(body.settings)?;
    let (source, items) = match (body.items, body.csv) {
        (Some(items), None) => {
            let items = items
                .into_iter()
                .enumerate()
                .map(|(at, item)| {
                    let label = format!("items[{at}]");
                    let settings = jobs::parse_settings(item.settings).map_err(|e| batches::in_item(e, &label))?;
                    Ok(Item { label, upload_id: item.upload_id, settings })
                })
                .collect::<ApiResult<Vec<Item>>>()?;
            ("items", items)
        }
        (None, Some(csv)) => ("csv", batches::manifest_items(&csv)?),
        _ => return Err(ApiError::bad_request("invalid_batch", "give either `items` or `csv`, not both")),
    };
    if items.is_empty() {
        return Err(ApiError::bad_request("empty_batch", "the batch lists no items"));
    }
    if items.len() > MAX_ITEMS {
        return Err(ApiError::too_large(
            "batch_too_large",
            format!("a batch holds at most {MAX_ITEMS} items, not {}", items.len()),
        ));
    }
    let batch_id = Uuid::now_v7();
    let mut tx = state.db.begin().await?;
    batches::insert(&mut tx, auth.org_id, batch_id, source, items.len()).await?;
    for (at, item) in (0..).zip(items) {
        let new = NewJob {
            upload_id: item.upload_id,
            settings: item.settings.over(&defaults),
            priority: body.priority,
            batch: Some((batch_id, at)),
        };
        jobs::create_job(&mut tx, &auth, &state.config.billing.prices, new)
            .await
            .map_err(|e| batches::in_item(e, &item.label))?;
    }
    let batch = batches::fetch(&mut tx, auth.org_id, batch_id).await?;
    tx.commit().await?;
    tracing::info!(%batch_id, org_id = %auth.org_id, items = batch.items.len(), "batch created");
    Ok((StatusCode::CREATED, Json(batch)))
}

/// The batch: its state, counts by job state, and each item's job, state and error.
#[utoipa::path(get, path = "/v1/batches/{id}", tag = "batches", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = Batch), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_batch(State(state): State<AppState>, auth: Auth, Path(id): Path<Uuid>) -> ApiResult<Json<Batch>> {
    auth.require(Scope::JobsRead)?;
    let mut conn = state.db.acquire().await?;
    Ok(Json(batches::fetch(&mut conn, auth.org_id, id).await?))
}
