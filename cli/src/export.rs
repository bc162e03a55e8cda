//! `kiln export`: a `kiln mesh` folder in; GLB, USDZ, OBJ (+ MTL + PNG) and the training splats
//! (PLY) out.

use std::path::PathBuf;

use anyhow::Result;
use kiln_job::mesh_stage::export_mesh_dir;
use kiln_protocol::Format;

use crate::progress::StageBar;

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The folder `kiln mesh` wrote.
    pub mesh_dir: PathBuf,
    /// Comma-separated formats: glb, usdz, obj, ply (the training splats, unchanged).
    #[arg(long, value_delimiter = ',', default_value = "glb,usdz")]
    pub format: Vec<Format>,
    /// Output folder (default: the mesh folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    let out = args.out.clone().unwrap_or_else(|| args.mesh_dir.clone());
    let bar = StageBar::new("export", args.format.len() as u64);
    let mut written = Vec::new();
    for (i, format) in args.format.iter().enumerate() {
        bar.update(i as u64, format!("{format:?}"));
        written.extend(export_mesh_dir(
            &args.mesh_dir,
            &out,
            std::slice::from_ref(format),
            kiln_job::layout::MODEL_STEM,
        )?);
    }
    bar.finish(format!("{} files", written.len()));
    for path in &written {
        println!("{}", path.display());
    }
    Ok(())
}
