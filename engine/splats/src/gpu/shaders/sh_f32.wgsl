// SH coefficients as the trainer stores them: 16 RGB f32 triples per splat in `sh`. Kept apart
// from project_common.wgsl so that the viewer can store them as f16 instead (see
// viewer/src/render/shaders/sh_f16.wgsl).

// SH coefficient `k` (RGB) of splat `i`.
fn sh_coeff(i: u32, k: u32) -> vec3<f32> {
    let base = i * 48u + k * 3u;
    return vec3<f32>(sh[base], sh[base + 1u], sh[base + 2u]);
}
