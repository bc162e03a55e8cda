// Projection backward (render::project_backward): one thread per splat turns its ProjectedGrad
// into gradients of every parameter, recomputing the forward intermediates. Also writes the
// densification observation [‖∂L/∂mean2d‖ in NDC units, radius / max(width, height)].

@group(0) @binding(0) var<uniform> frame: Frame;
@group(0) @binding(1) var<storage, read> means: array<f32>;
@group(0) @binding(2) var<storage, read> log_scales: array<f32>;
@group(0) @binding(3) var<storage, read> rotations: array<f32>;
@group(0) @binding(4) var<storage, read> opacity_logits: array<f32>;
@group(0) @binding(5) var<storage, read> sh: array<f32>;
@group(0) @binding(6) var<storage, read> projected: array<Projected>;
@group(0) @binding(7) var<storage, read> projected_grads: array<f32>;
@group(0) @binding(8) var<storage, read_write> grad_means: array<f32>;
@group(0) @binding(9) var<storage, read_write> grad_log_scales: array<f32>;
@group(0) @binding(10) var<storage, read_write> grad_rotations: array<f32>;
@group(0) @binding(11) var<storage, read_write> grad_opacity_logits: array<f32>;
@group(0) @binding(12) var<storage, read_write> grad_sh: array<f32>;
@group(0) @binding(13) var<storage, read_write> densify: array<vec2<f32>>;

// ∂/∂d of Σₖ w[k]·Yₖ(d) (not yet projected onto the unit sphere).
fn sh_direction_grad(d: vec3<f32>, degree: u32, w: array<f32, 16>) -> vec3<f32> {
    var g = vec3<f32>(0.0);
    if degree >= 1u {
        g += SH_C1 * vec3<f32>(-w[3], -w[1], w[2]);
    }
    if degree >= 2u {
        let x = d.x;
        let y = d.y;
        let z = d.z;
        g += SH_C2[0] * w[4] * vec3<f32>(y, x, 0.0);
        g += SH_C2[1] * w[5] * vec3<f32>(0.0, z, y);
        g += SH_C2[2] * w[6] * vec3<f32>(-2.0 * x, -2.0 * y, 4.0 * z);
        g += SH_C2[3] * w[7] * vec3<f32>(z, 0.0, x);
        g += SH_C2[4] * w[8] * vec3<f32>(2.0 * x, -2.0 * y, 0.0);
    }
    if degree >= 3u {
        let x = d.x;
        let y = d.y;
        let z = d.z;
        let xx = x * x;
        let yy = y * y;
        let zz = z * z;
        g += SH_C3[0] * w[9] * vec3<f32>(6.0 * x * y, 3.0 * xx - 3.0 * yy, 0.0);
        g += SH_C3[1] * w[10] * vec3<f32>(y * z, x * z, x * y);
        g += SH_C3[2] * w[11] * vec3<f32>(-2.0 * x * y, 4.0 * zz - xx - 3.0 * yy, 8.0 * y * z);
        g += SH_C3[3] * w[12] * vec3<f32>(-6.0 * x * z, -6.0 * y * z, 6.0 * zz - 3.0 * xx - 3.0 * yy);
        g += SH_C3[4] * w[13] * vec3<f32>(4.0 * zz - 3.0 * xx - yy, -2.0 * x * y, 8.0 * x * z);
        g += SH_C3[5] * w[14] * vec3<f32>(2.0 * x * z, -2.0 * y * z, xx - yy);
        g += SH_C3[6] * w[15] * vec3<f32>(3.0 * xx - 3.0 * yy, -6.0 * x * y, 0.0);
    }
    return g;
}

// ∂L/∂q for the unit quaternion q = (w, x, y, z), given G = ∂L/∂R(q) (G[c][r] = column c, row r).
fn quat_grad(q: vec4<f32>, g: mat3x3<f32>) -> vec4<f32> {
    let w = q.x;
    let x = q.y;
    let y = q.z;
    let z = q.w;
    // gRC = ∂L/∂R[row R][column C].
    let g00 = g[0][0];
    let g01 = g[1][0];
    let g02 = g[2][0];
    let g10 = g[0][1];
    let g11 = g[1][1];
    let g12 = g[2][1];
    let g20 = g[0][2];
    let g21 = g[1][2];
    let g22 = g[2][2];
    return 2.0 * vec4<f32>(
        -z * g01 + y * g02 + z * g10 - x * g12 - y * g20 + x * g21,
        y * g01 + z * g02 + y * g10 - 2.0 * x * g11 - w * g12 + z * g20 + w * g21 - 2.0 * x * g22,
        -2.0 * y * g00 + x * g01 + w * g02 + x * g10 + z * g12 - w * g20 + z * g21 - 2.0 * y * g22,
        -2.0 * z * g00 - w * g01 + x * g02 + w * g10 - 2.0 * z * g11 + y * g12 + x * g20 + y * g21,
    );
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg_id: vec3<u32>, @builtin(num_workgroups) num_wg: vec3<u32>, @builtin(local_invocation_index) local_index: u32) {
    let i = linear_thread(wg_id, num_wg, local_index);
    if i >= frame.num_splats {
        return;
    }
    let proj = projected[i];
    if proj.radius == 0u {
        // Culled: every gradient stays zero (the buffers start zeroed).
        densify[i] = vec2<f32>(0.0);
        return;
    }
    let gb = GRAD_STRIDE * i;
    let grad_mean2d = vec2<f32>(projected_grads[gb + GRAD_MEAN_X], projected_grads[gb + GRAD_MEAN_Y]);
    let grad_conic = vec3<f32>(projected_grads[gb + GRAD_CONIC_A], projected_grads[gb + GRAD_CONIC_B], projected_grads[gb + GRAD_CONIC_C]);
    let grad_color_in = vec3<f32>(projected_grads[gb + GRAD_COLOR_R], projected_grads[gb + GRAD_COLOR_G], projected_grads[gb + GRAD_COLOR_B]);
    let grad_opacity = projected_grads[gb + GRAD_OPACITY];

    let w = f32(frame.width);
    let h = f32(frame.height);
    densify[i] = vec2<f32>(length(grad_mean2d * vec2<f32>(0.5 * w, 0.5 * h)), f32(proj.radius) / max(w, h));

    // Opacity: sigmoid.
    let opacity = 1.0 / (1.0 + exp(-opacity_logits[i]));
    grad_opacity_logits[i] = grad_opacity * opacity * (1.0 - opacity);

    // Recompute the forward intermediates.
    let mean = splat_mean(i);
    let rot = camera_rotation();
    let p = rot * mean + frame.translation.xyz;
    let q_raw = splat_rotation(i);
    let q_len = length(q_raw);
    let q = q_raw / q_len;
    let scale = exp(splat_log_scale(i));
    let r_q = quat_to_mat(q);
    let m = mat3x3<f32>(r_q[0] * scale.x, r_q[1] * scale.y, r_q[2] * scale.z);
    let cov_world = m * transpose(m);
    let cov_camera = rot * cov_world * transpose(rot);
    let uv = clamped_uv(p);
    let jac = projection_jacobian(p.z, uv);

    // Colour: SH coefficients and the viewing direction (zero on clamped channels).
    let dir_raw = mean - frame.cam_center.xyz;
    let dir_len = length(dir_raw);
    let dir = dir_raw / dir_len;
    let basis = sh_basis(dir, frame.sh_degree);
    var raw_color = vec3<f32>(0.5);
    for (var k = 0u; k < 16u; k++) {
        raw_color += basis[k] * sh_coeff(i, k);
    }
    // A channel is clamped (no gradient) when its raw value is negative, as in the CPU reference.
    let grad_color = select(vec3<f32>(0.0), grad_color_in, raw_color >= vec3<f32>(0.0));
    var weights: array<f32, 16>;
    for (var k = 0u; k < 16u; k++) {
        let g = basis[k] * grad_color;
        let base = i * 48u + k * 3u;
        grad_sh[base] = g.x;
        grad_sh[base + 1u] = g.y;
        grad_sh[base + 2u] = g.z;
        weights[k] = dot(sh_coeff(i, k), grad_color);
    }
    let grad_dir = sh_direction_grad(dir, frame.sh_degree, weights);
    var grad_mean = (grad_dir - dir * dot(dir, grad_dir)) / dir_len;

    // Conic = Σ2⁻¹: ∂L/∂Σ2 = −C G C, G the symmetric gradient of the conic matrix.
    let conic = mat2x2<f32>(proj.conic_a, proj.conic_b, proj.conic_b, proj.conic_c);
    let g_conic = mat2x2<f32>(grad_conic.x, 0.5 * grad_conic.y, 0.5 * grad_conic.y, grad_conic.z);
    let grad_cov2d = -1.0 * (conic * g_conic * conic);
    // Σ2 = J Σc Jᵀ + low-pass.
    let grad_cov_camera = transpose(jac) * grad_cov2d * jac;
    let grad_jac = 2.0 * (grad_cov2d * jac * cov_camera);

    // Camera-frame centre p: through mean2d and J.
    let z = p.z;
    let z2 = z * z;
    var grad_p = vec3<f32>(
        grad_mean2d.x * frame.fx / z,
        grad_mean2d.y * frame.fy / z,
        -(grad_mean2d.x * frame.fx * p.x + grad_mean2d.y * frame.fy * p.y) / z2,
    );
    grad_p.z += -(grad_jac[0][0] * frame.fx + grad_jac[1][1] * frame.fy) / z2;
    // J02 = −fx·u/z with u = x/z when free (∂/∂x = −fx/z², ∂/∂z = 2fx·u/z²), constant when
    // clamped (∂/∂z = fx·u/z²); likewise J12 with v.
    grad_p.x += grad_jac[2][0] * (-frame.fx / z2) * uv.z;
    grad_p.y += grad_jac[2][1] * (-frame.fy / z2) * uv.w;
    grad_p.z += grad_jac[2][0] * frame.fx * uv.x / z2 * (1.0 + uv.z);
    grad_p.z += grad_jac[2][1] * frame.fy * uv.y / z2 * (1.0 + uv.w);
    grad_mean += transpose(rot) * grad_p;

    // Σc = R Σ Rᵀ, Σ = M Mᵀ, M = R(q) diag(s).
    let grad_cov_world = transpose(rot) * grad_cov_camera * rot;
    let grad_m = 2.0 * (grad_cov_world * m);
    let grad_scale = vec3<f32>(dot(r_q[0], grad_m[0]), dot(r_q[1], grad_m[1]), dot(r_q[2], grad_m[2]));
    let grad_log_scale = grad_scale * scale;
    let grad_rq = mat3x3<f32>(grad_m[0] * scale.x, grad_m[1] * scale.y, grad_m[2] * scale.z);
    let grad_q = quat_grad(q, grad_rq);
    // Through the normalisation q = q_raw / |q_raw|.
    let grad_q_raw = (grad_q - q * dot(q, grad_q)) / q_len;

    grad_means[3u * i] = grad_mean.x;
    grad_means[3u * i + 1u] = grad_mean.y;
    grad_means[3u * i + 2u] = grad_mean.z;
    grad_log_scales[3u * i] = grad_log_scale.x;
    grad_log_scales[3u * i + 1u] = grad_log_scale.y;
    grad_log_scales[3u * i + 2u] = grad_log_scale.z;
    grad_rotations[4u * i] = grad_q_raw.x;
    grad_rotations[4u * i + 1u] = grad_q_raw.y;
    grad_rotations[4u * i + 2u] = grad_q_raw.z;
    grad_rotations[4u * i + 3u] = grad_q_raw.w;
}
