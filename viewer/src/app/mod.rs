//! The eframe window behind `kiln view`: the scene rendered by [`crate::render::SceneRenderer`]
//! into an offscreen texture on eframe's own wgpu device, shown in egui's central panel, with
//! orbit / pan / zoom controls, layer toggles, stats and "snap to input camera" (the render from
//! the photo's exact camera, beside the photo or blended over it).
//!
//! [`run`] loads the scene before any window opens, so a file that cannot be read is reported
//! without a window; a machine without a display or without a GPU adapter that can present to a
//! window gets an error saying what to install.

mod orbit;
mod photo;
mod target;
mod window;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use eframe::egui;
use eframe::egui_wgpu;

use crate::ViewerError;
use crate::scene::Scene;

pub use orbit::OrbitCamera;

/// Window size on first open, in points: fits a 1366×768 laptop screen with the side panel.
const INITIAL_WINDOW_SIZE: [f32; 2] = [1280.0, 760.0];

/// How `kiln view` opens.
#[derive(Clone, Debug)]
pub struct WindowOptions {
    /// The file or job folder to show (anything [`Scene::load`] reads).
    pub path: PathBuf,
    /// Background colour, sRGB.
    pub background: [u8; 3],
    /// Opens looking through input camera N instead of the orbit view.
    pub camera: Option<usize>,
    /// After this many frames: save a screenshot (when `screenshot` is set) and close the window.
    pub exit_after_frames: Option<u32>,
    /// PNG path for the in-app screenshot taken at `exit_after_frames` (default 10 frames).
    pub screenshot: Option<PathBuf>,
}

/// Why the window could not run.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error(transparent)]
    Load(ViewerError),
    #[error(
        "cannot open a window: no display ({0}); a desktop session (X11, or Wayland with XWayland) is \
         needed, or a render without a window"
    )]
    NoDisplay(String),
    #[error(
        "no GPU adapter can draw into a window ({0}). Install a Vulkan driver: your GPU vendor's, \
         or Mesa's (`sudo apt install mesa-vulkan-drivers` on Debian/Ubuntu, which includes the \
         lavapipe CPU driver); `WGPU_BACKEND=vulkan` picks Vulkan explicitly"
    )]
    NoAdapter(String),
    #[error("cannot set up the scene renderer on {adapter}: {source}")]
    Renderer { adapter: String, source: ViewerError },
    #[error("cannot save the screenshot: {problem}: {}", path.display())]
    Screenshot { path: PathBuf, problem: String },
    #[error("the window failed: {0}")]
    Window(String),
}

impl WindowError {
    /// Whether the error is about the file or folder the user gave, not the machine.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Self::Load(_))
    }
}

/// Opens the window on `options.path` and returns when the user closes it.
pub fn run(options: WindowOptions) -> Result<(), WindowError> {
    let scene = Scene::load(&options.path).map_err(WindowError::Load)?;
    tracing::info!(path = %options.path.display(), cameras = scene.cameras.len(), "scene loaded");
    let title = format!("Kiln — {}", options.path.display());
    // The app reports its own failures here: eframe boxes them into an untyped error.
    let outcome: Arc<Mutex<Option<WindowError>>> = Arc::new(Mutex::new(None));
    let app_outcome = Arc::clone(&outcome);
    let result = eframe::run_native(
        "kiln-view",
        native_options(&title),
        Box::new(move |creation| match window::ViewerApp::new(creation, scene, &options, Arc::clone(&app_outcome)) {
            Ok(app) => Ok(Box::new(app) as Box<dyn eframe::App>),
            Err(error) => {
                let message = error.to_string();
                set_outcome(&app_outcome, error);
                Err(message.into())
            }
        }),
    );
    if let Some(error) = take_outcome(&outcome) {
        return Err(error);
    }
    result.map_err(classify)
}

fn native_options(title: &str) -> eframe::NativeOptions {
    let mut wgpu_options = egui_wgpu::WgpuConfiguration::default();
    if let egui_wgpu::WgpuSetup::CreateNew(create) = &mut wgpu_options.wgpu_setup {
        create.device_descriptor = Arc::new(device_descriptor);
    }
    eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(title)
            .with_app_id("kiln-view")
            .with_inner_size(INITIAL_WINDOW_SIZE),
        wgpu_options,
        persist_window: false,
        ..Default::default()
    }
}

/// The device eframe opens: the limits the scene renderer needs (splat buffers as large as the
/// adapter allows) and the optional features the GPU kernels use when present.
fn device_descriptor(adapter: &wgpu::Adapter) -> wgpu::DeviceDescriptor<'static> {
    let optional = wgpu::Features::SHADER_FLOAT32_ATOMIC | wgpu::Features::SUBGROUP;
    wgpu::DeviceDescriptor {
        label: Some("kiln view"),
        required_features: adapter.features() & optional,
        required_limits: crate::render::device_limits(&adapter.limits()),
        ..Default::default()
    }
}

fn set_outcome(outcome: &Mutex<Option<WindowError>>, error: WindowError) {
    if let Ok(mut slot) = outcome.lock() {
        slot.get_or_insert(error);
    }
}

fn take_outcome(outcome: &Mutex<Option<WindowError>>) -> Option<WindowError> {
    outcome.lock().ok().and_then(|mut slot| slot.take())
}

/// Turns eframe's error into one that says what the user can do.
fn classify(error: eframe::Error) -> WindowError {
    match error {
        eframe::Error::Wgpu(error) => WindowError::NoAdapter(error.to_string()),
        eframe::Error::WinitEventLoop(error) => WindowError::NoDisplay(error.to_string()),
        other => WindowError::Window(other.to_string()),
    }
}
