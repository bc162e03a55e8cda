// Projection forward (render::project): one thread per splat writes its ProjectedSplat, the
// number of tiles it touches (0 when culled) and its depth sort key.

@group(0) @binding(0) var<uniform> frame: Frame;
@group(0) @binding(1) var<storage, read> means: array<f32>;
@group(0) @binding(2) var<storage, read> log_scales: array<f32>;
@group(0) @binding(3) var<storage, read> rotations: array<f32>;
@group(0) @binding(4) var<storage, read> opacity_logits: array<f32>;
@group(0) @binding(5) var<storage, read> sh: array<f32>;
@group(0) @binding(6) var<storage, read_write> projected: array<Projected>;
@group(0) @binding(7) var<storage, read_write> tiles_touched: array<u32>;
// Sort keys and values that put the splats in depth order (culled ones last).
@group(0) @binding(8) var<storage, read_write> depth_keys: array<u32>;
@group(0) @binding(9) var<storage, read_write> splat_ids: array<u32>;

fn culled() -> Projected {
    return Projected(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0u);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>, @builtin(local_invocation_index) local_index: u32) {
    let i = linear_thread(wg_id, num_wg, local_index);
    if i >= frame.num_splats {
        return;
    }
    projected[i] = culled();
    tiles_touched[i] = 0u;
    depth_keys[i] = 0xffffffffu;
    splat_ids[i] = i;

    // 1. Camera frame; near-plane cull.
    let mean = splat_mean(i);
    let p = camera_rotation() * mean + frame.translation.xyz;
    if p.z < NEAR_PLANE {
        return;
    }

    // 2-4. Σ2 = J R Σ Rᵀ Jᵀ + low-pass.
    let q = normalize(splat_rotation(i));
    let cov_world = world_covariance(q, exp(splat_log_scale(i)));
    let rot = camera_rotation();
    let cov_camera = rot * cov_world * transpose(rot);
    let jac = projection_jacobian(p.z, clamped_uv(p));
    let cov2d = jac * cov_camera * transpose(jac) + mat2x2<f32>(LOW_PASS, 0.0, 0.0, LOW_PASS);
    let a = cov2d[0][0];
    let b = cov2d[0][1];
    let c = cov2d[1][1];
    let det = a * c - b * b;
    // `!(det > 0)` also culls a NaN determinant, as the CPU reference does.
    if !(det > 0.0) {
        return;
    }

    // 5-6. Centre, radius and tile rectangle.
    let mean_x = frame.fx * p.x / p.z + frame.cx;
    let mean_y = frame.fy * p.y / p.z + frame.cy;
    let mid = 0.5 * (a + c);
    let lambda_max = mid + sqrt(max(0.1, mid * mid - det));
    let radius = u32(ceil(3.0 * sqrt(lambda_max)));
    let rect = tile_rect(mean_x, mean_y, radius, frame.tiles_x, frame.tiles_y);
    let area = (rect.z - rect.x) * (rect.w - rect.y);
    if area == 0u {
        return;
    }

    // 7. View-dependent colour.
    let dir = normalize(mean - frame.cam_center.xyz);
    let basis = sh_basis(dir, frame.sh_degree);
    var color = vec3<f32>(0.5);
    for (var k = 0u; k < 16u; k++) {
        color += basis[k] * sh_coeff(i, k);
    }
    color = max(color, vec3<f32>(0.0));

    // 8. Opacity and depth.
    let opacity = 1.0 / (1.0 + exp(-opacity_logits[i]));
    projected[i] = Projected(mean_x, mean_y, c / det, -b / det, a / det, p.z, color.r, color.g, color.b, opacity, radius);
    tiles_touched[i] = area;
    // Depth is positive (≥ NEAR_PLANE), so its IEEE bits order like the floats.
    depth_keys[i] = bitcast<u32>(p.z);
}
