//! The offscreen colour texture the scene is rendered into each frame, registered with egui's
//! wgpu renderer so the central panel can show it as an image.
//!
//! The texture is `Rgba8UnormSrgb` (the renderer writes linear colour, the hardware encodes it);
//! egui samples it through an `Rgba8Unorm` view of the same memory, because egui's shader expects
//! user textures that hold gamma-encoded values and are not sRGB-aware.

use eframe::egui;
use eframe::egui_wgpu::RenderState;

/// Format the scene renderer draws into.
pub const RENDER_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8UnormSrgb;

/// The same bytes as egui reads them (no sRGB decode on sampling).
const SAMPLE_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;

/// A render target of one size and its egui texture id.
pub struct RenderTarget {
    texture: wgpu::Texture,
    render_view: wgpu::TextureView,
    pub texture_id: egui::TextureId,
    pub size: (u32, u32),
}

impl RenderTarget {
    /// A `width × height` target, registered with egui.
    pub fn new(render_state: &RenderState, size: (u32, u32)) -> Self {
        let (texture, render_view, sample_view) = create_texture(&render_state.device, size);
        let texture_id = render_state.renderer.write().register_native_texture(
            &render_state.device,
            &sample_view,
            wgpu::FilterMode::Linear,
        );
        Self { texture, render_view, texture_id, size }
    }

    /// Resizes in place when the viewport changed size; egui keeps the same texture id.
    pub fn resize(&mut self, render_state: &RenderState, size: (u32, u32)) {
        if size == self.size {
            return;
        }
        let (texture, render_view, sample_view) = create_texture(&render_state.device, size);
        render_state.renderer.write().update_egui_texture_from_wgpu_texture(
            &render_state.device,
            &sample_view,
            wgpu::FilterMode::Linear,
            self.texture_id,
        );
        self.texture.destroy();
        *self = Self { texture, render_view, texture_id: self.texture_id, size };
    }

    /// The view the scene renderer draws into.
    pub fn render_view(&self) -> &wgpu::TextureView {
        &self.render_view
    }
}

fn create_texture(
    device: &wgpu::Device,
    (width, height): (u32, u32),
) -> (wgpu::Texture, wgpu::TextureView, wgpu::TextureView) {
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("kiln view: scene"),
        size: wgpu::Extent3d { width: width.max(1), height: height.max(1), depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: RENDER_FORMAT,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::TEXTURE_BINDING,
        view_formats: &[SAMPLE_FORMAT],
    });
    let render_view = texture.create_view(&wgpu::TextureViewDescriptor::default());
    let sample_view =
        texture.create_view(&wgpu::TextureViewDescriptor { format: Some(SAMPLE_FORMAT), ..Default::default() });
    (texture, render_view, sample_view)
}
