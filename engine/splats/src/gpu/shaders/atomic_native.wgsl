// Float atomic add on native `atomic<f32>` (wgpu SHADER_FLOAT32_ATOMIC).
alias GradAtomic = atomic<f32>;

fn add_grad(index: u32, value: f32) {
    atomicAdd(&projected_grads[index], value);
}
