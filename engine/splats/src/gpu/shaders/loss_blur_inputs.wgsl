// Horizontal pass of the forward blur: rows of x, y, x², y², xy into planes 0..5 of `blur`.

@group(0) @binding(1) var<storage, read> rendered: array<f32>;
@group(0) @binding(2) var<storage, read> target_image: array<f32>;
@group(0) @binding(3) var<storage, read_write> blur: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>) {
    let n = loss_pixel_count();
    let pixel = linear_thread(wid, num_wg, lid);
    if pixel >= n {
        return;
    }
    let px = pixel % dims.width;
    let row = pixel - px;
    for (var c = 0u; c < 3u; c++) {
        var mx = 0.0;
        var my = 0.0;
        var exx = 0.0;
        var eyy = 0.0;
        var exy = 0.0;
        for (var k = -LOSS_RADIUS; k <= LOSS_RADIUS; k++) {
            let col = i32(px) + k;
            if col < 0 || col >= i32(dims.width) {
                continue;
            }
            let w = loss_tap(k);
            let i = (row + u32(col)) * 3u + c;
            let x = rendered[i];
            let y = target_image[i];
            mx += w * x;
            my += w * y;
            exx += w * x * x;
            eyy += w * y * y;
            exy += w * x * y;
        }
        blur[(0u * 3u + c) * n + pixel] = mx;
        blur[(1u * 3u + c) * n + pixel] = my;
        blur[(2u * 3u + c) * n + pixel] = exx;
        blur[(3u * 3u + c) * n + pixel] = eyy;
        blur[(4u * 3u + c) * n + pixel] = exy;
    }
}
