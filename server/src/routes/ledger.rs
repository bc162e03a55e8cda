//! What a customer sees of their credits beyond the balance: the ledger's transactions
//! (`GET /v1/credits/ledger`, each with its movement on the organisation's accounts and the
//! balances after it), usage per job (`GET /v1/usage`, JSON or CSV) and purchases with their
//! Stripe receipts (`GET /v1/purchases`). Every query is scoped by the caller's organisation.
//!
//! A transaction's `balance_after` is the organisation's balance now less every later
//! transaction's movement, summed in the same statement (one snapshot): a page of recent
//! transactions costs only those, and transactions are ordered by id (UUID v7, taken while the
//! organisation's accounts are locked), which is the order their postings were applied in.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use kiln_protocol::Preset;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Auth, Scope};
use crate::billing::ledger::{Balances, Reason};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Query};
use crate::openapi::ErrorBody;
use crate::state::AppState;
pub use kiln_api::credits::{LedgerPage, LedgerQuery, LedgerTransaction};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_ledger)).routes(routes!(usage)).routes(routes!(list_purchases))
}

/// Transactions or purchases per page unless `limit` says otherwise, and the most one page
/// holds: the same as `GET /v1/jobs`.
const DEFAULT_PAGE: i64 = 20;
const MAX_PAGE: i64 = 100;

/// Jobs in a usage report unless `limit` says otherwise, and the most: a month of a busy
/// integration fits one CSV download, and narrower `since`/`until` windows cover the rest.
const DEFAULT_USAGE_ROWS: i64 = 100;
const MAX_USAGE_ROWS: i64 = 1000;

fn check_limit(limit: Option<i64>, default: i64, most: i64) -> ApiResult<i64> {
    let limit = limit.unwrap_or(default);
    if (1..=most).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request("invalid_query", format!("limit is 1 to {most}")))
    }
}

#[derive(sqlx::FromRow)]
struct LedgerRow {
    id: Uuid,
    created_at: DateTime<Utc>,
    reason: String,
    job_id: Option<Uuid>,
    stripe_ref: Option<String>,
    note: Option<String>,
    available: i64,
    reserved: i64,
    debt: i64,
    available_after: i64,
    reserved_after: i64,
    debt_after: i64,
}

impl LedgerRow {
    fn into_transaction(self) -> ApiResult<LedgerTransaction> {
        let reason = Reason::parse(&self.reason).ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("ledger transaction {} has the reason {}", self.id, self.reason))
        })?;
        Ok(LedgerTransaction {
            id: self.id,
            created_at: self.created_at,
            reason,
            job_id: self.job_id,
            stripe_ref: self.stripe_ref,
            note: self.note,
            available: self.available,
            reserved: self.reserved,
            debt: self.debt,
            balance_after: Balances {
                available: self.available_after,
                reserved: self.reserved_after,
                debt: self.debt_after,
            },
        })
    }
}

/// The page (filters and cursor applied), each transaction's movement on the organisation's
/// accounts (debt negated: shown as credits owed), and the balances after it: the balances now
/// less the movements of every later transaction (a window over the transactions from the
/// page's oldest on). One statement, so one snapshot of balances and entries.
const LEDGER_QUERY: &str = "
WITH page AS (
    SELECT id, created_at, reason, job_id, stripe_ref, note
    FROM ledger_transactions
    WHERE org_id = $1
      AND ($2::text IS NULL OR reason = $2)
      AND ($3::uuid IS NULL OR job_id = $3)
      AND ($4::timestamptz IS NULL OR created_at >= $4)
      AND ($5::timestamptz IS NULL OR created_at < $5)
      AND ($6::uuid IS NULL OR id < $6)
    ORDER BY id DESC
    LIMIT $7
),
moves AS (
    SELECT t.id,
           coalesce(sum(e.amount) FILTER (WHERE a.kind = 'available'), 0)::bigint AS available,
           coalesce(sum(e.amount) FILTER (WHERE a.kind = 'reserved'), 0)::bigint AS reserved,
           coalesce(sum(-e.amount) FILTER (WHERE a.kind = 'debt'), 0)::bigint AS debt
    FROM ledger_transactions t
    JOIN ledger_entries e ON e.transaction_id = t.id
    JOIN credit_accounts a ON a.id = e.account_id AND a.org_id = $1
    WHERE t.org_id = $1 AND t.id >= (SELECT id FROM page ORDER BY id LIMIT 1)
    GROUP BY t.id
),
later AS (
    SELECT id, available, reserved, debt,
           coalesce(sum(available) OVER newer, 0)::bigint AS available_later,
           coalesce(sum(reserved) OVER newer, 0)::bigint AS reserved_later,
           coalesce(sum(debt) OVER newer, 0)::bigint AS debt_later
    FROM moves
    WINDOW newer AS (ORDER BY id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
),
now AS (
    SELECT coalesce(sum(balance) FILTER (WHERE kind = 'available'), 0)::bigint AS available,
           coalesce(sum(balance) FILTER (WHERE kind = 'reserved'), 0)::bigint AS reserved,
           coalesce(sum(-balance) FILTER (WHERE kind = 'debt'), 0)::bigint AS debt
    FROM credit_accounts
    WHERE org_id = $1
)
SELECT p.id, p.created_at, p.reason, p.job_id, p.stripe_ref, p.note,
       coalesce(l.available, 0) AS available,
       coalesce(l.reserved, 0) AS reserved,
       coalesce(l.debt, 0) AS debt,
       n.available - coalesce(l.available_later, 0) AS available_after,
       n.reserved - coalesce(l.reserved_later, 0) AS reserved_after,
       n.debt - coalesce(l.debt_later, 0) AS debt_after
FROM page p
LEFT JOIN later l ON l.id = p.id
CROSS JOIN now n
ORDER BY p.id DESC";

/// The organisation's ledger: every movement of its credits, newest first. Filter by `reason`,
/// `job_id`, and `since` (inclusive) / `until` (exclusive) on `created_at`. The movements of
/// all transactions sum to the balances `GET /v1/credits` shows.
#[utoipa::path(get, path = "/v1/credits/ledger", tag = "credits", security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, description = "1 to 100, default 20"),
           ("after" = Option<Uuid>, Query, description = "The `next` of the previous page"),
           ("reason" = Option<String>, Query, description = "purchase, subscription, studio, grant, revoke, reserve, capture, release or refund"),
           ("job_id" = Option<Uuid>, Query, description = "Only this job's transactions"),
           ("since" = Option<DateTime<Utc>>, Query, description = "RFC 3339; created at or after"),
           ("until" = Option<DateTime<Utc>>, Query, description = "RFC 3339; created before")),
    responses((status = 200, body = LedgerPage),
        (status = 400, description = "`invalid_query`, or `invalid_cursor` when `after` is not one of the organisation's transactions", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_ledger(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<LedgerQuery>,
) -> ApiResult<Json<LedgerPage>> {
    auth.require(Scope::JobsRead)?;
    let limit = check_limit(query.limit, DEFAULT_PAGE, MAX_PAGE)?;
    if let Some(cursor) = query.after {
        let known: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM ledger_transactions WHERE id = $1 AND org_id = $2")
            .bind(cursor)
            .bind(auth.org_id)
            .fetch_optional(&state.db)
            .await?;
        if known.is_none() {
            return Err(ApiError::bad_request("invalid_cursor", "after must be the id of one of your transactions"));
        }
    }
    let rows: Vec<LedgerRow> = sqlx::query_as(LEDGER_QUERY)
        .bind(auth.org_id)
        .bind(query.reason.map(Reason::as_str))
        .bind(query.job_id)
        .bind(query.since)
        .bind(query.until)
        .bind(query.after)
        .bind(limit)
        .fetch_all(&state.db)
        .await?;
    let data = rows.into_iter().map(LedgerRow::into_transaction).collect::<ApiResult<Vec<_>>>()?;
    let next = if data.len() as i64 == limit { data.last().map(|t| t.id) } else { None };
    Ok(Json(LedgerPage { data, next }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    limit: Option<i64>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    format: Option<String>,
}

/// One job's usage: what it was, what it ran for and what it cost. The CSV has these columns,
/// in this order.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct UsageRow {
    pub job_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    #[schema(example = "succeeded")]
    pub state: String,
    /// `live`, or `test` (never charged).
    #[schema(example = "live")]
    pub mode: String,
    pub photos: i32,
    /// The job's preset (`medium`, the default, when it named none).
    #[schema(example = "medium")]
    pub preset: String,
    #[schema(example = "standard")]
    pub priority: String,
    /// Seconds the workers' devices spent on it.
    pub gpu_seconds: f64,
    pub credits_quoted: i64,
    pub credits_charged: i64,
    pub credits_released: i64,
}

/// The CSV's header row: [`UsageRow`]'s fields.
const USAGE_COLUMNS: [&str; 12] = [
    "job_id",
    "created_at",
    "finished_at",
    "state",
    "mode",
    "photos",
    "preset",
    "priority",
    "gpu_seconds",
    "credits_quoted",
    "credits_charged",
    "credits_released",
];

/// Sums over every job of the period (`since`/`until`), listed or not.
#[derive(Serialize, ToSchema, Default, Debug, PartialEq)]
pub struct UsageTotals {
    pub jobs: i64,
    pub photos: i64,
    pub gpu_seconds: f64,
    pub credits_charged: i64,
}

#[derive(Serialize, ToSchema)]
pub struct UsageReport {
    /// Newest first, at most `limit`.
    pub data: Vec<UsageRow>,
    pub totals: UsageTotals,
}

/// A usage row with the period's totals (window sums, computed before the limit).
#[derive(sqlx::FromRow)]
struct UsageRecord {
    #[sqlx(flatten)]
    row: UsageRow,
    total_jobs: i64,
    total_photos: i64,
    total_gpu_seconds: f64,
    total_credits_charged: i64,
}

const USAGE_QUERY: &str = "
SELECT j.id AS job_id, j.created_at, j.finished_at, j.state, j.mode, j.photos,
       coalesce(j.settings->>'preset', $2) AS preset, j.priority, j.gpu_seconds,
       j.credits_quoted, j.credits_charged, j.credits_released,
       count(*) OVER () AS total_jobs,
       (sum(j.photos) OVER ())::bigint AS total_photos,
       (sum(j.gpu_seconds) OVER ())::float8 AS total_gpu_seconds,
       (sum(j.credits_charged) OVER ())::bigint AS total_credits_charged
FROM jobs j
WHERE j.org_id = $1
  AND ($3::timestamptz IS NULL OR j.created_at >= $3)
  AND ($4::timestamptz IS NULL OR j.created_at < $4)
ORDER BY j.created_at DESC, j.id DESC
LIMIT $5";

/// Whether the caller asked for CSV: `format=csv`, or `Accept: text/csv` without a `format`.
fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> ApiResult<bool> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(_) => Err(ApiError::bad_request("invalid_query", "format is csv or json")),
        None => Ok(headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|media| media.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv")))),
    }
}

/// Usage per job, newest first, with the period's totals: photos, preset, GPU-seconds and
/// credits. `since` (inclusive) and `until` (exclusive) bound `created_at`. As CSV (a header
/// row, RFC 4180 quoting) with `format=csv` or `Accept: text/csv`.
#[utoipa::path(get, path = "/v1/usage", tag = "credits", security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, description = "1 to 1000, default 100"),
           ("since" = Option<DateTime<Utc>>, Query, description = "RFC 3339; jobs created at or after"),
           ("until" = Option<DateTime<Utc>>, Query, description = "RFC 3339; jobs created before"),
           ("format" = Option<String>, Query, description = "`json` (default) or `csv`")),
    responses((status = 200, content((UsageReport = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn usage(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Query(query): Query<UsageQuery>,
) -> ApiResult<Response> {
    auth.require(Scope::JobsRead)?;
    let limit = check_limit(query.limit, DEFAULT_USAGE_ROWS, MAX_USAGE_ROWS)?;
    let csv = wants_csv(query.format.as_deref(), &headers)?;
    let records: Vec<UsageRecord> = sqlx::query_as(USAGE_QUERY)
        .bind(auth.org_id)
        .bind(Preset::default().name())
        .bind(query.since)
        .bind(query.until)
        .bind(limit)
        .fetch_all(&state.db)
        .await?;
    let totals = records.first().map_or_else(UsageTotals::default, |r| UsageTotals {
        jobs: r.total_jobs,
        photos: r.total_photos,
        gpu_seconds: r.total_gpu_seconds,
        credits_charged: r.total_credits_charged,
    });
    let data: Vec<UsageRow> = records.into_iter().map(|r| r.row).collect();
    if !csv {
        return Ok(Json(UsageReport { data, totals }).into_response());
    }
    let body = usage_csv(&data).map_err(ApiError::internal)?;
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    response
        .headers_mut()
        .insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"usage.csv\""));
    Ok(response)
}

/// The rows as CSV: the header row (always, even with no rows), then one record each.
fn usage_csv(rows: &[UsageRow]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    writer.write_record(USAGE_COLUMNS)?;
    for row in rows {
        writer.serialize(row)?;
    }
    writer.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchasesQuery {
    limit: Option<i64>,
    after: Option<Uuid>,
}

/// Credits bought: a credit pack, a plan's monthly invoice or a Studio model.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Purchase {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    /// `pack`, `plan` or `studio`.
    #[schema(example = "pack")]
    pub kind: String,
    /// The pack's or plan's id in the price table (`studio` for Studio).
    #[schema(example = "pack_100")]
    pub product: String,
    pub credits: i64,
    /// Minor units of `currency` (cents).
    pub amount: i64,
    #[schema(example = "eur")]
    pub currency: String,
    /// Credits taken back by refunds so far.
    pub credits_refunded: i64,
    /// Money refunded so far, in minor units.
    pub amount_refunded: i64,
    /// Stripe's receipt for the payment, once Stripe has reported its charge.
    pub receipt_url: Option<String>,
    pub checkout_session_id: Option<String>,
    /// The paid invoice of a plan.
    pub invoice_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PurchasePage {
    /// Newest first.
    pub data: Vec<Purchase>,
    /// Pass as `after` for the next page; null on the last one.
    pub next: Option<Uuid>,
}

const PURCHASES_QUERY: &str = "
SELECT p.id, p.created_at, p.kind, p.product, p.credits, p.amount, p.currency, p.credits_refunded,
       p.amount_refunded, c.receipt_url, p.checkout_session_id, p.invoice_id
FROM purchases p
LEFT JOIN stripe_charges c ON c.payment_intent = p.payment_intent
WHERE p.org_id = $1
  AND ($3::uuid IS NULL OR (p.created_at, p.id) < (SELECT created_at, id FROM purchases WHERE id = $3 AND org_id = $1))
ORDER BY p.created_at DESC, p.id DESC
LIMIT $2";

/// The organisation's purchases, newest first, with Stripe's receipt URL of each.
#[utoipa::path(get, path = "/v1/purchases", tag = "credits", security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, description = "1 to 100, default 20"),
           ("after" = Option<Uuid>, Query, description = "The `next` of the previous page")),
    responses((status = 200, body = PurchasePage),
        (status = 400, description = "`invalid_query`, or `invalid_cursor` when `after` is not one of the organisation's purchases", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_purchases(
    State(state): State<AppState>,
    auth: Auth,
    Query(query): Query<PurchasesQuery>,
) -> ApiResult<Json<PurchasePage>> {
    auth.require(Scope::JobsRead)?;
    let limit = check_limit(query.limit, DEFAULT_PAGE, MAX_PAGE)?;
    if let Some(cursor) = query.after {
        let known: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM purchases WHERE id = $1 AND org_id = $2")
            .bind(cursor)
            .bind(auth.org_id)
            .fetch_optional(&state.db)
            .await?;
        if known.is_none() {
            return Err(ApiError::bad_request("invalid_cursor", "after must be the id of one of your purchases"));
        }
    }
    let data: Vec<Purchase> =
        sqlx::query_as(PURCHASES_QUERY).bind(auth.org_id).bind(limit).bind(query.after).fetch_all(&state.db).await?;
    let next = if data.len() as i64 == limit { data.last().map(|p| p.id) } else { None };
    Ok(Json(PurchasePage { data, next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_header_names_the_rows_fields_in_order() {
        let row = UsageRow {
            job_id: Uuid::nil(),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            finished_at: None,
            state: "queued".into(),
            mode: "live".into(),
            photos: 3,
            preset: "medium, \"quoted\"".into(),
            priority: "standard".into(),
            gpu_seconds: 1.5,
            credits_quoted: 10,
            credits_charged: 0,
            credits_released: 0,
        };
        let mut with_header = csv::Writer::from_writer(Vec::new());
        assert!(with_header.serialize(&row).is_ok());
        let derived = with_header.into_inner().map(String::from_utf8);
        let ours = usage_csv(std::slice::from_ref(&row)).map(String::from_utf8);
        assert!(
            matches!((derived, ours), (Ok(Ok(a)), Ok(Ok(b))) if a == b && b.contains("\"medium, \"\"quoted\"\"\""))
        );
        assert!(usage_csv(&[]).is_ok_and(|csv| csv == format!("{}\n", USAGE_COLUMNS.join(",")).into_bytes()));
    }

    #[test]
    fn csv_is_asked_for_by_format_or_accept() {
        let mut headers = HeaderMap::new();
        assert!(wants_csv(None, &headers).is_ok_and(|csv| !csv));
        assert!(wants_csv(Some("csv"), &headers).is_ok_and(|csv| csv));
        assert!(wants_csv(Some("xml"), &headers).is_err_and(|e| e.code() == "invalid_query"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json;q=0.5, Text/CSV;q=1"));
        assert!(wants_csv(None, &headers).is_ok_and(|csv| csv));
        assert!(wants_csv(Some("json"), &headers).is_ok_and(|csv| !csv));
    }
}
