//! The mesh layer: one interleaved vertex buffer, index buffer, edge list and material per
//! primitive; lit, matcap and wireframe pipelines (`shaders/mesh.wgsl`).

use std::collections::HashSet;

use kiln_splats::gpu::GpuContext;
use wgpu::util::DeviceExt;

use super::{SRGB_WGSL, VIEW_WGSL, accum_format, reverse_z_depth};
use crate::scene::{MeshLayer, MeshPrimitive};

/// Interleaved vertex: position, normal, UV, linear RGBA colour.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Vertex {
    position: [f32; 3],
    normal: [f32; 3],
    uv: [f32; 2],
    color: [f32; 4],
}

/// Mirrors `struct Material` in `mesh.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct MaterialUniforms {
    base_color_factor: [f32; 4],
    flags: [f32; 4],
}

/// Flat tangent-space normal (0, 0, 1) in 8-bit texture encoding.
const FLAT_NORMAL_TEXEL: [u8; 4] = [128, 128, 255, 255];

struct GpuPrimitive {
    vertices: wgpu::Buffer,
    indices: wgpu::Buffer,
    index_count: u32,
    edges: wgpu::Buffer,
    edge_index_count: u32,
    material: wgpu::BindGroup,
}

pub(super) struct MeshRenderer {
    primitives: Vec<GpuPrimitive>,
    lit: wgpu::RenderPipeline,
    matcap: wgpu::RenderPipeline,
    edges: wgpu::RenderPipeline,
    triangles: usize,
}

impl MeshRenderer {
    pub fn new(ctx: &GpuContext, view_layout: &wgpu::BindGroupLayout, layer: &MeshLayer) -> Self {
        let device = &ctx.device;
        let material_layout = material_layout(device);
        let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("mesh material"),
            address_mode_u: wgpu::AddressMode::Repeat,
            address_mode_v: wgpu::AddressMode::Repeat,
            mag_filter: wgpu::FilterMode::Linear,
            min_filter: wgpu::FilterMode::Linear,
            ..Default::default()
        });
        let primitives = layer
            .primitives
            .iter()
            .filter(|p| !p.indices.is_empty())
            .map(|p| upload_primitive(ctx, &material_layout, &sampler, p))
            .collect();
        let source = [VIEW_WGSL, SRGB_WGSL, include_str!("shaders/mesh.wgsl")].join("\n");
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("mesh"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("mesh"),
            bind_group_layouts: &[Some(view_layout), Some(&material_layout)],
            immediate_size: 0,
        });
        let pipeline = |vs: &str, fs: &str, topology| mesh_pipeline(device, &layout, &module, vs, fs, topology);
        Self {
            primitives,
            lit: pipeline("vs_main", "fs_lit", wgpu::PrimitiveTopology::TriangleList),
            matcap: pipeline("vs_main", "fs_matcap", wgpu::PrimitiveTopology::TriangleList),
            edges: pipeline("vs_edges", "fs_edges", wgpu::PrimitiveTopology::LineList),
            triangles: layer.num_triangles(),
        }
    }

    pub fn triangles(&self) -> usize {
        self.triangles
    }

    pub fn draw(&self, pass: &mut wgpu::RenderPass<'_>, matcap: bool) {
        pass.set_pipeline(if matcap { &self.matcap } else { &self.lit });
        for p in &self.primitives {
            pass.set_bind_group(1, &p.material, &[]);
            pass.set_vertex_buffer(0, p.vertices.slice(..));
            pass.set_index_buffer(p.indices.slice(..), wgpu::IndexFormat::Uint32);
            pass.draw_indexed(0..p.index_count, 0, 0..1);
        }
    }

    pub fn draw_wireframe(&self, pass: &mut wgpu::RenderPass<'_>) {
        pass.set_pipeline(&self.edges);
        for p in &self.primitives {
            pass.set_bind_group(1, &p.material, &[]);
            pass.set_vertex_buffer(0, p.vertices.slice(..));
            pass.set_index_buffer(p.edges.slice(..), wgpu::IndexFormat::Uint32);
            pass.draw_indexed(0..p.edge_index_count, 0, 0..1);
        }
    }
}

/// Each undirected triangle edge once, as a line list.
fn unique_edges(indices: &[u32]) -> Vec<u32> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for tri in indices.chunks_exact(3) {
        for (a, b) in [(tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])] {
            if seen.insert((a.min(b), a.max(b))) {
                out.extend([a, b]);
            }
        }
    }
    out
}

fn upload_primitive(
    ctx: &GpuContext,
    layout: &wgpu::BindGroupLayout,
    sampler: &wgpu::Sampler,
    p: &MeshPrimitive,
) -> GpuPrimitive {
    let device = &ctx.device;
    let vertices: Vec<Vertex> = (0..p.positions.len())
        .map(|i| Vertex {
            position: p.positions[i],
            normal: p.normals.get(i).copied().unwrap_or([0.0; 3]),
            uv: p.uvs.get(i).copied().unwrap_or([0.0; 2]),
            color: p.colors.get(i).copied().unwrap_or([1.0; 4]),
        })
        .collect();
    let buffer = |label, contents: &[u8], usage| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage })
    };
    let edges = unique_edges(&p.indices);
    let has_uvs = p.uvs.len() == p.positions.len();
    let material = MaterialUniforms {
        base_color_factor: p.material.base_color_factor,
        flags: [
            f32::from(u8::from(p.normals.len() == p.positions.len())),
            f32::from(u8::from(p.material.normal_map.is_some())),
            f32::from(u8::from(has_uvs)),
            0.0,
        ],
    };
    let base_color =
        texture(ctx, "base colour", p.material.base_color.as_deref(), [255; 4], wgpu::TextureFormat::Rgba8UnormSrgb);
    let normal_map = texture(
        ctx,
        "normal map",
        p.material.normal_map.as_deref(),
        FLAT_NORMAL_TEXEL,
        wgpu::TextureFormat::Rgba8Unorm,
    );
    let material_buffer = buffer("mesh material", bytemuck::bytes_of(&material), wgpu::BufferUsages::UNIFORM);
    let material = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("mesh material"),
        layout,
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: material_buffer.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: wgpu::BindingResource::TextureView(&base_color) },
            wgpu::BindGroupEntry { binding: 2, resource: wgpu::BindingResource::TextureView(&normal_map) },
            wgpu::BindGroupEntry { binding: 3, resource: wgpu::BindingResource::Sampler(sampler) },
        ],
    });
    GpuPrimitive {
        vertices: buffer("mesh vertices", bytemuck::cast_slice(&vertices), wgpu::BufferUsages::VERTEX),
        indices: buffer("mesh indices", bytemuck::cast_slice(&p.indices), wgpu::BufferUsages::INDEX),
        index_count: p.indices.len() as u32,
        edge_index_count: edges.len() as u32,
        edges: buffer("mesh edges", bytemuck::cast_slice(&edges), wgpu::BufferUsages::INDEX),
        material,
    }
}

/// A texture holding `image`, or a 1×1 texture of `fallback`.
fn texture(
    ctx: &GpuContext,
    label: &str,
    image: Option<&image::RgbaImage>,
    fallback: [u8; 4],
    format: wgpu::TextureFormat,
) -> wgpu::TextureView {
    let (width, height, data) = match image {
        Some(image) if image.width() > 0 && image.height() > 0 => {
            (image.width(), image.height(), image.as_raw().as_slice())
        }
        _ => (1, 1, &fallback[..]),
    };
    ctx.device
        .create_texture_with_data(
            &ctx.queue,
            &wgpu::TextureDescriptor {
                label: Some(label),
                size: wgpu::Extent3d { width, height, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            },
            wgpu::util::TextureDataOrder::LayerMajor,
            data,
        )
        .create_view(&Default::default())
}

fn material_layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    let texture = |binding| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::FRAGMENT,
        ty: wgpu::BindingType::Texture {
            sample_type: wgpu::TextureSampleType::Float { filterable: true },
            view_dimension: wgpu::TextureViewDimension::D2,
            multisampled: false,
        },
        count: None,
    };
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("mesh material"),
        entries: &[
            wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            },
            texture(1),
            texture(2),
            wgpu::BindGroupLayoutEntry {
                binding: 3,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                count: None,
            },
        ],
    })
}

fn mesh_pipeline(
    device: &wgpu::Device,
    layout: &wgpu::PipelineLayout,
    module: &wgpu::ShaderModule,
    vs: &str,
    fs: &str,
    topology: wgpu::PrimitiveTopology,
) -> wgpu::RenderPipeline {
    let attributes = wgpu::vertex_attr_array![0 => Float32x3, 1 => Float32x3, 2 => Float32x2, 3 => Float32x4];
    device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some("mesh"),
        layout: Some(layout),
        vertex: wgpu::VertexState {
            module,
            entry_point: Some(vs),
            compilation_options: Default::default(),
            buffers: &[Some(wgpu::VertexBufferLayout {
                array_stride: size_of::<Vertex>() as u64,
                step_mode: wgpu::VertexStepMode::Vertex,
                attributes: &attributes,
            })],
        },
        // Both faces are drawn: scanned meshes are often open, and the inside should not vanish.
        primitive: wgpu::PrimitiveState { topology, ..Default::default() },
        depth_stencil: Some(reverse_z_depth(true)),
        multisample: Default::default(),
        fragment: Some(wgpu::FragmentState {
            module,
            entry_point: Some(fs),
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

    #[test]
    fn shared_edges_are_listed_once() {
        // Two triangles sharing the edge 1–2: 5 distinct edges.
        let edges = unique_edges(&[0, 1, 2, 2, 1, 3]);
        assert_eq!(edges.len(), 10);
        let set: HashSet<(u32, u32)> = edges.chunks(2).map(|e| (e[0].min(e[1]), e[0].max(e[1]))).collect();
        assert_eq!(set.len(), 5);
        assert!(set.contains(&(1, 2)));
    }
}
