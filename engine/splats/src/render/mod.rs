//! The CPU reference renderer for Gaussian splats: projection, spherical harmonics and tiled
//! alpha compositing, each with a hand-derived backward pass.
//!
//! This module is the **definition** of Kiln's splat image formation. The wgpu backend
//! (`crate::gpu`) implements the same maths in WGSL and is tested against it; the CPU reference
//! itself is tested against central finite differences.
//!
//! # The maths, exactly
//!
//! Camera: undistorted pinhole, OpenCV axes (`kiln_core::camera`), `camera_from_world = (R, t)`,
//! intrinsics `fx, fy, cx, cy`, image `W × H`. Pixel `(i, j)` is sampled at its centre
//! `(i + 0.5, j + 0.5)`.
//!
//! **Projection** (`project`), per splat:
//! 1. `p = R μ + t`. Culled when `p.z < NEAR_PLANE`.
//! 2. `q = normalize(rotation)`, `M = rot(q) · diag(exp(log_scale))`, `Σ = M Mᵀ`, `Σc = R Σ Rᵀ`.
//! 3. The Jacobian uses a clamped direction so that splats far outside the frustum do not blow
//!    up: `u = clamp(p.x/p.z, −1.3·cx/fx, 1.3·(W−cx)/fx)`, `v` likewise with `cy, fy, H`;
//!    `J = [[fx/z, 0, −fx·u/z], [0, fy/z, −fy·v/z]]` (z = p.z). Gradients do not flow through a
//!    clamped coordinate.
//! 4. `Σ2 = J Σc Jᵀ + LOW_PASS · I` (the EWA low-pass filter: every splat covers at least about
//!    one pixel). Culled when `det(Σ2) ≤ 0`. `conic = Σ2⁻¹` stored as `[a, b, c]` for
//!    `[[a, b], [b, c]]`.
//! 5. `mean2d = (fx·p.x/z + cx, fy·p.y/z + cy)` (unclamped).
//! 6. `radius = ceil(3 · sqrt(λmax))`, `λmax = mid + sqrt(max(0.1, mid² − det))`,
//!    `mid = (Σ2₀₀ + Σ2₁₁)/2`. Culled when its tile rectangle (below) is empty.
//! 7. `color = max(0, Σₖ Yₖ(d) · shₖ + 0.5)` per channel with `d = normalize(μ − camera_centre)`
//!    over the active degree (the standard 3DGS real-SH basis and sign convention, see `sh`).
//!    The gradient is zero on a clamped channel. It flows into `μ` through `d` as well.
//! 8. `opacity = sigmoid(opacity_logit)`, `depth = p.z`.
//!
//! **Binning**: `TILE_SIZE`² tiles. A splat covers tiles
//! `x ∈ [clamp(floor((mx − r)/T), 0, tiles_x), clamp(floor((mx + r + T − 1)/T), 0, tiles_x))`,
//! likewise in y (T = tile size, r = radius). Within a tile, splats are ordered by depth,
//! ties by splat index.
//!
//! **Compositing**, per pixel, front to back, starting with `T = 1`:
//! `Δ = pixel_centre − mean2d`, `power = −½(a Δx² + c Δy²) − b Δx Δy`; skip if `power > 0`;
//! `α = min(MAX_ALPHA, opacity · exp(power))`; skip if `α < MIN_ALPHA`; if `T·(1 − α) <
//! MIN_TRANSMITTANCE` stop *before* this splat; else `C += color·α·T`, `T *= 1 − α`.
//! Output `image = C + T · background`, `alpha = 1 − T`,
//! `depth = Σ depth·α·T / Σ α·T` (0 where nothing contributed) and `median_depth` = depth of the
//! splat at which `T` first drops to `≤ 0.5` (0 where it never does).

mod project;
mod raster;
mod real;
pub mod sh;
pub mod testing;
#[cfg(test)]
mod tests;
mod tiles;

pub use project::{project, project_backward};
pub use raster::{rasterize, rasterize_backward};
pub use tiles::{tile_grid, tile_rect};

use kiln_core::camera::Camera;
use kiln_core::image_buf::{ImageGray, ImageRgb};
use kiln_core::splats::{SplatGrads, Splats};

/// Side of a square raster tile in pixels: 256 pixels per tile matches one GPU workgroup and is
/// what the reference CUDA implementation and gsplat use.
pub const TILE_SIZE: u32 = 16;
pub use kiln_core::camera::NEAR_PLANE;
/// Variance in pixels² added to every projected covariance (EWA low-pass filter, as in 3DGS).
pub const LOW_PASS: f32 = 0.3;
/// Opacity cap, so that a single splat never makes a pixel fully opaque (keeps `1/(1−α)` in the
/// backward pass finite).
pub const MAX_ALPHA: f32 = 0.99;
/// Contributions below 1/255 are invisible in an 8-bit image and are skipped.
pub const MIN_ALPHA: f32 = 1.0 / 255.0;
/// Compositing stops once the remaining transmittance would fall below this.
pub const MIN_TRANSMITTANCE: f32 = 1e-4;

/// One splat after projection into a camera. A culled splat has `radius == 0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ProjectedSplat {
    /// Centre in pixels.
    pub mean2d: [f32; 2],
    /// Inverse 2D covariance `[a, b, c]` of `[[a, b], [b, c]]`, pixels⁻².
    pub conic: [f32; 3],
    /// Camera-frame `z` of the centre.
    pub depth: f32,
    /// View-dependent RGB colour (after the SH evaluation and clamp).
    pub color: [f32; 3],
    /// Opacity after the sigmoid.
    pub opacity: f32,
    /// Screen-space extent in pixels; 0 means culled.
    pub radius: u32,
}

/// Gradient of the loss with respect to each projected quantity the compositor reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ProjectedGrad {
    pub mean2d: [f32; 2],
    pub conic: [f32; 3],
    pub color: [f32; 3],
    pub opacity: f32,
}

/// What the compositor produces for one camera.
#[derive(Clone, Debug, PartialEq)]
pub struct RasterOutput {
    pub image: ImageRgb,
    /// `1 − final transmittance`.
    pub alpha: ImageGray,
    /// Expected depth, normalised by the accumulated weight (0 where empty).
    pub depth: ImageGray,
    /// Depth where transmittance first reaches 0.5 (0 where it never does).
    pub median_depth: ImageGray,
}

/// What the forward compositor keeps for its backward pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RasterState {
    /// Splat indices, grouped by tile (row-major tiles), depth-sorted within each tile.
    pub sorted_ids: Vec<u32>,
    /// `[start, end)` into `sorted_ids` per tile.
    pub tile_ranges: Vec<[u32; 2]>,
    /// Transmittance left after compositing, per pixel.
    pub final_transmittance: Vec<f32>,
    /// Per pixel, one past the position in its tile's list of the last splat that contributed.
    pub last_contributor: Vec<u32>,
}

/// Forward pass for one camera, with everything the backward pass needs.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub output: RasterOutput,
    pub projected: Vec<ProjectedSplat>,
    pub state: RasterState,
}

/// Projects and composites `splats` as seen by `camera`.
pub fn render(splats: &Splats, camera: &Camera, background: [f32; 3]) -> Rendered {
    let projected = project(splats, camera);
    let (output, state) = rasterize(&projected, camera.width(), camera.height(), background);
    Rendered { output, projected, state }
}

/// Backward pass of [`render`]: gradients of the loss with respect to every splat parameter, and
/// the projected-space gradients (the trainer's densification statistics read `mean2d`).
pub fn render_backward(
    splats: &Splats,
    camera: &Camera,
    rendered: &Rendered,
    background: [f32; 3],
    grad_image: &ImageRgb,
) -> (SplatGrads, Vec<ProjectedGrad>) {
    let projected_grads = rasterize_backward(
        &rendered.projected,
        &rendered.state,
        camera.width(),
        camera.height(),
        background,
        grad_image,
    );
    let grads = project_backward(splats, camera, &rendered.projected, &projected_grads);
    (grads, projected_grads)
}
