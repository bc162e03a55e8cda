//! The upload routes: open an upload (presigned multipart part URLs), read it back (parts
//! received, fresh URLs for the rest) and complete it (sizes, hashes, ZIP safety). The logic is
//! in [`crate::uploads`].

use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Auth, Principal, Scope};
use crate::billing::studio;
use crate::error::ApiResult;
use crate::extract::{Json, Path};
use crate::state::AppState;
use crate::uploads::{self, CreateUpload, Upload};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_upload)).routes(routes!(get_upload)).routes(routes!(complete_upload))
}

/// Declares the files of an upload and answers a presigned URL for every part of every file.
/// `PUT` each part's bytes to its URL (keep the `ETag` of each answer only if you like: the
/// server lists the parts itself), then complete the upload. Limits are at `GET /v1/limits`.
#[utoipa::path(post, path = "/v1/uploads", tag = "uploads", security(("bearer" = [])), request_body = CreateUpload,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key")),
    responses(
        (status = 201, body = Upload),
        (status = 400, body = crate::openapi::ErrorBody,
            description = "`empty_upload`, `invalid_file_name`, `duplicate_file_name`, `invalid_file_size`, `invalid_sha256`, `unsupported_file_type`"),
        (status = 403, body = crate::openapi::ErrorBody),
        (status = 413, body = crate::openapi::ErrorBody, description = "`too_many_files`, `file_too_large`, `upload_too_large`")))]
async fn create_upload(
    State(state): State<AppState>,
    auth: Auth,
    Json(body): Json<CreateUpload>,
) -> ApiResult<(StatusCode, Json<Upload>)> {
    auth.require(Scope::JobsWrite)?;
    let claim = match auth.principal {
        Principal::Claim(claim) => {
            let mut conn = state.db.acquire().await?;
            studio::check_upload(&mut conn, claim, body.files.len()).await?;
            Some(claim)
        }
        _ => None,
    };
    let upload = uploads::create(&state, auth.org_id, claim, body).await?;
    Ok((StatusCode::CREATED, Json(upload)))
}

/// An upload. While it is open, each file lists the parts storage holds (`received`) and fresh
/// URLs for the parts still to send (`parts`): how an interrupted upload resumes. The URLs write
/// into storage, so a credential without `jobs:write` gets the upload without them.
#[utoipa::path(get, path = "/v1/uploads/{id}", tag = "uploads", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Upload), (status = 404, body = crate::openapi::ErrorBody)))]
async fn get_upload(State(state): State<AppState>, auth: Auth, Path(id): Path<Uuid>) -> ApiResult<Json<Upload>> {
    auth.require(Scope::JobsRead)?;
    let mut upload = uploads::get(&state, auth.org_id, id).await?;
    if auth.require(Scope::JobsWrite).is_err() {
        upload.urls_expire_at = None;
        upload.files.iter_mut().for_each(|file| file.parts.clear());
    }
    Ok(Json(upload))
}

/// Completes an upload: every part must be in storage; each file is assembled and its size and
/// SHA-256 verified, and a ZIP is checked with the engine's ZIP safety. A refusal rejects the
/// upload for good and deletes its files (create a new one); completing a complete upload
/// answers it again.
#[utoipa::path(post, path = "/v1/uploads/{id}/complete", tag = "uploads", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = Upload),
        (status = 400, body = crate::openapi::ErrorBody,
            description = "`missing_parts`, `size_mismatch`, `hash_mismatch`, `unsafe_zip`: the upload is rejected"),
        (status = 404, body = crate::openapi::ErrorBody),
        (status = 409, body = crate::openapi::ErrorBody, description = "`upload_rejected` (refused before), `upload_expired`")))]
async fn complete_upload(State(state): State<AppState>, auth: Auth, Path(id): Path<Uuid>) -> ApiResult<Json<Upload>> {
    auth.require(Scope::JobsWrite)?;
    Ok(Json(uploads::complete(&state, auth.org_id, id).await?))
}
