// After the sort: [start, end) of each tile's run in the sorted keys (tiles with no splats keep
// the zeroed [0, 0)).

struct RangeParams {
    // Capacity of the key buffer: an upper bound of the count.
    n: u32,
    // Where the intersection count lies in `count` (clamped to `n`).
    count_index: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: RangeParams;
@group(0) @binding(1) var<storage, read> keys_hi: array<u32>;
@group(0) @binding(2) var<storage, read_write> tile_ranges: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read> count: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>, @builtin(local_invocation_index) local_index: u32) {
    let i = linear_thread(wg_id, num_wg, local_index);
    let n = min(params.n, count[params.count_index]);
    if i >= n {
        return;
    }
    let tile = keys_hi[i];
    if i == 0u || keys_hi[i - 1u] != tile {
        tile_ranges[tile].x = i;
    }
    if i + 1u == n || keys_hi[i + 1u] != tile {
        tile_ranges[tile].y = i + 1u;
    }
}
