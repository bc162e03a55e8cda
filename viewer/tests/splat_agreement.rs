//! The viewer's splat renderer shows what the trainer learnt: on a model trained here (CPU
//! backend, bunny-mini fixture), the viewer's PSNR against the photos is within 0.2 dB of the
//! trainer's own evaluation, view by view, with the same background; and the trainer's reported
//! held-out metric is reproduced.
//!
//! `KILN_TRAINED_SPLATS=<train folder>` (holding `splats.ply` and `metrics.json` from
//! `kiln train`) also checks a full-size model against the metrics its training run reported.

mod common;

use std::path::{Path, PathBuf};

use kiln_core::camera::Camera;
use kiln_core::image_buf::ImageRgb;
use kiln_core::splats::Splats;
use kiln_dataset::{Dataset, Split, load_view};
use kiln_splats::train::background::auto_background;
use kiln_splats::train::config::TrainConfig;
use kiln_splats::train::cpu::CpuBackend;
use kiln_splats::train::eval::psnr;
use kiln_splats::train::{TrainInput, run};
use kiln_viewer::headless::HeadlessRenderer;
use kiln_viewer::render::RenderOptions;
use kiln_viewer::scene::Scene;

/// The bar: the viewer may differ from the trainer's evaluation by at most this.
const MAX_PSNR_GAP_DB: f32 = 0.2;

struct Views {
    cameras: Vec<Camera>,
    images: Vec<ImageRgb>,
}

fn load(dataset: &Dataset, split: Option<Split>, max_side: u32) -> Views {
    let mut views = Views { cameras: Vec::new(), images: Vec::new() };
    for view in dataset.views.iter().filter(|v| split.is_none_or(|s| v.split == s)) {
        let (camera, image, _) = load_view(view, max_side).unwrap();
        views.cameras.push(camera);
        views.images.push(image);
    }
    views
}

/// Per view: (trainer's PSNR with the CPU reference renderer, the viewer's PSNR).
fn psnr_pairs(
    ctx: &kiln_splats::gpu::GpuContext,
    splats: &Splats,
    views: &Views,
    background: [f32; 3],
) -> Vec<(f32, f32)> {
    let mut renderer = HeadlessRenderer::with_context(ctx, &Scene::from_splats(splats.clone())).unwrap();
    let options =
        RenderOptions { background: [background[0], background[1], background[2], 1.0], ..Default::default() };
    views
        .cameras
        .iter()
        .zip(&views.images)
        .map(|(camera, photo)| {
            let trainer = kiln_splats::render::render(splats, camera, background).output.image;
            let viewer = common::to_image_rgb(&renderer.render(camera, &options).unwrap());
            (psnr(&trainer, photo), psnr(&viewer, photo))
        })
        .collect()
}

fn mean(values: impl Iterator<Item = f32>) -> f32 {
    let v: Vec<f32> = values.collect();
    v.iter().sum::<f32>() / v.len().max(1) as f32
}

fn assert_close(pairs: &[(f32, f32)], what: &str) {
    for (i, (trainer, viewer)) in pairs.iter().enumerate() {
        eprintln!("{what} view {i}: trainer {trainer:.3} dB, viewer {viewer:.3} dB");
        assert!(
            (trainer - viewer).abs() <= MAX_PSNR_GAP_DB,
            "{what} view {i}: trainer {trainer} dB vs viewer {viewer} dB"
        );
    }
}

#[test]
fn viewer_matches_trainer_on_a_model_trained_here() {
    let dir = kiln_testkit::bunny_mini();
    let Some(ctx) = common::gpu() else { return };
    let dataset = Dataset::open(&dir).unwrap();
    let (train, test, all) =
        (load(&dataset, Some(Split::Train), 200), load(&dataset, Some(Split::Test), 200), load(&dataset, None, 200));
    let mut config = TrainConfig::for_steps(300);
    config.init_random_splats = 5_000;
    config.max_splats = 20_000;
    config.densify.opacity_reset_interval = 0;
    config.background = auto_background(&train.images);
    let input = TrainInput {
        train_cameras: &train.cameras,
        train_images: &train.images,
        test_cameras: &test.cameras,
        test_images: &test.images,
        points: dataset.points.as_ref(),
    };
    let mut backend = CpuBackend::new(config.background, config.ssim_weight);
    let result = run(&input, &config, &mut backend, &mut |_| {}).unwrap();
    let reported = result.test.unwrap();

    let test_pairs = psnr_pairs(&ctx, &result.splats, &test, config.background);
    let trainer_test = mean(test_pairs.iter().map(|p| p.0));
    eprintln!("trainer's evaluation {:.3} dB, its reference render {trainer_test:.3} dB", reported.psnr);
    assert!((trainer_test - reported.psnr).abs() < 1e-3, "the reference render must be the trainer's evaluation");
    let all_pairs = psnr_pairs(&ctx, &result.splats, &all, config.background);
    assert_close(&all_pairs, "bunny-mini");
    let (trainer, viewer) = (mean(all_pairs.iter().map(|p| p.0)), mean(all_pairs.iter().map(|p| p.1)));
    eprintln!("mean over {} views: trainer {trainer:.3} dB, viewer {viewer:.3} dB", all_pairs.len());
    // A model that learnt nothing would make the comparison vacuous: it must beat the flat image
    // of each photo's mean colour by a clear margin.
    let flat = mean(all.images.iter().map(|photo| {
        let n = photo.pixels.len() as f32;
        let colour = [0, 1, 2].map(|c| photo.pixels.iter().map(|p| p[c]).sum::<f32>() / n);
        psnr(&ImageRgb::new(photo.width, photo.height, colour), photo)
    }));
    assert!(trainer > flat + 3.0, "the model must have learnt the scene: {trainer} dB vs flat {flat} dB");
}

#[derive(serde::Deserialize)]
struct TrainMetrics {
    psnr: f32,
    background: [f32; 3],
    max_side: u32,
    dataset: PathBuf,
}

#[test]
fn viewer_matches_a_trained_model_s_reported_metrics() {
    let Some(train_dir) = std::env::var_os("KILN_TRAINED_SPLATS").map(PathBuf::from) else {
        eprintln!("SKIPPED: set KILN_TRAINED_SPLATS to a `kiln train` output folder (splats.ply + metrics.json)");
        return;
    };
    let Some(ctx) = common::gpu() else { return };
    let metrics: TrainMetrics =
        serde_json::from_str(&std::fs::read_to_string(train_dir.join("metrics.json")).unwrap()).unwrap();
    let splats = kiln_core::splats::ply::read_splats(&train_dir.join("splats.ply")).unwrap();
    let dataset = Dataset::open(Path::new(&metrics.dataset)).unwrap();
    let test = load(&dataset, Some(Split::Test), metrics.max_side);
    let pairs = psnr_pairs(&ctx, &splats, &test, metrics.background);
    let viewer = mean(pairs.iter().map(|p| p.1));
    eprintln!(
        "{} splats, {} test views: reported {:.3} dB, trainer's renderer {:.3} dB, viewer {viewer:.3} dB",
        splats.len(),
        pairs.len(),
        metrics.psnr,
        mean(pairs.iter().map(|p| p.0))
    );
    assert!((viewer - metrics.psnr).abs() <= MAX_PSNR_GAP_DB, "viewer {viewer} dB vs reported {} dB", metrics.psnr);
    assert_close(&pairs, "trained model");
}
