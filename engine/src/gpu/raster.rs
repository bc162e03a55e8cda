//! Tile binning (intersection keys, sort, per-tile ranges) and the compositing kernels, forward
//! and backward.

use super::GpuFrame;
use super::context::{GpuContext, GpuError, Kernel, accumulate_source, atomic_add_source, workgroups_for};
use super::project::{FrameUniforms, ProjectedFrame};
use super::sort::{RadixSorter, SortedKeys, bits_for};
use crate::render::ProjectedGrad;

/// Splats binned into tiles.
#[derive(Debug)]
pub struct Binned {
    pub num_intersections: u32,
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
    num_intersections: u32,
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
    _pad: [u32; 3],
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

    /// Bins projected splats: splats sorted by depth, their tile counts scanned in that order,
    /// one `u32` readback (the intersection count), entries emitted in depth order, a stable
    /// radix sort by tile id alone, tile ranges.
    pub fn bin(
        &self,
        ctx: &GpuContext,
        sorter: &RadixSorter,
        uniforms: &FrameUniforms,
        uniform_buffer: &wgpu::Buffer,
        projected: &ProjectedFrame,
    ) -> Result<Binned, GpuError> {
        let n = uniforms.num_splats;
        let DepthOrder { depth_order, offsets, num_intersections } = self.depth_order(ctx, sorter, n, projected)?;
        let bytes = u64::from(num_intersections) * 4;
        let entries = SortedKeys {
            keys_hi: ctx.zeroed("tile keys", bytes),
            keys_lo: ctx.zeroed("unused low keys", bytes),
            values: ctx.zeroed("splat ids by tile", bytes),
        };
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let bind_group = self.emit_keys.bind(
            ctx,
            &[uniform_buffer, &projected.projected, &depth_order, &offsets, &entries.keys_hi, &entries.values],
        );
        self.emit_keys.dispatch(&mut encoder, &bind_group, workgroups_for(n));
        let sorted = sorter.encode(ctx, &mut encoder, entries, num_intersections, 0, bits_for(uniforms.num_tiles()));

        let tile_ranges = ctx.zeroed("tile_ranges", u64::from(uniforms.num_tiles()) * 8);
        let params = ctx.uniform("tile range params", &CountParams { n: num_intersections, _pad: [0; 3] });
        let bind_group = self.tile_ranges.bind(ctx, &[&params, &sorted.keys_hi, &tile_ranges]);
        self.tile_ranges.dispatch(&mut encoder, &bind_group, workgroups_for(num_intersections));
        ctx.queue.submit([encoder.finish()]);
        Ok(Binned { num_intersections, sorted_ids: sorted.values, tile_ranges })
    }

    /// Splats in depth order (ties by index) and their first entry in the depth-ordered
    /// intersection list: sort, gather of the tile counts, scan, and the total read back.
    fn depth_order(
        &self,
        ctx: &GpuContext,
        sorter: &RadixSorter,
        n: u32,
        projected: &ProjectedFrame,
    ) -> Result<DepthOrder, GpuError> {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let by_depth = SortedKeys {
            keys_hi: ctx.zeroed("depth sort keys_hi", u64::from(n) * 4),
            keys_lo: projected.depth_keys.clone(),
            values: projected.splat_ids.clone(),
        };
        let depth_order = sorter.encode(ctx, &mut encoder, by_depth, n, u32::BITS, 0).values;
        // One trailing zero, so that the exclusive scan leaves the total in the last element.
        let offsets = ctx.zeroed("tile offsets", (u64::from(n) + 1) * 4);
        let params = ctx.uniform("gather params", &CountParams { n, _pad: [0; 3] });
        let bind_group = self.gather_counts.bind(ctx, &[&params, &depth_order, &projected.tiles_touched, &offsets]);
        self.gather_counts.dispatch(&mut encoder, &bind_group, workgroups_for(n));
        sorter.scanner().encode(ctx, &mut encoder, &offsets, n + 1);
        ctx.queue.submit([encoder.finish()]);
        let num_intersections = ctx.read_range::<u32>(&offsets, n as usize, 1)?.first().copied().unwrap_or(0);
        ctx.check_binding_size("tile-splat intersections", u64::from(num_intersections) * 4)?;
        Ok(DepthOrder { depth_order, offsets, num_intersections })
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
