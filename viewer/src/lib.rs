//! Kiln's viewer: what a user looks at to judge a result. wgpu renderers for Gaussian splats,
//! textured meshes, camera frustums and sparse points; a headless path that renders to PNG
//! (`kiln render`, thumbnails, turntables); and an eframe window (`kiln view`, feature `window`).
//!
//! Every view is a [`kiln_core::camera::Camera`] in the OpenCV convention (+X right, +Y down,
//! looking along +Z), the same camera type and projection the trainer uses, so a render from a
//! dataset camera lines up with its photo.
//!
//! Module map (contract between the renderer and the window):
//! - `scene`: [`scene::Scene`], everything one file or job folder holds, in one frame (the
//!   exported mesh's frame when there is a mesh, see the module docs), loaded from a splat PLY
//!   (Kiln's or the INRIA/gsplat/Brush layout), a GLB/glTF, a COLMAP model, a `transforms.json`
//!   or a job folder.
//! - `render`: [`render::SceneRenderer`] draws a scene into any wgpu colour target for a given
//!   camera with [`render::RenderOptions`] and returns [`render::FrameStats`]. A device opened
//!   for it should request [`render::device_limits`] and [`render::device_features`] (32-bit
//!   float blending keeps splat renders within 0.02 dB of the trainer's).
//! - `headless`: [`headless::HeadlessRenderer`] renders to an `RgbaImage` / PNG on any adapter
//!   (lavapipe in CI; [`headless::open_device`]), [`headless::orbit_camera`] and
//!   [`headless::fit_distance`] for thumbnails and turntables.
//! - `app` (feature `window`): the eframe window.
//! - `error`: [`ViewerError`].

#[cfg(feature = "window")]
pub mod app;
mod error;
pub mod headless;
pub mod render;
pub mod scene;

pub use error::ViewerError;
