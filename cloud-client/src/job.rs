//! One cloud job, from photos to a job folder, the way every front end runs it: the photos counted
//! and quoted against the balance ([`estimate`]), uploaded, resumable through the job folder's
//! `cloud-upload.json` ([`upload`]), the job created and recorded in the folder's
//! `cloud-job.json` ([`create`], [`JobRecord`]), followed live ([`follow`]: the event stream,
//! polling where it fails) and its outputs downloaded into the folder ([`download_into`]).
//!
//! The CLI and the desktop app call these steps in this order and add only their own
//! confirmation and display: progress comes through plain callbacks, as typed values.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use kiln_api::credits::QuoteRequest;
use kiln_api::jobs::{CreateJob, Job};
use kiln_api::prices::{Priority, Quote};
use kiln_protocol::SettingsOverrides;
use kiln_protocol::layout::JobLayout;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::download::{DownloadProgress, download_outputs};
use crate::error::{CloudError, ErrorKind};
use crate::events::JobStreamEvent;
use crate::login::{CredentialSource, LoginError, Session};
use crate::upload::{UploadProgress, upload_photos};

/// How often a job is polled when its event stream cannot be followed (a proxy that buffers it):
/// often enough for a progress bar, rare enough to be no load on the API.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// The photo file extensions (lowercase) counted in a `.zip`, the ones the upload takes.
const PHOTO_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// The folder macOS's archiver adds to a `.zip` for resource forks: never photos.
const MACOS_RESOURCE_DIR: &str = "__MACOSX";

/// What can go wrong in a cloud job's flow: the service or the sign-in refusing,
/// input that holds no photos, a balance short of the quote, a job folder's unreadable record.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// No credential, or a sign-in that expired or was revoked, or its store failing. A
    /// [`LoginError::Cloud`] becomes [`JobError::Cloud`].
    #[error(transparent)]
    Login(LoginError),
    /// The balance does not cover the quote; nothing was uploaded.
    #[error(
        "insufficient credits: this job costs {needed} and the organisation has {available} available; nothing was \
         uploaded"
    )]
    NotEnoughCredits { needed: i64, available: i64 },
    #[error("{} holds no photos (.jpg, .jpeg, .png)", .0.display())]
    NoPhotos(PathBuf),
    #[error("{} holds too many photos", .0.display())]
    TooManyPhotos(PathBuf),
    #[error("{} is not a readable .zip", .path.display())]
    BadZip { path: PathBuf, source: zip::result::ZipError },
    /// A job folder's `cloud-job.json` that does not parse.
    #[error("{} is not a cloud job record", .path.display())]
    BadRecord { path: PathBuf, source: serde_json::Error },
    #[error("cannot encode the job's settings")]
    Settings(#[source] serde_json::Error),
}

impl From<LoginError> for JobError {
    fn from(error: LoginError) -> JobError {
        match error {
            LoginError::Cloud(error) => JobError::Cloud(error),
            other => JobError::Login(other),
        }
    }
}

impl JobError {
    /// The kind of failure, as [`CloudError::kind`] sorts the service's.
    pub fn kind(&self) -> ErrorKind {
        match self {
            JobError::Cloud(error) => error.kind(),
            JobError::Login(error) => error.kind(),
            JobError::NotEnoughCredits { .. } => ErrorKind::PaymentRequired,
            JobError::NoPhotos(_) | JobError::TooManyPhotos(_) | JobError::BadZip { .. } | JobError::Settings(_) => {
                ErrorKind::Invalid
            }
            JobError::BadRecord { .. } => ErrorKind::Io,
        }
    }
}

/// The record `<job folder>/cloud-job.json`: which server, which job, which upload, so the folder
/// can stand for its cloud job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The API's base URL.
    pub server: String,
    pub job_id: Uuid,
    pub upload_id: Uuid,
}

impl JobRecord {
    /// The record in the job folder `folder`, if it has one.
    pub fn read(folder: &Path) -> Result<Option<JobRecord>, JobError> {
        let path = JobLayout::new(folder).cloud_job();
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map(Some).map_err(|source| JobError::BadRecord { path, source })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CloudError::Io { path, source }.into()),
        }
    }

    /// Writes the record into `folder` (created if need be) atomically: a sibling file, synced,
    /// renamed into place.
    pub fn write(&self, folder: &Path) -> Result<(), JobError> {
        let path = JobLayout::new(folder).cloud_job();
        let text = serde_json::to_vec_pretty(self).map_err(|e| CloudError::Protocol(e.to_string()))?;
        std::fs::create_dir_all(folder)
            .and_then(|()| write_atomically(&path, &text))
            .map_err(|source| CloudError::Io { path: path.clone(), source }.into())
    }
}

/// A job's quote, and the credits the organisation had available when it was asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Estimate {
    pub quote: Quote,
    pub available: i64,
}

impl Estimate {
    /// [`JobError::NotEnoughCredits`] when the balance does not cover the quote.
    pub fn check(&self) -> Result<(), JobError> {
        ensure_credits(self.quote.credits, self.available)
    }
}

/// [`JobError::NotEnoughCredits`] when `available` credits do not cover `needed`.
pub fn ensure_credits(needed: i64, available: i64) -> Result<(), JobError> {
    if available < needed { Err(JobError::NotEnoughCredits { needed, available }) } else { Ok(()) }
}

/// The settings a cloud job gets for a job that would run here with `settings`: every one of them
/// (so the job is the same either way) but the device, which the worker picks.
pub fn cloud_overrides(settings: &kiln_protocol::JobSettings) -> SettingsOverrides {
    SettingsOverrides { device: None, ..SettingsOverrides::from(settings) }
}

/// The quote for a job of the photos in `input` (a folder or a `.zip`) with `overrides`' preset
/// at `priority`, and the balance; spends nothing. [`Estimate::check`] says whether it is covered.
pub async fn estimate(
    session: &Session,
    input: &Path,
    overrides: &SettingsOverrides,
    priority: Priority,
) -> Result<Estimate, JobError> {
    let quote = quote(session, input, overrides, priority).await?;
    let balances = session.call(async |client| client.credits().await).await?;
    Ok(Estimate { quote, available: balances.available })
}

/// The quote for a job of the photos in `input` with `overrides`' preset at `priority`.
pub async fn quote(
    session: &Session,
    input: &Path,
    overrides: &SettingsOverrides,
    priority: Priority,
) -> Result<Quote, JobError> {
    let asked = &QuoteRequest { photos: photo_count(input)?, preset: overrides.preset, priority };
    Ok(session.call(async |client| client.quote(asked).await).await?)
}

/// The photos an upload of `input` carries: the folder's photos (hidden files skipped), or those
/// in the `.zip` (hidden files and macOS resource forks skipped).
pub fn photo_count(input: &Path) -> Result<u32, JobError> {
    let files = crate::upload::input_files(input)?;
    let count = match files.as_slice() {
        [only] if only.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip")) => zip_photos(only)?,
        photos => photos.len(),
    };
    if count == 0 {
        return Err(JobError::NoPhotos(input.to_path_buf()));
    }
    u32::try_from(count).map_err(|_| JobError::TooManyPhotos(input.to_path_buf()))
}

/// The photos in the ZIP `path`.
fn zip_photos(path: &Path) -> Result<usize, JobError> {
    let file = std::fs::File::open(path).map_err(|source| CloudError::Io { path: path.to_path_buf(), source })?;
    let archive = zip::ZipArchive::new(file).map_err(|source| JobError::BadZip { path: path.to_path_buf(), source })?;
    let photos = archive
        .file_names()
        // A name that is not text cannot be a photo the engine takes.
        .filter_map(Result::ok)
        .filter(|name| !name.ends_with('/'))
        .filter(|name| !name.split('/').any(|part| part.starts_with('.') || part == MACOS_RESOURCE_DIR))
        .filter(|name| {
            Path::new(name.as_ref())
                .extension()
                .is_some_and(|e| PHOTO_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
        })
        .count();
    Ok(photos)
}

/// What one run of [`upload`] sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UploadSummary {
    /// Parts this run sent to storage.
    pub parts_sent: u64,
    pub bytes_sent: u64,
    /// Bytes storage already held from an earlier run (a resumed upload).
    pub bytes_resumed: u64,
    pub total_bytes: u64,
}

/// A complete upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uploaded {
    pub upload_id: Uuid,
    /// What this run sent; `None` when the upload was already complete (nothing to send).
    pub summary: Option<UploadSummary>,
}

/// Uploads the photos of `input` (a folder or a `.zip`), resuming the upload the job folder
/// `out`'s `cloud-upload.json` records when it is for the same files on the same server.
/// `on_progress` hears once before the first part (what storage already holds), then after each
/// part sent.
pub async fn upload(
    session: &Session,
    input: &Path,
    out: &Path,
    on_progress: impl Fn(UploadProgress) + Send + Sync,
) -> Result<Uploaded, JobError> {
    let state = JobLayout::new(out).cloud_upload();
    let summary: Mutex<Option<UploadSummary>> = Mutex::new(None);
    let report = |progress: UploadProgress| {
        on_progress(progress);
        let mut summary = summary.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tally(&mut summary, progress);
    };
    let upload = session.call(async |client| upload_photos(client, input, &state, &report).await).await?;
    let summary = summary.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok(Uploaded { upload_id: upload.id, summary })
}

/// Counts one progress report into `summary`: the first says what was already there, each
/// later one follows a part sent.
fn tally(summary: &mut Option<UploadSummary>, progress: UploadProgress) {
    match summary {
        None => {
            *summary = Some(UploadSummary {
                bytes_resumed: progress.sent_bytes,
                total_bytes: progress.total_bytes,
                ..UploadSummary::default()
            })
        }
        Some(summary) => {
            summary.parts_sent += 1;
            summary.bytes_sent = summary.bytes_sent.max(progress.sent_bytes.saturating_sub(summary.bytes_resumed));
        }
    }
}

/// Creates the job of the complete upload `upload_id` with `overrides` at `priority`, and records
/// it in the job folder `out` (`cloud-job.json`); credits are reserved from here on.
pub async fn create(
    session: &Session,
    upload_id: Uuid,
    overrides: &SettingsOverrides,
    priority: Priority,
    out: &Path,
) -> Result<Job, JobError> {
    let settings = serde_json::to_value(overrides).map_err(JobError::Settings)?;
    let create = CreateJob { upload_id, settings, priority };
    let job = session.call(async |client| client.create_job(&create).await).await?;
    let record = JobRecord { server: session.client().server().to_string(), job_id: job.id, upload_id };
    record.write(out)?;
    Ok(job)
}

/// What [`follow`] hears while a job runs.
#[derive(Debug)]
pub enum JobUpdate {
    /// An event of the job's stream.
    Event(JobStreamEvent),
    /// The event stream failed with this error: the job is polled from now on.
    Polling(CloudError),
    /// The job as a poll found it, each time it changed.
    Polled(Job),
}

/// Follows the job `job_id` to its end and answers it as it ended. Its event stream first
/// (reconnecting from the last event; a sign-in's token that expires on the way is refreshed,
/// once per point in the stream); when the stream fails for the network, the server or an answer
/// this client cannot read, the job is polled every [`POLL_EVERY`] instead.
pub async fn follow(session: &Session, job_id: Uuid, mut on_update: impl FnMut(JobUpdate)) -> Result<Job, JobError> {
    match follow_events(session, job_id, &mut on_update).await {
        Ok(()) => {}
        Err(error) if matches!(error.kind(), ErrorKind::Network | ErrorKind::Protocol | ErrorKind::Server) => {
            on_update(JobUpdate::Polling(error));
            poll(session, job_id, &mut on_update).await?;
        }
        Err(error) => return Err(error.into()),
    }
    Ok(session.call(async |client| client.job(job_id).await).await?)
}

/// The event stream until the job's final state.
async fn follow_events(
    session: &Session,
    job_id: Uuid,
    on_update: &mut impl FnMut(JobUpdate),
) -> Result<(), CloudError> {
    let mut last_id = None;
    let mut refreshed_for = None;
    loop {
        let stream = session.client().events(job_id, last_id);
        futures_util::pin_mut!(stream);
        let mut refused = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    last_id = Some(event.id());
                    on_update(JobUpdate::Event(event));
                }
                Err(error) => {
                    refused = Some(error);
                    break;
                }
            }
        }
        let Some(error) = refused else { return Ok(()) };
        // A sign-in's access token may expire during a long job: refresh once per point in the
        // stream, then reconnect from the last event.
        let login = matches!(session.source(), CredentialSource::Login(_));
        if error.kind() != ErrorKind::Unauthorized || !login || refreshed_for == Some(last_id) {
            return Err(error);
        }
        refreshed_for = Some(last_id);
        if session.refresh().await.is_err() {
            return Err(error);
        }
    }
}

/// Polls the job until it ends.
async fn poll(session: &Session, job_id: Uuid, on_update: &mut impl FnMut(JobUpdate)) -> Result<(), CloudError> {
    let stream = session.client().watch(job_id, POLL_EVERY);
    futures_util::pin_mut!(stream);
    while let Some(job) = stream.next().await {
        on_update(JobUpdate::Polled(job?));
    }
    Ok(())
}

/// Downloads `job`'s outputs into the job folder `out`, each where a local run writes it
/// (resumed, verified, renamed into place); answers the files now in place. `on_progress` hears
/// as bytes arrive. The report's paths are made this folder's ([`localise_report`]).
pub async fn download_into(
    session: &Session,
    job: &Job,
    out: &Path,
    on_progress: impl Fn(DownloadProgress) + Send + Sync,
) -> Result<Vec<PathBuf>, JobError> {
    let on_progress = &on_progress;
    let files = session.call(async |client| download_outputs(client, job, out, on_progress).await).await?;
    localise_report(out)?;
    Ok(files)
}

/// The folder the service's reports name paths inside a job folder by (its workers' `job/`, the
/// attempt folder's part of every path stripped before the report leaves the worker).
const REMOTE_JOB_DIR: &str = "job";

/// Rewrites the job folder `out`'s downloaded `report.json` (when there is one) so that the paths
/// it names inside the remote job folder (`job`, `job/export/model.glb`) are the same files in
/// `out`: the report then reads as a local run's, for the app's export and validators alike.
/// Written atomically; a report already local is left as it is.
pub fn localise_report(out: &Path) -> Result<(), JobError> {
    let path = JobLayout::new(out).report();
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(CloudError::Io { path, source }.into()),
    };
    let mut report: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| CloudError::Protocol(format!("the job's report is not JSON ({e}): {}", path.display())))?;
    local_paths(&mut report, out);
    let text = serde_json::to_vec_pretty(&report).map_err(|e| CloudError::Protocol(e.to_string()))?;
    write_atomically(&path, &text).map_err(|source| CloudError::Io { path: path.clone(), source }.into())
}

/// Every string of `value` that is a path in the remote job folder, made the same path in `out`.
fn local_paths(value: &mut serde_json::Value, out: &Path) {
    match value {
        serde_json::Value::String(text) if text.as_str() == REMOTE_JOB_DIR => *text = out.display().to_string(),
        serde_json::Value::String(text) => {
            if let Some(rest) = text.strip_prefix(REMOTE_JOB_DIR).and_then(|rest| rest.strip_prefix('/')) {
                *text = out.join(rest).display().to_string();
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|item| local_paths(item, out)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|item| local_paths(item, out)),
        _ => {}
    }
}

/// Writes `bytes` to `path` through a synced sibling file renamed into place.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_protocol::layout::CLOUD_JOB_FILE;

    /// A fresh scratch folder for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-cloud-job-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_record_round_trips_through_an_atomic_write() {
        let dir = scratch("record");
        assert_eq!(JobRecord::read(&dir).unwrap(), None);
        let record = JobRecord {
            server: "http://127.0.0.1:9/".into(),
            job_id: Uuid::from_u128(7),
            upload_id: Uuid::from_u128(8),
        };
        let folder = dir.join("new/job");
        record.write(&folder).unwrap();
        assert_eq!(JobRecord::read(&folder).unwrap(), Some(record.clone()));
        let names: Vec<_> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [CLOUD_JOB_FILE], "no temporary left beside it");
        let moved = JobRecord { job_id: Uuid::from_u128(9), ..record };
        moved.write(&folder).unwrap();
        assert_eq!(JobRecord::read(&folder).unwrap(), Some(moved), "a rewrite replaces it");
        std::fs::write(folder.join(CLOUD_JOB_FILE), b"{\"server\":").unwrap();
        let error = JobRecord::read(&folder).unwrap_err();
        assert!(matches!(&error, JobError::BadRecord { path, .. } if path.ends_with(CLOUD_JOB_FILE)), "{error:?}");
        assert_eq!(error.kind(), ErrorKind::Io);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_downloaded_report_names_the_local_folder() {
        let dir = scratch("localise");
        assert!(localise_report(&dir).is_ok(), "no report: nothing to do");
        let remote = serde_json::json!({
            "job_dir": "job",
            "input": ".",
            "metrics": {"export": {"files": [{"path": "job/export/model.glb", "bytes": 10}]}},
            "validators": [{"file": "job/export/model.glb", "passed": true}],
            "other": "jobs/x",
        });
        let path = JobLayout::new(&dir).report();
        std::fs::write(&path, serde_json::to_vec(&remote).unwrap()).unwrap();
        localise_report(&dir).unwrap();
        let local: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let glb = dir.join("export/model.glb").display().to_string();
        assert_eq!(local["job_dir"], dir.display().to_string());
        assert_eq!(local["metrics"]["export"]["files"][0]["path"], glb.as_str());
        assert_eq!(local["validators"][0]["file"], glb.as_str());
        assert_eq!((local["input"].as_str(), local["other"].as_str()), (Some("."), Some("jobs/x")));
        localise_report(&dir).unwrap();
        let again: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(again, local, "a local report stays as it is");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["report.json"], "no temporary left beside it");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn photos_are_counted_in_folders_and_zips() {
        let dir = scratch("count");
        for name in ["a.jpg", "b.PNG", "c.jpeg", ".hidden.jpg", "notes.txt"] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.join("nested.jpg")).unwrap();
        assert_eq!(photo_count(&dir).unwrap(), 3);
        let zip_path = dir.join("set.zip");
        let mut writer = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        writer.add_directory("p/", options).unwrap();
        for name in ["p/1.jpg", "p/2.JPEG", "3.png", "p/.hidden.jpg", ".git/x.png", "__MACOSX/p/._1.jpg", "p/readme.md"]
        {
            writer.start_file(name, options).unwrap();
            std::io::Write::write_all(&mut writer, b"x").unwrap();
        }
        writer.finish().unwrap();
        assert_eq!(photo_count(&zip_path).unwrap(), 3);
        std::fs::write(dir.join("bad.zip"), b"not a zip").unwrap();
        let bad = photo_count(&dir.join("bad.zip")).unwrap_err();
        assert!(matches!(&bad, JobError::BadZip { path, .. } if path.ends_with("bad.zip")), "{bad:?}");
        assert_eq!(bad.kind(), ErrorKind::Invalid);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inputs_without_photos_are_refused() {
        let dir = scratch("empty");
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        let folder = photo_count(&dir).unwrap_err();
        assert_eq!(folder.kind(), ErrorKind::Io, "{folder}");
        assert!(folder.to_string().contains("holds no photos"), "{folder}");
        let zip_path = dir.join("none.zip");
        let mut writer = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        writer.start_file("__MACOSX/._a.jpg", zip::write::SimpleFileOptions::default()).unwrap();
        writer.finish().unwrap();
        let zip = photo_count(&zip_path).unwrap_err();
        assert!(matches!(&zip, JobError::NoPhotos(path) if path == &zip_path), "{zip:?}");
        assert_eq!(zip.to_string(), format!("{} holds no photos (.jpg, .jpeg, .png)", zip_path.display()));
        let missing = photo_count(&dir.join("missing")).unwrap_err();
        assert!(matches!(&missing, JobError::Cloud(CloudError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_short_balance_is_refused_with_both_figures() {
        assert!(ensure_credits(6, 6).is_ok());
        let error = ensure_credits(6, 2).unwrap_err();
        assert!(matches!(error, JobError::NotEnoughCredits { needed: 6, available: 2 }));
        assert_eq!(error.kind(), ErrorKind::PaymentRequired);
        assert_eq!(
            error.to_string(),
            "insufficient credits: this job costs 6 and the organisation has 2 available; nothing was uploaded"
        );
        let quote = Quote {
            credits: 10,
            photos: 40,
            preset: kiln_protocol::Preset::Medium,
            priority: Priority::Rush,
            standard_credits: 5,
        };
        assert!(Estimate { quote: quote.clone(), available: 10 }.check().is_ok());
        let short = Estimate { quote, available: 9 }.check().unwrap_err();
        assert!(matches!(short, JobError::NotEnoughCredits { needed: 10, available: 9 }));
    }

    #[test]
    fn the_upload_summary_separates_resumed_bytes_from_sent_ones() {
        let at = |sent_bytes| UploadProgress { sent_bytes, total_bytes: 100, files_done: 0, files: 2 };
        let mut summary = None;
        tally(&mut summary, at(40));
        tally(&mut summary, at(70));
        tally(&mut summary, at(100));
        let expected = UploadSummary { parts_sent: 2, bytes_sent: 60, bytes_resumed: 40, total_bytes: 100 };
        assert_eq!(summary, Some(expected));
    }
}
