//! The mesh stage as `kiln mesh` and `kiln export` run it.
//!
//! [`run_mesh_stage`]: a training folder (`splats.ply` + `metrics.json`, which names the dataset)
//! in; the photos are loaded again, then surface (with the object found automatically, see
//! [`super::object`]) → cleanup → decimation → UV atlas → baking (from the training views only:
//! held-out views stay out, so the job's verdict compares with photos the model was not made
//! from) → export frame, and the mesh folder is written (only at the end, so a stop on request, checked
//! between these steps and per view in the depth renders and the bake, leaves nothing new):
//! - `mesh.ply`: the final textured mesh **in the export frame** (metres, +Y up, base at y = 0)
//!   with normals and UVs (PLY's `v` upwards, see [`super::ply`]);
//! - `basecolor.png`: its 8-bit sRGB base-colour texture (glTF orientation);
//! - `normal.png`: when the mesh was decimated, a tangent-space normal map carrying the dense
//!   surface's detail (glTF convention);
//! - `mesh.json`: [`MeshSummary`]: preset, counts, `export_from_world` (row-major 4×4) and how it
//!   was found, where the scale came from, what the mesh is of ([`Subject`]), how much of it the
//!   photos showed and which openings were left open, sources, timings;
//! - `masks/<photo stem>.png`: for an object found automatically, its mask in each photo.
//!
//! [`export_mesh_dir`]: a mesh folder in; `model.glb`, `model.usdz`, `model.obj` (+ `.mtl`,
//! `.png`) and `splats.ply` (the training splats, copied unchanged, so in the input's world
//! frame: `mesh.json`'s `export_from_world` places them with the mesh) out.

use crate::layout::{
    BASE_COLOR_FILE, MASKS_DIR, MESH_FILE, MESH_JSON_FILE, NORMAL_MAP_FILE, SPLATS_FILE, TRAIN_METRICS_FILE,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use glam::DVec3;

use kiln_core::atomic_file::write_atomically;
use kiln_core::camera::Camera;
use kiln_core::image_buf::{ImageGray, ImageRgb};
use kiln_core::mesh::error::MeshError;
use kiln_core::mesh::{TexturedMesh, TriMesh, ply};
use kiln_core::splats::Splats;
use kiln_core::splats::ply::{PlyError, read_splats};
use kiln_dataset::{Dataset, DatasetError, OpenOptions, Split, load_views};
use kiln_export::frame::{ExportFrame, FrameOptions, ScaleSource, mean_camera_up};
use kiln_export::{ExportError, glb, obj, usdz};
use kiln_mat::{MatFit, Sighting, detect_markers, fit_mat};
use kiln_mesh::cleanup::{CleanupOptions, CleanupReport, cleanup};
use kiln_mesh::cleanup::{Focus, Plane};
use kiln_mesh::decimate::{DecimateOptions, decimate};
use kiln_mesh::object::{
    FOCUS_RADIUS, SILHOUETTE_INFLATE_VOXELS, carve, cut_at, find_object, find_object_on, raised, silhouettes,
};
use kiln_mesh::surface::{
    Region, SurfaceOptions, SurfaceView, fuse_frames, looked_at, object_region_around, region_of_interest,
    render_depth_frames, sees_convergence,
};
use kiln_mesh::tsdf::DepthFrame;
use kiln_protocol::MatFigures;
use kiln_protocol::Preset;
pub use kiln_protocol::Subject;
use kiln_protocol::{Format, Phase};
use kiln_texture::TextureError;
use kiln_texture::atlas::{AtlasOptions, build_atlas};
use kiln_texture::bake::{BakeOptions, BakeView, bake_base_color};
use kiln_texture::normal_map::bake_normal_map;
use rayon::prelude::*;

/// An object found where the cameras converge must cover this share of the median photo: a
/// photographed object fills a good part of the frame (bunny-mini's bunny, roughly trained, 3.4 %
/// once cut from its floor), whereas a detail left on a façade once its wall is cut away covers
/// about 1 % (sceaux-castle: 0.5 to 1.1 %).
const MIN_OBJECT_COVERAGE: f32 = 0.02;
/// The object's voxel is at least this many depth pixels (at the object's distance): finer
/// voxels than the depth maps resolve fuse into fragments (bunny-synth at 200 px: 2 mm voxels
/// for 2.5 mm pixels fuse well, see `surface::DEPTH_TRANSMITTANCE`).
const MIN_VOXEL_PIXELS: f32 = 0.5;
/// Photos are loaded at the training resolution when `metrics.json` does not say it.
const DEFAULT_MAX_SIDE: u32 = 1600;
/// What `mesh.json` says about the frame of the passthrough `splats.ply`.
const SPLATS_FRAME_NOTE: &str =
    "input world frame (copied unchanged); apply export_from_world to place them with the mesh";

/// Errors of the mesh stage and of exporting a mesh folder.
#[derive(Debug, thiserror::Error)]
pub enum MeshStageError {
    /// A training or mesh folder that is missing a file or holds an unreadable one.
    #[error("{problem}: {}", path.display())]
    BadFolder { path: PathBuf, problem: String },
    #[error("reading the dataset")]
    Dataset(#[from] DatasetError),
    #[error("reading the splats")]
    Splats(#[from] PlyError),
    #[error("mesh stage")]
    Mesh(#[source] MeshError),
    #[error("texturing")]
    Texture(#[source] TextureError),
    #[error("export")]
    Export(#[from] ExportError),
    /// The caller's `should_stop` asked the stage to stop; nothing was written.
    #[error("mesh stage stopped on request")]
    Cancelled,
}

impl From<MeshError> for MeshStageError {
    fn from(error: MeshError) -> Self {
        match error {
            MeshError::Cancelled => MeshStageError::Cancelled,
            error => MeshStageError::Mesh(error),
        }
    }
}

impl From<TextureError> for MeshStageError {
    fn from(error: TextureError) -> Self {
        match error {
            TextureError::Cancelled => MeshStageError::Cancelled,
            error => MeshStageError::Texture(error),
        }
    }
}

impl MeshStageError {
    /// The input at fault (a folder or dataset Kiln cannot use), a stop, or the work itself.
    pub fn class(&self) -> kiln_protocol::ErrorClass {
        use kiln_protocol::ErrorClass;
        match self {
            MeshStageError::BadFolder { .. } | MeshStageError::Dataset(_) | MeshStageError::Splats(_) => {
                ErrorClass::BadInput
            }
            MeshStageError::Cancelled => ErrorClass::Cancelled,
            MeshStageError::Mesh(_) | MeshStageError::Texture(_) | MeshStageError::Export(_) => ErrorClass::Internal,
        }
    }

    fn bad_folder(path: &Path, problem: impl Into<String>) -> Self {
        MeshStageError::BadFolder { path: path.to_path_buf(), problem: problem.into() }
    }
}

/// Choices for [`run_mesh_stage`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeshOptions {
    pub preset: Preset,
    /// Overrides the preset's triangle budget.
    pub max_triangles: Option<usize>,
    /// Overrides the preset's texture size.
    pub texture_size: Option<u32>,
    /// Scale and known distance for the export frame.
    pub frame: FrameOptions,
    /// Overrides the dataset `metrics.json` names (e.g. after moving it).
    pub dataset: Option<PathBuf>,
    /// A folder of object masks, one per photo (white = object), for datasets whose cameras file
    /// does not list them: see [`attach_masks`].
    pub masks: Option<PathBuf>,
}

impl MeshOptions {
    pub fn max_triangles(&self) -> Option<usize> {
        self.max_triangles.or(self.preset.max_triangles())
    }

    pub fn texture_size(&self) -> u32 {
        self.texture_size.unwrap_or(self.preset.texture_size())
    }
}

/// Where the mesh stage is, for progress bars: `done` of `total` units of `stage`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeshProgress {
    pub phase: Phase,
    pub done: usize,
    pub total: usize,
}

/// How the export frame's up direction was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpSource {
    /// The support plane cleanup cut away.
    GroundPlane,
    /// The mean up vector of the cameras.
    CameraUp,
    /// Neither: the world's +Y was kept.
    WorldY,
    /// The calibration mat's plane (its normal, out of the paper).
    Mat,
}

/// The files a mesh folder was made from. In `mesh.json`, a source beside the mesh folder (in
/// the folder that holds it: a job's `train/` and `poses/`) is written relative to the mesh
/// folder (`../train/splats.ply`), so a job folder copied or downloaded elsewhere still names
/// its own files; other sources stay absolute. [`read_mesh_dir`] and [`MeshSources::resolved`]
/// give them back as paths to open.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeshSources {
    pub train_dir: PathBuf,
    pub splats: PathBuf,
    pub dataset: PathBuf,
    /// How many of the photos came with an object mask (listed by the dataset or from
    /// [`MeshOptions::masks`]); absent in mesh folders written before masks were counted.
    #[serde(default)]
    pub masked_views: usize,
}

impl MeshSources {
    /// The sources as `mesh.json` records them for the mesh folder `mesh_dir` (see the type's docs).
    fn relative_to(&self, mesh_dir: &Path) -> MeshSources {
        let beside = mesh_dir.parent().filter(|parent| !parent.as_os_str().is_empty());
        let relative = |path: &Path| match beside.and_then(|parent| path.strip_prefix(parent).ok()) {
            Some(rest) => Path::new("..").join(rest),
            None => path.to_path_buf(),
        };
        MeshSources {
            train_dir: relative(&self.train_dir),
            splats: relative(&self.splats),
            dataset: relative(&self.dataset),
            masked_views: self.masked_views,
        }
    }

    /// The sources read from the `mesh.json` of `mesh_dir`, as paths to open: relative ones
    /// against the mesh folder, absolute ones (older mesh folders) as they are.
    pub fn resolved(self, mesh_dir: &Path) -> MeshSources {
        MeshSources {
            train_dir: mesh_dir.join(self.train_dir),
            splats: mesh_dir.join(self.splats),
            dataset: mesh_dir.join(self.dataset),
            masked_views: self.masked_views,
        }
    }
}

/// `mesh.json`: what [`run_mesh_stage`] made and how.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeshSummary {
    pub generator: String,
    pub preset: Preset,
    pub triangles: usize,
    pub vertices: usize,
    pub texture_size: u32,
    /// 4×4 from the input's world to the exported frame, row-major.
    pub export_from_world: [f64; 16],
    pub metres_per_world_unit: f64,
    /// Where that scale came from: `unknown` (a world unit taken as a metre), `user` or `mat`.
    #[serde(default)]
    pub scale_source: ScaleSource,
    /// The calibration mat, when the photos show one: how well it fitted, and whether the frame
    /// came from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mat: Option<MatFigures>,
    pub up_source: UpSource,
    /// Extent of the exported mesh along x, y, z, metres.
    pub size_m: [f32; 3],
    /// TSDF voxel side, input world units.
    pub voxel_size: f32,
    /// What the surface is of: an object found automatically, an object the masks gave, or the
    /// whole scene (no object to single out).
    #[serde(default)]
    pub subject: Subject,
    /// How far (world units) the automatic masks in `masks/` reach beyond the object's coarse
    /// surface: they are drawn generously so as not to carve the object; 0 without them.
    #[serde(default)]
    pub mask_margin: f32,
    pub extracted_triangles: usize,
    pub holes_capped: usize,
    /// Openings left open (a partial capture's unseen sides), and their total length in metres.
    #[serde(default)]
    pub holes_left_open: usize,
    #[serde(default)]
    pub open_boundary_m: f64,
    /// Share of the final surface's area that photos showed (the rest is hole caps; the flat
    /// base where the object stood is left out of both), 0..=1.
    #[serde(default = "fully_observed")]
    pub observed_fraction: f64,
    pub components_dropped: usize,
    pub sources: MeshSources,
    pub splats_frame: String,
    /// Seconds per stage.
    pub timings_s: BTreeMap<String, f64>,
}

/// What the training folder says about the run that made it.
struct TrainInfo {
    dataset: PathBuf,
    max_side: u32,
}

/// Photos loaded for the mesh stage.
struct LoadedViews {
    cameras: Vec<Camera>,
    images: Vec<ImageRgb>,
    masks: Vec<Option<ImageGray>>,
    /// Views held out of training; they stay out of the texture too, so that the job's verdict
    /// compares the model with photos it was not made from.
    held_out: Vec<bool>,
    /// The dataset's sparse points (structure from motion's), world frame; empty without them.
    points: Vec<[f32; 3]>,
}

/// Runs the whole mesh stage (see the module docs) from `train_dir` into the folder `out`. Ends
/// with [`MeshStageError::Cancelled`], writing nothing, soon after `should_stop()` turns true.
pub fn run_mesh_stage(
    train_dir: &Path,
    out: &Path,
    options: &MeshOptions,
    progress: &mut dyn FnMut(MeshProgress),
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Result<MeshSummary, MeshStageError> {
    let mut timings = Timings::default();
    let info = read_train_info(train_dir)?;
    let dataset_path = options.dataset.clone().unwrap_or(info.dataset);
    let splats_path = train_dir.join(SPLATS_FILE);
    let splats = read_splats(&splats_path)?;
    let mut dataset =
        Dataset::open_with(&dataset_path, &OpenOptions { skip_missing_images: true, ..Default::default() })?;
    if let Some(masks) = &options.masks {
        attach_masks(&mut dataset, masks)?;
    }
    let masked_views = dataset.views.iter().filter(|view| view.mask_path.is_some()).count();
    progress(MeshProgress { phase: Phase::LoadingSplats, done: 0, total: 1 });
    let mut views = load(&dataset, info.max_side)?;
    progress(MeshProgress { phase: Phase::LoadingSplats, done: 1, total: 1 });
    timings.lap("load");

    check_stop(should_stop)?;
    let mat = find_mat(&views);
    timings.lap("mat");
    let mat_ground = mat.as_ref().map(mat_plane);
    // The mat's normal is the true up; the cameras' is tilted by how they look down.
    let up_hint = mat_ground.map(|plane| DVec3::from(plane.normal.map(f64::from))).or(mean_camera_up(&views.cameras));
    let all_masked = masked_views == dataset.views.len();
    let found = surface(&splats, &views, options.preset, all_masked, (up_hint, mat_ground), progress, should_stop)?;
    let (dense, voxel_size) = (&found.mesh, found.voxel_size);
    timings.lap("surface");
    check_stop(should_stop)?;
    let (clean, mut report) = clean_up(&found, up_hint, progress)?;
    report.ground = report.ground.or(found.ground);
    timings.lap("cleanup");
    check_stop(should_stop)?;
    let object_masks = found
        .object
        .as_ref()
        .map(|object| silhouettes(&object.mesh, &views.cameras, SILHOUETTE_INFLATE_VOXELS * object.voxel_size));
    if let Some(masks) = &object_masks {
        views.masks =
            views.masks.iter().zip(masks).map(|(valid, object)| Some(combine(valid.as_ref(), object))).collect();
    }
    let textured = texture(&clean, &views, options, progress, should_stop)?;
    timings.lap("texture");
    check_stop(should_stop)?;

    let (frame, scale_source, up_source) =
        export_frame(&textured.mesh, &report, up_hint, mat.as_ref(), &options.frame)?;
    let exported = TexturedMesh { mesh: frame.apply(&textured.mesh), ..textured };
    let sources =
        MeshSources { train_dir: train_dir.to_path_buf(), splats: splats_path, dataset: dataset_path, masked_views };
    let mut summary = MeshSummary {
        generator: glb::GENERATOR.to_string(),
        preset: options.preset,
        triangles: exported.mesh.num_triangles(),
        vertices: exported.mesh.num_vertices(),
        texture_size: exported.base_color.width(),
        export_from_world: frame.row_major(),
        metres_per_world_unit: frame.metres_per_world_unit,
        scale_source,
        mat: mat.map(|fit| mat_figures(&fit, scale_source)),
        up_source,
        size_m: size(&exported.mesh),
        voxel_size,
        subject: found.subject,
        mask_margin: found.object.as_ref().map_or(0.0, |object| SILHOUETTE_INFLATE_VOXELS * object.voxel_size),
        extracted_triangles: dense.num_triangles(),
        holes_capped: report.holes_capped,
        holes_left_open: report.holes_left_open,
        open_boundary_m: report.open_boundary_length * frame.metres_per_world_unit,
        observed_fraction: observed_fraction(&clean, &report),
        components_dropped: report.components_dropped,
        sources,
        splats_frame: SPLATS_FRAME_NOTE.to_string(),
        timings_s: BTreeMap::new(),
    };
    progress(MeshProgress { phase: Phase::WritingMesh, done: 0, total: 1 });
    write_mesh_dir(out, &exported, &mut summary, timings)?;
    write_object_masks(out, &dataset, object_masks.as_deref())?;
    progress(MeshProgress { phase: Phase::WritingMesh, done: 1, total: 1 });
    Ok(summary)
}

/// [`MeshStageError::Cancelled`] once `should_stop()` is true.
fn check_stop(should_stop: &(dyn Fn() -> bool + Sync)) -> Result<(), MeshStageError> {
    if should_stop() { Err(MeshStageError::Cancelled) } else { Ok(()) }
}

/// Seconds per stage, measured lap by lap.
struct Timings {
    last: Instant,
    laps: BTreeMap<String, f64>,
}

impl Default for Timings {
    fn default() -> Self {
        Self { last: Instant::now(), laps: BTreeMap::new() }
    }
}

impl Timings {
    fn lap(&mut self, stage: &str) {
        let now = Instant::now();
        self.laps.insert(stage.to_string(), (now - self.last).as_secs_f64());
        self.last = now;
    }
}

fn read_train_info(train_dir: &Path) -> Result<TrainInfo, MeshStageError> {
    let path = train_dir.join(TRAIN_METRICS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        MeshStageError::bad_folder(&path, format!("{e} (is {} a training output folder?)", train_dir.display()))
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| MeshStageError::bad_folder(&path, format!("invalid JSON: {e}")))?;
    let dataset = json["dataset"].as_str().ok_or_else(|| MeshStageError::bad_folder(&path, "no \"dataset\" path"))?;
    let max_side = json["max_side"].as_u64().map_or(DEFAULT_MAX_SIDE, |v| v.min(u64::from(u32::MAX)) as u32);
    Ok(TrainInfo { dataset: PathBuf::from(dataset), max_side })
}

/// Gives every view the mask `masks/<photo stem>.png`, or COLMAP's `masks/<photo name>.png`.
/// The masks then go where listed masks go: they carve the background out of the volume, and
/// keep it out of the texture. A photo without a mask is an error naming the files looked for,
/// since one unmasked view would fill in what the others carve away.
pub fn attach_masks(dataset: &mut Dataset, masks: &Path) -> Result<(), MeshStageError> {
    if !masks.is_dir() {
        return Err(MeshStageError::bad_folder(masks, "the masks folder does not exist"));
    }
    for view in &mut dataset.views {
        let (Some(stem), Some(name)) = (view.image_path.file_stem(), view.image_path.file_name()) else {
            return Err(MeshStageError::bad_folder(&view.image_path, "a photo path without a file name"));
        };
        let candidates = [stem, name].map(|base| masks.join(format!("{}.png", base.to_string_lossy())));
        let Some(found) = candidates.iter().find(|path| path.is_file()) else {
            return Err(MeshStageError::bad_folder(
                masks,
                format!(
                    "no mask for {} (looked for {} and {})",
                    view.image_path.display(),
                    candidates[0].display(),
                    candidates[1].display()
                ),
            ));
        };
        view.mask_path = Some(found.clone());
    }
    Ok(())
}

fn load(dataset: &Dataset, max_side: u32) -> Result<LoadedViews, MeshStageError> {
    let loaded = load_views(&dataset.views, max_side)?;
    let points = dataset.points.as_ref().map(|cloud| cloud.positions.clone()).unwrap_or_default();
    let mut views =
        LoadedViews { cameras: Vec::new(), images: Vec::new(), masks: Vec::new(), held_out: Vec::new(), points };
    for ((camera, image, mask), view) in loaded.into_iter().zip(&dataset.views) {
        views.cameras.push(camera);
        views.images.push(image);
        views.masks.push(mask);
        views.held_out.push(view.split == Split::Test);
    }
    if views.held_out.iter().all(|&h| h) {
        views.held_out.fill(false);
    }
    Ok(views)
}

/// The dense surface and what it took to make it.
struct FoundSurface {
    mesh: TriMesh,
    voxel_size: f32,
    subject: Subject,
    /// The planes the object stands or hangs on, cut away (for [`Subject::Object`]).
    supports: Vec<Plane>,
    /// The level one among them: the export's up.
    ground: Option<Plane>,
    /// The object as the coarse surface showed it (for [`Subject::Object`]).
    object: Option<CoarseObject>,
    /// Where the cameras converge, when they do: the main component is the one there.
    focus: Option<Focus>,
}

/// The object on the coarse surface: its mesh and the voxel it was fused at.
struct CoarseObject {
    mesh: TriMesh,
    voxel_size: f32,
}

/// Depth renders of every view, fused over the region of interest; for an object capture
/// without masks, the object is then found in that coarse surface and extracted again in its
/// own box with the views carved by its silhouettes (see [`super::object`]).
fn surface(
    splats: &Splats,
    views: &LoadedViews,
    preset: Preset,
    all_masked: bool,
    (up_hint, known_ground): (Option<DVec3>, Option<Plane>),
    progress: &mut dyn FnMut(MeshProgress),
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Result<FoundSurface, MeshStageError> {
    let surface_views: Vec<SurfaceView> = views
        .cameras
        .iter()
        .zip(&views.masks)
        .map(|(camera, mask)| SurfaceView { camera: *camera, mask: mask.clone() })
        .collect();
    let mut report = |done, total| progress(MeshProgress { phase: Phase::Surface, done, total });
    // Depth renders do not depend on the voxel: the same frames are fused at every scale.
    let render_options = SurfaceOptions::for_voxel_size(1.0);
    let frames = render_depth_frames(splats, &surface_views, &render_options, &mut report, should_stop)?;
    check_stop(should_stop)?;
    let converging = sees_convergence(&views.cameras);
    let looked = converging.then(|| looked_at(&frames)).flatten();
    // The point looked at, and the region a framed object there can occupy.
    let region = looked.and_then(|centre| Some((centre, object_region_around(&views.cameras, centre)?)));
    let (min, max) = match region {
        Some((_, region)) => region,
        None => region_of_interest(splats, &surface_views, Region::Auto)?,
    };
    let object_box = region.map(|(centre, (lo, hi))| {
        (centre, 0.5 * (glam::Vec3::from_array(hi) - glam::Vec3::from_array(lo)).max_element())
    });
    let voxel_size = voxel_size_for(min, max, preset)?;
    let options = SurfaceOptions::for_voxel_size(voxel_size);
    let coarse = fuse_frames(&frames, min, max, &options)?;
    let focus = object_box.map(|(centre, radius)| Focus { centre: centre.to_array(), radius: FOCUS_RADIUS * radius });
    let scene = |subject| FoundSurface {
        mesh: coarse.clone(),
        voxel_size,
        subject,
        supports: Vec::new(),
        ground: None,
        object: None,
        focus,
    };
    if all_masked {
        return Ok(scene(Subject::Masked));
    }
    if !converging {
        tracing::info!("the cameras do not converge on an object: the whole surface is kept");
        return Ok(scene(Subject::Scene));
    }
    let up = up_hint.map(|u| u.as_vec3().to_array());
    let Some(object_box) = object_box else {
        return Ok(scene(Subject::Scene));
    };
    let object = match known_ground {
        Some(ground) => find_object_on(&coarse, object_box, voxel_size, up, ground),
        None => find_object(&coarse, &views.cameras, object_box, voxel_size, up, &views.points),
    };
    let Some(object) = object else {
        return Ok(scene(Subject::Scene));
    };
    if object.supports.is_empty() {
        tracing::info!("nothing the object stands or hangs on was found: the whole surface is kept");
        return Ok(scene(Subject::Scene));
    }
    check_stop(should_stop)?;
    let frame_cameras: Vec<Camera> = frames.iter().map(|f| f.camera).collect();
    let masks = silhouettes(&object.mesh, &frame_cameras, SILHOUETTE_INFLATE_VOXELS * voxel_size);
    let coverage = median_coverage(&masks);
    if coverage < MIN_OBJECT_COVERAGE {
        tracing::info!(
            "what the cameras converge on covers {:.1} % of a photo: no single object, the whole surface is kept",
            100.0 * coverage
        );
        return Ok(scene(Subject::Scene));
    }
    let fine_voxel =
        voxel_size_for(object.min, object.max, preset)?.max(MIN_VOXEL_PIXELS * pixel_footprint(&frames, object_box.0));
    let fine =
        fuse_frames(&carve(&frames, &masks), object.min, object.max, &SurfaceOptions::for_voxel_size(fine_voxel))?;
    Ok(FoundSurface {
        mesh: cut_at(&fine, &raised(&object.supports, 2.0 * fine_voxel)),
        voxel_size: fine_voxel,
        subject: Subject::Object,
        ground: object.ground(up),
        supports: raised(&object.supports, 2.0 * fine_voxel),
        object: Some(CoarseObject { mesh: object.mesh, voxel_size }),
        focus: Some(object.focus),
    })
}

/// The median size of a depth pixel at `point`: its distance from each frame's camera over the
/// frame's focal length.
fn pixel_footprint(frames: &[DepthFrame], point: glam::Vec3) -> f32 {
    let mut sizes: Vec<f32> = frames
        .iter()
        .map(|f| f.camera.center().distance(point) / f.camera.intrinsics.fx.max(f32::MIN_POSITIVE))
        .collect();
    sizes.sort_by(f32::total_cmp);
    sizes.get(sizes.len() / 2).copied().unwrap_or(0.0)
}

/// The share of its photo that the median view's mask covers.
fn median_coverage(masks: &[ImageGray]) -> f32 {
    let mut shares: Vec<f32> = masks
        .iter()
        .map(|m| m.pixels.iter().filter(|&&v| v >= 0.5).count() as f32 / m.pixels.len().max(1) as f32)
        .collect();
    shares.sort_by(f32::total_cmp);
    shares.get(shares.len() / 2).copied().unwrap_or(0.0)
}

/// The preset's voxel for the box `min..max`: its longest side over the preset's voxel count.
fn voxel_size_for(min: [f32; 3], max: [f32; 3], preset: Preset) -> Result<f32, MeshStageError> {
    let longest = (0..3).map(|k| max[k] - min[k]).fold(0.0f32, f32::max);
    let voxel_size = longest / preset.voxels_across();
    if !(voxel_size > 0.0 && voxel_size.is_finite()) {
        return Err(MeshError::InvalidInput(format!("empty extraction region {min:?}..{max:?}")).into());
    }
    Ok(voxel_size)
}

/// A view's mask for the bake: the object's, where the photo has data (`valid`, if given).
fn combine(valid: Option<&ImageGray>, object: &ImageGray) -> ImageGray {
    let mut mask = object.clone();
    if let Some(valid) = valid.filter(|v| (v.width, v.height) == (object.width, object.height)) {
        for (m, v) in mask.pixels.iter_mut().zip(&valid.pixels) {
            *m = m.min(*v);
        }
    }
    mask
}

fn clean_up(
    found: &FoundSurface,
    up_hint: Option<DVec3>,
    progress: &mut dyn FnMut(MeshProgress),
) -> Result<(TriMesh, CleanupReport), MeshStageError> {
    progress(MeshProgress { phase: Phase::Cleanup, done: 0, total: 1 });
    let defaults = CleanupOptions {
        up: up_hint.map(|u| u.as_vec3().to_array()),
        ..CleanupOptions::for_voxel_size(found.voxel_size)
    };
    let options = match found.subject {
        // The support plane was found on the coarse surface, where the table is still large.
        Subject::Object => CleanupOptions {
            remove_ground: false,
            // The support's normal, when it is level, is the true up (the cameras' is tilted).
            up: found.ground.map(|g| g.normal).or(defaults.up),
            cuts: found.supports.clone(),
            // It stands on the level one: its base goes down to it again.
            rests_on: found.ground,
            focus: found.focus,
            ..defaults
        },
        // Masks on every photo already carve the ground away: a plane RANSAC finds is then the
        // object's own.
        Subject::Masked => CleanupOptions { remove_ground: false, ..defaults },
        // A scene keeps its full surface: no support to cut; where the cameras look, the surface
        // there (a façade, not the sky beside it) is the main component.
        Subject::Scene => CleanupOptions { remove_ground: false, focus: found.focus, ..defaults },
    };
    let result = cleanup(&found.mesh, &options)?;
    progress(MeshProgress { phase: Phase::Cleanup, done: 1, total: 1 });
    Ok(result)
}

/// Writes the automatic object masks as `masks/<photo stem>.png` (what `--masks` takes), or
/// removes stale ones when there are none.
fn write_object_masks(out: &Path, dataset: &Dataset, masks: Option<&[ImageGray]>) -> Result<(), MeshStageError> {
    let dir = out.join(MASKS_DIR);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(ExportError::Io { path: dir, source: e }.into());
        }
        _ => {}
    }
    let Some(masks) = masks else { return Ok(()) };
    std::fs::create_dir_all(&dir).map_err(ExportError::io(&dir))?;
    for (view, mask) in dataset.views.iter().zip(masks) {
        let stem = view.image_path.file_stem().map_or_else(|| view.name.clone(), |s| s.to_string_lossy().into_owned());
        let pixels = mask.pixels.iter().map(|&m| if m >= 0.5 { 255u8 } else { 0 }).collect();
        let image = image::GrayImage::from_raw(mask.width, mask.height, pixels)
            .ok_or_else(|| MeshStageError::bad_folder(&dir, "a mask of the wrong size"))?;
        let path = dir.join(format!("{stem}.png"));
        write_atomically(&path, |w| image.write_to(w, image::ImageFormat::Png).map_err(std::io::Error::other))
            .map_err(ExportError::io(&path))?;
    }
    Ok(())
}

/// Decimation, UV atlas, baked base colour and, when decimation dropped detail, a normal map
/// carrying it (world frame). `should_stop` is checked between these steps and inside the bake.
fn texture(
    mesh: &TriMesh,
    views: &LoadedViews,
    options: &MeshOptions,
    progress: &mut dyn FnMut(MeshProgress),
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Result<TexturedMesh, MeshStageError> {
    const STEPS: usize = 4;
    progress(MeshProgress { phase: Phase::Decimation, done: 0, total: STEPS });
    let decimated = match options.max_triangles() {
        Some(budget) => decimate(mesh, budget, &DecimateOptions::default()),
        None => mesh.clone(),
    };
    check_stop(should_stop)?;
    progress(MeshProgress { phase: Phase::Atlas, done: 1, total: STEPS });
    let size = options.texture_size();
    let atlased = build_atlas(&decimated, size, &AtlasOptions::default())?;
    check_stop(should_stop)?;
    progress(MeshProgress { phase: Phase::Baking, done: 2, total: STEPS });
    let bake_views: Vec<BakeView> = (0..views.cameras.len())
        .filter(|&i| !views.held_out[i])
        .map(|i| BakeView { camera: views.cameras[i], image: views.images[i].clone(), mask: views.masks[i].clone() })
        .collect();
    let base_color = bake_base_color(&atlased, &bake_views, size, &BakeOptions::default(), should_stop)?;
    check_stop(should_stop)?;
    progress(MeshProgress { phase: Phase::Baking, done: 3, total: STEPS });
    let normal_map = if decimated.num_triangles() < mesh.num_triangles() {
        Some(bake_normal_map(mesh, &atlased, size)?)
    } else {
        None
    };
    progress(MeshProgress { phase: Phase::Baking, done: STEPS, total: STEPS });
    Ok(TexturedMesh { mesh: atlased, base_color, normal_map })
}

/// The calibration mat in the loaded photos, fitted to their cameras. The markers are detected
/// here, on the photos as the mesh stage loads them (undistorted, at the training resolution):
/// these are the very pixels the cameras describe, so no distortion model or resize lies
/// between a corner and its ray, and a mesh rerun (another `--size-mm`) needs no earlier stage
/// again; the price is one detection pass per mesh run, milliseconds per photo.
fn find_mat(views: &LoadedViews) -> Option<MatFit> {
    let sightings: Vec<Vec<Sighting>> = views
        .images
        .par_iter()
        .map(|image| {
            detect_markers(image).unwrap_or_else(|error| {
                tracing::warn!(%error, "calibration mat markers not searched in a photo");
                Vec::new()
            })
        })
        .collect();
    if sightings.iter().all(Vec::is_empty) {
        return None;
    }
    fit_mat(&views.cameras, &sightings)
}

/// The export frame, where its scale came from and how up was found: from the calibration mat
/// when the photos show one (its plane is the support, its markers the scale); a size or
/// distance the user gave wins over the mat's scale (the mat still gives up); without a mat,
/// the ground plane or the cameras' up and the user's scale, if any.
fn export_frame(
    mesh: &TriMesh,
    report: &CleanupReport,
    camera_up: Option<DVec3>,
    mat: Option<&MatFit>,
    options: &FrameOptions,
) -> Result<(ExportFrame, ScaleSource, UpSource), MeshStageError> {
    let Some(fit) = mat else {
        let (up, up_source) = export_up(report, camera_up);
        return Ok((ExportFrame::new(mesh, up, options)?, options.scale_source(), up_source));
    };
    if options.scale_source() == ScaleSource::User {
        tracing::warn!(
            layout = fit.layout.name,
            "the calibration mat is in the photos, but the size or distance given sets the scale; the mat sets up"
        );
        let mat_up_in_world = fit.mat_from_world.rotation.transpose() * DVec3::Z;
        return Ok((ExportFrame::new(mesh, mat_up_in_world, options)?, ScaleSource::User, UpSource::Mat));
    }
    Ok((ExportFrame::on_support(mesh, fit.mat_from_world.to_mat4(), options)?, ScaleSource::Mat, UpSource::Mat))
}

/// The mat's plane in the world, its normal out of the paper (towards the cameras): a world point
/// `p` lies `s (R p)·z + t·z` millimetres above the mat, so `n = Rᵀ z` and the offset is `t·z / s`.
fn mat_plane(fit: &MatFit) -> Plane {
    let normal = fit.mat_from_world.rotation.transpose() * DVec3::Z;
    let offset = fit.mat_from_world.translation.z / fit.mat_from_world.scale;
    Plane { normal: normal.as_vec3().to_array(), offset: offset as f32 }
}

/// The mat's fit as `mesh.json` and the report record it.
fn mat_figures(fit: &MatFit, scale_source: ScaleSource) -> MatFigures {
    MatFigures {
        layout: fit.layout.name.to_string(),
        markers: fit.markers,
        corners: fit.corners,
        corners_rejected: fit.corners_rejected,
        rms_mm: fit.rms_mm,
        used: scale_source == ScaleSource::Mat,
    }
}

/// The ground plane's normal when cleanup found one, else the cameras' mean up, else world +Y.
fn export_up(report: &CleanupReport, camera_up: Option<DVec3>) -> (DVec3, UpSource) {
    match (report.ground, camera_up) {
        (Some(plane), _) => (DVec3::from(plane.normal.map(f64::from)), UpSource::GroundPlane),
        (None, Some(up)) => (up, UpSource::CameraUp),
        (None, None) => {
            tracing::warn!("no ground plane and no consistent camera up: the world's +Y is taken as up");
            (DVec3::Y, UpSource::WorldY)
        }
    }
}

/// `mesh.json` files written before the observed share was measured were closed by capping.
fn fully_observed() -> f64 {
    1.0
}

/// The share of `mesh`'s area, its flat base aside, that is not hole caps.
fn observed_fraction(mesh: &TriMesh, report: &CleanupReport) -> f64 {
    let total = kiln_mesh::metrics::surface_area(mesh) - report.base_area;
    if total > 0.0 { (1.0 - report.capped_area / total).clamp(0.0, 1.0) } else { 0.0 }
}

fn size(mesh: &TriMesh) -> [f32; 3] {
    mesh.bounds().map_or([0.0; 3], |(lo, hi)| std::array::from_fn(|k| hi[k] - lo[k]))
}

fn write_mesh_dir(
    out: &Path,
    model: &TexturedMesh,
    summary: &mut MeshSummary,
    mut timings: Timings,
) -> Result<(), MeshStageError> {
    std::fs::create_dir_all(out).map_err(|source| MeshError::Io { path: out.to_path_buf(), source })?;
    ply::write_mesh(&out.join(MESH_FILE), &model.mesh)?;
    write_png(&out.join(BASE_COLOR_FILE), &model.base_color)?;
    let normal_path = out.join(NORMAL_MAP_FILE);
    match &model.normal_map {
        Some(map) => write_png(&normal_path, map)?,
        // A stale map from an earlier run must not be paired with this mesh.
        None => remove_if_present(&normal_path)?,
    }
    timings.lap("write");
    summary.timings_s = timings.laps;
    let path = out.join(MESH_JSON_FILE);
    let on_disk = MeshSummary { sources: summary.sources.relative_to(out), ..summary.clone() };
    let text = serde_json::to_string_pretty(&on_disk).map_err(|e| MeshStageError::bad_folder(&path, e.to_string()))?;
    write_atomically(&path, |w| std::io::Write::write_all(w, text.as_bytes())).map_err(ExportError::io(&path))?;
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), ExportError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ExportError::Io { path: path.to_path_buf(), source: e })
        }
        _ => Ok(()),
    }
}

fn write_png(path: &Path, image: &image::RgbImage) -> Result<(), ExportError> {
    write_atomically(path, |w| image.write_to(w, image::ImageFormat::Png).map_err(std::io::Error::other))
        .map_err(ExportError::io(path))
}

/// A mesh folder read back: the textured mesh (export frame) and its summary.
pub fn read_mesh_dir(mesh_dir: &Path) -> Result<(TexturedMesh, MeshSummary), MeshStageError> {
    let json_path = mesh_dir.join(MESH_JSON_FILE);
    let text = std::fs::read_to_string(&json_path).map_err(|e| {
        MeshStageError::bad_folder(&json_path, format!("{e} (is {} a mesh output folder?)", mesh_dir.display()))
    })?;
    let summary: MeshSummary = serde_json::from_str(&text)
        .map_err(|e| MeshStageError::bad_folder(&json_path, format!("invalid mesh.json: {e}")))?;
    let summary = MeshSummary { sources: summary.sources.resolved(mesh_dir), ..summary };
    let mesh =
        ply::read_mesh(&mesh_dir.join(MESH_FILE)).map_err(|e| MeshStageError::bad_folder(mesh_dir, e.to_string()))?;
    let texture_path = mesh_dir.join(BASE_COLOR_FILE);
    let base_color = read_rgb(&texture_path)?;
    let normal_path = mesh_dir.join(NORMAL_MAP_FILE);
    let normal_map = if normal_path.is_file() { Some(read_rgb(&normal_path)?) } else { None };
    Ok((TexturedMesh { mesh, base_color, normal_map }, summary))
}

fn read_rgb(path: &Path) -> Result<image::RgbImage, MeshStageError> {
    Ok(image::open(path)
        .map_err(|e| MeshStageError::bad_folder(path, format!("cannot read the texture: {e}")))?
        .to_rgb8())
}

/// Writes the requested `formats` of the mesh folder `mesh_dir` into `out_dir` as `<stem>.glb`
/// and so on (see the module docs); returns every file written.
pub fn export_mesh_dir(
    mesh_dir: &Path,
    out_dir: &Path,
    formats: &[Format],
    stem: &str,
) -> Result<Vec<PathBuf>, MeshStageError> {
    let (model, summary) = read_mesh_dir(mesh_dir)?;
    std::fs::create_dir_all(out_dir).map_err(ExportError::io(out_dir))?;
    let mut written = Vec::new();
    for format in formats {
        match format {
            Format::Glb => {
                let path = out_dir.join(format!("{stem}.glb"));
                glb::write_glb(&path, &model)?;
                written.push(path);
            }
            Format::Usdz => {
                let path = out_dir.join(format!("{stem}.usdz"));
                usdz::write_usdz(&path, &model)?;
                written.push(path);
            }
            Format::Obj => written.extend(obj::write_obj(&out_dir.join(format!("{stem}.obj")), &model)?),
            Format::Ply => written.push(copy_splats(&summary.sources.splats, out_dir)?),
        }
    }
    Ok(written)
}

/// Copies the training splats into `out_dir` (atomically), byte for byte.
fn copy_splats(splats: &Path, out_dir: &Path) -> Result<PathBuf, MeshStageError> {
    let bytes = std::fs::read(splats)
        .map_err(|e| MeshStageError::bad_folder(splats, format!("{e} (the training splats mesh.json names)")))?;
    let path = out_dir.join(SPLATS_FILE);
    write_atomically(&path, |w| std::io::Write::write_all(w, &bytes)).map_err(ExportError::io(&path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_found_by_stem_or_by_colmap_name_and_a_missing_one_is_named() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/bunny-mini");
        let mut dataset = Dataset::open(&fixture).unwrap();
        let masks = std::env::temp_dir().join(format!("kiln-attach-masks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&masks);
        std::fs::create_dir_all(&masks).unwrap();
        let names: Vec<_> = dataset.views.iter().map(|v| v.image_path.file_name().unwrap().to_owned()).collect();
        for (i, name) in names.iter().enumerate() {
            // Half as `0000.png`, half as COLMAP's `0003.jpg.png`.
            let stem = Path::new(name).file_stem().unwrap().to_string_lossy().into_owned();
            let mask = if i % 2 == 0 { format!("{stem}.png") } else { format!("{}.png", name.to_string_lossy()) };
            std::fs::write(masks.join(mask), b"").unwrap();
        }
        let removed = masks.join(format!("{}.png", names[1].to_string_lossy()));
        std::fs::remove_file(&removed).unwrap();
        let error = attach_masks(&mut dataset.clone(), &masks).unwrap_err().to_string();
        assert!(error.contains(&*names[1].to_string_lossy()) && error.contains("no mask for"), "{error}");
        std::fs::write(&removed, b"").unwrap();
        attach_masks(&mut dataset, &masks).unwrap();
        for (view, name) in dataset.views.iter().zip(&names) {
            let mask = view.mask_path.as_ref().unwrap().file_name().unwrap().to_string_lossy().into_owned();
            assert!(mask.starts_with(&*Path::new(name).file_stem().unwrap().to_string_lossy()), "{mask} for {name:?}");
        }
        std::fs::remove_dir_all(&masks).unwrap();
    }

    #[test]
    fn sources_beside_the_mesh_folder_are_recorded_relative_and_read_back_against_it() {
        let sources = MeshSources {
            train_dir: "/jobs/a/train".into(),
            splats: "/jobs/a/train/splats.ply".into(),
            dataset: "/data/set/transforms.json".into(),
            masked_views: 3,
        };
        let recorded = sources.relative_to(Path::new("/jobs/a/mesh"));
        assert_eq!(recorded.train_dir, Path::new("../train"));
        assert_eq!(recorded.splats, Path::new("../train/splats.ply"));
        assert_eq!(recorded.dataset, Path::new("/data/set/transforms.json"), "elsewhere: absolute");
        // The folder moved (a download): the sources are its own.
        let moved = recorded.resolved(Path::new("/home/me/job/mesh"));
        assert_eq!(moved.splats, Path::new("/home/me/job/mesh/../train/splats.ply"));
        assert_eq!(moved.dataset, Path::new("/data/set/transforms.json"));
        assert_eq!(moved.masked_views, 3);
    }

    #[test]
    fn formats_parse_case_insensitively() {
        assert_eq!("GLB".parse::<Format>().unwrap(), Format::Glb);
        assert_eq!(" usdz".parse::<Format>().unwrap(), Format::Usdz);
        assert!("fbx".parse::<Format>().is_err());
    }

    #[test]
    fn overrides_win_over_the_preset() {
        let options = MeshOptions { preset: Preset::Preview, max_triangles: Some(1000), ..Default::default() };
        assert_eq!(options.max_triangles(), Some(1000));
        assert_eq!(options.texture_size(), 1024);
        let raw = MeshOptions { preset: Preset::Raw, ..Default::default() };
        assert_eq!(raw.max_triangles(), None);
    }

    #[test]
    fn a_mat_sets_the_frame_and_a_size_the_user_gave_wins_over_its_scale() {
        // A tetrahedron 2 world units tall on z = 0; the mat's frame is the world's at 50 mm a unit.
        let mesh = TriMesh {
            positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0]],
            triangles: vec![[0, 2, 1], [0, 1, 3], [1, 2, 3], [2, 0, 3]],
            ..Default::default()
        };
        let fit = MatFit {
            layout: &kiln_mat::LAYOUTS[0],
            mat_from_world: kiln_mat::Similarity {
                scale: 50.0,
                rotation: glam::DMat3::IDENTITY,
                translation: DVec3::ZERO,
            },
            rms_mm: 0.3,
            markers: 12,
            corners: 48,
            corners_rejected: 0,
        };
        let cleanup = CleanupReport::default();
        let none = FrameOptions::default();
        let (frame, scale, up) = export_frame(&mesh, &cleanup, Some(DVec3::X), Some(&fit), &none).unwrap();
        assert_eq!((scale, up), (ScaleSource::Mat, UpSource::Mat));
        assert!((frame.metres_per_world_unit - 0.05).abs() < 1e-12);
        let apex = frame.transform_point(DVec3::new(0.0, 0.0, 2.0));
        assert!((apex.y - 0.1).abs() < 1e-9, "100 mm up the mat's normal: {apex}");
        assert!(mat_figures(&fit, scale).used);
        let user = FrameOptions { size_mm: Some(300.0), ..Default::default() };
        let (frame, scale, up) = export_frame(&mesh, &cleanup, Some(DVec3::X), Some(&fit), &user).unwrap();
        assert_eq!((scale, up), (ScaleSource::User, UpSource::Mat), "the user's size, the mat's up");
        assert!((frame.metres_per_world_unit - 0.15).abs() < 1e-12, "2 units are 300 mm");
        assert!(!mat_figures(&fit, scale).used);
        let (_, scale, up) = export_frame(&mesh, &cleanup, Some(DVec3::X), None, &none).unwrap();
        assert_eq!((scale, up), (ScaleSource::Unknown, UpSource::CameraUp), "no mat: nothing changes");
    }

    #[test]
    fn ground_plane_wins_over_camera_up() {
        let report = CleanupReport {
            ground: Some(kiln_mesh::cleanup::Plane { normal: [0.0, 0.0, 1.0], offset: 0.0 }),
            ..Default::default()
        };
        assert_eq!(export_up(&report, Some(DVec3::X)), (DVec3::Z, UpSource::GroundPlane));
        assert_eq!(export_up(&CleanupReport::default(), Some(DVec3::X)), (DVec3::X, UpSource::CameraUp));
        assert_eq!(export_up(&CleanupReport::default(), None).1, UpSource::WorldY);
    }
}
