//! Projection of 3D Gaussians into a camera (EWA splatting, steps 1–8 of the contract in
//! `render`), and its backward pass.
//!
//! The per-splat kernels are generic over [`Real`] so that the finite-difference tests run them in
//! `f64`; [`project`] and [`project_backward`] are the `f32` production instantiation, parallel
//! over splats.

use rayon::prelude::*;

use crate::render::real::{Real, arr, arr_f32};
use crate::render::{LOW_PASS, NEAR_PLANE, ProjectedGrad, ProjectedSplat, sh, tiles};
use kiln_core::camera::Camera;
use kiln_core::splats::{SH_COEFFS, SplatGrads, Splats};

/// Splats per rayon task: projection is ~100 ns per splat, so smaller tasks cost more in
/// scheduling than they save in balance.
const SPLATS_PER_TASK: usize = 1024;
/// The Jacobian's view direction is clamped to this many half-fields-of-view (3DGS's value), so
/// splats far outside the frustum do not get huge footprints.
const FRUSTUM_SLACK: f64 = 1.3;

type Mat3<T> = [[T; 3]; 3];

/// What projection needs from a camera, in `T`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CameraModel<T> {
    /// `camera_from_world` rotation, row-major.
    pub rotation: Mat3<T>,
    pub translation: [T; 3],
    /// Camera centre in the world frame.
    pub centre: [T; 3],
    pub fx: T,
    pub fy: T,
    pub cx: T,
    pub cy: T,
    pub width: u32,
    pub height: u32,
}

impl<T: Real> CameraModel<T> {
    pub fn new(camera: &Camera) -> Self {
        let camera_from_world = camera.camera_from_world();
        let r = camera_from_world.rotation.transpose().to_cols_array_2d();
        let k = camera.intrinsics;
        Self {
            rotation: r.map(arr),
            translation: arr(camera_from_world.translation.to_array()),
            centre: arr(camera.center().to_array()),
            fx: T::from_f32(k.fx),
            fy: T::from_f32(k.fy),
            cx: T::from_f32(k.cx),
            cy: T::from_f32(k.cy),
            width: k.width,
            height: k.height,
        }
    }
}

/// One splat's parameters, in `T`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SplatParams<T> {
    pub mean: [T; 3],
    pub log_scale: [T; 3],
    pub rotation: [T; 4],
    pub opacity_logit: T,
    pub sh: [[T; 3]; SH_COEFFS],
}

impl<T: Real> SplatParams<T> {
    pub fn gather(splats: &Splats, i: usize) -> Self {
        Self {
            mean: arr(splats.means[i]),
            log_scale: arr(splats.log_scales[i]),
            rotation: arr(splats.rotations[i]),
            opacity_logit: T::from_f32(splats.opacity_logits[i]),
            sh: splats.sh[i].map(arr),
        }
    }
}

/// A projected splat, in `T` (the generic twin of [`ProjectedSplat`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Footprint<T> {
    pub mean2d: [T; 2],
    pub conic: [T; 3],
    pub depth: T,
    pub color: [T; 3],
    pub opacity: T,
    pub radius: u32,
}

impl From<&ProjectedSplat> for Footprint<f32> {
    fn from(p: &ProjectedSplat) -> Self {
        Self { mean2d: p.mean2d, conic: p.conic, depth: p.depth, color: p.color, opacity: p.opacity, radius: p.radius }
    }
}

impl<T: Real> Footprint<T> {
    pub fn to_projected(self) -> ProjectedSplat {
        ProjectedSplat {
            mean2d: arr_f32(self.mean2d),
            conic: arr_f32(self.conic),
            depth: self.depth.to_f32(),
            color: arr_f32(self.color),
            opacity: self.opacity.to_f32(),
            radius: self.radius,
        }
    }
}

/// Gradient with respect to a [`Footprint`] (the generic twin of [`ProjectedGrad`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct FootprintGrad<T> {
    pub mean2d: [T; 2],
    pub conic: [T; 3],
    pub color: [T; 3],
    pub opacity: T,
}

impl<T: Real> FootprintGrad<T> {
    pub fn add(&mut self, other: &Self) {
        for a in 0..2 {
            self.mean2d[a] += other.mean2d[a];
        }
        for a in 0..3 {
            self.conic[a] += other.conic[a];
            self.color[a] += other.color[a];
        }
        self.opacity += other.opacity;
    }

    pub fn to_projected(self) -> ProjectedGrad {
        ProjectedGrad {
            mean2d: arr_f32(self.mean2d),
            conic: arr_f32(self.conic),
            color: arr_f32(self.color),
            opacity: self.opacity.to_f32(),
        }
    }
}

impl From<&ProjectedGrad> for FootprintGrad<f32> {
    fn from(g: &ProjectedGrad) -> Self {
        Self { mean2d: g.mean2d, conic: g.conic, color: g.color, opacity: g.opacity }
    }
}

/// Gradient with respect to one splat's [`SplatParams`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParamGrads<T> {
    pub mean: [T; 3],
    pub log_scale: [T; 3],
    pub rotation: [T; 4],
    pub opacity_logit: T,
    pub sh: [[T; 3]; SH_COEFFS],
}

/// Projects every splat (culled ones are all-zero with `radius == 0`).
pub fn project(splats: &Splats, camera: &Camera) -> Vec<ProjectedSplat> {
    let cam = CameraModel::<f32>::new(camera);
    (0..splats.len())
        .into_par_iter()
        .with_min_len(SPLATS_PER_TASK)
        .map(|i| {
            project_one(&SplatParams::gather(splats, i), &cam, splats.sh_degree)
                .map_or_else(ProjectedSplat::default, |f| f.to_projected())
        })
        .collect()
}

/// Backward pass of [`project`]: chains `∂L/∂(projected splat)` to every splat parameter. Culled
/// splats, and SH coefficients beyond the active degree, get zero gradients.
pub fn project_backward(
    splats: &Splats,
    camera: &Camera,
    projected: &[ProjectedSplat],
    grads: &[ProjectedGrad],
) -> SplatGrads {
    let cam = CameraModel::<f32>::new(camera);
    let mut out = SplatGrads::zeros(splats.len());
    out.means
        .par_iter_mut()
        .zip(out.log_scales.par_iter_mut())
        .zip(out.rotations.par_iter_mut())
        .zip(out.opacity_logits.par_iter_mut())
        .zip(out.sh.par_iter_mut())
        .enumerate()
        .with_min_len(SPLATS_PER_TASK)
        .for_each(|(i, ((((mean, log_scale), rotation), opacity_logit), sh))| {
            let (Some(p), Some(g)) = (projected.get(i), grads.get(i)) else { return };
            if p.radius == 0 {
                return;
            }
            let d = project_one_backward(&SplatParams::gather(splats, i), &cam, splats.sh_degree, &g.into());
            *mean = d.mean;
            *log_scale = d.log_scale;
            *rotation = d.rotation;
            *opacity_logit = d.opacity_logit;
            *sh = d.sh;
        });
    out
}

/// Everything the forward pass computes that the backward pass reuses.
struct Intermediates<T> {
    /// Camera-frame centre.
    p: [T; 3],
    /// `|q|` and the normalised quaternion.
    q_norm: T,
    q: [T; 4],
    /// `rot(q)`.
    rq: Mat3<T>,
    /// `exp(log_scale)`.
    scale: [T; 3],
    /// `rot(q) · diag(scale)`.
    m: Mat3<T>,
    /// World-frame covariance rotated into the camera frame.
    sigma_cam: Mat3<T>,
    /// Clamped view-direction coordinates and whether they are free (unclamped).
    uv: [T; 2],
    uv_free: [bool; 2],
    /// Rows of the 2×3 projection Jacobian.
    jac: [[T; 3]; 2],
    /// 2D covariance `[Σ2₀₀, Σ2₀₁, Σ2₁₁]` including the low-pass term.
    cov2d: [T; 3],
}

/// Steps 1–4 of the contract (through the 2D covariance); `None` when culled by the near plane.
fn forward_geometry<T: Real>(params: &SplatParams<T>, cam: &CameraModel<T>) -> Option<Intermediates<T>> {
    let p = add3(mat_vec(&cam.rotation, params.mean), cam.translation);
    if p[2] < T::from_f32(NEAR_PLANE) {
        return None;
    }
    let r = params.rotation;
    let q_norm = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2] + r[3] * r[3]).sqrt();
    let q = r.map(|v| v / q_norm);
    let rq = quat_to_mat(q);
    let scale = params.log_scale.map(T::exp);
    let m: Mat3<T> = std::array::from_fn(|i| std::array::from_fn(|j| rq[i][j] * scale[j]));
    let sigma = mul_abt(&m, &m);
    let sigma_cam = mul_abt(&mat_mul(&cam.rotation, &sigma), &cam.rotation);

    let z = p[2];
    let slack = T::c(FRUSTUM_SLACK);
    let (u, u_free) =
        clamp_free(p[0] / z, -slack * cam.cx / cam.fx, slack * (T::c(cam.width as f64) - cam.cx) / cam.fx);
    let (v, v_free) =
        clamp_free(p[1] / z, -slack * cam.cy / cam.fy, slack * (T::c(cam.height as f64) - cam.cy) / cam.fy);
    let o = T::ZERO;
    let jac = [[cam.fx / z, o, -cam.fx * u / z], [o, cam.fy / z, -cam.fy * v / z]];
    let js: [[T; 3]; 2] = jac.map(|row| vec_mat(row, &sigma_cam));
    let low_pass = T::from_f32(LOW_PASS);
    let cov2d = [dot3(js[0], jac[0]) + low_pass, dot3(js[0], jac[1]), dot3(js[1], jac[1]) + low_pass];
    Some(Intermediates { p, q_norm, q, rq, scale, m, sigma_cam, uv: [u, v], uv_free: [u_free, v_free], jac, cov2d })
}

/// Projects one splat; `None` when culled.
pub(crate) fn project_one<T: Real>(
    params: &SplatParams<T>,
    cam: &CameraModel<T>,
    sh_degree: u32,
) -> Option<Footprint<T>> {
    let g = forward_geometry(params, cam)?;
    let [s00, s01, s11] = g.cov2d;
    let det = s00 * s11 - s01 * s01;
    // Anything but `det > 0` is culled, a NaN (e.g. from a zero quaternion) included.
    if det.partial_cmp(&T::ZERO) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    let conic = [s11 / det, -s01 / det, s00 / det];
    let [x, y, z] = g.p;
    let mean2d = [cam.fx * x / z + cam.cx, cam.fy * y / z + cam.cy];
    let mid = T::c(0.5) * (s00 + s11);
    let lambda_max = mid + (mid * mid - det).max(T::c(0.1)).sqrt();
    let radius = (T::c(3.0) * lambda_max.sqrt()).ceil().to_f32() as u32;
    let [x0, x1, y0, y1] = tiles::tile_rect(arr_f32(mean2d), radius, cam.width, cam.height);
    if x0 >= x1 || y0 >= y1 {
        return None;
    }
    let (color, _) = sh::color(sh_degree, &params.sh, view_dir(params.mean, cam).0);
    let opacity = T::ONE / (T::ONE + (-params.opacity_logit).exp());
    Some(Footprint { mean2d, conic, depth: z, color, opacity, radius })
}

/// Backward pass of [`project_one`] for a splat it did not cull.
pub(crate) fn project_one_backward<T: Real>(
    params: &SplatParams<T>,
    cam: &CameraModel<T>,
    sh_degree: u32,
    grad: &FootprintGrad<T>,
) -> ParamGrads<T> {
    let zero3 = [T::ZERO; 3];
    let mut out = ParamGrads {
        mean: zero3,
        log_scale: zero3,
        rotation: [T::ZERO; 4],
        opacity_logit: T::ZERO,
        sh: [zero3; SH_COEFFS],
    };
    let Some(g) = forward_geometry(params, cam) else { return out };

    // Step 8: opacity = sigmoid(logit).
    let opacity = T::ONE / (T::ONE + (-params.opacity_logit).exp());
    out.opacity_logit = grad.opacity * opacity * (T::ONE - opacity);

    // Step 7: colour from SH along d = normalize(μ − centre).
    let (dir, dist) = view_dir(params.mean, cam);
    let (grad_sh, grad_dir) = sh::color_backward(sh_degree, &params.sh, dir, grad.color);
    out.sh = grad_sh;
    let along = dot3(dir, grad_dir);
    let mut grad_mean: [T; 3] = std::array::from_fn(|a| (grad_dir[a] - dir[a] * along) / dist);

    // Step 5: mean2d = f · p.xy / z + c.
    let [x, y, z] = g.p;
    let (fx, fy) = (cam.fx, cam.fy);
    let mut grad_p = [
        grad.mean2d[0] * fx / z,
        grad.mean2d[1] * fy / z,
        -(grad.mean2d[0] * fx * x + grad.mean2d[1] * fy * y) / (z * z),
    ];

    // Step 4: conic = Σ2⁻¹. With Q the conic and G its gradient as a symmetric matrix,
    // ∂L/∂Σ2 = −Q G Q.
    let [a, b, c] = {
        let [s00, s01, s11] = g.cov2d;
        let det = s00 * s11 - s01 * s01;
        [s11 / det, -s01 / det, s00 / det]
    };
    let half = T::c(0.5);
    let q2 = [[a, b], [b, c]];
    let g2 = [[grad.conic[0], half * grad.conic[1]], [half * grad.conic[1], grad.conic[2]]];
    let qg = mat2_mul(&q2, &g2);
    let grad_cov2d = mat2_mul(&qg, &q2).map(|row| row.map(|v| -v));

    // Step 3: Σ2 = J Σc Jᵀ, so ∂L/∂Σc = Jᵀ G J and ∂L/∂J = 2 G J Σc.
    let jac = g.jac;
    let gj: [[T; 3]; 2] =
        std::array::from_fn(|r| std::array::from_fn(|k| grad_cov2d[r][0] * jac[0][k] + grad_cov2d[r][1] * jac[1][k]));
    let grad_sigma_cam: Mat3<T> =
        std::array::from_fn(|i| std::array::from_fn(|j| jac[0][i] * gj[0][j] + jac[1][i] * gj[1][j]));
    let two = T::c(2.0);
    let grad_jac: [[T; 3]; 2] = gj.map(|row| vec_mat(row, &g.sigma_cam).map(|v| two * v));

    // J = [[fx/z, 0, −fx·u/z], [0, fy/z, −fy·v/z]] with u = x/z, v = y/z where not clamped.
    let focal = [fx, fy];
    for r in 0..2 {
        let f = focal[r];
        let uv = g.uv[r];
        grad_p[2] += grad_jac[r][r] * (-f / (z * z)) + grad_jac[r][2] * f * uv / (z * z);
        if g.uv_free[r] {
            let grad_uv = grad_jac[r][2] * (-f / z);
            grad_p[r] += grad_uv / z;
            grad_p[2] += -grad_uv * uv / z;
        }
    }

    // Step 1: p = R μ + t.
    let grad_from_p = mat_t_vec(&cam.rotation, grad_p);
    for k in 0..3 {
        grad_mean[k] += grad_from_p[k];
    }
    out.mean = grad_mean;

    // Step 2: Σc = R Σ Rᵀ, Σ = M Mᵀ, M = rot(q) · diag(s).
    let grad_sigma = mat_mul(&mat_mul(&transpose(&cam.rotation), &grad_sigma_cam), &cam.rotation);
    let grad_m = mat_mul(&grad_sigma, &g.m).map(|row| row.map(|v| two * v));
    let grad_rq: Mat3<T> = std::array::from_fn(|i| std::array::from_fn(|j| grad_m[i][j] * g.scale[j]));
    out.log_scale = std::array::from_fn(|j| {
        let grad_s = grad_m[0][j] * g.rq[0][j] + grad_m[1][j] * g.rq[1][j] + grad_m[2][j] * g.rq[2][j];
        grad_s * g.scale[j]
    });
    let grad_q = quat_to_mat_backward(g.q, &grad_rq);
    let q_dot_g = g.q[0] * grad_q[0] + g.q[1] * grad_q[1] + g.q[2] * grad_q[2] + g.q[3] * grad_q[3];
    out.rotation = std::array::from_fn(|k| (grad_q[k] - g.q[k] * q_dot_g) / g.q_norm);
    out
}

/// Unit direction from the camera centre to `mean`, and the distance.
fn view_dir<T: Real>(mean: [T; 3], cam: &CameraModel<T>) -> ([T; 3], T) {
    let v = [mean[0] - cam.centre[0], mean[1] - cam.centre[1], mean[2] - cam.centre[2]];
    let dist = dot3(v, v).sqrt();
    (v.map(|c| c / dist), dist)
}

/// `clamp(v, lo, hi)` and whether `v` was inside (so gradients flow).
fn clamp_free<T: Real>(v: T, lo: T, hi: T) -> (T, bool) {
    if v < lo {
        (lo, false)
    } else if v > hi {
        (hi, false)
    } else {
        (v, true)
    }
}

/// Rotation matrix of a unit quaternion `[w, x, y, z]`.
fn quat_to_mat<T: Real>(q: [T; 4]) -> Mat3<T> {
    let [w, x, y, z] = q;
    let one = T::ONE;
    let two = T::c(2.0);
    [
        [one - two * (y * y + z * z), two * (x * y - w * z), two * (x * z + w * y)],
        [two * (x * y + w * z), one - two * (x * x + z * z), two * (y * z - w * x)],
        [two * (x * z - w * y), two * (y * z + w * x), one - two * (x * x + y * y)],
    ]
}

/// Gradient of [`quat_to_mat`] with respect to its (unit) quaternion.
fn quat_to_mat_backward<T: Real>(q: [T; 4], g: &Mat3<T>) -> [T; 4] {
    let [w, x, y, z] = q;
    let two = T::c(2.0);
    let gw = -z * g[0][1] + y * g[0][2] + z * g[1][0] - x * g[1][2] - y * g[2][0] + x * g[2][1];
    let gx = y * g[0][1] + z * g[0][2] + y * g[1][0] - two * x * g[1][1] - w * g[1][2] + z * g[2][0] + w * g[2][1]
        - two * x * g[2][2];
    let gy = -two * y * g[0][0] + x * g[0][1] + w * g[0][2] + x * g[1][0] + z * g[1][2] - w * g[2][0] + z * g[2][1]
        - two * y * g[2][2];
    let gz = -two * z * g[0][0] - w * g[0][1] + x * g[0][2] + w * g[1][0] - two * z * g[1][1]
        + y * g[1][2]
        + x * g[2][0]
        + y * g[2][1];
    [gw, gx, gy, gz].map(|v| two * v)
}

fn dot3<T: Real>(a: [T; 3], b: [T; 3]) -> T {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn add3<T: Real>(a: [T; 3], b: [T; 3]) -> [T; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

/// `A v`.
fn mat_vec<T: Real>(a: &Mat3<T>, v: [T; 3]) -> [T; 3] {
    a.map(|row| dot3(row, v))
}

/// `Aᵀ v`.
fn mat_t_vec<T: Real>(a: &Mat3<T>, v: [T; 3]) -> [T; 3] {
    vec_mat(v, a)
}

/// `vᵀ A` (a row vector times a matrix).
fn vec_mat<T: Real>(v: [T; 3], a: &Mat3<T>) -> [T; 3] {
    std::array::from_fn(|j| v[0] * a[0][j] + v[1] * a[1][j] + v[2] * a[2][j])
}

fn mat_mul<T: Real>(a: &Mat3<T>, b: &Mat3<T>) -> Mat3<T> {
    a.map(|row| vec_mat(row, b))
}

/// `A Bᵀ`.
fn mul_abt<T: Real>(a: &Mat3<T>, b: &Mat3<T>) -> Mat3<T> {
    a.map(|ra| b.map(|rb| dot3(ra, rb)))
}

fn transpose<T: Real>(a: &Mat3<T>) -> Mat3<T> {
    std::array::from_fn(|i| std::array::from_fn(|j| a[j][i]))
}

fn mat2_mul<T: Real>(a: &[[T; 2]; 2], b: &[[T; 2]; 2]) -> [[T; 2]; 2] {
    a.map(|row| [row[0] * b[0][0] + row[1] * b[1][0], row[0] * b[0][1] + row[1] * b[1][1]])
}
