// Backward rasteriser accumulation with subgroups: the subgroup sums its pixels' gradients
// (non-contributing pixels pass zeros) and one elected invocation adds the sums, cutting the
// atomics by the subgroup width. Called by every invocation of the subgroup for the same splat.
fn accumulate_grads(invocation: u32, splat: u32, contributes: bool, grad_mean: vec2<f32>, grad_conic: vec3<f32>, grad_color: vec3<f32>, grad_opacity: f32) {
    if !subgroupAny(contributes) {
        return;
    }
    let mean = subgroupAdd(grad_mean);
    let conic = subgroupAdd(grad_conic);
    let color = subgroupAdd(grad_color);
    let opacity = subgroupAdd(grad_opacity);
    // Elect the first active invocation (`invocation` is unique within the workgroup).
    if subgroupBroadcastFirst(invocation) == invocation {
        let base = GRAD_STRIDE * splat;
        add_grad(base + GRAD_MEAN_X, mean.x);
        add_grad(base + GRAD_MEAN_Y, mean.y);
        add_grad(base + GRAD_CONIC_A, conic.x);
        add_grad(base + GRAD_CONIC_B, conic.y);
        add_grad(base + GRAD_CONIC_C, conic.z);
        add_grad(base + GRAD_COLOR_R, color.x);
        add_grad(base + GRAD_COLOR_G, color.y);
        add_grad(base + GRAD_COLOR_B, color.z);
        add_grad(base + GRAD_OPACITY, opacity);
    }
}
