//! The splat layer: per frame, a compute pass projects every splat with the trainer's maths
//! (the engine's own WGSL: its prelude and `project_common.wgsl`), the engine's GPU radix sort
//! orders them by camera depth, and instanced quads are blended back to front with
//! premultiplied "over" blending. Back to front over the background gives exactly the trainer's
//! front-to-back sum `Σ cᵢ αᵢ Tᵢ + T · background`; the only difference is that the trainer
//! stops a pixel once its transmittance would fall below `MIN_TRANSMITTANCE` (1e-4), which
//! changes a pixel by at most that much.

use glam::Mat3;
use kiln_core::camera::Camera;
use kiln_core::splats::Splats;
use kiln_splats::gpu::context::{Kernel, workgroups_for};
use kiln_splats::gpu::sort::{RadixSorter, SortedKeys};
use kiln_splats::gpu::{FrameUniforms, GpuContext, GpuError, SH_FLOATS};
use kiln_splats::render::{MAX_ALPHA, MIN_ALPHA};

use super::{VIEW_WGSL, accum_format, reverse_z_depth};
use crate::ViewerError;
use crate::scene::SplatLayer;

/// Floats written per splat by the projection kernel (4 × vec4, see `splat_project.wgsl`).
const PROJECTED_FLOATS: u64 = 16;
/// Bits of the depth sort key: a whole `f32`.
const DEPTH_KEY_BITS: u32 = 32;

/// Splat parameters on the device for drawing: the trainer's layout (`kiln_splats::gpu::GpuSplats`)
/// except the SH coefficients, stored as f16 pairs (`shaders/sh_f16.wgsl`) to halve the largest
/// buffer.
struct DrawSplats {
    means: wgpu::Buffer,
    log_scales: wgpu::Buffer,
    rotations: wgpu::Buffer,
    opacity_logits: wgpu::Buffer,
    sh: wgpu::Buffer,
    len: u32,
    sh_degree: u32,
}

impl DrawSplats {
    fn upload(ctx: &GpuContext, splats: &Splats) -> Result<Self, ViewerError> {
        splats.validate().map_err(GpuError::from)?;
        let expected = splats.len();
        let len = u32::try_from(expected).map_err(|_| GpuError::TooLarge {
            what: "splat count",
            got: expected as u64,
            max: u32::MAX.into(),
        })?;
        let sh = pack_sh_f16(splats);
        ctx.check_binding_size("SH buffer (f16)", sh.len() as u64 * 4)?;
        Ok(Self {
            means: ctx.upload("means", &splats.means),
            log_scales: ctx.upload("log_scales", &splats.log_scales),
            rotations: ctx.upload("rotations", &splats.rotations),
            opacity_logits: ctx.upload("opacity_logits", &splats.opacity_logits),
            sh: ctx.upload("sh f16", &sh),
            len,
            sh_degree: splats.sh_degree,
        })
    }
}

/// The SH coefficients as f16, two per word (even index in the low half, as WGSL's
/// `unpack2x16float` reads them).
fn pack_sh_f16(splats: &Splats) -> Vec<u32> {
    let floats = splats.sh.iter().flat_map(|coeffs| coeffs.iter().flatten().copied());
    let halves: Vec<u16> = floats.map(|v| half::f16::from_f32(v).to_bits()).collect();
    debug_assert_eq!(halves.len(), splats.len() * SH_FLOATS);
    halves.chunks(2).map(|pair| u32::from(pair[0]) | (u32::from(pair.get(1).copied().unwrap_or(0)) << 16)).collect()
}

/// GPU state of one splat layer.
pub(super) struct SplatRenderer {
    len: u32,
    sh_degree: u32,
    frame: wgpu::Buffer,
    project: Kernel,
    project_bind_group: wgpu::BindGroup,
    sorter: RadixSorter,
    projected: wgpu::Buffer,
    depth_keys: wgpu::Buffer,
    splat_ids: wgpu::Buffer,
    /// Unused high key words (the sort is by depth alone), bound because the sorter needs them.
    keys_hi: wgpu::Buffer,
    counts: wgpu::Buffer,
    draw_pipeline: wgpu::RenderPipeline,
    draw_layout: wgpu::BindGroupLayout,
    /// Bound to the sorted order of the last [`SplatRenderer::prepare`].
    draw_bind_group: Option<wgpu::BindGroup>,
}

impl SplatRenderer {
    pub fn new(ctx: &GpuContext, view_layout: &wgpu::BindGroupLayout, layer: &SplatLayer) -> Result<Self, ViewerError> {
        let gpu = DrawSplats::upload(ctx, &layer.splats)?;
        let n = u64::from(gpu.len);
        ctx.check_binding_size("projected splats", n * PROJECTED_FLOATS * 4)?;
        let frame = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("splat frame"),
            size: size_of::<FrameUniforms>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let sh_frame = ctx.uniform("splat SH frame", &sh_frame_columns(layer.sh_frame_from_world));
        let projected = ctx.zeroed("projected splats", n * PROJECTED_FLOATS * 4);
        let depth_keys = ctx.zeroed("splat depth keys", n * 4);
        let splat_ids = ctx.zeroed("splat ids", n * 4);
        let keys_hi = ctx.zeroed("splat keys hi", n * 4);
        let project = Kernel::new(
            ctx,
            "viewer splat project",
            &[
                kiln_splats::gpu::PROJECT_COMMON_WGSL,
                include_str!("shaders/sh_f16.wgsl"),
                include_str!("shaders/splat_project.wgsl"),
            ],
        )?;
        let project_bind_group = project.bind(
            ctx,
            &[
                &frame,
                &sh_frame,
                &gpu.means,
                &gpu.log_scales,
                &gpu.rotations,
                &gpu.opacity_logits,
                &gpu.sh,
                &projected,
                &depth_keys,
                &splat_ids,
            ],
        );
        let counts = ctx.uniform("splat counts", &[gpu.len, 0, 0, 0]);
        let (draw_pipeline, draw_layout) = draw_pipeline(&ctx.device, view_layout);
        Ok(Self {
            len: gpu.len,
            sh_degree: gpu.sh_degree,
            frame,
            project,
            project_bind_group,
            sorter: RadixSorter::new(ctx)?,
            projected,
            depth_keys,
            splat_ids,
            keys_hi,
            counts,
            draw_pipeline,
            draw_layout,
            draw_bind_group: None,
        })
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Records projection and depth sort for `camera`.
    pub fn prepare(
        &mut self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        camera: &Camera,
    ) -> Result<(), ViewerError> {
        ctx.queue.write_buffer(
            &self.frame,
            0,
            bytemuck::bytes_of(&FrameUniforms::new(camera, [0.0; 3], self.len, self.sh_degree)),
        );
        self.project.dispatch(encoder, &self.project_bind_group, workgroups_for(self.len));
        let sorted = self.sorter.encode(
            ctx,
            encoder,
            SortedKeys {
                keys_hi: self.keys_hi.clone(),
                keys_lo: self.depth_keys.clone(),
                values: self.splat_ids.clone(),
            },
            self.len,
            DEPTH_KEY_BITS,
            0,
        );
        self.draw_bind_group = Some(ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("splat draw"),
            layout: &self.draw_layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: self.projected.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: sorted.values.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: self.counts.as_entire_binding() },
            ],
        }));
        Ok(())
    }

    /// Draws the splats sorted by the last [`SplatRenderer::prepare`] (nothing before one).
    pub fn draw(&self, pass: &mut wgpu::RenderPass<'_>) {
        let Some(bind_group) = &self.draw_bind_group else { return };
        pass.set_pipeline(&self.draw_pipeline);
        pass.set_bind_group(1, bind_group, &[]);
        pass.draw(0..4, 0..self.len);
    }
}

/// `sh_frame_from_world` as three vec4 columns (`ShFrame` in the shader).
fn sh_frame_columns(m: Mat3) -> [[f32; 4]; 3] {
    [m.x_axis.extend(0.0).into(), m.y_axis.extend(0.0).into(), m.z_axis.extend(0.0).into()]
}

fn draw_pipeline(
    device: &wgpu::Device,
    view_layout: &wgpu::BindGroupLayout,
) -> (wgpu::RenderPipeline, wgpu::BindGroupLayout) {
    let storage = |binding| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::VERTEX,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only: true },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("splat draw"),
        entries: &[
            storage(0),
            storage(1),
            wgpu::BindGroupLayoutEntry {
                binding: 2,
                visibility: wgpu::ShaderStages::VERTEX,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            },
        ],
    });
    let constants = format!("const MAX_ALPHA: f32 = {MAX_ALPHA:?};\nconst MIN_ALPHA: f32 = {MIN_ALPHA:?};\n");
    let source = [VIEW_WGSL, &constants, include_str!("shaders/splat_draw.wgsl")].join("\n");
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("splat draw"),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("splat draw"),
        bind_group_layouts: &[Some(view_layout), Some(&layout)],
        immediate_size: 0,
    });
    let premultiplied_over = wgpu::BlendComponent {
        src_factor: wgpu::BlendFactor::One,
        dst_factor: wgpu::BlendFactor::OneMinusSrcAlpha,
        operation: wgpu::BlendOperation::Add,
    };
    let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some("splat draw"),
        layout: Some(&pipeline_layout),
        vertex: wgpu::VertexState {
            module: &module,
            entry_point: Some("vs_main"),
            compilation_options: Default::default(),
            buffers: &[],
        },
        primitive: wgpu::PrimitiveState { topology: wgpu::PrimitiveTopology::TriangleStrip, ..Default::default() },
        depth_stencil: Some(reverse_z_depth(false)),
        multisample: Default::default(),
        fragment: Some(wgpu::FragmentState {
            module: &module,
            entry_point: Some("fs_main"),
            compilation_options: Default::default(),
            targets: &[Some(wgpu::ColorTargetState {
                format: accum_format(device),
                blend: Some(wgpu::BlendState { color: premultiplied_over, alpha: premultiplied_over }),
                write_mask: wgpu::ColorWrites::ALL,
            })],
        }),
        multiview_mask: None,
        cache: None,
    });
    (pipeline, layout)
}
