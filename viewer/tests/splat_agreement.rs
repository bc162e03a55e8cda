//! The viewer's splat renderer shows what the trainer learnt: on a model trained here (CPU
//! backend, bunny-mini fixture), the viewer's image of every view is the trainer's own (its CPU
//! reference renderer's) image of the same splats from the same camera, to within
//! [`MIN_AGREEMENT_DB`]; the viewer's PSNR against the photos is within 0.2 dB of the trainer's
//! own evaluation, view by view, with the same background; and the trainer's reported held-out
//! metric is reproduced.
//!
//! Both images hold display-encoded colour, the values a PNG stores: the trainer fits the photos'
//! 8-bit values / 255 without linearising them, and the viewer accumulates and reads back those
//! same values (an `Rgba8Unorm` target, not sRGB; see `kiln_viewer::render`). So no transfer
//! function is applied on either side; the trainer's float image is only rounded to 8 bits the
//! way a PNG of it would be ([`ImageRgb::to_rgb8`]), so that 8-bit rounding, which alone caps
//! the PSNR near 59 dB (58.8 to 60.6 dB measured unrounded), is not counted as a difference
//! between the renderers.
//!
//! `KILN_TRAINED_SPLATS=<train folder>` (holding `splats.ply` and `metrics.json` from
//! `kiln train`) also checks a full-size model against the metrics its training run reported.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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

/// The least PSNR, on every view, between the viewer's image and the trainer's (rounded to 8
/// bits). Measured on lavapipe (2-core VM): 72.0 to 74.9 dB over the 12 views (one-level
/// rounding flips in about 0.3 % of the values). A renderer that is right but rounds differently
/// stays above 48 dB (one level off everywhere); one drawing from a camera moved by half a pixel
/// measured 38.3 to 43.2 dB (while its PSNR against the photos moved by only 0.01 to 0.10 dB,
/// inside [`MAX_PSNR_GAP_DB`]), by one pixel 32.4 to 37.3 dB, rolled by 0.5° 34.9 to 38.7 dB.
/// 45 dB (an RMS difference of 0.56 % of full scale, 1.4 levels) sits between, above the
/// issue's 40 dB.
const MIN_AGREEMENT_DB: f32 = 45.0;

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

/// One view of the same splats drawn by the trainer's CPU reference renderer and by the viewer.
struct Comparison {
    /// PSNR of the trainer's image against the photo (its evaluation).
    trainer: f32,
    /// PSNR of the viewer's image against the photo.
    viewer: f32,
    /// PSNR of the viewer's image against the trainer's, rounded to 8 bits.
    agreement: f32,
}

/// Every view of `views` compared (see [`Comparison`]).
fn compare(
    ctx: &kiln_splats::gpu::GpuContext,
    splats: &Splats,
    views: &Views,
    background: [f32; 3],
) -> Vec<Comparison> {
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
            let trainer_8bit = ImageRgb::from_rgb8(&trainer.to_rgb8());
            Comparison {
                trainer: psnr(&trainer, photo),
                viewer: psnr(&viewer, photo),
                agreement: psnr(&viewer, &trainer_8bit),
            }
        })
        .collect()
}

fn mean(values: impl Iterator<Item = f32>) -> f32 {
    let v: Vec<f32> = values.collect();
    v.iter().sum::<f32>() / v.len().max(1) as f32
}

fn assert_close(comparisons: &[Comparison], what: &str) {
    for (i, Comparison { trainer, viewer, agreement }) in comparisons.iter().enumerate() {
        eprintln!(
            "{what} view {i}: trainer {trainer:.3} dB, viewer {viewer:.3} dB against the photo; viewer against \
             trainer {agreement:.2} dB"
        );
        assert!(
            *agreement >= MIN_AGREEMENT_DB,
            "{what} view {i}: the viewer's image is {agreement} dB from the trainer's (at least {MIN_AGREEMENT_DB})"
        );
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

    let test_comparisons = compare(&ctx, &result.splats, &test, config.background);
    let trainer_test = mean(test_comparisons.iter().map(|c| c.trainer));
    eprintln!("trainer's evaluation {:.3} dB, its reference render {trainer_test:.3} dB", reported.psnr);
    assert!((trainer_test - reported.psnr).abs() < 1e-3, "the reference render must be the trainer's evaluation");
    let all_comparisons = compare(&ctx, &result.splats, &all, config.background);
    assert_close(&all_comparisons, "bunny-mini");
    let (trainer, viewer) =
        (mean(all_comparisons.iter().map(|c| c.trainer)), mean(all_comparisons.iter().map(|c| c.viewer)));
    eprintln!("mean over {} views: trainer {trainer:.3} dB, viewer {viewer:.3} dB", all_comparisons.len());
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
    let comparisons = compare(&ctx, &splats, &test, metrics.background);
    let viewer = mean(comparisons.iter().map(|c| c.viewer));
    eprintln!(
        "{} splats, {} test views: reported {:.3} dB, trainer's renderer {:.3} dB, viewer {viewer:.3} dB",
        splats.len(),
        comparisons.len(),
        metrics.psnr,
        mean(comparisons.iter().map(|c| c.trainer))
    );
    assert!((viewer - metrics.psnr).abs() <= MAX_PSNR_GAP_DB, "viewer {viewer} dB vs reported {} dB", metrics.psnr);
    assert_close(&comparisons, "trained model");
}
