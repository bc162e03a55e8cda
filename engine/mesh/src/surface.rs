//! Trained splats → a triangle surface: median-depth renders from every view, fused into a
//! sparse TSDF ([`super::tsdf`]) over a region of interest, then marching cubes and vertex
//! normals.
//!
//! Each view is rendered with the CPU reference renderer's compositing at most `depth_max_side`
//! pixels on its longer side; a pixel gives a depth when its accumulated alpha reaches
//! `min_alpha` and transmittance falls to `depth_transmittance` along its ray (by default the
//! front of the splats' shell, see [`DEPTH_TRANSMITTANCE`]). Such a quantile depth, unlike the
//! alpha-weighted mean depth, never lands between a foreground and a background surface, so
//! silhouettes do not smear into "flying" geometry. When a view has a mask, its background
//! pixels are fused as seen-empty space, which carves away what is not the object.
//!
//! Region of interest ([`Region`]): `Object` is the point the cameras' optical axes converge on
//! (least squares) with a radius of the median camera distance times the tangent of the
//! narrower half field of view (what an object framed by the photos can occupy); `Auto` takes
//! `Object` when at least [`INWARD_FRACTION`] of the cameras see that point in their image
//! (an object capture), else the central 96 % of the splats along each axis (a scene).

mod depth;

use glam::{Mat3, Vec3};

use crate::tsdf::{DepthFrame, SEEN_EMPTY, TsdfVolume};
use kiln_core::camera::Camera;
use kiln_core::image_buf::ImageGray;
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::error::MeshError;
use kiln_core::splats::Splats;

/// Fraction of cameras that must see the axes' convergence point for `Auto` to treat the
/// capture as an object walked around (rather than a scene looked out at).
pub const INWARD_FRACTION: f32 = 0.8;
/// Fraction of splats cut at each end of each axis for a scene's region (outlier floaters far
/// out would otherwise stretch it).
const SCENE_PERCENTILE: f32 = 0.02;
/// Share of each side of a depth frame, around its centre, that [`looked_at`] reads.
const CENTRE_WINDOW: f32 = 0.2;
/// Transmittance at which a depth render takes each pixel's depth: where the first 20 % of the
/// opacity has accumulated. Splats trained from photos alone form a shell a pixel or so thick
/// whose front is the surface: on bunny-synth at 200 px, against the ground-truth mesh's depth,
/// the median depth (T = ½) lies 2.6 mm behind it (median per pixel; 1.5 mm at 400 px), the
/// centre depth at T = 0.8 0.7 mm behind and at T = 0.9 0.2 mm in front but noisier. Fused
/// (2 mm voxels, 80 views) these gave Chamfer 2.44 mm / F@1mm 0.19 (ray peak at ½, the former
/// default), 1.35 / 0.52 (ray peak at 0.9), 2.02 / 0.41 (centre at 0.9) and 1.34 / 0.64 (centre
/// at 0.8); see `engine/tests/mesh_measure.rs`.
pub const DEPTH_TRANSMITTANCE: f32 = 0.8;
/// Mask values below this mark background.
const MASK_THRESHOLD: f32 = 0.5;

/// One view for surface extraction: its camera (any resolution) and optionally an object mask
/// (1 = object) at any resolution with the same aspect ratio.
#[derive(Clone, Debug)]
pub struct SurfaceView {
    pub camera: Camera,
    pub mask: Option<ImageGray>,
}

/// Which depth each pixel of a depth render gives, at the splat where transmittance reaches
/// the chosen level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepthMode {
    /// That splat's centre depth (at ½ this is the renderer's `median_depth`).
    SplatCentre,
    /// Where the ray peaks in that splat's density (see `depth`): on the splat's plane, exact
    /// for flat splats on a surface, behind the front for the blob-like splats of a short
    /// training (see [`DEPTH_TRANSMITTANCE`]).
    RayPeak,
}

/// Where to build the surface.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Region {
    /// `Object` for inward-facing captures, else the splats' extent (see the module docs).
    Auto,
    /// Around the point the cameras look at.
    Object,
    /// An explicit world-space box.
    Aabb { min: [f32; 3], max: [f32; 3] },
}

/// Surface extraction settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SurfaceOptions {
    /// Side of a TSDF voxel, world units.
    pub voxel_size: f32,
    /// TSDF truncation distance in voxels.
    pub truncation_voxels: f32,
    pub region: Region,
    /// Longer side of the depth renders, pixels (capped at each view's own resolution).
    pub depth_max_side: u32,
    /// Accumulated alpha below which a rendered pixel gives no depth.
    pub min_alpha: f32,
    /// Observations a voxel needs before it takes part in the surface.
    pub min_weight: f32,
    pub depth_mode: DepthMode,
    /// Transmittance at which a pixel's depth is taken (½: the median depth).
    pub depth_transmittance: f32,
}

impl SurfaceOptions {
    /// Settings for voxels of side `voxel_size`: a 4-voxel truncation band, depth rendered at
    /// 800 pixels, pixels at least 90 % opaque, voxels seen by at least 2 views, and each
    /// pixel's depth the centre depth of the splat at which transmittance first falls to
    /// [`DEPTH_TRANSMITTANCE`].
    pub fn for_voxel_size(voxel_size: f32) -> Self {
        Self {
            voxel_size,
            truncation_voxels: 4.0,
            region: Region::Auto,
            depth_max_side: 800,
            min_alpha: 0.9,
            min_weight: 2.0,
            depth_mode: DepthMode::SplatCentre,
            depth_transmittance: DEPTH_TRANSMITTANCE,
        }
    }
}

/// Extracts the surface of `splats` as seen from `views` (see the module docs). `progress` gets
/// `(views rendered, views)` as depth maps are made; `should_stop` is checked before each view
/// and before fusion, and ends the extraction with [`MeshError::Cancelled`] once it is true.
pub fn extract_surface(
    splats: &Splats,
    views: &[SurfaceView],
    options: &SurfaceOptions,
    progress: &mut dyn FnMut(usize, usize),
    should_stop: &dyn Fn() -> bool,
) -> Result<TriMesh, MeshError> {
    if views.is_empty() || splats.is_empty() {
        return Err(MeshError::InvalidInput(format!("{} views and {} splats: need both", views.len(), splats.len())));
    }
    let (min, max) = region_of_interest(splats, views, options.region)?;
    let frames = render_depth_frames(splats, views, options, progress, should_stop)?;
    if should_stop() {
        return Err(MeshError::Cancelled);
    }
    fuse_frames(&frames, min, max, options)
}

/// One depth map per view (see [`render_depth`]); the same frames can be fused over several
/// regions. `progress` and `should_stop` as in [`extract_surface`].
pub fn render_depth_frames(
    splats: &Splats,
    views: &[SurfaceView],
    options: &SurfaceOptions,
    progress: &mut dyn FnMut(usize, usize),
    should_stop: &dyn Fn() -> bool,
) -> Result<Vec<DepthFrame>, MeshError> {
    let mut frames = Vec::with_capacity(views.len());
    for (i, view) in views.iter().enumerate() {
        if should_stop() {
            return Err(MeshError::Cancelled);
        }
        frames.push(render_depth(splats, view, options));
        progress(i + 1, views.len());
    }
    Ok(frames)
}

/// Fuses `frames` into a TSDF over the box `min..max` with `options`' voxels and truncation,
/// and extracts its surface with vertex normals.
pub fn fuse_frames(
    frames: &[DepthFrame],
    min: [f32; 3],
    max: [f32; 3],
    options: &SurfaceOptions,
) -> Result<TriMesh, MeshError> {
    let truncation = options.truncation_voxels * options.voxel_size;
    let mut volume = TsdfVolume::new(min, max, options.voxel_size, truncation)?;
    volume.allocate(frames);
    tracing::info!("surface: region {min:?}..{max:?}, {} blocks allocated", volume.num_blocks());
    volume.integrate(frames);
    let mut mesh = volume.extract_surface(options.min_weight)?;
    mesh.normals = mesh.vertex_normals();
    Ok(mesh)
}

/// The world-space box that `region` means for these splats and views.
pub fn region_of_interest(
    splats: &Splats,
    views: &[SurfaceView],
    region: Region,
) -> Result<([f32; 3], [f32; 3]), MeshError> {
    let cameras: Vec<Camera> = views.iter().map(|v| v.camera).collect();
    match region {
        Region::Aabb { min, max } => Ok((min, max)),
        Region::Object => object_region(&cameras)
            .ok_or_else(|| MeshError::InvalidInput("the cameras' optical axes do not converge on an object".into())),
        Region::Auto => match object_region(&cameras) {
            Some(roi) if sees_convergence(&cameras) => Ok(roi),
            _ => scene_region(splats),
        },
    }
}

/// Least-squares point closest to every camera's optical axis.
pub fn convergence_point(cameras: &[Camera]) -> Option<Vec3> {
    let (mut a, mut b) = (Mat3::ZERO, Vec3::ZERO);
    for camera in cameras {
        let d = camera.world_from_camera.forward().normalize();
        let projector = Mat3::IDENTITY - Mat3::from_cols(d * d.x, d * d.y, d * d.z);
        a += projector;
        b += projector * camera.center();
    }
    (a.determinant().abs() > 1e-6).then(|| a.inverse() * b)
}

/// The box an object framed by every camera can occupy: centred where their axes converge, with
/// a half side of the median camera distance times the tangent of the narrowest half field of
/// view.
pub fn object_region(cameras: &[Camera]) -> Option<([f32; 3], [f32; 3])> {
    object_region_around(cameras, convergence_point(cameras)?)
}

/// [`object_region`] centred on `center` instead.
pub fn object_region_around(cameras: &[Camera], center: Vec3) -> Option<([f32; 3], [f32; 3])> {
    let mut distances: Vec<f32> = cameras.iter().map(|c| (c.center() - center).length()).collect();
    distances.sort_by(f32::total_cmp);
    let median = *distances.get(distances.len() / 2)?;
    let half_fov_tan = cameras
        .iter()
        .map(|c| {
            let k = c.intrinsics;
            (k.cx.min(k.width as f32 - k.cx) / k.fx).min(k.cy.min(k.height as f32 - k.cy) / k.fy)
        })
        .fold(f32::INFINITY, f32::min);
    let radius = median * half_fov_tan;
    (radius.is_finite() && radius > 0.0).then(|| ((center - radius).to_array(), (center + radius).to_array()))
}

/// The surface the cameras look at: per depth frame, the median depth in the central
/// [`CENTRE_WINDOW`] of the image placed on the optical axis, and of those points the median
/// along each axis. Axes that converge poorly (photos of a façade from a few steps apart, a
/// narrow arc) put their least-squares meeting point far off; what the photos centre on is
/// where the surface is.
pub fn looked_at(frames: &[DepthFrame]) -> Option<Vec3> {
    let points: Vec<Vec3> = frames.iter().filter_map(centre_point).collect();
    if points.is_empty() {
        return None;
    }
    let median = |k: usize| {
        let mut values: Vec<f32> = points.iter().map(|p| p[k]).collect();
        values.sort_by(f32::total_cmp);
        values[values.len() / 2]
    };
    Some(Vec3::new(median(0), median(1), median(2)))
}

/// The point on `frame`'s optical axis at the median depth of its central window.
fn centre_point(frame: &DepthFrame) -> Option<Vec3> {
    let (w, h) = (frame.depth.width, frame.depth.height);
    let margin = |side: u32| ((1.0 - CENTRE_WINDOW) / 2.0 * side as f32) as u32;
    let (x0, y0) = (margin(w), margin(h));
    let mut depths: Vec<f32> = (y0..h - y0)
        .flat_map(|y| (x0..w - x0).map(move |x| (y * w + x) as usize))
        .filter_map(|i| frame.depth.pixels.get(i).copied())
        .filter(|d| *d > 0.0 && d.is_finite())
        .collect();
    if depths.is_empty() {
        return None;
    }
    depths.sort_by(f32::total_cmp);
    let depth = depths[depths.len() / 2];
    let k = frame.camera.intrinsics;
    let axis = Vec3::new((k.width as f32 / 2.0 - k.cx) / k.fx, (k.height as f32 / 2.0 - k.cy) / k.fy, 1.0);
    Some(frame.camera.world_from_camera.transform_point(axis * depth))
}

/// Whether the capture is of an object walked around (most cameras see the point their axes
/// converge on) rather than of a scene looked out at.
pub fn sees_convergence(cameras: &[Camera]) -> bool {
    let Some(center) = convergence_point(cameras) else { return false };
    let seeing = cameras
        .iter()
        .filter(|c| {
            let p = c.camera_from_world().transform_point(center);
            let [u, v] = c.intrinsics.project(p);
            p.z > 0.0 && u >= 0.0 && v >= 0.0 && u < c.width() as f32 && v < c.height() as f32
        })
        .count();
    seeing as f32 >= INWARD_FRACTION * cameras.len() as f32
}

fn scene_region(splats: &Splats) -> Result<([f32; 3], [f32; 3]), MeshError> {
    let n = splats.len();
    let cut = (SCENE_PERCENTILE * n as f32) as usize;
    let mut min = [0.0; 3];
    let mut max = [0.0; 3];
    for k in 0..3 {
        let mut values: Vec<f32> = splats.means.iter().map(|m| m[k]).filter(|v| v.is_finite()).collect();
        if values.len() <= 2 * cut {
            return Err(MeshError::InvalidInput("too few finite splats for a region".into()));
        }
        values.sort_by(f32::total_cmp);
        min[k] = values[cut];
        max[k] = values[values.len() - 1 - cut];
    }
    Ok((min, max))
}

/// Median depth of `splats` seen from `view` at `options.depth_max_side`, the way
/// `options.depth_mode` says; mask background becomes [`SEEN_EMPTY`], pixels less opaque than
/// `options.min_alpha` unknown (0).
pub fn render_depth(splats: &Splats, view: &SurfaceView, options: &SurfaceOptions) -> DepthFrame {
    let camera = fit_camera(&view.camera, options.depth_max_side);
    let (median_depth, alpha) =
        depth::render_depth_at(splats, &camera, options.depth_mode, options.depth_transmittance);
    let (w, h) = (camera.width(), camera.height());
    let mut depth = ImageGray::new(w, h, 0.0);
    for j in 0..h {
        for i in 0..w {
            let k = (j * w + i) as usize;
            let background =
                view.mask.as_ref().is_some_and(|m| m.sample_scaled(i, j, w, h).is_some_and(|v| v < MASK_THRESHOLD));
            let d = median_depth.pixels[k];
            depth.pixels[k] = if background {
                SEEN_EMPTY
            } else if alpha.pixels[k] >= options.min_alpha && d > 0.0 {
                d
            } else {
                0.0
            };
        }
    }
    DepthFrame { camera, depth }
}

/// `camera` scaled to at most `max_side` pixels on its longer side (never enlarged).
fn fit_camera(camera: &Camera, max_side: u32) -> Camera {
    let (w, h) = (camera.width(), camera.height());
    let longer = w.max(h);
    if longer <= max_side || max_side == 0 {
        return *camera;
    }
    let scale = max_side as f32 / longer as f32;
    camera.resized(((w as f32 * scale).round() as u32).max(1), ((h as f32 * scale).round() as u32).max(1))
}
