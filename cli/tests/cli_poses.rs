//! `kiln poses` end to end, as a user runs it: the real binary, checking the exit code and message
//! for input it cannot use (bunny-mini photos), and on 8 neighbouring bunny-synth views (from
//! `$KILN_DATASETS`, `SKIPPED` when absent) the three outputs and `--json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use kiln_dataset::Dataset;
use kiln_dataset::colmap::ColmapModel;

mod common;
use common::{kiln, synth_images};

fn fixture_images() -> PathBuf {
    kiln_testkit::bunny_mini().join("images")
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-cli-poses-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn poses_on_too_few_photos_exits_2_naming_the_folder() {
    let photos = fresh_dir("two-photos");
    std::fs::create_dir_all(&photos).unwrap();
    for name in ["0000.jpg", "0003.jpg"] {
        std::fs::copy(fixture_images().join(name), photos.join(name)).unwrap();
    }
    let out = fresh_dir("two-photos-out");
    let output = kiln().arg("poses").arg(&photos).arg("--out").arg(&out).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(&photos.display().to_string()), "{stderr}");
    assert!(stderr.contains("found 2") && stderr.contains("at least 3"), "{stderr}");
    assert!(!out.join("transforms.json").exists(), "nothing is written for unusable input");

    let missing = photos.join("no-such-folder");
    let output = kiln().arg("poses").arg(&missing).arg("--out").arg(&out).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("no-such-folder"), "{stderr}");
    std::fs::remove_dir_all(&photos).unwrap();
}

#[test]
fn poses_writes_colmap_transforms_and_report() {
    let Some(source) = synth_images() else { return };
    let photos = fresh_dir("synth-photos");
    std::fs::create_dir_all(&photos).unwrap();
    for k in 17..25 {
        let name = format!("{k:04}.jpg");
        std::fs::copy(source.join(&name), photos.join(&name)).unwrap();
    }
    let listing = |dir: &Path| {
        let mut entries: Vec<(String, u64)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
            .collect();
        entries.sort();
        entries
    };
    let before = listing(&photos);
    let out = fresh_dir("synth-out");
    let output = kiln()
        .args(["poses", "--json", "--max-features", "1500", "--max-image-side", "400", "--out"])
        .arg(&out)
        .arg(&photos)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    assert_eq!(listing(&photos), before, "the photo folder is only read");
    assert!(stderr.contains("registered"), "the summary is printed on stderr: {stderr}");

    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("poses-report.json")).unwrap()).unwrap();
    assert_eq!(printed, written, "--json prints exactly poses-report.json");
    let registered = written["registered"].as_u64().unwrap();
    assert_eq!(written["total"], 8);
    assert_eq!(registered, 8, "{stderr}");

    let model = ColmapModel::read(&out.join("sparse/0")).unwrap();
    assert_eq!(model.images.len() as u64, registered);
    assert!(!model.points3d.is_empty());
    let dataset = Dataset::open(&out).unwrap();
    assert_eq!(dataset.views.len() as u64, registered);
    assert!(dataset.views.iter().all(|v| v.image_path.is_file()));
    assert!(dataset.points.is_some_and(|p| p.positions.len() == model.points3d.len()));
    assert!(ColmapModel::read(&out.join("sparse-text/0")).unwrap() == model, "text and binary models agree");
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&photos).unwrap();
}
