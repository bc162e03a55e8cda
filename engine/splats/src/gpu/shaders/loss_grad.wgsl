// Vertical pass of the backward blur and the chain rule into ∂L/∂x, plus the L1 subgradient
// (0 where x = y, as the CPU reference).

@group(0) @binding(1) var<storage, read> rendered: array<f32>;
@group(0) @binding(2) var<storage, read> target_image: array<f32>;
@group(0) @binding(3) var<storage, read> blur: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_image: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>) {
    let n = loss_pixel_count();
    let pixel = linear_thread(wid, num_wg, lid);
    if pixel >= n {
        return;
    }
    let px = pixel % dims.width;
    let py = pixel / dims.width;
    let d_l1 = dims.l1_weight * dims.inv_count;
    for (var c = 0u; c < 3u; c++) {
        var g = array<f32, 3>(0.0, 0.0, 0.0);
        for (var k = -LOSS_RADIUS; k <= LOSS_RADIUS; k++) {
            let r = i32(py) + k;
            if r < 0 || r >= i32(dims.height) {
                continue;
            }
            let w = loss_tap(k);
            let p = u32(r) * dims.width + px;
            for (var q = 0u; q < 3u; q++) {
                g[q] += w * blur[(q * 3u + c) * n + p];
            }
        }
        let i = pixel * 3u + c;
        let x = rendered[i];
        let y = target_image[i];
        grad_image[i] = g[0] + 2.0 * x * g[1] + y * g[2] + d_l1 * sign(x - y);
    }
}
