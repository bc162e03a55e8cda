//! Safe extraction of a ZIP of photos: the only case in which a job copies its input.
//!
//! A ZIP comes from anywhere, so nothing in it is trusted:
//! - entry names are checked component by component: no `..`, no absolute path, no drive letter
//!   or other `:` prefix, no NUL (zip-slip);
//! - symbolic-link entries are refused (never created, so nothing can point out of the folder);
//! - encrypted entries are refused;
//! - the number of entries, the total uncompressed size and each entry's compression ratio are
//!   limited ([`ZipLimits`]), counted on the bytes actually decompressed while streaming, never
//!   on the sizes the headers declare (a zip bomb lies about them).
//!
//! Extraction goes into a hidden temporary folder beside `dest`, renamed to `dest` only when
//! every entry is out, so a failure (or a crash) never leaves a half-filled `dest`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use tracing::{debug, info};

/// Limits that stop a hostile or broken ZIP before it fills the disk.
#[derive(Clone, Debug, PartialEq)]
pub struct ZipLimits {
    /// Most bytes all entries together may decompress to.
    pub max_total_bytes: u64,
    /// Most entries (files and folders) the archive may list.
    pub max_entries: usize,
    /// Highest uncompressed/compressed ratio of one entry, once it is past `ratio_grace_bytes`.
    pub max_ratio: f64,
    /// Entries up to this many uncompressed bytes are exempt from the ratio limit: a small text
    /// file of blanks compresses extremely well and is harmless.
    pub ratio_grace_bytes: u64,
}

/// 32 GiB: a 1,000-photo capture of 48-megapixel JPEGs (~12 MB each) is about 12 GB, so this
/// leaves room for large PNG or TIFF sets while stopping a bomb long before a disk is full.
const DEFAULT_MAX_TOTAL_BYTES: u64 = 32 << 30;

/// 20,000 entries: captures rarely pass a few thousand photos (plus masks and sidecars); a
/// listing far beyond that is an entry-count bomb, costly to walk even when every entry is tiny.
const DEFAULT_MAX_ENTRIES: usize = 20_000;

/// 200:1: JPEG and PNG photos barely compress (ratio ≈ 1), text sidecars reach ~10:1, while
/// deflate squeezes runs of zeros about 1000:1, which only a bomb contains at photo sizes.
const DEFAULT_MAX_RATIO: f64 = 200.0;

/// 4 MiB: far below any harm, far above the sidecar files (`kiln.toml`, `transforms.json`).
const DEFAULT_RATIO_GRACE_BYTES: u64 = 4 << 20;

impl Default for ZipLimits {
    fn default() -> Self {
        ZipLimits {
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_ratio: DEFAULT_MAX_RATIO,
            ratio_grace_bytes: DEFAULT_RATIO_GRACE_BYTES,
        }
    }
}

/// Why a ZIP was not extracted. Each names the ZIP and, where one is at fault, the entry.
#[derive(Debug, thiserror::Error)]
pub enum ZipInputError {
    #[error("cannot open the ZIP: {source}: {zip}")]
    Open { zip: PathBuf, source: io::Error },
    #[error("not a readable ZIP archive: {message}: {zip}")]
    NotZip { zip: PathBuf, message: String },
    #[error("the ZIP lists {entries} entries, more than the limit of {limit} (an entry-count bomb?): {zip}")]
    TooManyEntries { zip: PathBuf, entries: usize, limit: usize },
    #[error("entry \"{entry}\" has an unsafe path (absolute, drive letter or `..`); refusing the whole ZIP: {zip}")]
    UnsafePath { zip: PathBuf, entry: String },
    #[error("entry \"{entry}\" is a symbolic link; ZIPs of photos must not contain links: {zip}")]
    Symlink { zip: PathBuf, entry: String },
    #[error("entry \"{entry}\" is encrypted; give an unencrypted ZIP: {zip}")]
    Encrypted { zip: PathBuf, entry: String },
    #[error(
        "the ZIP decompresses past {limit} bytes in total (at entry \"{entry}\"); a zip bomb or far too large: {zip}"
    )]
    TooLarge { zip: PathBuf, entry: String, limit: u64 },
    #[error("entry \"{entry}\" expands more than {limit}:1 (a zip bomb?): {zip}")]
    RatioTooHigh { zip: PathBuf, entry: String, limit: f64 },
    #[error("entry \"{entry}\" cannot be read: {message}: {zip}")]
    Entry { zip: PathBuf, entry: String, message: String },
    #[error("the ZIP holds no files: {zip}")]
    Empty { zip: PathBuf },
    #[error("the extraction folder already exists; extraction writes only into a new folder: {dest}")]
    DestinationExists { dest: PathBuf },
    #[error("{source}: {path}")]
    Io { path: PathBuf, source: io::Error },
}

/// Entries that archivers add beside the user's files (macOS resource forks, Finder and
/// Explorer metadata); they are skipped so they neither count as photos nor hide a single top
/// folder.
const METADATA_ENTRIES: [&str; 3] = ["__MACOSX", ".DS_Store", "Thumbs.db"];

/// Bytes copied per read while streaming an entry out.
const COPY_BUFFER_BYTES: usize = 64 << 10;

/// Extracts `zip` into the new folder `dest` and returns the folder holding the photos: `dest`
/// itself, or the single top folder inside it (descending while there is exactly one folder and
/// no file). `dest` must not exist; on error nothing is left at `dest` nor beside it.
pub fn extract_zip(zip: &Path, dest: &Path, limits: &ZipLimits) -> Result<PathBuf, ZipInputError> {
    if dest.exists() {
        return Err(ZipInputError::DestinationExists { dest: dest.to_path_buf() });
    }
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|source| ZipInputError::Io { path: parent.to_path_buf(), source })?;
    let temp = temp_dir_beside(dest);
    // A leftover from a crashed run of this same process id cannot hold anything we want.
    let _ = fs::remove_dir_all(&temp);
    fs::create_dir(&temp).map_err(|source| ZipInputError::Io { path: temp.clone(), source })?;
    let result = extract_into(zip, &temp, limits).and_then(|()| {
        fs::rename(&temp, dest).map_err(|source| ZipInputError::Io { path: dest.to_path_buf(), source })
    });
    if let Err(error) = result {
        // Best effort: the extraction error is the one worth reporting.
        let _ = fs::remove_dir_all(&temp);
        return Err(error);
    }
    info!(zip = %zip.display(), dest = %dest.display(), "extracted ZIP");
    photos_folder(dest)
}

/// `parent/.name.partial-<pid>`: same folder (so the rename stays on one file system), hidden,
/// and distinct per process.
fn temp_dir_beside(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

fn extract_into(zip: &Path, out: &Path, limits: &ZipLimits) -> Result<(), ZipInputError> {
    let file = File::open(zip).map_err(|source| ZipInputError::Open { zip: zip.to_path_buf(), source })?;
    let zip_len = file.metadata().map_err(|source| ZipInputError::Open { zip: zip.to_path_buf(), source })?.len();
    let mut archive = ::zip::ZipArchive::new(io::BufReader::new(file))
        .map_err(|e| ZipInputError::NotZip { zip: zip.to_path_buf(), message: e.to_string() })?;
    if archive.len() > limits.max_entries {
        return Err(ZipInputError::TooManyEntries {
            zip: zip.to_path_buf(),
            entries: archive.len(),
            limit: limits.max_entries,
        });
    }
    let mut budget = Budget { zip, zip_len, limits, total: 0 };
    let mut files = 0usize;
    for index in 0..archive.len() {
        let entry = archive
            .by_index(index)
            .map_err(|e| ZipInputError::NotZip { zip: zip.to_path_buf(), message: format!("entry #{index}: {e}") })?;
        files += usize::from(extract_entry(entry, out, &mut budget)?);
    }
    if files == 0 {
        return Err(ZipInputError::Empty { zip: zip.to_path_buf() });
    }
    debug!(zip = %zip.display(), files, bytes = budget.total, "ZIP entries written");
    Ok(())
}

/// Running totals against the limits, for one archive.
struct Budget<'a> {
    zip: &'a Path,
    zip_len: u64,
    limits: &'a ZipLimits,
    total: u64,
}

/// Writes one entry under `out`; returns whether it was a file that was written.
fn extract_entry<R: Read>(
    mut entry: ::zip::read::ZipFile<'_, R>,
    out: &Path,
    budget: &mut Budget,
) -> Result<bool, ZipInputError> {
    let zip = budget.zip;
    let name = entry
        .name()
        .map_err(|e| ZipInputError::Entry {
            zip: zip.to_path_buf(),
            entry: String::from_utf8_lossy(entry.name_raw()).into_owned(),
            message: e.to_string(),
        })?
        .into_owned();
    let relative = safe_relative_path(&name)
        .ok_or_else(|| ZipInputError::UnsafePath { zip: zip.to_path_buf(), entry: name.clone() })?;
    if entry.is_symlink() {
        return Err(ZipInputError::Symlink { zip: zip.to_path_buf(), entry: name });
    }
    if entry.encrypted() {
        return Err(ZipInputError::Encrypted { zip: zip.to_path_buf(), entry: name });
    }
    if is_archiver_metadata(&relative) {
        return Ok(false);
    }
    let path = out.join(&relative);
    if entry.is_dir() {
        fs::create_dir_all(&path).map_err(|source| ZipInputError::Io { path, source })?;
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| ZipInputError::Io { path: parent.to_path_buf(), source })?;
    }
    // `create_new`: a second entry of the same name is refused rather than overwriting the first.
    let mut file = OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| ZipInputError::Entry {
        zip: zip.to_path_buf(),
        entry: name.clone(),
        message: format!("cannot create {}: {e}", path.display()),
    })?;
    let compressed = entry.compressed_size().min(budget.zip_len).max(1);
    copy_limited(&mut entry, &mut file, &name, compressed, budget, &path)?;
    file.sync_all().map_err(|source| ZipInputError::Io { path, source })?;
    Ok(true)
}

/// Streams `reader` into `file`, counting the bytes actually produced against the total and
/// ratio limits.
fn copy_limited(
    reader: &mut impl Read,
    file: &mut File,
    name: &str,
    compressed: u64,
    budget: &mut Budget,
    path: &Path,
) -> Result<(), ZipInputError> {
    let zip = budget.zip;
    let limits = budget.limits;
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    let mut written = 0u64;
    loop {
        let count = match reader.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(count) => count,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(ZipInputError::Entry {
                    zip: zip.to_path_buf(),
                    entry: name.to_owned(),
                    message: e.to_string(),
                });
            }
        };
        written += count as u64;
        budget.total += count as u64;
        if budget.total > limits.max_total_bytes {
            return Err(ZipInputError::TooLarge {
                zip: zip.to_path_buf(),
                entry: name.to_owned(),
                limit: limits.max_total_bytes,
            });
        }
        if written > limits.ratio_grace_bytes && written as f64 > limits.max_ratio * compressed as f64 {
            return Err(ZipInputError::RatioTooHigh {
                zip: zip.to_path_buf(),
                entry: name.to_owned(),
                limit: limits.max_ratio,
            });
        }
        file.write_all(&buffer[..count]).map_err(|source| ZipInputError::Io { path: path.to_path_buf(), source })?;
    }
}

/// The entry name as a path that stays inside the extraction folder, or `None` when it could
/// leave it: absolute (`/x`, `\x`), a drive or stream prefix (`C:`), a `..` component or a NUL.
/// Both `/` and `\` count as separators, since Windows archivers write either.
fn safe_relative_path(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('\0') || name.starts_with(['/', '\\']) {
        return None;
    }
    let mut relative = PathBuf::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => continue,
            ".." => return None,
            _ if part.contains(':') => return None,
            _ => relative.push(part),
        }
    }
    let is_plain = relative.components().all(|c| matches!(c, Component::Normal(_)));
    (is_plain && relative.components().next().is_some()).then_some(relative)
}

fn is_archiver_metadata(relative: &Path) -> bool {
    relative.components().any(|c| METADATA_ENTRIES.iter().any(|m| c.as_os_str() == *m))
}

/// `dest`, or the single folder inside it while it holds exactly one folder and no file.
fn photos_folder(dest: &Path) -> Result<PathBuf, ZipInputError> {
    let mut folder = dest.to_path_buf();
    loop {
        let entries: Vec<fs::DirEntry> = fs::read_dir(&folder)
            .and_then(|read| read.collect::<io::Result<Vec<_>>>())
            .map_err(|source| ZipInputError::Io { path: folder.clone(), source })?;
        match entries.as_slice() {
            [only] if only.file_type().is_ok_and(|t| t.is_dir()) => folder = only.path(),
            _ => return Ok(folder),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_paths_are_kept_relative() {
        assert_eq!(safe_relative_path("a/b.jpg"), Some(PathBuf::from("a/b.jpg")));
        assert_eq!(safe_relative_path("./a//b.jpg"), Some(PathBuf::from("a/b.jpg")));
        assert_eq!(safe_relative_path("a\\b.jpg"), Some(PathBuf::from("a/b.jpg")));
    }

    #[test]
    fn escaping_paths_are_refused() {
        for name in [
            "../evil.jpg",
            "a/../../evil.jpg",
            "a/../b.jpg",
            "/abs.jpg",
            "\\abs.jpg",
            "C:/x.jpg",
            "C:x.jpg",
            "..\\evil.jpg",
            "a\0b",
            "",
            "./",
        ] {
            assert_eq!(safe_relative_path(name), None, "{name:?} must be refused");
        }
    }

    #[test]
    fn metadata_entries_are_recognised() {
        assert!(is_archiver_metadata(Path::new("__MACOSX/photos/._a.jpg")));
        assert!(is_archiver_metadata(Path::new("photos/.DS_Store")));
        assert!(!is_archiver_metadata(Path::new("photos/a.jpg")));
    }
}
