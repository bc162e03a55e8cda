// Copies the accumulation texture (display-encoded RGB, coverage alpha) to the caller's target.
// `params.x`: the background's alpha; `params.y`: 1 when the target format is sRGB (its hardware
// encode would otherwise apply twice, so values are decoded first).

@group(0) @binding(0) var accum: texture_2d<f32>;
@group(0) @binding(1) var<uniform> params: vec4<f32>;

@vertex
fn vs_main(@builtin(vertex_index) vertex: u32) -> @builtin(position) vec4<f32> {
    // One triangle covering the screen.
    let uv = vec2<f32>(f32((vertex << 1u) & 2u), f32(vertex & 2u));
    return vec4<f32>(uv * 2.0 - 1.0, 0.0, 1.0);
}

@fragment
fn fs_main(@builtin(position) position: vec4<f32>) -> @location(0) vec4<f32> {
    let texel = textureLoad(accum, vec2<i32>(position.xy), 0);
    var rgb = clamp(texel.rgb, vec3<f32>(0.0), vec3<f32>(1.0));
    if params.y > 0.5 {
        rgb = srgb_to_linear(rgb);
    }
    let alpha = texel.a + (1.0 - texel.a) * params.x;
    return vec4<f32>(rgb, alpha);
}
