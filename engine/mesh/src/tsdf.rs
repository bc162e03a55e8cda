//! A truncated signed distance field fused from depth maps, stored sparsely in voxel blocks.
//!
//! The volume covers an axis-aligned region with a dense table of `BLOCK³`-voxel blocks, of
//! which only those within the truncation band of some observed surface point are allocated
//! ([`TsdfVolume::allocate`]). Fusion ([`TsdfVolume::integrate`]) is the KinectFusion running
//! average: every voxel is projected into every depth map; with `d` the observed depth and `z`
//! the voxel's depth (OpenCV camera frame, +Z forward), the signed distance along the ray is
//! `sdf = (d − z) · |ray| / ray.z`, positive in front of the surface; it is skipped when
//! `sdf < −truncation` (hidden behind the surface) and otherwise contributes
//! `min(sdf, truncation) / truncation` with weight 1. Pixels marked "seen empty" (a mask's
//! background) contribute `+1`. The zero level set is the fused surface, negative inside.

use glam::{Mat3, Vec3};
use rayon::prelude::*;

use crate::marching_cubes::{Lattice, marching_cubes};
use kiln_core::camera::Camera;
use kiln_core::image_buf::ImageGray;
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::error::MeshError;

/// Voxels per block side: 8³ = 512 voxels (4 KiB of TSDF and weight), the usual voxel-hashing
/// block, small enough to follow a surface tightly.
pub const BLOCK: usize = 8;
const VOXELS_PER_BLOCK: usize = BLOCK * BLOCK * BLOCK;
/// Upper bound on the dense block table (entries): 2²⁷ entries of 4 bytes is 512 MiB, far more
/// than any sensible region needs; beyond it the voxel size is too small for the region.
const MAX_BLOCK_TABLE: usize = 1 << 27;
/// Voxels closer to a camera than this (camera-frame z, world units) are not updated from it.
const NEAR_Z: f32 = 1e-3;
/// Depth stored for a pixel seen empty (a mask's background): everything along its ray is free.
pub const SEEN_EMPTY: f32 = f32::INFINITY;

/// One depth map: `depth` holds camera-frame z per pixel of `camera`'s image, 0 where unknown,
/// [`SEEN_EMPTY`] where the ray is known to hit nothing.
#[derive(Clone, Debug)]
pub struct DepthFrame {
    pub camera: Camera,
    pub depth: ImageGray,
}

/// Voxel counts of a fused volume (see [`TsdfVolume::census`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VoxelCensus {
    pub allocated: usize,
    pub observed: usize,
    pub in_front: usize,
    pub behind: usize,
}

#[derive(Clone, Debug)]
struct Block {
    coord: [i32; 3],
    tsdf: Vec<f32>,
    weight: Vec<f32>,
}

/// The fused field (see the module docs).
#[derive(Clone, Debug)]
pub struct TsdfVolume {
    /// World position of voxel `[0, 0, 0]`.
    origin: Vec3,
    voxel_size: f32,
    truncation: f32,
    dims_blocks: [usize; 3],
    /// Per block of the region (x fastest), its index in `blocks` or `u32::MAX`.
    block_index: Vec<u32>,
    blocks: Vec<Block>,
}

/// A camera prepared for projecting world points.
struct Projector<'a> {
    rotation: Mat3,
    translation: Vec3,
    fx: f32,
    fy: f32,
    cx: f32,
    cy: f32,
    depth: &'a ImageGray,
}

impl<'a> Projector<'a> {
    fn new(frame: &'a DepthFrame) -> Self {
        let camera_from_world = frame.camera.camera_from_world();
        let k = frame.camera.intrinsics;
        Self {
            rotation: camera_from_world.rotation,
            translation: camera_from_world.translation,
            fx: k.fx,
            fy: k.fy,
            cx: k.cx,
            cy: k.cy,
            depth: &frame.depth,
        }
    }

    /// The truncated signed distance of `point_in_world` as this frame sees it (in units of the
    /// truncation, `[-1, 1]`), or `None` when the frame says nothing about it.
    fn observe(&self, point_in_world: Vec3, truncation: f32) -> Option<f32> {
        let p = self.rotation * point_in_world + self.translation;
        if p.z <= NEAR_Z {
            return None;
        }
        let (xn, yn) = (p.x / p.z, p.y / p.z);
        let d = self.sample_depth(self.fx * xn + self.cx, self.fy * yn + self.cy, truncation)?;
        if d == SEEN_EMPTY {
            return Some(1.0);
        }
        let sdf = (d - p.z) * (1.0 + xn * xn + yn * yn).sqrt();
        if sdf < -truncation { None } else { Some(sdf.min(truncation) / truncation) }
    }

    /// Depth at pixel coordinates `(u, v)`: bilinear when the four neighbours are all known and
    /// agree to within `truncation`, else the nearest pixel's.
    fn sample_depth(&self, u: f32, v: f32, truncation: f32) -> Option<f32> {
        let (w, h) = (self.depth.width as i64, self.depth.height as i64);
        let (x, y) = (u - 0.5, v - 0.5);
        let (x0, y0) = (x.floor() as i64, y.floor() as i64);
        let at = |i: i64, j: i64| -> Option<f32> {
            if i < 0 || j < 0 || i >= w || j >= h {
                return None;
            }
            let d = self.depth.pixels[(j * w + i) as usize];
            (d > 0.0).then_some(d)
        };
        let nearest = || at(u.floor() as i64, v.floor() as i64);
        let quad = [at(x0, y0), at(x0 + 1, y0), at(x0, y0 + 1), at(x0 + 1, y0 + 1)];
        let [Some(d00), Some(d10), Some(d01), Some(d11)] = quad else { return nearest() };
        let (lo, hi) = (d00.min(d10).min(d01).min(d11), d00.max(d10).max(d01).max(d11));
        if !hi.is_finite() || hi - lo > truncation {
            return nearest();
        }
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        Some((d00 * (1.0 - fx) + d10 * fx) * (1.0 - fy) + (d01 * (1.0 - fx) + d11 * fx) * fy)
    }
}

impl TsdfVolume {
    /// An empty volume over `[min, max]` with cubic voxels of side `voxel_size` and a truncation
    /// distance in world units.
    pub fn new(min: [f32; 3], max: [f32; 3], voxel_size: f32, truncation: f32) -> Result<Self, MeshError> {
        if !(voxel_size > 0.0 && truncation > 0.0) {
            return Err(MeshError::InvalidInput(format!(
                "voxel size {voxel_size} and truncation {truncation} must be positive"
            )));
        }
        let block_side = voxel_size * BLOCK as f32;
        let dims_blocks: [usize; 3] =
            std::array::from_fn(|k| ((max[k] - min[k]) / block_side).ceil().max(1.0) as usize);
        let total = dims_blocks.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).unwrap_or(usize::MAX);
        if total > MAX_BLOCK_TABLE
            || min.iter().zip(&max).any(|(a, b)| b.partial_cmp(a) != Some(std::cmp::Ordering::Greater))
        {
            return Err(MeshError::InvalidInput(format!(
                "region {min:?}..{max:?} at voxel size {voxel_size} needs {dims_blocks:?} blocks: empty or too large"
            )));
        }
        Ok(Self {
            origin: Vec3::from_array(min),
            voxel_size,
            truncation,
            dims_blocks,
            block_index: vec![u32::MAX; total],
            blocks: Vec::new(),
        })
    }

    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    fn block_linear(&self, coord: [i32; 3]) -> Option<usize> {
        let d = self.dims_blocks;
        if coord.iter().zip(&d).any(|(&c, &n)| c < 0 || c as usize >= n) {
            return None;
        }
        let [x, y, z] = coord.map(|c| c as usize);
        Some(x + d[0] * (y + d[1] * z))
    }

    fn block_of_point(&self, p: Vec3) -> [i32; 3] {
        let q = (p - self.origin) / (self.voxel_size * BLOCK as f32);
        [q.x.floor() as i32, q.y.floor() as i32, q.z.floor() as i32]
    }

    /// Allocates the blocks within the truncation band of every observed surface point.
    pub fn allocate(&mut self, frames: &[DepthFrame]) {
        let step = 0.5 * self.voxel_size * BLOCK as f32;
        let wanted: Vec<Vec<usize>> = frames
            .par_iter()
            .map(|frame| {
                let world_from_camera = frame.camera.world_from_camera;
                let k = frame.camera.intrinsics;
                let mut out = Vec::new();
                for (i, &d) in frame.depth.pixels.iter().enumerate() {
                    if !(d > 0.0 && d.is_finite()) {
                        continue;
                    }
                    let ray = k.ray_through_pixel_centre((i % k.width as usize) as u32, (i / k.width as usize) as u32);
                    let ray_world = world_from_camera.rotation * ray.normalize();
                    let hit = world_from_camera.translation + world_from_camera.rotation * (ray * d);
                    let steps = (self.truncation / step).ceil() as i32;
                    for s in -steps..=steps {
                        let p = hit + ray_world * (s as f32 * step).clamp(-self.truncation, self.truncation);
                        if let Some(linear) = self.block_linear(self.block_of_point(p)) {
                            out.push(linear);
                        }
                    }
                }
                out.sort_unstable();
                out.dedup();
                out
            })
            .collect();
        let mut all: Vec<usize> = wanted.into_iter().flatten().collect();
        all.sort_unstable();
        all.dedup();
        let d = self.dims_blocks;
        for linear in all {
            if self.block_index[linear] != u32::MAX {
                continue;
            }
            let coord = [(linear % d[0]) as i32, ((linear / d[0]) % d[1]) as i32, (linear / (d[0] * d[1])) as i32];
            self.block_index[linear] = self.blocks.len() as u32;
            self.blocks.push(Block { coord, tsdf: vec![0.0; VOXELS_PER_BLOCK], weight: vec![0.0; VOXELS_PER_BLOCK] });
        }
    }

    /// Fuses `frames` into every allocated voxel (running weighted average).
    pub fn integrate(&mut self, frames: &[DepthFrame]) {
        let projectors: Vec<Projector> = frames.iter().map(Projector::new).collect();
        let (origin, voxel_size, truncation) = (self.origin, self.voxel_size, self.truncation);
        self.blocks.par_iter_mut().for_each(|block| {
            let base = block.coord.map(|c| c * BLOCK as i32);
            for local in 0..VOXELS_PER_BLOCK {
                let offset = [local % BLOCK, (local / BLOCK) % BLOCK, local / (BLOCK * BLOCK)];
                let index: [i32; 3] = std::array::from_fn(|k| base[k] + offset[k] as i32);
                let p = origin + Vec3::from_array(index.map(|i| i as f32)) * voxel_size;
                let (mut sum, mut weight) = (block.tsdf[local] * block.weight[local], block.weight[local]);
                for projector in &projectors {
                    if let Some(t) = projector.observe(p, truncation) {
                        sum += t;
                        weight += 1.0;
                    }
                }
                if weight > 0.0 {
                    block.tsdf[local] = sum / weight;
                    block.weight[local] = weight;
                }
            }
        });
    }

    /// The fused value at voxel `index` when at least `min_weight` observations reached it.
    fn value(&self, index: [i32; 3], min_weight: f32) -> Option<f32> {
        let b = BLOCK as i32;
        let coord = index.map(|i| i.div_euclid(b));
        let block = self.blocks.get(*self.block_index.get(self.block_linear(coord)?)? as usize)?;
        let [x, y, z] = index.map(|i| i.rem_euclid(b) as usize);
        let local = x + BLOCK * (y + BLOCK * z);
        (block.weight[local] >= min_weight).then_some(block.tsdf[local])
    }

    /// How many voxels are allocated, observed at least `min_weight` times, and of those in
    /// front of (positive) or behind (negative) the fused surface.
    pub fn census(&self, min_weight: f32) -> VoxelCensus {
        let mut census = VoxelCensus { allocated: self.blocks.len() * VOXELS_PER_BLOCK, ..Default::default() };
        for block in &self.blocks {
            for (&t, &w) in block.tsdf.iter().zip(&block.weight) {
                if w >= min_weight {
                    census.observed += 1;
                    if t > 0.0 {
                        census.in_front += 1;
                    } else if t < 0.0 {
                        census.behind += 1;
                    }
                }
            }
        }
        census
    }

    /// [`Self::extract_mesh`], or when it is empty a [`MeshError::NoSurface`] that says why the
    /// volume holds no surface and what to change.
    pub fn extract_surface(&self, min_weight: f32) -> Result<TriMesh, MeshError> {
        let mesh = self.extract_mesh(min_weight);
        if !mesh.triangles.is_empty() {
            return Ok(mesh);
        }
        let extent = Vec3::from_array(self.dims_blocks.map(|d| d as f32)) * (self.voxel_size * BLOCK as f32);
        let region = format!("the region {:?}..{:?}", self.origin.to_array(), (self.origin + extent).to_array());
        let census = self.census(min_weight);
        let why = if census.allocated == 0 {
            format!(
                "no depth the views saw lies inside {region}: the region misses the object; give a region \
                 that contains it (or let it be found automatically), and check that the poses belong to these photos"
            )
        } else if census.observed == 0 {
            format!(
                "no voxel of {region} was observed by {min_weight} or more views: use more views of the object \
                 or lower the minimum weight"
            )
        } else if census.behind == 0 {
            format!(
                "all {} observed voxels of {region} are empty space (in front of every surface): the masks or \
                 the depth renders carve everything away; check that the masks mark the object with 1 and that \
                 the splats were trained for these cameras",
                census.observed
            )
        } else if census.in_front == 0 {
            format!(
                "all {} observed voxels of {region} are behind the surface (the region lies inside the object): \
                 enlarge the region so that it contains the whole object and the space around it",
                census.observed
            )
        } else {
            format!(
                "{region} has {} voxels in front of and {} behind the surface but no crossing between \
                 neighbours: use smaller voxels",
                census.in_front, census.behind
            )
        };
        Err(MeshError::NoSurface(why))
    }

    /// The zero level set by marching cubes over the allocated blocks, using only voxels with at
    /// least `min_weight` observations.
    pub fn extract_mesh(&self, min_weight: f32) -> TriMesh {
        let boxes: Vec<([i32; 3], [i32; 3])> = self
            .blocks
            .iter()
            .map(|block| {
                let lo = block.coord.map(|c| c * BLOCK as i32);
                (lo, lo.map(|c| c + BLOCK as i32))
            })
            .collect();
        let lattice = Lattice { origin: self.origin.to_array(), spacing: self.voxel_size };
        marching_cubes(&boxes, |index| self.value(index, min_weight), lattice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::compare;
    use kiln_core::camera::{Intrinsics, WorldFromCameraCv};

    /// Ray-traced depth of a sphere seen from `eye` looking at the origin.
    fn sphere_depth(eye: Vec3, radius: f32, size: u32) -> DepthFrame {
        let f = size as f32;
        let intrinsics = Intrinsics { fx: f, fy: f, cx: f / 2.0, cy: f / 2.0, width: size, height: size };
        let camera = Camera { intrinsics, world_from_camera: WorldFromCameraCv::look_at(eye, Vec3::ZERO, Vec3::Z) };
        let rotation = camera.world_from_camera.rotation;
        let forward = camera.world_from_camera.forward();
        let mut depth = ImageGray::new(size, size, 0.0);
        for j in 0..size {
            for i in 0..size {
                let ray_cam = Vec3::new((i as f32 + 0.5 - f / 2.0) / f, (j as f32 + 0.5 - f / 2.0) / f, 1.0);
                let dir = (rotation * ray_cam).normalize();
                // |eye + t dir|² = r²
                let b = eye.dot(dir);
                let disc = b * b - (eye.length_squared() - radius * radius);
                if disc >= 0.0 {
                    let t = -b - disc.sqrt();
                    depth.pixels[(j * size + i) as usize] = t * dir.dot(forward);
                }
            }
        }
        DepthFrame { camera, depth }
    }

    #[test]
    fn fusing_exact_depth_of_a_sphere_recovers_it() {
        let radius = 0.3;
        let mut frames = Vec::new();
        for k in 0..12 {
            let a = k as f32 * std::f32::consts::TAU / 12.0;
            let elevation = if k % 2 == 0 { 0.6 } else { -0.6f32 };
            frames.push(sphere_depth(
                Vec3::new(a.cos() * elevation.cos(), a.sin() * elevation.cos(), elevation.sin()) * 1.5,
                radius,
                160,
            ));
        }
        frames.push(sphere_depth(Vec3::new(0.01, 0.0, 1.5), radius, 160));
        frames.push(sphere_depth(Vec3::new(0.01, 0.0, -1.5), radius, 160));
        let voxel = 0.01;
        let mut volume = TsdfVolume::new([-0.5; 3], [0.5; 3], voxel, 4.0 * voxel).unwrap();
        volume.allocate(&frames);
        assert!(volume.num_blocks() > 0 && volume.num_blocks() < volume.block_index.len());
        volume.integrate(&frames);
        let mesh = volume.extract_mesh(1.0);
        let truth = crate::metrics::tests::uv_sphere([0.0; 3], radius, 128, 256);
        let m = compare(&mesh, &truth, 20_000, 0.25 * voxel);
        assert!(m.chamfer_mean < 0.1 * voxel, "{m:?}");
        assert!(m.fscore > 0.95, "{m:?}");
        assert!(crate::metrics::enclosed_volume(&mesh) > 0.0, "outward orientation");
    }

    #[test]
    fn seen_empty_pixels_carve() {
        let eye = Vec3::new(0.0, 1.5, 0.2);
        let seen = sphere_depth(eye, 0.3, 64);
        let mut empty = sphere_depth(Vec3::new(1.5, 0.0, 0.2), 0.3, 64);
        empty.depth.pixels.fill(SEEN_EMPTY);
        let (voxel, origin) = (0.02, -0.5);
        // A voxel just inside the sphere on the side facing `eye`.
        let p = eye.normalize() * 0.27;
        let index = p.to_array().map(|c| ((c - origin) / voxel).round() as i32);
        let fused = |frames: &[DepthFrame]| {
            let mut v = TsdfVolume::new([origin; 3], [-origin; 3], voxel, 4.0 * voxel).unwrap();
            v.allocate(frames);
            v.integrate(frames);
            v.value(index, 1.0).unwrap()
        };
        assert!(fused(std::slice::from_ref(&seen)) < 0.0, "inside the surface");
        assert!(fused(&[seen.clone(), empty.clone()]) > 0.0, "a view that saw empty space there carves it");
        let mut v = TsdfVolume::new([origin; 3], [-origin; 3], voxel, 4.0 * voxel).unwrap();
        v.allocate(std::slice::from_ref(&empty));
        assert_eq!(v.num_blocks(), 0, "empty rays allocate nothing");
    }

    /// Fuses `frames` over the box `lo..hi` with 5 mm voxels (4 cm blocks), 2 cm truncation,
    /// and extracts, checked.
    fn fuse(frames: &[DepthFrame], lo: [f32; 3], hi: [f32; 3], min_weight: f32) -> Result<TriMesh, MeshError> {
        let mut volume = TsdfVolume::new(lo, hi, 0.005, 0.02)?;
        volume.allocate(frames);
        volume.integrate(frames);
        volume.extract_surface(min_weight)
    }

    fn no_surface_message(result: Result<TriMesh, MeshError>) -> String {
        match result {
            Err(MeshError::NoSurface(why)) => why,
            other => panic!("expected NoSurface, got {other:?}"),
        }
    }

    #[test]
    fn degenerate_volumes_say_what_to_change() {
        // Seen from +Y: the sphere's top is at y = 0.3 (0.2987 within 2 cm of the axis).
        let seen = [sphere_depth(Vec3::new(0.0, 1.5, 0.01), 0.3, 128)];
        assert!(fuse(&seen, [-0.5; 3], [0.5; 3], 1.0).is_ok(), "the sphere itself has a surface");
        // Everything seen empty (a mask without object): nothing is allocated.
        let mut empty = seen[0].clone();
        empty.depth.pixels.fill(SEEN_EMPTY);
        let why = no_surface_message(fuse(&[empty], [-0.5; 3], [0.5; 3], 1.0));
        assert!(why.contains("region misses the object"), "{why}");
        // The region is far from the sphere.
        let why = no_surface_message(fuse(&seen, [2.0; 3], [3.0; 3], 1.0));
        assert!(why.contains("region misses the object"), "{why}");
        // One block (4 cm) just under the top, within the truncation band: all behind.
        let why = no_surface_message(fuse(&seen, [-0.02, 0.25, -0.02], [0.019, 0.289, 0.019], 1.0));
        assert!(why.contains("region lies inside the object"), "{why}");
        // One block just above the top: all in front.
        let why = no_surface_message(fuse(&seen, [-0.02, 0.305, -0.02], [0.019, 0.344, 0.019], 1.0));
        assert!(why.contains("empty space"), "{why}");
        // Seen by one view where two are required.
        let why = no_surface_message(fuse(&seen, [-0.5; 3], [0.5; 3], 2.0));
        assert!(why.contains("lower the minimum weight"), "{why}");
    }

    #[test]
    fn oversized_regions_are_refused() {
        assert!(TsdfVolume::new([-100.0; 3], [100.0; 3], 1e-4, 1e-3).is_err());
        assert!(TsdfVolume::new([0.0; 3], [0.0; 3], 0.1, 0.3).is_err());
    }
}
