//! Studio: one model bought without an account. A purchase opens an organisation of its own and
//! a claim token (`kiln_claim_…`, stored as SHA-256). Once Stripe reports the Checkout Session
//! paid, the session's credits are the organisation's, and the token authorises one upload, one
//! job and that job's reads and downloads, nothing else.

use chrono::{DateTime, Utc};
use kiln_protocol::{PRESETS, Preset};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::{Auth, Mode, Principal, Scope, secret};
use crate::billing::prices::Priority;
use crate::error::{ApiError, ApiResult};
pub use kiln_api::studio::Claim;

/// Claim tokens start with this.
pub const CLAIM_PREFIX: &str = "kiln_claim_";

/// Days a claim stays usable after its purchase: long enough to take the photos after paying.
pub const CLAIM_DAYS: i64 = 30;

/// Opens the organisation and the claim of a new Studio purchase in the caller's transaction;
/// answers the claim's token (shown once) and id.
pub async fn open(
    tx: &mut PgConnection,
    org_id: Uuid,
    preset: &str,
    max_photos: u32,
    checkout_session_id: &str,
) -> ApiResult<(String, Uuid)> {
    let token = secret::token(CLAIM_PREFIX);
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO studio_claims (id, org_id, token_hash, checkout_session_id, preset, max_photos, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(days => $7))",
    )
    .bind(id)
    .bind(org_id)
    .bind(secret::hash(&token))
    .bind(checkout_session_id)
    .bind(preset)
    .bind(i32::try_from(max_photos).map_err(ApiError::internal)?)
    .bind(i32::try_from(CLAIM_DAYS).map_err(ApiError::internal)?)
    .execute(&mut *tx)
    .await?;
    Ok((token, id))
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: Uuid,
    org_id: Uuid,
    preset: String,
    max_photos: i32,
    paid: bool,
    upload_id: Option<Uuid>,
    job_id: Option<Uuid>,
    expires_at: DateTime<Utc>,
}

async fn find(db: &mut PgConnection, token: &str) -> ApiResult<ClaimRow> {
    let row: Option<ClaimRow> = sqlx::query_as(
        "SELECT id, org_id, preset, max_photos, paid_at IS NOT NULL AS paid, upload_id, job_id, expires_at
         FROM studio_claims WHERE token_hash = $1 AND expires_at > now()",
    )
    .bind(secret::hash(token))
    .fetch_optional(db)
    .await?;
    row.ok_or_else(|| ApiError::unauthorized("invalid_claim", "the claim token is not valid (unknown or expired)"))
}

/// The claim of `token`, paid or not.
pub async fn claim(db: &mut PgConnection, token: &str) -> ApiResult<Claim> {
    let row = find(db, token).await?;
    Ok(Claim {
        id: row.id,
        state: if row.paid { "paid" } else { "pending" }.into(),
        preset: row.preset,
        max_photos: row.max_photos,
        upload_id: row.upload_id,
        job_id: row.job_id,
        expires_at: row.expires_at,
    })
}

/// The caller behind a claim token: its organisation with `jobs:read` and `jobs:write`, live
/// (Studio pays). 402 `payment_pending` until the purchase is paid.
pub async fn authenticate(db: &mut PgConnection, token: &str) -> ApiResult<Auth> {
    let row = find(db, token).await?;
    if !row.paid {
        return Err(ApiError::payment_required(
            "payment_pending",
            "the Studio purchase is not paid yet; finish the Checkout, then retry (GET /v1/studio/claim shows its state)",
        ));
    }
    Ok(Auth {
        org_id: row.org_id,
        principal: Principal::Claim(row.id),
        scopes: vec![Scope::JobsRead, Scope::JobsWrite],
        mode: Mode::Live,
    })
}

/// Refuses what a claim token may not do (batches, anything beyond one upload and one job).
pub fn refuse_claim(auth: &Auth, what: &str) -> ApiResult<()> {
    match auth.principal {
        Principal::Claim(_) => Err(ApiError::forbidden(
            "claim_scope",
            format!("a Studio claim token cannot {what}; sign up for an account"),
        )),
        _ => Ok(()),
    }
}

/// Before an upload of `files` photos by a claim: the claim has no upload yet, and the photos
/// fit what was bought (409 `claim_used`, 400 `too_many_photos`).
pub async fn check_upload(db: &mut PgConnection, claim_id: Uuid, files: usize) -> ApiResult<()> {
    let (used, max_photos): (bool, i32) =
        sqlx::query_as("SELECT upload_id IS NOT NULL, max_photos FROM studio_claims WHERE id = $1")
            .bind(claim_id)
            .fetch_one(db)
            .await?;
    if used {
        return Err(ApiError::conflict("claim_used", "this Studio claim has already made its one upload"));
    }
    if files > usize::try_from(max_photos).unwrap_or(usize::MAX) {
        return Err(ApiError::bad_request(
            "too_many_photos",
            format!("a Studio purchase covers up to {max_photos} photos, not {files}"),
        ));
    }
    Ok(())
}

/// Before a claim's job: it runs at the preset bought or a smaller one, at standard priority
/// (403 `claim_scope`).
pub async fn check_job(tx: &mut PgConnection, claim_id: Uuid, preset: Preset, priority: Priority) -> ApiResult<()> {
    let (bought,): (String,) =
        sqlx::query_as("SELECT preset FROM studio_claims WHERE id = $1").bind(claim_id).fetch_one(&mut *tx).await?;
    let rank = |p: Preset| PRESETS.iter().position(|q| *q == p);
    let bought_rank = PRESETS.iter().position(|p| p.name() == bought);
    if bought_rank.is_none() || rank(preset) > bought_rank {
        return Err(ApiError::forbidden(
            "claim_scope",
            format!("this Studio purchase is for a {bought} model; {} is above it", preset.name()),
        ));
    }
    if priority == Priority::Rush {
        return Err(ApiError::forbidden("claim_scope", "a Studio purchase runs at standard priority, not rush"));
    }
    Ok(())
}

/// Ties the claim's one upload (or job) to it in the caller's transaction: 409 `claim_used` if
/// it already has one.
pub async fn take(tx: &mut PgConnection, claim_id: Uuid, what: Use, id: Uuid) -> ApiResult<()> {
    let query = match what {
        Use::Upload => "UPDATE studio_claims SET upload_id = $2 WHERE id = $1 AND upload_id IS NULL",
        Use::Job => "UPDATE studio_claims SET job_id = $2 WHERE id = $1 AND job_id IS NULL",
    };
    let taken = sqlx::query(query).bind(claim_id).bind(id).execute(&mut *tx).await?.rows_affected() == 1;
    if taken {
        return Ok(());
    }
    let thing = match what {
        Use::Upload => "upload",
        Use::Job => "job",
    };
    Err(ApiError::conflict("claim_used", format!("this Studio claim has already made its one {thing}")))
}

/// What a claim is used for, once each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    Upload,
    Job,
}
