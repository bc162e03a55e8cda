//! [`SceneRenderer`]: draws a [`Scene`] into any wgpu colour target for an OpenCV [`Camera`].
//!
//! # How a frame is made
//!
//! Everything is drawn into an internal `Rgba16Float` accumulation texture that holds
//! **display-encoded** colour (the values a PNG stores, the space the trainer fits photos in),
//! with a `Depth32Float` buffer, then a composite pass writes it to the caller's target
//! (decoding to linear first when the target format is sRGB, so the hardware's encode gives back
//! the same values).
//!
//! 1. Clear to the background colour (alpha 0, so alpha ends as coverage).
//! 2. Opaque layers with depth writes: the mesh (lit, textured, or matcap), its wireframe,
//!    camera frustums and sparse points.
//! 3. Gaussian splats: a compute pass projects every splat with the trainer's maths
//!    (`splats.rs`), a GPU radix sort orders them by depth, and instanced quads are blended back
//!    to front with premultiplied alpha, depth-tested against the opaque layers.
//! 4. Composite into the target: `rgb`, and `alpha = coverage + (1 − coverage) · background.a`.
//!
//! # Projection
//!
//! The camera is OpenCV (+X right, +Y down, looking along +Z, pixel centres at `i + 0.5`).
//! `clip_from_camera` maps a camera-frame point `(x, y, z)` to
//! `(2fx/W·x + (2cx/W − 1)·z, −2fy/H·y + (1 − 2cy/H)·z, near, z)`: NDC x and y are the pixel
//! coordinates rescaled, with y flipped because NDC +Y is up while image rows grow down, and depth
//! is reverse-Z with an infinite far plane (`near / z`, 1 at the near plane, → 0 far away;
//! depth test `Greater`).

mod composite;
mod lines;
mod mesh;
mod splats;

use glam::{Mat4, Vec3};
use kiln_core::camera::Camera;
use kiln_splats::gpu::GpuContext;

use crate::ViewerError;
use crate::scene::Scene;

/// The accumulation texture's format: 32-bit float where the device can blend it
/// (`FLOAT32_BLENDABLE`), else 16-bit float. Hundreds of thin splat layers blend into each pixel;
/// in 16 bits the rounding of every blend adds up (lavapipe's rounds towards zero: about −0.3 dB
/// on a trained bunny, against −0.00 dB in 32 bits).
fn accum_format(device: &wgpu::Device) -> wgpu::TextureFormat {
    if device.features().contains(wgpu::Features::FLOAT32_BLENDABLE) {
        wgpu::TextureFormat::Rgba32Float
    } else {
        wgpu::TextureFormat::Rgba16Float
    }
}

/// The optional features [`SceneRenderer`] uses when a device has them (request them with
/// [`device_limits`] when opening a device; the window passes both to eframe).
pub fn device_features(adapter_features: wgpu::Features) -> wgpu::Features {
    adapter_features & wgpu::Features::FLOAT32_BLENDABLE
}
/// Depth buffer format: 32-bit float, the natural pair of reverse-Z.
const DEPTH_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Depth32Float;

/// Reverse-Z depth testing (nearer is greater) against [`DEPTH_FORMAT`]; `write` is off for
/// layers blended over the opaque ones.
fn reverse_z_depth(write: bool) -> wgpu::DepthStencilState {
    wgpu::DepthStencilState {
        format: DEPTH_FORMAT,
        depth_write_enabled: Some(write),
        depth_compare: Some(wgpu::CompareFunction::Greater),
        stencil: Default::default(),
        bias: Default::default(),
    }
}
/// Near plane in scene units: the trainer's splat near plane, so that nothing the trainer draws
/// is clipped.
const NEAR: f32 = kiln_core::camera::NEAR_PLANE;

/// What to draw and how.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RenderOptions {
    /// Display-encoded RGB (the trainer's compositing background) and the alpha written where
    /// nothing is drawn.
    pub background: [f32; 4],
    pub show_splats: bool,
    pub show_mesh: bool,
    pub show_cameras: bool,
    pub show_points: bool,
    /// Mesh edges drawn over the mesh.
    pub wireframe: bool,
    /// Shade the mesh with a clay matcap instead of its textures.
    pub matcap: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            background: [0.12, 0.12, 0.14, 1.0],
            show_splats: true,
            show_mesh: true,
            show_cameras: true,
            show_points: true,
            wireframe: false,
            matcap: false,
        }
    }
}

/// What one frame drew.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FrameStats {
    /// Splats sent to the GPU this frame (those the projection culls included).
    pub splats_drawn: usize,
    /// Mesh triangles drawn.
    pub triangles: usize,
    /// GPU time, when the device can measure it (not measured yet: always `None`).
    pub gpu_ms: Option<f32>,
}

/// The limits a device needs for [`SceneRenderer`]: the adapter's own buffer sizes (a million
/// degree-3 splats hold 192 MB of SH); WebGPU's defaults otherwise (8 storage buffers per stage
/// is what the widest kernel binds). Request a device with these (the window passes them to
/// eframe).
pub fn device_limits(adapter_limits: &wgpu::Limits) -> wgpu::Limits {
    wgpu::Limits {
        max_storage_buffer_binding_size: adapter_limits.max_storage_buffer_binding_size,
        max_buffer_size: adapter_limits.max_buffer_size,
        ..wgpu::Limits::default()
    }
}

/// Per-frame view block shared by the raster pipelines; mirrors `struct View` in the shaders.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct ViewUniforms {
    clip_from_world: [[f32; 4]; 4],
    camera_from_world: [[f32; 4]; 4],
    camera_center: [f32; 4],
    /// `(width, height, 1/width, 1/height)`.
    viewport: [f32; 4],
    /// World up for hemisphere lighting (`w` unused).
    up: [f32; 4],
}

impl ViewUniforms {
    fn new(camera: &Camera) -> Self {
        let camera_from_world = camera.camera_from_world();
        let camera_from_world =
            Mat4::from_translation(camera_from_world.translation) * Mat4::from_mat3(camera_from_world.rotation);
        let clip_from_world = clip_from_camera(camera) * camera_from_world;
        let (w, h) = (camera.width() as f32, camera.height() as f32);
        Self {
            clip_from_world: clip_from_world.to_cols_array_2d(),
            camera_from_world: camera_from_world.to_cols_array_2d(),
            camera_center: camera.center().extend(1.0).to_array(),
            viewport: [w, h, 1.0 / w, 1.0 / h],
            up: Vec3::Y.extend(0.0).to_array(),
        }
    }
}

/// OpenCV camera frame to wgpu clip space with reverse-Z (see the module docs).
pub fn clip_from_camera(camera: &Camera) -> Mat4 {
    let k = camera.intrinsics;
    let (w, h) = (k.width as f32, k.height as f32);
    Mat4::from_cols(
        glam::Vec4::new(2.0 * k.fx / w, 0.0, 0.0, 0.0),
        glam::Vec4::new(0.0, -2.0 * k.fy / h, 0.0, 0.0),
        glam::Vec4::new(2.0 * k.cx / w - 1.0, 1.0 - 2.0 * k.cy / h, 0.0, 1.0),
        glam::Vec4::new(0.0, 0.0, NEAR, 0.0),
    )
}

/// The accumulation and depth textures at one size.
struct Targets {
    size: (u32, u32),
    accum: wgpu::TextureView,
    depth: wgpu::TextureView,
}

impl Targets {
    fn new(device: &wgpu::Device, size: (u32, u32)) -> Self {
        let texture = |label, format, usage| {
            device
                .create_texture(&wgpu::TextureDescriptor {
                    label: Some(label),
                    size: wgpu::Extent3d { width: size.0, height: size.1, depth_or_array_layers: 1 },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format,
                    usage,
                    view_formats: &[],
                })
                .create_view(&Default::default())
        };
        let attachment = wgpu::TextureUsages::RENDER_ATTACHMENT;
        Self {
            size,
            accum: texture(
                "viewer accumulation",
                accum_format(device),
                attachment | wgpu::TextureUsages::TEXTURE_BINDING,
            ),
            depth: texture("viewer depth", DEPTH_FORMAT, attachment),
        }
    }
}

/// Draws one [`Scene`]; holds its GPU buffers and pipelines.
pub struct SceneRenderer {
    ctx: GpuContext,
    view_buffer: wgpu::Buffer,
    view_bind_group: wgpu::BindGroup,
    splats: Option<splats::SplatRenderer>,
    mesh: Option<mesh::MeshRenderer>,
    lines: lines::LineRenderer,
    composite: composite::Composite,
    targets: Option<Targets>,
}

impl SceneRenderer {
    /// Uploads `scene` and builds the pipelines for targets of `color_format`.
    pub fn new(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        color_format: wgpu::TextureFormat,
        scene: &Scene,
    ) -> Result<Self, ViewerError> {
        let ctx = GpuContext::from_device(device, queue);
        ctx.checked("viewer pipelines", || Self::build(&ctx, color_format, scene))?
    }

    fn build(ctx: &GpuContext, color_format: wgpu::TextureFormat, scene: &Scene) -> Result<Self, ViewerError> {
        let device = &ctx.device;
        let view_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("viewer view"),
            size: size_of::<ViewUniforms>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let view_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("viewer view"),
            entries: &[wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::VERTEX_FRAGMENT,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            }],
        });
        let view_bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("viewer view"),
            layout: &view_layout,
            entries: &[wgpu::BindGroupEntry { binding: 0, resource: view_buffer.as_entire_binding() }],
        });
        let splats = match &scene.splats {
            Some(layer) if !layer.splats.is_empty() => Some(splats::SplatRenderer::new(ctx, &view_layout, layer)?),
            _ => None,
        };
        let mesh = match &scene.mesh {
            Some(layer) if layer.num_triangles() > 0 => Some(mesh::MeshRenderer::new(ctx, &view_layout, layer)),
            _ => None,
        };
        let lines = lines::LineRenderer::new(ctx, &view_layout, scene);
        let composite = composite::Composite::new(device, color_format);
        Ok(Self { ctx: ctx.clone(), view_buffer, view_bind_group, splats, mesh, lines, composite, targets: None })
    }

    /// Draws into `target` (a colour view of `size` in the renderer's `color_format`), with its
    /// own depth buffer. `camera` is rescaled to `size` when its image size differs. Records into
    /// `encoder`; submitting it is the caller's job. The view block is written through the queue,
    /// so submit one frame's encoder before rendering the next.
    #[allow(clippy::too_many_arguments)]
    pub fn render(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        encoder: &mut wgpu::CommandEncoder,
        target: &wgpu::TextureView,
        size: (u32, u32),
        camera: &Camera,
        options: &RenderOptions,
    ) -> Result<FrameStats, ViewerError> {
        let max = device.limits().max_texture_dimension_2d;
        if size.0 == 0 || size.1 == 0 || size.0 > max || size.1 > max {
            return Err(ViewerError::TargetSize { width: size.0, height: size.1, max });
        }
        let camera = if (camera.width(), camera.height()) == size { *camera } else { camera.resized(size.0, size.1) };
        if self.targets.as_ref().is_none_or(|t| t.size != size) {
            self.targets = Some(Targets::new(device, size));
        }
        let Some(targets) = &self.targets else { return Err(ViewerError::Render("no render targets".into())) };
        queue.write_buffer(&self.view_buffer, 0, bytemuck::bytes_of(&ViewUniforms::new(&camera)));

        let mut stats = FrameStats::default();
        let draw_splats = options.show_splats && self.splats.is_some();
        if draw_splats && let Some(splats) = &mut self.splats {
            splats.prepare(&self.ctx, encoder, &camera)?;
        }
        {
            let [r, g, b, _] = options.background.map(f64::from);
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("viewer scene"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &targets.accum,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color { r, g, b, a: 0.0 }),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                depth_stencil_attachment: Some(wgpu::RenderPassDepthStencilAttachment {
                    view: &targets.depth,
                    depth_ops: Some(wgpu::Operations { load: wgpu::LoadOp::Clear(0.0), store: wgpu::StoreOp::Store }),
                    stencil_ops: None,
                }),
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            pass.set_bind_group(0, &self.view_bind_group, &[]);
            if options.show_mesh
                && let Some(mesh) = &self.mesh
            {
                mesh.draw(&mut pass, options.matcap);
                stats.triangles = mesh.triangles();
                if options.wireframe {
                    mesh.draw_wireframe(&mut pass);
                }
            }
            self.lines.draw(&mut pass, options.show_cameras, options.show_points);
            if draw_splats && let Some(splats) = &self.splats {
                splats.draw(&mut pass);
                stats.splats_drawn = splats.len();
            }
        }
        self.composite.draw(device, encoder, &targets.accum, target, options.background[3]);
        Ok(stats)
    }
}

/// The WGSL `View` block (group 0) matching [`ViewUniforms`].
const VIEW_WGSL: &str = include_str!("shaders/view.wgsl");
/// WGSL `linear_to_srgb` / `srgb_to_linear`.
const SRGB_WGSL: &str = include_str!("shaders/srgb.wgsl");

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::camera::{Intrinsics, WorldFromCameraCv};

    #[test]
    fn clip_matrix_maps_pixels_to_ndc_with_y_flipped() {
        let camera = Camera {
            intrinsics: Intrinsics { fx: 300.0, fy: 310.0, cx: 190.0, cy: 140.0, width: 400, height: 300 },
            world_from_camera: WorldFromCameraCv { rotation: glam::Mat3::IDENTITY, translation: Vec3::ZERO },
        };
        let p = Vec3::new(0.3, -0.2, 2.0);
        let [u, v] = camera.intrinsics.project(p);
        let clip = clip_from_camera(&camera) * p.extend(1.0);
        let ndc = clip.truncate() / clip.w;
        assert!((ndc.x - (2.0 * u / 400.0 - 1.0)).abs() < 1e-6);
        assert!((ndc.y - (1.0 - 2.0 * v / 300.0)).abs() < 1e-6, "image row v grows down, NDC y up");
        assert!((ndc.z - NEAR / 2.0).abs() < 1e-7, "reverse-Z: near/z");
    }
}
