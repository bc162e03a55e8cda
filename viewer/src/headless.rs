//! Rendering without a window: to an `RgbaImage` on any adapter (Mesa's lavapipe in CI), and the
//! orbit cameras that thumbnails and turntables use.
//!
//! The image holds display-encoded RGB exactly as the renderer's accumulation buffer does (the
//! trainer's colour space), and alpha = coverage + (1 − coverage) · background alpha, so a
//! transparent background gives a cut-out.

use glam::Vec3;
use kiln_core::camera::{Camera, Intrinsics, WorldFromCameraCv};
use kiln_splats::gpu::GpuContext;

use crate::ViewerError;
use crate::render::{FrameStats, RenderOptions, SceneRenderer};
use crate::scene::{Scene, Shown};

/// The format rendered to and read back: 8-bit, not sRGB, so the stored values are the
/// display-encoded ones.
const OUTPUT_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;
/// Vertical field of view of orbit cameras: a moderate telephoto that keeps perspective
/// distortion low on product shots.
pub const ORBIT_FOV_Y_DEG: f32 = 40.0;
/// Elevations are kept this far from the poles, where "up" is undefined.
const MAX_ELEVATION_DEG: f32 = 89.5;

/// A scene uploaded once and rendered from many cameras (turntables, test sweeps).
pub struct HeadlessRenderer {
    ctx: GpuContext,
    renderer: SceneRenderer,
}

impl HeadlessRenderer {
    /// Opens a device ([`open_device`]) and uploads `scene`.
    pub fn new(scene: &Scene) -> Result<Self, ViewerError> {
        Self::with_context(&open_device()?, scene)
    }

    /// Uploads `scene` to an existing device.
    pub fn with_context(ctx: &GpuContext, scene: &Scene) -> Result<Self, ViewerError> {
        let renderer = SceneRenderer::new(&ctx.device, &ctx.queue, OUTPUT_FORMAT, scene)?;
        Ok(Self { ctx: ctx.clone(), renderer })
    }

    /// The adapter in use, for logs and benchmark reports.
    pub fn adapter_name(&self) -> String {
        self.ctx.name()
    }

    /// Renders at the camera's own image size.
    pub fn render(&mut self, camera: &Camera, options: &RenderOptions) -> Result<image::RgbaImage, ViewerError> {
        let (width, height) = (camera.width(), camera.height());
        let texture = self.ctx.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("headless target"),
            size: wgpu::Extent3d { width, height, depth_or_array_layers: 1 },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: OUTPUT_FORMAT,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        self.draw(&mut encoder, &view, camera, options)?;
        let bytes_per_row = (width * 4).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
        let staging = self.ctx.zeroed("headless readback", u64::from(bytes_per_row) * u64::from(height));
        encoder.copy_texture_to_buffer(
            texture.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: &staging,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(bytes_per_row),
                    rows_per_image: None,
                },
            },
            wgpu::Extent3d { width, height, depth_or_array_layers: 1 },
        );
        self.ctx.queue.submit([encoder.finish()]);
        let words: Vec<u32> = self.ctx.read(&staging, (bytes_per_row / 4 * height) as usize)?;
        let bytes: &[u8] = bytemuck::cast_slice(&words);
        let mut pixels = Vec::with_capacity((width * height * 4) as usize);
        for row in bytes.chunks_exact(bytes_per_row as usize) {
            pixels.extend_from_slice(&row[..(width * 4) as usize]);
        }
        image::RgbaImage::from_raw(width, height, pixels)
            .ok_or_else(|| ViewerError::Render(format!("readback of {width}×{height} pixels came back short")))
    }

    /// Renders one frame into `target` (an [`OUTPUT_FORMAT`] view at the camera's size) and
    /// submits it, without reading back: what the frame-time benchmark times.
    pub fn render_frame(
        &mut self,
        camera: &Camera,
        options: &RenderOptions,
        target: &wgpu::TextureView,
    ) -> Result<FrameStats, ViewerError> {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        let stats = self.draw(&mut encoder, target, camera, options)?;
        self.ctx.queue.submit([encoder.finish()]);
        Ok(stats)
    }

    /// A colour target for [`HeadlessRenderer::render_frame`].
    pub fn target(&self, width: u32, height: u32) -> wgpu::TextureView {
        self.ctx
            .device
            .create_texture(&wgpu::TextureDescriptor {
                label: Some("headless target"),
                size: wgpu::Extent3d { width, height, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: OUTPUT_FORMAT,
                usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
                view_formats: &[],
            })
            .create_view(&Default::default())
    }

    /// Blocks until the device has finished all submitted work.
    pub fn wait(&self) -> Result<(), ViewerError> {
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| ViewerError::Render(format!("waiting for the GPU: {e}")))
    }

    fn draw(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        target: &wgpu::TextureView,
        camera: &Camera,
        options: &RenderOptions,
    ) -> Result<FrameStats, ViewerError> {
        let ctx = self.ctx.clone();
        ctx.checked("viewer frame", || {
            self.renderer.render(
                &ctx.device,
                &ctx.queue,
                encoder,
                target,
                (camera.width(), camera.height()),
                camera,
                options,
            )
        })?
    }
}

/// Writes `image` as an RGBA PNG at `path` (atomically), creating its folder.
pub fn write_png(path: &std::path::Path, image: &image::RgbaImage) -> Result<(), ViewerError> {
    use image::ImageEncoder;
    let io_error = |source| ViewerError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_error)?;
    }
    kiln_core::atomic_file::write_atomically(path, |w| {
        image::codecs::png::PngEncoder::new(w)
            .write_image(image.as_raw(), image.width(), image.height(), image::ExtendedColorType::Rgba8)
            .map_err(std::io::Error::other)
    })
    .map_err(io_error)
}

/// Opens a device for the viewer: a hardware GPU if there is one, else a software adapter such
/// as lavapipe, with the limits and optional features of [`crate::render::device_limits`] and
/// [`crate::render::device_features`].
pub fn open_device() -> Result<GpuContext, ViewerError> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 1,
        wgpu::DeviceType::Cpu => 0,
    };
    let Some(adapter) = adapters.into_iter().max_by_key(rank) else {
        return Err(kiln_splats::gpu::GpuError::NoAdapter {
            preference: kiln_splats::gpu::DevicePreference::AllowSoftware,
            seen: "none".into(),
        }
        .into());
    };
    let descriptor = wgpu::DeviceDescriptor {
        label: Some("kiln viewer"),
        required_features: crate::render::device_features(adapter.features()),
        required_limits: crate::render::device_limits(&adapter.limits()),
        ..Default::default()
    };
    let name = adapter.get_info().name;
    let (device, queue) = pollster::block_on(adapter.request_device(&descriptor))
        .map_err(|source| kiln_splats::gpu::GpuError::RequestDevice { adapter: name, source })?;
    device.on_uncaptured_error(std::sync::Arc::new(|error| tracing::error!("uncaptured wgpu error: {error}")));
    Ok(GpuContext::from_device(&device, &queue))
}

/// Renders `scene` once from `camera` at the camera's image size (opens a device each call; use
/// [`HeadlessRenderer`] for many frames).
pub fn render_to_image(
    scene: &Scene,
    camera: &Camera,
    options: &RenderOptions,
) -> Result<image::RgbaImage, ViewerError> {
    HeadlessRenderer::new(scene)?.render(camera, options)
}

/// A pinhole camera of `width × height` with [`ORBIT_FOV_Y_DEG`], looking at the centre of
/// `bounds` from `distance` scene units away, at `azimuth_deg` around +Y (0° looks from +Z
/// towards −Z, 90° from +X) and `elevation_deg` above the XZ plane. The world is taken as +Y up
/// (Kiln's export frame): image up is world +Y projected.
pub fn orbit_camera(
    bounds: ([f32; 3], [f32; 3]),
    azimuth_deg: f32,
    elevation_deg: f32,
    distance: f32,
    width: u32,
    height: u32,
) -> Camera {
    let centre = 0.5 * (Vec3::from(bounds.0) + Vec3::from(bounds.1));
    let (az, el) = (azimuth_deg.to_radians(), elevation_deg.clamp(-MAX_ELEVATION_DEG, MAX_ELEVATION_DEG).to_radians());
    let offset = Vec3::new(el.cos() * az.sin(), el.sin(), el.cos() * az.cos());
    let position = centre + distance * offset;
    let focal = 0.5 * height as f32 / (0.5 * ORBIT_FOV_Y_DEG.to_radians()).tan();
    Camera {
        intrinsics: Intrinsics { fx: focal, fy: focal, cx: 0.5 * width as f32, cy: 0.5 * height as f32, width, height },
        world_from_camera: WorldFromCameraCv::look_at(position, centre, Vec3::Y),
    }
}

/// The orbit camera of `kiln render --orbit AZ,EL,DIST` and the app's preview: around what
/// `shown` frames in `scene`, at `distance_scale` times the distance that fits it in the frame.
pub fn framed_orbit(
    scene: &Scene,
    shown: Shown,
    azimuth_deg: f32,
    elevation_deg: f32,
    distance_scale: f32,
    width: u32,
    height: u32,
) -> Camera {
    let bounds = scene.framing_bounds(shown);
    let distance = distance_scale * fit_distance(bounds, width, height);
    orbit_camera(bounds, azimuth_deg, elevation_deg, distance, width, height)
}

/// Distance at which an orbit camera of `width × height` sees the whole bounding sphere of
/// `bounds` with a small margin.
pub fn fit_distance(bounds: ([f32; 3], [f32; 3]), width: u32, height: u32) -> f32 {
    let radius = 0.5 * (Vec3::from(bounds.1) - Vec3::from(bounds.0)).length().max(1e-6);
    let half_fov_y = 0.5 * ORBIT_FOV_Y_DEG.to_radians();
    let half_fov = half_fov_y.min((half_fov_y.tan() * width as f32 / height.max(1) as f32).atan());
    1.1 * radius / half_fov.sin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orbit_camera_looks_at_the_centre_with_world_up_on_top() {
        let bounds = ([-1.0, 0.0, -1.0], [1.0, 2.0, 1.0]);
        for (az, el) in [(0.0, 0.0), (90.0, 30.0), (200.0, -40.0)] {
            let camera = orbit_camera(bounds, az, el, 5.0, 64, 48);
            let centre = Vec3::new(0.0, 1.0, 0.0);
            assert!((camera.center() - centre).length() - 5.0 < 1e-4);
            let in_camera = camera.camera_from_world().transform_point(centre);
            let [u, v] = camera.intrinsics.project(in_camera);
            assert!((u - 32.0).abs() < 1e-3 && (v - 24.0).abs() < 1e-3, "centre at ({u}, {v})");
            // A point above the centre is higher in the image (smaller v).
            let above = camera.camera_from_world().transform_point(centre + Vec3::Y * 0.1);
            assert!(camera.intrinsics.project(above)[1] < 24.0);
            assert!((camera.world_from_camera.rotation.determinant() - 1.0).abs() < 1e-5);
        }
        // Azimuth 90° looks from +X.
        let camera = orbit_camera(bounds, 90.0, 0.0, 5.0, 64, 48);
        assert!(camera.center().x > 4.9);
    }
}
