//! `kiln train` end to end, as a user runs it: the real binary on the repository's bunny-mini
//! fixture, checking the files it writes, its `--json` output, its exit codes, and that what it
//! reports is a model that learnt something: better than the same run stopped before its first
//! step (the random initialisation, which on bunny-mini's mostly grey views already scores above
//! any flat image: 20.13 dB against 18.73 dB held out at 64 px).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;

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

/// `kiln train --json` on the fixture into a fresh `name` folder: the folder and the process.
fn train(name: &str, steps: u32, max_side: u32, device: &str) -> (PathBuf, Output) {
    let out = fresh_dir(name);
    let output = kiln()
        .args(["train", "--steps", &steps.to_string(), "--max-side", &max_side.to_string()])
        .args(["--device", device, "--json", "--out"])
        .arg(&out)
        .arg(fixture())
        .output()
        .unwrap();
    (out, output)
}

/// [`train`] that must succeed: its folder and the metrics it printed.
fn train_ok(name: &str, steps: u32, max_side: u32, device: &str) -> (PathBuf, serde_json::Value) {
    let (out, output) = train(name, steps, max_side, device);
    assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
    (out, serde_json::from_slice(&output.stdout).unwrap())
}

fn number(metrics: &serde_json::Value, key: &str) -> f64 {
    metrics[key].as_f64().unwrap_or_else(|| panic!("metrics.json lacks a number {key}: {metrics}"))
}

#[test]
fn train_writes_splats_and_metrics_and_prints_json() {
    let (out, output) = train("train", 150, 100, "cpu");
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
    let psnr = number(&written, "psnr");
    let ssim = number(&written, "ssim");
    assert!(psnr > 13.0 && psnr < 60.0, "psnr {psnr}");
    assert!(ssim > 0.0 && ssim <= 1.0, "ssim {ssim}");
    // 150 steps on 100×75 images are far from converged, but training must show: measured (2-core
    // VM) 21.21 dB held out against 19.00 dB for the same run stopped before its first step. 1 dB
    // keeps over half the gain; a trainer that does not move the splats fails it.
    let (untrained_out, untrained) = train_ok("train-untrained", 0, 100, "cpu");
    let untrained_psnr = number(&untrained, "psnr");
    assert!(psnr >= untrained_psnr + 1.0, "held-out PSNR {psnr} vs {untrained_psnr} untrained + 1 dB");
    std::fs::remove_dir_all(&untrained_out).unwrap();

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

/// Steps of the GPU run. The scaled recipe resets opacities every tenth of the run, so very short
/// runs end worse than they started (20 steps: 19.45 dB held out against 20.13 dB untrained);
/// 100 steps leave a clear gain (below) in about 55 s on lavapipe at 64 px.
#[cfg(feature = "gpu")]
const GPU_STEPS: u32 = 100;

/// Only in builds with the wgpu backend: without it `--device gpu` is refused by design.
#[cfg(feature = "gpu")]
#[test]
fn train_on_gpu_backend_runs_through_the_cli() {
    let (out, output) = train("train-gpu", GPU_STEPS, 64, "gpu");
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
    let splats = read_splats(&out.join("splats.ply")).unwrap();
    assert_eq!(splats.len() as u64, metrics["num_splats"].as_u64().unwrap());
    let psnr = number(&metrics, "psnr") as f32;
    let background: [f32; 3] = serde_json::from_value(metrics["background"].clone()).unwrap();

    // The same run stopped before its first step, and the same run on the CPU backend.
    let (untrained_out, untrained) = train_ok("train-gpu-untrained", 0, 64, "gpu");
    let (cpu_out, cpu) = train_ok("train-gpu-cpu", GPU_STEPS, 64, "cpu");
    let untrained_splats = read_splats(&untrained_out.join("splats.ply")).unwrap();
    let (untrained_psnr, cpu_psnr) = (number(&untrained, "psnr") as f32, number(&cpu, "psnr") as f32);
    let reference = |splats, split| reference_psnr(splats, split, 64, background);
    let (test_psnr, train_psnr, untrained_train_psnr) = (
        reference(&splats, kiln_dataset::Split::Test),
        reference(&splats, kiln_dataset::Split::Train),
        reference(&untrained_splats, kiln_dataset::Split::Train),
    );
    eprintln!(
        "held out: GPU {psnr:.3} dB (reference render of its splats.ply {test_psnr:.3}), CPU backend \
         {cpu_psnr:.3}, untrained {untrained_psnr:.3}; training views: {train_psnr:.3} vs {untrained_train_psnr:.3} \
         untrained"
    );
    // The reported figure is the written model's: the CPU reference renderer reproduces it
    // (measured within 1e-5 dB on lavapipe).
    assert!((psnr - test_psnr).abs() <= 0.05, "reported {psnr} dB, splats.ply renders {test_psnr} dB");
    // Measured on lavapipe (2-core VM): 21.43 dB held out against 20.13 dB untrained (the flat
    // image of each view's mean colour: 18.73 dB). Half the gain, 0.65 dB, is the bound.
    assert!(psnr >= untrained_psnr + 0.65, "held-out PSNR {psnr} vs {untrained_psnr} untrained + 0.65 dB");
    // On the 9 views it trained on: 22.08 dB against 19.36 dB untrained (flat image 18.19 dB);
    // again about half the gain.
    assert!(
        train_psnr >= untrained_train_psnr + 1.5,
        "training-view PSNR {train_psnr} vs {untrained_train_psnr} untrained + 1.5 dB"
    );
    // Same seed, same recipe: the two backends follow the same path (measured 0.0003 dB apart
    // held out after 100 steps). A quarter of a dB leaves room for other GPUs' float order.
    assert!((psnr - cpu_psnr).abs() <= 0.25, "GPU backend {psnr} dB vs CPU backend {cpu_psnr} dB");
    // The figure alone can miss a GPU backend that learns part of the model wrongly: with the
    // colours (SH) left untrained, the held-out PSNR came out 21.45 dB, as good as the CPU's.
    // The images cannot: the two models' renders on all 12 views agree to 74.7 to 76.9 dB
    // (lavapipe), while the GPU model with its SH swapped for the untrained ones agrees with the
    // CPU model to 33.0 to 37.2 dB only (the untrained model: 22.2 to 26.4 dB). 40 dB, an RMS
    // difference of 1 % of full scale, sits between.
    let cpu_splats = read_splats(&cpu_out.join("splats.ply")).unwrap();
    let agreement = reference_agreement(&splats, &cpu_splats, 64, background);
    eprintln!("renders of the GPU and CPU models agree to {agreement:.2} dB (worst view)");
    assert!(agreement >= 40.0, "GPU and CPU backends' models render {agreement} dB apart on some view");
    for dir in [out, untrained_out, cpu_out] {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The worst PSNR over all the fixture's views between the CPU reference renders of `a` and `b`.
#[cfg(feature = "gpu")]
fn reference_agreement(
    a: &kiln_core::splats::Splats,
    b: &kiln_core::splats::Splats,
    max_side: u32,
    background: [f32; 3],
) -> f32 {
    let dataset = kiln_dataset::Dataset::open(&fixture()).unwrap();
    dataset
        .views
        .iter()
        .map(|view| {
            let (camera, _, _) = kiln_dataset::load_view(view, max_side).unwrap();
            let render = |splats| kiln_splats::render::render(splats, &camera, background).output.image;
            kiln_splats::train::eval::psnr(&render(a), &render(b))
        })
        .fold(f32::INFINITY, f32::min)
}

/// Mean PSNR over the fixture's `split` views of `splats` drawn by the CPU reference renderer
/// (the trainer's own evaluation renderer) over `background`, at `max_side` like `kiln train`.
#[cfg(feature = "gpu")]
fn reference_psnr(
    splats: &kiln_core::splats::Splats,
    split: kiln_dataset::Split,
    max_side: u32,
    background: [f32; 3],
) -> f32 {
    let dataset = kiln_dataset::Dataset::open(&fixture()).unwrap();
    let values: Vec<f32> = dataset
        .views
        .iter()
        .filter(|view| view.split == split)
        .map(|view| {
            let (camera, photo, _) = kiln_dataset::load_view(view, max_side).unwrap();
            let rendered = kiln_splats::render::render(splats, &camera, background).output.image;
            kiln_splats::train::eval::psnr(&rendered, &photo)
        })
        .collect();
    assert!(!values.is_empty(), "no {split:?} views");
    values.iter().sum::<f32>() / values.len() as f32
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
