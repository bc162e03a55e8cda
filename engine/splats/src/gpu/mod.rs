//! The wgpu compute backend's renderer: the maths of [`crate::render`] as WGSL compute kernels,
//! with every intermediate kept on the device.
//!
//! # Public API
//!
//! - [`GpuContext`] ([`context`]): adapter + device + queue. [`GpuContext::new`] with
//!   [`DevicePreference::HardwareOnly`] (training: a real GPU or [`GpuError::NoAdapter`]) or
//!   [`DevicePreference::AllowSoftware`] (tests/CI: falls back to Mesa lavapipe). Optional
//!   adapter features ([`OptionalFeatures`]: native `f32` atomics, subgroups) are used when present,
//!   with portable fallbacks. Also the readback helpers [`GpuContext::read`] /
//!   [`GpuContext::read_range`] (counted: [`GpuContext::readback_count`]) and the
//!   upload/zeroed/uniform buffer helpers.
//! - Kernels of sibling modules use `context::Kernel` (prelude + sources, entry point `main`,
//!   bindings `0..n` in order) and must index with the prelude's `linear_workgroup` /
//!   `linear_thread`: 1D dispatches over `max_workgroups_per_dimension` are split over a 2D grid
//!   whose last row may have excess workgroups to ignore.
//! - [`GpuSplats`]: the parameters of [`Splats`] in device buffers, one flat `f32` array per field
//!   in exactly the host layout (`means` 3 per splat, `log_scales` 3, `rotations` 4 as
//!   `w, x, y, z`, `opacity_logits` 1, `sh` 48 as `[coefficient][channel]`). Buffers have usage
//!   `STORAGE | COPY_SRC | COPY_DST`, so an optimiser kernel can update them in place.
//! - [`GpuRenderer`]: compiled kernels. [`GpuRenderer::forward`] renders one camera into a
//!   [`GpuFrame`]; [`GpuRenderer::backward`] takes that frame and `∂L/∂image` (a device buffer of
//!   `width × height × 3` `f32`, row-major RGB, the layout of [`GpuFrame::image`]) and returns
//!   [`GpuSplatGrads`], in the [`SplatGrads`] layout (same flat arrays as [`GpuSplats`]) plus the
//!   projected-level gradients and per-splat densification observations.
//! - Readbacks for tests and checkpoints: [`GpuSplats::download`], [`GpuFrame::read_output`],
//!   [`GpuFrame::read_projected`], [`GpuFrame::read_state`], [`GpuFrame::read_num_intersections`],
//!   [`GpuSplatGrads::read`],
//!   [`GpuSplatGrads::read_projected`], [`GpuSplatGrads::read_densify`].
//!
//! # Intersection capacity, and what leaves the device
//!
//! The CUDA reference reads back the number of tile–splat intersections every frame to size the
//! sort buffers. Here the renderer keeps an intersection *capacity* instead ([`GpuRenderer`]), and
//! binning runs entirely on the device (`raster.rs`, "Intersection capacity"): buffers and
//! dispatches are sized by the capacity, the kernels read the true count from the device, entries
//! past the capacity are dropped, and a small persistent monitor buffer records the largest total
//! seen and how many frames overflowed.
//!
//! - [`GpuRenderer::forward`] (evaluation, tests) is always exact: it renders, reads the frame's
//!   total back (one `u32`), and on overflow grows the capacity and renders again.
//! - [`GpuRenderer::forward_resident`] (the training step) reads nothing back. If the frame
//!   overflows, the farthest splats' entries (the last in depth order) are missing from their
//!   tiles' lists; forward and backward both use the same truncated lists, so the step is the exact
//!   gradient of that slightly truncated image, not garbage. The overflow is only *detected* at the
//!   next [`GpuRenderer::sync_intersections`] (the training backend calls it whenever it reads back
//!   anyway: [`crate::train::backend::TrainBackend::last_loss`] and `state`), which logs a warning
//!   with the number of truncated frames and grows the capacity. Truncation is kept rare by sizing:
//!   the first step after every `set_state` (densification, SH degree change) renders through the
//!   exact `forward`, which makes the capacity at least [`INTERSECTION_HEADROOM`] times that
//!   frame's real total, and each sync restores that headroom over the largest total observed
//!   since the renderer was created. The capacity never shrinks, except that the very first
//!   observed total replaces the initial guess.
//!
//! The cost: dispatches after the scan cover the capacity rather than the count (no indirect
//! dispatch), so at least [`INTERSECTION_HEADROOM`]× the needed workgroups start; the excess ones
//! exit at once (the radix histogram still writes its zero counts), and the scans of the
//! histograms cover the capacity's blocks.
//!
//! # Pipeline
//!
//! 1. `project` (per splat): [`crate::render::ProjectedSplat`], the number of tiles touched and a
//!    depth sort key.
//! 2. The splats sorted by depth (stable LSD radix sort, [`sort::RadixSorter`], 8-bit digits, ties
//!    by splat index), their tile counts gathered in that order and exclusive-scanned
//!    ([`sort::Scanner`]); `emit_keys` then writes one `tile id → splat index` entry per
//!    intersection, in depth order.
//! 3. A stable radix sort of the entries by tile id alone (1–2 passes): tiles grouped,
//!    depth-ordered within, ties by splat index (far fewer keys than sorting `(tile, depth)`).
//! 4. `tile_ranges`, then `raster_forward` (one 16×16 workgroup per tile, splats batched through
//!    workgroup memory). Each batch is compacted to the splats whose `α ≥ MIN_ALPHA` ellipse can reach the tile.
//! 5. Backward: `raster_backward` (back to front per pixel; gradients summed over each subgroup
//!    when subgroups are available, then float atomics into [`crate::render::ProjectedGrad`]s),
//!    then `project_backward` to the parameters and the densification observations.

pub mod adam;
pub mod backend;
pub mod context;
pub mod loss;
mod project;
mod raster;
pub mod sort;

use std::sync::atomic::{AtomicU32, Ordering};

pub use context::{DevicePreference, GpuContext, GpuError, OptionalFeatures};
/// The prelude's `struct Frame` uniforms, for other crates' kernels that include the prelude.
pub use project::{FrameUniforms, PROJECT_COMMON as PROJECT_COMMON_WGSL};

use crate::render::{ProjectedGrad, ProjectedSplat, RasterOutput, RasterState, TILE_SIZE};
use kiln_core::camera::Camera;
use kiln_core::image_buf::{ImageGray, ImageRgb};
use kiln_core::splats::{SH_COEFFS, ShCoeffs, SplatGrads, Splats};

/// Floats per splat in the SH buffers: 16 coefficients × RGB.
pub const SH_FLOATS: usize = SH_COEFFS * 3;

/// Splat parameters on the device, in the [`Splats`] layout (see the module doc).
#[derive(Debug)]
pub struct GpuSplats {
    pub means: wgpu::Buffer,
    pub log_scales: wgpu::Buffer,
    pub rotations: wgpu::Buffer,
    pub opacity_logits: wgpu::Buffer,
    pub sh: wgpu::Buffer,
    pub len: u32,
    /// Active SH degree (0..=3).
    pub sh_degree: u32,
}

impl GpuSplats {
    /// Uploads `splats`, which must pass [`Splats::validate`].
    pub fn upload(ctx: &GpuContext, splats: &Splats) -> Result<Self, GpuError> {
        splats.validate()?;
        let len = u32::try_from(splats.len()).map_err(|_| GpuError::TooLarge {
            what: "splat count",
            got: splats.len() as u64,
            max: u32::MAX.into(),
        })?;
        ctx.check_binding_size("SH buffer", splats.len() as u64 * SH_FLOATS as u64 * 4)?;
        Ok(Self {
            means: ctx.upload("means", &splats.means),
            log_scales: ctx.upload("log_scales", &splats.log_scales),
            rotations: ctx.upload("rotations", &splats.rotations),
            opacity_logits: ctx.upload("opacity_logits", &splats.opacity_logits),
            sh: ctx.upload("sh", &splats.sh),
            len,
            sh_degree: splats.sh_degree,
        })
    }

    /// Reads the parameters back.
    pub fn download(&self, ctx: &GpuContext) -> Result<Splats, GpuError> {
        let n = self.len as usize;
        Ok(Splats {
            means: ctx.read(&self.means, n)?,
            log_scales: ctx.read(&self.log_scales, n)?,
            rotations: ctx.read(&self.rotations, n)?,
            opacity_logits: ctx.read(&self.opacity_logits, n)?,
            sh: ctx.read::<ShCoeffs>(&self.sh, n)?,
            sh_degree: self.sh_degree,
        })
    }
}

/// One rendered camera on the device: outputs plus what the backward pass needs.
#[derive(Debug)]
pub struct GpuFrame {
    pub width: u32,
    pub height: u32,
    pub num_splats: u32,
    /// Length of `sorted_ids`: at most this many tile–splat pairs are kept.
    pub intersection_capacity: u32,
    /// Exclusive scan of the tile counts in depth order; entry `num_splats` is the true number of
    /// tile–splat pairs ([`GpuFrame::read_num_intersections`]).
    pub intersection_offsets: wgpu::Buffer,
    /// The camera block every kernel of this frame reads (`project::FrameUniforms`).
    pub uniforms: wgpu::Buffer,
    /// [`ProjectedSplat`] per splat (44 bytes each).
    pub projected: wgpu::Buffer,
    /// Splat indices grouped by tile (row-major), depth-sorted within each tile.
    pub sorted_ids: wgpu::Buffer,
    /// `[start, end)` into `sorted_ids` per tile, `u32` pairs (`[0, 0]` for an empty tile).
    pub tile_ranges: wgpu::Buffer,
    /// RGB per pixel (`f32` × 3, row-major), background composited.
    pub image: wgpu::Buffer,
    /// `1 − final transmittance` per pixel.
    pub alpha: wgpu::Buffer,
    /// Expected depth per pixel (0 where empty).
    pub depth: wgpu::Buffer,
    /// Median depth per pixel (0 where transmittance never reaches 0.5).
    pub median_depth: wgpu::Buffer,
    /// Transmittance left after compositing, per pixel.
    pub final_transmittance: wgpu::Buffer,
    /// Per pixel, one past the tile-list position of the last contributing splat (`u32`).
    pub last_contributor: wgpu::Buffer,
}

impl GpuFrame {
    pub fn num_pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }

    pub fn num_tiles(&self) -> usize {
        (self.width.div_ceil(TILE_SIZE) * self.height.div_ceil(TILE_SIZE)) as usize
    }

    /// Reads the rendered images back.
    pub fn read_output(&self, ctx: &GpuContext) -> Result<RasterOutput, GpuError> {
        let n = self.num_pixels();
        let gray = |buffer: &wgpu::Buffer| -> Result<ImageGray, GpuError> {
            Ok(ImageGray { width: self.width, height: self.height, pixels: ctx.read(buffer, n)? })
        };
        Ok(RasterOutput {
            image: ImageRgb { width: self.width, height: self.height, pixels: ctx.read(&self.image, n)? },
            alpha: gray(&self.alpha)?,
            depth: gray(&self.depth)?,
            median_depth: gray(&self.median_depth)?,
        })
    }

    /// Reads the projected splats back.
    pub fn read_projected(&self, ctx: &GpuContext) -> Result<Vec<ProjectedSplat>, GpuError> {
        ctx.read(&self.projected, self.num_splats as usize)
    }

    /// Reads back the number of tile–splat pairs the frame has (it exceeds
    /// [`GpuFrame::intersection_capacity`] when the tile lists were truncated).
    pub fn read_num_intersections(&self, ctx: &GpuContext) -> Result<u32, GpuError> {
        let total = ctx.read_range::<u32>(&self.intersection_offsets, self.num_splats as usize, 1)?;
        Ok(total.first().copied().unwrap_or(0))
    }

    /// Reads the compositor state back, in the CPU reference's layout (the kept pairs only).
    pub fn read_state(&self, ctx: &GpuContext) -> Result<RasterState, GpuError> {
        let kept = self.read_num_intersections(ctx)?.min(self.intersection_capacity);
        Ok(RasterState {
            sorted_ids: ctx.read(&self.sorted_ids, kept as usize)?,
            tile_ranges: ctx.read(&self.tile_ranges, self.num_tiles())?,
            final_transmittance: ctx.read(&self.final_transmittance, self.num_pixels())?,
            last_contributor: ctx.read(&self.last_contributor, self.num_pixels())?,
        })
    }
}

/// Gradients of one backward pass on the device.
#[derive(Debug)]
pub struct GpuSplatGrads {
    pub len: u32,
    /// [`SplatGrads`] layout, flat `f32` arrays like [`GpuSplats`].
    pub means: wgpu::Buffer,
    pub log_scales: wgpu::Buffer,
    pub rotations: wgpu::Buffer,
    pub opacity_logits: wgpu::Buffer,
    pub sh: wgpu::Buffer,
    /// [`ProjectedGrad`] per splat (9 `f32`).
    pub projected: wgpu::Buffer,
    /// Per splat `[grad2d_norm, radius_fraction]` (`f32` pairs): `grad2d_norm` is
    /// ‖∂L/∂mean2d‖ in normalised device units (the pixel gradient times `width/2`, `height/2`),
    /// `radius_fraction` the screen radius over `max(width, height)`, 0 when the splat was culled
    /// (not visible). What [`crate::train::backend::DensifyStats`] accumulates.
    pub densify: wgpu::Buffer,
}

impl GpuSplatGrads {
    /// Reads the parameter gradients back.
    pub fn read(&self, ctx: &GpuContext) -> Result<SplatGrads, GpuError> {
        let n = self.len as usize;
        Ok(SplatGrads {
            means: ctx.read(&self.means, n)?,
            log_scales: ctx.read(&self.log_scales, n)?,
            rotations: ctx.read(&self.rotations, n)?,
            opacity_logits: ctx.read(&self.opacity_logits, n)?,
            sh: ctx.read::<ShCoeffs>(&self.sh, n)?,
        })
    }

    /// Reads the projected-level gradients back.
    pub fn read_projected(&self, ctx: &GpuContext) -> Result<Vec<ProjectedGrad>, GpuError> {
        ctx.read(&self.projected, self.len as usize)
    }

    /// Reads the densification observations back (`[grad2d_norm, radius_fraction]` per splat).
    pub fn read_densify(&self, ctx: &GpuContext) -> Result<Vec<[f32; 2]>, GpuError> {
        ctx.read(&self.densify, self.len as usize)
    }
}

/// How much larger than the largest observed intersection total the capacity is made, so that
/// views seen later and splats growing between syncs rarely overflow it (the price: up to this
/// factor more, mostly idle, workgroups in the sort).
pub const INTERSECTION_HEADROOM: f64 = 1.5;

/// Capacity before any total was observed, per splat: a typical scene's splats touch a few tiles
/// each; a wrong guess costs one re-render in [`GpuRenderer::forward`].
const INITIAL_INTERSECTIONS_PER_SPLAT: u32 = 8;

/// The compiled render kernels (compile once, reuse for every frame) and the intersection
/// capacity (module doc).
#[derive(Debug)]
pub struct GpuRenderer {
    ctx: GpuContext,
    project: project::ProjectKernels,
    sorter: sort::RadixSorter,
    raster: raster::RasterKernels,
    /// Tile–splat pairs a frame may hold; 0 until a total was observed or a capacity set.
    capacity: AtomicU32,
    monitor: raster::IntersectionMonitor,
}

impl GpuRenderer {
    pub fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        Ok(Self {
            ctx: ctx.clone(),
            project: project::ProjectKernels::new(ctx)?,
            sorter: sort::RadixSorter::new(ctx)?,
            raster: raster::RasterKernels::new(ctx)?,
            capacity: AtomicU32::new(0),
            monitor: raster::IntersectionMonitor::new(ctx),
        })
    }

    /// The current intersection capacity (0 before the first frame or sync).
    pub fn intersection_capacity(&self) -> u32 {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Sets the intersection capacity, clamped to at least 1 (0 means "not yet known") and to
    /// what the device can bind (tests force overflows with a small one).
    pub fn set_intersection_capacity(&self, capacity: u32) {
        let device_max = self.ctx.device.limits().max_storage_buffer_binding_size / 4;
        let clamped = u64::from(capacity.max(1)).min(device_max);
        self.capacity.store(u32::try_from(clamped).unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    /// Reads the intersection monitor back (two `u32`), warns about frames rendered with truncated
    /// tile lists since the last sync and grows the capacity once the largest observed total comes
    /// within [`INTERSECTION_HEADROOM`] of it. Returns how many frames overflowed.
    pub fn sync_intersections(&self) -> Result<u32, GpuError> {
        let (largest, overflowed) = self.monitor.take(&self.ctx)?;
        let capacity = self.intersection_capacity();
        if overflowed > 0 {
            tracing::warn!(
                overflowed,
                capacity,
                largest,
                "frames rendered with truncated tile lists (the farthest splats' tile entries dropped); \
                 growing the intersection capacity"
            );
        }
        if f64::from(largest) * INTERSECTION_HEADROOM > f64::from(capacity) {
            self.set_intersection_capacity(Self::capacity_for(largest));
        }
        Ok(overflowed)
    }

    /// [`INTERSECTION_HEADROOM`] × `total` (saturating).
    fn capacity_for(total: u32) -> u32 {
        (f64::from(total) * INTERSECTION_HEADROOM).ceil().min(f64::from(u32::MAX)) as u32
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Projects, bins, sorts and composites `splats` as seen by `camera`, exactly: reads the
    /// frame's intersection total back, restores the [`INTERSECTION_HEADROOM`] over it and, when
    /// the frame overflowed, syncs (logging it) and renders again.
    pub fn forward(&self, splats: &GpuSplats, camera: &Camera, background: [f32; 3]) -> Result<GpuFrame, GpuError> {
        let first = self.intersection_capacity() == 0;
        let frame = self.forward_resident(splats, camera, background)?;
        let total = frame.read_num_intersections(&self.ctx)?;
        let wanted = Self::capacity_for(total);
        // The first observed total replaces the guess; later ones only grow the capacity.
        if first || wanted > frame.intersection_capacity {
            self.set_intersection_capacity(wanted);
        }
        if total <= frame.intersection_capacity {
            return Ok(frame);
        }
        self.sync_intersections()?;
        let frame = self.forward_resident(splats, camera, background)?;
        if total > frame.intersection_capacity {
            return Err(GpuError::TooLarge {
                what: "tile-splat intersections",
                got: total.into(),
                max: frame.intersection_capacity.into(),
            });
        }
        Ok(frame)
    }

    /// As [`GpuRenderer::forward`] with no readback at all: a frame over the intersection capacity
    /// keeps truncated tile lists, recorded for the next [`GpuRenderer::sync_intersections`]
    /// (module doc). Before any capacity is known, it guesses one from the splat count.
    pub fn forward_resident(
        &self,
        splats: &GpuSplats,
        camera: &Camera,
        background: [f32; 3],
    ) -> Result<GpuFrame, GpuError> {
        if self.intersection_capacity() == 0 {
            self.set_intersection_capacity(splats.len.saturating_mul(INITIAL_INTERSECTIONS_PER_SPLAT));
        }
        self.ctx.checked("render forward", || self.forward_unchecked(splats, camera, background))?
    }

    /// Gradients of the loss for every parameter of `splats`, given the frame `forward` rendered
    /// from them and `grad_image` (`∂L/∂image`, the layout of [`GpuFrame::image`]).
    pub fn backward(
        &self,
        splats: &GpuSplats,
        frame: &GpuFrame,
        grad_image: &wgpu::Buffer,
    ) -> Result<GpuSplatGrads, GpuError> {
        self.ctx.checked("render backward", || self.backward_unchecked(splats, frame, grad_image))?
    }

    fn forward_unchecked(
        &self,
        splats: &GpuSplats,
        camera: &Camera,
        background: [f32; 3],
    ) -> Result<GpuFrame, GpuError> {
        let ctx = &self.ctx;
        let uniforms = project::FrameUniforms::new(camera, background, splats.len, splats.sh_degree);
        let uniform_buffer = ctx.uniform("frame", &uniforms);
        let projected_frame = self.project.forward(ctx, splats, &uniform_buffer)?;
        let inputs =
            raster::FrameInputs { uniforms: &uniforms, uniform_buffer: &uniform_buffer, projected: &projected_frame };
        let binned = self.raster.bin(ctx, &self.sorter, inputs, self.intersection_capacity(), &self.monitor)?;
        let images = self.raster.forward(ctx, &uniforms, &uniform_buffer, &projected_frame.projected, &binned)?;
        Ok(GpuFrame {
            width: uniforms.width,
            height: uniforms.height,
            num_splats: splats.len,
            intersection_capacity: binned.capacity,
            intersection_offsets: binned.offsets,
            uniforms: uniform_buffer,
            projected: projected_frame.projected,
            sorted_ids: binned.sorted_ids,
            tile_ranges: binned.tile_ranges,
            image: images.image,
            alpha: images.alpha,
            depth: images.depth,
            median_depth: images.median_depth,
            final_transmittance: images.final_transmittance,
            last_contributor: images.last_contributor,
        })
    }

    fn backward_unchecked(
        &self,
        splats: &GpuSplats,
        frame: &GpuFrame,
        grad_image: &wgpu::Buffer,
    ) -> Result<GpuSplatGrads, GpuError> {
        let ctx = &self.ctx;
        let expected = frame.num_pixels() as u64 * 12;
        if grad_image.size() < expected {
            return Err(GpuError::BufferSize { name: "grad_image", got: grad_image.size(), expected });
        }
        let projected_grads = self.raster.backward(ctx, frame, grad_image)?;
        self.project.backward(ctx, splats, frame, projected_grads)
    }
}
