// One Adam step over a flat f32 parameter block, the same update and evaluation order as the CPU
// reference (`crate::train::adam`):
//   m ← β1 m + (1 − β1) g,  v ← β2 v + (1 − β2) g²,  p ← p − lr / bc1 · m / (√v / √bc2 + ε)
// with bc1 = 1 − β1ᵗ and √bc2 = √(1 − β2ᵗ) computed on the host. Element i uses `lr_low` when
// `i % period < split`, else `lr_high` (the SH block: DC coefficients, then the rest).

struct AdamStep {
    lr_low: f32,
    lr_high: f32,
    period: u32,
    split: u32,
    bias_correction1: f32,
    bias_correction2_sqrt: f32,
    count: u32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
}

@group(0) @binding(0) var<uniform> adam: AdamStep;
@group(0) @binding(1) var<storage, read> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> m1: array<f32>;
@group(0) @binding(4) var<storage, read_write> m2: array<f32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) num_wg: vec3<u32>,
) {
    let i = linear_thread(wid, num_wg, lid);
    if i >= adam.count {
        return;
    }
    let g = grads[i];
    let m = adam.beta1 * m1[i] + (1.0 - adam.beta1) * g;
    let v = adam.beta2 * m2[i] + (1.0 - adam.beta2) * g * g;
    m1[i] = m;
    m2[i] = v;
    let lr = select(adam.lr_high, adam.lr_low, i % adam.period < adam.split);
    params[i] -= lr / adam.bias_correction1 * m / (sqrt(v) / adam.bias_correction2_sqrt + adam.epsilon);
}
