//! The queue as the app shows it: jobs started from drafts go into the SQLite store `kiln watch`
//! also keeps (so a job survives the app's restart and resumes), and every command on a job —
//! cancel, resume, retry, delete, reveal, its report and training plot — is here.

use std::path::{Path, PathBuf};

use kiln_job::JobSettings;
use kiln_job::hash::hash_bytes;
use kiln_job::{JobLayout, JobReport};
use kiln_protocol::ErrorClass;
use kiln_protocol::app::{AppError, JobRow, JobState, StartOptions, TrainPoint, Where};
use kiln_queue::store::{Enqueued, JobState as StoreState, QueuedJob, RunsOn};

use crate::cloud::CloudState;

use crate::error::lock;
use crate::error::{CommandResult, app_error, bad_input, internal};
use crate::state::{AppState, Shared};

/// Hex digits of the content hash in a job folder's name: unique among one user's jobs, short
/// enough to read.
const FOLDER_HASH_DIGITS: usize = 8;

/// The expected time on this machine's CPU past which Automatic sends a job to the cloud (when
/// there is no GPU here): a quarter of an hour is past a coffee; a preview of a small set stays
/// here, where it needs no upload.
const AUTO_CLOUD_AFTER: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Queues a draft as a job, here or in the cloud ([`runs_on`]). The same photos with the same
/// settings in the same place are one job: starting them again shows the existing job (and
/// queues it again when it had failed or was canceled).
#[tauri::command]
pub async fn start_job(
    state: tauri::State<'_, AppState>,
    cloud: tauri::State<'_, CloudState>,
    draft_id: String,
    options: StartOptions,
) -> CommandResult<JobRow> {
    let entry = crate::drafts::draft(&state, &draft_id)?;
    if let Some(check) = &entry.check
        && !check.can_proceed()
    {
        return Err(bad_input(format!(
            "the capture check says this set cannot give a model: {}",
            check.advice.join("; ")
        )));
    }
    let settings = crate::settings::job_settings(&lock(&state.settings)?.clone(), &options, entry.sidecar.as_ref());
    let output_folder = lock(&state.settings)?.output_folder.clone();
    let input = entry.input.clone();
    let hash = tauri::async_runtime::spawn_blocking(move || kiln_queue::input_content_hash(&input))
        .await
        .map_err(|e| internal(format!("hashing the photos stopped: {e}")))?
        .map_err(|e| app_error(&e))?;
    let runs_on = runs_on(&cloud, options.where_, &entry.input, &settings).await?;
    let settings_json = serde_json::to_string(&settings).map_err(|e| internal(e.to_string()))?;
    let place = match runs_on {
        RunsOn::Local => String::new(),
        RunsOn::Cloud => "\ncloud".into(),
    };
    let key = hash_bytes(format!("{hash}\n{settings_json}{place}").as_bytes());
    let job_dir = output_folder.join(format!("{}-{}", folder_name(&entry.draft.name), &key[..FOLDER_HASH_DIGITS]));
    let id = {
        let store = lock(&state.store)?;
        match store.enqueue_on(&entry.input, &key, &job_dir, &settings, runs_on).map_err(|e| app_error(&e))? {
            Enqueued::New(id) => id,
            Enqueued::AlreadyKnown(job) => {
                if matches!(job.state, StoreState::Failed | StoreState::Canceled) {
                    store.requeue(job.id).map_err(|e| app_error(&e))?;
                }
                job.id
            }
        }
    };
    lock(&state.drafts)?.remove(&draft_id);
    state.wake_runner();
    row(&state, id)
}

/// Where a job the user placed at `place` runs. The cloud needs a sign-in and a balance that
/// covers the quote, checked now so that Start says so at once. Automatic sends it to the cloud
/// when this machine has no GPU (training would be on the CPU), the job would take longer here
/// than [`AUTO_CLOUD_AFTER`], and the user is signed in with enough credits; else it runs here.
async fn runs_on(cloud: &CloudState, place: Where, input: &Path, settings: &JobSettings) -> CommandResult<RunsOn> {
    let quote = || cloud.estimate(input.to_path_buf(), settings.clone());
    match place {
        Where::Local => Ok(RunsOn::Local),
        Where::Cloud => {
            quote().await?.check().map_err(crate::cloud::job_error)?;
            Ok(RunsOn::Cloud)
        }
        Where::Auto => {
            let photos = kiln_cloud::job::photo_count(input).unwrap_or(0) as usize;
            let slow = kiln_job::estimate::local_seconds(photos, settings) > AUTO_CLOUD_AFTER.as_secs_f64();
            if !slow || !cloud.signed_in().await {
                return Ok(RunsOn::Local);
            }
            let has_gpu = tauri::async_runtime::spawn_blocking(crate::gpu::adapter_name).await.ok().flatten();
            let covered = has_gpu.is_none() && quote().await.is_ok_and(|estimate| estimate.check().is_ok());
            Ok(if covered { RunsOn::Cloud } else { RunsOn::Local })
        }
    }
}

/// A folder name from a draft's name that every platform accepts: separators, control characters
/// and the characters Windows forbids become `-`; no leading or trailing dots or spaces.
fn folder_name(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_control() || "/\\<>:\"|?*".contains(c) { '-' } else { c }).collect();
    let trimmed = safe.trim_matches(['-', '.', ' ']);
    if trimmed.is_empty() { "job".into() } else { trimmed.chars().take(60).collect() }
}

/// The name a job is shown with: its folder's, without the hash suffix (8 hex digits for jobs
/// started from a draft, 12 for those a watched folder picked up, as `kiln watch` names them).
fn job_name(job_dir: &Path) -> String {
    let folder = job_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match folder.rsplit_once('-') {
        Some((name, hash))
            if [FOLDER_HASH_DIGITS, kiln_queue::watch::JOB_DIR_HASH_DIGITS].contains(&hash.len())
                && hash.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            name.to_string()
        }
        _ => folder,
    }
}

/// Every job, newest first.
#[tauri::command]
pub fn list_jobs(state: tauri::State<'_, AppState>) -> CommandResult<Vec<JobRow>> {
    let jobs = lock(&state.store)?.jobs().map_err(|e| app_error(&e))?;
    jobs.iter().rev().map(|job| row_of(&state, job)).collect()
}

/// The row of job `id` as the UI shows it.
pub fn row(shared: &Shared, id: i64) -> CommandResult<JobRow> {
    let job = queued(shared, id)?;
    row_of(shared, &job)
}

fn queued(shared: &Shared, id: i64) -> CommandResult<QueuedJob> {
    lock(&shared.store)?
        .job(id)
        .map_err(|e| app_error(&e))?
        .ok_or_else(|| bad_input(format!("no job {id} in the queue (it was deleted)")))
}

fn parse_id(job_id: &str) -> CommandResult<i64> {
    job_id.parse().map_err(|_| bad_input(format!("not a job id: {job_id:?}")))
}

fn row_of(shared: &Shared, job: &QueuedJob) -> CommandResult<JobRow> {
    let live = lock(&shared.live)?.get(&job.id).cloned().unwrap_or_default();
    let interrupted = lock(&shared.interrupted)?.contains(&job.id);
    let state = match job.state {
        StoreState::Queued if interrupted => JobState::Interrupted,
        StoreState::Queued => JobState::Queued,
        StoreState::Running => JobState::Running,
        StoreState::Done => JobState::Done,
        StoreState::Failed => JobState::Failed,
        StoreState::Canceled => JobState::Canceled,
    };
    // Only a job not running now reads its report: the runner asks for a running job's row at
    // every stage event.
    let report = live.running_since.is_none().then(|| read_report(&job.job_dir)).flatten();
    let elapsed_s = match live.running_since {
        Some(since) => live.elapsed_before_s + since.elapsed().as_secs_f64(),
        None => report.as_ref().map_or(live.elapsed_before_s, |r| r.seconds.max(live.elapsed_before_s)),
    };
    let reported_resume = report.as_ref().and_then(|r| r.metrics.train.as_ref()).and_then(|t| t.resumed_from_step);
    let done = state == JobState::Done;
    Ok(JobRow {
        id: job.id.to_string(),
        name: job_name(&job.job_dir),
        source: job.input.clone(),
        job_dir: job.job_dir.clone(),
        where_: match job.runs_on {
            RunsOn::Local => Where::Local,
            RunsOn::Cloud => Where::Cloud,
        },
        preset: job.settings.preset,
        state,
        stage: live.stage.or_else(|| done.then_some(job.settings.until)),
        stage_fraction: if done { 1.0 } else { live.stage_fraction },
        job_fraction: if done { 1.0 } else { live.job_fraction },
        eta_s: if state == JobState::Running { live.eta_s } else { None },
        elapsed_s,
        error: job.error.as_deref().map(stored_error),
        created_at: rfc3339(job.created_at),
        resumed_from_step: live.resumed_from_step.or(reported_resume),
        cloud_phase: if state == JobState::Running { live.cloud_phase } else { None },
    })
}

/// A failed job's error as the runner stored it (an [`AppError`] in JSON). Plain text in the
/// app's queue comes from the watched folders' scanner, which records inputs it refused (a broken
/// `kiln.toml`, an unreadable ZIP): the input's problem.
fn stored_error(text: &str) -> AppError {
    serde_json::from_str(text).unwrap_or_else(|_| AppError::new(ErrorClass::BadInput, text))
}

/// Unix seconds as RFC 3339 in UTC (`2026-12-07T09:30:00Z`).
fn rfc3339(unix_s: f64) -> String {
    let seconds = unix_s.max(0.0) as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

fn read_report(job_dir: &Path) -> Option<JobReport> {
    let bytes = std::fs::read(JobLayout::new(job_dir).report()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Stops a running job between steps (it ends `canceled`, resumable), or takes a queued one out
/// of the queue.
#[tauri::command]
pub fn cancel_job(state: tauri::State<'_, AppState>, job_id: String) -> CommandResult<JobRow> {
    let id = parse_id(&job_id)?;
    let job = queued(&state, id)?;
    match job.state {
        StoreState::Running => {
            if let Some((running, flag)) = lock(&state.running)?.as_ref()
                && *running == id
            {
                flag.cancel();
            }
        }
        StoreState::Queued => {
            lock(&state.store)?.mark_canceled(id).map_err(|e| app_error(&e))?;
            lock(&state.interrupted)?.retain(|j| *j != id);
        }
        StoreState::Done | StoreState::Failed | StoreState::Canceled => {}
    }
    row(&state, id)
}

/// Queues a canceled or interrupted job again: it goes on from its last finished stage (training
/// from its checkpoint).
#[tauri::command]
pub fn resume_job(state: tauri::State<'_, AppState>, job_id: String) -> CommandResult<JobRow> {
    requeue(&state, &job_id, &[StoreState::Canceled, StoreState::Failed])
}

/// Runs a failed job again (its finished stages are kept).
#[tauri::command]
pub fn retry_job(state: tauri::State<'_, AppState>, job_id: String) -> CommandResult<JobRow> {
    requeue(&state, &job_id, &[StoreState::Failed, StoreState::Canceled])
}

fn requeue(state: &AppState, job_id: &str, from: &[StoreState]) -> CommandResult<JobRow> {
    let id = parse_id(job_id)?;
    let job = queued(state, id)?;
    if from.contains(&job.state) {
        lock(&state.store)?.requeue(id).map_err(|e| app_error(&e))?;
        state.wake_runner();
    }
    row(state, id)
}

/// Removes a job and its folder. The photos it read are never touched: a job folder holds only
/// what Kiln wrote (and a ZIP's unpacked copy).
#[tauri::command]
pub fn delete_job(state: tauri::State<'_, AppState>, job_id: String) -> CommandResult<()> {
    let id = parse_id(&job_id)?;
    let job = queued(&state, id)?;
    if job.state == StoreState::Running {
        return Err(bad_input("the job is running: cancel it before deleting it"));
    }
    if job.input.starts_with(&job.job_dir) || job.job_dir.starts_with(&job.input) {
        return Err(internal(format!(
            "the job folder and the photos overlap, so the folder is kept: {}",
            job.job_dir.display()
        )));
    }
    match std::fs::remove_dir_all(&job.job_dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(app_error(&error)),
    }
    lock(&state.store)?.remove(id).map_err(|e| app_error(&e))?;
    lock(&state.live)?.remove(&id);
    Ok(())
}

/// Opens the job folder in the system's file manager.
#[tauri::command]
pub fn reveal_job(state: tauri::State<'_, AppState>, job_id: String) -> CommandResult<()> {
    let job = queued(&state, parse_id(&job_id)?)?;
    reveal(&job.job_dir)
}

/// Opens `folder` in the file manager (`xdg-open`, `open`, `explorer`).
pub fn reveal(folder: &Path) -> CommandResult<()> {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    std::process::Command::new(program)
        .arg(folder)
        .spawn()
        .map(drop)
        .map_err(|e| internal(format!("cannot start {program} to show {} ({e})", folder.display())))
}

/// The job's `report.json`, once it wrote one.
#[tauri::command]
pub fn job_report(state: tauri::State<'_, AppState>, job_id: String) -> CommandResult<Option<JobReport>> {
    let job = queued(&state, parse_id(&job_id)?)?;
    Ok(read_report(&job.job_dir))
}

/// The training plot of the job the runner ran in this session.
#[tauri::command]
pub fn train_history(state: tauri::State<'_, AppState>, job_id: String) -> CommandResult<Vec<TrainPoint>> {
    let id = parse_id(&job_id)?;
    Ok(lock(&state.live)?.get(&id).map(|live| live.history.clone()).unwrap_or_default())
}

/// The latest render training wrote of the job the runner runs (PNG).
#[tauri::command]
pub async fn latest_preview(state: tauri::State<'_, AppState>, job_id: String) -> CommandResult<tauri::ipc::Response> {
    let id = parse_id(&job_id)?;
    let path = lock(&state.live)?.get(&id).and_then(|live| live.preview.clone());
    let path = path.ok_or_else(|| bad_input(format!("job {id} has no training preview yet")))?;
    let bytes = tauri::async_runtime::spawn_blocking(move || std::fs::read(&path))
        .await
        .map_err(|e| internal(format!("reading the preview stopped: {e}")))?
        .map_err(|e| app_error(&e))?;
    Ok(tauri::ipc::Response::new(bytes))
}

/// A job's folder, for the preview and export.
pub fn job_dir(state: &AppState, job_id: &str) -> CommandResult<(PathBuf, QueuedJob)> {
    let job = queued(state, parse_id(job_id)?)?;
    Ok((job.job_dir.clone(), job))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_635_845.0), "2026-12-07T09:30:45Z");
    }

    #[test]
    fn folder_names_are_safe_and_job_names_drop_the_hash() {
        assert_eq!(folder_name("My mug / take 2"), "My mug - take 2");
        assert_eq!(folder_name("a:b*c?"), "a-b-c");
        assert_eq!(folder_name("../.."), "job");
        assert_eq!(job_name(Path::new("/jobs/My-mug-0123abcd")), "My-mug");
        assert_eq!(job_name(Path::new("/jobs/plain")), "plain");
        assert_eq!(job_name(Path::new("/jobs/shoe-0123456789ab")), "shoe", "a watched folder's job");
        assert_eq!(job_name(Path::new("/jobs/take-two")), "take-two");
    }
}
