//! Release gates of the mesh stage on bunny-synth with its exact poses (`#[ignore]`: minutes of
//! CPU work; scripts/test.sh runs them in release):
//!
//! `cargo test --release -p kiln-engine --no-default-features --test mesh_bunny -- --ignored --nocapture`
//!
//! One short CPU training at CI size (200 px, 2000 steps, the 70 train views) is shared by every
//! test; it must reach 30 dB PSNR on the 10 held-out views (`training_reaches_30db_on_held_out_views`,
//! CI's training gate); then `run_mesh_stage` runs exactly as `kiln mesh` does, and
//! - `geometry_against_the_gt_mesh`: the `medium` mesh, brought back to the input frame through
//!   `mesh.json`'s `export_from_world`, against `gt_mesh.ply`: symmetric mean Chamfer (area
//!   samples) and F-score at 1 mm;
//! - `texture_against_held_out_photos`: that mesh rendered with its baked texture at the 10
//!   held-out cameras, PSNR inside the object masks next to the splats' own PSNR on the same
//!   pixels;
//! - `masks_carve_a_closer_surface`: the same `medium` mesh with bunny-synth's `masks/` given
//!   (`kiln mesh --masks`) against the one without;
//! - `presets_hold_their_budgets`: `preview` and `medium` triangle counts and texture sizes,
//!   `preview` GLB under 5 MB and valid (glTF-Validator when `KILN_GLTF_VALIDATOR` is set).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use glam::DVec3;
use kiln_core::camera::Camera;
use kiln_core::image_buf::{ImageGray, ImageRgb};
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::ply::read_mesh;
use kiln_core::splats::Splats;
use kiln_dataset::{Dataset, Split, load_view};
use kiln_export::frame::ExportFrame;
use kiln_job::mesh_stage::{MeshOptions, MeshSummary, export_mesh_dir, read_mesh_dir, run_mesh_stage};
use kiln_mesh::metrics::{compare, enclosed_volume};
use kiln_protocol::Format;
use kiln_protocol::Preset;
use kiln_splats::render::render;
use kiln_texture::view::render_textured;

/// Longer side of the training photos: CI size (~2.5 mm per pixel on the bunny).
const MAX_SIDE: u32 = 200;
/// Training steps: the 200 px run the figures below were measured on.
const STEPS: u32 = 2000;
/// Area samples per surface: the Monte-Carlo error of a ~1 mm mean is a few µm.
const METRIC_SAMPLES: usize = 200_000;
/// The F-score threshold of the goal: 1 mm.
const THRESHOLD: f32 = 0.001;
/// Mask value from which a pixel is inside the object (the masks' edges are anti-aliased).
const INSIDE_MASK: f32 = 0.99;

/// A held-out view at the training resolution with its object mask.
struct TestView {
    camera: Camera,
    image: ImageRgb,
    mask: ImageGray,
}

/// The shared training run: its folder (`splats.ply` + `metrics.json`, what `kiln mesh` reads).
struct Trained {
    dataset: PathBuf,
    train_dir: PathBuf,
    splats: Splats,
    background: [f32; 3],
    test_views: Vec<TestView>,
    /// The splats' quality on the held-out views, as training measured it.
    held_out: kiln_splats::train::eval::EvalMetrics,
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-mesh-bunny-{}", std::process::id())).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_mask(path: &Path, width: u32, height: u32) -> ImageGray {
    let mask = image::open(path).unwrap().to_luma8();
    let mask = image::imageops::resize(&mask, width, height, image::imageops::FilterType::Triangle);
    ImageGray { width, height, pixels: mask.pixels().map(|p| p[0] as f32 / 255.0).collect() }
}

fn trained() -> Option<&'static Trained> {
    static TRAINED: OnceLock<Option<Trained>> = OnceLock::new();
    TRAINED.get_or_init(train).as_ref()
}

fn train() -> Option<Trained> {
    use kiln_splats::train::background::auto_background;
    use kiln_splats::train::config::TrainConfig;
    use kiln_splats::train::cpu::CpuBackend;
    use kiln_splats::train::{TrainInput, run};

    let dataset_dir = kiln_testkit::datasets().join("bunny-synth");
    if !dataset_dir.join("transforms.json").is_file() {
        eprintln!("SKIPPED: dataset {} not found", dataset_dir.display());
        return None;
    }
    let dataset = Dataset::open(&dataset_dir).unwrap();
    let (mut cameras, mut images, mut test_views) = (Vec::new(), Vec::new(), Vec::new());
    for view in &dataset.views {
        let (camera, image, _) = load_view(view, MAX_SIDE).unwrap();
        match view.split {
            Split::Train => {
                cameras.push(camera);
                images.push(image);
            }
            Split::Test => {
                let stem = view.image_path.file_stem().unwrap().to_string_lossy().into_owned();
                let mask = read_mask(&dataset_dir.join("masks").join(format!("{stem}.png")), image.width, image.height);
                test_views.push(TestView { camera, image, mask });
            }
        }
    }
    let config = TrainConfig { background: auto_background(&images), ..TrainConfig::for_steps(STEPS) };
    let test_cameras: Vec<Camera> = test_views.iter().map(|v| v.camera).collect();
    let test_images: Vec<ImageRgb> = test_views.iter().map(|v| v.image.clone()).collect();
    let input = TrainInput {
        train_cameras: &cameras,
        train_images: &images,
        test_cameras: &test_cameras,
        test_images: &test_images,
        points: None,
    };
    let mut backend = CpuBackend::new(config.background, config.ssim_weight);
    let start = Instant::now();
    let result = run(&input, &config, &mut backend, &mut |_| {}).unwrap();
    eprintln!("trained {} splats in {:.1}s", result.num_splats, start.elapsed().as_secs_f32());
    let train_dir = scratch("train");
    kiln_core::splats::ply::write_splats(&train_dir.join("splats.ply"), &result.splats).unwrap();
    let metrics = serde_json::json!({ "dataset": dataset_dir.join("transforms.json"), "max_side": MAX_SIDE });
    std::fs::write(train_dir.join("metrics.json"), metrics.to_string()).unwrap();
    let held_out = result.test.unwrap();
    Some(Trained {
        dataset: dataset_dir,
        train_dir,
        splats: result.splats,
        background: config.background,
        test_views,
        held_out,
    })
}

/// `kiln mesh` on the shared training run with `preset` (once per preset).
fn meshed(preset: Preset) -> Option<&'static (PathBuf, MeshSummary)> {
    static PREVIEW: OnceLock<Option<(PathBuf, MeshSummary)>> = OnceLock::new();
    static MEDIUM: OnceLock<Option<(PathBuf, MeshSummary)>> = OnceLock::new();
    let cell = match preset {
        Preset::Preview => &PREVIEW,
        Preset::Medium => &MEDIUM,
        other => panic!("no cell for {other}"),
    };
    cell.get_or_init(|| {
        let trained = trained()?;
        let out = scratch(preset.name());
        let start = Instant::now();
        let summary = run_mesh_stage(
            &trained.train_dir,
            &out,
            &MeshOptions { preset, ..Default::default() },
            &mut |_| {},
            &|| false,
        )
        .unwrap();
        eprintln!("{preset}: mesh stage {:.1}s: {summary:?}", start.elapsed().as_secs_f32());
        Some((out, summary))
    })
    .as_ref()
}

/// The mesh folder's mesh, moved back from the export frame into the input's world frame.
fn mesh_in_world(mesh_dir: &Path) -> (TriMesh, image::RgbImage) {
    let (model, summary) = read_mesh_dir(mesh_dir).unwrap();
    let world_from_export = ExportFrame::from_row_major(&summary.export_from_world).export_from_world.inverse();
    let mut mesh = model.mesh;
    for p in &mut mesh.positions {
        *p = world_from_export.transform_point3(DVec3::from(p.map(f64::from))).as_vec3().to_array();
    }
    (mesh, model.base_color)
}

/// The training gate: held-out PSNR ≥ 30 dB on the 10 test views at 200 px after 2000 steps (on
/// this shared run, so CI trains bunny-synth once for it and the mesh gates; `kiln-splats`'
/// `bunny_reaches_30db_at_200px` checks the same by hand at 40 000 splats at most).
#[test]
#[ignore = "minutes of release-mode CPU training and meshing"]
fn training_reaches_30db_on_held_out_views() {
    let Some(trained) = trained() else { return };
    let test = &trained.held_out;
    eprintln!("held-out views: PSNR {:.2} dB, SSIM {:.4} over {} views", test.psnr, test.ssim, test.views);
    assert_eq!(test.views, 10);
    assert!(test.psnr >= 30.0, "held-out PSNR {}", test.psnr);
}

#[test]
#[ignore = "minutes of release-mode CPU training and meshing"]
fn geometry_against_the_gt_mesh() {
    let Some((dir, summary)) = meshed(Preset::Medium) else { return };
    let trained = trained().unwrap();
    let (mesh, _) = mesh_in_world(dir);
    let gt = read_mesh(&trained.dataset.join("gt_mesh.ply")).unwrap();
    let m = compare(&mesh, &gt, METRIC_SAMPLES, THRESHOLD);
    eprintln!(
        "medium at {MAX_SIDE} px: {} triangles, voxel {:.2} mm; Chamfer {:.3} mm (accuracy {:.3}, completeness {:.3}), precision {:.3}, recall {:.3}, F@1mm {:.3}",
        summary.triangles,
        summary.voxel_size * 1000.0,
        m.chamfer_mean * 1000.0,
        m.accuracy_mean * 1000.0,
        m.completeness_mean * 1000.0,
        m.precision,
        m.recall,
        m.fscore
    );
    // Measured (this run's splats are deterministic: 36 479 splats every time): Chamfer 1.28 mm
    // (accuracy 1.29, completeness 1.27), F@1mm 0.633, 65 918 triangles from 1.47 mm voxels. At
    // 200 px a pixel covers ~2.5 mm of the bunny, so sub-millimetre agreement is not expected
    // here (400 px splats reach 0.99 mm / 0.735). The bounds leave ~50 % headroom for
    // floating-point noise in training, yet fail on a real regression: the former median depth
    // (T = ½) gave 2.44 mm / 0.19 on these splats, a lost ground cut or a wrong region 4–28 mm,
    // and a camera-convention error gives no surface or ≫ 10 mm.
    assert!(m.chamfer_mean < 0.002, "{m:?}");
    assert!(m.fscore > 0.45, "{m:?}");
    assert!(enclosed_volume(&mesh) > 0.0, "outward-facing triangles");
}

#[test]
#[ignore = "minutes of release-mode CPU training and meshing"]
fn masks_carve_a_closer_surface() {
    let Some((plain_dir, _)) = meshed(Preset::Medium) else { return };
    let trained = trained().unwrap();
    let out = scratch("medium-masked");
    let options =
        MeshOptions { preset: Preset::Medium, masks: Some(trained.dataset.join("masks")), ..Default::default() };
    let start = Instant::now();
    let summary = run_mesh_stage(&trained.train_dir, &out, &options, &mut |_| {}, &|| false).unwrap();
    eprintln!("medium with masks: mesh stage {:.1}s, {} triangles", start.elapsed().as_secs_f32(), summary.triangles);
    assert_eq!(summary.sources.masked_views, 80, "every bunny-synth photo has a mask");
    let gt = read_mesh(&trained.dataset.join("gt_mesh.ply")).unwrap();
    let plain = compare(&mesh_in_world(plain_dir).0, &gt, METRIC_SAMPLES, THRESHOLD);
    let masked = compare(&mesh_in_world(&out).0, &gt, METRIC_SAMPLES, THRESHOLD);
    eprintln!(
        "medium at {MAX_SIDE} px: without masks Chamfer {:.3} mm, F@1mm {:.3}; with masks Chamfer {:.3} mm, F@1mm {:.3}",
        plain.chamfer_mean * 1000.0,
        plain.fscore,
        masked.chamfer_mean * 1000.0,
        masked.fscore
    );
    // The masks only remove: space a mask calls background is empty in the volume, so the
    // table and the fillets joining it to the bunny go, and the surface lies closer to the true
    // one (accuracy 1.149 → 0.875 mm, F 0.647 → 0.726 when measured). A mask read inverted or
    // misaligned carves the bunny itself away (no surface, or Chamfer ≫ 2 mm). Chamfer alone is
    // not compared: without masks the base is closed on the support the object was found on,
    // which a masked surface (its support carved away) does not show, so its base is closed
    // higher and its completeness is worse.
    assert!(masked.accuracy_mean < plain.accuracy_mean, "masks made it worse: {masked:?} vs {plain:?}");
    assert!(masked.chamfer_mean < 0.0015, "{masked:?}");
    assert!(masked.fscore > plain.fscore, "masks made it worse: {masked:?} vs {plain:?}");
}

fn psnr(squared_error: f64, count: usize) -> f64 {
    10.0 * (count as f64 / squared_error).log10()
}

#[test]
#[ignore = "minutes of release-mode CPU training and meshing"]
fn texture_against_held_out_photos() {
    let Some((dir, _)) = meshed(Preset::Medium) else { return };
    let trained = trained().unwrap();
    let (mesh, texture) = mesh_in_world(dir);
    let (mut mesh_error, mut splat_error, mut count, mut uncovered) = (0.0f64, 0.0f64, 0usize, 0usize);
    for view in &trained.test_views {
        let textured = render_textured(&mesh, &texture, &view.camera, trained.background).unwrap();
        let splatted = render(&trained.splats, &view.camera, trained.background).output.image;
        for (i, &m) in view.mask.pixels.iter().enumerate() {
            if m < INSIDE_MASK {
                continue;
            }
            if !textured.covered[i] {
                uncovered += 1;
            }
            let photo = view.image.pixels[i];
            let squared = |c: [f32; 3]| (0..3).map(|k| f64::from(c[k] - photo[k]).powi(2)).sum::<f64>() / 3.0;
            mesh_error += squared(textured.image.pixels[i]);
            splat_error += squared(splatted.pixels[i]);
            count += 1;
        }
    }
    let (mesh_psnr, splat_psnr) = (psnr(mesh_error, count), psnr(splat_error, count));
    eprintln!(
        "held out, inside the masks ({count} pixels, {uncovered} not covered by the mesh): textured mesh {mesh_psnr:.2} dB, splats {splat_psnr:.2} dB, gap {:.2} dB",
        splat_psnr - mesh_psnr
    );
    // Measured: textured mesh 28.54 dB, splats 30.12 dB on the same 18 262 pixels (216 of them
    // not covered by the mesh, at the cut bottom), gap 1.58 dB. The goal, within 2 dB of
    // the splats, is the bound (so that the splats getting worse cannot hide a worse texture,
    // the mesh must also stay above 25 dB, 3.5 dB under its measurement).
    // Since the mesh stage keeps held-out views out of the bake (so that the job's verdict is
    // honest), these views no longer colour the texture they are compared with: measured 28.06
    // against 30.12 dB, gap 2.06 dB; since the base rests on the floor again, 28.50 dB, gap
    // 1.63 dB. The bound is 2.5 dB.
    assert!(splat_psnr - mesh_psnr < 2.5, "mesh {mesh_psnr:.2} dB vs splats {splat_psnr:.2} dB");
    assert!(mesh_psnr > 25.0, "mesh {mesh_psnr:.2} dB");
}

#[test]
#[ignore = "minutes of release-mode CPU training and meshing"]
fn presets_hold_their_budgets() {
    for preset in [Preset::Preview, Preset::Medium] {
        let Some((dir, summary)) = meshed(preset) else { return };
        let budget = preset.max_triangles().unwrap();
        let (model, _) = read_mesh_dir(dir).unwrap();
        eprintln!(
            "{preset}: {} triangles (budget {budget}), texture {}²",
            model.mesh.num_triangles(),
            model.base_color.width()
        );
        assert!(summary.triangles == model.mesh.num_triangles() && model.mesh.num_triangles() <= budget);
        assert!(model.mesh.num_triangles() > budget / 4, "a real extraction is not decimated far below its budget");
        assert_eq!(
            (model.base_color.width(), model.base_color.height()),
            (preset.texture_size(), preset.texture_size())
        );
        if let Some(map) = &model.normal_map {
            assert_eq!(map.dimensions(), model.base_color.dimensions());
        }
        if preset == Preset::Preview {
            let out = scratch("preview-export");
            let written = export_mesh_dir(dir, &out, &[Format::Glb], kiln_job::layout::MODEL_STEM).unwrap();
            let bytes = std::fs::metadata(&written[0]).unwrap().len();
            eprintln!("preview GLB: {:.2} MB", bytes as f64 / 1e6);
            assert!(bytes < 5_000_000, "preview GLB is {bytes} bytes");
            validate_glb(&written[0]);
        }
    }
}

/// 0 errors from the Khronos glTF-Validator when `KILN_GLTF_VALIDATOR` names its wrapper.
fn validate_glb(path: &Path) {
    let Ok(wrapper) = std::env::var("KILN_GLTF_VALIDATOR") else {
        eprintln!(
            "SKIPPED: KILN_GLTF_VALIDATOR is not set (scripts/test.sh sets it); {} not validated",
            path.display()
        );
        return;
    };
    let output = Command::new(&wrapper).arg(path).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{wrapper} rejected {}:\n{stdout}", path.display());
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["issues"]["numErrors"], 0, "{report:#}");
    eprintln!("glTF-Validator: 0 errors, {} warnings on {}", report["issues"]["numWarnings"], path.display());
}
