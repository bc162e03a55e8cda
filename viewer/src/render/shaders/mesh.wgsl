// Mesh shading: view block (view.wgsl) and sRGB functions (srgb.wgsl) come first.
// Lit: albedo (baseColorFactor × sRGB texture × vertex colour) under a headlight plus a sky/ground
// hemisphere, with the normal map applied through a cotangent frame built from screen-space
// derivatives (no tangents needed). Matcap: a clay look from the view-space normal.
// Output: display-encoded colour, alpha 1 (opaque).

struct Material {
    base_color_factor: vec4<f32>,
    // x: has normals, y: has a normal map, z: has UVs.
    flags: vec4<f32>,
}

@group(1) @binding(0) var<uniform> material: Material;
@group(1) @binding(1) var base_color: texture_2d<f32>;
@group(1) @binding(2) var normal_map: texture_2d<f32>;
@group(1) @binding(3) var material_sampler: sampler;

struct VsIn {
    @location(0) position: vec3<f32>,
    @location(1) normal: vec3<f32>,
    @location(2) uv: vec2<f32>,
    @location(3) color: vec4<f32>,
}

struct VsOut {
    @builtin(position) @invariant clip: vec4<f32>,
    @location(0) world: vec3<f32>,
    @location(1) normal: vec3<f32>,
    @location(2) uv: vec2<f32>,
    @location(3) color: vec4<f32>,
}

/// Fraction by which edge lines are pulled towards the camera so they win the depth test
/// against their own faces (reverse-Z: larger is nearer).
const LINE_DEPTH_PULL: f32 = 1.0e-3;

@vertex
fn vs_main(in: VsIn) -> VsOut {
    var out: VsOut;
    out.clip = view.clip_from_world * vec4<f32>(in.position, 1.0);
    out.world = in.position;
    out.normal = in.normal;
    out.uv = in.uv;
    out.color = in.color;
    return out;
}

@vertex
fn vs_edges(in: VsIn) -> @builtin(position) vec4<f32> {
    let clip = view.clip_from_world * vec4<f32>(in.position, 1.0);
    return vec4<f32>(clip.xy, clip.z * (1.0 + LINE_DEPTH_PULL), clip.w);
}

@fragment
fn fs_edges() -> @location(0) vec4<f32> {
    return vec4<f32>(0.08, 0.09, 0.1, 1.0);
}

// Shading normal facing the camera: the vertex normal, or the face normal when there is none.
fn surface_normal(in: VsOut, to_camera: vec3<f32>) -> vec3<f32> {
    var n = normalize(cross(dpdx(in.world), dpdy(in.world)));
    if material.flags.x > 0.5 && length(in.normal) > 0.5 {
        n = normalize(in.normal);
    }
    if dot(n, to_camera) < 0.0 {
        n = -n;
    }
    return n;
}

// The normal map's tangent-space normal in world space. glTF normal maps have +Y up in texture
// space while v grows downwards, hence the minus on the bitangent.
fn mapped_normal(in: VsOut, n: vec3<f32>) -> vec3<f32> {
    let dp1 = dpdx(in.world);
    let dp2 = dpdy(in.world);
    let duv1 = dpdx(in.uv);
    let duv2 = dpdy(in.uv);
    let dp2perp = cross(dp2, n);
    let dp1perp = cross(n, dp1);
    let t = dp2perp * duv1.x + dp1perp * duv2.x;
    let b = dp2perp * duv1.y + dp1perp * duv2.y;
    let scale = inverseSqrt(max(max(dot(t, t), dot(b, b)), 1e-30));
    let tangent_normal = textureSample(normal_map, material_sampler, in.uv).xyz * 2.0 - 1.0;
    let mapped = mat3x3<f32>(t * scale, -b * scale, n) * tangent_normal;
    return select(n, normalize(mapped), dot(mapped, mapped) > 1e-12);
}

@fragment
fn fs_lit(in: VsOut) -> @location(0) vec4<f32> {
    let to_camera = normalize(view.camera_center.xyz - in.world);
    var n = surface_normal(in, to_camera);
    // Sampled outside control flow (derivatives must be uniform), used only with UVs.
    let texel = textureSample(base_color, material_sampler, in.uv);
    let mapped = mapped_normal(in, n);
    if material.flags.y > 0.5 && material.flags.z > 0.5 {
        n = mapped;
    }
    var albedo = material.base_color_factor * in.color;
    if material.flags.z > 0.5 {
        albedo *= texel;
    }
    let headlight = max(dot(n, to_camera), 0.0);
    let sky = vec3<f32>(1.0, 1.0, 1.0);
    let ground = vec3<f32>(0.35, 0.32, 0.3);
    let hemisphere = mix(ground, sky, 0.5 + 0.5 * dot(n, view.up.xyz));
    let light = 0.7 * headlight + 0.4 * hemisphere;
    return vec4<f32>(linear_to_srgb(albedo.rgb * light), 1.0);
}

@fragment
fn fs_matcap(in: VsOut) -> @location(0) vec4<f32> {
    let to_camera = normalize(view.camera_center.xyz - in.world);
    let n = surface_normal(in, to_camera);
    // View-space normal, OpenCV axes: facing the camera means −Z.
    let nv = normalize((view.camera_from_world * vec4<f32>(n, 0.0)).xyz);
    let facing = max(-nv.z, 0.0);
    let key = normalize(vec3<f32>(-0.5, -0.6, -1.0));
    let diffuse = max(dot(nv, key), 0.0);
    let half_vector = normalize(key + vec3<f32>(0.0, 0.0, -1.0));
    let specular = pow(max(dot(nv, half_vector), 0.0), 40.0);
    let rim = pow(1.0 - facing, 3.0);
    let clay = vec3<f32>(0.78, 0.72, 0.66);
    let linear = clay * (0.15 + 0.75 * diffuse + 0.15 * facing) + vec3<f32>(0.25 * specular + 0.2 * rim);
    return vec4<f32>(linear_to_srgb(linear), 1.0);
}
