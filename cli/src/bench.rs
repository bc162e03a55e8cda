//! `kiln bench`: end-to-end benchmarks on the shared datasets, each backend in the same run.

pub mod poses;
#[cfg(feature = "gpu")]
pub mod view;

use std::path::PathBuf;

use anyhow::{Context, Result};
use kiln_dataset::{Dataset, OpenOptions};
use kiln_splats::train::background::auto_background;
use kiln_splats::train::config::TrainConfig;

use crate::train::{load_dataset_views, train_with_progress};
use kiln_protocol::Device;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Splat training: steps/s and held-out PSNR for each backend on one dataset.
    Train(BenchTrainArgs),
    /// Structure from motion beside COLMAP (Debian's `colmap`): wall times, ratio, accuracy.
    Poses(poses::BenchPosesArgs),
    /// The viewer's frame time with synthetic splat clouds (1080p, 100k and 1M splats).
    #[cfg(feature = "gpu")]
    View(view::BenchViewArgs),
}

#[derive(clap::Args)]
pub struct BenchTrainArgs {
    /// Folder holding the shared datasets.
    #[arg(long, env = "KILN_DATASETS", default_value = "../shared/datasets")]
    pub datasets: PathBuf,
    /// Dataset folder name under `--datasets`.
    #[arg(long, default_value = "bunny-synth")]
    pub dataset: String,
    #[arg(long, default_value_t = 2000)]
    pub steps: u32,
    #[arg(long, default_value_t = 200)]
    pub max_side: u32,
    /// Splat cap (the bunny quality test's 40 000 by default).
    #[arg(long, default_value_t = 40_000)]
    pub max_splats: usize,
    /// Backends to compare, in order (`gpu` takes any adapter, lavapipe included).
    #[arg(long, value_delimiter = ',', default_value = "cpu,gpu")]
    pub devices: Vec<Device>,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: &BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Train(args) => bench_train(args),
        BenchCommand::Poses(args) => poses::bench_poses(args),
        #[cfg(feature = "gpu")]
        BenchCommand::View(args) => view::bench_view(args),
    }
}

fn bench_train(args: &BenchTrainArgs) -> Result<()> {
    let path = args.datasets.join(&args.dataset);
    let options = OpenOptions { skip_missing_images: true, ..Default::default() };
    let dataset =
        Dataset::open_with(&path, &options).with_context(|| format!("benchmark dataset {}", path.display()))?;
    let views = load_dataset_views(&dataset, args.max_side)?;
    let mut config = TrainConfig::for_steps(args.steps);
    config.background = auto_background(&views.train_images);
    config.max_splats = args.max_splats;
    let mut rows = Vec::new();
    for &device in &args.devices {
        let result = train_with_progress(&dataset, &views, &config, device)
            .with_context(|| format!("benchmark on --device {device:?}"))?;
        let test = result.test.as_ref();
        rows.push(serde_json::json!({
            "device": result.device,
            "steps": result.steps,
            "train_seconds": result.train_seconds,
            "steps_per_second": f64::from(result.steps) / result.train_seconds.max(1e-9),
            "psnr": test.map(|t| t.psnr),
            "ssim": test.map(|t| t.ssim),
            "num_splats": result.num_splats,
        }));
    }
    let size = views.train_images.first().map(|i| (i.width, i.height)).unwrap_or_default();
    if args.json {
        let report = serde_json::json!({ "dataset": args.dataset, "image_size": [size.0, size.1], "runs": rows });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("train benchmark: {} at {}×{}, {} steps", args.dataset, size.0, size.1, args.steps);
    println!("{:<40} {:>10} {:>10} {:>8} {:>10}", "device", "steps/s", "PSNR dB", "SSIM", "splats");
    for row in &rows {
        println!(
            "{:<40} {:>10.2} {:>10.2} {:>8.4} {:>10}",
            row["device"].as_str().unwrap_or("?"),
            row["steps_per_second"].as_f64().unwrap_or(f64::NAN),
            row["psnr"].as_f64().unwrap_or(f64::NAN),
            row["ssim"].as_f64().unwrap_or(f64::NAN),
            row["num_splats"],
        );
    }
    Ok(())
}
