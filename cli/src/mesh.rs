//! `kiln mesh`: a `kiln train` output folder in; a mesh folder (`mesh.ply`, `basecolor.png`,
//! `mesh.json`) in metres, +Y up, out.

use std::path::PathBuf;

use anyhow::Result;
use kiln_export::frame::{FrameOptions, KnownDistance};
use kiln_job::mesh_stage::{MeshOptions, MeshProgress, MeshSummary, run_mesh_stage};
use kiln_protocol::Preset;

use crate::progress::StageBar;

#[derive(clap::Args)]
pub struct MeshArgs {
    /// The folder `kiln train` wrote (splats.ply and metrics.json).
    pub train_dir: PathBuf,
    /// Output folder for mesh.ply, basecolor.png and mesh.json (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Quality: preview (<25k triangles, 1024² texture), reduced (<50k, 2048²), medium (<100k,
    /// 2048²), full (≤250k, 4096²) or raw (undecimated, 4096²).
    #[arg(long, default_value = "medium")]
    pub preset: Preset,
    /// Triangle budget, instead of the preset's.
    #[arg(long)]
    pub max_triangles: Option<usize>,
    /// Texture side in pixels, instead of the preset's.
    #[arg(long)]
    pub texture_size: Option<u32>,
    /// Multiplies the metric scale (input units are taken as metres unless --known-distance).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Sets the scale from a measurement: `x1,y1,z1:x2,y2,z2=N` says the two input-world points
    /// are N millimetres apart.
    #[arg(long)]
    pub known_distance: Option<KnownDistance>,
    /// Sets the scale from the object's size: its longest side (upright) is N millimetres.
    #[arg(long, value_name = "N")]
    pub size_mm: Option<f64>,
    /// The dataset, when it is no longer where metrics.json says.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// A folder of object masks (white = object), `<photo stem>.png` or `<photo name>.png` per
    /// photo, for a dataset whose cameras file does not list them: they carve the background
    /// out of the surface and keep it out of the texture.
    #[arg(long)]
    pub masks: Option<PathBuf>,
    /// Print mesh.json on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &MeshArgs) -> Result<()> {
    let options = MeshOptions {
        preset: args.preset,
        max_triangles: args.max_triangles,
        texture_size: args.texture_size,
        frame: FrameOptions { scale: args.scale, known_distance: args.known_distance, size_mm: args.size_mm },
        dataset: args.dataset.clone(),
        masks: args.masks.clone(),
    };
    let mut bar: Option<(&'static str, StageBar)> = None;
    let mut report = |p: MeshProgress| {
        let phase = p.phase.name();
        if bar.as_ref().is_none_or(|(shown, _)| *shown != phase) {
            if let Some((shown, previous)) = bar.take() {
                previous.finish(format!("{shown} done"));
            }
            bar = Some((phase, StageBar::new(phase, p.total as u64)));
        }
        if let Some((_, current)) = &bar {
            current.update(p.done as u64, String::new());
        }
    };
    let summary = run_mesh_stage(&args.train_dir, &args.out, &options, &mut report, &|| false)?;
    if let Some((stage, last)) = bar.take() {
        last.finish(format!("{stage} done"));
    }
    if args.json {
        // The file as written: its sources are relative to the mesh folder, so it stays valid
        // when the job folder moves.
        let written = std::fs::read_to_string(args.out.join(kiln_protocol::layout::MESH_JSON_FILE))?;
        println!("{}", written.trim_end());
    } else {
        print_summary(args, &summary);
    }
    Ok(())
}

fn print_summary(args: &MeshArgs, summary: &MeshSummary) {
    let [x, y, z] = summary.size_m;
    eprintln!(
        "{} triangles, {}² texture, {:.1} × {:.1} × {:.1} cm (up from {:?}) · {:.1} s",
        summary.triangles,
        summary.texture_size,
        100.0 * x,
        100.0 * y,
        100.0 * z,
        summary.up_source,
        summary.timings_s.values().sum::<f64>()
    );
    eprintln!("wrote {} (export with `kiln export {} --format glb,usdz`)", args.out.display(), args.out.display());
}
