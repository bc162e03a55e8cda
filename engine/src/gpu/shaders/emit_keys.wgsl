// Binning: each visible splat writes one (tile id, depth bits) key per tile it touches, valued by
// its index, starting at its exclusive-scanned offset. Depth is positive (≥ NEAR_PLANE), so its
// IEEE bits order like the floats.

@group(0) @binding(0) var<uniform> frame: Frame;
@group(0) @binding(1) var<storage, read> projected: array<Projected>;
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
@group(0) @binding(3) var<storage, read_write> keys_hi: array<u32>;
@group(0) @binding(4) var<storage, read_write> keys_lo: array<u32>;
@group(0) @binding(5) var<storage, read_write> values: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>, @builtin(local_invocation_index) local_index: u32) {
    let i = linear_thread(wg_id, num_wg, local_index);
    if i >= frame.num_splats {
        return;
    }
    let p = projected[i];
    if p.radius == 0u {
        return;
    }
    let rect = tile_rect(p.mean_x, p.mean_y, p.radius, frame.tiles_x, frame.tiles_y);
    let depth_bits = bitcast<u32>(p.depth);
    var out = offsets[i];
    for (var ty = rect.y; ty < rect.w; ty++) {
        for (var tx = rect.x; tx < rect.z; tx++) {
            keys_hi[out] = ty * frame.tiles_x + tx;
            keys_lo[out] = depth_bits;
            values[out] = i;
            out++;
        }
    }
}
