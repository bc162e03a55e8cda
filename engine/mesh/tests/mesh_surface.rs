//! Surface extraction end to end: splats → median depth → TSDF → marching cubes → cleanup,
//! scored against the ground-truth mesh with area-sampled Chamfer distance and F-score.
//!
//! - `surface_of_gt_splats_on_bunny_mini` (fast): splats laid on the fixture's ground-truth
//!   surface, seen by its 12 cameras with masks. It tests the extraction, not the training.
//! - `measure_bunny_surface` (ignored): scores a given splats file (`KILN_SURFACE_SPLATS`) at
//!   the voxel size / depth resolution in `KILN_SURFACE_VOXEL_MM` / `KILN_SURFACE_DEPTH_SIDE`,
//!   depth level `KILN_SURFACE_DEPTH_T`, truncation `KILN_SURFACE_TRUNCATION` (voxels),
//!   `KILN_SURFACE_RAY_PEAK` for ray-peak depth, `KILN_SURFACE_MASKS` to carve with the masks;
//!   prints figures and asserts only that a surface came out.
//!
//! The release gate with a real training run is `engine/tests/mesh_bunny.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Instant;

use glam::{Mat3, Quat, Vec3};
use kiln_core::camera::Camera;
use kiln_core::image_buf::ImageGray;
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::ply::read_mesh;
use kiln_core::splats::{SH_COEFFS, Splats, logit};
use kiln_dataset::Dataset;
use kiln_mesh::cleanup::{CleanupOptions, camera_up, cleanup};
use kiln_mesh::metrics::{SurfaceMetrics, compare};
use kiln_mesh::surface::{DepthMode, SurfaceOptions, SurfaceView, extract_surface};

/// Area samples per surface for the metrics: at 200 000 samples the Monte-Carlo error of a
/// ~1 mm mean distance is a few µm.
const METRIC_SAMPLES: usize = 200_000;
/// The F-score threshold of the goal: 1 mm.
const THRESHOLD: f32 = 0.001;

/// All views of a dataset at full resolution, with `masks/<stem>.png` when asked.
fn surface_views(dir: &Path, with_masks: bool) -> Vec<SurfaceView> {
    let dataset = Dataset::open(dir).unwrap();
    dataset
        .views
        .iter()
        .map(|view| {
            let mask = with_masks.then(|| {
                let stem = view.image_path.file_stem().unwrap().to_string_lossy().into_owned();
                let img = image::open(dir.join("masks").join(format!("{stem}.png"))).unwrap().to_luma8();
                ImageGray {
                    width: img.width(),
                    height: img.height(),
                    pixels: img.pixels().map(|p| p[0] as f32 / 255.0).collect(),
                }
            });
            SurfaceView { camera: view.camera, mask }
        })
        .collect()
}

fn cameras(views: &[SurfaceView]) -> Vec<Camera> {
    views.iter().map(|v| v.camera).collect()
}

/// Extracts, cleans (ground cut, capped) and scores; prints timings and figures.
fn extract_clean_score(
    splats: &Splats,
    views: &[SurfaceView],
    options: &SurfaceOptions,
    remove_ground: bool,
    gt: &TriMesh,
) -> (TriMesh, SurfaceMetrics) {
    let start = Instant::now();
    let raw = extract_surface(splats, views, options, &mut |_, _| {}, &|| false).unwrap();
    let extracted = start.elapsed().as_secs_f32();
    let clean_options = CleanupOptions {
        remove_ground,
        up: camera_up(&cameras(views)),
        // These measurements score the closed surface, every hole capped.
        max_cap_perimeter: None,
        ..CleanupOptions::for_voxel_size(options.voxel_size)
    };
    let (mesh, report) = cleanup(&raw, &clean_options).unwrap();
    let cleaned = start.elapsed().as_secs_f32() - extracted;
    let metrics = compare(&mesh, gt, METRIC_SAMPLES, THRESHOLD);
    eprintln!(
        "voxel {:.2} mm, truncation {} voxels, depth {} px {:?} at T={}: raw {} tris, clean {} tris ({report:?}); extract {extracted:.1}s, cleanup {cleaned:.1}s, metrics {:.1}s",
        options.voxel_size * 1000.0,
        options.truncation_voxels,
        options.depth_max_side,
        options.depth_mode,
        options.depth_transmittance,
        raw.num_triangles(),
        mesh.num_triangles(),
        start.elapsed().as_secs_f32() - extracted - cleaned
    );
    eprintln!(
        "Chamfer {:.3} mm (accuracy {:.3}, completeness {:.3}), precision {:.3}, recall {:.3}, F@1mm {:.3}",
        metrics.chamfer_mean * 1000.0,
        metrics.accuracy_mean * 1000.0,
        metrics.completeness_mean * 1000.0,
        metrics.precision,
        metrics.recall,
        metrics.fscore
    );
    (mesh, metrics)
}

/// Directed edges that break "every edge used by exactly two triangles, in opposite
/// directions" (0 for a closed, oriented, edge-manifold mesh).
fn open_or_non_manifold_edges(mesh: &TriMesh) -> usize {
    let mut directed = std::collections::HashMap::new();
    for t in &mesh.triangles {
        for k in 0..3 {
            *directed.entry((t[k], t[(k + 1) % 3])).or_insert(0usize) += 1;
        }
    }
    directed.iter().filter(|&(&(a, b), &n)| !(n == 1 && directed.get(&(b, a)) == Some(&1))).count()
}

/// Opaque flat Gaussians on a mesh: one per area sample, disc-shaped along the local triangle.
fn splats_on_surface(mesh: &TriMesh, spacing: f32) -> Splats {
    let mut splats = Splats { sh_degree: 0, ..Default::default() };
    let area: f64 = kiln_mesh::metrics::surface_area(mesh);
    let count = (area / (spacing as f64 * spacing as f64)) as usize;
    let bvh_free_normals: Vec<Vec3> = mesh
        .triangles
        .iter()
        .map(|t| {
            let [a, b, c] = t.map(|i| Vec3::from_array(mesh.positions[i as usize]));
            (b - a).cross(c - a).normalize_or_zero()
        })
        .collect();
    // Sample per triangle in proportion to its area, so each splat knows its triangle's normal.
    let areas = kiln_mesh::metrics::triangle_areas(mesh);
    let mut carry = 0.0f64;
    for ((t, normal), a) in mesh.triangles.iter().zip(&bvh_free_normals).zip(&areas) {
        carry += a / area * count as f64;
        let [p0, p1, p2] = t.map(|i| Vec3::from_array(mesh.positions[i as usize]));
        let mut k = 0u32;
        while carry >= 1.0 {
            carry -= 1.0;
            // Deterministic low-discrepancy barycentrics.
            let (r1, r2) = (((k as f32 + 0.5) * 0.618_034).fract().sqrt(), ((k as f32 + 0.5) * 0.754_877_7).fract());
            k += 1;
            let p = p0 * (1.0 - r1) + p1 * (r1 * (1.0 - r2)) + p2 * (r1 * r2);
            let rotation = Quat::from_mat3(&basis_with_z(*normal));
            let mut sh = [[0.0; 3]; SH_COEFFS];
            sh[0] = [0.5; 3];
            let sigma = 0.7 * spacing;
            splats.push(
                p.to_array(),
                [sigma.ln(), sigma.ln(), (0.02 * spacing).ln()],
                [rotation.w, rotation.x, rotation.y, rotation.z],
                logit(0.95),
                sh,
            );
        }
    }
    splats
}

/// A rotation whose third column is `z`.
fn basis_with_z(z: Vec3) -> Mat3 {
    let x = z.any_orthonormal_vector();
    Mat3::from_cols(x, z.cross(x), z)
}

#[test]
fn surface_of_gt_splats_on_bunny_mini() {
    let dir = kiln_testkit::bunny_mini();
    if !dir.join("transforms.json").is_file() {
        eprintln!("SKIPPED: fixture {} not found", dir.display());
        return;
    }
    let gt = read_mesh(&dir.join("gt_mesh.ply")).unwrap();
    let splats = splats_on_surface(&gt, 0.0015);
    let views = surface_views(&dir, true);
    // Exact flat discs: the ray crosses their plane at the surface, so the ray-peak median depth
    // is exact here (the default, the front of a trained shell, is for trained splats).
    let options = SurfaceOptions {
        depth_max_side: 200,
        depth_mode: DepthMode::RayPeak,
        depth_transmittance: 0.5,
        ..SurfaceOptions::for_voxel_size(0.002)
    };
    let (mesh, m) = extract_clean_score(&splats, &views, &options, false, &gt);
    // Measured: Chamfer 0.75 mm (accuracy 0.89, completeness 0.61), F@1mm 0.83 with 2 mm voxels
    // from 200×150 ray-peak depth maps (1.19 mm / 0.53 with the splat-centre median depth);
    // pixels are ~2.5 mm on the object, so sub-voxel agreement is what the fusion delivers. The
    // bounds leave ~30 % headroom but fail on a misplaced, mis-scaled or eroded surface.
    assert!(m.chamfer_mean < 0.001, "{m:?}");
    assert!(m.fscore > 0.7, "{m:?}");
    let bad = open_or_non_manifold_edges(&mesh);
    eprintln!("{bad} open or non-manifold edges of {}", 3 * mesh.num_triangles());
    assert!(bad == 0, "cleanup was asked for a watertight mesh: {bad} bad edges");
    assert!(kiln_mesh::metrics::enclosed_volume(&mesh) > 0.0);
}

#[test]
#[ignore = "measurement on a given splats file"]
fn measure_bunny_surface() {
    let Some(path) = std::env::var_os("KILN_SURFACE_SPLATS") else {
        eprintln!("SKIPPED: set KILN_SURFACE_SPLATS to a splats PLY trained on bunny-synth");
        return;
    };
    let dir = kiln_testkit::datasets().join("bunny-synth");
    if !dir.join("transforms.json").is_file() {
        eprintln!("SKIPPED: dataset {} not found", dir.display());
        return;
    }
    let env = |name: &str, default: f32| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let splats = kiln_core::splats::ply::read_splats(Path::new(&path)).unwrap();
    let gt = read_mesh(&dir.join("gt_mesh.ply")).unwrap();
    let masks = std::env::var_os("KILN_SURFACE_MASKS").is_some();
    let views = surface_views(&dir, masks);
    let voxel = env("KILN_SURFACE_VOXEL_MM", 1.0) / 1000.0;
    let options = SurfaceOptions {
        depth_max_side: env("KILN_SURFACE_DEPTH_SIDE", 800.0) as u32,
        depth_mode: if std::env::var_os("KILN_SURFACE_RAY_PEAK").is_some() {
            DepthMode::RayPeak
        } else {
            DepthMode::SplatCentre
        },
        depth_transmittance: env("KILN_SURFACE_DEPTH_T", kiln_mesh::surface::DEPTH_TRANSMITTANCE),
        truncation_voxels: env("KILN_SURFACE_TRUNCATION", 4.0),
        ..SurfaceOptions::for_voxel_size(voxel)
    };
    let (mesh, m) = extract_clean_score(&splats, &views, &options, !masks, &gt);
    eprintln!("{} open or non-manifold edges of {}", open_or_non_manifold_edges(&mesh), 3 * mesh.num_triangles());
    assert!(m.chamfer_mean.is_finite() && mesh.num_triangles() > 0, "{m:?}");
}
