//! Uploads: a client declares its files (name, size, SHA-256), puts their bytes straight into
//! object storage through presigned multipart part URLs, and completes the upload once storage
//! holds every part; the server then assembles each file and verifies its size, its hash and,
//! for a ZIP, the engine's ZIP safety. Jobs take a complete upload as their input.
//!
//! States: `open` (parts may be uploaded, retried and resumed: `GET` lists what storage holds and
//! gives fresh URLs for the rest) → `complete` (verified, usable by jobs, final) or `rejected`
//! (refused at completion or expired, final). Completion is all or nothing: any refusal deletes
//! every object and part of the upload, so storage keeps nothing unverified, and the client
//! starts a new upload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use sqlx::types::Json as SqlJson;
use std::future::Future;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use kiln_job::zip_input::{ZipInputError as Z, ZipLimits};

use crate::billing::studio::{self, Use};
use crate::config::Limits;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::storage::{Storage, StorageError, StoredPart};
pub use kiln_api::uploads::{CreateUpload, DeclaredFile, PartToSend, ReceivedPart, Upload, UploadError, UploadFile};

/// Longest file name, in bytes: what common file systems allow for one path component.
const MAX_NAME_BYTES: usize = 255;

/// S3 numbers parts 1 to 10,000; a file that would need more gets larger parts.
const MAX_PARTS: u64 = 10_000;

/// Storage requests one upload runs at once (creating, listing, completing and verifying its
/// files): enough to hide loopback or LAN latency for hundreds of photos, few enough not to
/// flood the store from one request.
const STORAGE_CONCURRENCY: usize = 8;

/// Declared file names with these extensions (case-insensitively) make a ZIP upload.
const ZIP_EXTENSION: &str = "zip";

/// One file of a complete upload, as a worker fetches it.
pub struct InputFile {
    pub name: String,
    pub object_key: String,
    pub size: i64,
    pub sha256: Vec<u8>,
}

#[derive(sqlx::FromRow)]
struct UploadRow {
    id: Uuid,
    state: String,
    kind: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    error: Option<SqlJson<UploadError>>,
}

#[derive(sqlx::FromRow)]
struct FileRow {
    name: String,
    size: i64,
    sha256: Vec<u8>,
    object_key: String,
    multipart_id: Option<String>,
    part_size: i64,
    part_count: i32,
}

/// The columns of [`UploadRow`], as a literal so queries stay static strings.
macro_rules! upload_columns {
    () => {
        "id, state, kind, created_at, expires_at, completed_at, error"
    };
}

/// The columns of [`FileRow`].
macro_rules! file_columns {
    () => {
        "f.name, f.size, f.sha256, f.object_key, f.multipart_id, f.part_size, f.part_count"
    };
}

/// What an upload holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Photos,
    Zip,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Photos => "photos",
            Kind::Zip => "zip",
        }
    }
}

/// A declared file once validated.
struct NewFile {
    name: String,
    size: u64,
    sha256: Vec<u8>,
    part_size: u64,
    part_count: u64,
}

/// Where file `idx` of upload `upload_id` lives: under the organisation's prefix, so one
/// organisation's objects can be listed (and deleted) together.
fn object_key(org_id: Uuid, upload_id: Uuid, idx: usize) -> String {
    format!("{}{idx}", upload_prefix(org_id, upload_id))
}

fn upload_prefix(org_id: Uuid, upload_id: Uuid) -> String {
    format!("orgs/{org_id}/uploads/{upload_id}/")
}

/// Opens an upload: validates the declaration against `limits` before touching storage, then
/// starts one multipart upload per file and answers every part's URL.
/// A Studio claim's upload (`claim`) is tied to the claim in the upload's own transaction.
pub async fn create(state: &AppState, org_id: Uuid, claim: Option<Uuid>, request: CreateUpload) -> ApiResult<Upload> {
    let limits = &state.config.limits;
    let (kind, files) = validate(&request.files, limits)?;
    let id = Uuid::now_v7();
    let keys: Vec<String> = (0..files.len()).map(|idx| object_key(org_id, id, idx)).collect();
    let multipart_ids = create_multiparts(&state.storage, &keys).await?;
    let expires_at = Utc::now() + chrono::TimeDelta::days(i64::from(limits.upload_retention_days));
    let new = NewUpload { org_id, id, kind, expires_at, claim };
    if let Err(error) = insert(&state.db, &new, &files, &keys, &multipart_ids).await {
        abort_all(&state.storage, keys.iter().zip(&multipart_ids).map(|(k, m)| (k.as_str(), m.as_str()))).await;
        return Err(error);
    }
    tracing::info!(upload_id = %id, %org_id, files = files.len(), kind = kind.as_str(), "upload opened");
    let urls_expire_at = Utc::now() + state.storage.presign;
    let files = files
        .iter()
        .zip(keys.iter().zip(&multipart_ids))
        .map(|(file, (key, multipart_id))| UploadFile {
            name: file.name.clone(),
            size: signed(file.size),
            sha256: hex::encode(&file.sha256),
            part_size: signed(file.part_size),
            part_count: i32::try_from(file.part_count).unwrap_or(i32::MAX),
            parts: parts_to_send(&state.storage, key, multipart_id, file.size, file.part_size, &[]),
            received: Vec::new(),
        })
        .collect();
    Ok(Upload {
        id,
        state: "open".into(),
        kind: kind.as_str().into(),
        created_at: Utc::now(),
        expires_at,
        completed_at: None,
        urls_expire_at: Some(urls_expire_at),
        error: None,
        files,
    })
}

/// Sizes in the database are `bigint`; every size here is under the published limits, far
/// below `i64::MAX`.
fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Checks the declaration: names, types, sizes, hashes and the published limits.
fn validate(files: &[DeclaredFile], limits: &Limits) -> ApiResult<(Kind, Vec<NewFile>)> {
    if files.is_empty() {
        return Err(ApiError::bad_request("empty_upload", "an upload declares at least one file"));
    }
    if files.len() > limits.max_files as usize {
        return Err(ApiError::too_large(
            "too_many_files",
            format!("{} files declared; an upload holds at most {}", files.len(), limits.max_files),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for file in files {
        check_name(&file.name)?;
        if !names.insert(file.name.as_str()) {
            return Err(ApiError::bad_request("duplicate_file_name", format!("\"{}\" is declared twice", file.name)));
        }
    }
    let kind = upload_kind(files)?;
    let mut total = 0u64;
    let mut valid = Vec::with_capacity(files.len());
    for file in files {
        if file.size == 0 {
            return Err(ApiError::bad_request("invalid_file_size", format!("\"{}\" is empty", file.name)));
        }
        if file.size > limits.max_file_bytes {
            return Err(ApiError::too_large(
                "file_too_large",
                format!(
                    "\"{}\" is {} bytes; a file may be at most {} bytes",
                    file.name, file.size, limits.max_file_bytes
                ),
            ));
        }
        total = total.saturating_add(file.size);
        let sha256 = parse_sha256(&file.sha256).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_sha256",
                format!("the sha256 of \"{}\" is not 64 hexadecimal characters", file.name),
            )
        })?;
        let part_size = limits.part_bytes.max(file.size.div_ceil(MAX_PARTS)).max(1);
        let part_count = file.size.div_ceil(part_size);
        valid.push(NewFile { name: file.name.clone(), size: file.size, sha256, part_size, part_count });
    }
    if total > limits.max_upload_bytes {
        return Err(ApiError::too_large(
            "upload_too_large",
            format!("the files total {total} bytes; an upload may be at most {} bytes", limits.max_upload_bytes),
        ));
    }
    Ok((kind, valid))
}

/// Photos only, or exactly one ZIP.
fn upload_kind(files: &[DeclaredFile]) -> ApiResult<Kind> {
    let extension = |name: &str| Path::new(name).extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if let Some(file) = files.iter().find(|f| {
        !kiln_core::photos::is_photo_name(Path::new(&f.name)) && extension(&f.name).as_deref() != Some(ZIP_EXTENSION)
    }) {
        return Err(ApiError::bad_request(
            "unsupported_file_type",
            format!("\"{}\" is neither a photo (.jpg, .jpeg, .png) nor a .zip", file.name),
        ));
    }
    let zips = files.iter().filter(|f| extension(&f.name).as_deref() == Some(ZIP_EXTENSION)).count();
    match (zips, files.len()) {
        (0, _) => Ok(Kind::Photos),
        (1, 1) => Ok(Kind::Zip),
        _ => Err(ApiError::bad_request(
            "unsupported_file_type",
            "a ZIP is uploaded alone: declare either photos or exactly one .zip",
        )),
    }
}

/// A plain file name, safe on any worker's disk and visible to the engine (which skips hidden
/// files, so a leading `.` is refused too).
fn check_name(name: &str) -> ApiResult<()> {
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_NAME_BYTES {
        Some("is longer than 255 bytes")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name.starts_with('.') {
        Some("starts with '.'")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ApiError::bad_request(
            "invalid_file_name",
            format!("the file name {:?} {problem}; give a plain file name", name.chars().take(80).collect::<String>()),
        )),
        None => Ok(()),
    }
}

fn parse_sha256(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    hex::decode(text).ok()
}

/// Runs `futures` at most [`STORAGE_CONCURRENCY`] at a time; the outputs in order. (A `Vec` of
/// futures rather than a mapped stream: the closure of a mapped stream would make the
/// handler's future not `Send` for every lifetime, which axum requires.)
async fn bounded<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    stream::iter(futures).buffered(STORAGE_CONCURRENCY).collect().await
}

/// Starts one multipart upload per key. On any failure the ones started are aborted.
async fn create_multiparts(storage: &Storage, keys: &[String]) -> ApiResult<Vec<String>> {
    let results: Vec<_> = bounded(keys.iter().map(|key| storage.create_multipart(key)).collect()).await;
    if results.iter().all(Result::is_ok) {
        return Ok(results.into_iter().flatten().collect());
    }
    let started =
        keys.iter().zip(&results).filter_map(|(key, r)| r.as_ref().ok().map(|id| (key.as_str(), id.as_str())));
    abort_all(storage, started).await;
    let error = results.into_iter().find_map(Result::err);
    Err(error.map_or_else(|| ApiError::internal(anyhow::anyhow!("multipart creation failed")), ApiError::from))
}

/// An upload about to be inserted.
struct NewUpload {
    org_id: Uuid,
    id: Uuid,
    kind: Kind,
    expires_at: DateTime<Utc>,
    /// The Studio claim making it.
    claim: Option<Uuid>,
}

async fn insert(
    db: &PgPool,
    new: &NewUpload,
    files: &[NewFile],
    keys: &[String],
    multipart_ids: &[String],
) -> ApiResult<()> {
    let NewUpload { org_id, id, kind, expires_at, claim } = *new;
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO uploads (id, org_id, state, kind, expires_at) VALUES ($1, $2, 'open', $3, $4)")
        .bind(id)
        .bind(org_id)
        .bind(kind.as_str())
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
    for (idx, ((file, key), multipart_id)) in files.iter().zip(keys).zip(multipart_ids).enumerate() {
        sqlx::query(
            "INSERT INTO upload_files (upload_id, idx, name, size, sha256, object_key, multipart_id, part_size, part_count)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(i32::try_from(idx).unwrap_or(i32::MAX))
        .bind(&file.name)
        .bind(signed(file.size))
        .bind(&file.sha256)
        .bind(key)
        .bind(multipart_id)
        .bind(signed(file.part_size))
        .bind(i32::try_from(file.part_count).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
    }
    if let Some(claim) = claim {
        studio::take(&mut tx, claim, Use::Upload, id).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The parts of a file of `size` bytes cut in `part_size` pieces: (number, size).
fn expected_parts(size: u64, part_size: u64) -> impl Iterator<Item = (u16, u64)> {
    let count = size.div_ceil(part_size);
    (1..=count).map(move |n| {
        let start = (n - 1) * part_size;
        (u16::try_from(n).unwrap_or(u16::MAX), part_size.min(size - start))
    })
}

/// The expected parts that `stored` lacks, or holds with another size.
fn missing_parts(size: u64, part_size: u64, stored: &[StoredPart]) -> Vec<(u16, u64)> {
    expected_parts(size, part_size)
        .filter(|&(number, bytes)| !stored.iter().any(|p| p.number == number && p.size == bytes))
        .collect()
}

/// The ETag of each expected part, in order. A store may keep every upload of a part number
/// (SeaweedFS lists a re-sent part twice and assembles the one whose ETag it is given): of those
/// with the expected size, the last sent counts. Parts sent within the same second are told
/// apart by listing order only; a wrong pick is caught by the hash check.
fn chosen_etags(size: u64, part_size: u64, stored: &[StoredPart]) -> Vec<String> {
    expected_parts(size, part_size)
        .filter_map(|(number, bytes)| {
            stored
                .iter()
                .filter(|p| p.number == number && p.size == bytes)
                .max_by(|a, b| a.last_modified.cmp(&b.last_modified))
                .map(|p| p.etag.clone())
        })
        .collect()
}

fn parts_to_send(
    storage: &Storage,
    key: &str,
    multipart_id: &str,
    size: u64,
    part_size: u64,
    stored: &[StoredPart],
) -> Vec<PartToSend> {
    missing_parts(size, part_size, stored)
        .into_iter()
        .map(|(number, bytes)| PartToSend {
            number,
            size: signed(bytes),
            url: storage.presign_upload_part(key, multipart_id, number).to_string(),
        })
        .collect()
}

/// The upload `id` of `org_id`, with (while open) the parts storage holds and fresh URLs for
/// the rest: how an interrupted upload resumes.
pub async fn get(state: &AppState, org_id: Uuid, id: Uuid) -> ApiResult<Upload> {
    let row = load(&state.db, org_id, id).await?.ok_or(ApiError::NotFound { what: "upload" })?;
    let files = load_files(&state.db, org_id, id).await?;
    view(&state.storage, row, files).await
}

async fn load(db: &PgPool, org_id: Uuid, id: Uuid) -> Result<Option<UploadRow>, sqlx::Error> {
    sqlx::query_as(concat!("SELECT ", upload_columns!(), " FROM uploads WHERE id = $1 AND org_id = $2"))
        .bind(id)
        .bind(org_id)
        .fetch_optional(db)
        .await
}

async fn load_files(db: &PgPool, org_id: Uuid, id: Uuid) -> Result<Vec<FileRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        file_columns!(),
        " FROM upload_files f JOIN uploads u ON u.id = f.upload_id WHERE f.upload_id = $1 AND u.org_id = $2 ORDER BY f.idx"
    ))
    .bind(id)
    .bind(org_id)
    .fetch_all(db)
    .await
}

/// The API's view of an upload; while open, each file's parts are listed in storage.
async fn view(storage: &Storage, row: UploadRow, files: Vec<FileRow>) -> ApiResult<Upload> {
    let open = row.state == "open";
    let listed: Vec<Option<Vec<StoredPart>>> = if open {
        let lists: Vec<_> = bounded(
            files
                .iter()
                .map(|file| async move {
                    match &file.multipart_id {
                        Some(multipart_id) => storage.list_parts(&file.object_key, multipart_id).await,
                        None => Ok(None),
                    }
                })
                .collect(),
        )
        .await;
        lists.into_iter().collect::<Result<_, _>>()?
    } else {
        files.iter().map(|_| None).collect()
    };
    let mut any_url = false;
    let files = files
        .into_iter()
        .zip(listed)
        .map(|(file, stored)| {
            // No listing: the multipart upload is assembled (or gone); nothing is left to send.
            let (parts, received) = match (&file.multipart_id, stored) {
                (Some(multipart_id), Some(stored)) => {
                    let parts = parts_to_send(
                        storage,
                        &file.object_key,
                        multipart_id,
                        file.size.unsigned_abs(),
                        file.part_size.unsigned_abs(),
                        &stored,
                    );
                    let received = stored
                        .into_iter()
                        .map(|p| ReceivedPart { number: p.number, size: p.size, etag: p.etag })
                        .collect();
                    (parts, received)
                }
                _ => (Vec::new(), Vec::new()),
            };
            any_url |= !parts.is_empty();
            UploadFile {
                name: file.name,
                size: file.size,
                sha256: hex::encode(&file.sha256),
                part_size: file.part_size,
                part_count: file.part_count,
                parts,
                received,
            }
        })
        .collect();
    Ok(Upload {
        id: row.id,
        state: row.state,
        kind: row.kind,
        created_at: row.created_at,
        expires_at: row.expires_at,
        completed_at: row.completed_at,
        urls_expire_at: any_url.then(|| Utc::now() + storage.presign),
        error: row.error.map(|e| e.0),
        files,
    })
}

/// Completions running at once in one process. Each holds a database connection while it reads
/// every file back from storage (minutes for a large upload): four keep three quarters of the
/// pool (16) for every other request, worker heartbeats included.
const MAX_CONCURRENT_COMPLETIONS: usize = 4;

static COMPLETIONS: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(MAX_CONCURRENT_COMPLETIONS));

/// Completes upload `id` of `org_id`: every part must be in storage with its size; each file is
/// assembled, then read back to check its size and SHA-256, and a ZIP is test-extracted with
/// the engine's ZIP safety. Any refusal (4xx) rejects the upload and deletes its objects; a
/// failure of ours (storage or database down) leaves it open, to complete again. Completing a
/// complete upload answers it again.
///
/// Concurrent completions of one upload are serialised by a row lock held until the end, and
/// completions in all are bounded by [`MAX_CONCURRENT_COMPLETIONS`].
pub async fn complete(state: &AppState, org_id: Uuid, id: Uuid) -> ApiResult<Upload> {
    let _permit = COMPLETIONS.acquire().await.map_err(ApiError::internal)?;
    let mut tx = state.db.begin().await?;
    let row: UploadRow =
        sqlx::query_as(concat!("SELECT ", upload_columns!(), " FROM uploads WHERE id = $1 AND org_id = $2 FOR UPDATE"))
            .bind(id)
            .bind(org_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(ApiError::NotFound { what: "upload" })?;
    match row.state.as_str() {
        "complete" => {
            tx.commit().await?;
            return get(state, org_id, id).await;
        }
        "rejected" => {
            let reason = row.error.map(|e| format!(" ({}: {})", e.0.code, e.0.message)).unwrap_or_default();
            return Err(ApiError::conflict(
                "upload_rejected",
                format!("this upload was refused{reason}; its files are deleted: create a new upload"),
            ));
        }
        _ => {}
    }
    let files = load_files(&state.db, org_id, id).await?;
    let outcome = if row.expires_at <= Utc::now() {
        Err(ApiError::conflict("upload_expired", format!("this upload expired at {}", row.expires_at.to_rfc3339())))
    } else {
        verify_upload(state, id, &row, &files).await
    };
    match outcome {
        Ok(()) => {
            sqlx::query("UPDATE uploads SET state = 'complete', completed_at = now() WHERE id = $1 AND org_id = $2")
                .bind(id)
                .bind(org_id)
                .execute(&mut *tx)
                .await?;
            clear_multipart_ids(&mut tx, org_id, id).await?;
            tx.commit().await?;
            tracing::info!(upload_id = %id, %org_id, "upload complete");
            get(state, org_id, id).await
        }
        Err(refusal) if refusal.status().is_client_error() => {
            let error = UploadError { code: refusal.code().to_string(), message: refusal.to_string() };
            reject(&mut tx, &state.storage, org_id, id, &files, &error).await?;
            tx.commit().await?;
            tracing::info!(upload_id = %id, %org_id, code = error.code, "upload rejected at completion");
            Err(refusal)
        }
        Err(failure) => Err(failure),
    }
}

/// Deletes everything upload `id` put in storage and marks it rejected for `error`, in `tx`
/// (which holds the upload's row lock).
async fn reject(
    tx: &mut sqlx::PgConnection,
    storage: &Storage,
    org_id: Uuid,
    id: Uuid,
    files: &[FileRow],
    error: &UploadError,
) -> Result<(), sqlx::Error> {
    delete_upload_objects(storage, org_id, id, files).await;
    sqlx::query("UPDATE uploads SET state = 'rejected', error = $3 WHERE id = $1 AND org_id = $2")
        .bind(id)
        .bind(org_id)
        .bind(SqlJson(error))
        .execute(&mut *tx)
        .await?;
    clear_multipart_ids(tx, org_id, id).await
}

/// How often open uploads past their expiry are looked for: retention is counted in days, so a
/// few minutes late is nothing, and an idle sweep is one indexed query.
const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// Uploads expired per transaction: each costs a few storage requests per file, so a batch
/// stays well under a minute even for large uploads.
const EXPIRY_BATCH: i64 = 20;

/// Rejects open uploads past `expires_at` and deletes their parts, forever (a `serve` loop).
pub async fn expire_forever(state: AppState) {
    let mut interval = tokio::time::interval(EXPIRY_SWEEP_INTERVAL);
    loop {
        interval.tick().await;
        loop {
            match expire_open(&state).await {
                Ok(count) if count == EXPIRY_BATCH as usize => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "expiring open uploads failed; retrying at the next sweep");
                    break;
                }
            }
        }
    }
}

/// Rejects (`upload_expired`) up to [`EXPIRY_BATCH`] open uploads past their expiry, deleting
/// their parts; returns how many. Safe in several processes at once (`SKIP LOCKED`), and an
/// upload being completed right now is skipped.
pub async fn expire_open(state: &AppState) -> Result<usize, sqlx::Error> {
    let mut tx = state.db.begin().await?;
    let expired: Vec<(Uuid, Uuid, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, org_id, expires_at FROM uploads WHERE state = 'open' AND expires_at <= now()
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(EXPIRY_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    for (id, org_id, expires_at) in &expired {
        let files = load_files(&state.db, *org_id, *id).await?;
        let error = UploadError {
            code: "upload_expired".into(),
            message: format!("this upload expired at {} before it was completed", expires_at.to_rfc3339()),
        };
        reject(&mut tx, &state.storage, *org_id, *id, &files, &error).await?;
        tracing::info!(upload_id = %id, %org_id, "open upload expired");
    }
    tx.commit().await?;
    Ok(expired.len())
}

async fn clear_multipart_ids(tx: &mut sqlx::PgConnection, org_id: Uuid, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE upload_files f SET multipart_id = NULL FROM uploads u
         WHERE f.upload_id = u.id AND u.id = $1 AND u.org_id = $2",
    )
    .bind(id)
    .bind(org_id)
    .execute(tx)
    .await
    .map(|_| ())
}

/// Every check of completion, in order: all parts present, each file assembled, sizes and
/// hashes, then ZIP safety.
async fn verify_upload(state: &AppState, id: Uuid, row: &UploadRow, files: &[FileRow]) -> ApiResult<()> {
    let storage = &state.storage;
    let etags = collect_parts(storage, files).await?;
    let assembled: Vec<_> = bounded(
        files
            .iter()
            .zip(&etags)
            .map(|(file, etags)| async move {
                match (&file.multipart_id, etags) {
                    (Some(multipart_id), Some(etags)) => {
                        storage.complete_multipart(&file.object_key, multipart_id, etags).await
                    }
                    _ => Ok(()),
                }
            })
            .collect(),
    )
    .await;
    assembled.into_iter().collect::<Result<Vec<()>, _>>()?;
    let scratch = if row.kind == Kind::Zip.as_str() { Some(Scratch::new(id).await?) } else { None };
    let checked: Vec<_> = bounded(
        files
            .iter()
            .enumerate()
            .map(|(idx, file)| {
                let sink = scratch.as_ref().map(|s| s.path.join(format!("{idx}.zip")));
                async move { verify_file(storage, file, sink.as_deref()).await }
            })
            .collect(),
    )
    .await;
    checked.into_iter().collect::<ApiResult<Vec<()>>>()?;
    if let (Some(scratch), Some(file)) = (&scratch, files.first()) {
        check_zip(scratch, &file.name, &state.config.limits).await?;
    }
    Ok(())
}

/// The ETags to assemble each file from (`None` for a file already assembled), or
/// `missing_parts` naming every file and part that storage lacks or holds with a wrong size.
async fn collect_parts(storage: &Storage, files: &[FileRow]) -> ApiResult<Vec<Option<Vec<String>>>> {
    let listed: Vec<_> = bounded(
        files
            .iter()
            .map(|file| async move {
                let Some(multipart_id) = &file.multipart_id else { return Ok::<_, StorageError>(Listing::Assembled) };
                match storage.list_parts(&file.object_key, multipart_id).await? {
                    Some(parts) => Ok(Listing::Parts(parts)),
                    // Assembled by a completion that failed before it could record it.
                    None if storage.head(&file.object_key).await?.is_some() => Ok(Listing::Assembled),
                    None => Ok(Listing::Parts(Vec::new())),
                }
            })
            .collect(),
    )
    .await;
    let mut etags = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for (file, listing) in files.iter().zip(listed) {
        match listing? {
            Listing::Assembled => etags.push(None),
            Listing::Parts(stored) => {
                let (size, part_size) = (file.size.unsigned_abs(), file.part_size.unsigned_abs());
                let missing = missing_parts(size, part_size, &stored);
                if missing.is_empty() {
                    etags.push(Some(chosen_etags(size, part_size, &stored)));
                } else {
                    let numbers = missing.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>().join(", ");
                    problems.push(format!("\"{}\" parts {numbers}", file.name));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(etags)
    } else {
        Err(ApiError::bad_request(
            "missing_parts",
            format!("storage lacks (or holds with the wrong size): {}", problems.join("; ")),
        ))
    }
}

/// What storage holds of one file before completion.
enum Listing {
    Parts(Vec<StoredPart>),
    Assembled,
}

/// Reads `file` back from storage, checking its size and SHA-256; with `sink`, writes the bytes
/// there too (a ZIP to test-extract).
async fn verify_file(storage: &Storage, file: &FileRow, sink: Option<&Path>) -> ApiResult<()> {
    let mut response = storage.get(&file.object_key).await?;
    let mut out = match sink {
        Some(path) => Some(tokio::fs::File::create(path).await.map_err(ApiError::internal)?),
        None => None,
    };
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(StorageError::from)? {
        received += chunk.len() as u64;
        hasher.update(&chunk);
        if let Some(out) = &mut out {
            out.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
    }
    if let Some(out) = &mut out {
        out.flush().await.map_err(ApiError::internal)?;
    }
    if received != file.size.unsigned_abs() {
        return Err(ApiError::bad_request(
            "size_mismatch",
            format!("\"{}\" holds {received} bytes in storage; {} were declared", file.name, file.size),
        ));
    }
    let digest = hasher.finalize();
    if digest.as_slice() != file.sha256.as_slice() {
        return Err(ApiError::bad_request(
            "hash_mismatch",
            format!(
                "the bytes received for \"{}\" have SHA-256 {}; {} was declared",
                file.name,
                hex::encode(digest),
                hex::encode(&file.sha256)
            ),
        ));
    }
    Ok(())
}

/// A private scratch folder for one completion, deleted when dropped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    async fn new(upload_id: Uuid) -> ApiResult<Scratch> {
        let path = std::env::temp_dir().join(format!("kiln-upload-{upload_id}-{}", Uuid::new_v4().simple()));
        tokio::fs::create_dir_all(&path).await.map_err(ApiError::internal)?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "scratch folder not removed");
        }
    }
}

/// Test-extracts the downloaded ZIP (`0.zip` in `scratch`) with the engine's ZIP safety, which
/// is what a worker will do with it, and checks that it holds photos. The extraction is deleted
/// with the scratch folder.
async fn check_zip(scratch: &Scratch, name: &str, limits: &Limits) -> ApiResult<()> {
    let zip = scratch.path.join("0.zip");
    let dest = scratch.path.join("extracted");
    let zip_limits = ZipLimits {
        // Unpacked, a ZIP may hold no more than photos uploaded one by one could.
        max_total_bytes: ZipLimits::default().max_total_bytes.min(limits.max_upload_bytes),
        ..ZipLimits::default()
    };
    let outcome = tokio::task::spawn_blocking(move || {
        let folder = kiln_job::zip_input::extract_zip(&zip, &dest, &zip_limits).map_err(|e| (zip.clone(), e))?;
        Ok::<_, (PathBuf, Z)>(kiln_core::photos::folder_files(&folder).map(|files| files.photos.len()))
    })
    .await
    .map_err(ApiError::internal)?;
    match outcome {
        Ok(Ok(0)) => Err(ApiError::bad_request(
            "unsafe_zip",
            format!("the ZIP holds no photos (looked for .jpg, .jpeg and .png files): {name}"),
        )),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(ApiError::internal(error)),
        Err((_, error @ (Z::Open { .. } | Z::Io { .. } | Z::DestinationExists { .. }))) => {
            Err(ApiError::internal(error))
        }
        // The engine's message, naming the upload's file rather than our scratch path.
        Err((zip, error)) => {
            Err(ApiError::bad_request("unsafe_zip", error.to_string().replace(&zip.display().to_string(), name)))
        }
    }
}

/// Deletes everything of upload `id`: open multipart uploads (their parts), assembled objects,
/// and anything else under its prefix. Best effort: failures are logged, the refusal stands.
async fn delete_upload_objects(storage: &Storage, org_id: Uuid, id: Uuid, files: &[FileRow]) {
    abort_all(storage, files.iter().filter_map(|f| f.multipart_id.as_deref().map(|m| (f.object_key.as_str(), m))))
        .await;
    let mut keys: Vec<String> = files.iter().map(|f| f.object_key.clone()).collect();
    match storage.list(&upload_prefix(org_id, id)).await {
        Ok(objects) => {
            keys.extend(objects.into_iter().map(|o| o.key).filter(|k| !keys.contains(k)).collect::<Vec<_>>())
        }
        Err(error) => tracing::warn!(upload_id = %id, %error, "upload objects not listed for deletion"),
    }
    let deleted: Vec<_> =
        bounded(keys.iter().map(|key| async move { (key, storage.delete(key).await) }).collect()).await;
    for (key, result) in deleted {
        if let Err(error) = result {
            tracing::warn!(key, %error, "upload object not deleted");
        }
    }
}

/// Aborts the multipart uploads `(key, multipart id)`, logging failures.
async fn abort_all<'a>(storage: &Storage, uploads: impl Iterator<Item = (&'a str, &'a str)>) {
    let results: Vec<_> = bounded(
        uploads
            .map(|(key, multipart_id)| async move { (key, storage.abort_multipart(key, multipart_id).await) })
            .collect(),
    )
    .await;
    for (key, result) in results {
        if let Err(error) = result {
            tracing::warn!(key, %error, "multipart upload not aborted");
        }
    }
}

/// The files of upload `upload_id` of `org_id`, in declaration order: 404 `not_found` when no
/// such upload in that org, 409 `upload_not_complete` while it is open (or was rejected).
pub async fn complete_inputs(db: &PgPool, org_id: Uuid, upload_id: Uuid) -> ApiResult<Vec<InputFile>> {
    let row = load(db, org_id, upload_id).await?.ok_or(ApiError::NotFound { what: "upload" })?;
    if row.state != "complete" {
        return Err(ApiError::conflict(
            "upload_not_complete",
            format!("upload {upload_id} is {}; complete it first (POST /v1/uploads/{upload_id}/complete)", row.state),
        ));
    }
    let files = load_files(db, org_id, upload_id).await?;
    Ok(files
        .into_iter()
        .map(|f| InputFile { name: f.name, object_key: f.object_key, size: f.size, sha256: f.sha256 })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(name: &str, size: u64) -> DeclaredFile {
        DeclaredFile { name: name.into(), size, sha256: "ab".repeat(32) }
    }

    fn code(result: ApiResult<(Kind, Vec<NewFile>)>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(error) => error.code(),
        }
    }

    #[test]
    fn parts_cover_the_file_and_only_the_last_is_short() {
        let parts: Vec<_> = expected_parts(12, 5).collect();
        assert_eq!(parts, vec![(1, 5), (2, 5), (3, 2)]);
        assert_eq!(expected_parts(10, 5).collect::<Vec<_>>(), vec![(1, 5), (2, 5)]);
    }

    #[test]
    fn a_part_of_the_wrong_size_is_missing() {
        let stored = vec![
            StoredPart { number: 1, size: 5, etag: "a".into(), last_modified: String::new() },
            StoredPart { number: 2, size: 4, etag: "b".into(), last_modified: String::new() },
        ];
        assert_eq!(missing_parts(12, 5, &stored), vec![(2, 5), (3, 2)]);
    }

    #[test]
    fn the_last_part_sent_with_the_right_size_is_assembled() {
        let part = |number, size, etag: &str, at: &str| StoredPart {
            number,
            size,
            etag: etag.into(),
            last_modified: at.into(),
        };
        let stored = vec![
            part(1, 5, "new", "2026-01-01T00:00:02Z"),
            part(1, 5, "old", "2026-01-01T00:00:01Z"),
            part(2, 2, "good", "2026-01-01T00:00:01Z"),
            part(2, 3, "truncated-later", "2026-01-01T00:00:03Z"),
        ];
        assert_eq!(chosen_etags(7, 5, &stored), vec!["new", "good"]);
    }

    #[test]
    fn declarations_are_checked() {
        let limits = Limits { max_files: 3, max_file_bytes: 100, max_upload_bytes: 150, ..Limits::default() };
        assert_eq!(code(validate(&[declared("a.JPG", 10), declared("b.png", 10)], &limits)), "ok");
        assert_eq!(code(validate(&[declared("photos.Zip", 10)], &limits)), "ok");
        assert_eq!(code(validate(&[], &limits)), "empty_upload");
        assert_eq!(
            code(validate(
                &[declared("a.jpg", 1), declared("b.jpg", 1), declared("c.jpg", 1), declared("d.jpg", 1)],
                &limits
            )),
            "too_many_files"
        );
        assert_eq!(code(validate(&[declared("a.jpg", 101)], &limits)), "file_too_large");
        assert_eq!(code(validate(&[declared("a.jpg", 100), declared("b.jpg", 100)], &limits)), "upload_too_large");
        assert_eq!(code(validate(&[declared("a.jpg", 0)], &limits)), "invalid_file_size");
        assert_eq!(code(validate(&[declared("a.jpg", 1), declared("a.jpg", 1)], &limits)), "duplicate_file_name");
        assert_eq!(code(validate(&[declared("a.tiff", 1)], &limits)), "unsupported_file_type");
        assert_eq!(code(validate(&[declared("a.zip", 1), declared("b.jpg", 1)], &limits)), "unsupported_file_type");
        for name in ["../a.jpg", "a/b.jpg", "a\\b.jpg", "..", ".hidden.jpg", "a\0.jpg", "a\n.jpg", ""] {
            assert_eq!(code(validate(&[declared(name, 1)], &limits)), "invalid_file_name", "{name:?}");
        }
        let long = format!("{}.jpg", "x".repeat(252));
        assert_eq!(code(validate(&[declared(&long, 1)], &limits)), "invalid_file_name");
        let mut bad_hash = declared("a.jpg", 1);
        bad_hash.sha256 = "zz".repeat(32);
        assert_eq!(code(validate(&[bad_hash], &limits)), "invalid_sha256");
    }

    #[test]
    fn huge_files_get_larger_parts() {
        let limits =
            Limits { max_file_bytes: u64::MAX, max_upload_bytes: u64::MAX, part_bytes: 5, ..Limits::default() };
        let files = validate(&[declared("a.jpg", 100_001)], &limits).map(|(_, files)| files).unwrap_or_default();
        assert_eq!(files.len(), 1);
        assert!(files[0].part_count <= MAX_PARTS);
        assert_eq!(files[0].part_count, 100_001u64.div_ceil(files[0].part_size));
    }
}
