// Radix sort pass, step 1: per-block counts of the current 8-bit digit, written digit-major
// (hist[digit * num_blocks + block]) so that one exclusive scan yields every (digit, block)'s
// first output position.

struct RadixParams {
    // Capacity of the key buffers: an upper bound of the count.
    n: u32,
    // Bit offset of the digit within the key word.
    shift: u32,
    // 1: the digit comes from keys_hi (tile id), 0: from keys_lo (depth bits).
    use_hi: u32,
    num_blocks: u32,
    // Where the key count lies in `count` (it may exceed `n`: then only `n` keys are sorted).
    count_index: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Keys per thread; the block is WG × RADIX_ITEMS (sort::RADIX_BLOCK).
const RADIX_ITEMS: u32 = 16u;

@group(0) @binding(0) var<uniform> params: RadixParams;
@group(0) @binding(1) var<storage, read> keys_hi: array<u32>;
@group(0) @binding(2) var<storage, read> keys_lo: array<u32>;
@group(0) @binding(3) var<storage, read_write> hist: array<u32>;
@group(0) @binding(4) var<storage, read> count: array<u32>;

var<workgroup> counts: array<atomic<u32>, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>, @builtin(local_invocation_index) local_index: u32) {
    let block = linear_workgroup(wg_id, num_wg);
    let n = min(params.n, count[params.count_index]);
    atomicStore(&counts[local_index], 0u);
    workgroupBarrier();
    for (var r = 0u; r < RADIX_ITEMS; r++) {
        let idx = block * WG * RADIX_ITEMS + r * WG + local_index;
        if idx < n {
            let key = select(keys_lo[idx], keys_hi[idx], params.use_hi == 1u);
            atomicAdd(&counts[(key >> params.shift) & 0xffu], 1u);
        }
    }
    workgroupBarrier();
    if block < params.num_blocks {
        hist[local_index * params.num_blocks + block] = atomicLoad(&counts[local_index]);
    }
}
