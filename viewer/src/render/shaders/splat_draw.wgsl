// Splat quads: instance k draws the k-th farthest splat (the sort is nearest first), a 4-vertex
// strip over its pixel rectangle. The fragment evaluates the trainer's compositing weight at the
// pixel centre: power = −½(aΔx² + cΔy²) − bΔxΔy, α = min(MAX_ALPHA, opacity·e^power), skipped
// below MIN_ALPHA, and returns premultiplied colour for "over" blending.
// View block (view.wgsl) and MIN_ALPHA / MAX_ALPHA come first.

@group(1) @binding(0) var<storage, read> splats: array<vec4<f32>>;
@group(1) @binding(1) var<storage, read> sorted_ids: array<u32>;
@group(1) @binding(2) var<uniform> counts: vec4<u32>;

struct VsOut {
    @builtin(position) position: vec4<f32>,
    @location(0) @interpolate(flat) mean: vec2<f32>,
    @location(1) @interpolate(flat) conic: vec3<f32>,
    @location(2) @interpolate(flat) color_opacity: vec4<f32>,
}

@vertex
fn vs_main(@builtin(vertex_index) vertex: u32, @builtin(instance_index) instance: u32) -> VsOut {
    let id = sorted_ids[counts.x - 1u - instance];
    let s0 = splats[4u * id];
    let rect = splats[4u * id + 3u];
    let corner = vec2<f32>(f32(vertex & 1u), f32(vertex >> 1u));
    let pixel = mix(rect.xy, rect.zw, corner);
    var out: VsOut;
    out.position = vec4<f32>(pixel.x * 2.0 * view.viewport.z - 1.0, 1.0 - pixel.y * 2.0 * view.viewport.w, s0.z, 1.0);
    out.mean = s0.xy;
    out.conic = splats[4u * id + 1u].xyz;
    out.color_opacity = vec4<f32>(splats[4u * id + 2u].xyz, s0.w);
    return out;
}

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    // `position.xy` is the pixel centre (i + 0.5, j + 0.5), as in the trainer.
    let d = in.position.xy - in.mean;
    let power = -0.5 * (in.conic.x * d.x * d.x + in.conic.z * d.y * d.y) - in.conic.y * d.x * d.y;
    if power > 0.0 {
        discard;
    }
    let alpha = min(MAX_ALPHA, in.color_opacity.w * exp(power));
    if alpha < MIN_ALPHA {
        discard;
    }
    return vec4<f32>(in.color_opacity.xyz * alpha, alpha);
}
