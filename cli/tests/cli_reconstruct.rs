//! `kiln reconstruct` end to end, as a user runs it: the real binary on photos only (no poses
//! given), its job folder, `--json` report, resumption and exit codes.
//!
//! Debug tests: bad input of every kind (exit 2, or 1 for an unwritable output folder; the input
//! untouched; nothing half-written), including the repository's bunny-mini photos, too few and
//! too far apart for poses. Release gates (`#[ignore]`, run by scripts/test.sh with
//! `-- --ignored`): half of bunny-synth's photos at CI-sized settings to a GLB and a USDZ that pass the
//! validators (`KILN_GLTF_VALIDATOR`, `KILN_USDZ_VALIDATOR`; SKIPPED when unset), with its poses
//! and mesh scored against the renders' exact cameras and surface, and a job killed
//! with SIGKILL during training that resumes without recomputing its poses, then runs only the
//! export when the formats change and nothing at all when called again unchanged; and the real
//! photo sets (fox, sceaux-castle) finishing at `preview` with every photo registered, a model
//! and a verdict, fox's poses scored against its COLMAP poses; and a box
//! on the printed calibration mat exported in metres from the mat.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

mod common;
use common::{kiln, running_stage, send_signal};
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::ply::read_mesh;
use kiln_dataset::{Dataset, OpenOptions};
use kiln_export::frame::ExportFrame;
use kiln_job::mesh_stage::read_mesh_dir;
use kiln_mesh::metrics::compare;
use kiln_sfm::eval::{PoseErrors, compare_poses, poses_by_file_name, umeyama};

fn fixture_images() -> PathBuf {
    kiln_testkit::bunny_mini().join("images")
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-reconstruct-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every file under `dir` (following no links) with its bytes: to show an input is untouched.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                files.insert(entry.path(), std::fs::read(entry.path()).unwrap());
            }
        }
    }
    files
}

/// No temporary file anywhere under `dir`, and every JSON file under a final name parses.
fn assert_nothing_half_written(dir: &Path) {
    if !dir.exists() {
        return;
    }
    for (path, bytes) in snapshot(dir) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp") && !name.contains(".partial"), "temporary left behind: {}", path.display());
        if name.ends_with(".json") {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
                "{} is not whole JSON",
                path.display()
            );
        }
    }
}

fn validate(variable: &str, file: &Path) {
    assert!(file.is_file(), "{} was not written", file.display());
    let Ok(wrapper) = std::env::var(variable) else {
        println!("SKIPPED: {variable} is not set (scripts/test.sh sets it); {} not validated", file.display());
        return;
    };
    let output = Command::new(&wrapper).arg(file).output().unwrap();
    assert!(
        output.status.success(),
        "{wrapper} rejected {}:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `kiln reconstruct <input> --out <out> <args>` and expects exit code `code` with an error
/// naming `named`; the input is untouched and nothing is half-written.
fn expect_refusal(input: &Path, out: &Path, args: &[&str], code: i32, named: &Path) -> String {
    expect_refusal_from(kiln(), input, out, args, code, named)
}

/// As [`expect_refusal`], running `command` (kiln, possibly wrapped).
fn expect_refusal_from(
    mut command: Command,
    input: &Path,
    out: &Path,
    args: &[&str],
    code: i32,
    named: &Path,
) -> String {
    let before = snapshot(input);
    let output = command.arg("reconstruct").arg(input).arg("--out").arg(out).args(args).output().unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(code), "stderr: {text}");
    assert!(text.contains(&*named.to_string_lossy()), "the message names {}: {text}", named.display());
    assert_eq!(snapshot(input), before, "the input folder changed");
    assert_nothing_half_written(out);
    text
}

/// Debug-sized settings: a few seconds of training on 64-px views, GLB only.
const TINY: [&str; 8] = ["--preset", "preview", "--max-side", "64", "--device", "cpu", "--formats", "glb"];

#[test]
fn bad_input_is_refused_with_exit_2_naming_the_problem() {
    let root = fresh_dir("bad");
    let out = root.join("job");

    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let text = expect_refusal(&empty, &out, &TINY, 2, &empty);
    assert!(text.contains("photo"), "{text}");

    let two = root.join("two");
    std::fs::create_dir_all(&two).unwrap();
    for name in ["0000.jpg", "0003.jpg"] {
        std::fs::copy(fixture_images().join(name), two.join(name)).unwrap();
    }
    let text = expect_refusal(&two, &out, &TINY, 2, &two);
    assert!(text.contains("capture check"), "{text}");

    let corrupt = root.join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    for i in 0..5 {
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
        bytes.extend((0..4000u32).map(|k| (k * 7 + i) as u8));
        std::fs::write(corrupt.join(format!("photo{i}.jpg")), bytes).unwrap();
    }
    expect_refusal(&corrupt, &out, &TINY, 2, &corrupt);

    let junk = root.join("junk");
    std::fs::create_dir_all(junk.join("sub")).unwrap();
    std::fs::write(junk.join("notes.txt"), "not a photo").unwrap();
    std::fs::write(junk.join("data.bin"), [0u8, 1, 2, 3]).unwrap();
    std::fs::write(junk.join("sub/readme.md"), "# nothing").unwrap();
    expect_refusal(&junk, &out, &TINY, 2, &junk);

    let missing = root.join("no-such-folder");
    let output = kiln().arg("reconstruct").arg(&missing).arg("--out").arg(&out).args(TINY).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains(&*missing.to_string_lossy()), "{}", stderr(&output));

    // A job folder inside the photo folder would add files to the user's input.
    let inside = two.join("job");
    expect_refusal(&two, &inside, &TINY, 2, &inside);
    assert!(!inside.exists(), "nothing may be created inside the input");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn unwritable_output_folder_fails_with_exit_1_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let root = fresh_dir("unwritable");
    let locked = root.join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut command = kiln();
    if std::fs::write(locked.join("probe"), b"x").is_ok() {
        // Root (or CAP_DAC_OVERRIDE) writes through chmod: run kiln as `nobody` instead, as a user
        // without rights on the folder would.
        std::fs::remove_file(locked.join("probe")).unwrap();
        if !Path::new("/usr/bin/setpriv").exists() {
            println!("SKIPPED: running as root without setpriv (util-linux): chmod does not stop writes here");
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::remove_dir_all(&root).unwrap();
            return;
        }
        command = Command::new("/usr/bin/setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(env!("CARGO_BIN_EXE_kiln"));
        command.env("KILN_LOG", "warn");
    }
    let out = locked.join("job");
    let text = expect_refusal_from(command, &fixture_images(), &out, &TINY, 1, &out);
    assert!(text.to_lowercase().contains("permission"), "{text}");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
}

fn report_of(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "stderr: {}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn statuses(report: &serde_json::Value) -> Vec<String> {
    report["stages"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap().to_string()).collect()
}

/// bunny-mini's 12 views (200×150, far apart) are too few and too small for poses: the job must
/// stop with exit 2 and say so, with report.json telling which stage stopped it.
#[test]
fn photos_that_give_too_few_poses_are_bad_input() {
    let root = fresh_dir("few-poses");
    let out = root.join("job");
    let text = expect_refusal(&fixture_images(), &out, &TINY, 2, &std::fs::canonicalize(fixture_images()).unwrap());
    assert!(text.contains("camera pose") || text.contains("capture check"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["status"], "failed");
    assert_eq!(report["stages"][0]["status"], "finished", "the check ran");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["photos"].as_array().unwrap().len(), 12, "every input photo is in the manifest");
    assert_eq!(manifest["photos"][0]["sha256"].as_str().unwrap().len(), 64);
    assert!(!out.join("train").exists(), "nothing is trained on a failed pose stage");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_job_folder_another_process_runs_is_refused_naming_it() {
    let root = fresh_dir("busy");
    let out = root.join("job");
    std::fs::create_dir_all(&out).unwrap();
    // What a running `kiln reconstruct` holds: the exclusive lock on job.lock.
    let held = std::fs::File::create(out.join("job.lock")).unwrap();
    held.try_lock().unwrap();
    let text = expect_refusal(&fixture_images(), &out, &TINY, 1, &std::fs::canonicalize(&out).unwrap());
    assert!(text.contains("another kiln process"), "{text}");
    assert!(
        !out.join("manifest.json").exists() && !out.join("report.json").exists(),
        "the running job's files are left alone"
    );
    drop(held);
    // Released (as when the holder exits, however it exits): the job runs, and fails only on its photos.
    expect_refusal(&fixture_images(), &out, &TINY, 2, &std::fs::canonicalize(fixture_images()).unwrap());
    std::fs::remove_dir_all(&root).unwrap();
}

/// Ctrl-C (SIGINT) or SIGTERM while poses are estimated: the job stops within the stage with exit
/// code 130, report.json says where, no record claims the stage finished, and the same command
/// goes on from there.
#[test]
fn interrupted_job_stops_cleanly_with_exit_130_and_resumes() {
    let root = fresh_dir("interrupt");
    let Some(photos) = bunny_subset(&root, 4) else { return };
    let out = root.join("job");
    // The first run does the check; the second finds it done.
    for (signal, check) in [("INT", "finished"), ("TERM", "skipped")] {
        let mut child = kiln()
            .arg("reconstruct")
            .arg(&photos)
            .arg("--out")
            .arg(&out)
            .args(TINY)
            .args(["--until", "poses"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        while running_stage(&out).as_deref() != Some("poses") {
            assert!(child.try_wait().unwrap().is_none(), "kiln ended before the poses stage ran");
            assert!(Instant::now() < deadline, "the poses stage did not start in 10 minutes");
            std::thread::sleep(Duration::from_millis(50));
        }
        send_signal(&child, signal);
        let output = child.wait_with_output().unwrap();
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(130), "SIG{signal}: {text}");
        assert!(text.contains("resume"), "says how to go on: {text}");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
        assert_eq!(report["status"], "cancelled");
        assert_eq!(statuses(&report)[..2], [check, "cancelled"], "SIG{signal}");
        assert!(!out.join("poses/stage.json").exists(), "no record claims the cancelled stage finished");
        assert_nothing_half_written(&out);
    }
    let output = kiln()
        .arg("reconstruct")
        .arg(&photos)
        .arg("--out")
        .arg(&out)
        .args(TINY)
        .args(["--until", "poses", "--json"])
        .output()
        .unwrap();
    let report = report_of(&output);
    assert_eq!(statuses(&report)[..2], ["skipped", "finished"], "the check is not redone; the poses are");
    assert!(out.join("poses/transforms.json").is_file());
    std::fs::remove_dir_all(&root).unwrap();
}

/// A folder of symbolic links to every `step`-th photo of bunny-synth (photos are never copied).
fn bunny_subset(root: &Path, step: usize) -> Option<PathBuf> {
    let images = kiln_testkit::datasets().join("bunny-synth/images");
    if !images.is_dir() {
        println!("SKIPPED: {} is absent (set KILN_DATASETS)", images.display());
        return None;
    }
    let mut names: Vec<PathBuf> = std::fs::read_dir(&images).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let subset = root.join("photos");
    std::fs::create_dir_all(&subset).unwrap();
    for path in names.iter().step_by(step) {
        std::os::unix::fs::symlink(path, subset.join(path.file_name().unwrap())).unwrap();
    }
    Some(subset)
}

/// Photos of bunny-synth the end-to-end gate takes: every second render, 40 views around the
/// bunny. All 80 cost CI four times the matching (3160 pairs instead of 780; the poses stage took
/// five of the test's seven minutes) for the same checks.
const BUNNY_STEP: usize = 2;

/// Release gate: half of bunny-synth's renders, photos only, at CI-sized settings (preview
/// preset, 200 px, 1000 steps) to a GLB and a USDZ that pass the validators, with sane figures.
#[test]
#[ignore]
fn bunny_photos_to_validated_glb_and_usdz() {
    let root = fresh_dir("bunny");
    let Some(images) = bunny_subset(&root, BUNNY_STEP) else { return };
    let photos = std::fs::read_dir(&images).unwrap().count();
    let out = root.join("job");
    let start = Instant::now();
    let output = kiln()
        .arg("reconstruct")
        .arg(&images)
        .arg("--out")
        .arg(&out)
        .args(["--preset", "preview", "--max-side", "200", "--steps", "1000", "--device", "cpu", "--json"])
        .output()
        .unwrap();
    println!("kiln reconstruct bunny-synth ({photos} photos) took {:.0} s", start.elapsed().as_secs_f64());
    let report = report_of(&output);
    println!("{}", stderr(&output));
    assert_eq!(statuses(&report), ["finished"; 5]);
    for stage in report["stages"].as_array().unwrap() {
        println!("  {}: {:.1} s", stage["stage"], stage["seconds"].as_f64().unwrap());
    }
    let metrics = &report["metrics"];
    // Structure from motion against the renders' exact cameras (the one SfM accuracy gate on
    // bunny-synth CI runs; sfm_datasets.rs checks all 80 at the larger presets' settings by
    // hand). Measured at preview on these 40: 0.34 px, median relative rotation 0.016°, centres
    // 0.075 mm (median) from the truth (all 80: 0.41 px, 0.011°, 0.055 mm).
    assert_eq!(metrics["poses"]["registered_images"], photos, "every render registers");
    let reprojection = metrics["poses"]["mean_reprojection_error_px"].as_f64().unwrap();
    assert!(reprojection < 0.8, "mean reprojection error {reprojection} px");
    let truth = kiln_testkit::datasets().join("bunny-synth");
    let errors = pose_errors("bunny-synth", &out, &truth.join("transforms.json"));
    assert!(errors.median_relative_rotation_deg <= 0.05, "{errors:?}");
    // Metres: bunny-synth's poses are metric.
    assert!(errors.median_center_error <= 0.5e-3, "{errors:?}");
    // 1000 steps at 200 px on the grey backdrop: the bunny quality test reaches ~36 dB at 2000.
    let psnr = metrics["train"]["psnr"].as_f64().unwrap();
    assert!(psnr > 24.0 && psnr < 60.0, "held-out PSNR {psnr}");
    let triangles = metrics["mesh"]["triangles"].as_u64().unwrap();
    assert!(triangles > 2_000 && triangles < 25_000, "preview budget: {triangles}");
    let size = metrics["mesh"]["size_m"].as_array().unwrap();
    assert!(size.iter().all(|v| v.as_f64().unwrap() > 0.0));
    for file in metrics["export"]["files"].as_array().unwrap() {
        assert!(file["bytes"].as_u64().unwrap() > 1000, "{file}");
    }
    validate("KILN_GLTF_VALIDATOR", &out.join("export/model.glb"));
    validate("KILN_USDZ_VALIDATOR", &out.join("export/model.usdz"));
    assert_nothing_half_written(&out);
    // The mesh against the true surface, after aligning the job's cameras to the true ones.
    let mesh = mesh_in_truth_frame(&out, &truth);
    let gt = read_mesh(&truth.join("gt_mesh.ply")).unwrap();
    let (lo, hi) = gt.bounds().unwrap();
    let size = (0..3).map(|k| hi[k] - lo[k]).fold(0.0f32, f32::max);
    let at_1mm = compare(&mesh, &gt, 100_000, 0.001);
    let at_1pct = compare(&mesh, &gt, 100_000, 0.01 * size);
    println!(
        "bunny-synth from photos alone: Chamfer {:.3} mm (accuracy {:.3}, completeness {:.3}), F@1mm {:.3}, F@1% ({:.2} mm) {:.3}; verdict {} {}",
        at_1mm.chamfer_mean * 1000.0,
        at_1mm.accuracy_mean * 1000.0,
        at_1mm.completeness_mean * 1000.0,
        at_1mm.fscore,
        10.0 * size,
        at_1pct.fscore,
        report["verdict"],
        metrics["quality"]
    );
    // Measured: `warnings`, for openings left under the bunny's overhangs, which no photo saw;
    // silhouette IoU 0.93 and depth agreement 0.86 on held-out views.
    assert!(matches!(report["verdict"].as_str(), Some("good" | "warnings")), "{}", report["findings"]);
    assert_eq!(metrics["mesh"]["subject"], "object", "the bunny found on its floor");
    // Measured on these 40: Chamfer 1.685 mm (accuracy 0.848, completeness 2.523), F@1mm 0.658,
    // F@1.5mm (1 % of the bunny) 0.775 (all 80: 1.522 mm, 0.711, 0.806) while the base was left
    // open 7 mm above the floor; with the base resting on the floor again, 1.223 mm (accuracy
    // 1.388, completeness 1.058), F@1mm 0.594, F@1.5mm 0.731. Issue 17's goal is 1.0 mm; the
    // bound catches a misplaced, mis-scaled or lost object (centimetres) and a base left open
    // again (1.7 mm), not that gap.
    assert!(at_1mm.chamfer_mean < 0.0015, "{at_1mm:?}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// The job's mesh in the true frame of `truth` (a dataset with exact poses): the export frame
/// undone, then the similarity that takes the job's camera centres onto the true ones.
fn mesh_in_truth_frame(job: &Path, truth: &Path) -> TriMesh {
    let (model, summary) = read_mesh_dir(&job.join("mesh")).unwrap();
    let world_from_export = ExportFrame::from_row_major(&summary.export_from_world).export_from_world.inverse();
    let truth_from_world = truth_from_job_world(job, truth);
    let mut mesh = model.mesh;
    for p in &mut mesh.positions {
        let world = world_from_export.transform_point3(glam::DVec3::from(p.map(f64::from)));
        *p = truth_from_world.transform_point(world).as_vec3().to_array();
    }
    mesh
}

/// The similarity from a job's world to the exact world of `truth` (a dataset with exact poses),
/// fitted to the camera centres.
fn truth_from_job_world(job: &Path, truth: &Path) -> kiln_sfm::eval::Similarity {
    let estimated = Dataset::open(&job.join("poses/transforms.json")).unwrap();
    let exact = Dataset::open(truth).unwrap();
    let name = |v: &kiln_dataset::View| v.image_path.file_name().unwrap().to_owned();
    let (mut from, mut to) = (Vec::new(), Vec::new());
    for view in &estimated.views {
        if let Some(true_view) = exact.views.iter().find(|t| name(t) == name(view)) {
            from.push(view.camera.center().as_dvec3());
            to.push(true_view.camera.center().as_dvec3());
        }
    }
    umeyama(&from, &to).unwrap()
}

/// The job's poses (`poses/transforms.json`) against a dataset's reference poses, matched by
/// photo name, printed.
fn pose_errors(name: &str, job: &Path, reference: &Path) -> PoseErrors {
    let options = OpenOptions { skip_missing_images: true, ..Default::default() };
    let open = |path: &Path| poses_by_file_name(&Dataset::open_with(path, &options).unwrap().views);
    let errors = compare_poses(&open(&job.join("poses/transforms.json")), &open(reference)).expect("comparable poses");
    println!(
        "{name} poses: {} compared; median relative rotation {:.4}°, median rotation {:.4}° after centre alignment, {:.4}° after orientation alignment; centre error median {:.3e}, max {:.3e} (reference units)",
        errors.compared,
        errors.median_relative_rotation_deg,
        errors.median_rotation_deg,
        errors.median_rotation_orientation_aligned_deg,
        errors.median_center_error,
        errors.max_center_error
    );
    errors
}

/// Runs `kiln reconstruct` at `preview` on a real photo set and checks that it ends with a model
/// and a verdict: exit 0 (good or warnings) or 3 (the model kept as failed), every stage
/// finished, the verdict and its figures in report.json, the exported GLB valid, and no stage
/// message that sends the user after conventions Kiln chose itself; then `check` on the job
/// folder and the report, before the job is removed.
fn real_capture_finishes(name: &str, check: impl FnOnce(&Path, &serde_json::Value)) {
    let images = kiln_testkit::datasets().join(name).join("images");
    if !images.is_dir() {
        println!("SKIPPED: {} is absent (set KILN_DATASETS)", images.display());
        return;
    }
    let root = fresh_dir(name);
    let out = root.join("job");
    let start = Instant::now();
    let output = kiln()
        .arg("reconstruct")
        .arg(&images)
        .arg("--out")
        .arg(&out)
        .args(["--preset", "preview", "--json"])
        .output()
        .unwrap();
    println!("kiln reconstruct {name} took {:.0} s, exit {:?}", start.elapsed().as_secs_f64(), output.status.code());
    println!("{}", stderr(&output));
    let report = report_of(&output);
    assert!(matches!(output.status.code(), Some(0 | 3)), "exit {:?}", output.status.code());
    assert_eq!(statuses(&report), ["finished"; 5]);
    let verdict = report["verdict"].as_str().expect("a top-level verdict");
    assert_eq!(output.status.code() == Some(3), verdict == "failed", "exit code and verdict agree");
    let quality = &report["metrics"]["quality"];
    assert!(quality["silhouette_iou"].as_f64().is_some(), "measured on held-out views: {quality}");
    let text = serde_json::to_string(&report).unwrap();
    assert!(!text.contains("convention"), "no advice about conventions Kiln chose: {text}");
    let stem = if verdict == "failed" { "model.failed" } else { "model" };
    validate("KILN_GLTF_VALIDATOR", &out.join(format!("export/{stem}.glb")));
    assert_nothing_half_written(&out);
    check(&out, &report);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Release gate: a box of known size (100 × 70 × 80 mm) standing on the printed A4 mat
/// (`engine/fixtures/mat-box`, 20 renders at 400 × 300), photos only, at `preview` with 500
/// training steps: the job finds
/// the mat and says the scale came from it; against the renders' exact cameras its metres are
/// true within 1 %, its +Y is the true up within 1° and its y = 0 is the mat's plane within a
/// millimetre; the box's top is within 5 % of its true height above it (the mesh's own accuracy
/// at preview on 400-pixel photos, not the scale's). Given `--size-mm` as well, the user's size
/// wins and the report says so. Measured (64 s on two cores): metres 0.2 % off, 10 markers at
/// 0.25 mm RMS; the box 110.6 × 55.8 × 88.5 mm, from 27.2 to 83.0 mm above the mat (at preview's
/// full 1500 steps 106.8 × 53.2 × 78.2, from 29.5 to 82.8): its lowest 30 mm are cut away with
/// the mat's layer (the white paper reconstructs some 20 mm thick from the splats), a gap of the
/// object's segmentation (issue 17 items 1 and 2) that this gate does not yet hold.
#[test]
#[ignore]
fn mat_in_the_photos_gives_metres_and_the_ground() {
    let fixture = kiln_testkit::workspace_root().join("engine/fixtures/mat-box");
    let root = fresh_dir("mat");
    let out = root.join("job");
    let run = |extra: &[&str]| {
        let start = Instant::now();
        let output = kiln()
            .arg("reconstruct")
            .arg(fixture.join("images"))
            .arg("--out")
            .arg(&out)
            .args(["--preset", "preview", "--device", "cpu", "--json"])
            // A third of preview's training: the scale, up and ground come from the markers and
            // the poses, and CI's time is better spent elsewhere.
            .args(["--steps", "500"])
            .args(extra)
            .output()
            .unwrap();
        println!("kiln reconstruct mat-box {extra:?} took {:.0} s\n{}", start.elapsed().as_secs_f64(), stderr(&output));
        report_of(&output)
    };
    let report = run(&[]);
    assert_eq!(statuses(&report), ["finished"; 5]);
    let mesh = &report["metrics"]["mesh"];
    println!("mesh figures: {mesh}");
    assert_eq!(mesh["scale_source"], "mat");
    let mat = &mesh["mat"];
    assert_eq!((mat["layout"].as_str(), mat["used"].as_bool()), (Some("kiln-mat-a4-v1"), Some(true)), "{mat}");
    assert!(mat["markers"].as_u64().unwrap() >= 6 && mat["rms_mm"].as_f64().unwrap() < 2.0, "{mat}");

    // The export frame against the truth: the renders' world is metric, +Z up, the mat on z = 0.
    let (model, summary) = read_mesh_dir(&out.join("mesh")).unwrap();
    assert_eq!(serde_json::to_value(summary.up_source).unwrap(), "mat");
    let truth_from_world = truth_from_job_world(&out, &fixture);
    let world_from_export = ExportFrame::from_row_major(&summary.export_from_world).export_from_world.inverse();
    let scale_error = summary.metres_per_world_unit / truth_from_world.scale - 1.0;
    println!("metres per world unit {:.5} (truth {:.5})", summary.metres_per_world_unit, truth_from_world.scale);
    assert!(scale_error.abs() < 0.01, "scale off by {:.2} %", 100.0 * scale_error);
    let to_truth = |p: glam::DVec3| truth_from_world.transform_point(world_from_export.transform_point3(p));
    let up = to_truth(glam::DVec3::Y) - to_truth(glam::DVec3::ZERO);
    assert!(up.angle_between(glam::DVec3::Z).to_degrees() < 1.0, "export +Y is {up} in the truth");
    let origin = to_truth(glam::DVec3::ZERO);
    assert!(origin.z.abs() < 0.001, "export y = 0 lies {:.2} mm off the mat", origin.z * 1e3);
    let (lo, hi) = model.mesh.bounds().unwrap();
    println!(
        "the box exported: {:.1} × {:.1} × {:.1} mm, from {:.1} to {:.1} mm above the mat (truth 100 × 80 × 70, 0 to 80)",
        1e3 * (hi[0] - lo[0]),
        1e3 * (hi[1] - lo[1]),
        1e3 * (hi[2] - lo[2]),
        1e3 * lo[1],
        1e3 * hi[1]
    );
    assert!((f64::from(hi[1]) / 0.080 - 1.0).abs() < 0.05, "top {:.1} mm above the mat", 1e3 * hi[1]);
    assert!(lo[1] > -0.002, "nothing below the mat: {:.1} mm", 1e3 * lo[1]);

    // The user's size wins over the mat (the mesh stage and export run again, nothing else).
    let report = run(&["--size-mm", "150"]);
    let mesh = &report["metrics"]["mesh"];
    assert_eq!((mesh["scale_source"].as_str(), mesh["mat"]["used"].as_bool()), (Some("user"), Some(false)), "{mesh}");
    let longest = mesh["size_m"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).fold(0.0, f64::max);
    assert!((longest - 0.150).abs() < 1e-4, "{longest}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// Release gate: the fox (50 real phone photos over about 90° of a fox head mounted on a wall)
/// finishes at `preview` with a model of the head alone and a verdict: the wall it hangs on is
/// found in the structure-from-motion points and cut away, the head's silhouettes carve the
/// views (no masks given), and the model stands upright by the cameras' up. Every photo
/// registers, and the poses agree with instant-ngp's COLMAP poses (the one SfM accuracy gate on
/// fox CI runs).
#[test]
#[ignore]
fn fox_photos_finish_with_a_model_of_the_head_alone_and_a_verdict() {
    real_capture_finishes("fox", |job, report| {
        assert_eq!(report["metrics"]["poses"]["registered_images"], 50);
        let mesh = &report["metrics"]["mesh"];
        assert_eq!(mesh["subject"], "object", "the head is found on its wall: {mesh}");
        println!("fox: verdict {}, mesh {mesh}", report["verdict"]);
        let colmap = kiln_testkit::datasets().join("fox/transforms_present.json");
        let errors = pose_errors("fox", job, &colmap);
        // Fox's cameras span little depth, so the similarity fitted to the camera centres carries
        // their noise into its rotation (0.60° median measured at the default settings, while
        // every pairwise rotation agrees to 0.24°). The rotation difference is therefore scored
        // after aligning the orientations, and gauge-free between pairs.
        assert!(errors.median_relative_rotation_deg <= 0.3, "{errors:?}");
        assert!(errors.median_rotation_orientation_aligned_deg <= 0.3, "{errors:?}");
    });
}

/// Release gate: sceaux-castle (11 real photos of a façade) finishes at `preview` with a model
/// of the façade, kept whole as a scene (no object on a support), and a verdict; every photo
/// registers within a pixel of mean reprojection error.
#[test]
#[ignore]
fn sceaux_castle_photos_finish_with_a_model_and_a_verdict() {
    real_capture_finishes("sceaux-castle", |_, report| {
        let poses = &report["metrics"]["poses"];
        assert_eq!(poses["registered_images"], 11);
        assert!(poses["mean_reprojection_error_px"].as_f64().unwrap() <= 1.0, "{poses}");
        assert_eq!(report["metrics"]["mesh"]["subject"], "scene", "a façade is a scene");
        println!("sceaux-castle: verdict {}, mesh {}", report["verdict"], report["metrics"]["mesh"]);
    });
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// Release gate: SIGKILL during training, then the same command: the poses are not recomputed,
/// training goes on from its checkpoint, and the final output is valid.
#[test]
#[ignore]
fn killed_during_training_resumes_from_the_checkpoint() {
    let root = fresh_dir("kill");
    let Some(photos) = bunny_subset(&root, 4) else { return };
    let out = root.join("job");
    // 400 steps, a checkpoint every 100: a resume from step 100, 200 or 300 is shown as well
    // as from any later one, for less than half of the CPU time 1000 steps took.
    let args =
        ["--preset", "preview", "--max-side", "200", "--steps", "400", "--checkpoint-every", "100", "--device", "cpu"];
    let mut child = kiln()
        .arg("reconstruct")
        .arg(&photos)
        .arg("--out")
        .arg(&out)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let checkpoint = out.join("train/checkpoint.bin");
    let deadline = Instant::now() + Duration::from_secs(1200);
    while !checkpoint.exists() {
        assert!(child.try_wait().unwrap().is_none(), "kiln ended before training wrote a checkpoint");
        assert!(Instant::now() < deadline, "no checkpoint after 20 minutes");
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(!out.join("train/stage.json").exists(), "killed before training finished");
    let poses_record = std::fs::read(out.join("poses/stage.json")).unwrap();
    let poses_times = (modified(&out.join("poses/stage.json")), modified(&out.join("poses/transforms.json")));

    let output =
        kiln().arg("reconstruct").arg(&photos).arg("--out").arg(&out).args(args).arg("--json").output().unwrap();
    let report = report_of(&output);
    assert_eq!(statuses(&report), ["skipped", "skipped", "finished", "finished", "finished"]);
    assert_eq!(std::fs::read(out.join("poses/stage.json")).unwrap(), poses_record, "poses were not recomputed");
    assert_eq!((modified(&out.join("poses/stage.json")), modified(&out.join("poses/transforms.json"))), poses_times);
    let resumed = report["metrics"]["train"]["resumed_from_step"].as_u64();
    assert!(resumed.is_some_and(|step| (100..400).contains(&step)), "training resumed from a checkpoint: {resumed:?}");
    assert_eq!(report["metrics"]["train"]["steps"], 400);
    assert!(!checkpoint.exists(), "the checkpoint is removed once training finished");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report, written, "--json prints report.json");
    validate("KILN_GLTF_VALIDATOR", &out.join("export/model.glb"));
    validate("KILN_USDZ_VALIDATOR", &out.join("export/model.usdz"));

    // Other formats: only the export runs again, and the USDZ it no longer asks for goes.
    let mut other = args.to_vec();
    other.extend(["--formats", "glb,obj", "--json"]);
    let run =
        || report_of(&kiln().arg("reconstruct").arg(&photos).arg("--out").arg(&out).args(&other).output().unwrap());
    let third = run();
    assert_eq!(statuses(&third), ["skipped", "skipped", "skipped", "skipped", "finished"]);
    assert_eq!(third["metrics"]["train"], report["metrics"]["train"]);
    assert!(out.join("export/model.obj").is_file() && !out.join("export/model.usdz").exists());
    // Nothing changed: nothing runs.
    assert_eq!(statuses(&run()), ["skipped"; 5]);
    assert_eq!(std::fs::read(out.join("poses/stage.json")).unwrap(), poses_record);
    assert_nothing_half_written(&out);
    std::fs::remove_dir_all(&root).unwrap();
}
