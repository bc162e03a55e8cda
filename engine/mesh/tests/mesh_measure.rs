//! Measurements behind the surface-extraction settings (all `#[ignore]`, run by hand in
//! release): per-pixel depth error of depth renders of trained splats against the ground-truth
//! mesh's own depth, so that depth choices are judged before fusion.
//!
//! `KILN_SURFACE_SPLATS` names a splats PLY trained on bunny-synth; `KILN_SURFACE_DEPTH_SIDE`
//! the render size (default 200).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use kiln_core::camera::Camera;
use kiln_core::image_buf::ImageGray;
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::ply::read_mesh;
use kiln_core::mesh::raster::depth_buffer;
use kiln_dataset::Dataset;
use kiln_mesh::surface::{DepthMode, SurfaceOptions, SurfaceView, render_depth};
use kiln_splats::render::render;

/// Camera-frame depth of `mesh` at every pixel of `camera` (the baker's z-buffer), 0 where it
/// is not.
fn mesh_depth(mesh: &TriMesh, camera: &Camera) -> ImageGray {
    ImageGray {
        width: camera.width(),
        height: camera.height(),
        pixels: depth_buffer(mesh, camera).into_iter().map(|d| if d.is_finite() { d } else { 0.0 }).collect(),
    }
}

/// Median, mean, mean |·| and fraction within 1 mm of signed errors (metres), and their count.
fn summarise(errors: &mut [f32]) -> String {
    if errors.is_empty() {
        return "no pixels".into();
    }
    errors.sort_by(f32::total_cmp);
    let n = errors.len();
    let mean = errors.iter().sum::<f32>() / n as f32;
    let mean_abs = errors.iter().map(|e| e.abs()).sum::<f32>() / n as f32;
    let within = errors.iter().filter(|e| e.abs() < 1e-3).count() as f32 / n as f32;
    let q = |f: f32| errors[((n - 1) as f32 * f) as usize] * 1000.0;
    format!(
        "n {n}, median {:+.2} mm, mean {:+.2}, mean|e| {:.2}, p10 {:+.2}, p90 {:+.2}, within 1 mm {:.3}",
        q(0.5),
        mean * 1000.0,
        mean_abs * 1000.0,
        q(0.1),
        q(0.9),
        within
    )
}

#[test]
#[ignore = "measurement on a given splats file"]
fn depth_error_against_the_gt_mesh() {
    let Some(path) = std::env::var_os("KILN_SURFACE_SPLATS") else {
        eprintln!("SKIPPED: set KILN_SURFACE_SPLATS to a splats PLY trained on bunny-synth");
        return;
    };
    let dir = kiln_testkit::datasets().join("bunny-synth");
    if !dir.join("transforms.json").is_file() {
        eprintln!("SKIPPED: dataset {} not found", dir.display());
        return;
    }
    let side: u32 = std::env::var("KILN_SURFACE_DEPTH_SIDE").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let splats = kiln_core::splats::ply::read_splats(Path::new(&path)).unwrap();
    let gt = read_mesh(&dir.join("gt_mesh.ply")).unwrap();
    let dataset = Dataset::open(&dir).unwrap();
    let levels = [0.5f32, 0.7, 0.8, 0.9];
    let mut names: Vec<String> = levels.iter().map(|l| format!("ray peak at T={l}")).collect();
    names.extend(levels.iter().map(|l| format!("splat centre at T={l}")));
    names.push("expected (alpha-weighted)".into());
    let mut errors = vec![Vec::new(); names.len()];
    let mut missing = vec![0usize; names.len()];
    for view in dataset.views.iter().step_by(4) {
        let options = SurfaceOptions { depth_max_side: side, min_alpha: 0.0, ..SurfaceOptions::for_voxel_size(0.002) };
        let sv = SurfaceView { camera: view.camera, mask: None };
        let mut maps = Vec::new();
        for mode in [DepthMode::RayPeak, DepthMode::SplatCentre] {
            for &level in &levels {
                let o = SurfaceOptions { depth_mode: mode, depth_transmittance: level, ..options.clone() };
                maps.push(render_depth(&splats, &sv, &o));
            }
        }
        let camera = maps[0].camera;
        let expected = render(&splats, &camera, [0.0; 3]).output;
        let truth = mesh_depth(&gt, &camera);
        let mut maps: Vec<Vec<f32>> = maps.into_iter().map(|m| m.depth.pixels).collect();
        maps.push(expected.depth.pixels);
        for (k, map) in maps.iter().enumerate() {
            for (i, &t) in truth.pixels.iter().enumerate() {
                if t <= 0.0 {
                    continue;
                }
                // Interior pixels only: all 4-neighbours on the object, so silhouettes (where a
                // pixel straddles object and ground) do not dominate.
                let (x, y) = (i % truth.width as usize, i / truth.width as usize);
                let interior = x > 0
                    && y > 0
                    && x + 1 < truth.width as usize
                    && y + 1 < truth.height as usize
                    && [i - 1, i + 1, i - truth.width as usize, i + truth.width as usize]
                        .iter()
                        .all(|&j| truth.pixels[j] > 0.0 && (truth.pixels[j] - t).abs() < 0.005);
                if !interior {
                    continue;
                }
                if map[i] > 0.0 {
                    errors[k].push(map[i] - t);
                } else {
                    missing[k] += 1;
                }
            }
        }
    }
    for k in 0..names.len() {
        eprintln!("{side} px {}: {} ; no depth {}", names[k], summarise(&mut errors[k]), missing[k]);
    }
}
