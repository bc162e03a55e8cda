//! The desktop app's IPC types: what its Rust side (`src-tauri/`) and its web UI (`ui/`) exchange
//! through Tauri commands and events, beside the engine types they carry ([`Preset`], [`Format`],
//! [`Stage`], the check and job reports). With the `ts` feature each derives `ts_rs::TS`, and
//! `tests/ts_bindings.rs` keeps `ui/src/bindings/` equal to them, so the two sides cannot drift.

use std::fmt;
use std::path::PathBuf;

use crate::error::ErrorClass;
use crate::event::JobEvent;
use crate::preset::Preset;
use crate::settings::{Device, Format, SettingsOverrides, Stage};

/// What the app found at start.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct AppInfo {
    /// The app's version (the workspace's).
    pub version: String,
    /// The wgpu adapter's name; `None`: no GPU was found and jobs train on the CPU.
    pub adapter: Option<String>,
    /// The folder the app's job folders are made in.
    pub jobs_root: PathBuf,
    /// Whether the app runs without a cloud account (everything local).
    pub offline: bool,
}

/// What a dropped or picked item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A folder of photos.
    Folder,
    /// A ZIP of photos.
    Zip,
}

/// A job not started yet: an added folder or ZIP waiting for its check, settings and Start.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct Draft {
    /// The app's handle for the draft (commands take it as `draftId`).
    pub id: String,
    /// The folder or ZIP as added.
    pub source: PathBuf,
    /// What the UI calls it (the folder's or ZIP's name).
    pub name: String,
    pub kind: SourceKind,
    /// Photo files found in it.
    pub photos: u32,
}

/// A dropped item that is not usable (not a folder, ZIP or photo; an unsafe ZIP), and why.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct Rejected {
    pub path: PathBuf,
    pub error: AppError,
}

/// What `add_sources` made of the items given: drafts for the usable ones, the rest rejected.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct Added {
    pub drafts: Vec<Draft>,
    pub rejected: Vec<Rejected>,
}

/// Where a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Where {
    /// This machine.
    Local,
    /// The hosted service (needs an account and credits).
    Cloud,
    /// The app chooses from the job's size, this machine's device and the account.
    Auto,
}

/// How a draft is to run: what the user picked before Start.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct StartOptions {
    pub preset: Preset,
    pub formats: Vec<Format>,
    /// Where the job runs (`where` in JSON: a Rust keyword).
    #[serde(rename = "where")]
    pub where_: Where,
}

/// What a job is expected to cost before it starts.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct Estimate {
    /// Expected wall-clock seconds from start to the last export.
    pub seconds: f64,
    /// The cloud's credit quote; `None` for a job that runs locally.
    pub credits: Option<u64>,
}

/// Where a job in the queue stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its turn.
    Queued,
    Running,
    /// Finished; its report is there.
    Done,
    /// Ended by an error ([`JobRow::error`]); retry runs it again.
    Failed,
    /// Stopped by the user; resume goes on from its last finished stage or checkpoint.
    Canceled,
    /// Was running when the app stopped (quit, crash, killed); resume goes on from its checkpoint.
    Interrupted,
}

/// Where a job sent to the cloud stands on its way there and back; the stages between are the
/// remote engine's, shown as a local job's are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum CloudPhase {
    /// The photos going up to storage ([`JobRow::stage_fraction`] is the share sent).
    Uploading,
    /// In the service's queue, waiting for a GPU worker.
    Waiting,
    /// A worker runs it: the stage and fractions are the remote engine's.
    Running,
    /// Its outputs coming down into the job folder ([`JobRow::stage_fraction`] is the share).
    Downloading,
}

/// One job in the queue, as the queue pane shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct JobRow {
    /// The queue's handle for the job (commands take it as `jobId`).
    pub id: String,
    pub name: String,
    /// The photo folder or ZIP the job reads (never modified).
    pub source: PathBuf,
    /// The job folder (manifest, stages, report, exports).
    pub job_dir: PathBuf,
    /// Where it runs (`where` in JSON: a Rust keyword).
    #[serde(rename = "where")]
    pub where_: Where,
    pub preset: Preset,
    pub state: JobState,
    /// The stage running or last run; `None` before the first starts.
    pub stage: Option<Stage>,
    /// Fraction of the current stage done, 0..=1.
    pub stage_fraction: f64,
    /// Fraction of the whole job done, 0..=1 (stages weighted by their expected cost).
    pub job_fraction: f64,
    /// Seconds the job is expected to need from now, once there is a basis for a guess.
    pub eta_s: Option<f64>,
    /// Seconds the job has run, over all its runs.
    pub elapsed_s: f64,
    /// Why it failed, for [`JobState::Failed`].
    pub error: Option<AppError>,
    /// When it was queued, RFC 3339.
    pub created_at: String,
    /// The training checkpoint's step the job went on from after it was stopped (a cancel, a
    /// crash, the app killed); `None` when training ran in one go or has not started.
    pub resumed_from_step: Option<u32>,
    /// For a cloud job that is running: where it stands between this machine and the service.
    pub cloud_phase: Option<CloudPhase>,
}

/// The `job-event` event: one of the job layer's typed events of a running job.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct JobEventMessage {
    /// The job's [`JobRow::id`].
    pub job_id: String,
    pub event: JobEvent,
}

/// One point of the training plot.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct TrainPoint {
    /// The training step.
    pub step: u64,
    /// The training loss at that step, when recorded.
    pub loss: Option<f32>,
    /// The held-out PSNR (dB) at that step, when measured.
    pub psnr: Option<f32>,
}

/// What the preview draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum PreviewMode {
    /// The trained Gaussian splats.
    Splats,
    /// The exported mesh, textured.
    Mesh,
    /// The exported mesh's edges.
    Wireframe,
    /// The exported mesh shaded by a material capture (shape without texture).
    Matcap,
}

/// One preview frame to render: size, camera and what to draw.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct PreviewView {
    /// Frame size in pixels (the preview area's).
    pub width: u32,
    pub height: u32,
    /// Orbit around the model: azimuth and elevation in degrees.
    pub azimuth_deg: f32,
    pub elevation_deg: f32,
    /// Orbit distance over the distance that frames the model (1 = framed, below 1 = closer).
    pub distance_scale: f32,
    pub mode: PreviewMode,
    /// Whether the input cameras are drawn.
    pub show_cameras: bool,
    /// "Snap to photo N": render from input photo N's camera instead of the orbit (an index into
    /// the job's photos).
    pub photo: Option<u32>,
}

/// One file an export wrote.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct ExportedFile {
    pub path: PathBuf,
    pub format: Format,
    /// Size in bytes.
    pub bytes: u64,
    /// The third-party validator's result, for formats one checks (glTF-Validator, ARKit's
    /// checker) where it is installed.
    pub validator: Option<ValidatorLine>,
}

/// A validator's result on one file, in one line.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct ValidatorLine {
    /// Which validator ran (e.g. `gltf-validator`).
    pub name: String,
    pub passed: bool,
    /// The validator's own summary.
    pub summary: String,
}

/// What `export_job` wrote, with the budget the preset set.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct ExportResult {
    pub files: Vec<ExportedFile>,
    /// The preset's triangle budget; `None`: undecimated (the `raw` preset).
    pub max_triangles: Option<u32>,
    /// Side of the square base-colour texture, texels.
    pub texture_size: u32,
}

/// The app's settings (the settings dialog), kept between runs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct AppSettings {
    /// The device local jobs train on.
    pub device: Device,
    /// The preset new drafts start with.
    pub preset: Preset,
    /// The formats new drafts start with.
    pub formats: Vec<Format>,
    /// Where exports go unless the user picks another folder.
    pub output_folder: PathBuf,
    /// The hosted service's base URL.
    pub cloud_url: String,
    pub log_folder: PathBuf,
}

/// A watched folder's settings: what its jobs get and when an input counts as copied.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct WatchSettings {
    /// The settings of every job from this folder, as a `kiln.toml` holds them: each input's own
    /// `kiln.toml` overrides them, and they override the app's device, preset and formats.
    pub overrides: SettingsOverrides,
    /// Seconds an input (a subfolder or ZIP) must stay unchanged before it becomes a job, so one
    /// still being copied is not picked up half-written.
    #[serde(default = "WatchSettings::default_quiet_s")]
    pub quiet_s: f64,
}

impl WatchSettings {
    /// The quiet period when none is given: `kiln watch`'s default, long enough for a copy from
    /// a camera card or a network share to pause between files without being cut.
    pub const DEFAULT_QUIET_S: f64 = 10.0;

    fn default_quiet_s() -> f64 {
        Self::DEFAULT_QUIET_S
    }
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self { overrides: SettingsOverrides::default(), quiet_s: Self::DEFAULT_QUIET_S }
    }
}

/// An input of a watched folder that became a job.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct PickedUp {
    /// The subfolder or ZIP.
    pub input: PathBuf,
    /// Its job's [`JobRow::id`].
    pub job_id: String,
    pub state: JobState,
}

/// A folder the app watches: each subfolder or ZIP copied into it becomes a job once quiet.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct WatchedFolder {
    /// The app's handle for the folder (commands take it as `id`).
    pub id: String,
    pub folder: PathBuf,
    pub settings: WatchSettings,
    /// Paused: nothing new is picked up until resumed (inputs copied meanwhile are then).
    pub paused: bool,
    /// The inputs that became jobs, oldest first, failed ones included.
    pub picked_up: Vec<PickedUp>,
    /// The inputs seen but not quiet yet (still being copied) or not readable yet.
    pub waiting: Vec<PathBuf>,
    /// The inputs whose job failed or that could not become one (a broken `kiln.toml`), and why.
    pub failed: Vec<Rejected>,
    /// Why the folder is not being watched now (it was removed, it cannot be read); `None` while
    /// it is watched or paused.
    pub problem: Option<AppError>,
}

/// The cloud account pane's state: the server, whether the app is signed in to it (the login the
/// CLI's `kiln login` keeps too), and who that is.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct CloudStatus {
    /// The hosted service's base URL (the settings' `cloud_url`), as the login is stored under it.
    pub server: String,
    /// Who is signed in; `None`: signed out.
    pub account: Option<CloudAccount>,
    /// Where a login is kept, in words: the system keyring, or a file only the user can read.
    pub kept_in: String,
    /// Why the system keyring is not used (none answers), when the file is the fallback.
    pub keyring_problem: Option<String>,
}

/// The signed-in person, their organisation and its credits (`GET /v1/me`, `GET /v1/credits`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct CloudAccount {
    /// The user's email.
    pub email: Option<String>,
    /// `owner` or `member`.
    pub role: Option<String>,
    pub organisation: String,
    pub organisation_id: String,
    /// What the login may do (`jobs:read`, `jobs:write`, `keys:manage`, `webhooks:manage`).
    pub scopes: Vec<String>,
    /// `None` when the login may not read them (no `jobs:read`).
    pub balance: Option<CloudBalance>,
}

/// An organisation's credits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct CloudBalance {
    /// What new cloud jobs may spend.
    pub available: i64,
    /// Held by queued and running cloud jobs.
    pub reserved: i64,
    /// Owed after a refund; the next purchase settles it first.
    pub debt: i64,
}

/// One transaction of the organisation's credit ledger.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct CloudLedgerEntry {
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
    /// `purchase`, `subscription`, `studio`, `grant`, `revoke`, `reserve`, `capture`, `release`,
    /// `refund`.
    pub reason: String,
    /// The cloud job it reserved, spent or released credits for.
    pub job_id: Option<String>,
    /// Why, in words (`signup credits`, an administrator's reason).
    pub note: Option<String>,
    /// What it added to (negative: took from) each balance.
    pub available: i64,
    pub reserved: i64,
    pub debt: i64,
    /// The balances once it was posted.
    pub balance_after: CloudBalance,
}

/// One page of the ledger, newest first.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct CloudLedgerPage {
    pub entries: Vec<CloudLedgerEntry>,
    /// Pass as `after` for the next (older) page; `None` on the last.
    pub next: Option<String>,
}

/// A credit pack on sale (Stripe Checkout).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct CloudPack {
    /// What `cloud_buy` takes (`pack_100`).
    pub id: String,
    pub credits: i64,
    /// The price in minor units of `currency` (cents; whole units for zero-decimal currencies).
    pub amount: i64,
    /// ISO 4217, lower case (`eur`).
    pub currency: String,
}

/// A purchase started: Stripe Checkout opened in the browser at `url`. The credits arrive when
/// Stripe confirms the payment; `cloud-changed` says so.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct CloudCheckout {
    /// Stripe's Checkout Session id: the purchase's `stripe_ref` in the ledger once paid.
    pub session_id: String,
    pub url: String,
}

/// An API key as listings show it: never its secret.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct CloudKey {
    pub id: String,
    pub name: String,
    /// The key's first characters, to tell keys apart (`kiln_live_Xk2b`).
    pub prefix: String,
    pub scopes: Vec<String>,
    /// `live` or `test`.
    pub mode: String,
    /// RFC 3339, as every time below.
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// Neither revoked nor expired.
    pub active: bool,
}

/// A key just created, with its secret: shown once, never kept by the app.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct CloudCreatedKey {
    pub key: CloudKey,
    /// The whole key (`kiln_live_…`): the only time it is shown.
    pub secret: String,
}

impl fmt::Debug for CloudCreatedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudCreatedKey").field("key", &self.key).field("secret", &"<redacted>").finish()
    }
}

/// A failure the UI shows: every command's error, a rejected item's reason, a failed job's cause.
/// Its message is for people; its class says what the UI offers (fix the input, retry, …).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub struct AppError {
    pub class: ErrorClass,
    /// The problem first, the file last (the library messages' form).
    pub message: String,
}

impl AppError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self { class, message: message.into() }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AppError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_is_spelled_where_and_enums_snake_case() {
        let options = StartOptions { preset: Preset::Preview, formats: vec![Format::Glb], where_: Where::Auto };
        let json = serde_json::to_value(&options).unwrap();
        assert_eq!(json, serde_json::json!({"preset": "preview", "formats": ["glb"], "where": "auto"}));
        assert_eq!(serde_json::from_value::<StartOptions>(json).unwrap(), options);
        assert_eq!(serde_json::to_value(JobState::Interrupted).unwrap(), "interrupted");
        assert_eq!(serde_json::to_value(PreviewMode::Wireframe).unwrap(), "wireframe");
        assert_eq!(serde_json::to_value(SourceKind::Zip).unwrap(), "zip");
    }

    #[test]
    fn watch_settings_without_a_quiet_period_get_the_default() {
        let settings: WatchSettings = serde_json::from_value(serde_json::json!({"overrides": {"steps": 300}})).unwrap();
        assert_eq!(settings.quiet_s, WatchSettings::DEFAULT_QUIET_S);
        assert_eq!(settings.overrides.train_steps, Some(300));
    }

    #[test]
    fn a_created_key_never_shows_its_secret_in_debug() {
        let key = CloudKey {
            id: "k1".into(),
            name: "ci".into(),
            prefix: "kiln_live_Xk2b".into(),
            scopes: vec!["jobs:read".into()],
            mode: "live".into(),
            created_at: "2026-01-02T03:04:05Z".into(),
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
            active: true,
        };
        let created = CloudCreatedKey { key, secret: "kiln_live_Xk2bSECRET".into() };
        let shown = format!("{created:?}");
        assert!(shown.contains("kiln_live_Xk2b") && !shown.contains("SECRET"), "{shown}");
    }

    #[test]
    fn app_error_shows_its_message_and_keeps_its_class() {
        let error = AppError::new(ErrorClass::BadInput, "not a folder, ZIP or photo: notes.txt");
        assert_eq!(error.to_string(), "not a folder, ZIP or photo: notes.txt");
        let boxed: Box<dyn std::error::Error> = Box::new(error.clone());
        assert_eq!(boxed.to_string(), error.message);
        let json = serde_json::to_value(&error).unwrap();
        assert_eq!(json, serde_json::json!({"class": "bad_input", "message": "not a folder, ZIP or photo: notes.txt"}));
    }
}
