// Radix sort pass, step 2: stable scatter. Each workgroup walks its block in rounds of WG keys
// (index order). Within a round, a key's rank among equal digits is counted from per-digit
// bitmasks of the threads holding that digit; a running per-digit base carries over rounds.

struct RadixParams {
    // Capacity of the key buffers: an upper bound of the count.
    n: u32,
    shift: u32,
    use_hi: u32,
    num_blocks: u32,
    // Where the key count lies in `count` (it may exceed `n`: then only `n` keys are sorted).
    count_index: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Must match radix_histogram.wgsl.
const RADIX_ITEMS: u32 = 16u;
// u32 words of one digit's thread bitmask (WG / 32).
const MASK_WORDS: u32 = 8u;

@group(0) @binding(0) var<uniform> params: RadixParams;
@group(0) @binding(1) var<storage, read> keys_hi_in: array<u32>;
@group(0) @binding(2) var<storage, read> keys_lo_in: array<u32>;
@group(0) @binding(3) var<storage, read> values_in: array<u32>;
@group(0) @binding(4) var<storage, read> hist_scanned: array<u32>;
@group(0) @binding(5) var<storage, read_write> keys_hi_out: array<u32>;
@group(0) @binding(6) var<storage, read_write> keys_lo_out: array<u32>;
@group(0) @binding(7) var<storage, read_write> values_out: array<u32>;
@group(0) @binding(8) var<storage, read> count: array<u32>;

// Bit t of word (d * MASK_WORDS + t / 32) is set when thread t holds digit d this round.
var<workgroup> masks: array<atomic<u32>, 2048>;
// Next output position for each digit.
var<workgroup> digit_base: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>, @builtin(local_invocation_index) local_index: u32) {
    let block = linear_workgroup(wg_id, num_wg);
    let n = min(params.n, count[params.count_index]);
    // Blocks past the count (the capacity's slack) have nothing to move (uniform: workgroup id
    // and read-only buffers).
    if block * WG * RADIX_ITEMS >= n {
        return;
    }
    let in_range = block < params.num_blocks;
    if in_range {
        digit_base[local_index] = hist_scanned[local_index * params.num_blocks + block];
    }
    for (var w = 0u; w < MASK_WORDS; w++) {
        atomicStore(&masks[local_index * MASK_WORDS + w], 0u);
    }
    workgroupBarrier();

    let word = local_index / 32u;
    let bit = 1u << (local_index % 32u);
    for (var r = 0u; r < RADIX_ITEMS; r++) {
        let idx = block * WG * RADIX_ITEMS + r * WG + local_index;
        let valid = in_range && idx < n;
        var digit = 0u;
        if valid {
            let key = select(keys_lo_in[idx], keys_hi_in[idx], params.use_hi == 1u);
            digit = (key >> params.shift) & 0xffu;
            atomicOr(&masks[digit * MASK_WORDS + word], bit);
        }
        workgroupBarrier();

        if valid {
            // Threads before this one holding the same digit.
            var rank = countOneBits(atomicLoad(&masks[digit * MASK_WORDS + word]) & (bit - 1u));
            for (var w = 0u; w < word; w++) {
                rank += countOneBits(atomicLoad(&masks[digit * MASK_WORDS + w]));
            }
            let dst = digit_base[digit] + rank;
            keys_hi_out[dst] = keys_hi_in[idx];
            keys_lo_out[dst] = keys_lo_in[idx];
            values_out[dst] = values_in[idx];
        }
        workgroupBarrier();

        // Thread d advances digit d's base by this round's count and clears its mask.
        var count = 0u;
        for (var w = 0u; w < MASK_WORDS; w++) {
            count += countOneBits(atomicLoad(&masks[local_index * MASK_WORDS + w]));
            atomicStore(&masks[local_index * MASK_WORDS + w], 0u);
        }
        digit_base[local_index] += count;
        workgroupBarrier();
    }
}
