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
var<workgroup> shared_range: vec2<u32>;
// Largest last_contributor of the tile: positions at or past it touched no pixel.
var<workgroup> max_contributor: atomic<u32>;
var<workgroup> max_contributor_snapshot: u32;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>, @builtin(local_invocation_index) local_index: u32) {
    let tile = linear_workgroup(wg_id, num_wg);
    let tile_x = tile % frame.tiles_x;
    let tile_y = tile / frame.tiles_x;
    let px = tile_x * TILE_SIZE + local_index % TILE_SIZE;
    let py = tile_y * TILE_SIZE + local_index / TILE_SIZE;
    let inside = tile < frame.tiles_x * frame.tiles_y && px < frame.width && py < frame.height;
    let pixel_centre = vec2<f32>(f32(px) + 0.5, f32(py) + 0.5);

    if local_index == 0u {
        var range = vec2<u32>(0u);
        if tile < frame.tiles_x * frame.tiles_y {
            range = tile_ranges[tile];
        }
        shared_range = range;
        atomicStore(&max_contributor, 0u);
    }
    let range = workgroupUniformLoad(&shared_range);

    var t_final = 1.0;
    var last = 0u;
    var grad_pixel = vec3<f32>(0.0);
    if inside {
        let pixel = py * frame.width + px;
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
        let load = b * WG + local_index;
        if load < count {
            let id = sorted_ids[range.x + count - 1u - load];
            let p = projected[id];
            batch_id[local_index] = id;
            batch_mean[local_index] = vec2<f32>(p.mean_x, p.mean_y);
            batch_conic[local_index] = vec3<f32>(p.conic_a, p.conic_b, p.conic_c);
            batch_opacity[local_index] = p.opacity;
            batch_color[local_index] = vec3<f32>(p.color_r, p.color_g, p.color_b);
        }
        workgroupBarrier();

        let batch_len = min(WG, count - b * WG);
        for (var j = 0u; j < batch_len; j++) {
            let position = count - 1u - (b * WG + j);
            if !inside || position >= last {
                continue;
            }
            let delta = pixel_centre - batch_mean[j];
            let conic = batch_conic[j];
            let power = -0.5 * (conic.x * delta.x * delta.x + conic.z * delta.y * delta.y) - conic.y * delta.x * delta.y;
            if power > 0.0 {
                continue;
            }
            let gaussian = exp(power);
            let opacity = batch_opacity[j];
            let raw_alpha = opacity * gaussian;
            let alpha = min(MAX_ALPHA, raw_alpha);
            if alpha < MIN_ALPHA {
                continue;
            }
            transmittance = transmittance / (1.0 - alpha);
            let color = batch_color[j];
            let grad_color = alpha * transmittance * grad_pixel;

            accum_behind = behind_alpha * behind_color + (1.0 - behind_alpha) * accum_behind;
            behind_alpha = alpha;
            behind_color = color;
            let grad_alpha = dot(color - accum_behind, grad_pixel) * transmittance - t_final / (1.0 - alpha) * background_dot;

            // α = min(MAX_ALPHA, o·G): no gradient through a clamped α.
            var grad_gaussian = 0.0;
            var grad_opacity = 0.0;
            if raw_alpha <= MAX_ALPHA {
                grad_gaussian = opacity * grad_alpha;
                grad_opacity = gaussian * grad_alpha;
            }
            let grad_power = grad_gaussian * gaussian;
            // power = −½(a Δx² + c Δy²) − b Δx Δy with Δ = pixel − mean.
            let grad_mean = grad_power * vec2<f32>(conic.x * delta.x + conic.y * delta.y, conic.z * delta.y + conic.y * delta.x);
            let grad_conic = grad_power * vec3<f32>(-0.5 * delta.x * delta.x, -delta.x * delta.y, -0.5 * delta.y * delta.y);

            let base = GRAD_STRIDE * batch_id[j];
            add_grad(base + GRAD_MEAN_X, grad_mean.x);
            add_grad(base + GRAD_MEAN_Y, grad_mean.y);
            add_grad(base + GRAD_CONIC_A, grad_conic.x);
            add_grad(base + GRAD_CONIC_B, grad_conic.y);
            add_grad(base + GRAD_CONIC_C, grad_conic.z);
            add_grad(base + GRAD_COLOR_R, grad_color.x);
            add_grad(base + GRAD_COLOR_G, grad_color.y);
            add_grad(base + GRAD_COLOR_B, grad_color.z);
            add_grad(base + GRAD_OPACITY, grad_opacity);
        }
    }
}
