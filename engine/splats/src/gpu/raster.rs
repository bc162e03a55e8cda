//! Tile binning (intersection keys, sort, per-tile ranges) and the compositing kernels, forward
//! and backward.
//!
//! # Intersection capacity
//!
//! Binning never reads the intersection count back: the key buffers have a host-chosen capacity,
//! every dispatch after the scan is sized by it, and the kernels read the true count from the
//! scanned offsets on the device (clamped to the capacity). `emit_keys` drops the entries at or past
//! the capacity (the farthest splats', as entries are emitted in depth order), keeps the largest
//! total it saw and counts the frames that overflowed, in an [`IntersectionMonitor`] buffer that the
//! host reads only when it syncs (see [`super::GpuRenderer`]).

use crate::gpu::GpuFrame;
use crate::gpu::context::{GpuContext, GpuError, Kernel, accumulate_source, atomic_add_source, workgroups_for};
use crate::gpu::project::{FrameUniforms, ProjectedFrame};
use crate::gpu::sort::{RadixSorter, SortLength, SortedKeys, bits_for};
use crate::render::ProjectedGrad;

/// Splats binned into tiles.
#[derive(Debug)]
pub struct Binned {
    /// Length of `sorted_ids`: at most this many intersections are kept.
    pub capacity: u32,
    /// Exclusive scan of the tile counts in depth order; entry `num_splats` is the true
    /// intersection count (which may exceed `capacity`).
    pub offsets: wgpu::Buffer,
    /// Splat indices grouped by tile, depth-sorted within each.
    pub sorted_ids: wgpu::Buffer,
    /// `[start, end)` per tile.
    pub tile_ranges: wgpu::Buffer,
}

/// Splats in depth order, with where each one's intersections start.
struct DepthOrder {
    /// Splat indices, nearest first (ties by index).
    depth_order: wgpu::Buffer,
    /// Exclusive scan of the tile counts in depth order (`n + 1` entries, the last the total).
    offsets: wgpu::Buffer,
}

/// Device-side record of the intersection totals `emit_keys` saw: `[largest total, frames whose
/// total exceeded their capacity]`, both `u32`. Persistent across frames, reset by the host.
#[derive(Debug)]
pub struct IntersectionMonitor {
    pub buffer: wgpu::Buffer,
}

impl IntersectionMonitor {
    pub fn new(ctx: &GpuContext) -> Self {
        Self { buffer: ctx.zeroed("intersection monitor", 8) }
    }

    /// Reads `(largest total, overflowed frames)` and clears the overflow count (one readback).
    pub fn take(&self, ctx: &GpuContext) -> Result<(u32, u32), GpuError> {
        let values: Vec<u32> = ctx.read(&self.buffer, 2)?;
        ctx.queue.write_buffer(&self.buffer, 4, bytemuck::bytes_of(&0u32));
        match values[..] {
            [largest, overflowed] => Ok((largest, overflowed)),
            _ => Err(GpuError::Readback {
                label: "intersection monitor".into(),
                message: format!("{} values read, expected 2", values.len()),
            }),
        }
    }
}

/// The forward compositor's per-pixel outputs.
#[derive(Debug)]
pub struct RasterImages {
    pub image: wgpu::Buffer,
    pub alpha: wgpu::Buffer,
    pub depth: wgpu::Buffer,
    pub median_depth: wgpu::Buffer,
    pub final_transmittance: wgpu::Buffer,
    pub last_contributor: wgpu::Buffer,
}

/// Element count of a 1D kernel (`GatherParams` / `RangeParams` in the shaders).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CountParams {
    n: u32,
    /// `RangeParams::count_index` (unused by `gather_counts`).
    count_index: u32,
    _pad: [u32; 2],
}

/// `EmitParams` of `emit_keys.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct EmitParams {
    capacity: u32,
    _pad: [u32; 3],
}

/// What binning reads of one frame.
#[derive(Clone, Copy)]
pub struct FrameInputs<'a> {
    pub uniforms: &'a FrameUniforms,
    pub uniform_buffer: &'a wgpu::Buffer,
    pub projected: &'a ProjectedFrame,
}

/// WGSL shared by both compositing kernels: per-tile culling and compaction of a batch.
const TILE_CULL: &str = include_str!("shaders/tile_cull.wgsl");

#[derive(Debug)]
pub struct RasterKernels {
    gather_counts: Kernel,
    emit_keys: Kernel,
    tile_ranges: Kernel,
    forward: Kernel,
    backward: Kernel,
}

impl RasterKernels {
    pub fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        Ok(Self {
            gather_counts: Kernel::new(ctx, "gather_counts", &[include_str!("shaders/gather_counts.wgsl")])?,
            emit_keys: Kernel::new(ctx, "emit_keys", &[include_str!("shaders/emit_keys.wgsl")])?,
            tile_ranges: Kernel::new(ctx, "tile_ranges", &[include_str!("shaders/tile_ranges.wgsl")])?,
            forward: Kernel::new(ctx, "raster_forward", &[TILE_CULL, include_str!("shaders/raster_forward.wgsl")])?,
            backward: Kernel::new(
                ctx,
                "raster_backward",
                &[
                    TILE_CULL,
                    include_str!("shaders/raster_backward.wgsl"),
                    atomic_add_source(ctx),
                    accumulate_source(ctx),
                ],
            )?,
        })
    }

    /// Bins projected splats without reading anything back: splats sorted by depth, their tile
    /// counts scanned in that order, at most `capacity` entries emitted in depth order (the
    /// overflow recorded in `monitor`), a stable radix sort by tile id alone, tile ranges.
    pub fn bin(
        &self,
        ctx: &GpuContext,
        sorter: &RadixSorter,
        frame: FrameInputs<'_>,
        capacity: u32,
        monitor: &IntersectionMonitor,
    ) -> Result<Binned, GpuError> {
        let FrameInputs { uniforms, uniform_buffer, projected } = frame;
        let n = uniforms.num_splats;
        let bytes = u64::from(capacity) * 4;
        ctx.check_binding_size("tile-splat intersections", bytes)?;
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let DepthOrder { depth_order, offsets } = self.depth_order(ctx, sorter, &mut encoder, n, projected);
        let entries = SortedKeys {
            keys_hi: ctx.zeroed("tile keys", bytes),
            keys_lo: ctx.zeroed("unused low keys", bytes),
            values: ctx.zeroed("splat ids by tile", bytes),
        };
        let emit_params = ctx.uniform("emit params", &EmitParams { capacity, _pad: [0; 3] });
        let bind_group = self.emit_keys.bind(
            ctx,
            &[
                uniform_buffer,
                &projected.projected,
                &depth_order,
                &offsets,
                &entries.keys_hi,
                &entries.values,
                &emit_params,
                &monitor.buffer,
            ],
        );
        self.emit_keys.dispatch(&mut encoder, &bind_group, workgroups_for(n));
        let length = SortLength { capacity, count: &offsets, index: n };
        let sorted = sorter.encode_counted(ctx, &mut encoder, entries, length, 0, bits_for(uniforms.num_tiles()));

        let tile_ranges = ctx.zeroed("tile_ranges", u64::from(uniforms.num_tiles()) * 8);
        let params = ctx.uniform("tile range params", &CountParams { n: capacity, count_index: n, _pad: [0; 2] });
        let bind_group = self.tile_ranges.bind(ctx, &[&params, &sorted.keys_hi, &tile_ranges, &offsets]);
        self.tile_ranges.dispatch(&mut encoder, &bind_group, workgroups_for(capacity));
        ctx.queue.submit([encoder.finish()]);
        Ok(Binned { capacity, offsets, sorted_ids: sorted.values, tile_ranges })
    }

    /// Records the splats' depth order (ties by index) and their first entry in the
    /// depth-ordered intersection list: sort, gather of the tile counts, scan (the total lands in
    /// entry `n`).
    fn depth_order(
        &self,
        ctx: &GpuContext,
        sorter: &RadixSorter,
        encoder: &mut wgpu::CommandEncoder,
        n: u32,
        projected: &ProjectedFrame,
    ) -> DepthOrder {
        let by_depth = SortedKeys {
            keys_hi: ctx.zeroed("depth sort keys_hi", u64::from(n) * 4),
            keys_lo: projected.depth_keys.clone(),
            values: projected.splat_ids.clone(),
        };
        let depth_order = sorter.encode(ctx, encoder, by_depth, n, u32::BITS, 0).values;
        // One trailing zero, so that the exclusive scan leaves the total in the last element.
        let offsets = ctx.zeroed("tile offsets", (u64::from(n) + 1) * 4);
        let params = ctx.uniform("gather params", &CountParams { n, count_index: 0, _pad: [0; 2] });
        let bind_group = self.gather_counts.bind(ctx, &[&params, &depth_order, &projected.tiles_touched, &offsets]);
        self.gather_counts.dispatch(encoder, &bind_group, workgroups_for(n));
        sorter.scanner().encode(ctx, encoder, &offsets, n + 1);
        DepthOrder { depth_order, offsets }
    }

    /// Composites the binned splats (one workgroup per tile).
    pub fn forward(
        &self,
        ctx: &GpuContext,
        uniforms: &FrameUniforms,
        uniform_buffer: &wgpu::Buffer,
        projected: &wgpu::Buffer,
        binned: &Binned,
    ) -> Result<RasterImages, GpuError> {
        let pixels = u64::from(uniforms.num_pixels());
        ctx.check_binding_size("image", pixels * 12)?;
        let images = RasterImages {
            image: ctx.zeroed("image", pixels * 12),
            alpha: ctx.zeroed("alpha", pixels * 4),
            depth: ctx.zeroed("depth", pixels * 4),
            median_depth: ctx.zeroed("median_depth", pixels * 4),
            final_transmittance: ctx.zeroed("final_transmittance", pixels * 4),
            last_contributor: ctx.zeroed("last_contributor", pixels * 4),
        };
        let bind_group = self.forward.bind(
            ctx,
            &[
                uniform_buffer,
                projected,
                &binned.sorted_ids,
                &binned.tile_ranges,
                &images.image,
                &images.alpha,
                &images.depth,
                &images.median_depth,
                &images.final_transmittance,
                &images.last_contributor,
            ],
        );
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        self.forward.dispatch(&mut encoder, &bind_group, uniforms.num_tiles());
        ctx.queue.submit([encoder.finish()]);
        Ok(images)
    }

    /// Projected-level gradients ([`ProjectedGrad`] per splat) from `∂L/∂image`.
    pub fn backward(
        &self,
        ctx: &GpuContext,
        frame: &GpuFrame,
        grad_image: &wgpu::Buffer,
    ) -> Result<wgpu::Buffer, GpuError> {
        let bytes = u64::from(frame.num_splats) * size_of::<ProjectedGrad>() as u64;
        ctx.check_binding_size("projected gradients", bytes)?;
        let projected_grads = ctx.zeroed("projected gradients", bytes);
        let bind_group = self.backward.bind(
            ctx,
            &[
                &frame.uniforms,
                &frame.projected,
                &frame.sorted_ids,
                &frame.tile_ranges,
                &frame.final_transmittance,
                &frame.last_contributor,
                grad_image,
                &projected_grads,
            ],
        );
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        self.backward.dispatch(&mut encoder, &bind_group, frame.num_tiles() as u32);
        ctx.queue.submit([encoder.finish()]);
        Ok(projected_grads)
    }
}
