//! `kiln poses`: a folder of photos in; camera poses out as a COLMAP model, a nerfstudio
//! `transforms.json` (which `kiln train` reads) and `poses-report.json`. A progress bar per
//! phase and a summary on stderr; `--json` prints the report on stdout.

use std::path::PathBuf;

use anyhow::{Context, Result};
use kiln_sfm::pipeline::{PosesOptions, estimate_poses, write_outputs};
use kiln_sfm::{Phase, PhaseProgress, SfmError};

use crate::progress::StageBar;

#[derive(clap::Args)]
pub struct PosesArgs {
    /// Folder of photos (.jpg, .jpeg, .png, searched recursively). It is only read.
    pub photos: PathBuf,
    /// Output folder for sparse/0/ (COLMAP), transforms.json, sparse_pc.ply and
    /// poses-report.json (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Keypoints kept per photo (default: 8192, as COLMAP).
    #[arg(long)]
    pub max_features: Option<usize>,
    /// Photos are downscaled for feature detection so their longer side is at most this many
    /// pixels (default: 1600, chosen by measured accuracy and time; COLMAP uses 3200); poses and intrinsics stay at full resolution.
    #[arg(long)]
    pub max_image_side: Option<u32>,
    /// Print poses-report.json on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &PosesArgs) -> Result<()> {
    if !args.photos.is_dir() {
        return Err(SfmError::Unusable { input: args.photos.clone(), problem: "not a folder of photos".into() }.into());
    }
    let mut options = PosesOptions::default();
    if let Some(max_features) = args.max_features {
        options.sift.max_features = max_features;
    }
    if let Some(side) = args.max_image_side {
        options.sift.max_image_side = side;
    }
    let mut bars = PhaseBars::default();
    let result = estimate_poses(&args.photos, &options, &mut |p| bars.update(p), &|| false);
    bars.finish();
    let result = result?;
    let report = write_outputs(&result, &args.out).with_context(|| format!("writing into {}", args.out.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    eprintln!("{report}");
    eprintln!(
        "wrote {} (COLMAP), {} and {}",
        args.out.join("sparse/0").display(),
        args.out.join("transforms.json").display(),
        args.out.join("poses-report.json").display()
    );
    Ok(())
}

/// One bar per phase: a new bar when the phase (or its total) changes, the previous one kept
/// on screen with its last message.
#[derive(Default)]
struct PhaseBars {
    current: Option<(Phase, usize, StageBar, String)>,
}

impl PhaseBars {
    fn update(&mut self, progress: &PhaseProgress) {
        let same = self
            .current
            .as_ref()
            .is_some_and(|(phase, total, _, _)| *phase == progress.phase && *total == progress.total);
        if !same {
            self.finish();
            let bar = StageBar::new(progress.phase.name(), progress.total as u64);
            self.current = Some((progress.phase, progress.total, bar, String::new()));
        }
        if let Some((_, _, bar, last)) = &mut self.current {
            bar.update(progress.done as u64, progress.message.clone());
            last.clone_from(&progress.message);
        }
    }

    fn finish(&mut self) {
        if let Some((_, _, bar, last)) = self.current.take() {
            bar.finish(last);
        }
    }
}
