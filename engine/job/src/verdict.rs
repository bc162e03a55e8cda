//! The job's own verdict on its model: after the mesh stage, the textured mesh is rendered from
//! the views held out of training (and of the texture) and compared with those photos and with
//! the splats seen from the same cameras. The figures ([`ModelQuality`]) and what the capture
//! check and the mesh stage said become one verdict ([`ModelVerdict`]: good, warnings or failed)
//! with its reasons ([`Finding`]), which `report.json` carries at the top level.
//!
//! Per held-out view, at most [`VIEW_MAX_SIDE`] pixels on its longer side:
//! - the **object region** is the view's mask where the dataset has one, else the mask the mesh
//!   stage found for it (`mesh/masks/`), else the pixels whose splat surface (the depth the
//!   mesh stage fuses) lies inside the mesh's box grown by [`REGION_MARGIN`] of its size;
//! - **silhouette IoU**: that region against the pixels the mesh covers;
//! - **depth agreement**: of the pixels in both, the share where the mesh's depth is within
//!   [`DEPTH_TOLERANCE`] of the box's diagonal of the splats' depth;
//! - **PSNR** of the textured mesh and of the splats against the photo over the same pixels.
//!
//! With the mesh stage's automatic masks, which reach a margin beyond the object, the mesh's
//! outline is drawn with the same margin (`mesh.json`'s `mask_margin`), so that the two compare
//! like for like.
//!
//! A mesh that lost the object (fragments of the table, a plane) covers other pixels at other
//! depths than the splats, which re-render the photos faithfully: IoU and agreement collapse.

use std::path::Path;

use glam::{DVec3, Vec3};

use crate::error::stage_error;
use crate::layout::MASKS_DIR;
use crate::mesh_stage::{MeshSummary, Subject, read_mesh_dir};
use crate::{JobError, Stage};
use kiln_check::Outcome;
use kiln_core::camera::Camera;
use kiln_core::image_buf::{ImageGray, ImageRgb};
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::raster::depth_buffer;
use kiln_core::splats::ply::read_splats;
use kiln_dataset::{Dataset, OpenOptions, Split, load_views};
use kiln_export::frame::{ExportFrame, ScaleSource};
use kiln_mesh::object::silhouettes;
use kiln_mesh::surface::{SurfaceOptions, SurfaceView, render_depth};
pub use kiln_protocol::report::{
    Finding, FindingCode, ModelQuality, ModelVerdict, RegionSource, VerdictReport, ViewQuality,
};
use kiln_splats::render::render;
use kiln_texture::view::render_textured;

/// Longer side of the comparison renders: enough pixels to see a lost object or a misplaced
/// surface (a 1 % error is 3 pixels), few enough that eight views cost seconds on a CPU.
pub const VIEW_MAX_SIDE: u32 = 320;
/// Held-out views compared at most: the verdict's cost stays bounded on large captures.
pub const MAX_VIEWS: usize = 8;
/// The object box grows by this share of its longest side before splat pixels count as inside:
/// the splats' surface lies up to a voxel or two outside the fused mesh.
pub const REGION_MARGIN: f32 = 0.05;
/// Mesh and splat depths agree within this share of the mesh box's diagonal (a 1.5 % tolerance
/// is about two voxels at `preview`, the mesh's own resolution).
pub const DEPTH_TOLERANCE: f32 = 0.015;
/// Below this silhouette IoU the mesh is not the object the splats show.
pub const FAIL_IOU: f64 = 0.5;
/// Below this share of agreeing depths the mesh's surface is elsewhere than the splats'.
pub const FAIL_DEPTH_AGREEMENT: f64 = 0.5;
/// Under these the model is usable with visible defects (a missing part, a bulge).
pub const WARN_IOU: f64 = 0.8;
pub const WARN_DEPTH_AGREEMENT: f64 = 0.8;
/// A textured mesh this many dB under the splats on the same pixels has a texture or surface
/// visibly worse than the capture allows (bunny-synth's textured mesh is 1.6 dB under).
pub const WARN_PSNR_GAP_DB: f64 = 3.0;
/// Under this share of observed surface (the rest capped or left open), the model has sides
/// no photo showed.
pub const WARN_OBSERVED_FRACTION: f64 = 0.9;

/// A verdict with what it was seen on.
pub struct Judgement {
    pub report: VerdictReport,
    pub strips: Vec<Strip>,
}

/// One compared view: its photo's name, and the photo, the textured mesh and the splats side by
/// side (for people to see where the model differs).
pub type Strip = (String, image::RgbImage);

/// What the verdict weighs besides the renders.
pub struct Judged<'a> {
    pub mesh_dir: &'a Path,
    /// The capture check's outcome and advice, when it ran.
    pub capture: Option<(Outcome, &'a [String])>,
}

/// Measures the model in `mesh_dir` against its held-out views and gives the verdict.
pub fn judge(judged: &Judged) -> Result<Judgement, JobError> {
    let (model, summary) = read_mesh_dir(judged.mesh_dir).map_err(|e| stage_error(Stage::Mesh, &e))?;
    let mesh = mesh_in_world(model.mesh, &summary);
    let mut findings = Vec::new();
    let (quality, strips) = match measure(&mesh, &model.base_color, &summary, judged.mesh_dir)? {
        Some((quality, strips)) => (Some(quality), strips),
        None => (None, Vec::new()),
    };
    match &quality {
        Some(q) => findings.extend(quality_findings(q)),
        None => findings.push(Finding {
            code: FindingCode::NotMeasured,
            severity: ModelVerdict::Warnings,
            message:
                "no photo was held out of training, so the model was not compared with photos it was not made from"
                    .into(),
        }),
    }
    findings.extend(surface_findings(&summary));
    if summary.subject == Subject::Scene {
        findings.push(Finding {
            code: FindingCode::Scene,
            severity: ModelVerdict::Warnings,
            message: "no single object on a support was found where the photos look: the model is the whole surface \
                      there (scene)"
                .into(),
        });
    }
    if let Some((Outcome::Risky, advice)) = judged.capture {
        findings.extend(advice.iter().map(|line| Finding {
            code: FindingCode::Capture,
            severity: ModelVerdict::Warnings,
            message: line.clone(),
        }));
    }
    let verdict = findings.iter().map(|f| f.severity).max().unwrap_or(ModelVerdict::Good);
    Ok(Judgement { report: VerdictReport { verdict, findings, quality }, strips })
}

/// `mesh.ply` is in the export frame; the cameras and splats are in the world frame.
fn mesh_in_world(mut mesh: TriMesh, summary: &MeshSummary) -> TriMesh {
    let world_from_export = ExportFrame::from_row_major(&summary.export_from_world).export_from_world.inverse();
    for p in &mut mesh.positions {
        *p = world_from_export.transform_point3(DVec3::from(p.map(f64::from))).as_vec3().to_array();
    }
    mesh
}

fn quality_findings(q: &ModelQuality) -> Vec<Finding> {
    let mut findings = Vec::new();
    let region = match q.object_region {
        RegionSource::Masks => "the object masks",
        RegionSource::AutomaticMasks => "the object found in the photos",
        RegionSource::Splats => "the object the splats show",
    };
    let grade = |value: f64, fail: f64, warn: f64| {
        if value < fail {
            Some(ModelVerdict::Failed)
        } else if value < warn {
            Some(ModelVerdict::Warnings)
        } else {
            None
        }
    };
    if let Some(severity) = grade(q.silhouette_iou, FAIL_IOU, WARN_IOU) {
        let views = worst_views(q, |v| v.silhouette_iou);
        findings.push(Finding {
            code: FindingCode::Silhouette,
            severity,
            message: format!(
                "the mesh's outline matches {region} poorly in the held-out photos (IoU {:.2}; worst: {views})",
                q.silhouette_iou
            ),
        });
    }
    if let Some(severity) = grade(q.depth_agreement, FAIL_DEPTH_AGREEMENT, WARN_DEPTH_AGREEMENT) {
        let views = worst_views(q, |v| v.depth_agreement);
        findings.push(Finding {
            code: FindingCode::Depth,
            severity,
            message: format!(
                "the mesh's surface lies away from the splats' on {:.0} % of the object (worst: {views})",
                100.0 * (1.0 - q.depth_agreement)
            ),
        });
    }
    if let (Some(mesh), Some(splats)) = (q.mesh_psnr, q.splat_psnr)
        && splats - mesh > WARN_PSNR_GAP_DB
    {
        findings.push(Finding {
            code: FindingCode::Texture,
            severity: ModelVerdict::Warnings,
            message: format!(
                "the textured mesh shows the held-out photos at {mesh:.1} dB, the splats at {splats:.1} dB"
            ),
        });
    }
    findings
}

/// The names of the two views where `figure` is lowest.
fn worst_views(q: &ModelQuality, figure: impl Fn(&ViewQuality) -> f64) -> String {
    let mut views: Vec<&ViewQuality> = q.views.iter().collect();
    views.sort_by(|a, b| figure(a).total_cmp(&figure(b)));
    views.iter().take(2).map(|v| format!("{} {:.2}", v.view, figure(v))).collect::<Vec<_>>().join(", ")
}

fn surface_findings(summary: &MeshSummary) -> Vec<Finding> {
    if summary.observed_fraction >= WARN_OBSERVED_FRACTION && summary.holes_left_open == 0 {
        return Vec::new();
    }
    let open = if summary.holes_left_open > 0 {
        // Without a known scale the model's unit is the poses' arbitrary one, not a metre.
        let edge = match summary.scale_source {
            ScaleSource::User | ScaleSource::Mat => format!("{:.2} m of edge", summary.open_boundary_m),
            ScaleSource::Unknown => format!("{:.2} model units of edge, scale unknown", summary.open_boundary_m),
        };
        format!(
            "; {} opening{} ({edge}) left open where no photo looked",
            summary.holes_left_open,
            if summary.holes_left_open == 1 { "" } else { "s" },
        )
    } else {
        String::new()
    };
    vec![Finding {
        code: FindingCode::Unobserved,
        severity: ModelVerdict::Warnings,
        message: format!(
            "partial coverage: the photos show {:.0} % of the surface{open}; photograph the object from all sides",
            100.0 * summary.observed_fraction
        ),
    }]
}

/// Renders and compares the held-out views; `None` when the dataset holds none out.
fn measure(
    mesh: &TriMesh,
    texture: &image::RgbImage,
    summary: &MeshSummary,
    mesh_dir: &Path,
) -> Result<Option<(ModelQuality, Vec<Strip>)>, JobError> {
    let dataset =
        Dataset::open_with(&summary.sources.dataset, &OpenOptions { skip_missing_images: true, ..Default::default() })
            .map_err(|e| stage_error(Stage::Mesh, &e))?;
    let held_out: Vec<_> = dataset.views.iter().filter(|v| v.split == Split::Test).take(MAX_VIEWS).cloned().collect();
    if held_out.is_empty() || mesh.triangles.is_empty() {
        return Ok(None);
    }
    let splats = read_splats(&summary.sources.splats).map_err(|e| stage_error(Stage::Mesh, &e))?;
    let loaded = load_views(&held_out, VIEW_MAX_SIDE).map_err(|e| stage_error(Stage::Mesh, &e))?;
    let background = train_background(&summary.sources.train_dir);
    let region = ObjectBox::of(mesh);
    // The automatic masks reach `mask_margin` beyond the object: the mesh's own outline is drawn
    // with the same margin, so that the comparison is like for like.
    let outline_margin = summary.mask_margin;
    let mut pooled = Pooled::default();
    let mut views = Vec::new();
    let mut strips = Vec::new();
    // Loaded masks are object masks where the dataset lists them; otherwise they only mark the
    // pixels undistortion left without photo data, and the mesh stage's own masks may mark the object.
    let automatic = automatic_masks(&held_out, mesh_dir);
    let object_region = if held_out.iter().all(|view| view.mask_path.is_some()) {
        RegionSource::Masks
    } else if automatic.is_some() {
        RegionSource::AutomaticMasks
    } else {
        RegionSource::Splats
    };
    for (k, (view, (camera, photo, mask))) in held_out.iter().zip(&loaded).enumerate() {
        let (object, valid) = match (object_region, &automatic) {
            (RegionSource::Masks, _) => (mask.as_ref(), None),
            (_, Some(masks)) => (masks.get(k), mask.as_ref()),
            _ => (None, mask.as_ref()),
        };
        let outline = (object_region == RegionSource::AutomaticMasks && outline_margin > 0.0)
            .then(|| silhouettes(mesh, std::slice::from_ref(camera), outline_margin).pop())
            .flatten();
        let input = ViewInput { camera, photo, object, valid, outline: outline.as_ref() };
        let (stats, strip) = compare_view(&input, mesh, texture, &splats, background, &region)?;
        let name = view.image_path.file_name().map_or_else(|| view.name.clone(), |n| n.to_string_lossy().into_owned());
        strips.push((name.clone(), strip));
        views.push(ViewQuality {
            view: name,
            silhouette_iou: stats.iou(),
            depth_agreement: stats.agreement(),
            mesh_psnr: stats.mesh_psnr(),
            splat_psnr: stats.splat_psnr(),
        });
        pooled.add(&stats);
    }
    let quality = ModelQuality {
        silhouette_iou: pooled.0.iou(),
        depth_agreement: pooled.0.agreement(),
        mesh_psnr: pooled.0.mesh_psnr(),
        splat_psnr: pooled.0.splat_psnr(),
        views,
        object_region,
    };
    Ok(Some((quality, strips)))
}

/// The mesh stage's automatic masks of `views` (`masks/<photo stem>.png`), when it wrote one for
/// each.
fn automatic_masks(views: &[kiln_dataset::View], mesh_dir: &Path) -> Option<Vec<ImageGray>> {
    let dir = mesh_dir.join(MASKS_DIR);
    views
        .iter()
        .map(|view| {
            let stem = view.image_path.file_stem()?.to_string_lossy().into_owned();
            let mask = image::open(dir.join(format!("{stem}.png"))).ok()?.to_luma8();
            let pixels = mask.pixels().map(|p| f32::from(p[0]) / 255.0).collect();
            Some(ImageGray { width: mask.width(), height: mask.height(), pixels })
        })
        .collect()
}

/// The background colour training composited over (what the splats show where they are empty).
fn train_background(train_dir: &Path) -> [f32; 3] {
    let path = train_dir.join(crate::layout::TRAIN_METRICS_FILE);
    let background = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|json| serde_json::from_value::<[f32; 3]>(json["background"].clone()).ok());
    background.unwrap_or([0.0; 3])
}

/// The mesh's box, grown by [`REGION_MARGIN`], and the depth tolerance it implies.
struct ObjectBox {
    min: Vec3,
    max: Vec3,
    tolerance: f32,
}

impl ObjectBox {
    fn of(mesh: &TriMesh) -> Self {
        let (lo, hi) = mesh.bounds().unwrap_or(([0.0; 3], [0.0; 3]));
        let (lo, hi) = (Vec3::from_array(lo), Vec3::from_array(hi));
        let margin = REGION_MARGIN * (hi - lo).max_element();
        Self { min: lo - margin, max: hi + margin, tolerance: DEPTH_TOLERANCE * (hi - lo).length() }
    }

    fn contains(&self, p: Vec3) -> bool {
        p.cmpge(self.min).all() && p.cmple(self.max).all()
    }
}

struct ViewInput<'a> {
    camera: &'a Camera,
    photo: &'a ImageRgb,
    /// The object's mask, when the dataset has one.
    object: Option<&'a ImageGray>,
    /// Pixels with photo data (undistortion leaves some without), when not all have.
    valid: Option<&'a ImageGray>,
    /// The mesh's outline to compare with the object region, when not its plain coverage.
    outline: Option<&'a ImageGray>,
}

/// Pixel counts and squared errors of one view (or of several, summed).
#[derive(Clone, Copy, Debug, Default)]
struct ViewStats {
    region: usize,
    /// Pixels inside the mesh's outline, and of those, inside the object region.
    outlined: usize,
    outlined_in_region: usize,
    /// Pixels the mesh covers inside the object region.
    both: usize,
    agreeing: usize,
    mesh_squared: f64,
    splat_squared: f64,
}

impl ViewStats {
    fn iou(&self) -> f64 {
        let union = self.region + self.outlined - self.outlined_in_region;
        if union == 0 { 0.0 } else { self.outlined_in_region as f64 / union as f64 }
    }

    fn agreement(&self) -> f64 {
        if self.both == 0 { 0.0 } else { self.agreeing as f64 / self.both as f64 }
    }

    fn mesh_psnr(&self) -> Option<f64> {
        psnr(self.mesh_squared, self.both)
    }

    fn splat_psnr(&self) -> Option<f64> {
        psnr(self.splat_squared, self.both)
    }
}

#[derive(Default)]
struct Pooled(ViewStats);

impl Pooled {
    fn add(&mut self, s: &ViewStats) {
        let p = &mut self.0;
        p.region += s.region;
        p.outlined += s.outlined;
        p.outlined_in_region += s.outlined_in_region;
        p.both += s.both;
        p.agreeing += s.agreeing;
        p.mesh_squared += s.mesh_squared;
        p.splat_squared += s.splat_squared;
    }
}

/// PSNR of colours in 0..=1 from a sum of per-pixel mean squared errors over `count` pixels.
fn psnr(squared: f64, count: usize) -> Option<f64> {
    (count > 0).then(|| 10.0 * (count as f64 / squared.max(1e-12)).log10())
}

fn compare_view(
    input: &ViewInput,
    mesh: &TriMesh,
    texture: &image::RgbImage,
    splats: &kiln_core::splats::Splats,
    background: [f32; 3],
    region: &ObjectBox,
) -> Result<(ViewStats, image::RgbImage), JobError> {
    let camera = input.camera;
    let (w, h) = (camera.width(), camera.height());
    let textured = render_textured(mesh, texture, camera, background).map_err(|e| stage_error(Stage::Mesh, &e))?;
    let mesh_depth = depth_buffer(mesh, camera);
    let splatted = render(splats, camera, background).output.image;
    let options = SurfaceOptions { depth_max_side: w.max(h), ..SurfaceOptions::for_voxel_size(1.0) };
    let splat_depth = render_depth(splats, &SurfaceView { camera: *camera, mask: None }, &options).depth;
    let world_from_camera = camera.world_from_camera;
    let mut stats = ViewStats::default();
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) as usize;
            if input.valid.is_some_and(|valid| valid.sample_scaled(x, y, w, h).unwrap_or(0.0) < 0.5) {
                continue;
            }
            let d = splat_depth.pixels.get(i).copied().unwrap_or(0.0);
            let in_region = match input.object {
                Some(mask) => mask.sample_scaled(x, y, w, h).unwrap_or(0.0) >= 0.5,
                None => {
                    d > 0.0
                        && region.contains(
                            world_from_camera.transform_point(camera.intrinsics.ray_through_pixel_centre(x, y) * d),
                        )
                }
            };
            let covered = textured.covered[i];
            let outlined = input.outline.map_or(covered, |outline| outline.pixels.get(i).is_some_and(|&v| v >= 0.5));
            stats.region += usize::from(in_region);
            stats.outlined += usize::from(outlined);
            stats.outlined_in_region += usize::from(outlined && in_region);
            if !(in_region && covered) {
                continue;
            }
            stats.both += 1;
            stats.agreeing += usize::from(d > 0.0 && (mesh_depth[i] - d).abs() <= region.tolerance);
            let photo = input.photo.pixels[i];
            let squared = |c: [f32; 3]| (0..3).map(|k| f64::from(c[k] - photo[k]).powi(2)).sum::<f64>() / 3.0;
            stats.mesh_squared += squared(textured.image.pixels[i]);
            stats.splat_squared += squared(splatted.pixels[i]);
        }
    }
    Ok((stats, side_by_side(&[input.photo, &textured.image, &splatted])))
}

/// Images of one size next to each other, left to right.
fn side_by_side(images: &[&ImageRgb]) -> image::RgbImage {
    let (w, h) = images.first().map_or((0, 0), |i| (i.width, i.height));
    let mut strip = image::RgbImage::new(w * images.len() as u32, h);
    for (k, image) in images.iter().enumerate() {
        image::imageops::replace(&mut strip, &image.to_rgb8(), i64::from(k as u32 * w), 0);
    }
    strip
}
