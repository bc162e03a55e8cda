//! Atomic file output: every file Kiln writes goes to a temporary file in the destination folder,
//! is flushed to disk and then renamed over the destination, so a crash never leaves a torn file.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// Writes `path` atomically: `write` fills a buffered temporary file beside it, which is synced
/// and renamed to `path` only when `write` succeeded. On failure the temporary file is removed.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let temp = temp_path(path);
    let result = write_and_sync(&temp, write).and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn write_and_sync(temp: &Path, write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> std::io::Result<()> {
    let mut writer = BufWriter::new(File::create(temp)?);
    write(&mut writer)?;
    let file = writer.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// `folder/.name.tmp-<pid>`: same folder (so the rename stays on one file system), hidden, and
/// distinct per process.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}
