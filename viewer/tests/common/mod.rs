//! Shared by the viewer's integration tests: the GPU device (lavapipe in CI), data locations and
//! image comparisons.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

use kiln_core::image_buf::ImageRgb;
use kiln_splats::gpu::GpuContext;

/// A device on any adapter, software included; `None` (with a loud SKIPPED line) when the
/// machine has no wgpu adapter at all.
pub fn gpu() -> Option<GpuContext> {
    match kiln_viewer::headless::open_device() {
        Ok(ctx) => {
            eprintln!("adapter: {}", ctx.name());
            Some(ctx)
        }
        Err(e) => {
            assert!(
                std::env::var_os("KILN_REQUIRE_GPU").is_none(),
                "KILN_REQUIRE_GPU is set and there is no adapter: {e}"
            );
            eprintln!("SKIPPED: no wgpu adapter ({e}); install Mesa's lavapipe (Debian mesa-vulkan-drivers)");
            None
        }
    }
}

/// The RGB of a viewer render as the trainer's float image.
pub fn to_image_rgb(image: &image::RgbaImage) -> ImageRgb {
    ImageRgb {
        width: image.width(),
        height: image.height(),
        pixels: image.pixels().map(|p| [0, 1, 2].map(|c| f32::from(p[c]) / 255.0)).collect(),
    }
}

/// Intersection over union of two boolean masks of the same size.
pub fn iou(a: &[bool], b: &[bool]) -> f64 {
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if union == 0 { 1.0 } else { inter as f64 / union as f64 }
}
