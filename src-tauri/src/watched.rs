//! Watched folders: each subfolder or ZIP copied into one becomes a job once it has been quiet for
//! the folder's quiet period, exactly as `kiln watch` does it (`kiln_queue::watch::Scanner`:
//! file notifications, a walk of each input, content-hash dedupe, the input's `kiln.toml` over
//! the folder's settings), into the app's own queue, where the runner takes it like any job.
//!
//! The folders (path, settings, paused) are kept in `watched.json` in the data folder, written
//! atomically. One thread scans every folder that is not paused, with its own connection to the
//! queue database (hashing a large input must not hold the commands' connection). Watching
//! resumes where it stopped: inputs whose content is in the queue are not queued again, inputs
//! copied while the app was closed (or the folder paused) are picked up once quiet. What each
//! folder picked up comes from the queue (jobs whose input lies in it); what waits, from the
//! scanner. `watched-changed` carries the list whenever it changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_job::hash::hash_bytes;
use kiln_protocol::ErrorClass;
use kiln_protocol::SettingsOverrides;
use kiln_protocol::app::{AppError, AppSettings, JobState, PickedUp, Rejected, WatchSettings, WatchedFolder};
use kiln_queue::store::{Enqueued, JobState as StoreState, QueueStore, QueuedJob};
use kiln_queue::watch::{Decision, Scanner, scan_interval};
use tauri::{Manager, Runtime};

use crate::error::{CommandResult, app_error, bad_input, lock};
use crate::events::Emitter;
use crate::state::Shared;

/// The watched folders' file in the data folder.
const WATCHED_FILE: &str = "watched.json";

/// Longest quiet period accepted: a day. Longer is a typing mistake, and nothing would be picked
/// up for so long that the folder would look broken.
const MAX_QUIET_S: f64 = 86_400.0;

/// Hex digits of a folder's id (a hash of its path): unique among one user's folders.
const ID_DIGITS: usize = 12;

/// How long the thread waits when the queue database cannot be used before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(5);

/// One watched folder as `watched.json` keeps it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Entry {
    id: String,
    folder: PathBuf,
    settings: WatchSettings,
    paused: bool,
}

/// What the scanner thread last saw of a folder.
#[derive(Clone, Debug, Default)]
struct Seen {
    waiting: Vec<PathBuf>,
    problem: Option<AppError>,
}

/// The watched folders, shared by the commands and the scanner thread.
pub struct Watched {
    app: Arc<Shared>,
    file: PathBuf,
    entries: Mutex<Vec<Entry>>,
    seen: Mutex<HashMap<String, Seen>>,
    emitter: Emitter,
    /// The list last sent as `watched-changed`: sent again only when it differs.
    sent: Mutex<Vec<WatchedFolder>>,
}

/// The state Tauri manages for the watched-folder commands.
pub struct WatchedState(Arc<Watched>);

/// Reads `watched.json`, starts the scanner thread and hands the folders to the commands.
pub fn start<R: Runtime>(app: &tauri::AppHandle<R>, shared: Arc<Shared>) -> anyhow::Result<()> {
    let file = shared.paths.data_dir.join(WATCHED_FILE);
    let entries = read_entries(&file)?;
    let watched = Arc::new(Watched {
        app: shared,
        file,
        entries: Mutex::new(entries),
        seen: Mutex::new(HashMap::new()),
        emitter: Emitter::new(app.clone()),
        sent: Mutex::new(Vec::new()),
    });
    let scanning = Arc::clone(&watched);
    std::thread::Builder::new().name("kiln-watched".into()).spawn(move || scan_forever(&scanning))?;
    app.manage(WatchedState(watched));
    Ok(())
}

fn read_entries(file: &Path) -> anyhow::Result<Vec<Entry>> {
    match std::fs::read(file) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error.into()),
    }
}

/// Writes `watched.json` atomically (a temporary file renamed over it).
fn write_entries(file: &Path, entries: &[Entry]) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(entries).map_err(std::io::Error::other)?;
    let temporary = file.with_extension("json.part");
    std::fs::write(&temporary, json)?;
    std::fs::rename(&temporary, file)
}

/// Every watched folder with what it picked up, what waits and what failed.
#[tauri::command]
pub fn list_watched(state: tauri::State<'_, WatchedState>) -> CommandResult<Vec<WatchedFolder>> {
    let store = lock(&state.0.app.store)?;
    state.0.folders(&store)
}

/// Watches `folder` (an existing folder, not inside the jobs' output folder) with `settings`.
#[tauri::command]
pub fn add_watched(
    state: tauri::State<'_, WatchedState>,
    folder: PathBuf,
    settings: WatchSettings,
) -> CommandResult<WatchedFolder> {
    let watched = &state.0;
    if !(settings.quiet_s.is_finite() && (0.0..=MAX_QUIET_S).contains(&settings.quiet_s)) {
        return Err(bad_input(format!(
            "the quiet period must be 0 to {MAX_QUIET_S} seconds, not {}",
            settings.quiet_s
        )));
    }
    let folder = watchable(&folder, &lock(&watched.app.settings)?.output_folder)?;
    let id = hash_bytes(folder.to_string_lossy().as_bytes())[..ID_DIGITS].to_string();
    watched.edit(|entries| {
        if entries.iter().any(|e| e.folder == folder) {
            return Err(bad_input(format!("this folder is watched already: {}", folder.display())));
        }
        entries.push(Entry { id: id.clone(), folder: folder.clone(), settings, paused: false });
        Ok(())
    })?;
    watched.one(&id)
}

/// Stops watching a folder. The folder, its photos and the jobs made from them are left as they are.
#[tauri::command]
pub fn remove_watched(state: tauri::State<'_, WatchedState>, id: String) -> CommandResult<()> {
    state.0.edit(|entries| {
        let before = entries.len();
        entries.retain(|e| e.id != id);
        if entries.len() == before { Err(unknown(&id)) } else { Ok(()) }
    })?;
    lock(&state.0.seen)?.remove(&id);
    Ok(())
}

/// Pauses a folder (nothing new is picked up) or resumes it (what was copied meanwhile is).
#[tauri::command]
pub fn pause_watched(state: tauri::State<'_, WatchedState>, id: String, paused: bool) -> CommandResult<WatchedFolder> {
    state.0.edit(|entries| {
        let entry = entries.iter_mut().find(|e| e.id == id).ok_or_else(|| unknown(&id))?;
        entry.paused = paused;
        Ok(())
    })?;
    state.0.one(&id)
}

fn unknown(id: &str) -> AppError {
    bad_input(format!("no watched folder {id} (it was removed)"))
}

/// `folder` made canonical, if it can be watched: an existing folder, not inside `jobs_root`
/// (the watcher would take job folders for photos).
fn watchable(folder: &Path, jobs_root: &Path) -> CommandResult<PathBuf> {
    let canonical = std::fs::canonicalize(folder).map_err(|e| {
        bad_input(format!("cannot open the folder to watch ({e}); it must be an existing folder: {}", folder.display()))
    })?;
    if !canonical.is_dir() {
        return Err(bad_input(format!("only a folder can be watched, not a file: {}", canonical.display())));
    }
    let jobs_root = std::fs::canonicalize(jobs_root).unwrap_or_else(|_| jobs_root.to_path_buf());
    if canonical.starts_with(&jobs_root) {
        return Err(bad_input(format!(
            "the folder is inside the output folder {}, where job folders are made: {}",
            jobs_root.display(),
            canonical.display()
        )));
    }
    Ok(canonical)
}

impl Watched {
    /// Changes the folders with `change`, keeps the change in `watched.json`, tells the UI.
    fn edit(&self, change: impl FnOnce(&mut Vec<Entry>) -> CommandResult<()>) -> CommandResult<()> {
        {
            let mut entries = lock(&self.entries)?;
            let mut edited = entries.clone();
            change(&mut edited)?;
            write_entries(&self.file, &edited).map_err(|e| app_error(&e))?;
            *entries = edited;
        }
        let folders = self.folders(&*lock(&self.app.store)?)?;
        self.publish(folders)
    }

    fn one(&self, id: &str) -> CommandResult<WatchedFolder> {
        let folders = self.folders(&*lock(&self.app.store)?)?;
        folders.into_iter().find(|f| f.id == id).ok_or_else(|| unknown(id))
    }

    /// Every folder as the UI shows it, from the queue in `store` and what the scanner saw.
    fn folders(&self, store: &QueueStore) -> CommandResult<Vec<WatchedFolder>> {
        let jobs = store.jobs().map_err(|e| app_error(&e))?;
        let entries = lock(&self.entries)?.clone();
        let seen = lock(&self.seen)?;
        Ok(entries
            .into_iter()
            .map(|entry| {
                let last = seen.get(&entry.id).cloned();
                view(entry, &jobs, last.as_ref())
            })
            .collect())
    }

    /// Sends `watched-changed` when `folders` differ from what was sent last.
    fn publish(&self, folders: Vec<WatchedFolder>) -> CommandResult<()> {
        let mut sent = lock(&self.sent)?;
        if *sent != folders {
            self.emitter.watched_changed(&folders);
            *sent = folders;
        }
        Ok(())
    }
}

/// A folder with its jobs (those whose input lies directly in it) and what the scanner saw.
fn view(entry: Entry, jobs: &[QueuedJob], seen: Option<&Seen>) -> WatchedFolder {
    let mine: Vec<&QueuedJob> = jobs.iter().filter(|j| j.input.parent() == Some(entry.folder.as_path())).collect();
    let picked_up = mine
        .iter()
        .map(|job| PickedUp { input: job.input.clone(), job_id: job.id.to_string(), state: app_state(job.state) })
        .collect();
    let failed = mine
        .iter()
        .filter(|job| job.state == StoreState::Failed)
        .map(|job| Rejected { path: job.input.clone(), error: stored_error(job.error.as_deref()) })
        .collect();
    let seen = if entry.paused { Seen::default() } else { seen.cloned().unwrap_or_default() };
    WatchedFolder {
        id: entry.id,
        folder: entry.folder,
        settings: entry.settings,
        paused: entry.paused,
        picked_up,
        waiting: seen.waiting,
        failed,
        problem: seen.problem,
    }
}

fn app_state(state: StoreState) -> JobState {
    match state {
        StoreState::Queued => JobState::Queued,
        StoreState::Running => JobState::Running,
        StoreState::Done => JobState::Done,
        StoreState::Failed => JobState::Failed,
        StoreState::Canceled => JobState::Canceled,
    }
}

/// A failed job's error: the runner's (an [`AppError`] in JSON), or the scanner's plain text,
/// which is always about the input (a broken `kiln.toml`).
fn stored_error(text: Option<&str>) -> AppError {
    let text = text.unwrap_or("failed");
    serde_json::from_str(text).unwrap_or_else(|_| AppError::new(ErrorClass::BadInput, text))
}

/// What a folder's scanner was made with: a change (the folder's settings, the app's defaults
/// or output folder) makes a new one.
#[derive(Clone, Debug, PartialEq)]
struct ScanConfig {
    folder: PathBuf,
    overrides: SettingsOverrides,
    quiet: Duration,
    jobs_root: PathBuf,
}

struct Running {
    config: ScanConfig,
    scanner: Scanner,
}

fn scan_forever(watched: &Watched) {
    let store = open_store(watched);
    let mut scanners: HashMap<String, Running> = HashMap::new();
    loop {
        let pause = scan_all(watched, &mut scanners, &store).unwrap_or_else(|error| {
            tracing::error!(%error, "the watched folders could not be scanned");
            ERROR_PAUSE
        });
        std::thread::sleep(pause);
    }
}

/// The thread's own connection to the app's queue, tried until it opens.
fn open_store(watched: &Watched) -> QueueStore {
    loop {
        match QueueStore::open(&watched.app.paths.queue()) {
            Ok(store) => return store,
            Err(error) => tracing::error!(%error, "the watched folders cannot open the queue"),
        }
        std::thread::sleep(ERROR_PAUSE);
    }
}

/// One round: scanners made or dropped to match the folders, every scanner's scan, the UI told
/// of changes. Returns how long to wait before the next round.
fn scan_all(watched: &Watched, scanners: &mut HashMap<String, Running>, store: &QueueStore) -> CommandResult<Duration> {
    sync_scanners(watched, scanners)?;
    let mut queued = Vec::new();
    for (id, running) in scanners.iter_mut() {
        running.scanner.wait_for_changes(Duration::ZERO);
        let seen = match running.scanner.scan(store, Instant::now()) {
            Ok(report) => {
                queued.extend(report.decisions.iter().filter_map(log_decision));
                Seen { waiting: report.waiting, problem: None }
            }
            Err(error) => Seen { waiting: Vec::new(), problem: Some(app_error(&error)) },
        };
        lock(&watched.seen)?.insert(id.clone(), seen);
    }
    // A folder that could not be scanned gets a new scanner next round (it may be back by then).
    let failing = lock(&watched.seen)?;
    scanners.retain(|id, _| failing.get(id).is_none_or(|s| s.problem.is_none()));
    drop(failing);
    if !queued.is_empty() {
        watched.app.wake_runner();
        for id in queued {
            announce(watched, id);
        }
    }
    if !lock(&watched.entries)?.is_empty() {
        watched.publish(watched.folders(store)?)?;
    }
    // With no folder to scan, the longest pause: a folder added meanwhile waits no longer.
    let shortest = scanners.values().map(|r| scan_interval(r.config.quiet)).min();
    Ok(shortest.unwrap_or_else(|| scan_interval(Duration::MAX)))
}

/// Makes a scanner for each folder that is not paused and has none (or one made with other
/// settings), drops those of removed and paused folders.
fn sync_scanners(watched: &Watched, scanners: &mut HashMap<String, Running>) -> CommandResult<()> {
    let entries: Vec<Entry> = lock(&watched.entries)?.iter().filter(|e| !e.paused).cloned().collect();
    let app = lock(&watched.app.settings)?.clone();
    scanners.retain(|id, _| entries.iter().any(|e| e.id == *id));
    for entry in entries {
        let config = scan_config(&entry, &app);
        if scanners.get(&entry.id).is_some_and(|r| r.config == config) {
            continue;
        }
        scanners.remove(&entry.id);
        match Scanner::new(&config.folder, config.overrides.clone(), config.quiet, &config.jobs_root) {
            Ok(scanner) => {
                scanners.insert(entry.id.clone(), Running { config, scanner });
            }
            Err(error) => {
                let seen = Seen { waiting: Vec::new(), problem: Some(app_error(&error)) };
                lock(&watched.seen)?.insert(entry.id.clone(), seen);
            }
        }
    }
    Ok(())
}

/// The folder's settings over the app's device, preset and formats; its jobs in the app's output
/// folder.
fn scan_config(entry: &Entry, app: &AppSettings) -> ScanConfig {
    let defaults = SettingsOverrides {
        preset: Some(app.preset),
        formats: Some(app.formats.clone()),
        device: Some(app.device),
        ..SettingsOverrides::default()
    };
    let default_quiet = Duration::from_secs(WatchSettings::DEFAULT_QUIET_S as u64);
    ScanConfig {
        folder: entry.folder.clone(),
        overrides: entry.settings.overrides.over(&defaults),
        quiet: Duration::try_from_secs_f64(entry.settings.quiet_s).unwrap_or(default_quiet),
        jobs_root: app.output_folder.clone(),
    }
}

/// Logs a scan's decision; the id of a job it queued.
fn log_decision(decision: &Decision) -> Option<i64> {
    match decision {
        Decision::Queued { input, enqueued: Enqueued::New(id) } => {
            tracing::info!(job = id, input = %input.display(), "a watched folder queued a job");
            Some(*id)
        }
        Decision::Queued { .. } | Decision::Skipped { .. } => None,
        Decision::Refused { input, error, .. } => {
            tracing::warn!(%error, input = %input.display(), "a watched input cannot become a job");
            None
        }
        Decision::Unreadable { input, error } => {
            tracing::info!(%error, input = %input.display(), "a watched input is not readable yet");
            None
        }
    }
}

/// Tells the queue pane about a job a folder queued (the runner tells it when the job starts).
fn announce(watched: &Watched, id: i64) {
    match crate::jobs::row(&watched.app, id) {
        Ok(row) => watched.emitter.job_changed(&row),
        Err(error) => tracing::warn!(%error, job = id, "the new job's row could not be read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_shows_the_jobs_of_its_own_inputs_and_why_they_failed() {
        let settings = kiln_job::JobSettings::for_preset(kiln_protocol::Preset::Preview);
        let job = |id: i64, input: &str, state: StoreState, error: Option<&str>| QueuedJob {
            id,
            input: PathBuf::from(input),
            content_hash: id.to_string(),
            job_dir: PathBuf::from(format!("/jobs/{id}")),
            settings: settings.clone(),
            state,
            attempts: 1,
            error: error.map(str::to_string),
            metrics: None,
            created_at: 0.0,
            runs_on: kiln_queue::store::RunsOn::Local,
        };
        let runner_error = serde_json::to_string(&AppError::new(ErrorClass::Device, "out of GPU memory")).unwrap();
        let jobs = [
            job(1, "/in/mug", StoreState::Done, None),
            job(2, "/in/broken", StoreState::Failed, Some("unknown field `quality`: /in/broken/kiln.toml")),
            job(3, "/in/big.zip", StoreState::Failed, Some(&runner_error)),
            job(4, "/elsewhere/shoe", StoreState::Queued, None),
            job(5, "/in/mug/nested", StoreState::Queued, None),
        ];
        let entry = Entry { id: "w".into(), folder: "/in".into(), settings: WatchSettings::default(), paused: false };
        let seen = Seen { waiting: vec!["/in/copying".into()], problem: None };
        let folder = view(entry.clone(), &jobs, Some(&seen));
        let picked: Vec<&str> = folder.picked_up.iter().map(|p| p.job_id.as_str()).collect();
        assert_eq!(picked, ["1", "2", "3"]);
        assert_eq!(folder.picked_up[0].state, JobState::Done);
        assert_eq!(folder.waiting, [PathBuf::from("/in/copying")]);
        let failed: Vec<(ErrorClass, &str)> =
            folder.failed.iter().map(|r| (r.error.class, r.error.message.as_str())).collect();
        assert_eq!(
            failed,
            [
                (ErrorClass::BadInput, "unknown field `quality`: /in/broken/kiln.toml"),
                (ErrorClass::Device, "out of GPU memory")
            ]
        );
        let paused = view(Entry { paused: true, ..entry }, &jobs, Some(&seen));
        assert!(paused.waiting.is_empty(), "a paused folder is not scanned, so nothing waits");
        assert_eq!(paused.picked_up.len(), 3, "what it picked up stays");
    }

    #[test]
    fn only_existing_folders_outside_the_output_folder_can_be_watched() {
        let root = std::env::temp_dir().join(format!("kiln-app-watchable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("out/jobs")).unwrap();
        std::fs::create_dir_all(root.join("drop")).unwrap();
        std::fs::write(root.join("file.txt"), "").unwrap();
        let out = root.join("out");
        assert_eq!(watchable(&root.join("drop/."), &out).unwrap(), std::fs::canonicalize(root.join("drop")).unwrap());
        assert!(watchable(&root, &out).is_ok(), "a folder holding the output folder: that subfolder is skipped");
        let refused = |path: PathBuf| watchable(&path, &out).unwrap_err().message;
        assert!(refused(root.join("out/jobs")).contains("inside the output folder"));
        assert!(refused(root.join("file.txt")).contains("only a folder"));
        assert!(refused(root.join("gone")).contains("must be an existing folder"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
