// Compositing backward (render::rasterize_backward): one 16×16 workgroup per tile, one thread per
// pixel, walking the tile's splats back to front in batches through workgroup memory. Each pixel
// recovers the transmittance in front of a splat by dividing out its alpha, keeps the colour
// accumulated behind it, and adds its share of ∂L/∂(mean2d, conic, colour, opacity) to the
// splat with a float atomic (`add_grad`, native or emulated; see context::atomic_add_source).

@group(0) @binding(0) var<uniform> frame: Frame;
@group(0) @binding(1) var<storage, read> projected: array<Projected>;
@group(0) @binding(2) var<storage, read> sorted_ids: array<u32>;
@group(0) @binding(3) var<storage, read> tile_ranges: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read> final_transmittance: array<f32>;
@group(0) @binding(5) var<storage, read> last_contributors: array<u32>;
@group(0) @binding(6) var<storage, read> grad_image: array<f32>;
@group(0) @binding(7) var<storage, read_write> projected_grads: array<GradAtomic>;

var<workgroup> batch_id: array<u32, 256>;
var<workgroup> batch_mean: array<vec2<f32>, 256>;
var<workgroup> batch_conic: array<vec3<f32>, 256>;
var<workgroup> batch_opacity: array<f32, 256>;
var<workgroup> batch_color: array<vec3<f32>, 256>;
// Position of each batch entry in the tile's list (the batch is compacted, see tile_cull.wgsl).
var<workgroup> batch_position: array<u32, 256>;
var<workgroup> shared_range: vec2<u32>;
// Largest last_contributor of the tile: positions at or past it touched no pixel.
var<workgroup> max_contributor: atomic<u32>;
var<workgroup> max_contributor_snapshot: u32;

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
        atomicStore(&max_contributor, 0u);
    }
    let range = workgroupUniformLoad(&shared_range);

    var t_final = 1.0;
    var last = 0u;
    var grad_pixel = vec3<f32>(0.0);
    if inside {
        let pixel = here.index;
        t_final = final_transmittance[pixel];
        last = last_contributors[pixel];
        grad_pixel = vec3<f32>(grad_image[3u * pixel], grad_image[3u * pixel + 1u], grad_image[3u * pixel + 2u]);
    }
    atomicMax(&max_contributor, last);
    workgroupBarrier();
    if local_index == 0u {
        max_contributor_snapshot = atomicLoad(&max_contributor);
    }
    let count = workgroupUniformLoad(&max_contributor_snapshot);

    // ∂L/∂α of the background term: −T_final / (1 − α) · (bg · ∂L/∂C).
    let background_dot = dot(frame.background.xyz, grad_pixel);
    var transmittance = t_final;
    // Colour composited behind the current splat, normalised by the transmittance in front of it.
    var accum_behind = vec3<f32>(0.0);
    var behind_alpha = 0.0;
    var behind_color = vec3<f32>(0.0);

    let batches = (count + WG - 1u) / WG;
    for (var b = 0u; b < batches; b++) {
        workgroupBarrier();
        // Batch b holds tile-list positions count-1-b·WG down to count-(b+1)·WG.
        // Only splats that can touch the tile are kept (compacted in order, see tile_cull.wgsl).
        let load = b * WG + local_index;
        var id = 0u;
        var p: Projected;
        var keep = false;
        if load < count {
            id = sorted_ids[range.x + count - 1u - load];
            p = projected[id];
            keep = splat_touches(p, centres[0], centres[1]);
        }
        let slot = compact_slot(keep, local_index);
        if keep {
            let k = slot.x;
            batch_id[k] = id;
            batch_mean[k] = vec2<f32>(p.mean_x, p.mean_y);
            batch_conic[k] = vec3<f32>(p.conic_a, p.conic_b, p.conic_c);
            batch_opacity[k] = p.opacity;
            batch_color[k] = vec3<f32>(p.color_r, p.color_g, p.color_b);
            batch_position[k] = count - 1u - load;
        }
        workgroupBarrier();

        let batch_len = slot.y;
        // Every thread runs every iteration (no early `continue`), so that the subgroup variant of
        // accumulate_grads sees whole subgroups.
        for (var j = 0u; j < batch_len; j++) {
            let delta = pixel_centre - batch_mean[j];
            let conic = batch_conic[j];
            let power = -0.5 * (conic.x * delta.x * delta.x + conic.z * delta.y * delta.y) - conic.y * delta.x * delta.y;
            let gaussian = exp(min(power, 0.0));
            let opacity = batch_opacity[j];
            let raw_alpha = opacity * gaussian;
            let alpha = min(MAX_ALPHA, raw_alpha);
            let contributes = inside && batch_position[j] < last && !(power > 0.0) && !(alpha < MIN_ALPHA);

            var grad_mean = vec2<f32>(0.0);
            var grad_conic = vec3<f32>(0.0);
            var grad_color = vec3<f32>(0.0);
            var grad_opacity = 0.0;
            if contributes {
                transmittance = transmittance / (1.0 - alpha);
                let color = batch_color[j];
                grad_color = alpha * transmittance * grad_pixel;

                accum_behind = behind_alpha * behind_color + (1.0 - behind_alpha) * accum_behind;
                behind_alpha = alpha;
                behind_color = color;
                let grad_alpha = dot(color - accum_behind, grad_pixel) * transmittance - t_final / (1.0 - alpha) * background_dot;

                // α = min(MAX_ALPHA, o·G): no gradient through a clamped α.
                if raw_alpha <= MAX_ALPHA {
                    let grad_power = opacity * grad_alpha * gaussian;
                    grad_opacity = gaussian * grad_alpha;
                    // power = −½(a Δx² + c Δy²) − b Δx Δy with Δ = pixel − mean.
                    grad_mean = grad_power * vec2<f32>(conic.x * delta.x + conic.y * delta.y, conic.z * delta.y + conic.y * delta.x);
                    grad_conic = grad_power * vec3<f32>(-0.5 * delta.x * delta.x, -delta.x * delta.y, -0.5 * delta.y * delta.y);
                }
            }
            accumulate_grads(local_index, batch_id[j], contributes, grad_mean, grad_conic, grad_color, grad_opacity);
        }
    }
}
