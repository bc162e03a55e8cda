//! `kiln bench view`: the viewer's frame time at a given size with synthetic splat clouds
//! (projection, GPU depth sort, quad rasterisation and the composite pass, no readback).

use std::time::Instant;

use anyhow::Result;
use kiln_core::splats::{SH_COEFFS, Splats};
use kiln_viewer::headless::{HeadlessRenderer, fit_distance, orbit_camera};
use kiln_viewer::render::RenderOptions;
use kiln_viewer::scene::Scene;

/// Frames rendered and discarded before timing (pipeline compilation, first allocations).
const WARMUP_FRAMES: u32 = 2;

#[derive(clap::Args)]
pub struct BenchViewArgs {
    /// Splat counts to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    pub splats: Vec<usize>,
    /// Frame size `WxH`.
    #[arg(long, default_value = "1920x1080")]
    pub size: String,
    /// Timed frames per splat count.
    #[arg(long, default_value_t = 10)]
    pub frames: u32,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// A reproducible cloud of `n` splats filling a unit ball: small anisotropic Gaussians with
/// random orientations, opacities and degree-3 SH (a hash of the index, no RNG dependency).
pub fn synthetic_splats(n: usize) -> Splats {
    let unit = |i: usize, k: u64| {
        let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 31;
        x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 29;
        (x >> 11) as f32 / (1u64 << 53) as f32
    };
    let mut splats = Splats { sh_degree: 3, ..Default::default() };
    for i in 0..n {
        let r = unit(i, 1).cbrt();
        let (theta, phi) = (std::f32::consts::TAU * unit(i, 2), (2.0 * unit(i, 3) - 1.0).acos());
        let mean = [r * phi.sin() * theta.cos(), r * phi.sin() * theta.sin(), r * phi.cos()];
        let scale = |k| (0.004 + 0.02 * unit(i, k)).ln();
        let rotation = [unit(i, 7) - 0.5, unit(i, 8) - 0.5, unit(i, 9) - 0.5, unit(i, 10) - 0.5];
        let mut sh = [[0.0f32; 3]; SH_COEFFS];
        for (k, coeff) in sh.iter_mut().enumerate() {
            let amplitude = if k == 0 { 1.5 } else { 0.1 };
            *coeff = [0, 1, 2].map(|c| amplitude * (unit(i, 20 + 3 * k as u64 + c) - 0.5));
        }
        splats.push(mean, [scale(4), scale(5), scale(6)], rotation, 4.0 * unit(i, 11) - 1.0, sh);
    }
    splats
}

pub fn bench_view(args: &BenchViewArgs) -> Result<()> {
    let (width, height) = crate::render::parse_size(&args.size)?;
    let mut results = Vec::new();
    for &n in &args.splats {
        let scene = Scene::from_splats(synthetic_splats(n));
        let mut renderer = HeadlessRenderer::new(&scene)?;
        let bounds = scene.bounds();
        let camera = orbit_camera(bounds, 30.0, 20.0, fit_distance(bounds, width, height), width, height);
        let target = renderer.target(width, height);
        let options = RenderOptions::default();
        for _ in 0..WARMUP_FRAMES {
            renderer.render_frame(&camera, &options, &target)?;
        }
        renderer.wait()?;
        let start = Instant::now();
        for _ in 0..args.frames {
            renderer.render_frame(&camera, &options, &target)?;
            renderer.wait()?;
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0 / f64::from(args.frames.max(1));
        let adapter = renderer.adapter_name();
        if !args.json {
            println!("{n:>9} splats  {width}x{height}  {ms:8.2} ms/frame  {:7.1} fps  ({adapter})", 1000.0 / ms);
        }
        results.push(serde_json::json!({ "splats": n, "width": width, "height": height, "ms_per_frame": ms, "fps": 1000.0 / ms, "adapter": adapter }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(())
}
