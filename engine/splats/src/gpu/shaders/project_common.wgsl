// Shared by project_forward and project_backward: parameter buffers, the SH basis and the
// quaternion rotation.

// Real SH constants of the 3DGS convention (degree 1, 2, 3).
const SH_C1: f32 = 0.4886025119029199;
const SH_C2 = array<f32, 5>(1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396);
const SH_C3 = array<f32, 7>(-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658, 1.445305721320277, -0.5900435899266435);

// camera_from_world rotation as a matrix.
fn camera_rotation() -> mat3x3<f32> {
    return mat3x3<f32>(frame.rot_col0.xyz, frame.rot_col1.xyz, frame.rot_col2.xyz);
}

// The 16 real SH basis functions at unit direction `d`, zero above `degree`.
fn sh_basis(d: vec3<f32>, degree: u32) -> array<f32, 16> {
    var y: array<f32, 16>;
    y[0] = SH_C0;
    if degree >= 1u {
        y[1] = -SH_C1 * d.y;
        y[2] = SH_C1 * d.z;
        y[3] = -SH_C1 * d.x;
    }
    if degree >= 2u {
        let xx = d.x * d.x;
        let yy = d.y * d.y;
        let zz = d.z * d.z;
        y[4] = SH_C2[0] * d.x * d.y;
        y[5] = SH_C2[1] * d.y * d.z;
        y[6] = SH_C2[2] * (2.0 * zz - xx - yy);
        y[7] = SH_C2[3] * d.x * d.z;
        y[8] = SH_C2[4] * (xx - yy);
    }
    if degree >= 3u {
        let xx = d.x * d.x;
        let yy = d.y * d.y;
        let zz = d.z * d.z;
        y[9] = SH_C3[0] * d.y * (3.0 * xx - yy);
        y[10] = SH_C3[1] * d.x * d.y * d.z;
        y[11] = SH_C3[2] * d.y * (4.0 * zz - xx - yy);
        y[12] = SH_C3[3] * d.z * (2.0 * zz - 3.0 * xx - 3.0 * yy);
        y[13] = SH_C3[4] * d.x * (4.0 * zz - xx - yy);
        y[14] = SH_C3[5] * d.z * (xx - yy);
        y[15] = SH_C3[6] * d.x * (xx - 3.0 * yy);
    }
    return y;
}


// Rotation matrix of a unit quaternion (w, x, y, z).
fn quat_to_mat(q: vec4<f32>) -> mat3x3<f32> {
    let w = q.x;
    let x = q.y;
    let y = q.z;
    let z = q.w;
    // Columns of the usual row-major formula.
    return mat3x3<f32>(
        vec3<f32>(1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y)),
        vec3<f32>(2.0 * (x * y - w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + w * x)),
        vec3<f32>(2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y)),
    );
}

fn splat_mean(i: u32) -> vec3<f32> {
    return vec3<f32>(means[3u * i], means[3u * i + 1u], means[3u * i + 2u]);
}

fn splat_log_scale(i: u32) -> vec3<f32> {
    return vec3<f32>(log_scales[3u * i], log_scales[3u * i + 1u], log_scales[3u * i + 2u]);
}

fn splat_rotation(i: u32) -> vec4<f32> {
    return vec4<f32>(rotations[4u * i], rotations[4u * i + 1u], rotations[4u * i + 2u], rotations[4u * i + 3u]);
}

// The Jacobian's clamped normalised coordinates: x/z and y/z limited to 1.3× the half-field of
// view on each side. Returns (u, v, u_free, v_free) where *_free is 1 when not clamped.
fn clamped_uv(p: vec3<f32>) -> vec4<f32> {
    let w = f32(frame.width);
    let h = f32(frame.height);
    let u_raw = p.x / p.z;
    let v_raw = p.y / p.z;
    let u = clamp(u_raw, -1.3 * frame.cx / frame.fx, 1.3 * (w - frame.cx) / frame.fx);
    let v = clamp(v_raw, -1.3 * frame.cy / frame.fy, 1.3 * (h - frame.cy) / frame.fy);
    return vec4<f32>(u, v, select(0.0, 1.0, u == u_raw), select(0.0, 1.0, v == v_raw));
}

// The 2×3 projection Jacobian (3 columns, 2 rows).
fn projection_jacobian(z: f32, uv: vec4<f32>) -> mat3x2<f32> {
    return mat3x2<f32>(
        vec2<f32>(frame.fx / z, 0.0),
        vec2<f32>(0.0, frame.fy / z),
        vec2<f32>(-frame.fx * uv.x / z, -frame.fy * uv.y / z),
    );
}

// World-space covariance Σ = M Mᵀ with M = R(q) diag(s); `q` already normalised.
fn world_covariance(q: vec4<f32>, scale: vec3<f32>) -> mat3x3<f32> {
    let r = quat_to_mat(q);
    let m = mat3x3<f32>(r[0] * scale.x, r[1] * scale.y, r[2] * scale.z);
    return m * transpose(m);
}
