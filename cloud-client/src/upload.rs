//! Uploads: a folder of photos (or one `.zip`) into an upload the server can run jobs on.
//!
//! Each file is hashed (SHA-256, streamed) and declared with `POST /v1/uploads`; the server
//! answers a presigned URL per part, and the parts go straight to storage, [`PART_CONCURRENCY`]
//! at a time, each with its own retries (a part whose URL expired gets a fresh one from
//! `GET /v1/uploads/{id}`). `POST /v1/uploads/{id}/complete` then has the server check every
//! file's size and hash. Progress is reported in bytes through a callback.
//!
//! **Resume**: before the first part goes out, the upload is recorded in a state file the caller
//! names (written atomically: the server, the upload id and the declared files). A later call
//! with the same inputs to the same server finds that upload; while it is open the server lists
//! the parts storage already holds and gives URLs only for the missing ones, so only those are
//! sent. Changed inputs, another server, or an upload the server no longer has (rejected,
//! expired) start a new upload. The inputs are only ever read.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures_util::{TryStreamExt, stream};
use kiln_api::uploads::{CreateUpload, DeclaredFile, PartToSend, Upload, UploadFile};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::client::{Attempt, Client};
use crate::error::CloudError;
use crate::retry::retryable_status;

/// Parts in flight at once: four keep a fast link busy (each part is a separate connection with
/// its own slow start) while a slow one still finishes a part before its URL expires, and memory
/// stays at four parts (5 MiB each by default).
pub const PART_CONCURRENCY: usize = 4;

/// The state file's format; a file of another version is ignored (a new upload starts).
const STATE_VERSION: u32 = 1;

/// Bytes read at once while hashing.
const HASH_BUFFER: usize = 1 << 20;

/// File extensions (lowercase) the server takes as photos; anything else in a folder is skipped.
const PHOTO_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// The extension of the one archive an upload may be instead of photos.
const ZIP_EXTENSION: &str = "zip";

/// Where an upload is, after each part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadProgress {
    /// Bytes storage holds, parts sent by an earlier run included.
    pub sent_bytes: u64,
    pub total_bytes: u64,
    /// Files whose every part storage holds.
    pub files_done: usize,
    pub files: usize,
}

/// One local file, as declared to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalFile {
    pub path: PathBuf,
    /// The plain file name the server knows it by.
    pub name: String,
    pub size: u64,
    /// Lowercase hexadecimal.
    pub sha256: String,
}

/// The state file: which upload these inputs went into, on which server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    pub version: u32,
    /// The server's base URL.
    pub server: String,
    pub upload_id: Uuid,
    pub files: Vec<StateFile>,
}

/// A declared file, as the state file records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

impl UploadState {
    fn new(server: &str, upload_id: Uuid, files: &[LocalFile]) -> UploadState {
        let files =
            files.iter().map(|f| StateFile { name: f.name.clone(), size: f.size, sha256: f.sha256.clone() }).collect();
        UploadState { version: STATE_VERSION, server: server.to_string(), upload_id, files }
    }

    /// Whether this state is for `files` (same names, sizes and hashes, in order) on `server`.
    pub fn matches(&self, server: &str, files: &[LocalFile]) -> bool {
        self.version == STATE_VERSION
            && self.server == server
            && self.files.len() == files.len()
            && self.files.iter().zip(files).all(|(s, f)| s.name == f.name && s.size == f.size && s.sha256 == f.sha256)
    }
}

/// Uploads the photos of the folder `inputs` (`.jpg`, `.jpeg`, `.png` directly in it, by name),
/// or `inputs` itself when it is a `.zip`, resuming the upload `state` records when it is for the
/// same files on the same server; answers the complete upload. `progress` hears after each part.
pub async fn upload_photos(
    client: &Client,
    inputs: &Path,
    state: &Path,
    progress: impl Fn(UploadProgress) + Send + Sync,
) -> Result<Upload, CloudError> {
    let paths = input_files(inputs)?;
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        files.push(local_file(path).await?);
    }
    upload_files(client, &files, state, progress).await
}

/// Uploads `files` (see [`upload_photos`]).
pub async fn upload_files(
    client: &Client,
    files: &[LocalFile],
    state: &Path,
    progress: impl Fn(UploadProgress) + Send + Sync,
) -> Result<Upload, CloudError> {
    let server = client.server().as_str();
    let upload = match resumable(client, server, files, state).await? {
        Some(upload) if upload.state == "complete" => return Ok(upload),
        Some(upload) => {
            tracing::info!(upload_id = %upload.id, "resuming the upload");
            upload
        }
        None => {
            let declared = files
                .iter()
                .map(|f| DeclaredFile { name: f.name.clone(), size: f.size, sha256: f.sha256.clone() })
                .collect();
            let upload: Upload = client.post("/v1/uploads", &CreateUpload { files: declared }).await?;
            write_state(state, &UploadState::new(server, upload.id, files))?;
            tracing::info!(upload_id = %upload.id, files = files.len(), "upload opened");
            upload
        }
    };
    send_parts(client, &upload, files, &progress).await?;
    client.post(&format!("/v1/uploads/{}/complete", upload.id), &()).await
}

/// The upload `state` records for these files, as the server has it now, when it can still be
/// resumed (open) or is already complete; `None` to start a new one.
async fn resumable(
    client: &Client,
    server: &str,
    files: &[LocalFile],
    state: &Path,
) -> Result<Option<Upload>, CloudError> {
    let Some(recorded) = read_state(state)? else { return Ok(None) };
    if !recorded.matches(server, files) {
        tracing::info!("the inputs or the server changed since {}: a new upload", state.display());
        return Ok(None);
    }
    match client.get::<Upload>(&format!("/v1/uploads/{}", recorded.upload_id)).await {
        Ok(upload) if upload.state == "open" || upload.state == "complete" => Ok(Some(upload)),
        Ok(upload) => {
            tracing::info!(upload_id = %upload.id, state = %upload.state, "the recorded upload is over: a new upload");
            Ok(None)
        }
        Err(CloudError::Api { status: 404 | 410, .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The files to upload from `inputs`: the one `.zip` it is, or the photos directly in the folder
/// (hidden files skipped), sorted by name.
pub fn input_files(inputs: &Path) -> Result<Vec<PathBuf>, CloudError> {
    let io = |source| CloudError::Io { path: inputs.to_path_buf(), source };
    let metadata = std::fs::metadata(inputs).map_err(io)?;
    if metadata.is_file() {
        return if has_extension(inputs, &[ZIP_EXTENSION]) {
            Ok(vec![inputs.to_path_buf()])
        } else {
            Err(invalid_input(inputs, "is neither a folder of photos nor a .zip"))
        };
    }
    let mut photos = Vec::new();
    for entry in std::fs::read_dir(inputs).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden && path.is_file() && has_extension(&path, &PHOTO_EXTENSIONS) {
            photos.push(path);
        }
    }
    if photos.is_empty() {
        return Err(invalid_input(inputs, "holds no photos (.jpg, .jpeg, .png)"));
    }
    photos.sort();
    Ok(photos)
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension().is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn invalid_input(path: &Path, problem: &str) -> CloudError {
    CloudError::Io { path: path.to_path_buf(), source: std::io::Error::new(std::io::ErrorKind::InvalidInput, problem) }
}

/// `path` named, measured and hashed (streamed, on a blocking thread).
pub async fn local_file(path: PathBuf) -> Result<LocalFile, CloudError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| invalid_input(&path, "has no file name in UTF-8"))?;
    let hashed = path.clone();
    let (size, sha256) = tokio::task::spawn_blocking(move || hash_file(&hashed))
        .await
        .map_err(|e| CloudError::Protocol(format!("the hashing thread failed: {e}")))?
        .map_err(|source| CloudError::Io { path: path.clone(), source })?;
    Ok(LocalFile { path, name, size, sha256 })
}

/// The size and hex SHA-256 of the file at `path`, read in [`HASH_BUFFER`] pieces.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; HASH_BUFFER];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok((size, hex::encode(hasher.finalize())));
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
}

/// The state file at `path`; `None` when there is none or it does not parse (a new upload).
fn read_state(path: &Path) -> Result<Option<UploadState>, CloudError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CloudError::Io { path: path.to_path_buf(), source }),
    }
}

/// Writes `state` to `path` atomically: a sibling file, synced, renamed into place.
fn write_state(path: &Path, state: &UploadState) -> Result<(), CloudError> {
    let io = |source| CloudError::Io { path: path.to_path_buf(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let text = serde_json::to_vec_pretty(state).map_err(|e| CloudError::Protocol(e.to_string()))?;
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary).map_err(io)?;
    file.write_all(&text).and_then(|()| file.sync_all()).map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

/// One part to send: which file, which bytes, and the URL to put them to.
#[derive(Debug)]
struct PartJob<'a> {
    file: &'a LocalFile,
    file_index: usize,
    number: u16,
    offset: u64,
    size: u64,
    url: String,
}

/// The parts `upload` still asks for, checked against the local files (each part's range lies
/// in its file, as the server's part size says).
fn plan_parts<'a>(upload: &Upload, files: &'a [LocalFile]) -> Result<Vec<PartJob<'a>>, CloudError> {
    let mut jobs = Vec::new();
    for (file_index, remote) in upload.files.iter().enumerate() {
        let local = files
            .iter()
            .find(|f| f.name == remote.name)
            .ok_or_else(|| CloudError::Protocol(format!("the upload lists {}, which was not declared", remote.name)))?;
        for part in &remote.parts {
            let (offset, size) = part_range(remote, part, local.size)?;
            jobs.push(PartJob { file: local, file_index, number: part.number, offset, size, url: part.url.clone() });
        }
    }
    Ok(jobs)
}

/// The byte range of `part` in a file of `size` bytes: from `(number − 1) × part_size`, as long
/// as the server says, inside the file.
fn part_range(file: &UploadFile, part: &PartToSend, size: u64) -> Result<(u64, u64), CloudError> {
    let bad = || CloudError::Protocol(format!("part {} of {} does not fit the file", part.number, file.name));
    let part_size = u64::try_from(file.part_size).map_err(|_| bad())?;
    let offset = u64::from(part.number).checked_sub(1).ok_or_else(bad)?.checked_mul(part_size).ok_or_else(bad)?;
    let length = u64::try_from(part.size).map_err(|_| bad())?;
    let expected = size.saturating_sub(offset).min(part_size);
    if part_size == 0 || offset >= size || length != expected {
        return Err(bad());
    }
    Ok((offset, length))
}

/// Sends every part `upload` asks for, [`PART_CONCURRENCY`] at a time; the first part that fails
/// for good stops the rest.
async fn send_parts(
    client: &Client,
    upload: &Upload,
    files: &[LocalFile],
    progress: &(impl Fn(UploadProgress) + Send + Sync),
) -> Result<(), CloudError> {
    let jobs = plan_parts(upload, files)?;
    let total_bytes: u64 = files.iter().map(|f| f.size).sum();
    let missing_bytes: u64 = jobs.iter().map(|j| j.size).sum();
    let mut missing_parts = vec![0usize; upload.files.len()];
    for job in &jobs {
        missing_parts[job.file_index] += 1;
    }
    let tracker = Tracker {
        sent: AtomicU64::new(total_bytes.saturating_sub(missing_bytes)),
        total_bytes,
        files_done: AtomicUsize::new(missing_parts.iter().filter(|m| **m == 0).count()),
        files: upload.files.len(),
        missing_parts: Mutex::new(missing_parts),
    };
    progress(tracker.snapshot());
    stream::iter(jobs.into_iter().map(Ok))
        .try_for_each_concurrent(PART_CONCURRENCY, |job| {
            let tracker = &tracker;
            async move {
                send_part(client, upload.id, &job).await?;
                progress(tracker.part_sent(job.file_index, job.size));
                Ok(())
            }
        })
        .await
}

/// The counts behind [`UploadProgress`], shared by the parts in flight.
struct Tracker {
    sent: AtomicU64,
    total_bytes: u64,
    files_done: AtomicUsize,
    files: usize,
    /// Parts still to send, per file of the upload.
    missing_parts: Mutex<Vec<usize>>,
}

impl Tracker {
    fn snapshot(&self) -> UploadProgress {
        UploadProgress {
            sent_bytes: self.sent.load(Ordering::SeqCst),
            total_bytes: self.total_bytes,
            files_done: self.files_done.load(Ordering::SeqCst),
            files: self.files,
        }
    }

    /// Counts a part of file `file_index` of `size` bytes as sent; answers the new progress.
    fn part_sent(&self, file_index: usize, size: u64) -> UploadProgress {
        self.sent.fetch_add(size, Ordering::SeqCst);
        let mut missing = self.missing_parts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(left) = missing.get_mut(file_index) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.files_done.fetch_add(1, Ordering::SeqCst);
            }
        }
        drop(missing);
        self.snapshot()
    }
}

/// PUTs one part, retried with the client's policy; a refused URL (403: expired) is replaced by
/// a fresh one from the server before the next try, and a part the server no longer asks for
/// (storage holds it) is done.
async fn send_part(client: &Client, upload_id: Uuid, job: &PartJob<'_>) -> Result<(), CloudError> {
    let bytes = read_part(job).await?;
    let url = Mutex::new(Some(job.url.clone()));
    let stale = std::sync::atomic::AtomicBool::new(false);
    client
        .with_retries(|| async {
            if stale.swap(false, Ordering::SeqCst) {
                match fresh_url(client, upload_id, job).await {
                    Ok(fresh) => *url.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh,
                    Err(error) => return Attempt::Retry(error, None),
                }
            }
            let Some(target) = url.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone() else {
                return Attempt::Done(());
            };
            let Ok(parsed) = url::Url::parse(&target) else {
                return Attempt::Fail(CloudError::Protocol(format!(
                    "part {} of {}: bad URL",
                    job.number, job.file.name
                )));
            };
            match client.storage().put(parsed.clone()).body(bytes.clone()).send().await {
                Ok(response) if response.status().is_success() => Attempt::Done(()),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let error = storage_refusal(status, response).await;
                    if status == 403 {
                        stale.store(true, Ordering::SeqCst);
                        Attempt::Retry(error, None)
                    } else if retryable_status(status) {
                        Attempt::Retry(error, None)
                    } else {
                        Attempt::Fail(error)
                    }
                }
                Err(error) => Attempt::Retry(CloudError::network(&parsed, error), None),
            }
        })
        .await
}

/// A fresh URL for `job`'s part, or `None` when the server no longer asks for it.
async fn fresh_url(client: &Client, upload_id: Uuid, job: &PartJob<'_>) -> Result<Option<String>, CloudError> {
    let upload: Upload = client.get(&format!("/v1/uploads/{upload_id}")).await?;
    let file = upload.files.iter().find(|f| f.name == job.file.name);
    Ok(file.and_then(|f| f.parts.iter().find(|p| p.number == job.number)).map(|p| p.url.clone()))
}

/// Storage's refusal as an error: its S3 error code when the body has one, never the body itself
/// (an S3 error can quote the signed request).
pub(crate) async fn storage_refusal(status: u16, response: reqwest::Response) -> CloudError {
    let body = response.text().await.unwrap_or_default();
    let code = s3_error_code(&body).unwrap_or_else(|| format!("http_{status}"));
    CloudError::Api { status, message: format!("object storage refused the transfer ({code})"), code, request_id: None }
}

/// The `<Code>` of an S3 error document.
fn s3_error_code(body: &str) -> Option<String> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = start + body[start..].find("</Code>")?;
    let code = &body[start..end];
    code.chars().all(|c| c.is_ascii_alphanumeric()).then(|| code.to_string())
}

/// The bytes of `job`'s part, read from its file on a blocking thread.
async fn read_part(job: &PartJob<'_>) -> Result<Vec<u8>, CloudError> {
    let (path, offset, size) = (job.file.path.clone(), job.offset, job.size);
    let length = usize::try_from(size).map_err(|_| CloudError::Protocol("a part larger than memory".into()))?;
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = vec![0u8; length];
        file.read_exact(&mut bytes)?;
        Ok(bytes)
    })
    .await
    .map_err(|e| CloudError::Protocol(format!("the reading thread failed: {e}")))?
    .map_err(|source| CloudError::Io { path: job.file.path.clone(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(name: &str, size: u64, sha: &str) -> LocalFile {
        LocalFile { path: PathBuf::from(format!("/photos/{name}")), name: name.into(), size, sha256: sha.into() }
    }

    fn remote(name: &str, size: i64, part_size: i64, parts: &[(u16, i64)]) -> UploadFile {
        UploadFile {
            name: name.into(),
            size,
            sha256: String::new(),
            part_size,
            part_count: i32::try_from((size + part_size - 1) / part_size).unwrap(),
            parts: parts
                .iter()
                .map(|(number, size)| PartToSend { number: *number, size: *size, url: format!("http://s/{number}") })
                .collect(),
            received: Vec::new(),
        }
    }

    fn upload(files: Vec<UploadFile>) -> Upload {
        let now = chrono::Utc::now();
        Upload {
            id: Uuid::nil(),
            state: "open".into(),
            kind: "photos".into(),
            created_at: now,
            expires_at: now,
            completed_at: None,
            urls_expire_at: None,
            error: None,
            files,
        }
    }

    #[test]
    fn parts_cover_their_files_from_the_server_s_part_size() {
        let files = [local("a.jpg", 12, "aa"), local("b.jpg", 3, "bb")];
        let listed = upload(vec![remote("a.jpg", 12, 5, &[(1, 5), (3, 2)]), remote("b.jpg", 3, 5, &[(1, 3)])]);
        let plan = plan_parts(&listed, &files).unwrap();
        let ranges: Vec<(&str, u16, u64, u64, usize)> =
            plan.iter().map(|j| (j.file.name.as_str(), j.number, j.offset, j.size, j.file_index)).collect();
        assert_eq!(ranges, [("a.jpg", 1, 0, 5, 0), ("a.jpg", 3, 10, 2, 0), ("b.jpg", 1, 0, 3, 1)]);
    }

    #[test]
    fn parts_that_do_not_fit_the_local_file_are_refused() {
        let files = [local("a.jpg", 12, "aa")];
        for parts in [[(3, 5)], [(4, 2)], [(0, 5)], [(2, 4)]] {
            let listed = upload(vec![remote("a.jpg", 12, 5, &parts)]);
            assert!(matches!(plan_parts(&listed, &files), Err(CloudError::Protocol(_))), "{parts:?}");
        }
        let undeclared = upload(vec![remote("z.jpg", 12, 5, &[(1, 5)])]);
        assert!(matches!(plan_parts(&undeclared, &files), Err(CloudError::Protocol(_))));
    }

    #[test]
    fn a_state_matches_only_the_same_files_on_the_same_server() {
        let files = vec![local("a.jpg", 12, "aa"), local("b.jpg", 3, "bb")];
        let state = UploadState::new("https://api.example/", Uuid::nil(), &files);
        assert!(state.matches("https://api.example/", &files));
        assert!(!state.matches("https://other.example/", &files));
        let mut changed = files.clone();
        changed[1].sha256 = "cc".into();
        assert!(!state.matches("https://api.example/", &changed));
        assert!(!state.matches("https://api.example/", &files[..1]));
        let mut renamed = files.clone();
        renamed[0].name = "c.jpg".into();
        assert!(!state.matches("https://api.example/", &renamed));
        let old = UploadState { version: STATE_VERSION + 1, ..state };
        assert!(!old.matches("https://api.example/", &files));
    }

    #[test]
    fn the_state_file_round_trips_and_a_broken_one_reads_as_none() {
        let dir = std::env::temp_dir().join(format!("kiln-cloud-state-{}", std::process::id()));
        let path = dir.join("job/cloud-upload.json");
        let state = UploadState::new("http://127.0.0.1:1/", Uuid::new_v4(), &[local("a.jpg", 1, "aa")]);
        write_state(&path, &state).unwrap();
        assert_eq!(read_state(&path).unwrap(), Some(state));
        assert!(!path.with_extension("json.tmp").exists());
        std::fs::write(&path, b"{half").unwrap();
        assert_eq!(read_state(&path).unwrap(), None);
        assert_eq!(read_state(&dir.join("absent.json")).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_folder_gives_its_photos_sorted_and_a_zip_itself() {
        let dir = std::env::temp_dir().join(format!("kiln-cloud-inputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for name in ["b.JPG", "a.png", "c.jpeg", ".hidden.jpg", "notes.txt", "sub/d.jpg"] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let names: Vec<String> =
            input_files(&dir).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["a.png", "b.JPG", "c.jpeg"]);
        std::fs::write(dir.join("set.zip"), b"PK").unwrap();
        assert_eq!(input_files(&dir.join("set.zip")).unwrap(), [dir.join("set.zip")]);
        assert!(matches!(input_files(&dir.join("notes.txt")), Err(CloudError::Io { .. })));
        assert!(matches!(input_files(&dir.join("sub/none")), Err(CloudError::Io { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hashing_is_streamed_and_matches_a_one_shot_digest() {
        let path = std::env::temp_dir().join(format!("kiln-cloud-hash-{}", std::process::id()));
        let bytes: Vec<u8> = (0..(HASH_BUFFER * 2 + 17)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(hash_file(&path).unwrap(), (bytes.len() as u64, hex::encode(Sha256::digest(&bytes))));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn storage_errors_keep_only_the_s3_code() {
        assert_eq!(
            s3_error_code("<Error><Code>AccessDenied</Code><Message>x</Message></Error>").unwrap(),
            "AccessDenied"
        );
        assert_eq!(s3_error_code("<html>"), None);
        assert_eq!(s3_error_code("<Code>a b</Code>"), None);
    }

    #[test]
    fn progress_counts_parts_and_finished_files() {
        let tracker = Tracker {
            sent: AtomicU64::new(10),
            total_bytes: 30,
            files_done: AtomicUsize::new(1),
            files: 3,
            missing_parts: Mutex::new(vec![0, 2, 1]),
        };
        assert_eq!(
            tracker.part_sent(1, 5),
            UploadProgress { sent_bytes: 15, total_bytes: 30, files_done: 1, files: 3 }
        );
        assert_eq!(tracker.part_sent(2, 5).files_done, 2);
        assert_eq!(
            tracker.part_sent(1, 10),
            UploadProgress { sent_bytes: 30, total_bytes: 30, files_done: 3, files: 3 }
        );
    }
}
