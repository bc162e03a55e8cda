//! The 3D preview: frames of a job rendered by `kiln-viewer`'s headless renderer — the code of
//! `kiln render` and `kiln view`, splats, mesh (textured, wireframe, matcap) and input cameras —
//! and sent to the webview as PNG.
//!
//! On Linux/X11 the preview is not a wgpu surface inside the window: WebKitGTK draws the whole
//! window, so a native surface could only sit above or below the web view as a separate GTK
//! child without the page's layout, focus or screenshots (a WebDriver screenshot would not see
//! it). Frames rendered off-screen on the same device and shown in an `<img>` are part of the
//! page, work the same on every platform and driver (lavapipe in CI), and cost one readback and
//! a PNG encode per frame: interactive on a GPU for preview sizes.

use std::path::Path;
use std::time::SystemTime;

use kiln_core::camera::Camera;
use kiln_dataset::{Dataset, OpenOptions};
use kiln_job::JobLayout;
use kiln_protocol::app::{PreviewMode, PreviewView};
use kiln_viewer::headless::{HeadlessRenderer, framed_orbit};
use kiln_viewer::render::RenderOptions;
use kiln_viewer::scene::{Scene, Shown};
use tauri::ipc::Response;

use crate::error::lock;
use crate::error::{CommandResult, bad_input, internal};
use crate::gpu::{Loaded, PreviewCache, device};
use crate::state::AppState;

/// The background of preview frames: `kiln render`'s default, so the two compare pixel for pixel.
pub const BACKGROUND: [f32; 4] = [0.12, 0.12, 0.14, 1.0];
/// Largest preview side: a 4K screen's width; beyond it a frame costs more than it shows.
const MAX_PREVIEW_SIDE: u32 = 4096;

/// Modification times of the files a job's scene is made of: a change reloads it.
fn stamp(job_dir: &Path) -> Vec<Option<SystemTime>> {
    let layout = JobLayout::new(job_dir);
    [layout.splats(), layout.mesh_json(), layout.transforms(), layout.report()]
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// A PNG of job `job_id` seen as `view` asks.
#[tauri::command]
pub async fn preview_frame(
    state: tauri::State<'_, AppState>,
    job_id: String,
    view: PreviewView,
) -> CommandResult<Response> {
    let (job_dir, _) = crate::jobs::job_dir(&state, &job_id)?;
    let shared = state.shared();
    let png = tauri::async_runtime::spawn_blocking(move || render_png(&shared.preview, &job_dir, &view))
        .await
        .map_err(|e| internal(format!("rendering the preview stopped: {e}")))??;
    Ok(Response::new(png))
}

/// Renders `view` of the job in `job_dir` as PNG bytes, reusing the cached scene when its files
/// did not change.
pub fn render_png(cache: &PreviewCache, job_dir: &Path, view: &PreviewView) -> CommandResult<Vec<u8>> {
    let (width, height) = (view.width.clamp(16, MAX_PREVIEW_SIDE), view.height.clamp(16, MAX_PREVIEW_SIDE));
    let mut cached = lock(cache)?;
    let current = stamp(job_dir);
    let fresh = cached.as_ref().is_some_and(|l| l.job_dir == job_dir && l.stamp == current);
    if !fresh {
        *cached = None;
        let scene = Scene::load(job_dir).map_err(|e| bad_input(format!("nothing to preview yet ({e})")))?;
        let renderer = HeadlessRenderer::with_context(device()?, &scene).map_err(|e| crate::error::app_error(&e))?;
        *cached = Some(Loaded { job_dir: job_dir.to_path_buf(), stamp: current, scene, renderer });
    }
    let Some(loaded) = cached.as_mut() else { return Err(internal("the preview scene vanished")) };
    let options = render_options(view, &loaded.scene);
    let shown =
        Shown { splats: options.show_splats, mesh: options.show_mesh, cameras: options.show_cameras, points: false };
    let camera = match view.photo {
        Some(index) => photo_camera(&loaded.scene, job_dir, index)?.resized(width, height),
        None => {
            framed_orbit(&loaded.scene, shown, view.azimuth_deg, view.elevation_deg, view.distance_scale, width, height)
        }
    };
    let image = loaded.renderer.render(&camera, &options).map_err(|e| crate::error::app_error(&e))?;
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| internal(format!("encoding the preview: {e}")))?;
    Ok(png)
}

/// What `view.mode` draws; the mesh modes fall back to the splats while there is no mesh yet.
fn render_options(view: &PreviewView, scene: &Scene) -> RenderOptions {
    let mesh = scene.mesh.is_some() && view.mode != PreviewMode::Splats;
    RenderOptions {
        background: BACKGROUND,
        show_splats: !mesh,
        show_mesh: mesh,
        show_cameras: view.show_cameras,
        show_points: false,
        wireframe: mesh && view.mode == PreviewMode::Wireframe,
        matcap: mesh && view.mode == PreviewMode::Matcap,
    }
}

/// Input photo `index`'s camera in the scene's frame.
fn photo_camera(scene: &Scene, job_dir: &Path, index: u32) -> CommandResult<Camera> {
    Ok(scene.camera_from_input(&posed_photo(job_dir, index)?.camera))
}

/// Input photo `index` as the poses list it.
fn posed_photo(job_dir: &Path, index: u32) -> CommandResult<kiln_dataset::View> {
    let options = OpenOptions { skip_missing_images: true, ..Default::default() };
    let mut dataset = Dataset::open_with(&JobLayout::new(job_dir).transforms(), &options)
        .map_err(|e| bad_input(format!("the job has no camera poses yet ({e})")))?;
    let posed = dataset.views.len();
    if index as usize >= posed {
        return Err(bad_input(format!("the job has {posed} posed photos, not {}", index + 1)));
    }
    Ok(dataset.views.swap_remove(index as usize))
}

/// A JPEG of input photo `index` (as the poses list them), at most `size` pixels on its longer
/// side: "snap to photo N" shows it beside the render.
#[tauri::command]
pub async fn photo_image(
    state: tauri::State<'_, AppState>,
    job_id: String,
    index: u32,
    size: u32,
) -> CommandResult<Response> {
    let (job_dir, _) = crate::jobs::job_dir(&state, &job_id)?;
    let bytes = tauri::async_runtime::spawn_blocking(move || {
        let photo = posed_photo(&job_dir, index)?;
        crate::drafts::jpeg_thumbnail(&photo.image_path, size.clamp(16, MAX_PREVIEW_SIDE))
    })
    .await
    .map_err(|e| internal(format!("reading the photo stopped: {e}")))??;
    Ok(Response::new(bytes))
}
