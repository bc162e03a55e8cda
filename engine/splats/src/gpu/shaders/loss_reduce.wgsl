// One workgroup: sums the per-workgroup (Σ S, Σ |x − y|) pairs into `loss = (total, l1, ssim, 0)`.

@group(0) @binding(1) var<storage, read> partial_sums: array<f32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;

var<workgroup> wg_ssim: array<f32, WG>;
var<workgroup> wg_l1: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    var ssim_sum = 0.0;
    var l1_sum = 0.0;
    for (var g = lid; g < dims.num_partials; g += WG) {
        ssim_sum += partial_sums[2u * g];
        l1_sum += partial_sums[2u * g + 1u];
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
        let l1 = wg_l1[0] * dims.inv_count;
        let ssim = wg_ssim[0] * dims.inv_count;
        loss[0] = dims.l1_weight * l1 + dims.ssim_weight * (1.0 - ssim);
        loss[1] = l1;
        loss[2] = ssim;
        loss[3] = 0.0;
    }
}
