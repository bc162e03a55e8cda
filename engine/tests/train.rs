//! End-to-end training on the CPU backend: a quick smoke run on the repository's bunny-mini
//! fixture, and (ignored, release mode) the quality target on the full bunny-synth data set.

mod train {
    use std::path::{Path, PathBuf};

    use kiln_engine::camera::Camera;
    use kiln_engine::dataset::{Dataset, Split, load_view};
    use kiln_engine::image_buf::ImageRgb;
    use kiln_engine::train::config::TrainConfig;
    use kiln_engine::train::cpu::CpuBackend;
    use kiln_engine::train::eval::psnr;
    use kiln_engine::train::{Progress, TrainInput, TrainResult, run};

    struct Views {
        cameras: Vec<Camera>,
        images: Vec<ImageRgb>,
    }

    fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn datasets_dir() -> PathBuf {
        match std::env::var_os("KILN_DATASETS") {
            Some(dir) => PathBuf::from(dir),
            None => workspace_root().join("../shared/datasets"),
        }
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

    fn train(dir: &Path, max_side: u32, config: &TrainConfig) -> (TrainResult, Vec<Progress>, Views) {
        let dataset = Dataset::open(dir).unwrap();
        let (train_views, test_views) = (load(&dataset, Split::Train, max_side), load(&dataset, Split::Test, max_side));
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
                eprintln!("step {}/{} loss {:.4} splats {} {:.1}s", p.step, p.total, loss.total, p.num_splats, p.elapsed.as_secs_f32());
            }
            reports.push(*p);
        })
        .unwrap();
        (result, reports, test_views)
    }

    #[test]
    fn train_smoke_on_bunny_mini() {
        let dir = workspace_root().join("engine/tests/fixtures/bunny-mini");
        if !dir.join("transforms.json").is_file() {
            eprintln!("SKIPPED: dataset {} not found", dir.display());
            return;
        }
        let mut config = TrainConfig::for_steps(300);
        config.init_random_splats = 5_000;
        config.max_splats = 20_000;
        config.loss_every = 10;
        let (result, reports, test_views) = train(&dir, 200, &config);
        let losses: Vec<f32> = reports.iter().filter_map(|p| p.loss.map(|l| l.total)).collect();
        let (first, last) = (losses[0], losses[losses.len() - 3..].iter().sum::<f32>() / 3.0);
        eprintln!("loss {first:.4} -> {last:.4}, test {:?}, {} splats, {:.1}s", result.test, result.num_splats, result.train_seconds);
        assert!(last < 0.5 * first, "loss must at least halve in 300 steps: {first} -> {last}");
        let test = result.test.unwrap();
        assert_eq!(test.views, 3);
        let flat = test_views.images.iter().map(flat_psnr).sum::<f32>() / 3.0;
        // From 9 training views and 300 steps the held-out views must be clearly better than the
        // best structureless (flat-colour) image.
        assert!(test.psnr > flat + 3.0, "test PSNR {} vs flat-colour baseline {flat}", test.psnr);
    }

    /// Run with `cargo test --release -p kiln-engine --no-default-features bunny_reaches -- --ignored --nocapture`.
    #[test]
    #[ignore = "minutes of release-mode CPU training"]
    fn bunny_reaches_30db_at_200px() {
        let dir = datasets_dir().join("bunny-synth");
        if !dir.join("transforms.json").is_file() {
            eprintln!("SKIPPED: dataset {} not found", dir.display());
            return;
        }
        let config = TrainConfig::for_steps(5000);
        let (result, reports, _) = train(&dir, 200, &config);
        let test = result.test.unwrap();
        let steps_per_s = reports.len() as f64 / result.train_seconds;
        eprintln!(
            "bunny-synth 200px: test PSNR {:.2} dB, SSIM {:.4}, {} steps in {:.1}s ({steps_per_s:.2} steps/s), {} splats, {}",
            test.psnr, test.ssim, result.steps, result.train_seconds, result.num_splats, result.device
        );
        assert_eq!(test.views, 10);
        assert!(test.psnr >= 30.0, "test PSNR {}", test.psnr);
        assert!(result.train_seconds < 600.0, "took {}s", result.train_seconds);
    }
}
