// Camera frustums (a line list) and sparse points (instanced screen-space squares). The view
// block (view.wgsl) comes first. Colours are display-encoded; output alpha 1.

/// Side of a sparse point's square, in pixels.
const POINT_SIZE_PX: f32 = 3.0;

struct LineIn {
    @location(0) position: vec3<f32>,
    @location(1) color: vec4<f32>,
}

struct VsOut {
    @builtin(position) clip: vec4<f32>,
    @location(0) color: vec4<f32>,
}

@vertex
fn vs_lines(in: LineIn) -> VsOut {
    var out: VsOut;
    out.clip = view.clip_from_world * vec4<f32>(in.position, 1.0);
    out.color = in.color;
    return out;
}

@vertex
fn vs_points(@builtin(vertex_index) vertex: u32, in: LineIn) -> VsOut {
    let corner = vec2<f32>(f32(vertex & 1u), f32(vertex >> 1u)) - 0.5;
    var clip = view.clip_from_world * vec4<f32>(in.position, 1.0);
    // Offset in pixels → NDC (y flipped) → clip (times w).
    clip = vec4<f32>(clip.xy + corner * POINT_SIZE_PX * 2.0 * view.viewport.zw * vec2<f32>(1.0, -1.0) * clip.w, clip.zw);
    var out: VsOut;
    out.clip = clip;
    out.color = in.color;
    return out;
}

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    return vec4<f32>(in.color.rgb, 1.0);
}
