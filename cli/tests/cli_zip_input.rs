//! Hostile ZIPs through `kiln reconstruct <file.zip>`: a zip-slip archive and a zip bomb are
//! refused with exit code 2 and a message naming the ZIP and the entry, and nothing is written
//! outside the job folder (nor a partial extraction inside it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-cli-zip-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every path under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            found.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

fn reconstruct(zip: &Path, job: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("KILN_LOG", "warn")
        .arg("reconstruct")
        .arg(zip)
        .arg("--out")
        .arg(job)
        .args(["--preset", "preview", "--until", "poses"])
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Only the ZIP itself and whatever the job folder holds besides an extraction remain.
fn assert_nothing_extracted(root: &Path, zip_name: &str) {
    let outside: Vec<String> = tree(root).into_iter().filter(|p| p != zip_name && !p.starts_with("job")).collect();
    assert!(outside.is_empty(), "written outside the job folder: {outside:?}");
    let inside: Vec<String> =
        tree(&root.join("job")).into_iter().filter(|p| p.starts_with("input") || p.contains("partial")).collect();
    assert!(inside.is_empty(), "no (partial) extraction may remain: {inside:?}");
}

#[test]
fn reconstruct_refuses_a_zip_slip_archive() {
    let root = fresh_dir("slip");
    let zip = root.join("evil.zip");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
    for (name, bytes) in [("photos/a.jpg", &b"x"[..]), ("../../evil.jpg", b"evil")] {
        writer.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap();
    let (code, stderr) = reconstruct(&zip, &root.join("job"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("evil.zip") && stderr.contains("../../evil.jpg") && stderr.contains("unsafe path"),
        "{stderr}"
    );
    assert!(!root.parent().unwrap().join("evil.jpg").exists());
    assert_nothing_extracted(&root, "evil.zip");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn reconstruct_refuses_a_zip_bomb() {
    let root = fresh_dir("bomb");
    let zip = root.join("bomb.zip");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).large_file(true);
    writer.start_file("photos/huge.jpg", options).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..200 {
        writer.write_all(&zeros).unwrap();
    }
    writer.finish().unwrap();
    assert!(std::fs::metadata(&zip).unwrap().len() < 2 << 20, "200 MB of zeros deflate to a small file");
    let (code, stderr) = reconstruct(&zip, &root.join("job"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("bomb.zip") && stderr.contains("photos/huge.jpg") && stderr.contains("zip bomb"),
        "{stderr}"
    );
    assert_nothing_extracted(&root, "bomb.zip");
    std::fs::remove_dir_all(&root).unwrap();
}
