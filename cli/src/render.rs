//! `kiln render`: headless renders of a model or job folder to PNG, from a dataset camera or an
//! orbit camera, single frames or a turntable (a PNG sequence `out_000.png`, `out_001.png`, …).
//!
//! No animated file is written: the `image` crate's WebP encoder is lossless and still-image
//! only (no animation), and there is no well-kept pure-Rust MP4/H.264 encoder, so turntables stay
//! PNG sequences (any video tool turns them into a clip).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kiln_core::camera::Camera;
use kiln_dataset::{Dataset, OpenOptions};
use kiln_viewer::headless::{HeadlessRenderer, framed_orbit, write_png};
use kiln_viewer::render::RenderOptions;
use kiln_viewer::scene::{Scene, Shown};

/// Image size of orbit renders when `--size` is not given.
const DEFAULT_ORBIT_SIZE: (u32, u32) = (1024, 768);

#[derive(clap::Args)]
pub struct RenderArgs {
    /// A splat .ply, a .glb/.gltf, a transforms.json, a COLMAP model or a Kiln job / mesh folder.
    pub input: PathBuf,
    /// A dataset camera: `<transforms.json or dataset folder>#<frame index or image file name>`.
    #[arg(long, conflicts_with = "orbit")]
    pub camera: Option<String>,
    /// Orbit camera `AZ,EL,DIST`: degrees around +Y (0 looks from +Z), degrees above the
    /// horizon, distance as a multiple of the distance that frames what is shown (the mesh when shown,
    /// else the core of the splats, else the points or cameras; 1 = fit).
    #[arg(long, allow_hyphen_values = true)]
    pub orbit: Option<String>,
    /// Image size `WxH` (default: the dataset camera's own size, or 1024x768 for orbits).
    #[arg(long)]
    pub size: Option<String>,
    /// Output PNG; with `--turntable`, frames are written as `<stem>_000.png`, ….
    #[arg(long)]
    pub out: PathBuf,
    /// Render N frames turning once around +Y (orbit cameras only).
    #[arg(long)]
    pub turntable: Option<u32>,
    /// Background `R,G,B,A` in 0..1 (display values; A = 0 gives a transparent background).
    #[arg(long, default_value = "0.12,0.12,0.14,1")]
    pub background: String,
    #[arg(long)]
    pub no_splats: bool,
    #[arg(long)]
    pub no_mesh: bool,
    #[arg(long)]
    pub no_cameras: bool,
    #[arg(long)]
    pub no_points: bool,
    #[arg(long)]
    pub wireframe: bool,
    #[arg(long)]
    pub matcap: bool,
}

pub fn run(args: &RenderArgs) -> Result<()> {
    let scene = Scene::load(&args.input)?;
    let options = RenderOptions {
        background: parse_floats::<4>(&args.background).context("--background")?,
        show_splats: !args.no_splats,
        show_mesh: !args.no_mesh,
        show_cameras: !args.no_cameras,
        show_points: !args.no_points,
        wireframe: args.wireframe,
        matcap: args.matcap,
    };
    let size = args.size.as_deref().map(parse_size).transpose().context("--size")?;
    let shown = Shown {
        splats: options.show_splats,
        mesh: options.show_mesh,
        cameras: options.show_cameras,
        points: options.show_points,
    };
    let cameras = cameras(args, &scene, size, shown)?;
    let mut renderer = HeadlessRenderer::new(&scene)?;
    tracing::info!(adapter = %renderer.adapter_name(), frames = cameras.len(), "rendering");
    for (camera, path) in cameras.iter().zip(output_paths(&args.out, args.turntable)) {
        let image = renderer.render(camera, &options)?;
        write_png(&path, &image)?;
        println!("{}", path.display());
    }
    Ok(())
}

/// Whether `cause` is a file the viewer cannot read (exit code 2), not a failure of the machine.
pub fn is_bad_input(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause.downcast_ref::<kiln_viewer::ViewerError>().is_some_and(kiln_viewer::ViewerError::is_bad_input)
}

/// The camera of every frame to render, in the scene's frame.
fn cameras(args: &RenderArgs, scene: &Scene, size: Option<(u32, u32)>, shown: Shown) -> Result<Vec<Camera>> {
    if let Some(spec) = &args.camera {
        if args.turntable.is_some() {
            bail!("--turntable needs an --orbit camera, not --camera");
        }
        let camera = scene.camera_from_input(&dataset_camera(spec)?);
        let (width, height) = size.unwrap_or((camera.width(), camera.height()));
        return Ok(vec![camera.resized(width, height)]);
    }
    let [azimuth, elevation, distance] = match &args.orbit {
        Some(orbit) => parse_floats::<3>(orbit).context("--orbit")?,
        None => [30.0, 20.0, 1.0],
    };
    let (width, height) = size.unwrap_or(DEFAULT_ORBIT_SIZE);
    let frames = args.turntable.unwrap_or(1).max(1);
    Ok((0..frames)
        .map(|i| {
            framed_orbit(scene, shown, azimuth + 360.0 * i as f32 / frames as f32, elevation, distance, width, height)
        })
        .collect())
}

/// `<dataset>#<frame index or image file name>`.
fn dataset_camera(spec: &str) -> Result<Camera> {
    let (path, frame) = spec.rsplit_once('#').context("--camera: expected <transforms.json>#<frame>")?;
    let options = OpenOptions { skip_missing_images: true, ..Default::default() };
    let dataset = Dataset::open_with(Path::new(path), &options)?;
    let view = match frame.parse::<usize>() {
        Ok(index) => dataset.views.get(index),
        Err(_) => dataset
            .views
            .iter()
            .find(|v| v.name == frame || v.image_path.file_name().is_some_and(|n| n.to_string_lossy() == frame)),
    };
    Ok(view
        .with_context(|| format!("--camera: {path} has {} frames and none is {frame:?}", dataset.views.len()))?
        .camera)
}

/// `out` itself, or `<stem>_000.<ext>`… for a turntable.
fn output_paths(out: &Path, turntable: Option<u32>) -> Vec<PathBuf> {
    let Some(frames) = turntable else { return vec![out.to_path_buf()] };
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "frame".into());
    let extension = out.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_else(|| "png".into());
    (0..frames.max(1)).map(|i| out.with_file_name(format!("{stem}_{i:03}.{extension}"))).collect()
}

pub fn parse_size(text: &str) -> Result<(u32, u32)> {
    let (w, h) = text.split_once(['x', 'X']).with_context(|| format!("{text:?}: expected WxH"))?;
    let (w, h): (u32, u32) = (w.trim().parse()?, h.trim().parse()?);
    if w == 0 || h == 0 {
        bail!("{text:?}: both sides must be positive");
    }
    Ok((w, h))
}

fn parse_floats<const N: usize>(text: &str) -> Result<[f32; N]> {
    let values: Vec<f32> = text.split(',').map(|v| v.trim().parse::<f32>()).collect::<Result<_, _>>()?;
    <[f32; N]>::try_from(values)
        .map_err(|v| anyhow::anyhow!("{text:?}: expected {N} comma-separated numbers, got {}", v.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turntable_paths_are_numbered_beside_the_output() {
        let paths = output_paths(Path::new("out/spin.png"), Some(3));
        assert_eq!(paths, ["out/spin_000.png", "out/spin_001.png", "out/spin_002.png"].map(PathBuf::from));
        assert_eq!(output_paths(Path::new("a.png"), None), [PathBuf::from("a.png")]);
    }

    #[test]
    fn sizes_and_lists_parse() {
        assert_eq!(parse_size("640x480").unwrap(), (640, 480));
        assert!(parse_size("640").is_err());
        assert_eq!(parse_floats::<3>("-30, 10,1.5").unwrap(), [-30.0, 10.0, 1.5]);
        assert!(parse_floats::<3>("1,2").is_err());
    }
}
