//! End-to-end training on the CPU backend: a quick smoke run on the repository's bunny-mini
//! fixture, and (ignored, release mode) the quality target on the full bunny-synth data set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod train {
    use std::path::Path;

    use kiln_core::camera::Camera;
    use kiln_core::image_buf::ImageRgb;
    use kiln_dataset::{Dataset, Split, load_view};
    use kiln_splats::render::render;
    use kiln_splats::train::background::auto_background;
    use kiln_splats::train::config::TrainConfig;
    use kiln_splats::train::cpu::CpuBackend;
    use kiln_splats::train::eval::psnr;
    use kiln_splats::train::{Progress, TrainInput, TrainResult, run};

    struct Views {
        cameras: Vec<Camera>,
        images: Vec<ImageRgb>,
    }

    fn load(dataset: &Dataset, split: Split, max_side: u32) -> Views {
        let mut views = Views { cameras: Vec::new(), images: Vec::new() };
        for view in dataset.views.iter().filter(|v| v.split == split) {
            let (camera, image, _mask) = load_view(view, max_side).unwrap();
            views.cameras.push(camera);
            views.images.push(image);
        }
        views
    }

    /// PSNR of the flat image of the target's mean colour: what a model that learnt nothing about
    /// the structure of the scene would reach.
    fn flat_psnr(target: &ImageRgb) -> f32 {
        let n = target.pixels.len() as f32;
        let mean = [0, 1, 2].map(|c| target.pixels.iter().map(|p| p[c]).sum::<f32>() / n);
        psnr(&ImageRgb::new(target.width, target.height, mean), target)
    }

    fn train(
        dir: &Path,
        max_side: u32,
        config: &TrainConfig,
    ) -> (TrainResult, Vec<Progress>, Views, Views, TrainConfig) {
        let dataset = Dataset::open(dir).unwrap();
        let (train_views, test_views) = (load(&dataset, Split::Train, max_side), load(&dataset, Split::Test, max_side));
        let config = &TrainConfig { background: auto_background(&train_views.images), ..config.clone() };
        let input = TrainInput {
            train_cameras: &train_views.cameras,
            train_images: &train_views.images,
            test_cameras: &test_views.cameras,
            test_images: &test_views.images,
            points: dataset.points.as_ref(),
        };
        let mut backend = CpuBackend::new(config.background, config.ssim_weight);
        let mut reports = Vec::new();
        let result = run(&input, config, &mut backend, &mut |p| {
            if let Some(loss) = p.loss {
                eprintln!(
                    "step {}/{} loss {:.4} splats {} {:.1}s",
                    p.step,
                    p.total,
                    loss.total,
                    p.num_splats,
                    p.elapsed.as_secs_f32()
                );
            }
            reports.push(*p);
        })
        .unwrap();
        (result, reports, train_views, test_views, config.clone())
    }

    #[test]
    fn train_smoke_on_bunny_mini() {
        let dir = kiln_testkit::bunny_mini();
        if !dir.join("transforms.json").is_file() {
            eprintln!("SKIPPED: dataset {} not found", dir.display());
            return;
        }
        let mut config = TrainConfig::for_steps(500);
        config.init_random_splats = 5_000;
        config.max_splats = 20_000;
        config.loss_every = 10;
        // The scaled recipe would reset opacities every 50 steps, faster than they recover.
        config.densify.opacity_reset_interval = 0;
        let (result, reports, train_views, test_views, config) = train(&dir, 200, &config);
        let losses: Vec<f32> = reports.iter().filter_map(|p| p.loss.map(|l| l.total)).collect();
        // Means over 3 readings (3 different views) at each end.
        let (first, last) =
            (losses[..3].iter().sum::<f32>() / 3.0, losses[losses.len() - 3..].iter().sum::<f32>() / 3.0);
        let test = result.test.unwrap();
        let flat = test_views.images.iter().map(flat_psnr).sum::<f32>() / test_views.images.len() as f32;
        // The same recipe stopped before its first step: the random initialisation, evaluated the
        // same way. What a trainer that never updates (or whose updates are lost) would report.
        let (untrained, ..) = train(&dir, 200, &TrainConfig { steps: 0, ..config.clone() });
        let untrained = untrained.test.unwrap();
        eprintln!(
            "loss {first:.4} -> {last:.4}, test {test:?} (flat {flat:.2}, untrained {untrained:?}), {} splats, {:.1}s",
            result.num_splats, result.train_seconds
        );
        assert!(last < 0.5 * first, "loss must at least halve in 500 steps: {first} -> {last}");
        assert_eq!(test.views, 3);
        // Held out: 9 training views far apart say little about the 3 held-out ones (the checkered
        // floor fills most of each image), so the held-out PSNR sits on a plateau set by the views,
        // not by the training. Measured on a 2-core VM: 18.38 dB after these 500 steps, 18.37 dB
        // with SH degree 0, 18.36 dB after 1000 steps; the untrained initialisation 18.46 dB. The
        // flat image of each view's own mean colour (the best flat image there is, so above the
        // background alone: 16.75 dB) reaches 17.48 dB: the model is 0.90 dB above it (0.69 to
        // 1.26 dB per view). Half a dB keeps 0.4 dB for other machines' rounding and still fails a
        // model worse than a grey card: diverged, NaN, or evaluated against the wrong photos.
        assert!(test.psnr >= flat + 0.5, "test PSNR {} vs flat-colour baseline {flat} + 0.5 dB", test.psnr);
        // PSNR cannot tell training from none here (the grey random splats score as well as a flat
        // image); held-out structure can: SSIM rises from 0.566 untrained to 0.610 (0.612 with SH
        // degree 0, 0.636 after 1000 steps). A gain of at least 0.02 keeps half the measured one.
        assert!(
            test.ssim >= untrained.ssim + 0.02,
            "held-out SSIM {} vs the untrained initialisation's {} + 0.02",
            test.ssim,
            untrained.ssim
        );
        // On the views it trained on, the model must beat the flat image by a wide margin
        // (measured 23.47 dB vs 16.97 dB; 5 dB is a third of the error energy left).
        let n = train_views.images.len() as f32;
        let (train_psnr, train_flat) = train_views
            .cameras
            .iter()
            .zip(&train_views.images)
            .map(|(camera, image)| {
                (psnr(&render(&result.splats, camera, config.background).output.image, image), flat_psnr(image))
            })
            .fold((0.0, 0.0), |(a, b), (p, f)| (a + p / n, b + f / n));
        eprintln!("training views: PSNR {train_psnr:.2} (flat {train_flat:.2})");
        assert!(train_psnr > train_flat + 5.0, "training-view PSNR {train_psnr} vs flat {train_flat}");
    }

    /// Run with `cargo test --release -p kiln-engine --no-default-features bunny_reaches -- --ignored --nocapture`.
    #[test]
    #[ignore = "minutes of release-mode CPU training"]
    fn bunny_reaches_30db_at_200px() {
        let dir = kiln_testkit::datasets().join("bunny-synth");
        if !dir.join("transforms.json").is_file() {
            eprintln!("SKIPPED: dataset {} not found", dir.display());
            return;
        }
        // 2000 steps of the scaled 3DGS recipe, at most 40 000 splats: measured 36.6 dB in 309 s
        // (6.5 steps/s, 36 825 splats) while other builds shared the 2 cores (load average 5 to 8).
        let config = TrainConfig { max_splats: 40_000, ..TrainConfig::for_steps(2000) };
        let (result, reports, ..) = train(&dir, 200, &config);
        let test = result.test.unwrap();
        let steps_per_s = reports.len() as f64 / result.train_seconds;
        eprintln!(
            "bunny-synth 200px: test PSNR {:.2} dB, SSIM {:.4}, {} steps in {:.1}s ({steps_per_s:.2} steps/s), {} splats, {}",
            test.psnr, test.ssim, result.steps, result.train_seconds, result.num_splats, result.device
        );
        assert_eq!(test.views, 10);
        assert!(test.psnr >= 30.0, "test PSNR {}", test.psnr);
        // Wall time is a benchmark figure (`kiln bench train`), not an assertion.
    }
}
