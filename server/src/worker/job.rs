//! One leased job on a worker: download the inputs into a fresh folder (photos into `photos/`,
//! or the single `.zip` as it is), run the engine in a blocking thread while a heartbeat task
//! streams its events and keeps the lease, upload the job folder (the reports, the files the
//! viewer and `kiln export` read and what the export stage delivered under their output names,
//! the rest of the stage folders in one `layout::FOLDER_ARCHIVE`, so that a client's copy is a job
//! folder a local run resumes; also for a job that failed or was canceled, with what it finished),
//! and finish (retried until the server accepts it or says the lease is lost, so a finished result
//! is never dropped on a network error).

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kiln_job::layout::{FETCHED_ARCHIVE_FILE, FOLDER_ARCHIVE, LOCK_FILE, SHIPPED_FILES, ZIP_INPUT_DIR};
use kiln_job::report::JobReport;
use kiln_job::{CancelFlag, ErrorClass, EventKind, JobError, JobEvent, JobInput, JobLayout, run_job_from};
use kiln_protocol::ModelVerdict;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use super::WorkerOptions;
use super::client::{CallError, Client, retry};
use crate::jobs::{JobFailure, JobOutput};
use crate::routes::worker_api::{Finish, Heartbeat, InputUrl, Lease, Outcome, OutputsRequest};

/// Heartbeats at most this far apart (and at least three per lease): progress reaches clients
/// within about a second.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Events kept for a heartbeat while the server cannot be reached; older progress is dropped
/// first (the stage events are what matters, and the latest progress).
const MAX_BUFFERED_EVENTS: usize = 500;

/// Tries per input download before the job fails (a corrupt or missing object stays so).
const DOWNLOAD_TRIES: u32 = 5;

/// The folder the photos of a multi-file upload are put in, inside the attempt's folder.
const PHOTOS_DIR: &str = "photos";
/// The job folder, inside the attempt's folder.
const JOB_DIR: &str = "job";

/// Runs `lease` to its end on this worker; removes its folder afterwards.
pub async fn run(client: &Client, options: &WorkerOptions, lease: Lease, stop: watch::Receiver<bool>) {
    let span = tracing::info_span!("job", job_id = %lease.job_id, attempt = lease.attempt);
    run_attempt(client, options, lease, stop).instrument(span).await;
}

async fn run_attempt(client: &Client, options: &WorkerOptions, lease: Lease, stop: watch::Receiver<bool>) {
    let job_id = lease.job_id;
    tracing::info!(inputs = lease.inputs.len(), "job leased");
    let dir = options.work_dir.join(format!("{job_id}-attempt-{}", lease.attempt));
    let _ = std::fs::remove_dir_all(&dir);
    let interval = HEARTBEAT.min(Duration::from_secs_f64((lease.lease_seconds / 3.0).max(0.1)));
    let pulse = Pulse::start(client.clone(), job_id, lease.attempt, interval, stop);
    let ending = attempt(client, options, &lease, &dir, &pulse).await;
    let flags = pulse.stop().await;
    match ending {
        _ if flags.lost.load(Ordering::SeqCst) => tracing::warn!("the lease was lost; the job is dropped here"),
        Ending::Release => match retry("release", || client.release(job_id, lease.attempt)).await {
            Ok(done) => tracing::info!(state = ?done.state, "job handed back"),
            Err(error) => tracing::warn!(error = %error, "handing the job back failed; its lease will run out"),
        },
        Ending::Finish(finish) => deliver(client, job_id, finish).await,
    }
    if let Err(error) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(error = %error, "cannot remove {}", dir.display());
    }
}

/// What the attempt comes to.
enum Ending {
    Finish(Finish),
    /// Stopped by a signal: hand the job back to the queue.
    Release,
}

/// Flags the heartbeat task and the attempt share.
#[derive(Default)]
struct Flags {
    /// The server said the customer canceled.
    canceled: AtomicBool,
    /// The server said this worker no longer holds the job.
    lost: AtomicBool,
    /// A signal asked the worker to stop while the engine ran.
    shutdown: AtomicBool,
    /// The engine returned: signals no longer stop it.
    engine_done: AtomicBool,
}

/// The heartbeat task of one attempt.
struct Pulse {
    events: mpsc::UnboundedSender<JobEvent>,
    cancel: CancelFlag,
    flags: Arc<Flags>,
    done: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Pulse {
    fn start(client: Client, job_id: Uuid, attempt: i32, interval: Duration, stop: watch::Receiver<bool>) -> Pulse {
        let (events, receiver) = mpsc::unbounded_channel();
        let cancel = CancelFlag::default();
        let flags = Arc::new(Flags::default());
        let (done, done_receiver) = watch::channel(false);
        let beat = Beat { client, job_id, attempt, interval, cancel: cancel.clone(), flags: flags.clone() };
        let task = tokio::spawn(beat.run(receiver, done_receiver, stop));
        Pulse { events, cancel, flags, done, task }
    }

    fn lost(&self) -> bool {
        self.flags.lost.load(Ordering::SeqCst)
    }

    /// Sends the last events in a final heartbeat and stops the task.
    async fn stop(self) -> Arc<Flags> {
        let _ = self.done.send(true);
        if let Err(error) = self.task.await {
            tracing::warn!(error = %error, "the heartbeat task failed");
        }
        self.flags
    }
}

struct Beat {
    client: Client,
    job_id: Uuid,
    attempt: i32,
    interval: Duration,
    cancel: CancelFlag,
    flags: Arc<Flags>,
}

impl Beat {
    async fn run(
        self,
        mut events: mpsc::UnboundedReceiver<JobEvent>,
        mut done: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut buffer: Vec<JobEvent> = Vec::new();
        let mut stop_seen = false;
        loop {
            let finishing = tokio::select! {
                () = tokio::time::sleep(self.interval) => false,
                _ = done.wait_for(|d| *d) => true,
                _ = stop.wait_for(|s| *s), if !stop_seen => {
                    stop_seen = true;
                    if !self.flags.engine_done.load(Ordering::SeqCst) {
                        self.flags.shutdown.store(true, Ordering::SeqCst);
                        self.cancel.cancel();
                    }
                    false
                }
            };
            while let Ok(event) = events.try_recv() {
                push_coalesced(&mut buffer, event);
            }
            let body =
                Heartbeat { worker_id: self.client.worker_id.clone(), attempt: self.attempt, events: buffer.clone() };
            match self.client.heartbeat(self.job_id, &body).await {
                Ok(reply) => {
                    buffer.clear();
                    if reply.cancel && !self.flags.canceled.swap(true, Ordering::SeqCst) {
                        tracing::info!("the customer canceled the job: stopping it");
                        self.cancel.cancel();
                    }
                }
                Err(CallError::LeaseLost) => {
                    self.flags.lost.store(true, Ordering::SeqCst);
                    self.cancel.cancel();
                    return;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "heartbeat failed; the events wait for the next one");
                    let excess = buffer.len().saturating_sub(MAX_BUFFERED_EVENTS);
                    buffer.drain(..excess);
                }
            }
            if finishing {
                return;
            }
        }
    }
}

/// Adds `event` to the heartbeat's batch; a progress event replaces a progress event of the same
/// stage just before it (the engine sends up to ten a second; one per heartbeat says as much).
fn push_coalesced(buffer: &mut Vec<JobEvent>, event: JobEvent) {
    let replaces = buffer.last().is_some_and(|last| {
        last.kind == EventKind::Progress && event.kind == EventKind::Progress && last.stage == event.stage
    });
    if replaces {
        buffer.pop();
    }
    buffer.push(event);
}

/// The downloaded input, as the engine takes it.
enum Input {
    Folder(PathBuf),
    Zip(PathBuf),
}

async fn attempt(client: &Client, options: &WorkerOptions, lease: &Lease, dir: &Path, pulse: &Pulse) -> Ending {
    let input = match download_inputs(client, &lease.inputs, dir).await {
        Ok(input) => input,
        Err(message) => return failed(lease, "internal_error", ErrorClass::Internal, message, None, Vec::new(), 0.0),
    };
    if pulse.flags.shutdown.load(Ordering::SeqCst) {
        return Ending::Release;
    }
    let mut settings = lease.settings.settings();
    settings.device = options.device;
    let job_dir = dir.join(JOB_DIR);
    let (cancel, events) = (pulse.cancel.clone(), pulse.events.clone());
    let engine_dir = job_dir.clone();
    let clock = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let input = match &input {
            Input::Folder(path) => JobInput::Folder(path),
            Input::Zip(path) => JobInput::Zip(path),
        };
        run_job_from(input, &engine_dir, &settings, &cancel, &mut |event| {
            let _ = events.send(event.clone());
        })
    })
    .await;
    let seconds = clock.elapsed().as_secs_f64();
    pulse.flags.engine_done.store(true, Ordering::SeqCst);
    if pulse.lost() {
        return Ending::Release;
    }
    let layout = JobLayout::new(&job_dir);
    let result = match result {
        Ok(result) => result,
        Err(panic) => {
            let message = format!("the engine stopped unexpectedly: {panic}");
            return failed(lease, "internal_error", ErrorClass::Internal, message, None, Vec::new(), seconds);
        }
    };
    match result {
        Ok(report) => {
            let report_json = customer_report(&layout, dir);
            let exported: Vec<PathBuf> = report.outputs().iter().map(|file| file.path.clone()).collect();
            let outputs = match upload_outputs(client, lease, &layout, dir, &exported).await {
                Ok(outputs) => outputs,
                Err(message) => {
                    return failed(
                        lease,
                        "internal_error",
                        ErrorClass::Internal,
                        message,
                        report_json,
                        Vec::new(),
                        seconds,
                    );
                }
            };
            if report.verdict == Some(ModelVerdict::Failed) {
                let message = "the model failed its own check against the held-out photos (the report's findings say \
                               why); it is kept as model.failed.*";
                return failed(
                    lease,
                    "model_failed",
                    ErrorClass::BadInput,
                    message.into(),
                    report_json,
                    outputs,
                    seconds,
                );
            }
            Ending::Finish(finish(lease, Outcome::Succeeded, report_json, outputs, None, seconds))
        }
        Err(error) if error.class() == ErrorClass::Cancelled => {
            if pulse.flags.canceled.load(Ordering::SeqCst) {
                // What the job finished before it stopped goes back too: it resumes locally.
                let report = customer_report(&layout, dir);
                let outputs = partial_outputs(client, lease, &layout, dir, report.is_some()).await;
                Ending::Finish(finish(lease, Outcome::Canceled, report, outputs, None, seconds))
            } else {
                Ending::Release
            }
        }
        Err(error) => {
            let (code, class) = failure_code(&error);
            // Paths inside the worker's folder mean nothing to the customer: made relative.
            let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            let message = error.to_string().replace(&format!("{}/", root.display()), "");
            tracing::info!(code, "the job failed: {message}");
            let report = customer_report(&layout, dir);
            let outputs = partial_outputs(client, lease, &layout, dir, report.is_some()).await;
            failed(lease, code, class, message, report, outputs, seconds)
        }
    }
}

/// The outputs of a job that stopped early (failed or canceled), when it got as far as writing a
/// report: the files of the stages it finished, which a client resumes locally. A failed upload
/// only costs the customer those files, not the job's ending.
async fn partial_outputs(
    client: &Client,
    lease: &Lease,
    layout: &JobLayout,
    dir: &Path,
    has_report: bool,
) -> Vec<JobOutput> {
    if !has_report {
        return Vec::new();
    }
    match upload_outputs(client, lease, layout, dir, &[]).await {
        Ok(outputs) => outputs,
        Err(message) => {
            tracing::warn!("the finished stages' files could not be uploaded: {message}");
            Vec::new()
        }
    }
}

/// The failure code of an engine error, and its class.
fn failure_code(error: &JobError) -> (&'static str, ErrorClass) {
    match error.class() {
        ErrorClass::BadInput => ("bad_input", ErrorClass::BadInput),
        ErrorClass::Device => ("device_error", ErrorClass::Device),
        class @ (ErrorClass::Internal | ErrorClass::Busy | ErrorClass::Cancelled) => ("internal_error", class),
    }
}

fn finish(
    lease: &Lease,
    outcome: Outcome,
    report: Option<serde_json::Value>,
    outputs: Vec<JobOutput>,
    error: Option<JobFailure>,
    seconds: f64,
) -> Finish {
    Finish {
        worker_id: String::new(),
        attempt: lease.attempt,
        outcome,
        report,
        outputs,
        error,
        device_seconds: seconds,
    }
}

fn failed(
    lease: &Lease,
    code: &str,
    class: ErrorClass,
    message: String,
    report: Option<serde_json::Value>,
    outputs: Vec<JobOutput>,
    seconds: f64,
) -> Ending {
    let error = JobFailure::new(code, class, message);
    Ending::Finish(finish(lease, Outcome::Failed, report, outputs, Some(error), seconds))
}

/// The job's `report.json` as the customer gets it, in the API and as an output file: its paths
/// (input, photos, job folder, outputs) relative to the attempt's folder, since the worker's
/// own folders mean nothing outside it and are not for clients to see. The file in the job
/// folder is rewritten the same way (atomically) before it is uploaded.
fn customer_report(layout: &JobLayout, dir: &Path) -> Option<serde_json::Value> {
    let report: JobReport = kiln_job::report::read_report(layout.root()).ok()?;
    let value = serde_json::to_value(report).ok()?;
    Some(write_relative(&layout.report(), value, dir))
}

/// The job folder's other JSON files (manifest, stage records and reports, `mesh.json`, …)
/// rewritten like the report: the paths they hold under the attempt's folder made relative to it.
fn customer_json_files(layout: &JobLayout, dir: &Path) {
    let json = job_files(layout).into_iter().filter(|path| path.extension().is_some_and(|e| e == "json"));
    for path in json.filter(|path| *path != layout.report()) {
        let Ok(bytes) = std::fs::read(&path) else { continue };
        match serde_json::from_slice(&bytes) {
            Ok(value) => {
                write_relative(&path, value, dir);
            }
            Err(error) => tracing::warn!(error = %error, "{} is not JSON; shipped as it is", path.display()),
        }
    }
}

/// `value` with every path under the attempt's folder `dir` made relative to it, written over
/// the JSON file `path` (atomically: a sibling renamed into place); returns the new value.
fn write_relative(path: &Path, mut value: serde_json::Value, dir: &Path) -> serde_json::Value {
    let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    for prefix in [root.as_path(), dir] {
        relative_paths(&mut value, &prefix.to_string_lossy());
    }
    let temporary = path.with_extension("json.customer");
    let written = serde_json::to_vec_pretty(&value)
        .map_err(std::io::Error::from)
        .and_then(|text| std::fs::write(&temporary, text))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(error) = written {
        tracing::warn!(error = %error, "cannot rewrite {} with relative paths", path.display());
    }
    value
}

/// Every string of `value` under the folder `root`, made relative to it (`.` for `root`).
fn relative_paths(value: &mut serde_json::Value, root: &str) {
    match value {
        serde_json::Value::String(text) if text.as_str() == root => *text = ".".into(),
        serde_json::Value::String(text) => {
            if let Some(rest) = text.strip_prefix(root).and_then(|rest| rest.strip_prefix('/')) {
                *text = rest.to_string();
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|item| relative_paths(item, root)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|item| relative_paths(item, root)),
        _ => {}
    }
}

/// Finishes the job: retried until accepted or the lease is lost. Refused outright (outputs that
/// storage does not hold as described, say), the job is finished as failed instead.
async fn deliver(client: &Client, job_id: Uuid, mut finish: Finish) {
    finish.worker_id = client.worker_id.clone();
    match retry("finish", || client.finish(job_id, &finish)).await {
        Ok(done) => tracing::info!(state = ?done.state, "job finished"),
        Err(CallError::LeaseLost) => tracing::warn!("the lease was lost before the job could be finished"),
        Err(error) => {
            tracing::error!(error = %error, "the server refused the result; finishing the job as failed");
            let failure = JobFailure::new(
                "internal_error",
                ErrorClass::Internal,
                format!("the worker's result was refused: {error}"),
            );
            let fallback = Finish { outcome: Outcome::Failed, outputs: Vec::new(), error: Some(failure), ..finish };
            if let Err(error) = retry("finish", || client.finish(job_id, &fallback)).await {
                tracing::error!(error = %error, "finishing the job failed; its lease will run out");
            }
        }
    }
}

/// Downloads every input into `dir`, checking sizes and hashes: a single `.zip` stays one file,
/// anything else goes into `photos/` under its (relative) name.
async fn download_inputs(client: &Client, inputs: &[InputUrl], dir: &Path) -> Result<Input, String> {
    let single_zip = match inputs {
        [only] => only.name.to_ascii_lowercase().ends_with(".zip"),
        _ => false,
    };
    let photos = dir.join(PHOTOS_DIR);
    std::fs::create_dir_all(&photos).map_err(|e| format!("creating {}: {e}", photos.display()))?;
    let mut zip = None;
    for input in inputs {
        let relative = safe_relative(&input.name)
            .ok_or_else(|| format!("the input name {:?} is not a plain relative path", input.name))?;
        let path = if single_zip { dir.join(relative) } else { photos.join(relative) };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        fetch(client, input, &path).await?;
        zip = Some(path);
    }
    match zip {
        Some(path) if single_zip => Ok(Input::Zip(path)),
        _ => Ok(Input::Folder(photos)),
    }
}

/// Downloads one input to `dest`, checked against its size and SHA-256; retried a few times.
async fn fetch(client: &Client, input: &InputUrl, dest: &Path) -> Result<(), String> {
    let mut backoff = super::Backoff::default();
    let mut last = String::new();
    for _ in 0..DOWNLOAD_TRIES {
        match client.download(&input.url, dest).await {
            Ok((size, sha256)) if size == input.size && sha256 == input.sha256 => return Ok(()),
            Ok((size, _)) => {
                last = format!("{} downloaded as {size} bytes that do not match its size or SHA-256", input.name)
            }
            Err(error) => last = error.to_string(),
        }
        tracing::warn!("{last}; retrying");
        tokio::time::sleep(backoff.next_wait()).await;
    }
    Err(last)
}

/// `name` as a relative path of plain components, or `None` (absolute, `..`, empty).
fn safe_relative(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && path.components().next().is_some()).then(|| path.to_path_buf())
}

/// Every file of the job folder a client gets a copy of, sorted: all but the lock, the photos a
/// ZIP input was extracted to (the customer has them), the fetched archive and hidden files
/// (temporaries).
fn job_files(layout: &JobLayout) -> Vec<PathBuf> {
    fn walk(dir: &Path, top: bool, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let skipped = name.starts_with('.')
                || (top && [LOCK_FILE, ZIP_INPUT_DIR, FETCHED_ARCHIVE_FILE].contains(&name.as_str()));
            match entry.file_type() {
                _ if skipped => {}
                Ok(kind) if kind.is_dir() => walk(&entry.path(), false, found),
                Ok(kind) if kind.is_file() => found.push(entry.path()),
                _ => {}
            }
        }
    }
    let mut found = Vec::new();
    walk(layout.root(), true, &mut found);
    found.sort();
    found
}

/// The files a customer gets, by output name: every shipped file the job folder holds
/// (`SHIPPED_FILES`: the reports and what `kiln view` and `kiln export` read, which a client puts
/// back with `JobLayout::output_path`), the files the export stage delivered, and, packed into
/// `archive` (written here), every other file of the stage folders. Each name once: the `ply`
/// format's `export/splats.ply` goes in the archive, `splats.ply` being `train/splats.ply`.
fn output_files(layout: &JobLayout, exported: &[PathBuf], archive: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let shipped = SHIPPED_FILES
        .into_iter()
        .filter_map(|name| Some((name.to_string(), layout.output_path(name)?)))
        .filter(|(_, path)| path.is_file());
    let exported =
        exported.iter().filter_map(|path| Some((path.file_name()?.to_string_lossy().into_owned(), path.clone())));
    let mut names = HashSet::new();
    let mut files: Vec<(String, PathBuf)> =
        shipped.chain(exported).filter(|(name, _)| names.insert(name.clone())).collect();
    let rest: Vec<(String, PathBuf)> = job_files(layout)
        .into_iter()
        .filter(|path| !files.iter().any(|(_, shipped)| shipped == path))
        .filter_map(|path| Some((layout.archive_name(&path)?, path)))
        .collect();
    if !rest.is_empty() {
        pack(&rest, archive).map_err(|e| format!("packing the job folder into {}: {e}", archive.display()))?;
        files.push((FOLDER_ARCHIVE.to_string(), archive.to_path_buf()));
    }
    Ok(files)
}

/// Writes the ZIP `archive` of `files` (entry name, file), deflated.
fn pack(files: &[(String, PathBuf)], archive: &Path) -> std::io::Result<()> {
    let mut writer = zip::ZipWriter::new(std::fs::File::create(archive)?);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).large_file(true);
    for (name, path) in files {
        writer.start_file(name.as_str(), options).map_err(std::io::Error::other)?;
        std::io::copy(&mut std::fs::File::open(path)?, &mut writer)?;
    }
    writer.finish().map_err(std::io::Error::other)?.sync_all()
}

/// Uploads the outputs through presigned PUT URLs (their JSON files' paths made relative to the
/// attempt's folder `dir` first); returns what the finish reports.
async fn upload_outputs(
    client: &Client,
    lease: &Lease,
    layout: &JobLayout,
    dir: &Path,
    exported: &[PathBuf],
) -> Result<Vec<JobOutput>, String> {
    customer_json_files(layout, dir);
    let (names, files): (Vec<String>, Vec<PathBuf>) =
        output_files(layout, exported, &dir.join(FOLDER_ARCHIVE))?.into_iter().unzip();
    let request = OutputsRequest { worker_id: client.worker_id.clone(), attempt: lease.attempt, files: names.clone() };
    let reply =
        retry("asking for output URLs", || client.outputs(lease.job_id, &request)).await.map_err(|e| e.to_string())?;
    let mut outputs = Vec::with_capacity(files.len());
    for ((path, name), upload) in files.iter().zip(&names).zip(&reply.uploads) {
        let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let output =
            JobOutput { name: name.clone(), size: bytes.len() as i64, sha256: hex::encode(Sha256::digest(&bytes)) };
        retry(&format!("uploading {name}"), || client.upload(&upload.url, bytes.clone()))
            .await
            .map_err(|e| e.to_string())?;
        outputs.push(output);
    }
    tracing::info!(files = outputs.len(), "outputs uploaded");
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_job::Stage;

    #[test]
    fn paths_under_the_attempt_folder_become_relative() {
        let mut report = serde_json::json!({
            "job_dir": "/w/j-attempt-1/job",
            "input": "/w/j-attempt-1",
            "outputs": [{"path": "/w/j-attempt-1/job/export/model.glb"}],
            "other": "/w/j-attempt-10/x",
        });
        relative_paths(&mut report, "/w/j-attempt-1");
        assert_eq!(report["job_dir"], "job");
        assert_eq!(report["input"], ".");
        assert_eq!(report["outputs"][0]["path"], "job/export/model.glb");
        assert_eq!(report["other"], "/w/j-attempt-10/x", "only whole path components are stripped");
    }

    #[test]
    fn input_names_stay_inside_the_folder() {
        assert_eq!(safe_relative("a/b.jpg"), Some(PathBuf::from("a/b.jpg")));
        assert_eq!(safe_relative("../x.jpg"), None);
        assert_eq!(safe_relative("/etc/passwd"), None);
        assert_eq!(safe_relative(""), None);
    }

    #[test]
    fn every_shipped_file_present_goes_out_once_under_its_output_name() {
        let root = std::env::temp_dir().join(format!("kiln-worker-outputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let layout = JobLayout::new(root.join("job"));
        let present = [layout.report(), layout.check_report(), layout.splats(), layout.mesh_json()];
        let exported = [layout.stage(Stage::Export).join("model.glb"), layout.stage(Stage::Export).join("splats.ply")];
        for path in present.iter().chain(&exported) {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"{}").unwrap();
        }
        // What else a local run leaves: records, folders, a checkpoint; and what never ships.
        let rest = [
            layout.stage_record(Stage::Check),
            layout.stage(Stage::Poses).join("sparse/0/cameras.bin"),
            layout.masks().join("0001.png"),
            layout.checkpoint(),
        ];
        let never = [layout.lock(), layout.zip_input().join("a.jpg"), layout.stage(Stage::Train).join(".x.tmp-1")];
        for path in rest.iter().chain(&never) {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, path.to_string_lossy().as_bytes()).unwrap();
        }
        let archive = root.join(FOLDER_ARCHIVE);
        let files = output_files(&layout, &exported, &archive).unwrap();
        let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["report.json", "check-report.json", "splats.ply", "mesh.json", "model.glb", FOLDER_ARCHIVE]);
        assert_eq!(files[2].1, layout.splats(), "the training splats, not the export's copy");
        assert_eq!(files[4].1, exported[0]);
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&archive).unwrap()).unwrap();
        let mut entries: Vec<String> = zip.file_names().map(|name| name.unwrap().into_owned()).collect();
        entries.sort();
        assert_eq!(
            entries,
            [
                "check/stage.json",
                "export/splats.ply",
                "mesh/masks/0001.png",
                "poses/sparse/0/cameras.bin",
                "train/checkpoint.bin"
            ]
        );
        let mut record = String::new();
        std::io::Read::read_to_string(&mut zip.by_name("check/stage.json").unwrap(), &mut record).unwrap();
        assert_eq!(record, layout.stage_record(Stage::Check).to_string_lossy());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn shipped_json_files_lose_the_worker_s_folder() {
        let dir = std::env::temp_dir().join(format!("kiln-worker-json-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = JobLayout::new(dir.join("job"));
        std::fs::create_dir_all(layout.stage(Stage::Mesh)).unwrap();
        let splats = layout.splats().to_string_lossy().into_owned();
        std::fs::write(layout.mesh_json(), serde_json::json!({"sources": {"splats": splats}}).to_string()).unwrap();
        std::fs::write(layout.manifest(), b"not json").unwrap();
        let export = layout.stage(Stage::Export).join("model.glb").to_string_lossy().into_owned();
        std::fs::create_dir_all(layout.stage(Stage::Export)).unwrap();
        let record = serde_json::json!({"summary": {"export": {"files": [{"path": export}]}}});
        std::fs::write(layout.stage_record(Stage::Export), record.to_string()).unwrap();
        customer_json_files(&layout, &dir);
        let mesh: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.mesh_json()).unwrap()).unwrap();
        assert_eq!(mesh["sources"]["splats"], "job/train/splats.ply");
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.stage_record(Stage::Export)).unwrap()).unwrap();
        assert_eq!(record["summary"]["export"]["files"][0]["path"], "job/export/model.glb", "stage records too");
        assert_eq!(std::fs::read(layout.manifest()).unwrap(), b"not json", "a file that is not JSON is left alone");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn event(stage: Stage, kind: EventKind) -> JobEvent {
        JobEvent {
            stage,
            kind,
            phase: None,
            step: None,
            metrics: None,
            stage_fraction: 0.0,
            job_fraction: 0.0,
            eta_s: None,
            message: String::new(),
            preview: None,
        }
    }

    #[test]
    fn progress_events_coalesce_between_stage_events() {
        let mut buffer = Vec::new();
        for e in [
            event(Stage::Check, EventKind::Started),
            event(Stage::Check, EventKind::Progress),
            event(Stage::Check, EventKind::Progress),
            event(Stage::Check, EventKind::Finished),
            event(Stage::Poses, EventKind::Progress),
        ] {
            push_coalesced(&mut buffer, e);
        }
        let kinds: Vec<EventKind> = buffer.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Started, EventKind::Progress, EventKind::Finished, EventKind::Progress]);
    }
}
