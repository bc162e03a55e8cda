//! Issue 17's measurement on the hard synthetic capture sets (`scripts/hard_sets.sh`): a white
//! mug on a white table, a glossy vase, a dark object on a dark floor, and a capture of one
//! quarter of the way around a textured object. For each set, `kiln reconstruct` from its photos
//! alone, then one table row: photos registered, Chamfer and F-score at 1 % of the object's size
//! against the true mesh (after aligning the job's cameras to the true ones), the held-out PSNR
//! of the textured mesh (`report.json`'s `metrics.quality.mesh_psnr`) and the job's own verdict.
//!
//! Release measurement (`#[ignore]`): the full sets from `$KILN_DATASETS/hard/<set>` where they
//! were rendered, else the CI-sized ones committed in `engine/fixtures/hard/<set>`. Environment:
//! `KILN_HARD_PRESET` (default `reduced`), `KILN_HARD_SOURCE` (`ci` to measure the committed
//! sets even where the full ones exist), `KILN_HARD_SETS` (comma-separated names, default all),
//! `KILN_HARD_ARGS` (more `kiln reconstruct` arguments, space-separated, e.g. `--device cpu`),
//! `KILN_HARD_KEEP` (keep the job folders, whose paths are printed).
//!
//! It asserts only what holds today and must keep holding: every set ends with a model and a
//! verdict, and no set's verdict is `good` while its Chamfer is over 3 % of its size (the
//! issue's honesty rule). Issue 17's goal (Chamfer within 1 % of the size on every set) is
//! printed, not asserted: the engine does not reach it yet.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Instant;

mod common;
use common::kiln;
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::ply::read_mesh;
use kiln_dataset::Dataset;
use kiln_export::frame::ExportFrame;
use kiln_job::mesh_stage::read_mesh_dir;
use kiln_mesh::metrics::{SurfaceMetrics, compare};
use kiln_sfm::eval::umeyama;

/// The sets `scripts/hard_sets.sh` renders, in the order of the table.
const SETS: [&str; 4] = ["white-mug", "glossy-vase", "dark-object", "quarter"];
/// The preset measured when `KILN_HARD_PRESET` is unset: what this 2-core VM runs in minutes per
/// set (the issue asks for `preview` and `medium` on a GPU).
const DEFAULT_PRESET: &str = "reduced";
/// Surface samples per side for Chamfer: as the bunny gate, enough for a stable mean at 0.1 %.
const SAMPLES: usize = 100_000;
/// F-score threshold and issue 17's goal for Chamfer: 1 % of the object's largest extent.
const GOAL_SHARE: f32 = 0.01;
/// The honesty rule: a verdict of `good` with Chamfer over 3 % of the object's size is a lie.
const HONEST_SHARE: f32 = 0.03;
/// Characters of an error message kept in the table's last column (one line of a note).
const NOTE_CHARS: usize = 140;

/// One set's row of the table.
struct Row {
    name: String,
    source: &'static str,
    photos: usize,
    exit: Option<i32>,
    seconds: f64,
    registered: Option<u64>,
    size_m: f32,
    surface: Option<SurfaceMetrics>,
    mesh_psnr: Option<f64>,
    splat_psnr: Option<f64>,
    verdict: Option<String>,
    model: bool,
    note: String,
}

/// The set's folder and where it came from: the full set in `$KILN_DATASETS/hard`, else the
/// committed CI-sized one (or only the latter with `KILN_HARD_SOURCE=ci`).
fn find_set(name: &str) -> Option<(PathBuf, &'static str)> {
    let only_ci = std::env::var("KILN_HARD_SOURCE").is_ok_and(|s| s == "ci");
    let full = kiln_testkit::datasets().join("hard").join(name);
    if !only_ci && full.join("images").is_dir() {
        return Some((full, "full"));
    }
    let ci = kiln_testkit::workspace_root().join("engine/fixtures/hard").join(name);
    ci.join("images").is_dir().then_some((ci, "ci"))
}

/// The job's mesh in the true frame of `truth` (a set with exact poses): the export frame undone,
/// then the similarity that takes the job's camera centres onto the true ones (as
/// `cli_reconstruct.rs` measures bunny-synth).
fn mesh_in_truth_frame(job: &Path, truth: &Path) -> Result<TriMesh, String> {
    let (model, summary) = read_mesh_dir(&job.join("mesh")).map_err(|e| format!("mesh: {e}"))?;
    let world_from_export = ExportFrame::from_row_major(&summary.export_from_world).export_from_world.inverse();
    let estimated = Dataset::open(&job.join("poses/transforms.json")).map_err(|e| format!("poses: {e}"))?;
    let exact = Dataset::open(truth).map_err(|e| format!("truth: {e}"))?;
    let name = |v: &kiln_dataset::View| v.image_path.file_name().unwrap().to_owned();
    let (mut from, mut to) = (Vec::new(), Vec::new());
    for view in &estimated.views {
        if let Some(true_view) = exact.views.iter().find(|t| name(t) == name(view)) {
            from.push(view.camera.center().as_dvec3());
            to.push(true_view.camera.center().as_dvec3());
        }
    }
    let truth_from_world = umeyama(&from, &to).ok_or("the cameras could not be aligned to the true ones")?;
    let mut mesh = model.mesh;
    for p in &mut mesh.positions {
        let world = world_from_export.transform_point3(glam::DVec3::from(p.map(f64::from)));
        *p = truth_from_world.transform_point(world).as_vec3().to_array();
    }
    Ok(mesh)
}

/// Runs `kiln reconstruct` on one set's photos and measures the result.
fn measure(name: &str, set: &Path, source: &'static str, preset: &str, extra: &[String], keep: bool) -> Row {
    let images = set.join("images");
    let photos = std::fs::read_dir(&images).unwrap().filter(|e| e.as_ref().unwrap().path().is_file()).count();
    let gt = read_mesh(&set.join("gt_mesh.ply")).unwrap();
    let (lo, hi) = gt.bounds().unwrap();
    let size_m = (0..3).map(|k| hi[k] - lo[k]).fold(0.0f32, f32::max);
    let out = std::env::temp_dir().join(format!("kiln-hard-{name}-{source}-{preset}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let start = Instant::now();
    let output = kiln()
        .arg("reconstruct")
        .arg(&images)
        .arg("--out")
        .arg(&out)
        .args(["--preset", preset, "--json"])
        .args(extra)
        .output()
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let exit = output.status.code();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let mut row = Row {
        name: name.to_string(),
        source,
        photos,
        exit,
        seconds,
        registered: None,
        size_m,
        surface: None,
        mesh_psnr: None,
        splat_psnr: None,
        verdict: None,
        model: false,
        note: String::new(),
    };
    let report: Option<serde_json::Value> =
        std::fs::read_to_string(out.join("report.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    if let Some(report) = &report {
        let metrics = &report["metrics"];
        row.registered = metrics["poses"]["registered_images"].as_u64();
        row.mesh_psnr = metrics["quality"]["mesh_psnr"].as_f64();
        row.splat_psnr = metrics["quality"]["splat_psnr"].as_f64();
        row.verdict = report["verdict"].as_str().map(str::to_string);
        let stem = if row.verdict.as_deref() == Some("failed") { "model.failed" } else { "model" };
        row.model = ["glb", "usdz", "obj", "ply"].iter().any(|ext| out.join(format!("export/{stem}.{ext}")).is_file());
        if let Some(findings) = report["findings"].as_array() {
            let mut codes: Vec<(&str, usize)> = Vec::new();
            for code in findings.iter().filter_map(|f| f["code"].as_str()) {
                match codes.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, n)) => *n += 1,
                    None => codes.push((code, 1)),
                }
            }
            let shown: Vec<String> =
                codes.iter().map(|&(c, n)| if n > 1 { format!("{c} ×{n}") } else { c.to_string() }).collect();
            row.note = shown.join(", ");
        }
        println!(
            "{name} ({source}): exit {exit:?} in {seconds:.0} s; verdict {}; quality {}; mesh {}; findings {}",
            report["verdict"], metrics["quality"], metrics["mesh"], report["findings"]
        );
    }
    if out.join("mesh").is_dir() {
        match mesh_in_truth_frame(&out, set) {
            Ok(mesh) => row.surface = Some(compare(&mesh, &gt, SAMPLES, GOAL_SHARE * size_m)),
            Err(e) => row.note = format!("{} (not measured: {e})", row.note),
        }
    }
    if row.verdict.is_none() {
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        // The table keeps the message's first clause; the whole of stderr is printed below.
        let first: String = last.split(['.', ';', ':']).take(2).collect::<Vec<_>>().join(":");
        row.note = format!("no verdict: {}", first.chars().take(NOTE_CHARS).collect::<String>());
        println!("{name} ({source}): exit {exit:?} in {seconds:.0} s\n{stderr}");
    }
    if keep {
        println!("{name}: job kept in {}", out.display());
    } else {
        let _ = std::fs::remove_dir_all(&out);
    }
    row
}

fn cell<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "—".to_string(), show)
}

/// The table, in Markdown (it goes into notes as it is).
fn print_table(rows: &[Row], preset: &str) {
    println!("\nHard sets from photos alone at `{preset}`:\n");
    println!(
        "| set | photos | registered | Chamfer mm (% of size) | F@1% | acc / compl mm | textured mesh PSNR dB (splats) | verdict | time s | findings |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let chamfer =
            cell(r.surface, |s| format!("{:.2} ({:.2} %)", s.chamfer_mean * 1000.0, 100.0 * s.chamfer_mean / r.size_m));
        let parts =
            cell(r.surface, |s| format!("{:.2} / {:.2}", s.accuracy_mean * 1000.0, s.completeness_mean * 1000.0));
        let psnr =
            format!("{} ({})", cell(r.mesh_psnr, |p| format!("{p:.1}")), cell(r.splat_psnr, |p| format!("{p:.1}")));
        println!(
            "| {} ({}, {:.0} mm) | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} |",
            r.name,
            r.source,
            r.size_m * 1000.0,
            r.photos,
            cell(r.registered, |n| n.to_string()),
            chamfer,
            cell(r.surface, |s| format!("{:.3}", s.fscore)),
            parts,
            psnr,
            r.verdict.as_deref().unwrap_or("—"),
            r.seconds,
            r.note
        );
    }
    println!();
}

/// Release measurement: every hard set present, photos alone, one row each; see the module doc.
#[test]
#[ignore]
fn hard_sets_from_photos_alone() {
    let preset = std::env::var("KILN_HARD_PRESET").unwrap_or_else(|_| DEFAULT_PRESET.to_string());
    let extra: Vec<String> =
        std::env::var("KILN_HARD_ARGS").map(|a| a.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
    let keep = std::env::var_os("KILN_HARD_KEEP").is_some();
    let wanted: Vec<String> = std::env::var("KILN_HARD_SETS")
        .map(|s| s.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect())
        .unwrap_or_else(|_| SETS.iter().map(|s| s.to_string()).collect());
    let mut rows = Vec::new();
    for name in &wanted {
        assert!(SETS.contains(&name.as_str()), "unknown hard set {name}: one of {SETS:?}");
        let Some((set, source)) = find_set(name) else {
            println!(
                "SKIPPED: hard set {name} is neither in {} nor in engine/fixtures/hard (scripts/hard_sets.sh)",
                kiln_testkit::datasets().join("hard").display()
            );
            continue;
        };
        rows.push(measure(name, &set, source, &preset, &extra, keep));
    }
    if rows.is_empty() {
        println!("SKIPPED: no hard set found; nothing measured");
        return;
    }
    print_table(&rows, &preset);
    let goal: Vec<&str> = rows
        .iter()
        .filter(|r| r.surface.is_none_or(|s| s.chamfer_mean > GOAL_SHARE * r.size_m))
        .map(|r| r.name.as_str())
        .collect();
    println!("issue 17's goal (Chamfer within 1 % of the size) not reached yet on: {goal:?}");

    for r in &rows {
        assert!(
            matches!(r.exit, Some(0 | 3)) && r.verdict.is_some() && r.model,
            "{} ({}) did not end with a model and a verdict: exit {:?}, verdict {:?}, model {}; {}",
            r.name,
            r.source,
            r.exit,
            r.verdict,
            r.model,
            r.note
        );
        assert_eq!(
            r.exit == Some(3),
            r.verdict.as_deref() == Some("failed"),
            "{}: exit code and verdict agree",
            r.name
        );
        if r.verdict.as_deref() == Some("good") {
            let s = r.surface.unwrap_or_else(|| panic!("{}: a `good` model whose surface was not measured", r.name));
            assert!(
                s.chamfer_mean <= HONEST_SHARE * r.size_m,
                "{}: the verdict says good while Chamfer is {:.2} mm, over 3 % of its {:.0} mm",
                r.name,
                s.chamfer_mean * 1000.0,
                r.size_m * 1000.0
            );
        }
    }
}
