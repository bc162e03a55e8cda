// Binning: the k-th splat in depth order writes one (tile id → splat index) entry per tile it
// touches, starting at its exclusive-scanned offset. Entries are therefore in depth order (ties by
// splat index), and a stable sort by tile id alone yields the contract's per-tile order.
// Entries at or past the buffers' capacity are dropped (the farthest splats' entries, since
// they come last); `monitor` keeps [largest total seen, frames over capacity] for the host to
// check at its next sync (raster.rs, "Intersection capacity").

struct EmitParams {
    capacity: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> frame: Frame;
@group(0) @binding(1) var<storage, read> projected: array<Projected>;
@group(0) @binding(2) var<storage, read> depth_order: array<u32>;
@group(0) @binding(3) var<storage, read> offsets: array<u32>;
@group(0) @binding(4) var<storage, read_write> tile_keys: array<u32>;
@group(0) @binding(5) var<storage, read_write> values: array<u32>;
@group(0) @binding(6) var<uniform> params: EmitParams;
@group(0) @binding(7) var<storage, read_write> monitor: array<atomic<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>, @builtin(local_invocation_index) local_index: u32) {
    let k = linear_thread(wg_id, num_wg, local_index);
    if k >= frame.num_splats {
        return;
    }
    if k == 0u {
        let total = offsets[frame.num_splats];
        atomicMax(&monitor[0], total);
        if total > params.capacity {
            atomicAdd(&monitor[1], 1u);
        }
    }
    let i = depth_order[k];
    let p = projected[i];
    if p.radius == 0u {
        return;
    }
    let rect = tile_rect(p.mean_x, p.mean_y, p.radius, frame.tiles_x, frame.tiles_y);
    var out = offsets[k];
    for (var ty = rect.y; ty < rect.w; ty++) {
        for (var tx = rect.x; tx < rect.z && out < params.capacity; tx++) {
            tile_keys[out] = ty * frame.tiles_x + tx;
            values[out] = i;
            out++;
        }
    }
}
