// Accumulates one view's densification observations into the running statistics, as the CPU's
// `train::densify::accumulate_stats`: for every splat visible in the view (radius fraction > 0),
// grad2d_sum += ‖∂L/∂mean2d‖ (NDC units), visible_count += 1, max_radius = max(max_radius, fraction).

// Per splat [‖∂L/∂mean2d‖ in NDC units, screen radius / max(width, height)] (0 when culled).
@group(0) @binding(0) var<storage, read> observations: array<vec2<f32>>;
@group(0) @binding(1) var<storage, read_write> grad2d_sum: array<f32>;
@group(0) @binding(2) var<storage, read_write> visible_count: array<u32>;
@group(0) @binding(3) var<storage, read_write> max_radius: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>) {
    let i = linear_thread(wid, num_wg, lid);
    // The statistics buffers hold exactly one entry per splat.
    if i >= arrayLength(&grad2d_sum) {
        return;
    }
    let o = observations[i];
    if o.y <= 0.0 {
        return;
    }
    grad2d_sum[i] += o.x;
    visible_count[i] += 1u;
    max_radius[i] = max(max_radius[i], o.y);
}
