// Shared by the two compositing kernels: each thread's pixel of its 16×16 tile, which splats of a batch can touch a tile, and an
// order-preserving compaction of the batch to those.
//
// A pixel gets α ≥ MIN_ALPHA from a splat only inside the ellipse ΔᵀQΔ ≤ 2·ln(opacity/MIN_ALPHA)
// (Q the conic), whose half-widths are √(level·c/det) and √(level·a/det). A splat whose ellipse
// box, widened by a pixel against rounding, misses every pixel centre of the tile is skipped by
// every pixel anyway, so dropping it from the batch changes nothing but the work.

var<workgroup> keep_scan: array<u32, 256>;
var<workgroup> keep_total: u32;

// Whether splat `p` can reach α ≥ MIN_ALPHA at a pixel centre in [lo, hi] (inclusive).
fn splat_touches(p: Projected, lo: vec2<f32>, hi: vec2<f32>) -> bool {
    if p.opacity < MIN_ALPHA {
        return false;
    }
    let det = p.conic_a * p.conic_c - p.conic_b * p.conic_b;
    if !(det > 0.0) {
        return true;
    }
    let level = 2.0 * log(p.opacity / MIN_ALPHA);
    let extent = vec2<f32>(sqrt(level * p.conic_c / det), sqrt(level * p.conic_a / det)) + 1.0;
    let mean = vec2<f32>(p.mean_x, p.mean_y);
    return all(mean + extent >= lo) && all(mean - extent <= hi);
}

// One thread's pixel in a tile workgroup (row-major tiles, row-major pixels within a tile).
struct TilePixel {
    tile: u32,
    // The workgroup maps to a real tile (2D dispatch grids may overshoot).
    tile_exists: bool,
    // The pixel lies in the image (edge tiles' extra threads still help load batches).
    inside: bool,
    // Row-major pixel index in the image; meaningful only when `inside`.
    index: u32,
    centre: vec2<f32>,
    // Pixel centres of the tile's corners inside the image, see tile_centres.
    tile_lo: vec2<f32>,
    tile_hi: vec2<f32>,
}

fn tile_pixel(tile: u32, local_index: u32) -> TilePixel {
    let tile_x = tile % frame.tiles_x;
    let tile_y = tile / frame.tiles_x;
    let px = tile_x * TILE_SIZE + local_index % TILE_SIZE;
    let py = tile_y * TILE_SIZE + local_index / TILE_SIZE;
    let tile_exists = tile < frame.tiles_x * frame.tiles_y;
    let inside = tile_exists && px < frame.width && py < frame.height;
    let centres = tile_centres(tile_x, tile_y);
    let centre = vec2<f32>(f32(px) + 0.5, f32(py) + 0.5);
    return TilePixel(tile, tile_exists, inside, py * frame.width + px, centre, centres[0], centres[1]);
}

// Pixel centres of the tile's pixels inside the image: (lo, hi) corners.
fn tile_centres(tile_x: u32, tile_y: u32) -> array<vec2<f32>, 2> {
    let x0 = tile_x * TILE_SIZE;
    let y0 = tile_y * TILE_SIZE;
    let x1 = min(x0 + TILE_SIZE, frame.width);
    let y1 = min(y0 + TILE_SIZE, frame.height);
    return array<vec2<f32>, 2>(vec2<f32>(f32(x0) + 0.5, f32(y0) + 0.5), vec2<f32>(f32(x1) - 0.5, f32(y1) - 0.5));
}

// Order-preserving compaction slot: returns (this thread's slot among kept threads, kept count).
// Must be called by the whole workgroup (contains barriers).
fn compact_slot(keep: bool, local_index: u32) -> vec2<u32> {
    let flag = select(0u, 1u, keep);
    keep_scan[local_index] = flag;
    workgroupBarrier();
    for (var offset = 1u; offset < WG; offset *= 2u) {
        var t = 0u;
        if local_index >= offset {
            t = keep_scan[local_index - offset];
        }
        workgroupBarrier();
        keep_scan[local_index] += t;
        workgroupBarrier();
    }
    if local_index == WG - 1u {
        keep_total = keep_scan[local_index];
    }
    let total = workgroupUniformLoad(&keep_total);
    return vec2<u32>(keep_scan[local_index] - flag, total);
}
