//! Batches: many jobs submitted together, one per item, and one batch object that follows them.
//!
//! The items come as the engine's batch formats allow over HTTP: a CSV manifest, read as
//! `kiln batch` reads its own (the header names the columns, case-insensitively: `upload_id`,
//! required, in place of the CLI's `input` path, and any setting of the protocol's
//! `SettingsOverrides` by its field name; an empty cell sets nothing; a list in one cell with
//! `;` or quoted commas; blank rows skipped), or a JSON list of `{upload_id, settings}`. The
//! engine's "folder of folders" (or ZIP of folders) is one upload per item here: each item's
//! photos go to their own worker, so each is its own complete upload.
//!
//! The batch is `running` until every item's job has reached a final state; the transaction that
//! ends the last one ([`job_ended`], called by the jobs layer) marks it `completed` and enqueues
//! the `batch.completed` webhook, once.

use chrono::{DateTime, Utc};
use kiln_protocol::SettingsOverrides;
use kiln_protocol::csv_cell;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// Items one batch may hold: a day's shoot of a shop, well within one transaction's reach.
pub const MAX_ITEMS: usize = 500;

/// One item to create a job for, with a label that names it in errors (`items[2]`, `line 4`).
#[derive(Clone, Debug)]
pub struct Item {
    pub label: String,
    pub upload_id: Uuid,
    pub settings: SettingsOverrides,
}

pub use kiln_api::batches::{Batch, BatchItem, Counts};

/// The items of a CSV manifest (see the module docs), in order; 400 `invalid_manifest` naming
/// the line and column of the first problem.
pub fn manifest_items(text: &str) -> ApiResult<Vec<Item>> {
    let invalid = |message: String| ApiError::bad_request("invalid_manifest", message);
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(text.as_bytes());
    let header = reader.headers().map_err(|e| invalid(format!("the CSV does not parse: {e}")))?.clone();
    let names: Vec<String> = header.iter().map(str::to_ascii_lowercase).collect();
    let fields = csv_cell::settings_fields();
    let mut upload_column = None;
    for (at, name) in names.iter().enumerate() {
        if names[..at].contains(name) {
            return Err(invalid(format!("the column `{name}` appears twice (line 1, column {})", at + 1)));
        }
        if name == "upload_id" {
            upload_column = Some(at);
        } else if !fields.contains(&name.as_str()) {
            return Err(invalid(format!(
                "unknown column `{name}` (line 1, column {}): expected upload_id or a setting ({})",
                at + 1,
                fields.join(", ")
            )));
        }
    }
    let upload_column = upload_column.ok_or_else(|| invalid("the header has no `upload_id` column (line 1)".into()))?;
    let mut items = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| invalid(format!("the CSV does not parse: {e}")))?;
        // From the byte offset: the reader's own line count leaves out the blank lines it skipped.
        let line = row.position().map_or(0, |p| line_at(text, p.byte()));
        if row.iter().all(str::is_empty) {
            continue;
        }
        if row.len() > names.len() {
            return Err(invalid(format!("the row has {} cells, the header {} (line {line})", row.len(), names.len())));
        }
        let cell_at = |at: usize| row.get(at).unwrap_or_default();
        let upload_id = cell_at(upload_column).parse::<Uuid>().map_err(|_| {
            invalid(format!(
                "upload_id {:?} is not an upload id (line {line}, column {})",
                cell_at(upload_column),
                upload_column + 1
            ))
        })?;
        let mut settings = SettingsOverrides::default();
        for (at, name) in names.iter().enumerate().filter(|(at, _)| *at != upload_column) {
            if !cell_at(at).is_empty() {
                let set = csv_cell::cell_overrides(name, cell_at(at))
                    .map_err(|e| invalid(format!("{name}: {e} (line {line}, column {})", at + 1)))?;
                settings = set.over(&settings);
            }
        }
        items.push(Item { label: format!("line {line}"), upload_id, settings });
    }
    Ok(items)
}

/// The 1-based line of `text` where the row read from byte `offset` starts (the reader's offset
/// is before the blank lines it skipped).
fn line_at(text: &str, offset: u64) -> usize {
    let rest = text.get(usize::try_from(offset).unwrap_or(usize::MAX)..).unwrap_or_default();
    let start = text.len() - rest.trim_start_matches(['\r', '\n']).len();
    text.as_bytes()[..start].iter().filter(|&&b| b == b'\n').count() + 1
}

/// `error`, refusing item `label` of a batch: the same status and code, the message naming the
/// item (an upload that is not the organisation's becomes 400 `upload_not_found`, as a batch is
/// found and only its content is wrong).
pub fn in_item(error: ApiError, label: &str) -> ApiError {
    match error {
        ApiError::BadRequest { code, message } => ApiError::BadRequest { code, message: format!("{label}: {message}") },
        ApiError::Forbidden { code, message } => ApiError::Forbidden { code, message: format!("{label}: {message}") },
        ApiError::Conflict { code, message } => ApiError::Conflict { code, message: format!("{label}: {message}") },
        ApiError::PaymentRequired { code, message } => {
            ApiError::PaymentRequired { code, message: format!("{label}: {message}") }
        }
        ApiError::TooLarge { code, message } => ApiError::TooLarge { code, message: format!("{label}: {message}") },
        ApiError::NotFound { what } => {
            ApiError::bad_request("upload_not_found", format!("{label}: {what} not found among your complete uploads"))
        }
        other => other,
    }
}

/// Inserts the batch row (`source`: `items` or `csv`), before its jobs, in the caller's
/// transaction.
pub async fn insert(
    tx: &mut PgConnection,
    org_id: Uuid,
    batch_id: Uuid,
    source: &str,
    item_count: usize,
) -> ApiResult<()> {
    sqlx::query("INSERT INTO batches (id, org_id, source, item_count, state) VALUES ($1, $2, $3, $4, 'running')")
        .bind(batch_id)
        .bind(org_id)
        .bind(source)
        .bind(i32::try_from(item_count).map_err(ApiError::internal)?)
        .execute(tx)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct BatchRow {
    id: Uuid,
    state: String,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

/// One item of a batch as the database holds it.
#[derive(sqlx::FromRow)]
struct ItemRow {
    item: i32,
    job_id: Uuid,
    upload_id: Uuid,
    state: String,
    error: Option<Value>,
}

/// The batch `batch_id` of `org_id` with its items, or 404.
pub async fn fetch(db: &mut PgConnection, org_id: Uuid, batch_id: Uuid) -> ApiResult<Batch> {
    let row: Option<BatchRow> =
        sqlx::query_as("SELECT id, state, created_at, completed_at FROM batches WHERE id = $1 AND org_id = $2")
            .bind(batch_id)
            .bind(org_id)
            .fetch_optional(&mut *db)
            .await?;
    let BatchRow { id, state, created_at, completed_at } = row.ok_or(ApiError::NotFound { what: "batch" })?;
    let rows: Vec<ItemRow> = sqlx::query_as(
        "SELECT batch_item AS item, id AS job_id, upload_id, state, error FROM jobs
         WHERE batch_id = $1 AND org_id = $2 ORDER BY batch_item",
    )
    .bind(batch_id)
    .bind(org_id)
    .fetch_all(&mut *db)
    .await?;
    let items: Vec<BatchItem> = rows
        .into_iter()
        .map(|row| BatchItem {
            item: row.item,
            job_id: row.job_id,
            upload_id: row.upload_id,
            state: row.state,
            error: row.error,
        })
        .collect();
    Ok(Batch { id, state, created_at, completed_at, counts: Counts::of(&items), items })
}

/// Called in the transaction that moves a job of `batch_id` to a final state: when no item is
/// left queued or running, the batch completes and `batch.completed` is enqueued, once. The
/// batch row is locked first, so of two items ending at once the later sees the earlier.
pub async fn job_ended(tx: &mut PgConnection, org_id: Uuid, batch_id: Uuid) -> ApiResult<()> {
    sqlx::query("SELECT id FROM batches WHERE id = $1 AND org_id = $2 FOR UPDATE")
        .bind(batch_id)
        .bind(org_id)
        .execute(&mut *tx)
        .await?;
    let completed = sqlx::query(
        "UPDATE batches SET state = 'completed', completed_at = now()
         WHERE id = $1 AND org_id = $2 AND state = 'running'
           AND NOT EXISTS (SELECT 1 FROM jobs WHERE batch_id = $1 AND org_id = $2 AND state IN ('queued', 'running'))",
    )
    .bind(batch_id)
    .bind(org_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if completed == 0 {
        return Ok(());
    }
    let batch = fetch(tx, org_id, batch_id).await?;
    let data = serde_json::to_value(&batch).map_err(ApiError::internal)?;
    crate::webhooks::enqueue(tx, org_id, "batch.completed", &data).await?;
    tracing::info!(%batch_id, %org_id, "batch completed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_protocol::{Format, Preset};

    const A: &str = "0191e5d4-0000-7000-8000-000000000001";
    const B: &str = "0191e5d4-0000-7000-8000-000000000002";

    #[test]
    fn a_manifest_gives_one_item_per_row_with_its_settings() {
        let csv = format!("Upload_ID, preset ,formats,max_side\n{A},preview,\"glb,usdz\",\n\n{B},,ply;obj,640\n");
        let items = manifest_items(&csv).unwrap_or_default();
        assert_eq!(items.len(), 2);
        assert_eq!((items[0].label.as_str(), items[0].upload_id.to_string()), ("line 2", A.to_string()));
        assert_eq!(items[0].settings.preset, Some(Preset::Preview));
        assert_eq!(items[0].settings.formats, Some(vec![Format::Glb, Format::Usdz]));
        assert_eq!(items[0].settings.max_side, None);
        assert_eq!(items[1].label, "line 4");
        assert_eq!((items[1].settings.preset, items[1].settings.max_side), (None, Some(640)));
    }

    #[test]
    fn manifest_problems_name_their_line_and_column() {
        for (csv, expected) in [
            ("preset\npreview\n".to_string(), "no `upload_id` column (line 1)"),
            (format!("upload_id,colour\n{A},red\n"), "unknown column `colour` (line 1, column 2)"),
            (format!("upload_id,upload_id\n{A},{A}\n"), "appears twice (line 1, column 2)"),
            (format!("upload_id,preset\n{A},preview\n{B},ultra\n"), "(line 3, column 2)"),
            ("upload_id\nnot-a-uuid\n".to_string(), "(line 2, column 1)"),
            (format!("upload_id\n{A},extra\n"), "the row has 2 cells, the header 1 (line 2)"),
        ] {
            let error = manifest_items(&csv).err().map(|e| (e.code(), e.to_string()));
            assert!(
                error.as_ref().is_some_and(|(code, message)| *code == "invalid_manifest" && message.contains(expected)),
                "{csv:?}: {error:?}"
            );
        }
    }

    #[test]
    fn item_errors_keep_their_code_and_name_the_item() {
        let error = in_item(ApiError::bad_request("invalid_settings", "max_side must be positive"), "items[1]");
        assert_eq!(
            (error.code(), error.to_string().as_str()),
            ("invalid_settings", "items[1]: max_side must be positive")
        );
        let missing = in_item(ApiError::NotFound { what: "upload" }, "line 3");
        assert_eq!(missing.status(), axum::http::StatusCode::BAD_REQUEST);
        assert!(missing.code() == "upload_not_found" && missing.to_string().starts_with("line 3: "));
    }
}
