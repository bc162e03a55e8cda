//! `kiln mat`: the printable calibration mat. Photographed under the object, it gives the
//! reconstruction its metric scale and its ground plane (see `kiln_mat`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use kiln_core::atomic_file::write_atomically;
use kiln_mat::Paper;
use kiln_mat::sheet::{render_png, write_pdf};

/// A PNG's default resolution: a printer's usual 300 dpi.
const DEFAULT_DPI: f64 = 300.0;

#[derive(clap::Args)]
pub struct MatArgs {
    /// The PDF to write (print it at 100 %, then check the 100 mm bar with a ruler).
    #[arg(long)]
    pub out: PathBuf,
    /// Paper size, landscape: a4, letter or a3 (each has its own markers).
    #[arg(long, default_value = "a4")]
    pub paper: Paper,
    /// Also write the sheet as an 8-bit grey PNG (markers, scale bar and cross; no text).
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// The PNG's resolution, dots per inch.
    #[arg(long, default_value_t = DEFAULT_DPI)]
    pub dpi: f64,
}

pub fn run(args: &MatArgs) -> Result<()> {
    let layout = args.paper.layout();
    let pdf = write_pdf(layout);
    write_atomically(&args.out, |w| std::io::Write::write_all(w, &pdf))
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}", args.out.display());
    if let Some(path) = &args.png {
        anyhow::ensure!(args.dpi > 0.0 && args.dpi <= 1200.0, "--dpi {} must be in (0, 1200]", args.dpi);
        let image = render_png(layout, args.dpi);
        write_atomically(path, |w| image.write_to(w, image::ImageFormat::Png).map_err(std::io::Error::other))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    let [w, h] = layout.paper.size_mm();
    eprintln!(
        "{}: {w} × {h} mm, AprilTag 36h11 ids {}, {} mm markers. Print at 100 % and check the 100 mm bar; \
         stand the object on the cross with the whole mat in most photos.",
        layout.name,
        layout.id_range(),
        layout.marker_mm
    );
    Ok(())
}
