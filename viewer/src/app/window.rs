//! [`ViewerApp`], the eframe app: side panel (layers, background, stats, input cameras), the
//! viewport (render, mouse and keyboard controls) and the in-app screenshot used by tests.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use eframe::egui;
use eframe::egui_wgpu::RenderState;
use kiln_core::camera::Camera;

use super::orbit::OrbitCamera;
use super::photo::{PhotoLoader, PhotoState};
use super::target::{RENDER_FORMAT, RenderTarget};
use super::{WindowError, WindowOptions, set_outcome};
use crate::render::{FrameStats, RenderOptions, SceneRenderer};
use crate::scene::{Scene, Shown};

/// Width of the side panel on first open, in points.
const SIDE_PANEL_WIDTH: f32 = 270.0;

/// Frames rendered before the in-app screenshot when only `--screenshot` is given: enough for the
/// window to be mapped and sized and the scene drawn at its final size.
const DEFAULT_SCREENSHOT_FRAMES: u32 = 10;

/// Weight of the newest frame in the smoothed frame time: about a ten-frame average.
const FRAME_TIME_SMOOTHING: f32 = 0.1;

/// Opacity of the photo blended over the render when first shown: both stay visible.
const DEFAULT_PHOTO_OPACITY: f32 = 0.5;

/// Where the view comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ViewMode {
    Orbit,
    /// Through input camera N, its exact intrinsics and pose.
    Input(usize),
}

/// How the photo of a snapped camera is shown.
#[derive(Clone, Copy, Debug, PartialEq)]
enum PhotoMode {
    Hidden,
    Beside,
    Blended,
}

/// Everything that decides the rendered pixels; a frame equal to the last one is not redrawn.
#[derive(Clone, Debug, PartialEq)]
struct FrameKey {
    camera: Camera,
    options: RenderOptions,
}

/// The in-app screenshot and exit (`--screenshot`, `--exit-after-frames`).
struct Capture {
    after_frames: u32,
    path: Option<PathBuf>,
    requested: bool,
    receiver: Option<mpsc::Receiver<Arc<egui::ColorImage>>>,
}

pub struct ViewerApp {
    scene: Scene,
    renderer: SceneRenderer,
    render_state: RenderState,
    target: Option<RenderTarget>,
    last_frame: Option<FrameKey>,
    orbit: OrbitCamera,
    mode: ViewMode,
    /// The camera the "input cameras" controls point at (kept when returning to orbit).
    selected_camera: usize,
    options: RenderOptions,
    background: egui::Color32,
    photo_mode: PhotoMode,
    photo_opacity: f32,
    photos: PhotoLoader,
    stats: Option<FrameStats>,
    render_error: Option<String>,
    continuous: bool,
    frame_time_s: Option<f32>,
    last_frame_at: Option<Instant>,
    frames: u32,
    capture: Option<Capture>,
    outcome: Arc<Mutex<Option<WindowError>>>,
}

impl ViewerApp {
    pub fn new(
        creation: &eframe::CreationContext<'_>,
        scene: Scene,
        options: &WindowOptions,
        outcome: Arc<Mutex<Option<WindowError>>>,
    ) -> Result<Self, WindowError> {
        let render_state = creation
            .wgpu_render_state
            .clone()
            .ok_or_else(|| WindowError::Window("eframe started without its wgpu renderer".into()))?;
        let adapter = render_state.adapter.get_info();
        tracing::info!(adapter = %adapter.name, backend = ?adapter.backend, "window GPU");
        let renderer = SceneRenderer::new(&render_state.device, &render_state.queue, RENDER_FORMAT, &scene)
            .map_err(|source| WindowError::Renderer { adapter: adapter.name.clone(), source })?;
        let [r, g, b] = options.background;
        let background = egui::Color32::from_rgb(r, g, b);
        let render_options = RenderOptions { background: background_rgba(background), ..RenderOptions::default() };
        let cameras = scene.cameras.len();
        let selected_camera = options.camera.unwrap_or(0).min(cameras.saturating_sub(1));
        let mode = match options.camera {
            Some(_) if cameras > 0 => ViewMode::Input(selected_camera),
            _ => ViewMode::Orbit,
        };
        let capture = (options.exit_after_frames.is_some() || options.screenshot.is_some()).then(|| Capture {
            after_frames: options.exit_after_frames.unwrap_or(DEFAULT_SCREENSHOT_FRAMES),
            path: options.screenshot.clone(),
            requested: false,
            receiver: None,
        });
        Ok(Self {
            orbit: OrbitCamera::reset(scene.framing_bounds(Shown::ALL)),
            scene,
            renderer,
            render_state,
            target: None,
            last_frame: None,
            mode,
            selected_camera,
            options: render_options,
            background,
            photo_mode: if mode == ViewMode::Orbit { PhotoMode::Hidden } else { PhotoMode::Blended },
            photo_opacity: DEFAULT_PHOTO_OPACITY,
            photos: PhotoLoader::new(),
            stats: None,
            render_error: None,
            continuous: false,
            frame_time_s: None,
            last_frame_at: None,
            frames: 0,
            capture,
            outcome,
        })
    }

    fn snap_to(&mut self, index: usize) {
        if index < self.scene.cameras.len() {
            self.selected_camera = index;
            self.mode = ViewMode::Input(index);
            if self.photo_mode == PhotoMode::Hidden {
                self.photo_mode = PhotoMode::Blended;
            }
        }
    }

    /// What fitting the view frames: the layers the options show.
    fn framing(&self) -> ([f32; 3], [f32; 3]) {
        let o = &self.options;
        self.scene.framing_bounds(Shown {
            splats: o.show_splats,
            mesh: o.show_mesh,
            cameras: o.show_cameras,
            points: o.show_points,
        })
    }

    /// Leaves a snapped camera for the orbit that continues from it.
    fn take_control(&mut self) {
        if let ViewMode::Input(index) = self.mode {
            let camera = self.scene.cameras[index].camera;
            self.orbit = OrbitCamera::from_camera(&camera, self.framing());
            self.mode = ViewMode::Orbit;
        }
    }

    fn snapped_camera(&self) -> Option<&crate::scene::SceneCamera> {
        match self.mode {
            ViewMode::Input(index) => self.scene.cameras.get(index),
            ViewMode::Orbit => None,
        }
    }

    fn measure_frame_time(&mut self) {
        let now = Instant::now();
        if let Some(previous) = self.last_frame_at {
            let dt = (now - previous).as_secs_f32();
            self.frame_time_s = Some(match self.frame_time_s {
                Some(smoothed) => smoothed + FRAME_TIME_SMOOTHING * (dt - smoothed),
                None => dt,
            });
        }
        self.last_frame_at = Some(now);
    }

    fn handle_keys(&mut self, ctx: &egui::Context, aspect: f32) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let (fit, reset, next, previous, escape) = ctx.input(|i| {
            (
                i.key_pressed(egui::Key::F),
                i.key_pressed(egui::Key::R),
                i.key_pressed(egui::Key::N) || i.key_pressed(egui::Key::PageDown),
                i.key_pressed(egui::Key::P) || i.key_pressed(egui::Key::PageUp),
                i.key_pressed(egui::Key::Escape),
            )
        });
        if fit {
            self.take_control();
            self.orbit.fit(self.framing(), aspect);
        }
        if reset {
            self.mode = ViewMode::Orbit;
            self.orbit = OrbitCamera::reset(self.framing());
            self.orbit.fit(self.framing(), aspect);
        }
        let cameras = self.scene.cameras.len();
        if cameras > 0 && next {
            self.snap_to((self.selected_camera + 1) % cameras);
        }
        if cameras > 0 && previous {
            self.snap_to((self.selected_camera + cameras - 1) % cameras);
        }
        if escape {
            self.take_control();
        }
    }

    /// Mouse controls over the viewport: left drag orbits, right or middle drag pans, the wheel
    /// (or a pinch) zooms. Any of them leaves a snapped camera.
    fn handle_mouse(&mut self, ui: &egui::Ui, response: &egui::Response) {
        let delta = response.drag_delta();
        let orbiting = response.dragged_by(egui::PointerButton::Primary);
        let panning =
            response.dragged_by(egui::PointerButton::Secondary) || response.dragged_by(egui::PointerButton::Middle);
        let (scroll, pinch) =
            if response.hovered() { ui.input(|i| (i.smooth_scroll_delta().y, i.zoom_delta())) } else { (0.0, 1.0) };
        let moved = (orbiting || panning) && delta != egui::Vec2::ZERO;
        if !moved && scroll == 0.0 && pinch == 1.0 {
            return;
        }
        self.take_control();
        if orbiting {
            self.orbit.orbit(delta.x, delta.y);
        } else if panning {
            self.orbit.pan(delta.x, delta.y, response.rect.height());
        }
        self.orbit.zoom(scroll);
        self.orbit.zoom_by(pinch);
    }

    /// The engine camera for a viewport of `size` pixels.
    fn view_camera(&self, size: (u32, u32)) -> Camera {
        match self.snapped_camera() {
            Some(input) => input.camera.resized(size.0, size.1),
            None => self.orbit.camera(size.0, size.1),
        }
    }

    /// Renders the scene into the offscreen target at `size` pixels when anything changed.
    fn render(&mut self, size: (u32, u32)) {
        let camera = self.view_camera(size);
        let key = FrameKey { camera, options: self.options };
        let target = match &mut self.target {
            Some(target) => {
                target.resize(&self.render_state, size);
                target
            }
            None => self.target.insert(RenderTarget::new(&self.render_state, size)),
        };
        if !self.continuous && self.last_frame.as_ref() == Some(&key) {
            return;
        }
        let device = &self.render_state.device;
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("kiln view") });
        match self.renderer.render(
            device,
            &self.render_state.queue,
            &mut encoder,
            target.render_view(),
            size,
            &camera,
            &self.options,
        ) {
            Ok(stats) => {
                self.render_state.queue.submit([encoder.finish()]);
                self.stats = Some(stats);
                self.render_error = None;
                self.last_frame = Some(key);
            }
            Err(error) => {
                tracing::error!("render failed: {error}");
                self.render_error = Some(error.to_string());
                self.last_frame = None;
            }
        }
    }

    fn side_panel(&mut self, ui: &mut egui::Ui, aspect: f32) {
        ui.heading("Kiln");
        for path in &self.scene.loaded {
            ui.label(egui::RichText::new(path.display().to_string()).small());
        }
        ui.separator();
        self.layer_controls(ui);
        ui.separator();
        self.view_controls(ui, aspect);
        ui.separator();
        self.camera_controls(ui);
        ui.separator();
        self.stats_panel(ui);
    }

    fn layer_controls(&mut self, ui: &mut egui::Ui) {
        ui.label(egui::RichText::new("Layers").strong());
        let options = &mut self.options;
        ui.add_enabled(self.scene.splats.is_some(), egui::Checkbox::new(&mut options.show_splats, "Splats"));
        ui.add_enabled(self.scene.mesh.is_some(), egui::Checkbox::new(&mut options.show_mesh, "Mesh"));
        ui.indent("mesh style", |ui| {
            ui.add_enabled(self.scene.mesh.is_some(), egui::Checkbox::new(&mut options.wireframe, "Wireframe"));
            ui.add_enabled(self.scene.mesh.is_some(), egui::Checkbox::new(&mut options.matcap, "Matcap (shape only)"));
        });
        ui.add_enabled(!self.scene.cameras.is_empty(), egui::Checkbox::new(&mut options.show_cameras, "Cameras"));
        ui.add_enabled(!self.scene.points.is_empty(), egui::Checkbox::new(&mut options.show_points, "Sparse points"));
        ui.horizontal(|ui| {
            ui.label("Background");
            if ui.color_edit_button_srgba(&mut self.background).changed() {
                self.options.background = background_rgba(self.background);
            }
        });
    }

    fn view_controls(&mut self, ui: &mut egui::Ui, aspect: f32) {
        ui.label(egui::RichText::new("View").strong());
        ui.horizontal(|ui| {
            if ui.button("Fit (F)").clicked() {
                self.take_control();
                self.orbit.fit(self.scene.bounds(), aspect);
            }
            if ui.button("Reset (R)").clicked() {
                self.mode = ViewMode::Orbit;
                self.orbit = OrbitCamera::reset(self.scene.bounds());
                self.orbit.fit(self.scene.bounds(), aspect);
            }
        });
        ui.label(egui::RichText::new("Left drag: orbit · right/middle drag: pan · wheel: zoom").small());
    }

    fn camera_controls(&mut self, ui: &mut egui::Ui) {
        let count = self.scene.cameras.len();
        ui.label(egui::RichText::new(format!("Input cameras ({count})")).strong());
        if count == 0 {
            ui.label("This scene has no input cameras.");
            return;
        }
        let mut index = self.selected_camera;
        ui.horizontal(|ui| {
            if ui.button("◀").on_hover_text("Previous (P)").clicked() {
                index = (index + count - 1) % count;
            }
            ui.add(egui::Slider::new(&mut index, 0..=count - 1).text("N"));
            if ui.button("▶").on_hover_text("Next (N)").clicked() {
                index = (index + 1) % count;
            }
        });
        let changed = index != self.selected_camera;
        self.selected_camera = index;
        let snapped = self.mode == ViewMode::Input(index);
        ui.horizontal(|ui| {
            if ui.add_enabled(!snapped, egui::Button::new("Snap to camera")).clicked()
                || (changed && self.mode != ViewMode::Orbit)
            {
                self.snap_to(index);
            }
            if ui.add_enabled(self.mode != ViewMode::Orbit, egui::Button::new("Free view (Esc)")).clicked() {
                self.take_control();
            }
        });
        let camera = &self.scene.cameras[index];
        let k = camera.camera.intrinsics;
        ui.label(egui::RichText::new(format!("{} · {}×{} · f {:.1} px", camera.name, k.width, k.height, k.fx)).small());
        ui.horizontal(|ui| {
            ui.label("Photo");
            ui.selectable_value(&mut self.photo_mode, PhotoMode::Hidden, "off");
            ui.selectable_value(&mut self.photo_mode, PhotoMode::Blended, "over");
            ui.selectable_value(&mut self.photo_mode, PhotoMode::Beside, "beside");
        });
        ui.add_enabled(
            self.photo_mode == PhotoMode::Blended,
            egui::Slider::new(&mut self.photo_opacity, 0.0..=1.0).text("opacity"),
        );
        if camera.image.is_none() {
            ui.label("No photo was found for this camera.");
        }
    }

    fn stats_panel(&mut self, ui: &mut egui::Ui) {
        ui.label(egui::RichText::new("Stats").strong());
        let splats = self.scene.splats.as_ref().map_or(0, |layer| layer.splats.len());
        let triangles = self.scene.mesh.as_ref().map_or(0, |mesh| mesh.num_triangles());
        egui::Grid::new("stats").num_columns(2).show(ui, |ui| {
            ui.label("Splats");
            ui.label(count_text(splats));
            ui.end_row();
            ui.label("Triangles");
            ui.label(count_text(triangles));
            ui.end_row();
            if let Some(stats) = &self.stats {
                ui.label("Drawn");
                ui.label(format!(
                    "{} splats, {} triangles",
                    count_text(stats.splats_drawn),
                    count_text(stats.triangles)
                ));
                ui.end_row();
                if let Some(gpu_ms) = stats.gpu_ms {
                    ui.label("GPU time");
                    ui.label(format!("{gpu_ms:.2} ms"));
                    ui.end_row();
                }
            }
            if let Some(size) = self.target.as_ref().map(|t| t.size) {
                ui.label("Viewport");
                ui.label(format!("{}×{} px", size.0, size.1));
                ui.end_row();
            }
            if let Some(frame_time) = self.frame_time_s.filter(|_| self.continuous) {
                ui.label("Frame time");
                ui.label(format!("{:.1} ms ({:.0} fps)", frame_time * 1e3, 1.0 / frame_time.max(f32::EPSILON)));
                ui.end_row();
            }
        });
        ui.checkbox(&mut self.continuous, "Redraw continuously (measures fps)");
        if let Some(error) = &self.render_error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
    }

    /// The central viewport: letterboxed to the photo's aspect when snapped, split in two when the
    /// photo is shown beside the render.
    fn viewport(&mut self, ui: &mut egui::Ui) {
        let available = ui.available_rect_before_wrap();
        let response = ui.allocate_rect(available, egui::Sense::click_and_drag());
        let beside = self.snapped_camera().is_some() && self.photo_mode == PhotoMode::Beside;
        let (render_area, photo_area) = if beside {
            let (left, right) = available.split_left_right_at_fraction(0.5);
            (left, Some(right))
        } else {
            (available, None)
        };
        let render_rect = match self.snapped_camera() {
            Some(input) => letterbox(render_area, input.camera.width() as f32 / input.camera.height().max(1) as f32),
            None => render_area,
        };
        self.handle_mouse(ui, &response);
        let pixels_per_point = ui.ctx().pixels_per_point();
        let size = (
            ((render_rect.width() * pixels_per_point).round() as u32).max(1),
            ((render_rect.height() * pixels_per_point).round() as u32).max(1),
        );
        self.render(size);
        let painter = ui.painter_at(available);
        painter.rect_filled(available, 0.0, self.background);
        let full_uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
        if let Some(target) = &self.target {
            painter.image(target.texture_id, render_rect, full_uv, egui::Color32::WHITE);
        }
        self.paint_photo(ui.ctx(), &painter, render_rect, photo_area, full_uv);
    }

    fn paint_photo(
        &mut self,
        ctx: &egui::Context,
        painter: &egui::Painter,
        render_rect: egui::Rect,
        photo_area: Option<egui::Rect>,
        uv: egui::Rect,
    ) {
        let wanted = match (self.snapped_camera(), self.photo_mode) {
            (Some(input), mode) if mode != PhotoMode::Hidden => input.image.clone(),
            _ => None,
        };
        self.photos.request(ctx, self.selected_camera, wanted.as_deref());
        let (rect, tint) = match photo_area {
            Some(area) => (letterbox(area, render_rect.aspect_ratio()), egui::Color32::WHITE),
            None => (render_rect, egui::Color32::WHITE.gamma_multiply(self.photo_opacity)),
        };
        match self.photos.poll(ctx) {
            PhotoState::Ready(texture) if wanted.is_some() => {
                painter.image(texture.id(), rect, uv, tint);
            }
            PhotoState::Loading => {
                painter.text(
                    rect.center(),
                    egui::Align2::CENTER_CENTER,
                    "loading photo…",
                    egui::FontId::proportional(16.0),
                    egui::Color32::GRAY,
                );
            }
            PhotoState::Failed(problem) => {
                painter.text(
                    rect.center(),
                    egui::Align2::CENTER_CENTER,
                    problem,
                    egui::FontId::proportional(14.0),
                    egui::Color32::LIGHT_RED,
                );
            }
            PhotoState::Ready(_) | PhotoState::None => {}
        }
    }

    /// Counts frames for `--exit-after-frames`, asks egui for the screenshot, saves it and closes.
    fn drive_capture(&mut self, ctx: &egui::Context) {
        let Some(capture) = &mut self.capture else { return };
        ctx.request_repaint();
        if self.frames < capture.after_frames {
            return;
        }
        let Some(path) = capture.path.clone() else {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        };
        if !capture.requested {
            let (sender, receiver) = mpsc::channel();
            let repaint = ctx.clone();
            ctx.request_screenshot(move |image| {
                // The receiver lives as long as the app; a send can fail only while closing.
                let _ = sender.send(image);
                repaint.request_repaint();
            });
            capture.requested = true;
            capture.receiver = Some(receiver);
            return;
        }
        let Some(image) = capture.receiver.as_ref().and_then(|r| r.try_recv().ok()) else { return };
        if let Err(error) = save_png(&path, &image) {
            set_outcome(&self.outcome, error);
        }
        self.capture = None;
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }
}

impl eframe::App for ViewerApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frames = self.frames.saturating_add(1);
        self.measure_frame_time();
        let ctx = ui.ctx().clone();
        let aspect = self.target.as_ref().map_or(1.0, |t| t.size.0 as f32 / t.size.1.max(1) as f32);
        self.handle_keys(&ctx, aspect);
        egui::Panel::left("kiln side panel").default_size(SIDE_PANEL_WIDTH).show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| self.side_panel(ui, aspect));
        });
        egui::CentralPanel::no_frame().show(ui, |ui| self.viewport(ui));
        if self.continuous {
            ctx.request_repaint();
        }
        self.drive_capture(&ctx);
    }
}

/// The largest rectangle of `aspect` (width / height) centred in `area`.
fn letterbox(area: egui::Rect, aspect: f32) -> egui::Rect {
    if !(aspect.is_finite() && aspect > 0.0) {
        return area;
    }
    let size = if area.width() / area.height().max(f32::EPSILON) > aspect {
        egui::vec2(area.height() * aspect, area.height())
    } else {
        egui::vec2(area.width(), area.width() / aspect)
    };
    egui::Rect::from_center_size(area.center(), size)
}

/// The background as the renderer takes it: display-encoded (sRGB) RGB in 0–1, opaque.
fn background_rgba(color: egui::Color32) -> [f32; 4] {
    let [r, g, b, _] = color.to_array();
    [f32::from(r) / 255.0, f32::from(g) / 255.0, f32::from(b) / 255.0, 1.0]
}

/// `1234567` as `1,234,567`.
fn count_text(count: usize) -> String {
    let digits = count.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// Writes an egui screenshot as PNG, atomically.
fn save_png(path: &std::path::Path, image: &egui::ColorImage) -> Result<(), WindowError> {
    let failed = |problem: String| WindowError::Screenshot { path: path.to_path_buf(), problem };
    let [width, height] = image.size;
    let rgba: Vec<u8> = image.pixels.iter().flat_map(|pixel| pixel.to_srgba_unmultiplied()).collect();
    let buffer = image::RgbaImage::from_raw(width as u32, height as u32, rgba)
        .ok_or_else(|| failed("screenshot size does not match its pixels".into()))?;
    let mut png = Vec::new();
    image::DynamicImage::ImageRgba8(buffer)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|error| failed(error.to_string()))?;
    kiln_core::atomic_file::write_atomically(path, |file| std::io::Write::write_all(file, &png))
        .map_err(|error| failed(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_keeps_aspect_and_fits() {
        let area = egui::Rect::from_min_size(egui::pos2(10.0, 20.0), egui::vec2(800.0, 400.0));
        for aspect in [4.0 / 3.0, 0.5625, 3.0] {
            let rect = letterbox(area, aspect);
            assert!((rect.aspect_ratio() - aspect).abs() < 1e-4);
            assert!(area.expand(1e-3).contains_rect(rect));
            assert!((rect.width() - area.width()).abs() < 1e-3 || (rect.height() - area.height()).abs() < 1e-3);
            assert!((rect.center() - area.center()).length() < 1e-3);
        }
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count_text(0), "0");
        assert_eq!(count_text(999), "999");
        assert_eq!(count_text(1000), "1,000");
        assert_eq!(count_text(1234567), "1,234,567");
    }
}
