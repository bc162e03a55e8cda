// Backward rasteriser accumulation without subgroups: each contributing pixel adds its own
// gradient to the splat.
fn accumulate_grads(invocation: u32, splat: u32, contributes: bool, grad_mean: vec2<f32>, grad_conic: vec3<f32>, grad_color: vec3<f32>, grad_opacity: f32) {
    if !contributes {
        return;
    }
    let base = GRAD_STRIDE * splat;
    add_grad(base + GRAD_MEAN_X, grad_mean.x);
    add_grad(base + GRAD_MEAN_Y, grad_mean.y);
    add_grad(base + GRAD_CONIC_A, grad_conic.x);
    add_grad(base + GRAD_CONIC_B, grad_conic.y);
    add_grad(base + GRAD_CONIC_C, grad_conic.z);
    add_grad(base + GRAD_COLOR_R, grad_color.x);
    add_grad(base + GRAD_COLOR_G, grad_color.y);
    add_grad(base + GRAD_COLOR_B, grad_color.z);
    add_grad(base + GRAD_OPACITY, grad_opacity);
}
