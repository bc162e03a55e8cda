//! Export: a finished job's model in the formats the user picks, copied into a folder of their
//! choice (each file written beside its destination and renamed into place), with the third-party
//! validators' verdicts. Formats the job did not make yet run its export stage again; nothing
//! before it reruns, because no earlier stage depends on the formats.

use std::path::{Path, PathBuf};

use kiln_job::validate::{Validators, validate_outputs};
use kiln_job::{CancelFlag, Format, run_job};
use kiln_protocol::app::{ExportResult, ExportedFile, ValidatorLine};
use kiln_protocol::report::ValidatorResult;

use crate::error::{CommandResult, app_error, bad_input, internal};
use crate::state::AppState;

/// Writes job `job_id`'s model in `formats` into `folder` (created if missing).
#[tauri::command]
pub async fn export_job(
    state: tauri::State<'_, AppState>,
    job_id: String,
    formats: Vec<Format>,
    folder: PathBuf,
) -> CommandResult<ExportResult> {
    if formats.is_empty() {
        return Err(bad_input("choose at least one format to export"));
    }
    let (job_dir, job) = crate::jobs::job_dir(&state, &job_id)?;
    let mut settings = job.settings.clone();
    settings.formats = formats.clone();
    tauri::async_runtime::spawn_blocking(move || {
        let mut report =
            run_job(&job.input, &job_dir, &settings, &CancelFlag::default(), &mut |_| {}).map_err(|e| app_error(&e))?;
        // A rejected file is reported per file below, not as a failed export.
        let _ = validate_outputs(&mut report, &Validators::from_env());
        let resolved = settings.resolved();
        let files = copy_outputs(&report.outputs().iter().map(|o| o.path.clone()).collect::<Vec<_>>(), &folder)?;
        let files = files
            .into_iter()
            .map(|(source, path, bytes)| ExportedFile {
                format: format_of(&path),
                validator: report.validators.iter().find(|v| v.file == source).map(validator_line),
                path,
                bytes,
            })
            .collect();
        Ok(ExportResult {
            files,
            max_triangles: resolved.max_triangles.map(|t| u32::try_from(t).unwrap_or(u32::MAX)),
            texture_size: resolved.texture_size,
        })
    })
    .await
    .map_err(|e| internal(format!("the export stopped: {e}")))?
}

/// Copies `sources` into `folder`; returns `(source, copy, bytes)` for each.
fn copy_outputs(sources: &[PathBuf], folder: &Path) -> CommandResult<Vec<(PathBuf, PathBuf, u64)>> {
    let unwritable =
        |e: std::io::Error| bad_input(format!("cannot write to the export folder ({e}): {}", folder.display()));
    std::fs::create_dir_all(folder).map_err(unwritable)?;
    let mut copied = Vec::new();
    for source in sources {
        let Some(name) = source.file_name() else { continue };
        let destination = folder.join(name);
        let partial = folder.join(format!(".{}.part", name.to_string_lossy()));
        let bytes = std::fs::copy(source, &partial).map_err(unwritable)?;
        std::fs::rename(&partial, &destination).map_err(unwritable)?;
        copied.push((source.clone(), destination, bytes));
    }
    Ok(copied)
}

/// The format a file belongs to by its extension (an OBJ's material and texture go with it).
fn format_of(path: &Path) -> Format {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("glb") => Format::Glb,
        Some("usdz") => Format::Usdz,
        Some("ply") => Format::Ply,
        _ => Format::Obj,
    }
}

fn validator_line(result: &ValidatorResult) -> ValidatorLine {
    ValidatorLine { name: result.validator.clone(), passed: result.passed, summary: result.detail.clone() }
}

/// Opens the folder an export wrote into in the file manager ("Show in folder"). Only a folder
/// that exists: the file manager is never asked to open a file (which it would run or show).
#[tauri::command]
pub fn reveal_export(folder: PathBuf) -> CommandResult<()> {
    if !folder.is_dir() {
        return Err(bad_input(format!("the export folder is not there any more: {}", folder.display())));
    }
    crate::jobs::reveal(&folder)
}
