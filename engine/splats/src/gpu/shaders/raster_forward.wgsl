// Compositing forward (render::rasterize): one 16×16 workgroup per tile, one thread per pixel.
// The tile's depth-sorted splats stream through workgroup memory in batches of WG; every pixel
// composites them front to back and the workgroup stops once every pixel is saturated.

@group(0) @binding(0) var<uniform> frame: Frame;
@group(0) @binding(1) var<storage, read> projected: array<Projected>;
@group(0) @binding(2) var<storage, read> sorted_ids: array<u32>;
@group(0) @binding(3) var<storage, read> tile_ranges: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read_write> out_image: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_alpha: array<f32>;
@group(0) @binding(6) var<storage, read_write> out_depth: array<f32>;
@group(0) @binding(7) var<storage, read_write> out_median_depth: array<f32>;
@group(0) @binding(8) var<storage, read_write> out_final_transmittance: array<f32>;
@group(0) @binding(9) var<storage, read_write> out_last_contributor: array<u32>;

// One batch of splats: centre, conic, opacity, colour and depth.
var<workgroup> batch_mean: array<vec2<f32>, 256>;
var<workgroup> batch_conic: array<vec3<f32>, 256>;
var<workgroup> batch_opacity: array<f32, 256>;
var<workgroup> batch_color: array<vec3<f32>, 256>;
var<workgroup> batch_depth: array<f32, 256>;
// Position of each batch entry in the tile's list (the batch is compacted, see tile_cull.wgsl).
var<workgroup> batch_position: array<u32, 256>;
// The tile's range, broadcast so that loop bounds are workgroup-uniform.
var<workgroup> shared_range: vec2<u32>;
// Pixels (threads) that need no more splats.
var<workgroup> done_count: atomic<u32>;
var<workgroup> done_snapshot: u32;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>, @builtin(local_invocation_index) local_index: u32) {
    let here = tile_pixel(linear_workgroup(wg_id, num_wg), local_index);
    let inside = here.inside;
    let pixel_centre = here.centre;
    let centres = array<vec2<f32>, 2>(here.tile_lo, here.tile_hi);

    if local_index == 0u {
        var range = vec2<u32>(0u);
        if here.tile_exists {
            range = tile_ranges[here.tile];
        }
        shared_range = range;
        atomicStore(&done_count, 0u);
    }
    let range = workgroupUniformLoad(&shared_range);

    var transmittance = 1.0;
    var color = vec3<f32>(0.0);
    var depth_sum = 0.0;
    var weight_sum = 0.0;
    var median_depth = 0.0;
    var median_found = false;
    var last_contributor = 0u;
    var done = !inside;
    var counted = false;

    let count = range.y - range.x;
    let batches = (count + WG - 1u) / WG;
    for (var b = 0u; b < batches; b++) {
        // Stop when every pixel of the tile is done.
        if done && !counted {
            atomicAdd(&done_count, 1u);
            counted = true;
        }
        workgroupBarrier();
        if local_index == 0u {
            done_snapshot = atomicLoad(&done_count);
        }
        if workgroupUniformLoad(&done_snapshot) == WG {
            break;
        }

        // Load this batch (one splat per thread), keeping only splats that can touch the tile.
        let pos = range.x + b * WG + local_index;
        var p: Projected;
        var keep = false;
        if pos < range.y {
            p = projected[sorted_ids[pos]];
            keep = splat_touches(p, centres[0], centres[1]);
        }
        let slot = compact_slot(keep, local_index);
        if keep {
            let k = slot.x;
            batch_mean[k] = vec2<f32>(p.mean_x, p.mean_y);
            batch_conic[k] = vec3<f32>(p.conic_a, p.conic_b, p.conic_c);
            batch_opacity[k] = p.opacity;
            batch_color[k] = vec3<f32>(p.color_r, p.color_g, p.color_b);
            batch_depth[k] = p.depth;
            batch_position[k] = b * WG + local_index;
        }
        workgroupBarrier();

        let batch_len = slot.y;
        for (var j = 0u; j < batch_len && !done; j++) {
            let delta = pixel_centre - batch_mean[j];
            let conic = batch_conic[j];
            let power = -0.5 * (conic.x * delta.x * delta.x + conic.z * delta.y * delta.y) - conic.y * delta.x * delta.y;
            if power > 0.0 {
                continue;
            }
            let alpha = min(MAX_ALPHA, batch_opacity[j] * exp(power));
            if alpha < MIN_ALPHA {
                continue;
            }
            let next_transmittance = transmittance * (1.0 - alpha);
            if next_transmittance < MIN_TRANSMITTANCE {
                done = true;
                break;
            }
            let weight = alpha * transmittance;
            color += batch_color[j] * weight;
            depth_sum += batch_depth[j] * weight;
            weight_sum += weight;
            transmittance = next_transmittance;
            if !median_found && transmittance <= 0.5 {
                median_depth = batch_depth[j];
                median_found = true;
            }
            last_contributor = batch_position[j] + 1u;
        }
    }

    if inside {
        let pixel = here.index;
        let rgb = color + transmittance * frame.background.xyz;
        out_image[3u * pixel] = rgb.x;
        out_image[3u * pixel + 1u] = rgb.y;
        out_image[3u * pixel + 2u] = rgb.z;
        out_alpha[pixel] = 1.0 - transmittance;
        out_depth[pixel] = select(0.0, depth_sum / weight_sum, weight_sum > 0.0);
        out_median_depth[pixel] = median_depth;
        out_final_transmittance[pixel] = transmittance;
        out_last_contributor[pixel] = last_contributor;
    }
}
