// Shared by the loss kernels (prepended to each): L = l1_weight·mean|x − y| +
// ssim_weight·(1 − mean SSIM(x, y)) and ∂L/∂x for one W×H RGB image pair x (rendered), y (target).
//
// SSIM uses a separable Gaussian window with zero padding (the window is *not* renormalised at
// the borders), per channel, exactly as the CPU reference `crate::train::ssim`. With
// μx = G∗x, Exx = G∗x², Exy = G∗xy (and likewise for y):
//   a1 = 2 μx μy + C1, a2 = 2 (Exy − μx μy) + C2, b1 = μx² + μy² + C1, b2 = σx² + σy² + C2,
//   S = a1 a2 / (b1 b2).
// Backward: S depends on x only through μx, Exx and Exy, so with per-pixel partials
//   A = ∂L/∂μx, B = ∂L/∂Exx, C = ∂L/∂Exy,
//   ∂L/∂x = G∗A + 2x (G∗B) + y (G∗C)     (G is symmetric and zero-padded: its own adjoint).
//
// Images are interleaved RGB f32 (`ImageRgb`'s memory layout); the intermediates are planar,
// plane-major: `(plane · 3 + channel) · n + pixel`. One invocation per pixel, WG (prelude) per
// workgroup.
// Kernel order: loss_blur_inputs, loss_ssim_map, loss_reduce, loss_blur_partials, loss_grad.

struct LossDims {
    width: u32,
    height: u32,
    num_partials: u32,
    inv_count: f32,
    l1_weight: f32,
    ssim_weight: f32,
    c1: f32,
    c2: f32,
    // The 11 normalised 1D Gaussian weights, four to a vec4 (uniform arrays are 16-byte strided).
    window: array<vec4<f32>, 3>,
}

const LOSS_RADIUS: i32 = 5;

@group(0) @binding(0) var<uniform> dims: LossDims;

fn loss_tap(k: i32) -> f32 {
    let i = u32(k + LOSS_RADIUS);
    return dims.window[i / 4u][i % 4u];
}

fn loss_pixel_count() -> u32 {
    return dims.width * dims.height;
}
