// Shared by every Kiln kernel: the per-frame camera block, the projected-splat layout and grid
// indexing. Layouts mirror the Rust `#[repr(C)]` types field by field (all 4-byte scalars, so
// WGSL adds no padding).

// Mirrors `gpu::project::FrameUniforms`.
struct Frame {
    // Columns of the camera_from_world rotation (w unused).
    rot_col0: vec4<f32>,
    rot_col1: vec4<f32>,
    rot_col2: vec4<f32>,
    // camera_from_world translation (w unused).
    translation: vec4<f32>,
    // Camera centre in world coordinates (w unused).
    cam_center: vec4<f32>,
    // Compositing background colour (w unused).
    background: vec4<f32>,
    fx: f32,
    fy: f32,
    cx: f32,
    cy: f32,
    width: u32,
    height: u32,
    tiles_x: u32,
    tiles_y: u32,
    num_splats: u32,
    sh_degree: u32,
    _pad0: u32,
    _pad1: u32,
}

// Mirrors `render::ProjectedSplat` (44 bytes). `radius == 0` means culled.
struct Projected {
    mean_x: f32,
    mean_y: f32,
    conic_a: f32,
    conic_b: f32,
    conic_c: f32,
    depth: f32,
    color_r: f32,
    color_g: f32,
    color_b: f32,
    opacity: f32,
    radius: u32,
}

// Mirrors `render::ProjectedGrad`: 9 floats per splat, in this order.
const GRAD_MEAN_X: u32 = 0u;
const GRAD_MEAN_Y: u32 = 1u;
const GRAD_CONIC_A: u32 = 2u;
const GRAD_CONIC_B: u32 = 3u;
const GRAD_CONIC_C: u32 = 4u;
const GRAD_COLOR_R: u32 = 5u;
const GRAD_COLOR_G: u32 = 6u;
const GRAD_COLOR_B: u32 = 7u;
const GRAD_OPACITY: u32 = 8u;
const GRAD_STRIDE: u32 = 9u;

// NEAR_PLANE, LOW_PASS, MAX_ALPHA, MIN_ALPHA, MIN_TRANSMITTANCE, TILE_SIZE, WG (threads per
// workgroup) and SH_C0 are generated from the Rust constants (context::render_constants).

// Linear workgroup index of a dispatch split over a 2D grid (context::grid_for).
fn linear_workgroup(wg_id: vec3<u32>, num_wg: vec3<u32>) -> u32 {
    return wg_id.x + wg_id.y * num_wg.x;
}

// Linear thread index of a 1D kernel dispatched over a 2D grid.
fn linear_thread(wg_id: vec3<u32>, num_wg: vec3<u32>, local_index: u32) -> u32 {
    return linear_workgroup(wg_id, num_wg) * WG + local_index;
}

// Tiles a splat covers, as [x0, y0, x1, y1) (render::mod "Binning"); empty when x0 == x1 or
// y0 == y1. Clamped in float before converting so that far-away splats cannot overflow.
fn tile_rect(mean_x: f32, mean_y: f32, radius: u32, tiles_x: u32, tiles_y: u32) -> vec4<u32> {
    let r = f32(radius);
    let t = f32(TILE_SIZE);
    let tx = f32(tiles_x);
    let ty = f32(tiles_y);
    let x0 = clamp(floor((mean_x - r) / t), 0.0, tx);
    let y0 = clamp(floor((mean_y - r) / t), 0.0, ty);
    let x1 = clamp(floor((mean_x + r + t - 1.0) / t), 0.0, tx);
    let y1 = clamp(floor((mean_y + r + t - 1.0) / t), 0.0, ty);
    return vec4<u32>(u32(x0), u32(y0), u32(x1), u32(y1));
}
