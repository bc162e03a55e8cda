// Exclusive prefix sum, level 1: each workgroup scans SCAN_BLOCK consecutive u32s in place and
// writes their total to block_sums (scanned recursively, then added back by scan_add).

struct ScanParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Elements per thread; the block is WG × SCAN_ITEMS = 1024 (sort::SCAN_BLOCK).
const SCAN_ITEMS: u32 = 4u;

@group(0) @binding(0) var<uniform> params: ScanParams;
@group(0) @binding(1) var<storage, read_write> data: array<u32>;
@group(0) @binding(2) var<storage, read_write> block_sums: array<u32>;

var<workgroup> thread_sums: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>, @builtin(local_invocation_index) local_index: u32) {
    let block = linear_workgroup(wg_id, num_wg);
    // Excess workgroups of a 2D grid (uniform: depends on the workgroup id only).
    if block * WG * SCAN_ITEMS >= params.n {
        return;
    }
    let base = block * WG * SCAN_ITEMS + local_index * SCAN_ITEMS;

    // Serial exclusive scan of this thread's items.
    var items: array<u32, SCAN_ITEMS>;
    var total = 0u;
    for (var k = 0u; k < SCAN_ITEMS; k++) {
        let idx = base + k;
        var v = 0u;
        if idx < params.n {
            v = data[idx];
        }
        items[k] = total;
        total += v;
    }

    // Hillis–Steele inclusive scan of the per-thread totals.
    thread_sums[local_index] = total;
    workgroupBarrier();
    for (var offset = 1u; offset < WG; offset *= 2u) {
        var t = 0u;
        if local_index >= offset {
            t = thread_sums[local_index - offset];
        }
        workgroupBarrier();
        thread_sums[local_index] += t;
        workgroupBarrier();
    }
    let thread_prefix = thread_sums[local_index] - total;

    for (var k = 0u; k < SCAN_ITEMS; k++) {
        let idx = base + k;
        if idx < params.n {
            data[idx] = thread_prefix + items[k];
        }
    }
    if local_index == WG - 1u {
        block_sums[block] = thread_sums[local_index];
    }
}
