// Horizontal pass of the backward blur: rows of the 3 × 3 partial planes into planes 0..9 of `blur`.

@group(0) @binding(1) var<storage, read> partial_grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> blur: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>) {
    let n = loss_pixel_count();
    let pixel = linear_thread(wid, num_wg, lid);
    if pixel >= n {
        return;
    }
    let px = pixel % dims.width;
    let row = pixel - px;
    for (var plane = 0u; plane < 9u; plane++) {
        var acc = 0.0;
        for (var k = -LOSS_RADIUS; k <= LOSS_RADIUS; k++) {
            let col = i32(px) + k;
            if col < 0 || col >= i32(dims.width) {
                continue;
            }
            acc += loss_tap(k) * partial_grads[plane * n + row + u32(col)];
        }
        blur[plane * n + pixel] = acc;
    }
}
