// Vertical pass of the forward blur, then per pixel and channel: the SSIM value S, the partials
// ∂L/∂μx, ∂L/∂Exx, ∂L/∂Exy (planes 0..3 of `partial_grads`), and per workgroup (Σ S, Σ |x − y|).

@group(0) @binding(1) var<storage, read> rendered: array<f32>;
@group(0) @binding(2) var<storage, read> target_image: array<f32>;
@group(0) @binding(3) var<storage, read> blur: array<f32>;
@group(0) @binding(4) var<storage, read_write> partial_grads: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial_sums: array<f32>;

var<workgroup> wg_ssim: array<f32, WG>;
var<workgroup> wg_l1: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>) {
    let n = loss_pixel_count();
    let group = linear_workgroup(wid, num_wg);
    let pixel = group * WG + lid;
    var ssim_sum = 0.0;
    var l1_sum = 0.0;
    if pixel < n {
        let px = pixel % dims.width;
        let py = pixel / dims.width;
        // ∂L/∂S for each of the 3n SSIM values averaged into the loss.
        let d_ssim = -dims.ssim_weight * dims.inv_count;
        for (var c = 0u; c < 3u; c++) {
            var m = array<f32, 5>(0.0, 0.0, 0.0, 0.0, 0.0);
            for (var k = -LOSS_RADIUS; k <= LOSS_RADIUS; k++) {
                let r = i32(py) + k;
                if r < 0 || r >= i32(dims.height) {
                    continue;
                }
                let w = loss_tap(k);
                let p = u32(r) * dims.width + px;
                for (var q = 0u; q < 5u; q++) {
                    m[q] += w * blur[(q * 3u + c) * n + p];
                }
            }
            let mu_x = m[0];
            let mu_y = m[1];
            let a1 = 2.0 * mu_x * mu_y + dims.c1;
            let a2 = 2.0 * (m[4] - mu_x * mu_y) + dims.c2;
            let b1 = mu_x * mu_x + mu_y * mu_y + dims.c1;
            let b2 = (m[2] - mu_x * mu_x) + (m[3] - mu_y * mu_y) + dims.c2;
            let inv_b = 1.0 / (b1 * b2);
            let s = a1 * a2 * inv_b;
            ssim_sum += s;
            // ∂S/∂μx = 2μy(a2 − a1)/(b1 b2) − 2μx S (1/b1 − 1/b2), with 1/b1 − 1/b2 = (b2 − b1)/(b1 b2).
            let ds_dmu = 2.0 * (mu_y * (a2 - a1) - mu_x * s * (b2 - b1)) * inv_b;
            let ds_dexx = -s / b2;
            let ds_dexy = 2.0 * a1 * inv_b;
            partial_grads[(0u * 3u + c) * n + pixel] = d_ssim * ds_dmu;
            partial_grads[(1u * 3u + c) * n + pixel] = d_ssim * ds_dexx;
            partial_grads[(2u * 3u + c) * n + pixel] = d_ssim * ds_dexy;
            let i = pixel * 3u + c;
            l1_sum += abs(rendered[i] - target_image[i]);
        }
    }
    wg_ssim[lid] = ssim_sum;
    wg_l1[lid] = l1_sum;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            wg_ssim[lid] += wg_ssim[lid + stride];
            wg_l1[lid] += wg_l1[lid + stride];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        partial_sums[2u * group] = wg_ssim[0];
        partial_sums[2u * group + 1u] = wg_l1[0];
    }
}
