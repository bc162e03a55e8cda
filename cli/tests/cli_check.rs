//! `kiln check` as a user runs it: exit codes (0 when a job can proceed, 2 when the set cannot
//! work), the human table and `--json`, on the repository's bunny-mini fixture (12 views) and on
//! folders made from it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixture_images() -> PathBuf {
    kiln_testkit::bunny_mini().join("images")
}

fn kiln_check(folder: &Path, json: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.env("KILN_LOG", "error").arg("check").arg(folder);
    if json {
        command.arg("--json");
    }
    command.output().unwrap()
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-cli-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture_photos() -> Vec<PathBuf> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(fixture_images()).unwrap().map(|e| e.unwrap().path()).collect();
    photos.sort();
    photos
}

#[test]
fn a_usable_set_exits_0_and_its_json_parses() {
    let output = kiln_check(&fixture_images(), true);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("--json prints one JSON document");
    let photos = report["photos"].as_array().unwrap();
    assert_eq!(photos.len(), 12);
    assert_ne!(report["outcome"], "will_fail");
    assert_eq!(report["summary"]["photos"], 12);
    // The fixture has no EXIF: its focal length is self-calibrated or left a guess, never EXIF.
    let focal = &report["summary"]["focal_lengths"][0];
    assert!(["self_calibrated", "guessed"].contains(&focal["source"].as_str().unwrap()), "{focal}");
    assert!(focal["focal_px"].as_f64().unwrap() > 0.0, "{focal}");
    // Every photo was measured and overlaps others.
    for photo in photos {
        assert!(photo["measures"]["overlapping_photos"].as_u64().unwrap() >= 1, "{photo}");
        assert!(photo["measures"]["image"]["edge_blur_px"].as_f64().unwrap() > 0.0, "{photo}");
    }
}

#[test]
fn two_photos_exit_2_with_advice() {
    let dir = fresh_dir("two");
    for photo in fixture_photos().iter().take(2) {
        std::fs::copy(photo, dir.join(photo.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not a photo").unwrap();
    let output = kiln_check(&dir, false);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.contains("outcome: will fail"), "{stdout}");
    assert!(stdout.contains("at least 3"), "{stdout}");
    assert!(stdout.contains("notes.txt"), "the ignored file is named: {stdout}");
    assert!(stderr.contains("error:"), "{stderr}");
    // The input is only read.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
}

#[test]
fn problem_photos_are_listed_in_the_table() {
    let dir = fresh_dir("table");
    for photo in fixture_photos() {
        std::fs::copy(&photo, dir.join(photo.file_name().unwrap())).unwrap();
    }
    // 0011.jpg cut in half, 0022.jpg copied.
    let bytes = std::fs::read(fixture_images().join("0011.jpg")).unwrap();
    std::fs::write(dir.join("0011_cut.jpg"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::copy(fixture_images().join("0022.jpg"), dir.join("0022_copy.jpg")).unwrap();
    let output = kiln_check(&dir, false);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let line = |name: &str| stdout.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_string();
    assert!(line("0011_cut.jpg").contains("reject") && line("0011_cut.jpg").contains("could not read"), "{stdout}");
    assert!(
        line("0022_copy.jpg").contains("reject") && line("0022_copy.jpg").contains("identical to 0022.jpg"),
        "{stdout}"
    );
    assert!(stdout.contains("14 photos, 12 usable"), "{stdout}");
    assert!(stdout.contains("focal length ") && stdout.contains("no EXIF"), "{stdout}");
    assert!(stdout.contains("widest range of directions no photo looks from: "), "{stdout}");
}

#[test]
fn a_missing_folder_is_bad_input() {
    let output = kiln_check(Path::new("/nonexistent/kiln-check"), false);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a folder of photos"));
}
