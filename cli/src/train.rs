//! `kiln train`: posed dataset in, `splats.ply` and `metrics.json` out.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kiln_core::image_buf::ImageRgb;
use kiln_dataset::{Dataset, DatasetError, OpenOptions};
use kiln_job::train_stage::{self, metrics_json, write_train_outputs};
use kiln_splats::train::background::auto_background;
use kiln_splats::train::config::TrainConfig;
use kiln_splats::train::{Progress, TrainResult};

pub use kiln_job::train_stage::LoadedViews;

use crate::progress::StageBar;
use kiln_protocol::Device;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// A transforms.json, a folder holding one, or a COLMAP dataset folder.
    pub dataset: PathBuf,
    /// Output folder for splats.ply and metrics.json (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Optimisation steps. 7000 is the reference implementation's first evaluation point.
    #[arg(long, default_value_t = 7000)]
    pub steps: u32,
    /// Images are downscaled on load so that their longer side is at most this many pixels.
    #[arg(long, default_value_t = 1600)]
    pub max_side: u32,
    /// Training device: cpu, gpu (any adapter, software ones included) or auto (a hardware GPU if
    /// there is one, else the CPU).
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// Colour behind the splats: `auto` (the photos' uniform border colour if they have one, else
    /// black), `black`, `white`, or `R,G,B` in 0..1.
    #[arg(long, default_value = "auto", value_parser = parse_background)]
    pub background: Background,
    /// Densification never grows the model beyond this many splats.
    #[arg(long, default_value_t = 200_000)]
    pub max_splats: usize,
    /// Seed for initialisation and view order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Leave out views whose image file is missing instead of failing.
    #[arg(long)]
    pub skip_missing_images: bool,
    /// Print metrics.json on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let options = OpenOptions { skip_missing_images: args.skip_missing_images, ..Default::default() };
    let dataset = Dataset::open_with(&args.dataset, &options).inspect_err(|error| {
        if matches!(error, DatasetError::MissingImages { .. }) {
            eprintln!("hint: --skip-missing-images trains on the images that are there");
        }
    })?;
    let views = load_dataset_views(&dataset, args.max_side)?;
    let mut config = TrainConfig::for_steps(args.steps);
    config.seed = args.seed;
    config.max_splats = args.max_splats;
    config.background = args.background.resolve(&views.train_images);
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;

    let result = train_with_progress(&dataset, &views, &config, args.device)?;
    let metrics = metrics_json(&result, &dataset, &views, &config, args.max_side);
    write_train_outputs(&args.out, &result, &metrics)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&metrics)?);
    } else {
        print_summary(&args.out, &result);
    }
    Ok(())
}

/// `--background`.
#[derive(Clone, Copy, Debug)]
pub enum Background {
    Auto,
    Fixed([f32; 3]),
}

impl Background {
    pub fn resolve(self, train_images: &[ImageRgb]) -> [f32; 3] {
        match self {
            Background::Auto => auto_background(train_images),
            Background::Fixed(colour) => colour,
        }
    }
}

fn parse_background(text: &str) -> Result<Background, String> {
    match text {
        "auto" => Ok(Background::Auto),
        "black" => Ok(Background::Fixed([0.0; 3])),
        "white" => Ok(Background::Fixed([1.0; 3])),
        _ => {
            let values: Vec<f32> = text
                .split(',')
                .map(|v| v.trim().parse::<f32>())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{text:?}: {e}"))?;
            match values[..] {
                [r, g, b] if values.iter().all(|v| (0.0..=1.0).contains(v)) => Ok(Background::Fixed([r, g, b])),
                _ => Err(format!("{text:?}: expected auto, black, white or R,G,B with values in 0..1")),
            }
        }
    }
}

/// Loads the dataset's views at training resolution, with a progress bar.
pub fn load_dataset_views(dataset: &Dataset, max_side: u32) -> Result<LoadedViews> {
    let bar = StageBar::new("load", dataset.views.len() as u64);
    let views =
        train_stage::load_dataset_views(dataset, max_side, &mut |done, _| bar.update(done as u64, "views".into()))?;
    bar.finish(format!("{} train + {} test views", views.train_cameras.len(), views.test_cameras.len()));
    Ok(views)
}

/// Trains on `device` with a progress bar (loss, PSNR, splat count).
pub fn train_with_progress(
    dataset: &Dataset,
    views: &LoadedViews,
    config: &TrainConfig,
    device: Device,
) -> Result<TrainResult> {
    let bar = StageBar::new("train", u64::from(config.steps));
    let mut last_loss = None;
    let mut report = |p: &Progress| {
        if let Some(loss) = p.loss {
            last_loss = Some(loss.total);
        }
        let loss = last_loss.map_or_else(String::new, |l| format!("loss {l:.4} · "));
        let psnr = p.psnr.map_or_else(String::new, |v| format!("PSNR {v:.2} dB · "));
        bar.update(u64::from(p.step), format!("{loss}{psnr}{} splats", p.num_splats));
    };
    let result = train_stage::train(dataset, views, config, device, &mut report)?;
    bar.finish(format!("{} splats in {:.1} s", result.num_splats, result.train_seconds));
    Ok(result)
}

fn print_summary(out: &Path, result: &TrainResult) {
    match &result.test {
        Some(test) => eprintln!(
            "held-out PSNR {:.2} dB, SSIM {:.4} over {} views · {} splats · {} steps in {:.1} s on {}",
            test.psnr, test.ssim, test.views, result.num_splats, result.steps, result.train_seconds, result.device
        ),
        None => eprintln!(
            "no test views: {} splats · {:.1} s on {}",
            result.num_splats, result.train_seconds, result.device
        ),
    }
    eprintln!("wrote {} and {}", out.join("splats.ply").display(), out.join("metrics.json").display());
}
