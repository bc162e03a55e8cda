//! The mesh stage as `kiln mesh` and `kiln export` run it.
//!
//! [`run_mesh_stage`]: a training folder (`splats.ply` + `metrics.json`, which names the dataset)
//! in; the photos are loaded again, then surface → cleanup → decimation → UV atlas → baking →
//! export frame, and the mesh folder is written (only at the end, so a stop on request, checked
//! between these steps and per view in the depth renders and the bake, leaves nothing new):
//! - `mesh.ply`: the final textured mesh **in the export frame** (metres, +Y up, base at y = 0)
//!   with normals and UVs (PLY's `v` upwards, see [`super::ply`]);
//! - `basecolor.png`: its 8-bit sRGB base-colour texture (glTF orientation);
//! - `normal.png`: when the mesh was decimated, a tangent-space normal map carrying the dense
//!   surface's detail (glTF convention);
//! - `mesh.json`: [`MeshSummary`]: preset, counts, `export_from_world` (row-major 4×4) and how it
//!   was found, sources, timings.
//!
//! [`export_mesh_dir`]: a mesh folder in; `model.glb`, `model.usdz`, `model.obj` (+ `.mtl`,
//! `.png`) and `splats.ply` (the training splats, copied unchanged, so in the input's world
//! frame: `mesh.json`'s `export_from_world` places them with the mesh) out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use glam::DVec3;

use super::cleanup::{CleanupOptions, CleanupReport, cleanup};
use super::decimate::{DecimateOptions, decimate};
use super::error::MeshError;
use super::preset::Preset;
use super::surface::{Region, SurfaceOptions, SurfaceView, extract_surface, region_of_interest};
use super::{TexturedMesh, TriMesh, ply};
use crate::atomic_file::write_atomically;
use crate::camera::Camera;
use crate::dataset::{Dataset, DatasetError, OpenOptions, load_views};
use crate::export::frame::{ExportFrame, FrameOptions, mean_camera_up};
use crate::export::{ExportError, glb, obj, usdz};
use crate::image_buf::{ImageGray, ImageRgb};
use crate::splats::Splats;
use crate::splats::ply::{PlyError, read_splats};
use crate::texture::TextureError;
use crate::texture::atlas::{AtlasOptions, build_atlas};
use crate::texture::bake::{BakeOptions, BakeView, bake_base_color};
use crate::texture::normal_map::bake_normal_map;

/// File names inside a training folder and a mesh folder.
pub const SPLATS_FILE: &str = "splats.ply";
pub const TRAIN_METRICS_FILE: &str = "metrics.json";
pub const MESH_FILE: &str = "mesh.ply";
pub const BASE_COLOR_FILE: &str = "basecolor.png";
pub const NORMAL_MAP_FILE: &str = "normal.png";
pub const MESH_JSON_FILE: &str = "mesh.json";
/// Stem of the exported model files (`model.glb`, `model.usdz`, `model.obj`).
pub const MODEL_STEM: &str = "model";
/// Photos are loaded at the training resolution when `metrics.json` does not say it.
const DEFAULT_MAX_SIDE: u32 = 1600;
/// What `mesh.json` says about the frame of the passthrough `splats.ply`.
const SPLATS_FRAME_NOTE: &str = "input world frame (copied unchanged); apply export_from_world to place them with the mesh";

/// Errors of the mesh stage and of exporting a mesh folder.
#[derive(Debug, thiserror::Error)]
pub enum MeshStageError {
    /// A training or mesh folder that is missing a file or holds an unreadable one.
    #[error("{}: {problem}", path.display())]
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
    /// Whether the input was at fault (a folder or dataset Kiln cannot use) rather than the work.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, MeshStageError::BadFolder { .. } | MeshStageError::Dataset(_) | MeshStageError::Splats(_))
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
    pub stage: &'static str,
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
}

/// The files a mesh folder was made from.
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
    pub up_source: UpSource,
    /// Extent of the exported mesh along x, y, z, metres.
    pub size_m: [f32; 3],
    /// TSDF voxel side, input world units.
    pub voxel_size: f32,
    pub extracted_triangles: usize,
    pub holes_capped: usize,
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
    let mut dataset = Dataset::open_with(&dataset_path, &OpenOptions { skip_missing_images: true, ..Default::default() })?;
    if let Some(masks) = &options.masks {
        attach_masks(&mut dataset, masks)?;
    }
    let masked_views = dataset.views.iter().filter(|view| view.mask_path.is_some()).count();
    progress(MeshProgress { stage: "load", done: 0, total: 1 });
    let views = load(&dataset, info.max_side)?;
    progress(MeshProgress { stage: "load", done: 1, total: 1 });
    timings.lap("load");

    check_stop(should_stop)?;
    let (dense, voxel_size) = surface(&splats, &views, options.preset, progress, should_stop)?;
    timings.lap("surface");
    check_stop(should_stop)?;
    let up_hint = mean_camera_up(&views.cameras);
    // Masks on every photo already carve the ground away: a plane RANSAC finds is then the object's own.
    let has_ground = masked_views < dataset.views.len();
    let (clean, report) = clean_up(&dense, voxel_size, up_hint, has_ground, progress)?;
    timings.lap("cleanup");
    check_stop(should_stop)?;
    let textured = texture(&clean, &views, options, progress, should_stop)?;
    timings.lap("texture");
    check_stop(should_stop)?;

    let (up, up_source) = export_up(&report, up_hint);
    let frame = ExportFrame::new(&textured.mesh, up, &options.frame)?;
    let exported = TexturedMesh { mesh: frame.apply(&textured.mesh), ..textured };
    let sources = MeshSources { train_dir: train_dir.to_path_buf(), splats: splats_path, dataset: dataset_path, masked_views };
    let mut summary = MeshSummary {
        generator: glb::GENERATOR.to_string(),
        preset: options.preset,
        triangles: exported.mesh.num_triangles(),
        vertices: exported.mesh.num_vertices(),
        texture_size: exported.base_color.width(),
        export_from_world: frame.row_major(),
        metres_per_world_unit: frame.metres_per_world_unit,
        up_source,
        size_m: size(&exported.mesh),
        voxel_size,
        extracted_triangles: dense.num_triangles(),
        holes_capped: report.holes_capped,
        components_dropped: report.components_dropped,
        sources,
        splats_frame: SPLATS_FRAME_NOTE.to_string(),
        timings_s: BTreeMap::new(),
    };
    progress(MeshProgress { stage: "write", done: 0, total: 1 });
    write_mesh_dir(out, &exported, &mut summary, timings)?;
    progress(MeshProgress { stage: "write", done: 1, total: 1 });
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
    let text = std::fs::read_to_string(&path)
        .map_err(|e| MeshStageError::bad_folder(&path, format!("{e} (is {} a `kiln train` output folder?)", train_dir.display())))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| MeshStageError::bad_folder(&path, format!("invalid JSON: {e}")))?;
    let dataset = json["dataset"]
        .as_str()
        .ok_or_else(|| MeshStageError::bad_folder(&path, "no \"dataset\" path"))?;
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
                format!("no mask for {} (looked for {} and {})", view.image_path.display(), candidates[0].display(), candidates[1].display()),
            ));
        };
        view.mask_path = Some(found.clone());
    }
    Ok(())
}

fn load(dataset: &Dataset, max_side: u32) -> Result<LoadedViews, MeshStageError> {
    let loaded = load_views(&dataset.views, max_side)?;
    let mut views = LoadedViews { cameras: Vec::new(), images: Vec::new(), masks: Vec::new() };
    for (camera, image, mask) in loaded {
        views.cameras.push(camera);
        views.images.push(image);
        views.masks.push(mask);
    }
    Ok(views)
}

/// The dense surface and the voxel size it was extracted at.
fn surface(
    splats: &Splats,
    views: &LoadedViews,
    preset: Preset,
    progress: &mut dyn FnMut(MeshProgress),
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Result<(TriMesh, f32), MeshStageError> {
    let surface_views: Vec<SurfaceView> =
        views.cameras.iter().zip(&views.masks).map(|(camera, mask)| SurfaceView { camera: *camera, mask: mask.clone() }).collect();
    let (min, max) = region_of_interest(splats, &surface_views, Region::Auto)?;
    let longest = (0..3).map(|k| max[k] - min[k]).fold(0.0f32, f32::max);
    let voxel_size = longest / preset.voxels_across();
    if !(voxel_size > 0.0 && voxel_size.is_finite()) {
        return Err(MeshError::InvalidInput(format!("empty extraction region {min:?}..{max:?}")).into());
    }
    let mut report = |done, total| progress(MeshProgress { stage: "surface", done, total });
    let mesh =
        extract_surface(splats, &surface_views, &SurfaceOptions::for_voxel_size(voxel_size), &mut report, should_stop)?;
    Ok((mesh, voxel_size))
}

fn clean_up(
    dense: &TriMesh,
    voxel_size: f32,
    up_hint: Option<DVec3>,
    has_ground: bool,
    progress: &mut dyn FnMut(MeshProgress),
) -> Result<(TriMesh, CleanupReport), MeshStageError> {
    progress(MeshProgress { stage: "cleanup", done: 0, total: 1 });
    let options = CleanupOptions {
        up: up_hint.map(|u| u.as_vec3().to_array()),
        remove_ground: has_ground,
        ..CleanupOptions::for_voxel_size(voxel_size)
    };
    let result = cleanup(dense, &options)?;
    progress(MeshProgress { stage: "cleanup", done: 1, total: 1 });
    Ok(result)
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
    progress(MeshProgress { stage: "decimate", done: 0, total: STEPS });
    let decimated = match options.max_triangles() {
        Some(budget) => decimate(mesh, budget, &DecimateOptions::default()),
        None => mesh.clone(),
    };
    check_stop(should_stop)?;
    progress(MeshProgress { stage: "atlas", done: 1, total: STEPS });
    let size = options.texture_size();
    let atlased = build_atlas(&decimated, size, &AtlasOptions::default())?;
    check_stop(should_stop)?;
    progress(MeshProgress { stage: "bake", done: 2, total: STEPS });
    let bake_views: Vec<BakeView> = (0..views.cameras.len())
        .map(|i| BakeView { camera: views.cameras[i], image: views.images[i].clone(), mask: views.masks[i].clone() })
        .collect();
    let base_color = bake_base_color(&atlased, &bake_views, size, &BakeOptions::default(), should_stop)?;
    check_stop(should_stop)?;
    progress(MeshProgress { stage: "bake", done: 3, total: STEPS });
    let normal_map = if decimated.num_triangles() < mesh.num_triangles() {
        Some(bake_normal_map(mesh, &atlased, size)?)
    } else {
        None
    };
    progress(MeshProgress { stage: "bake", done: STEPS, total: STEPS });
    Ok(TexturedMesh { mesh: atlased, base_color, normal_map })
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

fn size(mesh: &TriMesh) -> [f32; 3] {
    mesh.bounds().map_or([0.0; 3], |(lo, hi)| std::array::from_fn(|k| hi[k] - lo[k]))
}

fn write_mesh_dir(out: &Path, model: &TexturedMesh, summary: &mut MeshSummary, mut timings: Timings) -> Result<(), MeshStageError> {
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
    let text = serde_json::to_string_pretty(summary).map_err(|e| MeshStageError::bad_folder(&path, e.to_string()))?;
    write_atomically(&path, |w| std::io::Write::write_all(w, text.as_bytes())).map_err(ExportError::io(&path))?;
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), ExportError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ExportError::Io { path: path.to_path_buf(), source: e }),
        _ => Ok(()),
    }
}

fn write_png(path: &Path, image: &image::RgbImage) -> Result<(), ExportError> {
    write_atomically(path, |w| {
        image.write_to(w, image::ImageFormat::Png).map_err(std::io::Error::other)
    })
    .map_err(ExportError::io(path))
}

/// A file format [`export_mesh_dir`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Glb,
    Usdz,
    Obj,
    /// The training splats (3DGS PLY), copied unchanged.
    Ply,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "glb" => Ok(Format::Glb),
            "usdz" => Ok(Format::Usdz),
            "obj" => Ok(Format::Obj),
            "ply" => Ok(Format::Ply),
            _ => Err(format!("unknown format {text:?}: expected glb, usdz, obj or ply")),
        }
    }
}

/// A mesh folder read back: the textured mesh (export frame) and its summary.
pub fn read_mesh_dir(mesh_dir: &Path) -> Result<(TexturedMesh, MeshSummary), MeshStageError> {
    let json_path = mesh_dir.join(MESH_JSON_FILE);
    let text = std::fs::read_to_string(&json_path)
        .map_err(|e| MeshStageError::bad_folder(&json_path, format!("{e} (is {} a `kiln mesh` output folder?)", mesh_dir.display())))?;
    let summary: MeshSummary =
        serde_json::from_str(&text).map_err(|e| MeshStageError::bad_folder(&json_path, format!("invalid mesh.json: {e}")))?;
    let mesh = ply::read_mesh(&mesh_dir.join(MESH_FILE)).map_err(|e| MeshStageError::bad_folder(mesh_dir, e.to_string()))?;
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

/// Writes the requested `formats` of the mesh folder `mesh_dir` into `out_dir` (see the module
/// docs); returns every file written.
pub fn export_mesh_dir(mesh_dir: &Path, out_dir: &Path, formats: &[Format]) -> Result<Vec<PathBuf>, MeshStageError> {
    let (model, summary) = read_mesh_dir(mesh_dir)?;
    std::fs::create_dir_all(out_dir).map_err(ExportError::io(out_dir))?;
    let mut written = Vec::new();
    for format in formats {
        match format {
            Format::Glb => {
                let path = out_dir.join(format!("{MODEL_STEM}.glb"));
                glb::write_glb(&path, &model)?;
                written.push(path);
            }
            Format::Usdz => {
                let path = out_dir.join(format!("{MODEL_STEM}.usdz"));
                usdz::write_usdz(&path, &model)?;
                written.push(path);
            }
            Format::Obj => written.extend(obj::write_obj(&out_dir.join(format!("{MODEL_STEM}.obj")), &model)?),
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
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bunny-mini");
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
    fn ground_plane_wins_over_camera_up() {
        let report = CleanupReport {
            ground: Some(super::super::cleanup::Plane { normal: [0.0, 0.0, 1.0], offset: 0.0 }),
            ..Default::default()
        };
        assert_eq!(export_up(&report, Some(DVec3::X)), (DVec3::Z, UpSource::GroundPlane));
        assert_eq!(export_up(&CleanupReport::default(), Some(DVec3::X)), (DVec3::X, UpSource::CameraUp));
        assert_eq!(export_up(&CleanupReport::default(), None).1, UpSource::WorldY);
    }
}
