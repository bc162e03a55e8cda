//! Staff routes: look an organisation up (members, balances, jobs by state), grant or revoke its
//! credits with a reason (a ledger transaction like any other, naming the administrator), and
//! list its jobs.
//!
//! These are the API's only cross-organisation routes: the organisation comes from the path,
//! not from the caller's credentials, and [`AdminAuth`] lets only staff through: a user's access
//! token (never an API key or a Studio claim) whose `users.is_admin` is true, read from the
//! database on every request so a demotion takes effect at once. Everyone else gets 403
//! `admin_required`. Staff are made with `kiln-server admin promote <email>` ([`set_admin`]).
//! Every action is logged with the administrator's id.

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Auth, Principal};
use crate::billing::ledger::{self, Account, Balances, Reason, Reference};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::jobs::{self, JobState};
use crate::openapi::ErrorBody;
use crate::routes::jobs::JobList;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_org)).routes(routes!(change_credits)).routes(routes!(org_jobs))
}

/// Jobs per page unless `limit` says otherwise, and the most: as `GET /v1/jobs`.
const DEFAULT_PAGE: i64 = 20;
const MAX_PAGE: i64 = 100;

/// Longest reason for a grant or revocation: a sentence or two, kept in the ledger for good.
const MAX_REASON_CHARS: usize = 500;

/// A staff member, checked on each request.
#[derive(Clone, Copy, Debug)]
pub struct AdminAuth {
    pub user_id: Uuid,
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_request_parts(parts, state).await?;
        // The same answer for API keys, claims and users who are not staff.
        let refused = || ApiError::forbidden("admin_required", "this route is for Kiln's staff, with a user's token");
        let Principal::User(user_id) = auth.principal else {
            return Err(refused());
        };
        let is_admin: Option<bool> = sqlx::query_scalar("SELECT is_admin FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&state.db)
            .await?;
        if is_admin == Some(true) { Ok(AdminAuth { user_id }) } else { Err(refused()) }
    }
}

/// Makes the user with `email` staff (`admin`) or not; false when no user has that email.
pub async fn set_admin(db: &PgPool, email: &str, admin: bool) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query("UPDATE users SET is_admin = $2 WHERE email = lower($1)")
        .bind(email.trim())
        .bind(admin)
        .execute(db)
        .await?
        .rows_affected();
    Ok(changed == 1)
}

/// A member of an organisation.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    #[schema(example = "owner")]
    pub role: String,
    pub joined_at: DateTime<Utc>,
}

/// An organisation's jobs, counted by state.
#[derive(Serialize, ToSchema, Default, Debug, PartialEq, Eq)]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub canceled: i64,
    pub expired: i64,
}

impl JobCounts {
    fn add(&mut self, state: JobState, count: i64) {
        let slot = match state {
            JobState::Queued => &mut self.queued,
            JobState::Running => &mut self.running,
            JobState::Succeeded => &mut self.succeeded,
            JobState::Failed => &mut self.failed,
            JobState::Canceled => &mut self.canceled,
            JobState::Expired => &mut self.expired,
        };
        *slot += count;
    }
}

/// An organisation as staff see it.
#[derive(Serialize, ToSchema)]
pub struct OrgDetail {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Oldest first.
    pub members: Vec<Member>,
    pub balances: Balances,
    pub jobs: JobCounts,
}

/// Credits to grant (positive) or revoke (negative), and why.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditChange {
    /// Not zero: positive grants, negative revokes (never below zero available).
    #[schema(example = 500)]
    pub credits: i64,
    /// Why, 1 to 500 characters: kept in the ledger, shown to the organisation.
    #[schema(example = "compensation for the outage of 3 May")]
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    limit: Option<i64>,
    after: Option<Uuid>,
}

/// The organisation's name and creation, or 404.
async fn find_org(db: &mut PgConnection, id: Uuid) -> ApiResult<(String, DateTime<Utc>)> {
    let org: Option<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT name, created_at FROM orgs WHERE id = $1").bind(id).fetch_optional(db).await?;
    org.ok_or(ApiError::NotFound { what: "organisation" })
}

/// Any organisation: its members, balances and jobs by state.
#[utoipa::path(get, path = "/v1/admin/orgs/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = OrgDetail), (status = 401, body = ErrorBody),
        (status = 403, description = "`admin_required`: not staff, or not a user's token", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_org(State(state): State<AppState>, admin: AdminAuth, Path(id): Path<Uuid>) -> ApiResult<Json<OrgDetail>> {
    let mut conn = state.db.acquire().await?;
    let (name, created_at) = find_org(&mut conn, id).await?;
    let members: Vec<Member> = sqlx::query_as(
        "SELECT u.id AS user_id, u.email, m.role, m.created_at AS joined_at
         FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.org_id = $1 ORDER BY m.created_at, u.id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let balances = ledger::balances(&mut conn, id).await?;
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM jobs WHERE org_id = $1 GROUP BY state")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    let mut jobs = JobCounts::default();
    for (text, count) in counts {
        let job_state = JobState::parse(&text)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a job of org {id} has the state {text}")))?;
        jobs.add(job_state, count);
    }
    tracing::info!(admin_id = %admin.user_id, org_id = %id, "admin looked up an organisation");
    Ok(Json(OrgDetail { id, name, created_at, members, balances, jobs }))
}

/// Grants (positive `credits`) or revokes (negative) an organisation's credits, with a reason:
/// a `grant` or `revoke` transaction in its ledger naming the administrator. A revocation takes
/// only available credits (409 `insufficient_credits` beyond them, and nothing changes).
/// Answers the balances after.
#[utoipa::path(post, path = "/v1/admin/orgs/{id}/credits", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key")),
    request_body = CreditChange,
    responses((status = 201, body = Balances),
        (status = 400, description = "`invalid_credits` (zero) or `invalid_reason`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`admin_required`: not staff, or not a user's token", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`insufficient_credits`: a revocation beyond the available credits", body = ErrorBody)))]
async fn change_credits(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path(id): Path<Uuid>,
    Json(body): Json<CreditChange>,
) -> ApiResult<(StatusCode, Json<Balances>)> {
    if body.credits == 0 {
        return Err(ApiError::bad_request(
            "invalid_credits",
            "credits is positive (a grant) or negative (a revocation)",
        ));
    }
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::bad_request("invalid_reason", format!("reason is 1 to {MAX_REASON_CHARS} characters")));
    }
    let mut tx = state.db.begin().await?;
    find_org(&mut tx, id).await?;
    let reference = Reference { admin_id: Some(admin.user_id), note: Some(reason.to_string()), ..Reference::default() };
    let balances = if body.credits > 0 {
        ledger::credit(&mut tx, id, Reason::Grant, Account::Grants, body.credits, &reference).await?
    } else {
        ledger::take_back(&mut tx, id, Reason::Revoke, Account::Grants, -body.credits, false, &reference).await?
    };
    tx.commit().await?;
    tracing::info!(admin_id = %admin.user_id, org_id = %id, credits = body.credits, reason, "admin changed credits");
    Ok((StatusCode::CREATED, Json(balances)))
}

/// Any organisation's jobs, newest first.
#[utoipa::path(get, path = "/v1/admin/orgs/{id}/jobs", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path),
           ("limit" = Option<i64>, Query, description = "1 to 100, default 20"),
           ("after" = Option<Uuid>, Query, description = "The `next` of the previous page")),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "`admin_required`: not staff, or not a user's token", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn org_jobs(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path(id): Path<Uuid>,
    Query(query): Query<JobsQuery>,
) -> ApiResult<Json<JobList>> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request("invalid_query", format!("limit is 1 to {MAX_PAGE}")));
    }
    let mut conn = state.db.acquire().await?;
    find_org(&mut conn, id).await?;
    let data = jobs::list_jobs(&mut conn, id, limit, query.after).await?;
    let next = if data.len() as i64 == limit { data.last().map(|j| j.id) } else { None };
    tracing::info!(admin_id = %admin.user_id, org_id = %id, "admin listed an organisation's jobs");
    Ok(Json(JobList { data, next }))
}
