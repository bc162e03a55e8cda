//! [`run_job`]: one job from its input to its exported files, in its folder, resumable.
//!
//! Each stage's completion record carries a key: the hash of the engine version, the input
//! photos (names and content hashes), the settings the stage depends on and the key of the stage
//! before it. A stage whose record has the current key is skipped; any other stage runs again,
//! and its record and those of every later stage are removed before it starts, so a crash
//! mid-stage never leaves a record that claims stale outputs are finished.
//!
//! Where the photos sit is not part of any key: the same photos (names and contents) in another
//! folder keep the finished stages, once the files that name photos by path are pointed at them
//! ([`crate::relocate`]). That is how a job folder a cloud worker made, downloaded here, resumes
//! locally with the user's copy of its photos.

use crate::layout::{FETCHED_ARCHIVE_FILE, JobLayout};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::hash::{hash_file, hash_json};
use crate::lock::JobLock;
use crate::manifest::{InputKind, Manifest};
use crate::progress::Reporter;
use crate::report::{JobReport, JobStatus, StageRecord, StageStatus, write_report};
use crate::stages::{Context, judge_model, mesh_preview, outputs_follow_verdict, remove_checkpoint, run_stage};
use crate::zip_input::{ZipLimits, extract_zip};
use crate::{CancelFlag, ENGINE_VERSION, JobError, JobEvent, JobSettings, Stage};

/// Where a job's photos come from: the seam between a front end's input and the job.
#[derive(Clone, Copy)]
pub enum JobInput<'a> {
    /// A folder of photos (searched recursively), only ever read.
    Folder(&'a Path),
    /// A ZIP of photos, extracted into the job folder (again only when its content changed).
    Zip(&'a Path),
    /// An archive somewhere else (object storage, say): fetched once into the job folder as
    /// `input.zip`, then taken as a ZIP.
    Archive(&'a dyn ArchiveSource),
}

/// A ZIP of photos the job fetches itself (the server's workers implement it over object
/// storage). The job writes it to a temporary name and renames it, so a killed fetch is never
/// taken for a complete archive.
pub trait ArchiveSource {
    /// Says where the archive comes from, for the manifest and messages (never a secret).
    fn describe(&self) -> String;
    /// Writes the whole archive to `dest`.
    fn fetch(&self, dest: &Path) -> std::io::Result<()>;
}

impl<'a> JobInput<'a> {
    /// A folder or a `.zip` on disk, told apart by what `path` is.
    pub fn from_path(path: &'a Path) -> Result<Self, JobError> {
        let is_zip = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("zip"));
        match (path.is_dir(), path.is_file() && is_zip) {
            (true, _) => Ok(JobInput::Folder(path)),
            (false, true) => Ok(JobInput::Zip(path)),
            (false, false) if !path.exists() => Err(JobError::BadInput {
                input: path.to_path_buf(),
                problem: "cannot be opened (it does not exist); expected a folder of photos or a .zip of them".into(),
            }),
            (false, false) => Err(JobError::BadInput {
                input: path.to_path_buf(),
                problem: "not a folder of photos or a .zip of them".into(),
            }),
        }
    }
}

/// A [`JobInput`] with its path made absolute, or the archive still to fetch.
enum Located<'a> {
    Folder(PathBuf),
    Zip(PathBuf),
    Archive(&'a dyn ArchiveSource),
}

/// Runs the job of `input` (a photo folder or a `.zip`) in the folder `job_dir`: see
/// [`run_job_from`].
pub fn run_job(
    input: &Path,
    job_dir: &Path,
    settings: &JobSettings,
    cancel: &CancelFlag,
    events: &mut dyn FnMut(&JobEvent),
) -> Result<JobReport, JobError> {
    run_job_from(JobInput::from_path(input)?, job_dir, settings, cancel, events)
}

/// Runs the job of `input` in the folder `job_dir` (created if missing) with `settings`, sending
/// progress to `events`. Stages finished by an earlier call with the same inputs and settings are
/// skipped; training goes on from its checkpoint. `cancel` is polled between units of work; a
/// cancelled job ends with [`JobError::Cancelled`] and can be resumed by calling again.
/// `report.json` is written whether the job succeeds or not (once the input was accepted).
pub fn run_job_from(
    input: JobInput,
    job_dir: &Path,
    settings: &JobSettings,
    cancel: &CancelFlag,
    events: &mut dyn FnMut(&JobEvent),
) -> Result<JobReport, JobError> {
    let clock = Instant::now();
    // Inputs on disk are checked before the job folder is touched; an archive is fetched into it.
    let input = match input {
        JobInput::Folder(path) => Located::Folder(existing_input(path)?),
        JobInput::Zip(path) => Located::Zip(existing_input(path)?),
        JobInput::Archive(source) => Located::Archive(source),
    };
    let photo_folder = match &input {
        Located::Folder(path) => Some(path.as_path()),
        _ => None,
    };
    let job_dir = prepare_job_dir(job_dir, photo_folder)?;
    let _lock = JobLock::acquire(&job_dir)?;
    remove_stale_temporaries(&job_dir);
    let (input, kind) = match input {
        Located::Folder(path) => (path, InputKind::Folder),
        Located::Zip(path) => (path, InputKind::Zip),
        Located::Archive(source) => (fetch_archive(source, &job_dir)?, InputKind::Zip),
    };
    let photos_dir = photos_dir(&input, kind, &job_dir)?;
    let manifest = Manifest::build(&input, kind, &photos_dir, settings)?;
    manifest.write(&job_dir)?;
    crate::relocate::point_at_photos(&JobLayout::new(&job_dir), &photos_dir, &manifest.photos)?;

    let mut report = JobReport::new(crate::ENGINE_VERSION, &input, &photos_dir, &job_dir);
    for stage in Stage::ALL.into_iter().filter(|s| !settings.runs(*s)) {
        report.set_status(stage, StageStatus::NotRequested, String::new());
    }
    write_report(&report, &job_dir)?;
    let ctx = Context {
        input,
        photos_dir,
        layout: JobLayout::new(job_dir),
        settings,
        resolved: manifest.resolved.clone(),
        cancel,
    };
    let mut reporter = Reporter::new(settings, events);
    let outcome = run_stages(&ctx, &stage_keys(&manifest), &mut report, &mut reporter);
    report.seconds = clock.elapsed().as_secs_f64();
    report.status = match &outcome {
        Ok(()) => JobStatus::Finished,
        Err(JobError::Cancelled(_)) => JobStatus::Cancelled,
        Err(_) => JobStatus::Failed,
    };
    report.error = outcome.as_ref().err().map(ToString::to_string);
    let written = write_report(&report, ctx.layout.root());
    outcome?;
    written?;
    Ok(report)
}

fn run_stages(
    ctx: &Context,
    keys: &[(Stage, String)],
    report: &mut JobReport,
    reporter: &mut Reporter,
) -> Result<(), JobError> {
    for (stage, key) in keys.iter().filter(|(stage, _)| ctx.settings.runs(*stage)) {
        let stage = *stage;
        if ctx.cancel.is_cancelled() {
            report.set_status(stage, StageStatus::Cancelled, "cancelled before it started".into());
            return Err(JobError::Cancelled(stage));
        }
        let previous = StageRecord::read(ctx.layout.root(), stage);
        match previous.as_ref().filter(|record| record.key == *key && outputs_follow_verdict(ctx, record)) {
            Some(record) => {
                report.record(&record.summary, record.seconds, StageStatus::Skipped);
                reporter.skipped(stage, format!("already finished: {}", record.summary.message()));
            }
            None => run_one(ctx, stage, key, previous.as_ref(), report, reporter)?,
        }
        if stage == Stage::Mesh {
            let skipped = report.stage(Stage::Mesh).is_some_and(|s| s.status == StageStatus::Skipped);
            let verdict = judge_model(ctx, report, skipped, reporter)?;
            report.record_verdict(&verdict);
        }
        write_report(report, ctx.layout.root())?;
        if stage == Stage::Check {
            // A refused set stays refused however often the job is called.
            super::capture::usable_photos(&ctx.check_report()?, ctx.settings.keep_all, &ctx.input)?;
        }
    }
    Ok(())
}

/// Runs `stage` and writes its record last.
fn run_one(
    ctx: &Context,
    stage: Stage,
    key: &str,
    previous: Option<&StageRecord>,
    report: &mut JobReport,
    reporter: &mut Reporter,
) -> Result<(), JobError> {
    for later in Stage::ALL.into_iter().filter(|s| *s >= stage) {
        StageRecord::remove(ctx.layout.root(), later)?;
    }
    report.set_status(stage, StageStatus::Running, String::new());
    write_report(report, ctx.layout.root())?;
    reporter.started(stage, format!("{stage} started"));
    let start = Instant::now();
    let summary = match run_stage(ctx, stage, previous, reporter) {
        Ok(summary) => summary,
        Err(error) => {
            let status =
                if matches!(error, JobError::Cancelled(_)) { StageStatus::Cancelled } else { StageStatus::Failed };
            report.set_status(stage, status, error.to_string());
            reporter.failed(stage, error.to_string());
            return Err(error);
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let record = StageRecord { key: key.to_string(), engine_version: ENGINE_VERSION.to_string(), seconds, summary };
    record.write(ctx.layout.root(), stage)?;
    if stage == Stage::Train {
        remove_checkpoint(ctx)?;
    }
    report.record(&record.summary, seconds, StageStatus::Finished);
    let preview = if stage == Stage::Mesh { mesh_preview(ctx) } else { None };
    reporter.finished(stage, record.summary.message(), preview);
    Ok(())
}

/// Each stage's key: what its outputs depend on, chained through the stages before it.
fn stage_keys(manifest: &Manifest) -> Vec<(Stage, String)> {
    let (s, r) = (&manifest.settings, &manifest.resolved);
    let check = hash_json(&json!({
        "engine": ENGINE_VERSION,
        "photos": manifest.photos,
    }));
    let poses = hash_json(&json!({
        "after": check,
        "keep_all": s.keep_all,
        "sift_max_features": r.sift_max_features,
        "sift_max_image_side": r.sift_max_image_side,
    }));
    let train = hash_json(&json!({
        "after": poses,
        "steps": r.train_steps,
        "max_side": r.max_side,
        "max_splats": r.max_splats,
        "seed": s.seed,
    }));
    let mesh = hash_json(&json!({
        "after": train,
        "preset": s.preset,
        "max_triangles": r.max_triangles,
        "texture_size": r.texture_size,
        "size_mm": s.size_mm,
    }));
    let export = hash_json(&json!({ "after": mesh, "formats": s.formats }));
    vec![
        (Stage::Check, check),
        (Stage::Poses, poses),
        (Stage::Train, train),
        (Stage::Mesh, mesh),
        (Stage::Export, export),
    ]
}

/// `input` made absolute, or why it cannot be used.
fn existing_input(input: &Path) -> Result<PathBuf, JobError> {
    std::fs::canonicalize(input).map_err(|e| JobError::BadInput {
        input: input.to_path_buf(),
        problem: format!("cannot be opened ({e}); expected a folder of photos or a .zip of them"),
    })
}

/// Creates the job folder and returns it absolute. A job folder inside the photo folder is
/// refused: its files would be taken for photos, and the input must stay untouched.
fn prepare_job_dir(job_dir: &Path, photo_folder: Option<&Path>) -> Result<PathBuf, JobError> {
    if let Some(input) = photo_folder
        && resolve(job_dir).starts_with(input)
    {
        return Err(JobError::BadInput {
            input: job_dir.to_path_buf(),
            problem: format!("the job folder must not be inside the photo folder {}", input.display()),
        });
    }
    std::fs::create_dir_all(job_dir).map_err(|source| JobError::Io { path: job_dir.to_path_buf(), source })?;
    std::fs::canonicalize(job_dir).map_err(|source| JobError::Io { path: job_dir.to_path_buf(), source })
}

/// `path` absolute with symbolic links resolved as far as it exists.
fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut missing = Vec::new();
    let mut existing = absolute.as_path();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(existing) {
            return missing.iter().rev().fold(canonical, |path, name| path.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// The archive `source` names, fetched into the job folder unless an earlier call did: written to
/// a temporary name first and renamed, so only a complete fetch ever has the final name.
fn fetch_archive(source: &dyn ArchiveSource, job_dir: &Path) -> Result<PathBuf, JobError> {
    let layout = JobLayout::new(job_dir);
    let dest = layout.fetched_archive();
    if dest.is_file() {
        return Ok(dest);
    }
    let partial = job_dir.join(format!(".{FETCHED_ARCHIVE_FILE}.partial-{}", std::process::id()));
    let fetched = source.fetch(&partial).and_then(|()| std::fs::rename(&partial, &dest));
    if let Err(error) = fetched {
        // The partial file is only ours; what matters is the fetch's own error.
        let _ = std::fs::remove_file(&partial);
        return Err(JobError::BadInput {
            input: PathBuf::from(source.describe()),
            problem: format!("cannot fetch the photo archive: {error}"),
        });
    }
    Ok(dest)
}

/// The folder the photos are read from: the input folder, or for a ZIP its extraction inside the
/// job (extracted again only when the ZIP's content changed).
fn photos_dir(input: &Path, kind: InputKind, job_dir: &Path) -> Result<PathBuf, JobError> {
    if kind == InputKind::Folder {
        return Ok(input.to_path_buf());
    }
    let dest = JobLayout::new(job_dir).zip_input();
    let zip_hash = hash_file(input)?;
    if dest.is_dir() {
        match Manifest::read(job_dir) {
            Ok(old) if old.input_sha256.as_deref() == Some(zip_hash.as_str()) && old.photos_dir.starts_with(&dest) => {
                return Ok(old.photos_dir);
            }
            _ => std::fs::remove_dir_all(&dest).map_err(|source| JobError::Io { path: dest.clone(), source })?,
        }
    }
    Ok(extract_zip(input, &dest, &ZipLimits::default())?)
}

/// Removes temporary files and folders that killed processes left in the job folder (atomic
/// writes' `.name.tmp-<pid>`, extraction's `.name.partial-<pid>`); those of live processes stay.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        match stale_temporary_pid(&entry.file_name().to_string_lossy()) {
            Some(pid) if pid != std::process::id() && !process_alive(pid) => {
                let removed = if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                match removed {
                    Ok(()) => tracing::info!("removed {}, left by an interrupted run", path.display()),
                    Err(e) => tracing::warn!("{}: cannot remove a leftover temporary: {e}", path.display()),
                }
            }
            Some(_) => {}
            None if is_dir => remove_stale_temporaries(&path),
            None => {}
        }
    }
}

/// The process id in a temporary's name (`.name.tmp-<pid>` or `.name.partial-<pid>`).
fn stale_temporary_pid(name: &str) -> Option<u32> {
    if !name.starts_with('.') {
        return None;
    }
    ["tmp-", "partial-"].iter().find_map(|marker| {
        let (_, pid) = name.rsplit_once(&format!(".{marker}"))?;
        pid.parse().ok()
    })
}

/// Whether process `pid` runs; where that cannot be told (no `/proc`), it is taken to run.
fn process_alive(pid: u32) -> bool {
    !Path::new("/proc/self").exists() || Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_are_recognised_by_their_pid_suffix() {
        assert_eq!(stale_temporary_pid(".report.json.tmp-1234"), Some(1234));
        assert_eq!(stale_temporary_pid(".input.partial-77"), Some(77));
        assert_eq!(stale_temporary_pid("report.json.tmp-1234"), None, "not hidden: not ours");
        assert_eq!(stale_temporary_pid(".notes.tmp-abc"), None);
        assert_eq!(stale_temporary_pid(".hidden"), None);
    }

    #[test]
    fn stage_keys_chain_so_a_change_reaches_every_later_stage() {
        let settings = JobSettings::for_preset(kiln_protocol::Preset::Preview);
        let manifest = Manifest {
            engine_version: ENGINE_VERSION.into(),
            input: "/photos".into(),
            input_kind: InputKind::Folder,
            input_sha256: None,
            photos_dir: "/photos".into(),
            photos: Vec::new(),
            settings: settings.clone(),
            resolved: settings.resolved(),
        };
        let base = stage_keys(&manifest);
        let mut more_steps = manifest.clone();
        more_steps.resolved.train_steps += 1;
        let changed = stage_keys(&more_steps);
        let same: Vec<bool> = base.iter().zip(&changed).map(|(a, b)| a.1 == b.1).collect();
        assert_eq!(same, [true, true, false, false, false]);
        let mut other_formats = manifest.clone();
        other_formats.settings.formats.pop();
        let same: Vec<bool> = base.iter().zip(stage_keys(&other_formats)).map(|(a, b)| a.1 == b.1).collect();
        assert_eq!(same, [true, true, true, true, false]);
        assert_eq!(base, stage_keys(&manifest.clone()), "keys are deterministic");
        let moved = Manifest { input: "/elsewhere".into(), photos_dir: "/elsewhere".into(), ..manifest.clone() };
        assert_eq!(base, stage_keys(&moved), "the same photos in another folder keep every stage");
        let mut other_photo = manifest.clone();
        other_photo.photos.push(crate::manifest::InputFile { name: "a.jpg".into(), bytes: 1, sha256: "00".into() });
        assert!(base.iter().zip(stage_keys(&other_photo)).all(|(a, b)| a.1 != b.1), "other photos: every stage");
    }
}
