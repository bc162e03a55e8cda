//! `kiln watch`: every new subfolder (or `.zip`) of a watched folder becomes a job once it has
//! been quiet — no file added, resized, touched or reported by the file-system notifier — for
//! the quiet period, so a folder still being copied is not picked up half-written.
//!
//! Two threads share the queue database `<out>/queue.sqlite` ([`super::store`]): a [`Scanner`]
//! (notify events plus a periodic walk of each candidate's files, sizes and modification times)
//! that queues quiet inputs, skipping content already seen (by [`super::input_content_hash`]),
//! and a runner that takes queued jobs one at a time. The desktop app runs the same [`Scanner`]
//! for each of its watched folders, into its own queue. Jobs a killed watcher left `running` are
//! resumed at the next start (the job folder carries their progress); on stop (Ctrl-C) the running
//! job is cancelled and put back in the queue. `<out>/watch.log` records every decision;
//! `<out>/watch.lock` keeps a second watcher off the same output folder.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notify::{Config, EventKindMask, RecommendedWatcher, RecursiveMode, Watcher};

use crate::sidecar::read_sidecar;
use crate::store::{Enqueued, QueueStore, QueuedJob};
use crate::{JobRunner, KeyMetrics, QueueError, input_content_hash, input_stem, is_zip, layered_settings};
use kiln_job::{CancelFlag, JobError};
use kiln_protocol::SettingsOverrides;

/// File names in the watcher's output folder.
pub const QUEUE_FILE: &str = "queue.sqlite";
pub const LOG_FILE: &str = "watch.log";
pub const LOCK_FILE: &str = "watch.lock";
/// The job folders live in `<out>/jobs/<input name>-<hash prefix>`.
pub const JOBS_DIR: &str = "jobs";

/// Hex digits of the content hash in a job folder's name: enough that two inputs of the same
/// name never share a folder, short enough to read.
pub const JOB_DIR_HASH_DIGITS: usize = 12;

/// Longest pause between two scans: a quiet input is queued at most this late.
const MAX_SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// Shortest pause between two scans, so a tiny quiet period does not spin.
const MIN_SCAN_INTERVAL: Duration = Duration::from_millis(100);

/// How long a job waits before it is tried again when another process (a `kiln reconstruct`
/// the user started by hand on the same folder) holds its job folder: long enough not to spin,
/// short enough that the queue moves on soon after the other process ends.
pub const DEFAULT_BUSY_RETRY: Duration = Duration::from_secs(30);

/// The file notifications the scanner asks for: creations, removals and changes. Reads (access
/// events) are left out at the source, where inotify then does not even report them: hashing an
/// input and running its job read every file, and a read says nothing about a copy in progress.
const WATCHED_EVENTS: EventKindMask = EventKindMask::CORE;

/// How often an idle runner looks for queued jobs.
const RUNNER_POLL: Duration = Duration::from_millis(200);

/// What `kiln watch` is asked to do.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub dir: PathBuf,
    pub out: PathBuf,
    /// How long an input must stay unchanged before it becomes a job.
    pub quiet: Duration,
    /// Settings of every job; a folder's `kiln.toml` overrides them ([`layered_settings`]).
    pub settings: SettingsOverrides,
    /// Return once nothing is queued, running or waiting to become quiet (for scripts and tests).
    pub exit_when_idle: bool,
    /// How long a job whose folder another process holds waits before it is tried again
    /// ([`DEFAULT_BUSY_RETRY`]).
    pub busy_retry: Duration,
}

/// What one run of the watcher did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchSummary {
    pub done: usize,
    pub failed: usize,
    /// Jobs cancelled by the stop request and left queued.
    pub interrupted: usize,
}

/// Watches `options.dir` until `stop` is set (or, with `exit_when_idle`, until idle), running
/// queued jobs with `runner`.
pub fn watch(options: &WatchOptions, runner: &mut JobRunner, stop: &CancelFlag) -> Result<WatchSummary, QueueError> {
    let (dir, out) = resolve_folders(options)?;
    let _lock = WatchLock::acquire(&out)?;
    let log = WatchLog::open(&out.join(LOG_FILE))?;
    let mut store = QueueStore::open(&out.join(QUEUE_FILE))?;
    let resumed = store.requeue_interrupted()?;
    log.info(&format!(
        "watching {} into {} (quiet {:.1} s); {resumed} interrupted job(s) to resume",
        dir.display(),
        out.display(),
        options.quiet.as_secs_f64()
    ));
    let scanner_done = AtomicBool::new(false);
    let runner_done = AtomicBool::new(false);
    let shared = Shared { stop, log: &log, scanner_done: &scanner_done, runner_done: &runner_done };
    std::thread::scope(|scope| {
        let scanner = scope.spawn(|| {
            let result = scan_until_stopped(&dir, &out, options, &shared);
            scanner_done.store(true, Ordering::SeqCst);
            result
        });
        let summary = run_queue(&mut store, runner, &shared, options.busy_retry);
        runner_done.store(true, Ordering::SeqCst);
        let scanned = scanner
            .join()
            .map_err(|_| QueueError::Watch { path: dir.clone(), message: "the scanner thread panicked".into() });
        let summary = summary?;
        scanned??;
        log.info(&format!(
            "stopped: {} done, {} failed, {} interrupted this run",
            summary.done, summary.failed, summary.interrupted
        ));
        Ok(summary)
    })
}

/// What the two threads share.
struct Shared<'a> {
    stop: &'a CancelFlag,
    log: &'a WatchLog,
    /// Set when the scanner ended (error, stop, or idle with `exit_when_idle`).
    scanner_done: &'a AtomicBool,
    /// Set when the runner ended; the scanner then ends too.
    runner_done: &'a AtomicBool,
}

fn resolve_folders(options: &WatchOptions) -> Result<(PathBuf, PathBuf), QueueError> {
    let dir = std::fs::canonicalize(&options.dir).map_err(|e| QueueError::BadInput {
        path: options.dir.clone(),
        problem: format!("cannot open the folder to watch ({e}); it must be an existing folder"),
    })?;
    if !dir.is_dir() {
        return Err(QueueError::BadInput { path: dir, problem: "the path to watch is not a folder".into() });
    }
    std::fs::create_dir_all(&options.out).map_err(QueueError::io(&options.out))?;
    let out = std::fs::canonicalize(&options.out).map_err(QueueError::io(&options.out))?;
    if dir.starts_with(&out) {
        return Err(QueueError::BadInput {
            path: dir,
            problem: format!("the output folder {} must not contain the folder to watch", out.display()),
        });
    }
    Ok((dir, out))
}

/// Runs queued jobs one at a time until stopped, or until the scanner ended.
fn run_queue(
    store: &mut QueueStore,
    runner: &mut JobRunner,
    shared: &Shared,
    busy_retry: Duration,
) -> Result<WatchSummary, QueueError> {
    let mut summary = WatchSummary::default();
    while !shared.stop.is_cancelled() {
        let Some(job) = store.claim_next()? else {
            if shared.scanner_done.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(RUNNER_POLL);
            continue;
        };
        shared.log.info(&format!(
            "job #{} started (attempt {}): {} -> {}",
            job.id,
            job.attempts,
            job.input.display(),
            job.job_dir.display()
        ));
        let start = Instant::now();
        let outcome = runner(&job.input, &job.job_dir, &job.settings, shared.stop);
        let seconds = start.elapsed().as_secs_f64();
        match outcome {
            Ok(metrics) => {
                store.mark_done(job.id, &metrics)?;
                shared.log.info(&format!("job #{} done in {seconds:.1} s: {}", job.id, describe(&metrics)));
                summary.done += 1;
            }
            Err(JobError::Cancelled(stage)) => {
                store.requeue(job.id)?;
                shared.log.info(&format!("job #{} cancelled during {stage}; it resumes at the next start", job.id));
                summary.interrupted += 1;
            }
            Err(error @ JobError::Busy { .. }) => {
                store.defer(job.id, busy_retry)?;
                shared.log.warn(&format!(
                    "job #{} waits: {error}; trying again in {:.0} s",
                    job.id,
                    busy_retry.as_secs_f64()
                ));
            }
            Err(error) => {
                store.mark_failed(job.id, &error.to_string())?;
                shared.log.error(&format!(
                    "job #{} failed after {seconds:.1} s: {} ({error})",
                    job.id,
                    job.input.display()
                ));
                summary.failed += 1;
            }
        }
    }
    Ok(summary)
}

fn describe(metrics: &KeyMetrics) -> String {
    let mut parts = Vec::new();
    if let (Some(registered), Some(photos)) = (metrics.registered_images, metrics.photos) {
        parts.push(format!("{registered}/{photos} photos registered"));
    }
    if let Some(psnr) = metrics.psnr {
        parts.push(format!("PSNR {psnr:.2} dB"));
    }
    if let Some(triangles) = metrics.triangles {
        parts.push(format!("{triangles} triangles"));
    }
    parts.extend(metrics.files.iter().map(|f| f.display().to_string()));
    if parts.is_empty() { "finished".into() } else { parts.join(", ") }
}

/// The pause between two scans of a folder with quiet period `quiet`: a quarter of it, so an
/// input is queued soon after it became quiet, within [`MIN_SCAN_INTERVAL`] and
/// [`MAX_SCAN_INTERVAL`].
pub fn scan_interval(quiet: Duration) -> Duration {
    (quiet / 4).clamp(MIN_SCAN_INTERVAL, MAX_SCAN_INTERVAL)
}

/// The CLI's scanner thread: scans until stopped, until the runner ended, or (with
/// `exit_when_idle`) until nothing is waiting, queued or running; logs every decision.
fn scan_until_stopped(dir: &Path, out: &Path, options: &WatchOptions, shared: &Shared) -> Result<(), QueueError> {
    let mut scanner = Scanner::new(dir, options.settings.clone(), options.quiet, &out.join(JOBS_DIR))?;
    let store = QueueStore::open(&out.join(QUEUE_FILE))?;
    let interval = scan_interval(options.quiet);
    while !shared.stop.is_cancelled() && !shared.runner_done.load(Ordering::SeqCst) {
        scanner.wait_for_changes(interval);
        let report = scanner.scan(&store, Instant::now())?;
        for decision in &report.decisions {
            log_decision(shared.log, decision);
        }
        if options.exit_when_idle && report.waiting.is_empty() && store.unfinished()? == 0 {
            shared.log.info("idle: nothing queued, running or waiting to settle");
            break;
        }
    }
    Ok(())
}

fn log_decision(log: &WatchLog, decision: &Decision) {
    match decision {
        Decision::Queued { input, enqueued } => {
            log.info(&format!("queued ({}): {}", enqueued_id(enqueued), input.display()));
        }
        Decision::Skipped { input, known } => log.info(&format!(
            "skipping the same content as job #{} ({}): {}",
            known.id,
            known.state.name(),
            input.display()
        )),
        Decision::Refused { recorded, error, .. } => {
            log.error(&format!("not queued ({}): {error}", enqueued_id(recorded)));
        }
        Decision::Unreadable { error, .. } => {
            log.warn(&format!("cannot read an input yet, trying again at a later scan: {error}"));
        }
    }
}

/// What a scan did with one quiet input.
#[derive(Debug)]
pub enum Decision {
    /// Queued as a job (or found already queued under its content hash by another scanner).
    Queued { input: PathBuf, enqueued: Enqueued },
    /// The same content as a job already in the queue: nothing new to do.
    Skipped { input: PathBuf, known: Box<QueuedJob> },
    /// Not usable as it is (a broken `kiln.toml`): recorded as a failed job, so the failure is
    /// visible and the same content is not tried again.
    Refused { input: PathBuf, recorded: Enqueued, error: QueueError },
    /// Not readable yet (moved or written to while hashed): tried again at a later scan.
    Unreadable { input: PathBuf, error: QueueError },
}

/// What one [`Scanner::scan`] saw and did.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// The inputs that became quiet at this scan, and what was done with each.
    pub decisions: Vec<Decision>,
    /// The inputs not dealt with yet: still changing (not quiet for the quiet period), or
    /// unreadable at this scan.
    pub waiting: Vec<PathBuf>,
}

/// An input seen in the watched folder.
struct Candidate {
    fingerprint: u64,
    /// When its fingerprint last changed or a notify event last touched it.
    changed_at: Instant,
    /// Whether it was dealt with (queued, skipped or refused) at its current fingerprint.
    handled: bool,
}

/// Watches one folder: file notifications plus a walk of each input's files at every
/// [`Scanner::scan`], which queues the inputs that stayed quiet for the quiet period into the
/// store it is given (content already in that store is skipped), with the folder's settings
/// under each input's `kiln.toml`. `kiln watch` runs one in a thread of its own; the desktop app
/// runs one per watched folder.
pub struct Scanner {
    dir: PathBuf,
    settings: SettingsOverrides,
    quiet: Duration,
    jobs_root: PathBuf,
    candidates: HashMap<PathBuf, Candidate>,
    events: Receiver<notify::Result<notify::Event>>,
    /// Kept alive: dropping it ends the notifications.
    _watcher: RecommendedWatcher,
}

impl Scanner {
    /// Starts watching `dir` (an existing folder). Jobs get `settings` (each input's `kiln.toml`
    /// over them) and their folders in `jobs_root`; an input holding `jobs_root` is never taken.
    pub fn new(dir: &Path, settings: SettingsOverrides, quiet: Duration, jobs_root: &Path) -> Result<Self, QueueError> {
        let dir = std::fs::canonicalize(dir).map_err(QueueError::io(dir))?;
        let jobs_root = std::fs::canonicalize(jobs_root).unwrap_or_else(|_| jobs_root.to_path_buf());
        let watch_error = |e: notify::Error| QueueError::Watch { path: dir.clone(), message: e.to_string() };
        let (sender, events) = channel();
        let config = Config::default().with_event_kinds(WATCHED_EVENTS);
        let mut watcher = RecommendedWatcher::new(sender, config).map_err(watch_error)?;
        watcher.watch(&dir, RecursiveMode::Recursive).map_err(watch_error)?;
        Ok(Scanner { dir, settings, quiet, jobs_root, candidates: HashMap::new(), events, _watcher: watcher })
    }

    /// The watched folder, canonical.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits up to `timeout` for notifications and marks the inputs they touch as changed now
    /// (`Duration::ZERO`: only those already reported).
    pub fn wait_for_changes(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(wait) {
                Ok(Ok(event)) => {
                    for path in &event.paths {
                        self.touch(path);
                    }
                }
                Ok(Err(error)) => tracing::warn!("file notification error (the periodic scan covers it): {error}"),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn touch(&mut self, path: &Path) {
        let Some(top) = path.strip_prefix(&self.dir).ok().and_then(|r| r.components().next()) else { return };
        if let Some(candidate) = self.candidates.get_mut(&self.dir.join(top)) {
            candidate.changed_at = Instant::now();
        }
    }

    /// Updates every input's fingerprint as of `now` and deals with those quiet since the quiet
    /// period, queuing them into `store`.
    pub fn scan(&mut self, store: &QueueStore, now: Instant) -> Result<ScanReport, QueueError> {
        let present = self.list_inputs()?;
        self.candidates.retain(|path, _| present.contains(path));
        let mut report = ScanReport::default();
        for path in present {
            let fingerprint = fingerprint(&path);
            let candidate = self.candidates.entry(path.clone()).or_insert(Candidate {
                fingerprint,
                changed_at: now,
                handled: false,
            });
            if candidate.fingerprint != fingerprint {
                *candidate = Candidate { fingerprint, changed_at: now, handled: false };
            }
            if candidate.handled {
                continue;
            }
            if now.saturating_duration_since(candidate.changed_at) < self.quiet {
                report.waiting.push(path);
                continue;
            }
            let decision = self.handle(&path, store)?;
            let handled = !matches!(decision, Some(Decision::Unreadable { .. }));
            if let Some(candidate) = self.candidates.get_mut(&path) {
                candidate.handled = handled;
            }
            if !handled {
                report.waiting.push(path);
            }
            report.decisions.extend(decision);
        }
        Ok(report)
    }

    /// The visible subfolders and `.zip` files of the watched folder (never one holding the job
    /// folders).
    fn list_inputs(&self) -> Result<Vec<PathBuf>, QueueError> {
        let mut inputs = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(QueueError::io(&self.dir))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let kind = entry.file_type().ok();
            let is_input = kind.is_some_and(|t| t.is_dir()) || (kind.is_some_and(|t| t.is_file()) && is_zip(&path));
            if is_input && !hidden && !self.jobs_root.starts_with(&path) {
                inputs.push(path);
            }
        }
        Ok(inputs)
    }

    /// Queues a quiet input unless its content is in the store; `None` for an empty folder
    /// (its first file changes the fingerprint).
    fn handle(&self, input: &Path, store: &QueueStore) -> Result<Option<Decision>, QueueError> {
        if input.is_dir() && !has_visible_file(input) {
            return Ok(None);
        }
        let input_buf = input.to_path_buf();
        let hash = match input_content_hash(input) {
            Ok(hash) => hash,
            Err(error) => return Ok(Some(Decision::Unreadable { input: input_buf, error })),
        };
        if let Some(known) = store.find_by_hash(&hash)? {
            return Ok(Some(Decision::Skipped { input: input_buf, known: Box::new(known) }));
        }
        let job_dir =
            self.jobs_root.join(format!("{}-{}", input_stem(input), &hash[..JOB_DIR_HASH_DIGITS.min(hash.len())]));
        let sidecar = if input.is_dir() { read_sidecar(input) } else { Ok(None) };
        match sidecar {
            Ok(sidecar) => {
                let settings = layered_settings(&self.settings, sidecar.as_ref(), None);
                let enqueued = store.enqueue(input, &hash, &job_dir, &settings)?;
                Ok(Some(Decision::Queued { input: input_buf, enqueued }))
            }
            Err(error) => {
                let settings = self.settings.settings();
                let recorded = store.record_failure(input, &hash, &job_dir, &settings, &error.to_string())?;
                Ok(Some(Decision::Refused { input: input_buf, recorded, error }))
            }
        }
    }
}

fn enqueued_id(enqueued: &Enqueued) -> String {
    match enqueued {
        Enqueued::New(id) => format!("job #{id}"),
        Enqueued::AlreadyKnown(job) => format!("already job #{}", job.id),
    }
}

fn has_visible_file(folder: &Path) -> bool {
    super::visible_files(folder).is_ok_and(|files| !files.is_empty())
}

/// A digest of every file and folder under `input` (relative name, size, modification time):
/// it changes whenever anything in the input is added, removed, resized or written. An input
/// that cannot be walked (vanishing mid-copy) gets a digest of its own, so it counts as changed.
fn fingerprint(input: &Path) -> u64 {
    let mut entries = Vec::new();
    let mut pending = vec![input.to_path_buf()];
    let mut hasher = DefaultHasher::new();
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            Instant::now().hash(&mut hasher);
            continue;
        };
        let modified = metadata.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
        entries.push((path.clone(), metadata.len(), modified));
        if metadata.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(read) => pending.extend(read.flatten().map(|e| e.path())),
                Err(_) => Instant::now().hash(&mut hasher),
            }
        }
    }
    entries.sort();
    entries.hash(&mut hasher);
    hasher.finish()
}

/// `<out>/watch.log`: one timestamped line per decision, also sent to `tracing`.
struct WatchLog {
    file: Mutex<File>,
}

impl WatchLog {
    fn open(path: &Path) -> Result<Self, QueueError> {
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(QueueError::io(path))?;
        Ok(WatchLog { file: Mutex::new(file) })
    }

    fn info(&self, message: &str) {
        tracing::info!("{message}");
        self.write("INFO", message);
    }

    fn warn(&self, message: &str) {
        tracing::warn!("{message}");
        self.write("WARN", message);
    }

    fn error(&self, message: &str) {
        tracing::error!("{message}");
        self.write("ERROR", message);
    }

    fn write(&self, level: &str, message: &str) {
        let line = format!("{} {level} {message}\n", utc_timestamp(SystemTime::now()));
        let Ok(mut file) = self.file.lock() else { return };
        if let Err(error) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
            tracing::warn!("cannot write to {LOG_FILE}: {error}");
        }
    }
}

/// `YYYY-MM-DDThh:mm:ssZ` (UTC) for `time`.
fn utc_timestamp(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", of_day / 3600, of_day % 3600 / 60, of_day % 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `<out>/watch.lock` holding this process's id while it watches; a lock whose process is gone
/// (killed) is taken over.
struct WatchLock {
    path: PathBuf,
}

impl WatchLock {
    fn acquire(out: &Path) -> Result<Self, QueueError> {
        let path = out.join(LOCK_FILE);
        let holder = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse::<u32>().ok());
        if let Some(pid) = holder.filter(|&pid| pid != std::process::id() && process_alive(pid)) {
            return Err(QueueError::BadInput {
                path: out.to_path_buf(),
                problem: format!("another watcher (process {pid}) uses this output folder; stop it first"),
            });
        }
        std::fs::write(&path, std::process::id().to_string()).map_err(QueueError::io(&path))?;
        Ok(WatchLock { path })
    }
}

impl Drop for WatchLock {
    fn drop(&mut self) {
        // Best effort: a stale lock is taken over at the next start anyway.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether process `pid` runs; where that cannot be told (no `/proc`), it is taken to be gone.
fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JobState;
    use kiln_job::JobSettings;
    use kiln_protocol::Preset;

    #[test]
    fn timestamps_match_known_dates() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2000-02-29 12:34:56 UTC (a leap day in a century leap year).
        assert_eq!(utc_timestamp(UNIX_EPOCH + Duration::from_secs(951_827_696)), "2000-02-29T12:34:56Z");
        // 2026-11-23 00:00:00 UTC.
        assert_eq!(utc_timestamp(UNIX_EPOCH + Duration::from_secs(1_795_392_000)), "2026-11-23T00:00:00Z");
    }

    #[test]
    fn the_fingerprint_changes_with_any_file_change() {
        let dir = std::env::temp_dir().join(format!("kiln-fingerprint-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.jpg"), b"a").unwrap();
        let first = fingerprint(&dir);
        assert_eq!(first, fingerprint(&dir), "stable while nothing changes");
        std::fs::write(dir.join("sub/b.jpg"), b"b").unwrap();
        let second = fingerprint(&dir);
        assert_ne!(first, second, "a new file in a subfolder");
        std::fs::write(dir.join("a.jpg"), b"longer").unwrap();
        assert_ne!(second, fingerprint(&dir), "a file growing");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn changes_are_notified_and_reads_are_not() {
        let root = std::env::temp_dir().join(format!("kiln-watch-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (dir, out) = (root.join("in"), root.join("out"));
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(dir.join("a/p.jpg"), "1").unwrap();
        let scanner = Scanner::new(&dir, SettingsOverrides::default(), Duration::from_secs(1), &out).unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(std::fs::read(dir.join("a/p.jpg")).unwrap(), b"1");
            let read = scanner.events.recv_timeout(Duration::from_millis(500));
            assert!(read.is_err(), "a read is not a change: {read:?}");
        }
        std::fs::write(dir.join("a/q.jpg"), "2").unwrap();
        let event = scanner.events.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert!(event.paths.iter().any(|p| p.starts_with(dir.join("a"))), "{event:?}");
        drop(scanner);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_scan_queues_quiet_inputs_into_the_store_it_is_given_and_reports_the_rest() {
        let root = std::env::temp_dir().join(format!("kiln-watch-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (dir, jobs) = (root.join("in"), root.join("jobs"));
        for (folder, content) in [("a", "1"), ("copy-of-a", "1"), ("broken", "2"), ("small", "3")] {
            std::fs::create_dir_all(dir.join(folder)).unwrap();
            std::fs::write(dir.join(folder).join("p.jpg"), content).unwrap();
        }
        std::fs::write(dir.join("broken/kiln.toml"), "quality = 3").unwrap();
        std::fs::write(dir.join("small/kiln.toml"), "steps = 300").unwrap();
        let store = QueueStore::open(&root.join("queue.sqlite")).unwrap();
        let quiet = Duration::from_secs(60);
        let settings = SettingsOverrides { preset: Some(Preset::Preview), ..SettingsOverrides::default() };
        let mut scanner = Scanner::new(&dir, settings, quiet, &jobs).unwrap();
        let start = Instant::now();

        let first = scanner.scan(&store, start).unwrap();
        assert!(first.decisions.is_empty(), "nothing is quiet yet: {first:?}");
        assert_eq!(first.waiting.len(), 4);
        assert!(store.jobs().unwrap().is_empty());

        let quiet_now = scanner.scan(&store, start + quiet).unwrap();
        assert!(quiet_now.waiting.is_empty(), "{quiet_now:?}");
        let count = |f: fn(&Decision) -> bool| quiet_now.decisions.iter().filter(|d| f(d)).count();
        assert_eq!(count(|d| matches!(d, Decision::Queued { enqueued: Enqueued::New(_), .. })), 2, "{quiet_now:?}");
        assert_eq!(count(|d| matches!(d, Decision::Skipped { .. })), 1, "a or its copy: {quiet_now:?}");
        let refused = quiet_now.decisions.iter().find_map(|d| match d {
            Decision::Refused { error, .. } => Some(error.to_string()),
            _ => None,
        });
        assert!(refused.is_some_and(|e| e.contains("unknown field `quality`")), "{quiet_now:?}");
        let in_store = store.jobs().unwrap();
        assert_eq!(in_store.len(), 3);
        assert!(in_store.iter().all(|j| j.job_dir.starts_with(&jobs) && j.settings.preset == Preset::Preview));
        let small = in_store.iter().find(|j| j.input.ends_with("small")).unwrap();
        assert_eq!(small.settings.train_steps, Some(300), "the sidecar is layered over the folder's settings");
        assert_eq!(in_store.iter().filter(|j| j.state == JobState::Failed).count(), 1, "the broken sidecar");

        // A later scan redoes nothing; a new scanner (a restart) skips what the store has.
        assert!(scanner.scan(&store, start + quiet * 2).unwrap().decisions.is_empty());
        let mut restarted = Scanner::new(&dir, SettingsOverrides::default(), quiet, &jobs).unwrap();
        let later = Instant::now();
        restarted.scan(&store, later).unwrap();
        let again = restarted.scan(&store, later + quiet).unwrap();
        assert_eq!(again.decisions.len(), 4);
        assert!(again.decisions.iter().all(|d| matches!(d, Decision::Skipped { .. })), "{again:?}");
        assert_eq!(store.jobs().unwrap().len(), 3);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A stand-in job that records its inputs and fails for folders named `bad*`.
    fn fake_runner(
        runs: &Mutex<Vec<PathBuf>>,
    ) -> impl FnMut(&Path, &Path, &JobSettings, &CancelFlag) -> Result<KeyMetrics, JobError> + '_ {
        move |input, _, _, _| {
            runs.lock().unwrap().push(input.to_path_buf());
            if input.file_name().is_some_and(|n| n.to_string_lossy().starts_with("bad")) {
                return Err(JobError::BadInput { input: input.into(), problem: "no photos in it".into() });
            }
            Ok(KeyMetrics::default())
        }
    }

    #[test]
    fn quiet_inputs_run_once_duplicates_are_skipped_and_failures_logged() {
        let root = std::env::temp_dir().join(format!("kiln-watch-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (dir, out) = (root.join("in"), root.join("out"));
        for (folder, content) in [("a", "1"), ("b", "2"), ("copy-of-a", "1"), ("bad", "3")] {
            std::fs::create_dir_all(dir.join(folder)).unwrap();
            std::fs::write(dir.join(folder).join("p.jpg"), content).unwrap();
        }
        std::fs::create_dir_all(dir.join("empty")).unwrap();
        std::fs::create_dir_all(dir.join("sidecar")).unwrap();
        std::fs::write(dir.join("sidecar/p.jpg"), "4").unwrap();
        std::fs::write(dir.join("sidecar/kiln.toml"), "quality = 3").unwrap();
        let options = WatchOptions {
            dir: dir.clone(),
            out: out.clone(),
            quiet: Duration::from_millis(300),
            settings: SettingsOverrides { preset: Some(Preset::Preview), ..SettingsOverrides::default() },
            exit_when_idle: true,
            busy_retry: DEFAULT_BUSY_RETRY,
        };
        let runs = Mutex::new(Vec::new());
        let summary = watch(&options, &mut fake_runner(&runs), &CancelFlag::default()).unwrap();
        assert_eq!((summary.done, summary.failed), (2, 1), "a and b (or its copy) done, bad failed");
        let mut ran: Vec<String> =
            runs.lock().unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        ran.sort();
        assert!(ran == ["a", "b", "bad"] || ran == ["b", "bad", "copy-of-a"], "each content runs once: {ran:?}");

        let store = QueueStore::open(&out.join(QUEUE_FILE)).unwrap();
        let jobs = store.jobs().unwrap();
        assert_eq!(jobs.len(), 4, "a, b, bad and the broken sidecar");
        assert!(jobs.iter().all(|j| j.attempts <= 1));
        let log = std::fs::read_to_string(out.join(LOG_FILE)).unwrap();
        assert!(log.contains("ERROR") && log.contains("no photos in it"), "{log}");
        assert!(log.contains("unknown field `quality`") && log.contains("kiln.toml"), "{log}");
        assert!(log.contains("skipping") && log.contains("same content as job"), "{log}");
        assert!(!out.join(LOCK_FILE).exists(), "the lock is released");

        // A second start redoes nothing.
        let summary = watch(&options, &mut fake_runner(&runs), &CancelFlag::default()).unwrap();
        assert_eq!(summary, WatchSummary::default());
        assert_eq!(runs.lock().unwrap().len(), 3);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_job_whose_folder_another_process_holds_is_retried_later_not_failed() {
        let root = std::env::temp_dir().join(format!("kiln-watch-busy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (dir, out) = (root.join("in"), root.join("out"));
        std::fs::create_dir_all(dir.join("held")).unwrap();
        std::fs::write(dir.join("held/p.jpg"), "1").unwrap();
        let options = WatchOptions {
            dir,
            out: out.clone(),
            quiet: Duration::from_millis(200),
            settings: SettingsOverrides { preset: Some(Preset::Preview), ..SettingsOverrides::default() },
            exit_when_idle: true,
            busy_retry: Duration::from_millis(700),
        };
        let starts = Mutex::new(Vec::new());
        let mut runner = |_: &Path, job_dir: &Path, _: &JobSettings, _: &CancelFlag| {
            let mut starts = starts.lock().unwrap();
            starts.push(Instant::now());
            if starts.len() == 1 {
                return Err(JobError::Busy { job_dir: job_dir.to_path_buf(), holder: Some(4242) });
            }
            Ok(KeyMetrics::default())
        };
        let summary = watch(&options, &mut runner, &CancelFlag::default()).unwrap();
        assert_eq!((summary.done, summary.failed), (1, 0));
        let starts = starts.lock().unwrap();
        assert_eq!(starts.len(), 2);
        assert!(starts[1] - starts[0] >= Duration::from_millis(700), "retried after the delay, not at once");
        let log = std::fs::read_to_string(out.join(LOG_FILE)).unwrap();
        assert!(log.contains("WARN") && log.contains("pid 4242") && log.contains("trying again"), "{log}");
        let jobs = QueueStore::open(&out.join(QUEUE_FILE)).unwrap().jobs().unwrap();
        assert_eq!((jobs[0].state, jobs[0].attempts), (JobState::Done, 2));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
