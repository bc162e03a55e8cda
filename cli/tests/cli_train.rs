//! `kiln train` end to end, as a user runs it: the real binary on the repository's bunny-mini
//! fixture, checking the files it writes, its `--json` output and its exit codes.

use std::path::{Path, PathBuf};

use kiln_core::splats::ply::read_splats;

mod common;
use common::kiln;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/fixtures/bunny-mini")
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-cli-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn train_writes_splats_and_metrics_and_prints_json() {
    let out = fresh_dir("train");
    let output = kiln()
        .args(["train", "--steps", "150", "--max-side", "100", "--device", "cpu", "--json", "--out"])
        .arg(&out)
        .arg(fixture())
        .output()
        .unwrap();
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));

    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(printed, written, "--json prints exactly metrics.json");
    for key in ["psnr", "ssim", "steps", "num_splats", "train_seconds", "device"] {
        assert!(!written[key].is_null(), "metrics.json lacks {key}: {written}");
    }
    assert_eq!(written["steps"], 150);
    assert!(written["device"].as_str().unwrap().starts_with("cpu"));
    // 150 steps on 100×75 images: far from converged, but well above a blank render of the
    // background (about 10 dB on these views), and SSIM a valid fraction.
    let psnr = written["psnr"].as_f64().unwrap();
    let ssim = written["ssim"].as_f64().unwrap();
    assert!(psnr > 13.0 && psnr < 60.0, "psnr {psnr}");
    assert!(ssim > 0.0 && ssim <= 1.0, "ssim {ssim}");

    let splats = read_splats(&out.join("splats.ply")).unwrap();
    assert_eq!(splats.len() as u64, written["num_splats"].as_u64().unwrap());
    assert!(splats.means.iter().flatten().all(|v| v.is_finite()));
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// Only in builds with the wgpu backend: without it `--device gpu` is refused by design.
#[cfg(feature = "gpu")]
#[test]
fn train_on_gpu_backend_runs_through_the_cli() {
    let out = fresh_dir("train-gpu");
    let output = kiln()
        .args(["train", "--steps", "20", "--max-side", "64", "--device", "gpu", "--json", "--out"])
        .arg(&out)
        .arg(fixture())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && stderr.contains("no wgpu adapter") {
        assert!(
            std::env::var_os("KILN_REQUIRE_GPU").is_none(),
            "KILN_REQUIRE_GPU is set and there is no adapter: {stderr}"
        );
        println!("SKIPPED: no wgpu adapter on this machine ({stderr})");
        return;
    }
    assert!(output.status.success(), "stderr: {stderr}");
    let metrics: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(!metrics["device"].as_str().unwrap().starts_with("cpu"), "{metrics}");
    assert!(metrics["psnr"].as_f64().unwrap().is_finite());
    assert_eq!(read_splats(&out.join("splats.ply")).unwrap().len() as u64, metrics["num_splats"].as_u64().unwrap());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn bad_input_exits_2_and_names_the_file() {
    let out = fresh_dir("bad");
    let missing = fresh_dir("no-such-dataset");
    let output = kiln().args(["train", "--steps", "1", "--out"]).arg(&out).arg(&missing).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&*missing.to_string_lossy()), "error should name the path: {stderr}");
    assert!(!out.join("splats.ply").exists());

    // A transforms.json whose pose holds NaN.
    let dataset = fresh_dir("nan-pose");
    std::fs::create_dir_all(dataset.join("images")).unwrap();
    for entry in std::fs::read_dir(fixture().join("images")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dataset.join("images").join(entry.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(fixture().join("transforms.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["frames"][1]["transform_matrix"][0][3] = serde_json::Value::String("NaN".into());
    let broken = serde_json::to_string(&json).unwrap().replace("\"NaN\"", "NaN");
    std::fs::write(dataset.join("transforms.json"), broken).unwrap();
    let output = kiln().args(["train", "--steps", "1", "--out"]).arg(&out).arg(&dataset).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("transforms.json") && stderr.contains("frames[1]"), "{stderr}");
    std::fs::remove_dir_all(&dataset).unwrap();
}
