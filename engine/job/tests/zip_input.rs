//! ZIP input: hostile archives (zip-slip, absolute names, symlinks, bombs, entry floods) are
//! refused with the matching error, nothing is written outside the destination and no partial
//! destination remains; good archives come out whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_job::zip_input::{ZipInputError, ZipLimits, extract_zip};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// A fresh empty folder under the system temp folder, unique per test and process.
fn sandbox(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("kiln-zip-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

/// Builds a ZIP in memory: `add` writes the entries.
fn build_zip(add: impl FnOnce(&mut ZipWriter<Cursor<Vec<u8>>>)) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    add(&mut writer);
    writer.finish().unwrap().into_inner()
}

fn add_file(writer: &mut ZipWriter<Cursor<Vec<u8>>>, name: &str, bytes: &[u8]) {
    writer.start_file(name, deflated()).unwrap();
    writer.write_all(bytes).unwrap();
}

/// Every file and folder under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            found.push(path.strip_prefix(root).unwrap().to_path_buf());
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Writes `bytes` as `root/in/input.zip` and extracts it to `root/work/dest` with `limits`.
fn extract_bytes(root: &Path, bytes: &[u8], limits: &ZipLimits) -> Result<PathBuf, ZipInputError> {
    std::fs::create_dir_all(root.join("in")).unwrap();
    let zip_path = root.join("in/input.zip");
    std::fs::write(&zip_path, bytes).unwrap();
    extract_zip(&zip_path, &root.join("work/dest"), limits)
}

/// After a refused ZIP, `root` holds only the ZIP itself (and the empty parent of `dest`).
fn assert_nothing_written(root: &Path) {
    let expected: Vec<PathBuf> = ["in", "in/input.zip", "work"].iter().map(PathBuf::from).collect();
    assert_eq!(tree(root), expected, "a refused ZIP must leave nothing behind");
}

fn assert_message_names(error: &ZipInputError, entry: &str) {
    let message = error.to_string();
    assert!(message.contains("input.zip"), "message must name the ZIP: {message}");
    assert!(message.contains(entry), "message must name the entry {entry:?}: {message}");
}

#[test]
fn a_single_top_folder_is_descended_into_and_files_are_intact() {
    let root = sandbox("good");
    let photo_a: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let bytes = build_zip(|w| {
        w.add_directory("shoot/", deflated()).unwrap();
        add_file(w, "shoot/a.jpg", &photo_a);
        add_file(w, "shoot/sub/b.png", b"png bytes");
        add_file(w, "__MACOSX/shoot/._a.jpg", b"resource fork");
        add_file(w, "shoot/.DS_Store", b"finder");
    });
    let photos = extract_bytes(&root, &bytes, &ZipLimits::default()).unwrap();
    assert_eq!(photos, root.join("work/dest/shoot"));
    assert_eq!(std::fs::read(photos.join("a.jpg")).unwrap(), photo_a);
    assert_eq!(std::fs::read(photos.join("sub/b.png")).unwrap(), b"png bytes");
    assert!(!root.join("work/dest/__MACOSX").exists(), "archiver metadata is skipped");
    assert!(!photos.join(".DS_Store").exists(), "archiver metadata is skipped");
    let leftovers: Vec<_> =
        tree(&root.join("work")).into_iter().filter(|p| p.to_string_lossy().contains("partial")).collect();
    assert!(leftovers.is_empty(), "temporary folder must be renamed away: {leftovers:?}");
}

#[test]
fn files_at_the_top_level_are_returned_as_the_destination() {
    let root = sandbox("flat");
    let bytes = build_zip(|w| {
        add_file(w, "a.jpg", b"a");
        add_file(w, "b.jpg", b"b");
    });
    let photos = extract_bytes(&root, &bytes, &ZipLimits::default()).unwrap();
    assert_eq!(photos, root.join("work/dest"));
    assert_eq!(std::fs::read(photos.join("b.jpg")).unwrap(), b"b");
}

#[test]
fn parent_traversal_is_refused() {
    for name in ["../evil.jpg", "photos/../../evil.jpg", "..\\evil.jpg"] {
        let root = sandbox("slip");
        let bytes = build_zip(|w| {
            add_file(w, "photos/ok.jpg", b"fine");
            add_file(w, name, b"evil");
        });
        let error = extract_bytes(&root, &bytes, &ZipLimits::default()).unwrap_err();
        assert!(matches!(error, ZipInputError::UnsafePath { ref entry, .. } if entry == name), "{name}: {error:?}");
        assert_message_names(&error, name);
        assert_nothing_written(&root);
    }
}

#[test]
fn absolute_and_drive_paths_are_refused() {
    for name in ["/abs.jpg", "C:/windows/evil.jpg", "C:evil.jpg"] {
        let root = sandbox("abs");
        let bytes = build_zip(|w| add_file(w, name, b"evil"));
        let error = extract_bytes(&root, &bytes, &ZipLimits::default()).unwrap_err();
        assert!(matches!(error, ZipInputError::UnsafePath { ref entry, .. } if entry == name), "{name}: {error:?}");
        assert_message_names(&error, name);
        assert_nothing_written(&root);
    }
    assert!(!Path::new("/abs.jpg").exists(), "nothing may be written at the absolute path");
}

#[test]
fn symlink_entries_are_refused() {
    let root = sandbox("symlink");
    let bytes = build_zip(|w| {
        add_file(w, "photos/a.jpg", b"a");
        w.add_symlink("photos/link.jpg", "/etc/passwd", SimpleFileOptions::default()).unwrap();
    });
    let error = extract_bytes(&root, &bytes, &ZipLimits::default()).unwrap_err();
    assert!(matches!(error, ZipInputError::Symlink { ref entry, .. } if entry == "photos/link.jpg"), "{error:?}");
    assert_message_names(&error, "photos/link.jpg");
    assert_nothing_written(&root);
}

/// 200 MB of zeros, deflated to about 200 kB.
fn zero_bomb() -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    build_zip(|w| {
        w.start_file("bomb.jpg", deflated().large_file(true)).unwrap();
        for _ in 0..200 {
            w.write_all(&zeros).unwrap();
        }
    })
}

#[test]
fn a_zip_bomb_is_stopped_by_the_ratio_limit() {
    let root = sandbox("bomb");
    let bytes = zero_bomb();
    assert!(bytes.len() < 2 << 20, "the bomb should be small: {} bytes", bytes.len());
    let error = extract_bytes(&root, &bytes, &ZipLimits::default()).unwrap_err();
    assert!(matches!(error, ZipInputError::RatioTooHigh { ref entry, .. } if entry == "bomb.jpg"), "{error:?}");
    assert_message_names(&error, "bomb.jpg");
    assert_nothing_written(&root);
}

#[test]
fn a_zip_bomb_is_stopped_by_the_total_size_limit() {
    let root = sandbox("bomb-total");
    let limits = ZipLimits { max_total_bytes: 50 << 20, max_ratio: f64::INFINITY, ..ZipLimits::default() };
    let error = extract_bytes(&root, &zero_bomb(), &limits).unwrap_err();
    assert!(
        matches!(error, ZipInputError::TooLarge { ref entry, limit, .. } if entry == "bomb.jpg" && limit == 50 << 20),
        "{error:?}"
    );
    assert_nothing_written(&root);
}

/// Overwrites every declared uncompressed size (local headers and central directory) with
/// `size`, as a bomb that lies about its contents does.
fn lie_about_sizes(bytes: &mut [u8], size: u32) {
    const LOCAL: [u8; 4] = [0x50, 0x4b, 0x03, 0x04];
    const CENTRAL: [u8; 4] = [0x50, 0x4b, 0x01, 0x02];
    let mut patched = 0;
    for at in 0..bytes.len().saturating_sub(46) {
        let offset = if bytes[at..at + 4] == LOCAL {
            22
        } else if bytes[at..at + 4] == CENTRAL {
            24
        } else {
            continue;
        };
        bytes[at + offset..at + offset + 4].copy_from_slice(&size.to_le_bytes());
        patched += 1;
    }
    assert_eq!(patched, 2, "one local header and one central record expected");
}

#[test]
fn a_bomb_with_lying_headers_is_still_stopped() {
    let root = sandbox("liar");
    let zeros = vec![0u8; 1 << 20];
    let mut bytes = build_zip(|w| {
        w.start_file("small.jpg", deflated()).unwrap();
        for _ in 0..100 {
            w.write_all(&zeros).unwrap();
        }
    });
    lie_about_sizes(&mut bytes, 1000);
    let error = extract_bytes(&root, &bytes, &ZipLimits::default()).unwrap_err();
    // Either the limits stop the stream or the reader notices the lie; never a 100 MB file.
    assert!(
        matches!(error, ZipInputError::RatioTooHigh { ref entry, .. } | ZipInputError::Entry { ref entry, .. } if entry == "small.jpg"),
        "{error:?}"
    );
    assert_nothing_written(&root);
}

#[test]
fn too_many_entries_are_refused_before_extracting() {
    let root = sandbox("flood");
    let bytes = build_zip(|w| {
        for i in 0..50 {
            add_file(w, &format!("p/{i}.jpg"), b"x");
        }
    });
    let limits = ZipLimits { max_entries: 20, ..ZipLimits::default() };
    let error = extract_bytes(&root, &bytes, &limits).unwrap_err();
    assert!(matches!(error, ZipInputError::TooManyEntries { entries: 50, limit: 20, .. }), "{error:?}");
    assert!(error.to_string().contains("input.zip"), "{error}");
    assert_nothing_written(&root);
}

#[test]
fn not_a_zip_and_empty_zips_are_refused() {
    let root = sandbox("notzip");
    let error = extract_bytes(&root, b"this is not a zip archive at all", &ZipLimits::default()).unwrap_err();
    assert!(matches!(error, ZipInputError::NotZip { .. }), "{error:?}");
    assert_nothing_written(&root);

    let root = sandbox("empty");
    let bytes = build_zip(|w| w.add_directory("only-a-folder/", deflated()).unwrap());
    let error = extract_bytes(&root, &bytes, &ZipLimits::default()).unwrap_err();
    assert!(matches!(error, ZipInputError::Empty { .. }), "{error:?}");
    assert_nothing_written(&root);
}

#[test]
fn an_existing_destination_is_never_overwritten() {
    let root = sandbox("exists");
    std::fs::create_dir_all(root.join("work/dest")).unwrap();
    std::fs::write(root.join("work/dest/keep.txt"), b"user data").unwrap();
    let bytes = build_zip(|w| add_file(w, "keep.txt", b"replacement"));
    let error = extract_bytes(&root, &bytes, &ZipLimits::default()).unwrap_err();
    assert!(matches!(error, ZipInputError::DestinationExists { .. }), "{error:?}");
    assert_eq!(std::fs::read(root.join("work/dest/keep.txt")).unwrap(), b"user data");
}
