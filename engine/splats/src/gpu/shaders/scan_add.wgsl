// Exclusive prefix sum, level 2: adds each block's scanned offset to its elements.

struct ScanParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Must match scan_blocks.wgsl.
const SCAN_ITEMS: u32 = 4u;

@group(0) @binding(0) var<uniform> params: ScanParams;
@group(0) @binding(1) var<storage, read_write> data: array<u32>;
@group(0) @binding(2) var<storage, read> block_sums: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>, @builtin(local_invocation_index) local_index: u32) {
    let block = linear_workgroup(wg_id, num_wg);
    // Excess workgroups of a 2D grid.
    if block * WG * SCAN_ITEMS >= params.n {
        return;
    }
    let offset = block_sums[block];
    let base = block * WG * SCAN_ITEMS + local_index * SCAN_ITEMS;
    for (var k = 0u; k < SCAN_ITEMS; k++) {
        let idx = base + k;
        if idx < params.n {
            data[idx] += offset;
        }
    }
}
