//! Tile binning (intersection keys, sort, per-tile ranges) and the compositing kernels, forward
//! and backward.

use super::GpuFrame;
use super::context::{GpuContext, GpuError, Kernel, atomic_add_source, workgroups_for};
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

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RangeParams {
    n: u32,
    _pad: [u32; 3],
}

#[derive(Debug)]
pub struct RasterKernels {
    emit_keys: Kernel,
    tile_ranges: Kernel,
    forward: Kernel,
    backward: Kernel,
}

impl RasterKernels {
    pub fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        Ok(Self {
            emit_keys: Kernel::new(ctx, "emit_keys", &[include_str!("shaders/emit_keys.wgsl")])?,
            tile_ranges: Kernel::new(ctx, "tile_ranges", &[include_str!("shaders/tile_ranges.wgsl")])?,
            forward: Kernel::new(ctx, "raster_forward", &[include_str!("shaders/raster_forward.wgsl")])?,
            backward: Kernel::new(
                ctx,
                "raster_backward",
                &[include_str!("shaders/raster_backward.wgsl"), atomic_add_source(ctx)],
            )?,
        })
    }

    /// Bins projected splats: scan of the tile counts, one `u32` readback (the intersection
    /// count), key emission, radix sort, tile ranges.
    pub fn bin(
        &self,
        ctx: &GpuContext,
        sorter: &RadixSorter,
        uniforms: &FrameUniforms,
        uniform_buffer: &wgpu::Buffer,
        projected: &ProjectedFrame,
    ) -> Result<Binned, GpuError> {
        let n = uniforms.num_splats;
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        sorter.scanner().encode(ctx, &mut encoder, &projected.tiles_touched, n + 1);
        ctx.queue.submit([encoder.finish()]);
        let offsets = &projected.tiles_touched;
        let num_intersections = ctx.read_range::<u32>(offsets, n as usize, 1)?.first().copied().unwrap_or(0);
        ctx.check_binding_size("tile-splat intersections", u64::from(num_intersections) * 4)?;

        let bytes = u64::from(num_intersections) * 4;
        let keys = SortedKeys {
            keys_hi: ctx.zeroed("keys_hi", bytes),
            keys_lo: ctx.zeroed("keys_lo", bytes),
            values: ctx.zeroed("values", bytes),
        };
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let bind_group = self.emit_keys.bind(
            ctx,
            &[uniform_buffer, &projected.projected, offsets, &keys.keys_hi, &keys.keys_lo, &keys.values],
        );
        self.emit_keys.dispatch(&mut encoder, &bind_group, workgroups_for(n));
        let sorted = sorter.encode(ctx, &mut encoder, keys, num_intersections, bits_for(uniforms.num_tiles()));

        let tile_ranges = ctx.zeroed("tile_ranges", u64::from(uniforms.num_tiles()) * 8);
        let params = ctx.uniform("tile range params", &RangeParams { n: num_intersections, _pad: [0; 3] });
        let bind_group = self.tile_ranges.bind(ctx, &[&params, &sorted.keys_hi, &tile_ranges]);
        self.tile_ranges.dispatch(&mut encoder, &bind_group, workgroups_for(num_intersections));
        ctx.queue.submit([encoder.finish()]);
        Ok(Binned { num_intersections, sorted_ids: sorted.values, tile_ranges })
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
    pub fn backward(&self, ctx: &GpuContext, frame: &GpuFrame, grad_image: &wgpu::Buffer) -> Result<wgpu::Buffer, GpuError> {
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
