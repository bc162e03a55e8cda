//! The per-frame camera block, and the projection kernels: splats to [`ProjectedSplat`]s (plus
//! tile counts for binning) and projected gradients back to parameter gradients.

use crate::gpu::context::{GpuContext, GpuError, Kernel, workgroups_for};
use crate::gpu::{GpuFrame, GpuSplatGrads, GpuSplats, SH_FLOATS};
use crate::render::{ProjectedSplat, TILE_SIZE};
use kiln_core::camera::Camera;

/// What every kernel of a frame knows about the camera; mirrors `struct Frame` in
/// `shaders/prelude.wgsl` (vec4-aligned, 144 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FrameUniforms {
    /// Columns of camera_from_world's rotation.
    pub rotation_cols: [[f32; 4]; 3],
    pub translation: [f32; 4],
    pub camera_center: [f32; 4],
    pub background: [f32; 4],
    pub fx: f32,
    pub fy: f32,
    pub cx: f32,
    pub cy: f32,
    pub width: u32,
    pub height: u32,
    pub tiles_x: u32,
    pub tiles_y: u32,
    pub num_splats: u32,
    pub sh_degree: u32,
    pub _pad: [u32; 2],
}

impl FrameUniforms {
    pub fn new(camera: &Camera, background: [f32; 3], num_splats: u32, sh_degree: u32) -> Self {
        let camera_from_world = camera.camera_from_world();
        let r = camera_from_world.rotation;
        let k = camera.intrinsics;
        Self {
            rotation_cols: [r.x_axis.extend(0.0).into(), r.y_axis.extend(0.0).into(), r.z_axis.extend(0.0).into()],
            translation: camera_from_world.translation.extend(0.0).into(),
            camera_center: camera.center().extend(0.0).into(),
            background: [background[0], background[1], background[2], 0.0],
            fx: k.fx,
            fy: k.fy,
            cx: k.cx,
            cy: k.cy,
            width: k.width,
            height: k.height,
            tiles_x: k.width.div_ceil(TILE_SIZE),
            tiles_y: k.height.div_ceil(TILE_SIZE),
            num_splats,
            sh_degree,
            _pad: [0; 2],
        }
    }

    pub fn num_tiles(&self) -> u32 {
        self.tiles_x * self.tiles_y
    }

    pub fn num_pixels(&self) -> u32 {
        self.width * self.height
    }
}

/// Output of the projection kernel.
#[derive(Debug)]
pub struct ProjectedFrame {
    /// [`ProjectedSplat`] per splat.
    pub projected: wgpu::Buffer,
    /// Tiles touched per splat.
    pub tiles_touched: wgpu::Buffer,
    /// Per splat, its depth's IEEE bits (`u32::MAX` when culled): the key that orders splats by
    /// depth.
    pub depth_keys: wgpu::Buffer,
    /// `0, 1, …, n − 1`: the values of the depth sort.
    pub splat_ids: wgpu::Buffer,
}

#[derive(Debug)]
pub struct ProjectKernels {
    forward: Kernel,
    backward: Kernel,
}

/// WGSL shared by both projection kernels and the viewer's: SH basis, quaternion rotation, the
/// 2D covariance.
pub const PROJECT_COMMON: &str = include_str!("shaders/project_common.wgsl");
/// How the projection kernels read SH coefficients: f32, the trainer's layout.
const SH_F32: &str = include_str!("shaders/sh_f32.wgsl");

impl ProjectKernels {
    pub fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        Ok(Self {
            forward: Kernel::new(
                ctx,
                "project_forward",
                &[PROJECT_COMMON, SH_F32, include_str!("shaders/project_forward.wgsl")],
            )?,
            backward: Kernel::new(
                ctx,
                "project_backward",
                &[PROJECT_COMMON, SH_F32, include_str!("shaders/project_backward.wgsl")],
            )?,
        })
    }

    /// Projects every splat of `splats` with the camera in `uniforms`.
    pub fn forward(
        &self,
        ctx: &GpuContext,
        splats: &GpuSplats,
        uniforms: &wgpu::Buffer,
    ) -> Result<ProjectedFrame, GpuError> {
        let n = u64::from(splats.len);
        ctx.check_binding_size("projected splats", n * size_of::<ProjectedSplat>() as u64)?;
        let projected = ctx.zeroed("projected", n * size_of::<ProjectedSplat>() as u64);
        let tiles_touched = ctx.zeroed("tiles_touched", n * 4);
        let depth_keys = ctx.zeroed("depth keys", n * 4);
        let splat_ids = ctx.zeroed("splat ids", n * 4);
        let bind_group = self.forward.bind(
            ctx,
            &[
                uniforms,
                &splats.means,
                &splats.log_scales,
                &splats.rotations,
                &splats.opacity_logits,
                &splats.sh,
                &projected,
                &tiles_touched,
                &depth_keys,
                &splat_ids,
            ],
        );
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        self.forward.dispatch(&mut encoder, &bind_group, workgroups_for(splats.len));
        ctx.queue.submit([encoder.finish()]);
        Ok(ProjectedFrame { projected, tiles_touched, depth_keys, splat_ids })
    }

    /// Parameter gradients from the projected gradients of `frame` (rendered from `splats`).
    pub fn backward(
        &self,
        ctx: &GpuContext,
        splats: &GpuSplats,
        frame: &GpuFrame,
        projected_grads: wgpu::Buffer,
    ) -> Result<GpuSplatGrads, GpuError> {
        let n = u64::from(splats.len);
        let grads = GpuSplatGrads {
            len: splats.len,
            means: ctx.zeroed("grad means", n * 12),
            log_scales: ctx.zeroed("grad log_scales", n * 12),
            rotations: ctx.zeroed("grad rotations", n * 16),
            opacity_logits: ctx.zeroed("grad opacity_logits", n * 4),
            sh: ctx.zeroed("grad sh", n * SH_FLOATS as u64 * 4),
            projected: projected_grads,
            densify: ctx.zeroed("densify observations", n * 8),
        };
        let bind_group = self.backward.bind(
            ctx,
            &[
                &frame.uniforms,
                &splats.means,
                &splats.log_scales,
                &splats.rotations,
                &splats.opacity_logits,
                &splats.sh,
                &frame.projected,
                &grads.projected,
                &grads.means,
                &grads.log_scales,
                &grads.rotations,
                &grads.opacity_logits,
                &grads.sh,
                &grads.densify,
            ],
        );
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        self.backward.dispatch(&mut encoder, &bind_group, workgroups_for(splats.len));
        ctx.queue.submit([encoder.finish()]);
        Ok(grads)
    }
}
