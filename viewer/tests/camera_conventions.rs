//! Camera conventions, end to end: the bunny's ground-truth mesh goes through Kiln's exporter
//! into a GLB in the export frame (metres, +Y up; here with an extra ×2 scale so that the
//! similarity is not a rigid motion), the viewer loads that GLB, the dataset cameras are moved
//! into the same frame with `Scene::transform`, and the headless render's coverage (alpha) from
//! every camera, train and test, must match the dataset's silhouette masks with IoU ≥ 0.98.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use glam::DVec3;
use kiln_core::mesh::TexturedMesh;
use kiln_dataset::Dataset;
use kiln_export::frame::{ExportFrame, FrameOptions};
use kiln_viewer::headless::HeadlessRenderer;
use kiln_viewer::render::RenderOptions;
use kiln_viewer::scene::{Scene, SceneCamera};

/// Every frame must reach this silhouette IoU (the bar).
const MIN_IOU: f64 = 0.98;

/// How a dataset's masks encode partial coverage, so that both sides use the same 50 % rule.
#[derive(Clone, Copy)]
struct MaskRule {
    /// The render is made at this many times the mask's resolution and box-averaged to it.
    supersample: u32,
    /// Mask values above this are more than half covered.
    half_coverage: u8,
}

/// bunny-synth: anti-aliased edges stored through Blender's sRGB view transform, so half
/// coverage (linear 0.5) is the 8-bit value 188, not 128; rendered at the same size.
const BUNNY_SYNTH: MaskRule = MaskRule { supersample: 1, half_coverage: 187 };
/// bunny-mini: bunny-synth's masks box-downscaled by 4 (its README), so values are coverage
/// fractions of 4×4 blocks; rendered 4× larger and box-averaged the same way.
const BUNNY_MINI: MaskRule = MaskRule { supersample: 4, half_coverage: 127 };

fn silhouettes_match(dir: &Path, rule: MaskRule) {
    let Some(ctx) = common::gpu() else { return };
    let mesh = kiln_core::mesh::ply::read_mesh(&dir.join("gt_mesh.ply")).unwrap();
    // bunny-synth's world is Blender's: +Z up, metres.
    let frame = ExportFrame::new(&mesh, DVec3::Z, &FrameOptions { scale: 2.0, ..Default::default() }).unwrap();
    let mut exported = frame.apply(&mesh);
    exported.uvs = vec![[0.5, 0.5]; exported.positions.len()];
    let model = TexturedMesh {
        mesh: exported,
        base_color: image::RgbImage::from_pixel(1, 1, image::Rgb([200, 180, 160])),
        normal_map: None,
    };
    let tmp = std::env::temp_dir().join(format!("kiln-viewer-conventions-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let glb = tmp.join("bunny.glb");
    kiln_export::glb::write_glb(&glb, &model).unwrap();

    let scene = Scene::load(&glb).unwrap();
    let dataset = Dataset::open(dir).unwrap();
    let mut cameras = Scene {
        cameras: dataset
            .views
            .iter()
            .map(|v| SceneCamera { camera: v.camera, image: None, name: v.name.clone() })
            .collect(),
        ..Scene::default()
    };
    cameras.transform(&frame.export_from_world);
    let mut renderer = HeadlessRenderer::with_context(&ctx, &scene).unwrap();
    let options = RenderOptions { background: [0.0; 4], show_cameras: false, show_points: false, ..Default::default() };

    let mut ious = Vec::new();
    let mut offsets = Vec::new();
    for (view, camera) in dataset.views.iter().zip(&cameras.cameras) {
        let stem = view.image_path.file_stem().unwrap().to_string_lossy().into_owned();
        let mask = image::open(dir.join("masks").join(format!("{stem}.png"))).unwrap().to_luma8();
        let ss = rule.supersample;
        let render = renderer.render(&camera.camera.resized(mask.width() * ss, mask.height() * ss), &options).unwrap();
        let ours: Vec<bool> = (0..mask.height())
            .flat_map(|y| (0..mask.width()).map(move |x| (x, y)))
            .map(|(x, y)| {
                let block =
                    (0..ss * ss).filter(|k| render.get_pixel(x * ss + k % ss, y * ss + k / ss)[3] > 127).count();
                2 * block > (ss * ss) as usize
            })
            .collect();
        let theirs: Vec<bool> = mask.pixels().map(|p| p[0] > rule.half_coverage).collect();
        let iou = common::iou(&ours, &theirs);
        let (a, b) = (centroid(&ours, mask.width()), centroid(&theirs, mask.width()));
        offsets.push([a[0] - b[0], a[1] - b[1], a[2] / b[2]]);
        if iou < MIN_IOU {
            render.save(tmp.join(format!("{stem}-render.png"))).unwrap();
        }
        ious.push((stem, iou));
    }
    let worst = ious.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    let mean = ious.iter().map(|(_, v)| v).sum::<f64>() / ious.len() as f64;
    eprintln!("{} frames: silhouette IoU mean {mean:.4}, worst {:.4} ({})", ious.len(), worst.1, worst.0);
    let n = offsets.len() as f64;
    let mean_offset = [0, 1, 2].map(|k| offsets.iter().map(|o| o[k]).sum::<f64>() / n);
    eprintln!(
        "mean silhouette centroid offset ({:+.3}, {:+.3}) px, area ratio {:.4} (render / mask)",
        mean_offset[0], mean_offset[1], mean_offset[2]
    );
    assert_eq!(ious.len(), dataset.views.len());
    // A half-pixel convention error would shift every silhouette the same way.
    assert!(mean_offset[0].abs() < 0.1 && mean_offset[1].abs() < 0.1, "systematic offset {mean_offset:?}");
    assert!(worst.1 >= MIN_IOU, "frame {} IoU {:.4} < {MIN_IOU} (renders in {})", worst.0, worst.1, tmp.display());
    std::fs::remove_dir_all(&tmp).ok();
}

/// `(mean x, mean y, area)` of the set pixels' centres.
fn centroid(mask: &[bool], width: u32) -> [f64; 3] {
    let (mut sx, mut sy, mut n) = (0.0f64, 0.0f64, 0.0f64);
    for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
        sx += (i as u32 % width) as f64 + 0.5;
        sy += (i as u32 / width) as f64 + 0.5;
        n += 1.0;
    }
    [sx / n.max(1.0), sy / n.max(1.0), n]
}

#[test]
fn bunny_silhouettes_match_masks_from_every_camera() {
    let full = kiln_testkit::datasets().join("bunny-synth");
    if full.join("transforms.json").is_file() {
        silhouettes_match(&full, BUNNY_SYNTH);
    } else {
        eprintln!("bunny-synth not found under {}: using the bunny-mini fixture instead", full.display());
        silhouettes_match(&kiln_testkit::bunny_mini(), BUNNY_MINI);
    }
}
