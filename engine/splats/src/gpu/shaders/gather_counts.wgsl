// Binning: tile counts permuted into depth order (counts[k] = tiles_touched[depth_order[k]]), so
// that their exclusive scan gives each splat its first entry in depth order.

struct GatherParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: GatherParams;
@group(0) @binding(1) var<storage, read> depth_order: array<u32>;
@group(0) @binding(2) var<storage, read> tiles_touched: array<u32>;
@group(0) @binding(3) var<storage, read_write> counts: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>, @builtin(local_invocation_index) local_index: u32) {
    let k = linear_thread(wg_id, num_wg, local_index);
    if k >= params.n {
        return;
    }
    counts[k] = tiles_touched[depth_order[k]];
}
