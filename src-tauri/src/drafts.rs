//! Drafts: folders, ZIPs and loose photos dropped on the window or picked, before they become
//! jobs. Each is listed at once (photo count, or why it is unusable), checked on request (the
//! job layer's capture check), and shown as thumbnails. A draft never writes next to the user's
//! photos: a ZIP is unpacked, and loose photos are linked, under the app's data folder.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_core::photos::{is_photo_name, list_photos};
use kiln_job::zip_input::{ZipLimits, extract_zip};
use kiln_protocol::ErrorClass;
use kiln_protocol::app::{Added, AppError, Draft, Estimate, Rejected, SourceKind, StartOptions, Where};
use kiln_protocol::check::CheckReport;
use kiln_queue::sidecar::read_sidecar;
use tauri::ipc::Response;

use crate::error::lock;
use crate::error::{CommandResult, app_error, bad_input, internal};
use crate::state::{AppState, DraftEntry};

/// JPEG quality of thumbnails: small files, no visible blocking at thumbnail size.
const THUMBNAIL_QUALITY: u8 = 80;
/// Largest thumbnail side the UI may ask for: a retina grid cell; more is a full photo.
const MAX_THUMBNAIL_SIDE: u32 = 512;

static NEXT_DRAFT: AtomicU64 = AtomicU64::new(1);

/// The drop handler's command (and the "Add folder…" button's): every folder and ZIP becomes a
/// draft, loose photos together become one, anything else is rejected with the reason.
#[tauri::command]
pub async fn add_sources(state: tauri::State<'_, AppState>, paths: Vec<PathBuf>) -> CommandResult<Added> {
    let shared = state.shared();
    let drafts_dir = shared.paths.drafts();
    let added = tauri::async_runtime::spawn_blocking(move || make_drafts(&paths, &drafts_dir))
        .await
        .map_err(|e| internal(format!("adding the dropped items stopped: {e}")))?;
    let mut drafts = lock(&shared.drafts)?;
    let mut listed = Added { drafts: Vec::new(), rejected: added.rejected };
    for entry in added.entries {
        listed.drafts.push(entry.draft.clone());
        drafts.insert(entry.draft.id.clone(), entry);
    }
    Ok(listed)
}

struct Made {
    entries: Vec<DraftEntry>,
    rejected: Vec<Rejected>,
}

fn make_drafts(paths: &[PathBuf], drafts_dir: &Path) -> Made {
    let mut made = Made { entries: Vec::new(), rejected: Vec::new() };
    let (photos, others): (Vec<&PathBuf>, Vec<&PathBuf>) = paths.iter().partition(|p| p.is_file() && is_photo_name(p));
    for path in others {
        match draft_of(path, drafts_dir) {
            Ok(entry) => made.entries.push(entry),
            Err(error) => made.rejected.push(Rejected { path: path.clone(), error }),
        }
    }
    if !photos.is_empty() {
        match draft_of_photos(&photos, drafts_dir) {
            Ok(entry) => made.entries.push(entry),
            Err(error) => {
                made.rejected.extend(photos.iter().map(|p| Rejected { path: (*p).clone(), error: error.clone() }))
            }
        }
    }
    made
}

fn new_id() -> String {
    format!("d{}", NEXT_DRAFT.fetch_add(1, Ordering::Relaxed))
}

fn display_name(path: &Path) -> String {
    path.file_stem()
        .or(path.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A folder or a ZIP as a draft.
fn draft_of(path: &Path, drafts_dir: &Path) -> Result<DraftEntry, AppError> {
    let id = new_id();
    let (kind, photos_dir) = if path.is_dir() {
        (SourceKind::Folder, path.to_path_buf())
    } else if path.is_file() && kiln_queue::is_zip(path) {
        let unpacked = extract_zip(path, &drafts_dir.join(&id), &ZipLimits::default()).map_err(|e| app_error(&e))?;
        (SourceKind::Zip, unpacked)
    } else if !path.exists() {
        return Err(bad_input(format!("cannot be opened (it does not exist): {}", path.display())));
    } else {
        return Err(bad_input(format!(
            "not a folder of photos, a ZIP of them or a photo (JPEG or PNG): {}",
            path.display()
        )));
    };
    let photos = count_photos(&photos_dir, path)?;
    let sidecar = read_sidecar(&photos_dir).map_err(|e| app_error(&e))?;
    let draft = Draft { id, source: path.to_path_buf(), name: display_name(path), kind, photos };
    Ok(DraftEntry { draft, photos_dir, input: path.to_path_buf(), sidecar, check: None })
}

/// Loose photos as one draft: linked (copied where links are not possible) into a folder of the
/// app's, so the job reads exactly these photos and nothing is written beside them.
fn draft_of_photos(photos: &[&PathBuf], drafts_dir: &Path) -> Result<DraftEntry, AppError> {
    let id = new_id();
    let folder = drafts_dir.join(&id);
    let io = |e: std::io::Error| app_error(&e);
    std::fs::create_dir_all(&folder).map_err(io)?;
    for (index, photo) in photos.iter().enumerate() {
        let name = photo.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // An index prefix keeps two photos of the same name from different folders apart.
        let link = folder.join(format!("{index:04}-{name}"));
        link_or_copy(photo, &link).map_err(io)?;
    }
    let name = match photos.first().and_then(|p| p.parent()) {
        Some(parent) => format!("{} photos from {}", photos.len(), display_name(parent)),
        None => format!("{} photos", photos.len()),
    };
    let count = count_photos(&folder, &folder)?;
    let draft = Draft { id, source: folder.clone(), name, kind: SourceKind::Folder, photos: count };
    Ok(DraftEntry { draft, photos_dir: folder.clone(), input: folder, sidecar: None, check: None })
}

#[cfg(unix)]
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(from, to).or_else(|_| std::fs::copy(from, to).map(drop))
}

#[cfg(not(unix))]
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to).map(drop)
}

fn count_photos(photos_dir: &Path, source: &Path) -> Result<u32, AppError> {
    let set = list_photos(photos_dir).map_err(|e| app_error(&e))?;
    if set.photos.is_empty() {
        return Err(bad_input(format!("no photos (JPEG or PNG) in it: {}", source.display())));
    }
    Ok(u32::try_from(set.photos.len()).unwrap_or(u32::MAX))
}

/// A draft by id, cloned out of the lock.
pub fn draft(state: &AppState, draft_id: &str) -> CommandResult<DraftEntry> {
    lock(&state.drafts)?
        .get(draft_id)
        .cloned()
        .ok_or_else(|| AppError::new(ErrorClass::BadInput, format!("no draft {draft_id} (it was started or removed)")))
}

/// Runs the capture check on a draft's photos (seconds for a few dozen photos).
#[tauri::command]
pub async fn check_draft(state: tauri::State<'_, AppState>, draft_id: String) -> CommandResult<CheckReport> {
    let entry = draft(&state, &draft_id)?;
    let photos_dir = entry.photos_dir.clone();
    let report = tauri::async_runtime::spawn_blocking(move || kiln_job::capture::check(&photos_dir, &mut |_, _, _| {}))
        .await
        .map_err(|e| internal(format!("the capture check stopped: {e}")))?
        .map_err(|e| app_error(&e))?;
    if let Some(known) = lock(&state.drafts)?.get_mut(&draft_id) {
        known.check = Some(report.clone());
    }
    Ok(report)
}

/// A JPEG thumbnail of photo `index` of the draft's check, at most `size` pixels on its longer side.
#[tauri::command]
pub async fn photo_thumbnail(
    state: tauri::State<'_, AppState>,
    draft_id: String,
    index: usize,
    size: u32,
) -> CommandResult<Response> {
    let entry = draft(&state, &draft_id)?;
    let check = entry.check.ok_or_else(|| bad_input(format!("draft {draft_id} has not been checked yet")))?;
    let photo = check
        .photos
        .get(index)
        .ok_or_else(|| bad_input(format!("draft {draft_id} has {} photos, not {}", check.photos.len(), index + 1)))?;
    let path = entry.photos_dir.join(&photo.path);
    let bytes = tauri::async_runtime::spawn_blocking(move || jpeg_thumbnail(&path, size.clamp(16, MAX_THUMBNAIL_SIDE)))
        .await
        .map_err(|e| internal(format!("making a thumbnail stopped: {e}")))??;
    Ok(Response::new(bytes))
}

/// `path` decoded, shrunk to `side` pixels on its longer side and encoded as JPEG.
pub fn jpeg_thumbnail(path: &Path, side: u32) -> CommandResult<Vec<u8>> {
    let image = image::open(path).map_err(|e| bad_input(format!("cannot read the photo ({e}): {}", path.display())))?;
    let small = image.thumbnail(side, side).into_rgb8();
    let mut bytes = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, THUMBNAIL_QUALITY);
    small.write_with_encoder(encoder).map_err(|e| internal(format!("encoding a thumbnail: {e}")))?;
    Ok(bytes)
}

/// The expected time (and, for the cloud, the credits) of a draft with these options.
/// A cloud job's time is the same guess (the worker's GPU is faster, the upload adds to it), with
/// the service's credit quote.
#[tauri::command]
pub async fn estimate(
    state: tauri::State<'_, AppState>,
    cloud: tauri::State<'_, crate::cloud::CloudState>,
    draft_id: String,
    options: StartOptions,
) -> CommandResult<Estimate> {
    let entry = draft(&state, &draft_id)?;
    let photos = entry.check.as_ref().map_or(entry.draft.photos as usize, |c| c.usable_photos(false).len());
    let settings = crate::settings::job_settings(&lock(&state.settings)?.clone(), &options, entry.sidecar.as_ref());
    let seconds = kiln_job::estimate::local_seconds(photos, &settings);
    let credits = match options.where_ {
        Where::Cloud => Some(cloud.estimate(entry.input.clone(), settings).await?.quote.credits.max(0) as u64),
        Where::Local | Where::Auto => None,
    };
    Ok(Estimate { seconds, credits })
}
