//! The app's folders ([`AppPaths`]) and settings: kept in `settings.json` in the data folder (written atomically), their
//! first-start defaults, and how a job's settings are made from them.

use std::path::{Path, PathBuf};

use kiln_job::JobSettings;
use kiln_protocol::app::{AppSettings, StartOptions};
use kiln_protocol::{DEFAULT_FORMATS, Device, Preset, SettingsOverrides};

/// The app's own files, under its data folder.
#[derive(Clone, Debug)]
pub struct AppPaths {
    pub data_dir: PathBuf,
}

impl AppPaths {
    pub fn new(data_dir: PathBuf) -> Self {
        Self { data_dir }
    }
    /// The queue database, the same schema `kiln watch` keeps.
    pub fn queue(&self) -> PathBuf {
        self.data_dir.join("queue.sqlite")
    }
    pub fn settings(&self) -> PathBuf {
        self.data_dir.join("settings.json")
    }
    /// Where dropped ZIPs are unpacked for their check and thumbnails.
    pub fn drafts(&self) -> PathBuf {
        self.data_dir.join("drafts")
    }
    pub fn logs(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
}

/// The default cloud: the hosted service's public endpoint.
const DEFAULT_CLOUD_URL: &str = "https://api.kiln.app";

/// The settings a first start uses: jobs in `home`'s `Kiln` folder, the `medium` preset, GLB
/// and USDZ.
fn default_settings(paths: &AppPaths, home: &Path) -> AppSettings {
    let output_folder = home.join("Kiln");
    AppSettings {
        device: Device::Auto,
        preset: Preset::Medium,
        formats: DEFAULT_FORMATS.to_vec(),
        output_folder,
        cloud_url: DEFAULT_CLOUD_URL.into(),
        log_folder: paths.logs(),
    }
}

pub fn read_settings(paths: &AppPaths, home: &Path) -> anyhow::Result<AppSettings> {
    match std::fs::read(paths.settings()) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes)?),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(default_settings(paths, home)),
        Err(error) => Err(error.into()),
    }
}

/// Writes `settings.json` atomically (a temporary file renamed over it).
pub fn write_settings(paths: &AppPaths, settings: &AppSettings) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(settings).map_err(std::io::Error::other)?;
    let temporary = paths.settings().with_extension("json.part");
    std::fs::write(&temporary, json)?;
    std::fs::rename(&temporary, paths.settings())
}

/// The app's version, the GPU it found (opening the device takes a moment: off the UI thread)
/// and where jobs go.
/// A job's settings: what the user picked for it (preset, formats) and the app's device, over
/// the folder's `kiln.toml` (which may set what the app does not show: steps, image size, the
/// object's size, …), over the preset's defaults.
pub fn job_settings(app: &AppSettings, options: &StartOptions, sidecar: Option<&SettingsOverrides>) -> JobSettings {
    let formats = if options.formats.is_empty() { app.formats.clone() } else { options.formats.clone() };
    let picked = SettingsOverrides {
        preset: Some(options.preset),
        formats: Some(formats),
        device: Some(app.device),
        ..SettingsOverrides::default()
    };
    match sidecar {
        Some(sidecar) => picked.over(sidecar).settings(),
        None => picked.settings(),
    }
}
