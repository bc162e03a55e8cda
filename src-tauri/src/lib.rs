//! The Kiln desktop app's Rust side: Tauri commands over the engine's job layer, its queue and the
//! wgpu viewer. The web UI (`ui/`) calls the commands and listens to the events named in
//! [`events`]; their types are `kiln_protocol::app`'s, exported to TypeScript by ts-rs.
//!
//! - [`drafts`]: dropped or picked folders and ZIPs, their capture check, thumbnails, estimate;
//! - [`jobs`]: the queue (SQLite, the same store `kiln watch` keeps) and its commands;
//! - [`runner`]: the thread that runs queued jobs one at a time, off the UI thread, and turns
//!   the job layer's typed events into app events;
//! - [`preview`]: frames of a job rendered headless by `kiln-viewer` (the code of `kiln render`),
//!   sent to the webview as PNG;
//! - [`export`]: a finished job's model in more formats, into a folder, validated;
//! - [`watched`]: watched folders, whose new subfolders and ZIPs become jobs once quiet;
//! - [`cloud`]: the cloud account pane: sign-in (the CLI's login), credits, ledger, API keys;
//! - [`cloud_jobs`]: a queued job run in the cloud and its outputs brought back to its folder;
//! - [`state`]: what the commands and the runner share; [`settings`]: the app's settings;
//!   [`info`]: the app's version, GPU and sign-in as the UI's header shows them;
//! - [`gpu`]: the preview device and the uploaded scene.

pub mod cloud;
pub mod cloud_jobs;
pub mod drafts;
pub mod error;
pub mod events;
pub mod export;
pub mod gpu;
pub mod info;
pub mod jobs;
pub mod preview;
pub mod runner;
pub mod settings;
pub mod state;
pub mod watched;

use std::path::PathBuf;

use tauri::{Manager, Runtime};

pub use crate::error::{CommandResult, app_error};
pub use crate::settings::AppPaths;
pub use crate::state::AppState;

/// The environment variable that puts the app's data (queue, settings, drafts, default job
/// folders) in another folder: tests and side-by-side installs.
pub const DATA_DIR_VAR: &str = "KILN_APP_DATA";

/// Starts the app: the main window, the job runner, and the queue as the last run left it (a job
/// that was running is resumed from its checkpoint).
pub fn run() -> anyhow::Result<()> {
    init_logging();
    let data_dir = std::env::var_os(DATA_DIR_VAR).map(PathBuf::from);
    builder(tauri::Builder::default())
        .setup(move |app| Ok(start(app.handle(), data_dir.clone())?))
        .run(tauri::generate_context!())?;
    Ok(())
}

/// The app's commands on any Tauri runtime (the real one, or the mock runtime of the tests).
pub fn builder<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder.invoke_handler(tauri::generate_handler![
        info::app_info,
        state::get_settings,
        state::set_settings,
        drafts::add_sources,
        drafts::check_draft,
        drafts::photo_thumbnail,
        drafts::estimate,
        jobs::start_job,
        jobs::list_jobs,
        jobs::cancel_job,
        jobs::resume_job,
        jobs::retry_job,
        jobs::delete_job,
        jobs::reveal_job,
        jobs::job_report,
        jobs::train_history,
        jobs::latest_preview,
        preview::preview_frame,
        preview::photo_image,
        export::export_job,
        export::reveal_export,
        watched::list_watched,
        watched::add_watched,
        watched::remove_watched,
        watched::pause_watched,
        cloud::cloud_status,
        cloud::cloud_login,
        cloud::cloud_logout,
        cloud::cloud_ledger,
        cloud::cloud_packs,
        cloud::cloud_buy,
        cloud::cloud_keys,
        cloud::cloud_key_create,
        cloud::cloud_key_revoke,
    ])
}

/// What the app does once its window system is up: opens its state in `data_dir` (default: the
/// platform's app data folder), starts the job runner, and hands the state to the commands.
pub fn start<R: Runtime>(app: &tauri::AppHandle<R>, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let custom = data_dir.is_some();
    let data_dir = match data_dir {
        Some(dir) => dir,
        None => app.path().app_data_dir()?,
    };
    // With a data folder given (tests, side-by-side installs), jobs go inside it too.
    let home = if custom { data_dir.clone() } else { app.path().home_dir().unwrap_or_else(|_| data_dir.clone()) };
    let state = AppState::open(AppPaths::new(data_dir), &home)?;
    let cloud = cloud::start(app, state.shared());
    runner::spawn(state.shared(), events::Emitter::new(app.clone()), cloud)?;
    watched::start(app, state.shared())?;
    app.manage(state);
    Ok(())
}

/// Logs to stderr, `RUST_LOG` filtering (default: info for Kiln's crates).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kiln_app=info,kiln_job=info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
