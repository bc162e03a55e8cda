//! Many jobs at once: `kiln batch` ([`batch`]: a CSV list, a folder of folders or a ZIP of
//! folders, each item its own job) and `kiln watch` ([`watch`]: new subfolders or ZIPs of a folder
//! become jobs once they are quiet), over a durable queue in SQLite ([`store`]). A `kiln.toml`
//! sidecar in an input folder overrides its settings ([`sidecar`]).
//!
//! Settings come as the protocol's [`SettingsOverrides`] from up to three places, layered by
//! [`layered_settings`] with the most specific winning: a batch CSV row's columns over the input
//! folder's `kiln.toml` over the settings the batch or watcher was started with (its
//! command-line flags); what none of them sets is the preset's default.
//!
//! Every job goes through [`kiln_job::run_job`]; the queue only decides what runs, where, and
//! remembers what happened. Built only with the engine's `queue` feature.

pub mod batch;
pub mod sidecar;
pub mod store;
pub mod watch;

use kiln_protocol::ErrorClass;
use std::path::{Path, PathBuf};

use kiln_job::hash::{hash_bytes, hash_file};
use kiln_job::report::JobReport;
use kiln_job::{CancelFlag, EventKind, JobError, JobEvent, JobSettings, run_job};
use kiln_protocol::SettingsOverrides;

/// Errors of the queue, batch and watcher. Each says what is wrong first and names the file or
/// folder involved last.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{source}: {path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("queue database: {source}: {path}")]
    Sql { path: PathBuf, source: rusqlite::Error },
    /// A batch manifest, a sidecar or an input that cannot be used; `problem` says why.
    #[error("{problem}: {path}")]
    BadInput { path: PathBuf, problem: String },
    /// The queue's own database holds what this version cannot read.
    #[error("{problem}: {path}")]
    Corrupt { path: PathBuf, problem: String },
    #[error("watching for changes failed: {message}: {path}")]
    Watch { path: PathBuf, message: String },
    #[error(transparent)]
    Job(#[from] JobError),
}

impl QueueError {
    pub fn class(&self) -> ErrorClass {
        match self {
            QueueError::BadInput { .. } => ErrorClass::BadInput,
            QueueError::Job(job) => job.class(),
            QueueError::Io { .. } | QueueError::Sql { .. } | QueueError::Corrupt { .. } | QueueError::Watch { .. } => {
                ErrorClass::Internal
            }
        }
    }

    /// Whether the error is about the input given rather than a failure.
    pub fn is_bad_input(&self) -> bool {
        self.class() == ErrorClass::BadInput
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
        move |source| QueueError::Io { path: path.to_path_buf(), source }
    }
}

/// One input's settings: `row` (a batch CSV row's columns) over `sidecar` (the input folder's
/// `kiln.toml`) over `command` (what the batch or watcher was started with); the preset's
/// defaults for what none sets. A row or sidecar is about one input and a command about all of
/// them, so the more specific wins.
pub fn layered_settings(
    command: &SettingsOverrides,
    sidecar: Option<&SettingsOverrides>,
    row: Option<&SettingsOverrides>,
) -> JobSettings {
    let mut layered = command.clone();
    for upper in [sidecar, row].into_iter().flatten() {
        layered = upper.over(&layered);
    }
    layered.settings()
}

/// The figures of a finished job that batch and watch summaries show.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyMetrics {
    pub photos: Option<usize>,
    pub registered_images: Option<usize>,
    pub psnr: Option<f32>,
    pub triangles: Option<usize>,
    /// The exported files.
    pub files: Vec<PathBuf>,
}

impl KeyMetrics {
    pub fn from_report(report: &JobReport) -> Self {
        let metrics = &report.metrics;
        KeyMetrics {
            photos: metrics.check.as_ref().map(|c| c.photos).or(metrics.poses.as_ref().map(|p| p.photos)),
            registered_images: metrics.poses.as_ref().map(|p| p.registered_images),
            psnr: metrics.train.as_ref().and_then(|t| t.psnr),
            triangles: metrics.mesh.as_ref().map(|m| m.triangles),
            files: metrics
                .export
                .as_ref()
                .map(|e| e.files.iter().map(|f| f.path.clone()).collect())
                .unwrap_or_default(),
        }
    }
}

/// Runs one job: `(input, job_dir, settings, cancel)`. [`run_real_job`] in production; tests of
/// the queue logic put a quick stand-in here.
pub type JobRunner<'a> = dyn FnMut(&Path, &Path, &JobSettings, &CancelFlag) -> Result<KeyMetrics, JobError> + 'a;

/// [`run_job`] with its progress events sent to `tracing` (stage starts and ends at `info`).
pub fn run_real_job(
    input: &Path,
    job_dir: &Path,
    settings: &JobSettings,
    cancel: &CancelFlag,
) -> Result<KeyMetrics, JobError> {
    let mut log_event = |event: &JobEvent| match event.kind {
        EventKind::Progress => tracing::debug!(stage = %event.stage, "{}", event.message),
        _ => tracing::info!(stage = %event.stage, kind = ?event.kind, "{}", event.message),
    };
    run_job(input, job_dir, settings, cancel, &mut log_event).map(|report| KeyMetrics::from_report(&report))
}

/// The content hash of an input: for a ZIP the SHA-256 of the file; for a folder the SHA-256 of
/// its sorted `(relative name, file SHA-256)` lines (hidden files and folders left out, as
/// copy tools' temporaries are hidden). Equal photos give equal hashes wherever they lie.
pub fn input_content_hash(input: &Path) -> Result<String, QueueError> {
    if input.is_file() {
        return Ok(hash_file(input)?);
    }
    let mut lines = Vec::new();
    for relative in visible_files(input)? {
        let hash = hash_file(&input.join(&relative))?;
        let name: Vec<String> = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        lines.push(format!("{}\t{hash}\n", name.join("/")));
    }
    lines.sort();
    Ok(hash_bytes(lines.concat().as_bytes()))
}

/// Every non-hidden file under `folder`, relative to it.
fn visible_files(folder: &Path) -> Result<Vec<PathBuf>, QueueError> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = folder.join(&relative);
        for entry in std::fs::read_dir(&dir).map_err(QueueError::io(&dir))? {
            let entry = entry.map_err(QueueError::io(&dir))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = entry.file_type().map_err(QueueError::io(&dir))?;
            let path = relative.join(entry.file_name());
            if kind.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    Ok(files)
}

/// Whether `path` names a ZIP file (by extension).
pub fn is_zip(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("zip"))
}

/// The input's name without a `.zip` extension, for job folder names.
fn input_stem(input: &Path) -> String {
    let name = if is_zip(input) { input.file_stem() } else { input.file_name() };
    name.map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "input".into())
}

/// Unix seconds now (0 if the clock is before 1970).
fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-queue-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_most_specific_settings_win() {
        use kiln_protocol::{Format, Preset, Stage};
        let command = SettingsOverrides {
            preset: Some(Preset::Preview),
            until: Some(Stage::Poses),
            seed: Some(1),
            ..SettingsOverrides::default()
        };
        let sidecar = SettingsOverrides { preset: Some(Preset::Full), seed: Some(2), ..SettingsOverrides::default() };
        let row = SettingsOverrides { seed: Some(3), formats: Some(vec![Format::Obj]), ..SettingsOverrides::default() };
        let settings = layered_settings(&command, Some(&sidecar), Some(&row));
        assert_eq!((settings.preset, settings.until, settings.seed), (Preset::Full, Stage::Poses, 3));
        assert_eq!(settings.formats, [Format::Obj]);
        assert_eq!(settings.checkpoint_every, Preset::Full.checkpoint_every(), "the preset in force sets it");
        assert_eq!(layered_settings(&command, None, None), command.settings());
    }

    #[test]
    fn content_hash_follows_content_not_location() {
        let root = temp("hash");
        for folder in ["a", "b"] {
            std::fs::create_dir_all(root.join(folder).join("sub")).unwrap();
            std::fs::write(root.join(folder).join("1.jpg"), b"one").unwrap();
            std::fs::write(root.join(folder).join("sub/2.jpg"), b"two").unwrap();
        }
        std::fs::write(root.join("b/.partial-copy"), b"hidden temporaries do not count").unwrap();
        let a = input_content_hash(&root.join("a")).unwrap();
        assert_eq!(a, input_content_hash(&root.join("b")).unwrap());
        assert_eq!(
            a,
            hash_bytes(format!("1.jpg\t{}\nsub/2.jpg\t{}\n", hash_bytes(b"one"), hash_bytes(b"two")).as_bytes())
        );
        std::fs::write(root.join("b/sub/2.jpg"), b"changed").unwrap();
        assert_ne!(a, input_content_hash(&root.join("b")).unwrap());
        std::fs::rename(root.join("a/1.jpg"), root.join("a/renamed.jpg")).unwrap();
        assert_ne!(a, input_content_hash(&root.join("a")).unwrap(), "names are part of the content");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
