//! The double-entry ledger of credits (schema in `migrations/0008_billing.sql`): every movement
//! is one balanced transaction with a reason and a reference, posted in the caller's database
//! transaction, so a job's reservation commits or rolls back with the job itself.
//!
//! Each posting first locks the organisation's three accounts in one fixed order, so postings of
//! one organisation run one after another (two submissions cannot both spend the last credits)
//! and never deadlock; the `available_not_negative` constraint stands behind that check.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
pub use kiln_api::credits::{Balances, Reason};

/// An account of the ledger: an organisation's three, or one of the system's four.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Account {
    /// Credits the organisation may spend (never below zero).
    Available,
    /// Credits held for queued and running jobs.
    Reserved,
    /// Credits owed (zero or below): refunded credits that had already been spent.
    Debt,
    /// What Stripe purchases brought in.
    Stripe,
    /// What administrators granted (and took back).
    Grants,
    /// What succeeded jobs spent.
    Spend,
    /// What refunds took back.
    Refunds,
}

impl Account {
    fn kind(self) -> &'static str {
        match self {
            Account::Available => "available",
            Account::Reserved => "reserved",
            Account::Debt => "debt",
            Account::Stripe => "stripe",
            Account::Grants => "grants",
            Account::Spend => "spend",
            Account::Refunds => "refunds",
        }
    }
}

/// What a transaction refers to; at least one is set.
#[derive(Clone, Debug, Default)]
pub struct Reference {
    pub job_id: Option<Uuid>,
    /// A Stripe object: Checkout Session, invoice or charge.
    pub stripe_ref: Option<String>,
    pub admin_id: Option<Uuid>,
    pub note: Option<String>,
}

impl Reference {
    pub fn job(job_id: Uuid) -> Self {
        Reference { job_id: Some(job_id), ..Reference::default() }
    }

    pub fn stripe(id: &str) -> Self {
        Reference { stripe_ref: Some(id.to_string()), ..Reference::default() }
    }
}

/// Locks the organisation's three accounts, always in the same order, and answers their
/// balances; creates them the first time (only then, so a posting's hot path is one SELECT).
async fn lock(tx: &mut PgConnection, org_id: Uuid) -> ApiResult<Balances> {
    let mut rows = locked(tx, org_id).await?;
    if rows.len() < 3 {
        sqlx::query(
            "INSERT INTO credit_accounts (id, org_id, kind)
             SELECT gen_random_uuid(), $1, kind FROM unnest(ARRAY['available', 'reserved', 'debt']) AS kind
             ON CONFLICT (org_id, kind) WHERE org_id IS NOT NULL DO NOTHING",
        )
        .bind(org_id)
        .execute(&mut *tx)
        .await?;
        rows = locked(tx, org_id).await?;
    }
    Ok(balances_of(&rows))
}

async fn locked(tx: &mut PgConnection, org_id: Uuid) -> ApiResult<Vec<(String, i64)>> {
    Ok(sqlx::query_as("SELECT kind, balance FROM credit_accounts WHERE org_id = $1 ORDER BY kind FOR UPDATE")
        .bind(org_id)
        .fetch_all(&mut *tx)
        .await?)
}

fn balances_of(rows: &[(String, i64)]) -> Balances {
    let get = |kind: &str| rows.iter().find(|(k, _)| k == kind).map_or(0, |(_, b)| *b);
    Balances { available: get("available"), reserved: get("reserved"), debt: -get("debt") }
}

/// The organisation's balances, read without locking.
pub async fn balances(db: &mut PgConnection, org_id: Uuid) -> ApiResult<Balances> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT kind, balance FROM credit_accounts WHERE org_id = $1")
        .bind(org_id)
        .fetch_all(db)
        .await?;
    Ok(balances_of(&rows))
}

/// Posts one balanced transaction for `org_id` (whose accounts the caller has locked). Zero
/// amounts are left out; a transaction with nothing left is not written.
async fn post(
    tx: &mut PgConnection,
    org_id: Uuid,
    reason: Reason,
    reference: &Reference,
    entries: &[(Account, i64)],
) -> ApiResult<()> {
    let entries: Vec<(Account, i64)> = entries.iter().copied().filter(|(_, amount)| *amount != 0).collect();
    if entries.is_empty() {
        return Ok(());
    }
    if entries.iter().map(|(_, amount)| amount).sum::<i64>() != 0 {
        return Err(ApiError::internal(anyhow::anyhow!("unbalanced {} posting {entries:?}", reason.as_str())));
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO ledger_transactions (id, org_id, reason, job_id, stripe_ref, admin_id, note)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(org_id)
    .bind(reason.as_str())
    .bind(reference.job_id)
    .bind(&reference.stripe_ref)
    .bind(reference.admin_id)
    .bind(&reference.note)
    .execute(&mut *tx)
    .await?;
    let kinds: Vec<&str> = entries.iter().map(|(account, _)| account.kind()).collect();
    let amounts: Vec<i64> = entries.iter().map(|(_, amount)| *amount).collect();
    let written = sqlx::query(
        "INSERT INTO ledger_entries (transaction_id, account_id, amount)
         SELECT $1, a.id, e.amount
         FROM unnest($2::text[], $3::bigint[]) WITH ORDINALITY AS e(kind, amount, n)
         JOIN credit_accounts a ON a.kind = e.kind
          AND a.org_id IS NOT DISTINCT FROM
              (CASE WHEN e.kind IN ('available', 'reserved', 'debt') THEN $4::uuid END)
         ORDER BY e.n",
    )
    .bind(id)
    .bind(&kinds)
    .bind(&amounts)
    .bind(org_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if written != entries.len() as u64 {
        return Err(ApiError::internal(anyhow::anyhow!("ledger accounts missing for org {org_id}")));
    }
    Ok(())
}

/// Moves a job's quote from available to reserved, or refuses with 402 `insufficient_credits`.
pub async fn reserve(tx: &mut PgConnection, org_id: Uuid, job_id: Uuid, credits: i64) -> ApiResult<()> {
    let balances = lock(tx, org_id).await?;
    if balances.available < credits {
        return Err(ApiError::payment_required(
            "insufficient_credits",
            format!(
                "the job costs {credits} credits and {} are available; buy credits (GET /v1/prices) and submit again",
                balances.available
            ),
        ));
    }
    let entries = [(Account::Available, -credits), (Account::Reserved, credits)];
    post(tx, org_id, Reason::Reserve, &Reference::job(job_id), &entries).await
}

/// Spends a succeeded job's reservation.
pub async fn capture(tx: &mut PgConnection, org_id: Uuid, job_id: Uuid, credits: i64) -> ApiResult<()> {
    lock(tx, org_id).await?;
    let entries = [(Account::Reserved, -credits), (Account::Spend, credits)];
    post(tx, org_id, Reason::Capture, &Reference::job(job_id), &entries).await
}

/// Gives a job's reservation back to available.
pub async fn release(tx: &mut PgConnection, org_id: Uuid, job_id: Uuid, credits: i64) -> ApiResult<()> {
    lock(tx, org_id).await?;
    let entries = [(Account::Reserved, -credits), (Account::Available, credits)];
    post(tx, org_id, Reason::Release, &Reference::job(job_id), &entries).await
}

/// Adds `credits` from the system account `source` (Stripe, grants): they settle the debt
/// first, the rest becomes available. Answers the balances after.
pub async fn credit(
    tx: &mut PgConnection,
    org_id: Uuid,
    reason: Reason,
    source: Account,
    credits: i64,
    reference: &Reference,
) -> ApiResult<Balances> {
    let balances = lock(tx, org_id).await?;
    let settled = balances.debt.min(credits);
    let entries = [(source, -credits), (Account::Debt, settled), (Account::Available, credits - settled)];
    post(tx, org_id, reason, reference, &entries).await?;
    Ok(Balances { available: balances.available + credits - settled, debt: balances.debt - settled, ..balances })
}

/// Takes `credits` back into the system account `sink` (refunds, grants). What is available
/// goes first; with `into_debt`, the rest is recorded as debt (a refund of credits already
/// spent), otherwise taking more than is available is refused with 409 `insufficient_credits`.
pub async fn take_back(
    tx: &mut PgConnection,
    org_id: Uuid,
    reason: Reason,
    sink: Account,
    credits: i64,
    into_debt: bool,
    reference: &Reference,
) -> ApiResult<Balances> {
    let balances = lock(tx, org_id).await?;
    let taken = balances.available.min(credits);
    let owed = credits - taken;
    if owed > 0 && !into_debt {
        return Err(ApiError::conflict(
            "insufficient_credits",
            format!("{credits} credits cannot be taken back: {} are available", balances.available),
        ));
    }
    let entries = [(Account::Available, -taken), (Account::Debt, -owed), (sink, credits)];
    post(tx, org_id, reason, reference, &entries).await?;
    Ok(Balances { available: balances.available - taken, debt: balances.debt + owed, ..balances })
}
