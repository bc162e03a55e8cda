//! Base-colour baking: every texel of the atlas takes its colour from the input photos that see
//! its surface point best, after balancing their exposures, with seams dilated afterwards.
//!
//! 1. **Texel map**: each UV triangle is rasterised at texel centres; a texel inside keeps its
//!    triangle and barycentrics (hence a 3D point and the face normal). Texels that only touch a
//!    triangle (within [`EDGE_TEXELS`]) take the nearest point of it, so bilinear filtering at
//!    chart borders reads surface colour.
//! 2. **Visibility**: a CPU z-buffer of the mesh per view (OpenCV camera, pixel centres at
//!    `i + 0.5`); a point is seen when it is in front, inside the image (and the mask), faces the
//!    camera, and lies no deeper than [`BakeOptions::depth_tolerance`] (relative) behind the
//!    depth of each of the four pixels its bilinear sample reads.
//! 3. **Weights**: `cos² θ · (f / z)²` — the photo's pixels per unit of surface, squared-cosine
//!    so grazing views (smeared, least sharp) count little; the best [`BLEND_VIEWS`] are blended.
//! 4. **Exposure**: a per-view RGB gain from surface points seen by several views: least squares
//!    on log colours (`log observed = log albedo + log exposure`), Huber-weighted, with a weak
//!    prior towards gain 1 and the median view fixed at gain 1 (so one odd view moves itself,
//!    not the others).
//! 5. **Fill**: [`BakeOptions::dilation_texels`] rounds of neighbour averaging push colours into
//!    the gutters; whatever is still empty (gutters further away, texels no view sees) is filled
//!    by a pull-push pyramid so mipmaps show no cracks.
//!
//! Photos are sRGB-encoded `[0, 1]`; blending and gains work in linear light; the texture is
//! written 8-bit sRGB.

use glam::Vec3;
use rayon::prelude::*;

use crate::{MAX_TEXTURE_SIZE, MIN_TEXTURE_SIZE, TextureError};
use kiln_core::camera::{Camera, CameraFromWorldCv};
use kiln_core::image_buf::{ImageGray, ImageRgb, linear_to_srgb, srgb_to_linear};
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::raster::depth_buffer;
use kiln_core::mesh::raster::rasterize;

/// How many of the best views are blended per texel: more than one hides a single view's
/// noise and small misregistration; more than three blurs detail.
pub const BLEND_VIEWS: usize = 3;
/// Views kept per sample point when estimating exposure: enough overlaps per point for the
/// least squares without touching every view.
const EXPOSURE_VIEWS: usize = 8;
/// Sample points used for the exposure estimate: thousands per view on 80 views.
const EXPOSURE_SAMPLES: usize = 60_000;
/// Gauss–Seidel rounds of the exposure least squares (each converges the point colours and the
/// gains in turn; 60 are well past convergence on the tests).
const EXPOSURE_ROUNDS: usize = 60;
/// Huber threshold on log-colour residuals (≈ 8 %): beyond it a sample (specular highlight,
/// misregistration, occlusion the depth test missed) counts linearly, not quadratically.
const EXPOSURE_HUBER: f32 = 0.08;
/// Weight of the prior `log gain = 0`, in samples: it shrinks a view's log gain by
/// `prior / (prior + samples)`, negligible for a view with hundreds of samples, decisive for a
/// view seen at only a few points.
const EXPOSURE_PRIOR: f32 = 2.0;
/// Linear colours outside `[DARK, BRIGHT]` are left out of the exposure estimate: near black the
/// log is noise, near white the photo clipped.
const EXPOSURE_DARK: f32 = 0.01;
const EXPOSURE_BRIGHT: f32 = 0.95;
/// Texels whose centre lies within this many texels outside a triangle are baked too (√2/2
/// reaches every texel whose square touches the triangle).
const EDGE_TEXELS: f32 = 0.75;
/// Nearest distance (world units, relative to the camera) a point must be in front of a camera.
const NEAR_PLANE: f32 = 1e-6;

/// One input photo: undistorted, OpenCV-convention camera, sRGB `[0, 1]` pixels, and optionally a
/// mask (1 = object) of the same size.
#[derive(Clone, Debug)]
pub struct BakeView {
    pub camera: Camera,
    pub image: ImageRgb,
    pub mask: Option<ImageGray>,
}

/// Choices for [`bake_base_color`].
#[derive(Clone, Debug)]
pub struct BakeOptions {
    /// Views whose direction makes a cosine below this with the surface normal are not used
    /// (beyond ~80° a photo's pixel smears over a long strip of surface).
    pub min_cos: f32,
    /// How far behind the z-buffer a point may lie and still be visible, relative to its depth:
    /// 1 % absorbs the z-buffer's per-pixel quantisation at grazing angles.
    pub depth_tolerance: f32,
    /// Mask values below this mark background.
    pub mask_threshold: f32,
    /// Estimate and apply per-view exposure gains.
    pub balance_exposure: bool,
    /// Rounds of neighbour averaging into empty texels, before the pyramid fill.
    pub dilation_texels: u32,
}

impl Default for BakeOptions {
    fn default() -> Self {
        Self { min_cos: 0.15, depth_tolerance: 0.01, mask_threshold: 0.5, balance_exposure: true, dilation_texels: 8 }
    }
}

/// What [`bake_base_color_with_report`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct BakeReport {
    /// Texels on the surface (inside or touching a UV triangle).
    pub surface_texels: usize,
    /// Surface texels no view saw; they were filled from their neighbours.
    pub unseen_texels: usize,
    /// Per view, the linear RGB gain applied (1 without exposure balancing).
    pub gains: Vec<[f32; 3]>,
}

/// A base-colour texture; see [`bake_base_color_with_report`]. `should_stop` is checked before
/// each view's depth buffer and between the steps; once it is true the bake ends with
/// [`TextureError::Cancelled`].
pub fn bake_base_color(
    mesh: &TriMesh,
    views: &[BakeView],
    texture_size: u32,
    options: &BakeOptions,
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Result<image::RgbImage, TextureError> {
    Ok(bake_base_color_with_report(mesh, views, texture_size, options, should_stop)?.0)
}

/// [`TextureError::Cancelled`] once `should_stop()` is true.
fn check_stop(should_stop: &(dyn Fn() -> bool + Sync)) -> Result<(), TextureError> {
    if should_stop() { Err(TextureError::Cancelled) } else { Ok(()) }
}

/// Bakes a `texture_size²` 8-bit sRGB base-colour texture for `mesh` (world frame of the
/// cameras, with `uvs`) from the photos `views`, with what the bake measured.
pub fn bake_base_color_with_report(
    mesh: &TriMesh,
    views: &[BakeView],
    texture_size: u32,
    options: &BakeOptions,
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Result<(image::RgbImage, BakeReport), TextureError> {
    validate(mesh, views, texture_size)?;
    let texels = TexelMap::new(mesh, texture_size);
    let faces = face_normals(mesh);
    let scene = Scene::new(mesh, &faces, views, options, should_stop)?;
    check_stop(should_stop)?;
    let gains = if options.balance_exposure { estimate_gains(&scene, &texels) } else { vec![[1.0; 3]; views.len()] };
    check_stop(should_stop)?;
    let (mut colors, mut filled) = blend(&scene, &texels, &gains);
    let unseen_texels = texels.triangle.iter().zip(&filled).filter(|&(&t, &f)| t != NO_TRIANGLE && !f).count();
    let surface_texels = texels.triangle.iter().filter(|&&t| t != NO_TRIANGLE).count();
    dilate(&mut colors, &mut filled, texture_size, options.dilation_texels);
    pull_push_fill(&mut colors, &filled, texture_size);
    let image = encode_srgb8(&colors, texture_size);
    tracing::info!(
        "baked a {texture_size}² texture from {} views: {surface_texels} surface texels, {unseen_texels} seen by no view",
        views.len()
    );
    Ok((image, BakeReport { surface_texels, unseen_texels, gains }))
}

fn validate(mesh: &TriMesh, views: &[BakeView], texture_size: u32) -> Result<(), TextureError> {
    if !(MIN_TEXTURE_SIZE..=MAX_TEXTURE_SIZE).contains(&texture_size) {
        return Err(TextureError::TextureSize(texture_size));
    }
    if mesh.triangles.is_empty() {
        return Err(TextureError::EmptyMesh);
    }
    if mesh.uvs.len() != mesh.num_vertices() {
        return Err(TextureError::MissingUvs { uvs: mesh.uvs.len(), vertices: mesh.num_vertices() });
    }
    super::atlas::check_indices(mesh)?;
    if views.is_empty() {
        return Err(TextureError::NoViews);
    }
    for (view, v) in views.iter().enumerate() {
        let (w, h) = (v.camera.width(), v.camera.height());
        let bad = |problem: String| Err(TextureError::BadView { view, problem });
        if (v.image.width, v.image.height) != (w, h) || v.image.pixels.len() != w as usize * h as usize {
            return bad(format!("image is {}×{} but its camera is {w}×{h}", v.image.width, v.image.height));
        }
        let wrong_size = |m: &&ImageGray| (m.width, m.height) != (w, h) || m.pixels.len() != w as usize * h as usize;
        if let Some(m) = v.mask.as_ref().filter(wrong_size) {
            return bad(format!("mask is {}×{} but its image is {w}×{h}", m.width, m.height));
        }
    }
    Ok(())
}

/// Marks a texel outside every triangle.
const NO_TRIANGLE: u32 = u32::MAX;

/// Per texel (row-major, `size²`): the triangle it samples and the barycentrics of its point
/// (of corners 1 and 2; corner 0 has the rest).
struct TexelMap {
    size: u32,
    triangle: Vec<u32>,
    barycentric: Vec<[f32; 2]>,
}

impl TexelMap {
    fn new(mesh: &TriMesh, size: u32) -> Self {
        let n = size as usize * size as usize;
        let mut map = Self { size, triangle: vec![NO_TRIANGLE; n], barycentric: vec![[0.0; 2]; n] };
        // Inside first; then texels that only touch a triangle, where still free.
        for (tolerance, overwrite) in [(0.0, true), (EDGE_TEXELS, false)] {
            for (f, t) in mesh.triangles.iter().enumerate() {
                let corners = t.map(|v| mesh.uvs[v as usize].map(|c| c * size as f32));
                rasterize(corners, size, size, tolerance, |x, y, w| {
                    let i = y as usize * size as usize + x as usize;
                    if overwrite || map.triangle[i] == NO_TRIANGLE {
                        map.triangle[i] = f as u32;
                        map.barycentric[i] = clamp_to_triangle(w);
                    }
                });
            }
        }
        map
    }

    /// The world point of texel `i`, which must be on the surface.
    fn point(&self, mesh: &TriMesh, i: usize) -> Vec3 {
        let t = mesh.triangles[self.triangle[i] as usize];
        let [b1, b2] = self.barycentric[i];
        let [p0, p1, p2] = t.map(|v| Vec3::from(mesh.positions[v as usize]));
        p0 * (1.0 - b1 - b2) + p1 * b1 + p2 * b2
    }
}

/// Barycentrics moved onto the triangle (negative ones zeroed, renormalised), as `[b1, b2]`.
fn clamp_to_triangle(w: [f32; 3]) -> [f32; 2] {
    let w = w.map(|v| v.max(0.0));
    let sum = (w[0] + w[1] + w[2]).max(f32::MIN_POSITIVE);
    [w[1] / sum, w[2] / sum]
}

fn face_normals(mesh: &TriMesh) -> Vec<Vec3> {
    mesh.triangles
        .iter()
        .map(|t| {
            let [a, b, c] = t.map(|v| Vec3::from(mesh.positions[v as usize]));
            (b - a).cross(c - a).normalize_or_zero()
        })
        .collect()
}

/// The photos prepared for sampling: linear colours, depth buffers, and per triangle the views
/// that may see it.
struct Scene<'a> {
    mesh: &'a TriMesh,
    faces: &'a [Vec3],
    views: &'a [BakeView],
    linear: Vec<Vec<[f32; 3]>>,
    depth: Vec<Vec<f32>>,
    /// Per view, its world-to-camera transform.
    camera_from_world: Vec<CameraFromWorldCv>,
    /// Per triangle, the views whose camera centre is on its front side.
    candidates: Vec<Vec<u16>>,
    options: &'a BakeOptions,
}

/// A view's colour at a surface point and how much to trust it.
#[derive(Clone, Copy, Debug)]
struct Observation {
    view: u16,
    weight: f32,
    /// Linear RGB.
    color: [f32; 3],
}

impl<'a> Scene<'a> {
    fn new(
        mesh: &'a TriMesh,
        faces: &'a [Vec3],
        views: &'a [BakeView],
        options: &'a BakeOptions,
        should_stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Self, TextureError> {
        let linear = views.par_iter().map(|v| v.image.pixels.iter().map(|p| p.map(srgb_to_linear)).collect()).collect();
        let depth = views
            .par_iter()
            .map(|v| {
                check_stop(should_stop)?;
                Ok(depth_buffer(mesh, &v.camera))
            })
            .collect::<Result<_, TextureError>>()?;
        let candidates = mesh
            .triangles
            .par_iter()
            .zip(faces)
            .map(|(t, n)| {
                let centroid = t.iter().map(|&v| Vec3::from(mesh.positions[v as usize])).sum::<Vec3>() / 3.0;
                (0..views.len().min(u16::MAX as usize))
                    .filter(|&v| n.dot(views[v].camera.center() - centroid) > 0.0)
                    .map(|v| v as u16)
                    .collect()
            })
            .collect();
        Ok(Self {
            mesh,
            faces,
            views,
            linear,
            depth,
            camera_from_world: views.iter().map(|v| v.camera.camera_from_world()).collect(),
            candidates,
            options,
        })
    }

    /// The best `K` observations of texel `i`, by weight, strongest first.
    fn observe<const K: usize>(&self, texels: &TexelMap, i: usize) -> TopK<K> {
        let f = texels.triangle[i] as usize;
        let point = texels.point(self.mesh, i);
        let normal = self.faces[f];
        let mut best = TopK::new();
        for &v in &self.candidates[f] {
            if let Some(o) = self.observe_in(v, point, normal) {
                best.insert(o);
            }
        }
        best
    }

    fn observe_in(&self, v: u16, point: Vec3, normal: Vec3) -> Option<Observation> {
        let view = &self.views[v as usize];
        let camera = &view.camera;
        let to_camera = camera.center() - point;
        let cos = normal.dot(to_camera.normalize_or_zero());
        if cos < self.options.min_cos {
            return None;
        }
        let in_camera = self.camera_from_world[v as usize].transform_point(point);
        if in_camera.z <= NEAR_PLANE {
            return None;
        }
        let [u, v_px] = camera.intrinsics.project(in_camera);
        let footprint = Footprint::new(u, v_px, camera.width(), camera.height())?;
        let limit = in_camera.z / (1.0 + self.options.depth_tolerance);
        if footprint.indices().iter().any(|&p| self.depth[v as usize][p] < limit) {
            return None;
        }
        let background =
            |mask: &ImageGray| footprint.indices().iter().any(|&p| mask.pixels[p] < self.options.mask_threshold);
        if view.mask.as_ref().is_some_and(background) {
            return None;
        }
        let density = camera.intrinsics.fx * camera.intrinsics.fy / (in_camera.z * in_camera.z);
        let weight = cos * cos * density;
        Some(Observation { view: v, weight, color: footprint.sample(&self.linear[v as usize]) })
    }
}

/// The four pixels a bilinear sample at continuous pixel coordinates reads (pixel centres at
/// `i + 0.5`), clamped to the image, with their weights.
struct Footprint {
    x: [usize; 2],
    y: [usize; 2],
    width: usize,
    fx: f32,
    fy: f32,
}

impl Footprint {
    /// `None` when `(u, v)` is outside the image.
    fn new(u: f32, v: f32, width: u32, height: u32) -> Option<Self> {
        if !(u >= 0.0 && v >= 0.0 && u < width as f32 && v < height as f32) {
            return None;
        }
        let (gx, gy) = ((u - 0.5).max(0.0), (v - 0.5).max(0.0));
        let (x0, y0) = ((gx as usize).min(width as usize - 1), (gy as usize).min(height as usize - 1));
        let (x1, y1) = ((x0 + 1).min(width as usize - 1), (y0 + 1).min(height as usize - 1));
        Some(Self { x: [x0, x1], y: [y0, y1], width: width as usize, fx: gx - x0 as f32, fy: gy - y0 as f32 })
    }

    fn indices(&self) -> [usize; 4] {
        let w = self.width;
        [self.y[0] * w + self.x[0], self.y[0] * w + self.x[1], self.y[1] * w + self.x[0], self.y[1] * w + self.x[1]]
    }

    fn sample(&self, pixels: &[[f32; 3]]) -> [f32; 3] {
        let [a, b, c, d] = self.indices().map(|i| pixels[i]);
        let (fx, fy) = (self.fx, self.fy);
        std::array::from_fn(|k| (a[k] * (1.0 - fx) + b[k] * fx) * (1.0 - fy) + (c[k] * (1.0 - fx) + d[k] * fx) * fy)
    }
}

/// The `K` heaviest observations seen so far, heaviest first.
struct TopK<const K: usize> {
    items: [Observation; K],
    len: usize,
}

impl<const K: usize> TopK<K> {
    fn new() -> Self {
        Self { items: [Observation { view: 0, weight: 0.0, color: [0.0; 3] }; K], len: 0 }
    }

    fn insert(&mut self, o: Observation) {
        let mut at = self.len.min(K);
        while at > 0 && self.items[at - 1].weight < o.weight {
            at -= 1;
        }
        if at >= K {
            return;
        }
        let end = self.len.min(K - 1);
        self.items.copy_within(at..end, at + 1);
        self.items[at] = o;
        self.len = (self.len + 1).min(K);
    }

    fn as_slice(&self) -> &[Observation] {
        &self.items[..self.len]
    }
}

/// Per-view linear RGB gains from the surface points several views see (see the module doc).
fn estimate_gains(scene: &Scene, texels: &TexelMap) -> Vec<[f32; 3]> {
    let surface: Vec<usize> = (0..texels.triangle.len()).filter(|&i| texels.triangle[i] != NO_TRIANGLE).collect();
    let stride = (surface.len() / EXPOSURE_SAMPLES).max(1);
    let points: Vec<Vec<(u16, [f32; 3])>> = surface
        .par_iter()
        .step_by(stride)
        .map(|&i| {
            let seen = scene.observe::<EXPOSURE_VIEWS>(texels, i);
            seen.as_slice()
                .iter()
                .filter(|o| o.color.iter().all(|&c| (EXPOSURE_DARK..=EXPOSURE_BRIGHT).contains(&c)))
                .map(|o| (o.view, o.color.map(f32::ln)))
                .collect::<Vec<_>>()
        })
        .filter(|seen| seen.len() >= 2)
        .collect();
    let views = scene.views.len();
    let mut gains = vec![[1.0f32; 3]; views];
    for channel in 0..3 {
        let log_exposure = solve_log_exposures(&points, views, channel);
        for (gain, e) in gains.iter_mut().zip(log_exposure) {
            gain[channel] = (-e).exp();
        }
    }
    tracing::debug!("exposure gains from {} points: {gains:?}", points.len());
    gains
}

/// Log exposure per view for one channel: minimises `Σ huber(log c[p, v] − x[p] − e[v]) +
/// prior · Σ e[v]²` by alternating exact updates of the point values `x` and the exposures `e`,
/// then shifts `e` so the median view (among those with data) has exposure 0.
fn solve_log_exposures(points: &[Vec<(u16, [f32; 3])>], views: usize, channel: usize) -> Vec<f32> {
    let mut exposure = vec![0.0f32; views];
    let mut values = vec![0.0f32; points.len()];
    let huber = |r: f32| {
        if r.abs() <= EXPOSURE_HUBER { 1.0 } else { EXPOSURE_HUBER / r.abs() }
    };
    for _ in 0..EXPOSURE_ROUNDS {
        for (x, seen) in values.iter_mut().zip(points) {
            let (mut sum, mut weight) = (0.0, 0.0);
            for &(v, c) in seen {
                let r = c[channel] - *x - exposure[v as usize];
                let w = huber(r);
                sum += w * (c[channel] - exposure[v as usize]);
                weight += w;
            }
            *x = sum / weight;
        }
        let mut sums = vec![(0.0f32, EXPOSURE_PRIOR); views];
        for (x, seen) in values.iter().zip(points) {
            for &(v, c) in seen {
                let r = c[channel] - x - exposure[v as usize];
                let w = huber(r);
                sums[v as usize].0 += w * (c[channel] - x);
                sums[v as usize].1 += w;
            }
        }
        for (e, (sum, weight)) in exposure.iter_mut().zip(sums) {
            *e = sum / weight;
        }
    }
    let mut seen_views = vec![false; views];
    points.iter().flatten().for_each(|&(v, _)| seen_views[v as usize] = true);
    let mut observed: Vec<f32> = exposure.iter().zip(&seen_views).filter(|&(_, &s)| s).map(|(&e, _)| e).collect();
    if observed.is_empty() {
        return exposure;
    }
    observed.sort_by(f32::total_cmp);
    let median = observed[observed.len() / 2];
    exposure.iter().zip(&seen_views).map(|(&e, &s)| if s { e - median } else { 0.0 }).collect()
}

/// Linear colours of the surface texels seen by some view, and which texels got one.
fn blend(scene: &Scene, texels: &TexelMap, gains: &[[f32; 3]]) -> (Vec<[f32; 3]>, Vec<bool>) {
    let size = texels.size as usize;
    let mut colors = vec![[0.0f32; 3]; size * size];
    let mut filled = vec![false; size * size];
    colors.par_chunks_mut(size).zip(filled.par_chunks_mut(size)).enumerate().for_each(|(y, (row, row_filled))| {
        for (x, (color, is_filled)) in row.iter_mut().zip(row_filled).enumerate() {
            let i = y * size + x;
            if texels.triangle[i] == NO_TRIANGLE {
                continue;
            }
            let seen = scene.observe::<BLEND_VIEWS>(texels, i);
            let total: f32 = seen.as_slice().iter().map(|o| o.weight).sum();
            if total <= 0.0 {
                continue;
            }
            *color = std::array::from_fn(|k| {
                seen.as_slice().iter().map(|o| o.weight * o.color[k] * gains[o.view as usize][k]).sum::<f32>() / total
            });
            *is_filled = true;
        }
    });
    (colors, filled)
}

/// `rounds` passes in which each empty texel with filled 8-neighbours takes their mean.
fn dilate(colors: &mut [[f32; 3]], filled: &mut [bool], size: u32, rounds: u32) {
    let n = size as i64;
    for _ in 0..rounds {
        let grown: Vec<Option<[f32; 3]>> = (0..colors.len())
            .into_par_iter()
            .map(|i| {
                if filled[i] {
                    return None;
                }
                let (x, y) = (i as i64 % n, i as i64 / n);
                let (mut sum, mut count) = ([0.0f32; 3], 0);
                for (dx, dy) in [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)] {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx >= 0 && ny >= 0 && nx < n && ny < n && filled[(ny * n + nx) as usize] {
                        let c = colors[(ny * n + nx) as usize];
                        (0..3).for_each(|k| sum[k] += c[k]);
                        count += 1;
                    }
                }
                (count > 0).then(|| sum.map(|s| s / count as f32))
            })
            .collect();
        if grown.iter().all(Option::is_none) {
            return;
        }
        for (i, g) in grown.into_iter().enumerate() {
            if let Some(c) = g {
                colors[i] = c;
                filled[i] = true;
            }
        }
    }
}

/// A square level of the pull-push pyramid: its side, and per cell the sum of the filled
/// colours under it and their count.
type PyramidLevel = (usize, Vec<([f32; 3], f32)>);

/// Fills every empty texel from a pyramid of 2×2 means of the filled ones (pull), each empty
/// texel taking its coarser level's colour (push). Leaves grey when nothing is filled.
fn pull_push_fill(colors: &mut [[f32; 3]], filled: &[bool], size: u32) {
    // Level 0 is the texture; each level holds (sum of colours, count of filled texels).
    let mut levels: Vec<PyramidLevel> = vec![(
        size as usize,
        colors.iter().zip(filled).map(|(&c, &f)| if f { (c, 1.0) } else { ([0.0; 3], 0.0) }).collect(),
    )];
    while let Some((side, fine)) = levels.last().filter(|(side, _)| *side > 1) {
        let side = *side;
        let coarse_side = side.div_ceil(2);
        let mut coarse = vec![([0.0f32; 3], 0.0f32); coarse_side * coarse_side];
        for (i, &(c, w)) in fine.iter().enumerate() {
            let (x, y) = (i % side, i / side);
            let cell = &mut coarse[(y / 2) * coarse_side + x / 2];
            (0..3).for_each(|k| cell.0[k] += c[k]);
            cell.1 += w;
        }
        levels.push((coarse_side, coarse));
    }
    // Push: normalise each level, filling its empty cells from the coarser level.
    let mut coarser: Option<(usize, Vec<[f32; 3]>)> = None;
    for (side, level) in levels.iter().rev() {
        let resolved: Vec<[f32; 3]> = level
            .iter()
            .enumerate()
            .map(|(i, &(c, w))| {
                if w > 0.0 {
                    return c.map(|v| v / w);
                }
                match &coarser {
                    Some((cs, parent)) => parent[((i / side) / 2) * cs + (i % side) / 2],
                    None => [0.5; 3],
                }
            })
            .collect();
        coarser = Some((*side, resolved));
    }
    if let Some((_, finest)) = coarser {
        for ((c, &f), fill) in colors.iter_mut().zip(filled).zip(finest) {
            if !f {
                *c = fill;
            }
        }
    }
}

fn encode_srgb8(colors: &[[f32; 3]], size: u32) -> image::RgbImage {
    let bytes: Vec<u8> = colors
        .par_iter()
        .flat_map_iter(|c| c.map(|v| (linear_to_srgb(v.clamp(0.0, 1.0)) * 255.0 + 0.5) as u8))
        .collect();
    image::RgbImage::from_raw(size, size, bytes).unwrap_or_else(|| image::RgbImage::new(size, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srgb_round_trips() {
        for i in 0..=100 {
            let c = i as f32 / 100.0;
            assert!((linear_to_srgb(srgb_to_linear(c)) - c).abs() < 1e-5);
        }
        assert!((srgb_to_linear(0.5) - 0.214).abs() < 1e-3);
    }

    #[test]
    fn top_k_keeps_the_heaviest_in_order() {
        let mut top = TopK::<3>::new();
        for (view, weight) in [(0u16, 1.0f32), (1, 5.0), (2, 3.0), (3, 0.5), (4, 4.0), (5, 2.0)] {
            top.insert(Observation { view, weight, color: [0.0; 3] });
        }
        let views: Vec<u16> = top.as_slice().iter().map(|o| o.view).collect();
        assert_eq!(views, vec![1, 4, 2]);
    }

    #[test]
    fn exposure_solve_recovers_gains_with_the_median_view_fixed() {
        // 5 views, 1000 points each seen by 3 consecutive views; view 3 is 30 % darker, view 1
        // 10 % brighter; a few outliers (highlights) in view 0.
        let truth_exposure = [0.0f32, 0.1f32.ln_1p(), 0.0, 0.7f32.ln(), 0.0];
        let mut points = Vec::new();
        for p in 0..1000 {
            let albedo = 0.2 + 0.6 * ((p * 37 % 101) as f32 / 101.0);
            let seen: Vec<(u16, [f32; 3])> = (0..3)
                .map(|k| {
                    let v = (p + k) % 5;
                    let outlier = if v == 0 && p % 17 == 0 { 0.5 } else { 0.0 };
                    (v as u16, [albedo.ln() + truth_exposure[v] + outlier; 3])
                })
                .collect();
            points.push(seen);
        }
        let solved = solve_log_exposures(&points, 5, 0);
        for (s, t) in solved.iter().zip(&truth_exposure) {
            assert!((s - t).abs() < 0.01, "{solved:?} vs {truth_exposure:?}");
        }
    }

    #[test]
    fn depth_buffer_of_a_square_facing_the_camera() {
        use kiln_core::camera::{Intrinsics, WorldFromCameraCv};
        let camera = Camera {
            intrinsics: Intrinsics { fx: 100.0, fy: 100.0, cx: 50.0, cy: 40.0, width: 100, height: 80 },
            world_from_camera: WorldFromCameraCv { rotation: glam::Mat3::IDENTITY, translation: Vec3::ZERO },
        };
        // A tilted quad at depth 2 + x: covers x, y in [-0.25, 0.25] at its depth.
        let positions = vec![[-0.5, -0.5, 1.5], [0.5, -0.5, 2.5], [0.5, 0.5, 2.5], [-0.5, 0.5, 1.5]];
        let mesh = TriMesh { positions, triangles: vec![[0, 1, 2], [0, 2, 3]], ..TriMesh::default() };
        let depth = depth_buffer(&mesh, &camera);
        let mut hits = 0;
        for y in 0..80u32 {
            for x in 0..100u32 {
                let d = depth[(y * 100 + x) as usize];
                if d.is_finite() {
                    hits += 1;
                    // The ray through the pixel centre meets the plane z = 2 + X at z = 2/(1 - xn).
                    let xn = (x as f32 + 0.5 - 50.0) / 100.0;
                    let expected = 2.0 / (1.0 - xn);
                    assert!((d - expected).abs() < 1e-4, "pixel {x},{y}: {d} vs {expected}");
                }
            }
        }
        assert!(hits > 1000, "{hits}");
        assert!(depth[0].is_infinite());
    }

    #[test]
    fn pull_push_fills_every_texel_and_keeps_filled_ones() {
        let size = 64u32;
        let mut colors = vec![[0.0f32; 3]; 64 * 64];
        let mut filled = vec![false; 64 * 64];
        for y in 10..20 {
            for x in 10..20 {
                colors[y * 64 + x] = [0.8, 0.2, 0.1];
                filled[y * 64 + x] = true;
            }
        }
        colors[50 * 64 + 50] = [0.0, 0.0, 1.0];
        filled[50 * 64 + 50] = true;
        let before = colors.clone();
        dilate(&mut colors, &mut filled, size, 2);
        assert_eq!(colors[8 * 64 + 8], [0.8, 0.2, 0.1], "two rounds reach two texels out");
        assert!(!filled[7 * 64 + 7]);
        pull_push_fill(&mut colors, &filled, size);
        assert_eq!(colors[15 * 64 + 15], before[15 * 64 + 15]);
        assert_eq!(colors[50 * 64 + 50], [0.0, 0.0, 1.0]);
        // Far texels get a blend of what exists, never the untouched zero.
        assert!(colors.iter().all(|c| c.iter().sum::<f32>() > 0.5));
        assert!(colors[5 * 64 + 5][0] > 0.5, "near the red block, red: {:?}", colors[5 * 64 + 5]);
    }
}
