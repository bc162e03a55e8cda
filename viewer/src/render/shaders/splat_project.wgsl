// Splat projection for drawing (kiln_engine::render, steps 1-8), one thread per splat. The
// engine's prelude (constants, `Frame`, `tile_rect`, `linear_thread`) and its
// `project_common.wgsl` (SH basis, covariance, clamped Jacobian) and `sh_f16.wgsl` come first, so the maths is the
// trainer's own code. Per splat it writes 4 vec4s:
//   [mean_x, mean_y, ndc depth (near / z), opacity], [conic a, b, c, 0], [rgb, 0],
//   [x0, y0, x1, y1]: the pixel rectangle the quad covers, empty (all 0) when culled.
// The rectangle is the trainer's tile rectangle of the splat intersected with the box around
// the ellipse where α ≥ MIN_ALPHA (widened by a pixel), so the quad's fragments are exactly the
// pixels the trainer's tiles composite this splat into.

@group(0) @binding(0) var<uniform> frame: Frame;
@group(0) @binding(1) var<uniform> sh_frame: ShFrame;
@group(0) @binding(2) var<storage, read> means: array<f32>;
@group(0) @binding(3) var<storage, read> log_scales: array<f32>;
@group(0) @binding(4) var<storage, read> rotations: array<f32>;
@group(0) @binding(5) var<storage, read> opacity_logits: array<f32>;
@group(0) @binding(6) var<storage, read> sh: array<u32>;
@group(0) @binding(7) var<storage, read_write> out_splats: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> depth_keys: array<u32>;
@group(0) @binding(9) var<storage, read_write> splat_ids: array<u32>;

// Rotation from the scene frame to the frame the SH were fitted in (columns; w unused).
struct ShFrame {
    col0: vec4<f32>,
    col1: vec4<f32>,
    col2: vec4<f32>,
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>, @builtin(local_invocation_index) local_index: u32) {
    let i = linear_thread(wg_id, num_wg, local_index);
    if i >= frame.num_splats {
        return;
    }
    out_splats[4u * i + 3u] = vec4<f32>(0.0);
    depth_keys[i] = 0xffffffffu;
    splat_ids[i] = i;

    let mean = splat_mean(i);
    let rot = camera_rotation();
    let p = rot * mean + frame.translation.xyz;
    if p.z < NEAR_PLANE {
        return;
    }
    let q = normalize(splat_rotation(i));
    let cov_camera = rot * world_covariance(q, exp(splat_log_scale(i))) * transpose(rot);
    let jac = projection_jacobian(p.z, clamped_uv(p));
    let cov2d = jac * cov_camera * transpose(jac) + mat2x2<f32>(LOW_PASS, 0.0, 0.0, LOW_PASS);
    let a = cov2d[0][0];
    let b = cov2d[0][1];
    let c = cov2d[1][1];
    let det = a * c - b * b;
    if !(det > 0.0) {
        return;
    }
    let mean2d = vec2<f32>(frame.fx * p.x / p.z + frame.cx, frame.fy * p.y / p.z + frame.cy);
    let mid = 0.5 * (a + c);
    let lambda_max = mid + sqrt(max(0.1, mid * mid - det));
    let radius = u32(ceil(3.0 * sqrt(lambda_max)));
    let tiles = tile_rect(mean2d.x, mean2d.y, radius, frame.tiles_x, frame.tiles_y);
    let opacity = 1.0 / (1.0 + exp(-opacity_logits[i]));
    if tiles.x >= tiles.z || tiles.y >= tiles.w || opacity < MIN_ALPHA {
        return;
    }
    let level = 2.0 * log(opacity / MIN_ALPHA);
    let extent = sqrt(max(level, 0.0) * vec2<f32>(a, c)) + 1.0;
    let image = vec2<f32>(f32(frame.width), f32(frame.height));
    let lo = max(vec2<f32>(f32(tiles.x), f32(tiles.y)) * f32(TILE_SIZE), mean2d - extent);
    let hi = min(min(vec2<f32>(f32(tiles.z), f32(tiles.w)) * f32(TILE_SIZE), image), mean2d + extent);
    if any(lo >= hi) {
        return;
    }

    let sh_from_world = mat3x3<f32>(sh_frame.col0.xyz, sh_frame.col1.xyz, sh_frame.col2.xyz);
    let dir = sh_from_world * normalize(mean - frame.cam_center.xyz);
    let basis = sh_basis(dir, frame.sh_degree);
    var color = vec3<f32>(0.5);
    for (var k = 0u; k < 16u; k++) {
        color += basis[k] * sh_coeff(i, k);
    }
    color = max(color, vec3<f32>(0.0));

    out_splats[4u * i] = vec4<f32>(mean2d, NEAR_PLANE / p.z, opacity);
    out_splats[4u * i + 1u] = vec4<f32>(c / det, -b / det, a / det, 0.0);
    out_splats[4u * i + 2u] = vec4<f32>(color, 0.0);
    out_splats[4u * i + 3u] = vec4<f32>(lo, hi);
    // Depth is positive (≥ NEAR_PLANE), so its IEEE bits order like the floats.
    depth_keys[i] = bitcast<u32>(p.z);
}
