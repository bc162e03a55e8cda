//! The app's state: its folders, its settings (kept in `settings.json`), the queue store, the
//! drafts, and what the runner reports about the job it runs. One [`Shared`] behind an `Arc`,
//! held by Tauri (commands) and the runner thread alike.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use kiln_job::CancelFlag;
use kiln_protocol::app::{AppSettings, Draft, TrainPoint};
use kiln_protocol::check::CheckReport;
use kiln_protocol::{SettingsOverrides, Stage};
use kiln_queue::store::QueueStore;

use crate::error::{CommandResult, app_error, bad_input, lock};
use crate::settings::{AppPaths, read_settings, write_settings};

/// A draft and what the app knows of it.
#[derive(Clone, Debug)]
pub struct DraftEntry {
    pub draft: Draft,
    /// The folder the photos are read from: the folder itself, a ZIP's unpacked copy, or the
    /// linked loose photos.
    pub photos_dir: PathBuf,
    /// What a job reads: the folder, the ZIP, or the linked photos' folder.
    pub input: PathBuf,
    /// The folder's `kiln.toml`, read as `kiln batch` and `kiln watch` read it: the settings the
    /// app does not show (steps, image size, object size, …).
    pub sidecar: Option<SettingsOverrides>,
    pub check: Option<CheckReport>,
}

/// What the runner knows of a running or recently run job beyond the queue row.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub stage: Option<Stage>,
    pub stage_fraction: f64,
    pub job_fraction: f64,
    pub eta_s: Option<f64>,
    /// Seconds of earlier runs plus the current one's start, for the elapsed time.
    pub elapsed_before_s: f64,
    pub running_since: Option<std::time::Instant>,
    /// The training plot, thinned to at most [`MAX_TRAIN_POINTS`].
    pub history: Vec<TrainPoint>,
    /// The latest render training wrote.
    pub preview: Option<PathBuf>,
    /// The checkpoint's step training went on from, once this run said it resumed.
    pub resumed_from_step: Option<u32>,
    /// A cloud job's phase while it runs.
    pub cloud_phase: Option<kiln_protocol::app::CloudPhase>,
}

/// Points the training plot keeps: more than a plot's width in pixels, few enough to send whole.
pub const MAX_TRAIN_POINTS: usize = 1000;

/// Everything the commands and the runner share.
pub struct Shared {
    pub paths: AppPaths,
    pub store: Mutex<QueueStore>,
    pub settings: Mutex<AppSettings>,
    pub drafts: Mutex<HashMap<String, DraftEntry>>,
    pub live: Mutex<HashMap<i64, Live>>,
    /// The job the runner runs, and its cancel flag.
    pub running: Mutex<Option<(i64, CancelFlag)>>,
    /// Wakes the runner when work may be waiting.
    pub wake: (Mutex<bool>, Condvar),
    /// Jobs the app found `running` at start (it was quit or killed mid-job): shown as resumed.
    pub interrupted: Mutex<Vec<i64>>,
    pub preview: crate::gpu::PreviewCache,
}

impl Shared {
    /// Tells the runner to look at the queue.
    pub fn wake_runner(&self) {
        let (flag, signal) = &self.wake;
        if let Ok(mut pending) = flag.lock() {
            *pending = true;
            signal.notify_all();
        }
    }
}

/// The state Tauri manages.
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Opens the queue and settings under `paths`, creating them on first start; jobs a previous
    /// run left `running` go back to the queue (they resume from their job folders).
    pub fn open(paths: AppPaths, home: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&paths.data_dir)?;
        let store = QueueStore::open(&paths.queue())?;
        let interrupted: Vec<i64> = store
            .jobs()?
            .into_iter()
            .filter(|j| j.state == kiln_queue::store::JobState::Running)
            .map(|j| j.id)
            .collect();
        store.requeue_interrupted()?;
        let settings = read_settings(&paths, home)?;
        Ok(Self(Arc::new(Shared {
            paths,
            store: Mutex::new(store),
            settings: Mutex::new(settings),
            drafts: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            running: Mutex::new(None),
            wake: (Mutex::new(true), Condvar::new()),
            interrupted: Mutex::new(interrupted),
            preview: Mutex::new(None),
        })))
    }

    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.0)
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[tauri::command]
pub fn get_settings(state: tauri::State<'_, AppState>) -> CommandResult<AppSettings> {
    Ok(lock(&state.settings)?.clone())
}

#[tauri::command]
pub fn set_settings(state: tauri::State<'_, AppState>, settings: AppSettings) -> CommandResult<AppSettings> {
    if settings.formats.is_empty() {
        return Err(bad_input("choose at least one export format"));
    }
    write_settings(&state.paths, &settings).map_err(|e| app_error(&e))?;
    *lock(&state.settings)? = settings.clone();
    Ok(settings)
}
