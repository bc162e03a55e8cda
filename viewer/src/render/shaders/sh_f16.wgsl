// SH coefficients as the viewer stores them: the trainer's 48 floats per splat as f16, two per
// u32 (24 words per splat), so that a 1M-splat model's SH (96 MB) fits the 128 MiB storage
// binding limit of lavapipe and many integrated GPUs. f16 keeps 11 bits: a colour error of about
// 1e-4, far below 8-bit output.

fn sh_half(index: u32) -> f32 {
    let pair = unpack2x16float(sh[index / 2u]);
    return select(pair.x, pair.y, (index & 1u) == 1u);
}

// SH coefficient `k` (RGB) of splat `i`.
fn sh_coeff(i: u32, k: u32) -> vec3<f32> {
    let base = i * 48u + k * 3u;
    return vec3<f32>(sh_half(base), sh_half(base + 1u), sh_half(base + 2u));
}
