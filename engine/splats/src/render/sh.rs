//! Real spherical harmonics to degree 3 in the 3DGS convention: evaluation and its backward pass.
//!
//! A splat's colour seen along the unit direction `d` (from the camera centre to the splat) is
//! `max(0, Σₖ Yₖ(d) · shₖ + 0.5)` per channel, summed over the `(degree + 1)²` active
//! coefficients. The basis below (constants and signs) is the one of the reference 3DGS CUDA
//! code, so PLY files trained elsewhere render identically. [`sh_to_color`] and
//! [`sh_to_color_backward`] are the reference the WGSL shader is tested against.

use crate::render::real::Real;
use kiln_core::splats::{MAX_SH_DEGREE, SH_COEFFS, ShCoeffs};

/// Degree-0 basis constant `1 / (2√π)`.
pub const C0: f64 = 0.282_094_791_773_878_14;
/// Degree-1 basis constant `√3 / (2√π)`.
pub const C1: f64 = 0.488_602_511_902_919_9;
/// Degree-2 basis constants, in coefficient order 4..9 (3DGS sign convention).
pub const C2: [f64; 5] = [
    1.092_548_430_592_079_2,
    -1.092_548_430_592_079_2,
    0.315_391_565_252_520_05,
    -1.092_548_430_592_079_2,
    0.546_274_215_296_039_6,
];
/// Degree-3 basis constants, in coefficient order 9..16 (3DGS sign convention).
pub const C3: [f64; 7] = [
    -0.590_043_589_926_643_5,
    2.890_611_442_640_554,
    -0.457_045_799_464_465_8,
    0.373_176_332_590_115_4,
    -0.457_045_799_464_465_8,
    1.445_305_721_320_277,
    -0.590_043_589_926_643_5,
];
/// Added to the SH sum so that all-zero coefficients give mid-grey (the 3DGS convention).
const COLOR_OFFSET: f64 = 0.5;

/// Number of coefficients per channel used at `degree` (`(degree + 1)²`); degrees above
/// [`MAX_SH_DEGREE`] are treated as [`MAX_SH_DEGREE`].
pub fn active_coeffs(degree: u32) -> usize {
    let d = degree.min(MAX_SH_DEGREE) as usize;
    (d + 1) * (d + 1)
}

/// Colour of a splat with coefficients `sh` seen along the unit direction `dir`.
pub fn sh_to_color(degree: u32, sh: &ShCoeffs, dir: [f32; 3]) -> [f32; 3] {
    color(degree, sh, dir).0
}

/// Backward pass of [`sh_to_color`]: given `∂L/∂colour`, returns `∂L/∂sh` (zero beyond the active
/// degree) and `∂L/∂dir`, with `dir`'s components treated as independent (the caller chains
/// through its normalisation). A channel clamped to 0 passes no gradient.
pub fn sh_to_color_backward(degree: u32, sh: &ShCoeffs, dir: [f32; 3], grad_color: [f32; 3]) -> (ShCoeffs, [f32; 3]) {
    color_backward(degree, sh, dir, grad_color)
}

/// The basis functions `Yₖ(dir)`, zero beyond the active degree.
pub(crate) fn basis<T: Real>(degree: u32, dir: [T; 3]) -> [T; SH_COEFFS] {
    let [x, y, z] = dir;
    let mut out = [T::ZERO; SH_COEFFS];
    let n = active_coeffs(degree);
    out[0] = T::c(C0);
    if n > 1 {
        let c1 = T::c(C1);
        out[1] = -c1 * y;
        out[2] = c1 * z;
        out[3] = -c1 * x;
    }
    if n > 4 {
        let c2 = C2.map(T::c);
        let (xx, yy, zz) = (x * x, y * y, z * z);
        out[4] = c2[0] * x * y;
        out[5] = c2[1] * y * z;
        out[6] = c2[2] * (T::c(2.0) * zz - xx - yy);
        out[7] = c2[3] * x * z;
        out[8] = c2[4] * (xx - yy);
    }
    if n > 9 {
        let c3 = C3.map(T::c);
        let (xx, yy, zz) = (x * x, y * y, z * z);
        let (two, three, four) = (T::c(2.0), T::c(3.0), T::c(4.0));
        out[9] = c3[0] * y * (three * xx - yy);
        out[10] = c3[1] * x * y * z;
        out[11] = c3[2] * y * (four * zz - xx - yy);
        out[12] = c3[3] * z * (two * zz - three * xx - three * yy);
        out[13] = c3[4] * x * (four * zz - xx - yy);
        out[14] = c3[5] * z * (xx - yy);
        out[15] = c3[6] * x * (xx - three * yy);
    }
    out
}

/// `∂Yₖ/∂dir` for every basis function, zero beyond the active degree.
fn basis_grad<T: Real>(degree: u32, dir: [T; 3]) -> [[T; 3]; SH_COEFFS] {
    let [x, y, z] = dir;
    let o = T::ZERO;
    let mut out = [[o; 3]; SH_COEFFS];
    let n = active_coeffs(degree);
    if n > 1 {
        let c1 = T::c(C1);
        out[1] = [o, -c1, o];
        out[2] = [o, o, c1];
        out[3] = [-c1, o, o];
    }
    if n > 4 {
        let c2 = C2.map(T::c);
        let two = T::c(2.0);
        out[4] = [c2[0] * y, c2[0] * x, o];
        out[5] = [o, c2[1] * z, c2[1] * y];
        out[6] = [-two * c2[2] * x, -two * c2[2] * y, T::c(4.0) * c2[2] * z];
        out[7] = [c2[3] * z, o, c2[3] * x];
        out[8] = [two * c2[4] * x, -two * c2[4] * y, o];
    }
    if n > 9 {
        let c3 = C3.map(T::c);
        let (xx, yy, zz) = (x * x, y * y, z * z);
        let (two, three, four, six, eight) = (T::c(2.0), T::c(3.0), T::c(4.0), T::c(6.0), T::c(8.0));
        out[9] = [c3[0] * six * x * y, c3[0] * three * (xx - yy), o];
        out[10] = [c3[1] * y * z, c3[1] * x * z, c3[1] * x * y];
        out[11] = [-c3[2] * two * x * y, c3[2] * (four * zz - xx - three * yy), c3[2] * eight * y * z];
        out[12] = [-c3[3] * six * x * z, -c3[3] * six * y * z, c3[3] * (six * zz - three * xx - three * yy)];
        out[13] = [c3[4] * (four * zz - three * xx - yy), -c3[4] * two * x * y, c3[4] * eight * x * z];
        out[14] = [c3[5] * two * x * z, -c3[5] * two * y * z, c3[5] * (xx - yy)];
        out[15] = [c3[6] * three * (xx - yy), -c3[6] * six * x * y, o];
    }
    out
}

/// The colour before the clamp, `Σₖ Yₖ · shₖ + 0.5`.
fn raw_color<T: Real>(basis: &[T; SH_COEFFS], sh: &[[T; 3]; SH_COEFFS], active: usize) -> [T; 3] {
    let mut raw = [T::c(COLOR_OFFSET); 3];
    for (y, coeff) in basis.iter().zip(sh).take(active) {
        for c in 0..3 {
            raw[c] += *y * coeff[c];
        }
    }
    raw
}

/// Clamped colour and whether each channel is clamped (no gradient).
pub(crate) fn color<T: Real>(degree: u32, sh: &[[T; 3]; SH_COEFFS], dir: [T; 3]) -> ([T; 3], [bool; 3]) {
    let raw = raw_color(&basis(degree, dir), sh, active_coeffs(degree));
    let clamped = raw.map(|v| v < T::ZERO);
    (raw.map(|v| v.max(T::ZERO)), clamped)
}

/// Generic body of [`sh_to_color_backward`].
pub(crate) fn color_backward<T: Real>(
    degree: u32,
    sh: &[[T; 3]; SH_COEFFS],
    dir: [T; 3],
    grad_color: [T; 3],
) -> ([[T; 3]; SH_COEFFS], [T; 3]) {
    let active = active_coeffs(degree);
    let ys = basis(degree, dir);
    let clamped = raw_color(&ys, sh, active).map(|v| v < T::ZERO);
    let mut grad_raw = grad_color;
    for c in 0..3 {
        if clamped[c] {
            grad_raw[c] = T::ZERO;
        }
    }
    let mut grad_sh = [[T::ZERO; 3]; SH_COEFFS];
    let mut grad_dir = [T::ZERO; 3];
    let dys = basis_grad(degree, dir);
    for k in 0..active {
        let mut along = T::ZERO;
        for c in 0..3 {
            grad_sh[k][c] = ys[k] * grad_raw[c];
            along += sh[k][c] * grad_raw[c];
        }
        for a in 0..3 {
            grad_dir[a] += along * dys[k][a];
        }
    }
    (grad_sh, grad_dir)
}
