//! Camera frustums (line lists) and sparse points (instanced squares), `shaders/lines.wgsl`.
//!
//! A frustum is drawn from the camera centre to its image corners at a depth of
//! [`FRUSTUM_DEPTH_FRACTION`] of the scene's diagonal, with a small triangle over the image's
//! top edge so that a rolled camera is visible. OpenCV camera: the image lies along +Z.

use glam::Vec3;
use kiln_core::camera::Camera;
use kiln_splats::gpu::GpuContext;
use wgpu::util::DeviceExt;

use super::{VIEW_WGSL, accum_format, reverse_z_depth};
use crate::scene::Scene;

/// Frustum depth as a fraction of the scene's bounding-box diagonal: visible, yet small enough
/// not to hide the model among dozens of cameras.
const FRUSTUM_DEPTH_FRACTION: f32 = 0.04;
/// Frustum colour (display-encoded): a warm orange that stands out from grey backgrounds.
const FRUSTUM_COLOR: [f32; 4] = [1.0, 0.6, 0.15, 1.0];

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct LineVertex {
    position: [f32; 3],
    color: [f32; 4],
}

pub(super) struct LineRenderer {
    frustums: Option<(wgpu::Buffer, u32)>,
    points: Option<(wgpu::Buffer, u32)>,
    lines_pipeline: wgpu::RenderPipeline,
    points_pipeline: wgpu::RenderPipeline,
}

impl LineRenderer {
    pub fn new(ctx: &GpuContext, view_layout: &wgpu::BindGroupLayout, scene: &Scene) -> Self {
        let device = &ctx.device;
        let (lo, hi) = scene.bounds();
        let depth = (Vec3::from(hi) - Vec3::from(lo)).length().max(f32::MIN_POSITIVE) * FRUSTUM_DEPTH_FRACTION;
        let frustum_vertices: Vec<LineVertex> =
            scene.cameras.iter().flat_map(|c| frustum_lines(&c.camera, depth)).collect();
        let point_vertices: Vec<LineVertex> = scene
            .points
            .iter()
            .map(|(p, c)| LineVertex { position: *p, color: [c[0], c[1], c[2], 255].map(|v| f32::from(v) / 255.0) })
            .collect();
        let buffer = |label, vertices: &[LineVertex]| {
            (!vertices.is_empty()).then(|| {
                let buffer = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::cast_slice(vertices),
                    usage: wgpu::BufferUsages::VERTEX,
                });
                (buffer, vertices.len() as u32)
            })
        };
        let source = [VIEW_WGSL, include_str!("shaders/lines.wgsl")].join("\n");
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("lines"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("lines"),
            bind_group_layouts: &[Some(view_layout)],
            immediate_size: 0,
        });
        Self {
            frustums: buffer("camera frustums", &frustum_vertices),
            points: buffer("sparse points", &point_vertices),
            lines_pipeline: pipeline(
                device,
                &layout,
                &module,
                "vs_lines",
                wgpu::VertexStepMode::Vertex,
                wgpu::PrimitiveTopology::LineList,
            ),
            points_pipeline: pipeline(
                device,
                &layout,
                &module,
                "vs_points",
                wgpu::VertexStepMode::Instance,
                wgpu::PrimitiveTopology::TriangleStrip,
            ),
        }
    }

    pub fn draw(&self, pass: &mut wgpu::RenderPass<'_>, cameras: bool, points: bool) {
        if cameras && let Some((buffer, count)) = &self.frustums {
            pass.set_pipeline(&self.lines_pipeline);
            pass.set_vertex_buffer(0, buffer.slice(..));
            pass.draw(0..*count, 0..1);
        }
        if points && let Some((buffer, count)) = &self.points {
            pass.set_pipeline(&self.points_pipeline);
            pass.set_vertex_buffer(0, buffer.slice(..));
            pass.draw(0..4, 0..*count);
        }
    }
}

/// Line-list vertices of one camera's frustum at `depth` (see the module docs).
fn frustum_lines(camera: &Camera, depth: f32) -> Vec<LineVertex> {
    let k = camera.intrinsics;
    let (w, h) = (k.width as f32, k.height as f32);
    let world_from_camera = camera.world_from_camera.to_mat4();
    let at = |u: f32, v: f32| {
        let in_camera = Vec3::new((u - k.cx) / k.fx * depth, (v - k.cy) / k.fy * depth, depth);
        world_from_camera.transform_point3(in_camera).to_array()
    };
    let centre = camera.center().to_array();
    let corners = [at(0.0, 0.0), at(w, 0.0), at(w, h), at(0.0, h)];
    let mut segments = Vec::new();
    for (i, corner) in corners.iter().enumerate() {
        segments.push([centre, *corner]);
        segments.push([*corner, corners[(i + 1) % 4]]);
    }
    let apex = at(0.5 * w, -0.25 * h);
    segments.push([at(0.3 * w, 0.0), apex]);
    segments.push([apex, at(0.7 * w, 0.0)]);
    segments.into_iter().flatten().map(|position| LineVertex { position, color: FRUSTUM_COLOR }).collect()
}

fn pipeline(
    device: &wgpu::Device,
    layout: &wgpu::PipelineLayout,
    module: &wgpu::ShaderModule,
    entry_point: &str,
    step_mode: wgpu::VertexStepMode,
    topology: wgpu::PrimitiveTopology,
) -> wgpu::RenderPipeline {
    let attributes = wgpu::vertex_attr_array![0 => Float32x3, 1 => Float32x4];
    device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some(entry_point),
        layout: Some(layout),
        vertex: wgpu::VertexState {
            module,
            entry_point: Some(entry_point),
            compilation_options: Default::default(),
            buffers: &[Some(wgpu::VertexBufferLayout {
                array_stride: size_of::<LineVertex>() as u64,
                step_mode,
                attributes: &attributes,
            })],
        },
        primitive: wgpu::PrimitiveState { topology, ..Default::default() },
        depth_stencil: Some(reverse_z_depth(true)),
        multisample: Default::default(),
        fragment: Some(wgpu::FragmentState {
            module,
            entry_point: Some("fs_main"),
            compilation_options: Default::default(),
            targets: &[Some(wgpu::ColorTargetState {
                format: accum_format(device),
                blend: None,
                write_mask: wgpu::ColorWrites::ALL,
            })],
        }),
        multiview_mask: None,
        cache: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::camera::{Intrinsics, WorldFromCameraCv};

    #[test]
    fn frustum_opens_along_plus_z_and_through_the_image_corners() {
        let camera = Camera {
            intrinsics: Intrinsics { fx: 100.0, fy: 100.0, cx: 50.0, cy: 40.0, width: 100, height: 80 },
            world_from_camera: WorldFromCameraCv {
                rotation: glam::Mat3::IDENTITY,
                translation: Vec3::new(1.0, 2.0, 3.0),
            },
        };
        let lines = frustum_lines(&camera, 2.0);
        // The far end of the first segment is the top-left image corner, 2 units along +Z.
        let corner = Vec3::from(lines[1].position) - camera.center();
        assert!((corner.z - 2.0).abs() < 1e-6);
        let [u, v] = camera.intrinsics.project(corner);
        assert!(u.abs() < 1e-4 && v.abs() < 1e-4, "({u}, {v})");
    }
}
