//! The GPU the app renders previews on, opened once, and the cache of the last job's scene
//! uploaded to it.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use kiln_protocol::ErrorClass;
use kiln_protocol::app::AppError;
use kiln_splats::gpu::GpuContext;
use kiln_viewer::headless::{HeadlessRenderer, open_device};
use kiln_viewer::scene::Scene;

use crate::error::CommandResult;

/// The device every preview renders on, opened on first use.
static DEVICE: OnceLock<Result<GpuContext, String>> = OnceLock::new();

/// The preview device (a hardware GPU if there is one, else a software adapter).
pub fn device() -> CommandResult<&'static GpuContext> {
    DEVICE
        .get_or_init(|| open_device().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| AppError::new(ErrorClass::Device, e.clone()))
}

/// The hardware GPU's name; `None` when the only adapter is a software one (or none).
pub fn adapter_name() -> Option<String> {
    let ctx = device().ok()?;
    (ctx.adapter_info.device_type != wgpu::DeviceType::Cpu).then(|| ctx.adapter_info.name.clone())
}

/// A job's scene, uploaded, and the times of the files it was loaded from.
pub struct Loaded {
    pub job_dir: PathBuf,
    pub stamp: Vec<Option<SystemTime>>,
    pub scene: Scene,
    pub renderer: HeadlessRenderer,
}

/// The cache of the last job previewed: orbiting re-renders without reloading.
pub type PreviewCache = Mutex<Option<Loaded>>;
