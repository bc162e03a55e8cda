//! Tests of the CPU reference renderer: every backward pass against central finite differences
//! (run in `f64` through the generic kernels), the fast tile compositor against a literal
//! per-pixel reading of the contract, and the edge cases of [`super::testing`].

use crate::render::project::{
    CameraModel, Footprint, FootprintGrad, ParamGrads, SplatParams, project_one, project_one_backward,
};
use crate::render::raster::{Bins, Composite, bin, composite, composite_backward};
use crate::render::real::Real;
use crate::render::testing::{self, Scene};
use crate::render::*;
use kiln_core::rng::Pcg32;
use kiln_core::splats::{SH_COEFFS, ShCoeffs};

/// Central-difference step in `f64`: truncation error ~ε², round-off ~1e-16/ε.
const EPS: f64 = 1e-6;
/// Allowed relative disagreement between a backward pass and finite differences in `f64`.
const REL_TOL: f64 = 1e-5;
/// Derivatives below this fraction of their group's largest are compared in absolute terms
/// (see [`Check::compare`]).
const SMALL_FLOOR: f64 = 0.1;

// ---------------------------------------------------------------------------------------------
// f64 harness

fn params64(splats: &Splats) -> Vec<SplatParams<f64>> {
    (0..splats.len()).map(|i| SplatParams::gather(splats, i)).collect()
}

fn project64(params: &[SplatParams<f64>], cam: &CameraModel<f64>, degree: u32) -> Vec<Footprint<f64>> {
    params.iter().map(|p| project_one(p, cam, degree).unwrap_or_default()).collect()
}

/// Which splats contributed to each pixel, in order (read by a literal per-pixel compositor).
type Signature = Vec<Vec<u32>>;

/// The contract's compositing, read literally: every pixel walks its tile's whole list.
fn literal_composite<T: Real>(
    fps: &[Footprint<T>],
    bins: &Bins,
    width: u32,
    height: u32,
    bg: [T; 3],
) -> (Composite<T>, Signature) {
    let n = (width * height) as usize;
    let mut out = Composite {
        image: vec![[T::ZERO; 3]; n],
        alpha: vec![T::ZERO; n],
        depth: vec![T::ZERO; n],
        median_depth: vec![T::ZERO; n],
        final_transmittance: vec![T::ZERO; n],
        last_contributor: vec![0; n],
    };
    let mut signature = vec![Vec::new(); n];
    let (tiles_x, _) = tile_grid(width, height);
    for y in 0..height {
        for x in 0..width {
            let i = (y * width + x) as usize;
            let tile = ((y / TILE_SIZE) * tiles_x + x / TILE_SIZE) as usize;
            let [s, e] = bins.tile_ranges[tile];
            let (px, py) = (T::c(x as f64 + 0.5), T::c(y as f64 + 0.5));
            let (mut t, mut c, mut d, mut wsum) = (T::ONE, [T::ZERO; 3], T::ZERO, T::ZERO);
            let mut median = None;
            for (pos, &id) in bins.sorted_ids[s as usize..e as usize].iter().enumerate() {
                let f = &fps[id as usize];
                let dx = px - f.mean2d[0];
                let dy = py - f.mean2d[1];
                let [a, b, cc] = f.conic;
                let power = -T::c(0.5) * (a * dx * dx + cc * dy * dy) - b * dx * dy;
                if power > T::ZERO {
                    continue;
                }
                let alpha = (f.opacity * power.exp()).min(T::from_f32(MAX_ALPHA));
                if alpha < T::from_f32(MIN_ALPHA) {
                    continue;
                }
                let next = t * (T::ONE - alpha);
                if next < T::from_f32(MIN_TRANSMITTANCE) {
                    break;
                }
                let w = alpha * t;
                for (acc, col) in c.iter_mut().zip(f.color) {
                    *acc += col * w;
                }
                d += f.depth * w;
                wsum += w;
                t = next;
                out.last_contributor[i] = pos as u32 + 1;
                signature[i].push(id);
                if next <= T::c(0.5) && median.is_none() {
                    median = Some(f.depth);
                }
            }
            out.image[i] = std::array::from_fn(|ch| c[ch] + t * bg[ch]);
            out.alpha[i] = T::ONE - t;
            out.depth[i] = if wsum > T::ZERO { d / wsum } else { T::ZERO };
            out.median_depth[i] = median.unwrap_or(T::ZERO);
            out.final_transmittance[i] = t;
        }
    }
    (out, signature)
}

fn weighted_sum(image: &[[f64; 3]], weights: &[[f64; 3]]) -> f64 {
    image.iter().zip(weights).map(|(p, w)| p[0] * w[0] + p[1] * w[1] + p[2] * w[2]).sum()
}

fn random_weights(seed: u64, n: usize) -> Vec<[f64; 3]> {
    let mut rng = Pcg32::new(seed);
    (0..n).map(|_| [0; 3].map(|_| 2.0 * rng.uniform() as f64 - 1.0)).collect()
}

/// Loss `Σ weights · image` of compositing `fps`, and its contribution signature.
fn raster_loss(fps: &[Footprint<f64>], w: u32, h: u32, bg: [f64; 3], weights: &[[f64; 3]]) -> (f64, Signature) {
    let bins = bin(fps, w, h);
    let (c, sig) = literal_composite(fps, &bins, w, h, bg);
    (weighted_sum(&c.image, weights), sig)
}

/// `∂(Σ weights · image)/∂footprints` through the production compositor, in `f64`.
fn raster_grads(fps: &[Footprint<f64>], w: u32, h: u32, bg: [f64; 3], weights: &[[f64; 3]]) -> Vec<FootprintGrad<f64>> {
    let bins = bin(fps, w, h);
    let c = composite(fps, &bins, w, h, bg);
    composite_backward(fps, bins.as_ref(), c.as_forward_ref(), w, h, bg, weights)
}

/// Finite-difference bookkeeping: the worst relative error, and how many parameters were skipped
/// because the perturbation changed which splats contribute where (a discontinuity).
#[derive(Default)]
struct Check {
    name: String,
    compared: usize,
    skipped: usize,
    worst: f64,
    worst_at: String,
}

impl Check {
    fn new(name: &str) -> Self {
        Self { name: name.to_string(), ..Self::default() }
    }

    /// Compares an analytic derivative with a central difference. `scale` is the largest
    /// derivative of this group: a derivative far smaller than it is held to `REL_TOL` of
    /// `SMALL_FLOOR · scale` instead of its own size, because the finite difference of a sum over
    /// thousands of pixels carries round-off of about that absolute size.
    fn compare(&mut self, what: impl Fn() -> String, analytic: f64, numeric: f64, scale: f64) {
        let err = (analytic - numeric).abs() / numeric.abs().max(analytic.abs()).max(SMALL_FLOOR * scale).max(1e-300);
        self.compared += 1;
        assert!(analytic.is_finite(), "{}: {} analytic gradient not finite", self.name, what());
        if err > self.worst {
            self.worst = err;
            self.worst_at = format!("{} (analytic {analytic:e}, numeric {numeric:e})", what());
        }
    }

    fn finish(&self, max_skipped_fraction: f64) {
        println!(
            "{}: {} compared, {} skipped, worst rel err {:e} at {}",
            self.name, self.compared, self.skipped, self.worst, self.worst_at
        );
        assert!(self.compared > 0, "{}: nothing compared", self.name);
        assert!(self.worst < REL_TOL, "{}: gradient mismatch {:e} at {}", self.name, self.worst, self.worst_at);
        let total = (self.compared + self.skipped) as f64;
        assert!(
            self.skipped as f64 <= max_skipped_fraction * total,
            "{}: {} of {} parameters sit on a discontinuity",
            self.name,
            self.skipped,
            total
        );
    }
}

/// Calls `f(label, value)` for every scalar of a splat's parameters.
fn for_each_param(p: &mut SplatParams<f64>, mut f: impl FnMut(String, &mut f64)) {
    for k in 0..3 {
        f(format!("mean[{k}]"), &mut p.mean[k]);
        f(format!("log_scale[{k}]"), &mut p.log_scale[k]);
    }
    for k in 0..4 {
        f(format!("rotation[{k}]"), &mut p.rotation[k]);
    }
    f("opacity_logit".into(), &mut p.opacity_logit);
    for k in 0..SH_COEFFS {
        for c in 0..3 {
            f(format!("sh[{k}][{c}]"), &mut p.sh[k][c]);
        }
    }
}

/// The analytic gradient matching [`for_each_param`]'s label.
fn param_grad(g: &ParamGrads<f64>, label: &str) -> f64 {
    let idx = |s: &str| -> Vec<usize> { s.split(['[', ']']).filter_map(|t| t.parse().ok()).collect() };
    let i = idx(label);
    match label.split('[').next().unwrap_or("") {
        "mean" => g.mean[i[0]],
        "log_scale" => g.log_scale[i[0]],
        "rotation" => g.rotation[i[0]],
        "opacity_logit" => g.opacity_logit,
        "sh" => g.sh[i[0]][i[1]],
        other => panic!("unknown parameter {other}"),
    }
}

/// Largest absolute derivative in `g`.
fn param_scale(g: &ParamGrads<f64>) -> f64 {
    let all =
        g.mean.iter().chain(&g.log_scale).chain(&g.rotation).chain([&g.opacity_logit]).chain(g.sh.iter().flatten());
    all.fold(0.0, |m, v| m.max(v.abs()))
}

fn footprint_scalars(f: &mut Footprint<f64>) -> Vec<(&'static str, &mut f64)> {
    let [m0, m1] = &mut f.mean2d;
    let [a, b, c] = &mut f.conic;
    let [r, g, bl] = &mut f.color;
    vec![
        ("mean2d.x", m0),
        ("mean2d.y", m1),
        ("conic.a", a),
        ("conic.b", b),
        ("conic.c", c),
        ("color.r", r),
        ("color.g", g),
        ("color.b", bl),
        ("opacity", &mut f.opacity),
    ]
}

fn grad_scalars(g: &FootprintGrad<f64>) -> [f64; 9] {
    [g.mean2d[0], g.mean2d[1], g.conic[0], g.conic[1], g.conic[2], g.color[0], g.color[1], g.color[2], g.opacity]
}

// ---------------------------------------------------------------------------------------------
// Spherical harmonics

fn random_unit(rng: &mut Pcg32) -> [f64; 3] {
    let v = [0; 3].map(|_| rng.normal() as f64);
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    v.map(|c| c / n)
}

fn random_coeffs(rng: &mut Pcg32) -> [[f64; 3]; SH_COEFFS] {
    let mut sh = [[0.0; 3]; SH_COEFFS];
    for (k, coeff) in sh.iter_mut().enumerate() {
        let amplitude = if k == 0 { 0.5 } else { 0.15 };
        *coeff = [0; 3].map(|_| amplitude * (2.0 * rng.uniform() as f64 - 1.0));
    }
    sh
}

#[test]
fn sh_backward_matches_finite_differences() {
    let mut rng = Pcg32::new(7);
    for degree in 0..=3 {
        let mut check = Check::new(&format!("sh degree {degree}"));
        for _ in 0..20 {
            let dir = random_unit(&mut rng);
            let sh = random_coeffs(&mut rng);
            let w = [0; 3].map(|_| 2.0 * rng.uniform() as f64 - 1.0);
            let loss = |sh: &[[f64; 3]; SH_COEFFS], dir: [f64; 3]| {
                let (c, clamped) = sh::color(degree, sh, dir);
                assert_eq!(clamped, [false; 3], "test colours are kept away from the clamp");
                c[0] * w[0] + c[1] * w[1] + c[2] * w[2]
            };
            let (g_sh, g_dir) = sh::color_backward(degree, &sh, dir, w);
            let scale = g_sh.iter().flatten().chain(&g_dir).fold(0.0f64, |m, v| m.max(v.abs()));
            for k in 0..SH_COEFFS {
                for c in 0..3 {
                    let (mut hi, mut lo) = (sh, sh);
                    hi[k][c] += EPS;
                    lo[k][c] -= EPS;
                    let fd = (loss(&hi, dir) - loss(&lo, dir)) / (2.0 * EPS);
                    if k >= sh::active_coeffs(degree) {
                        assert_eq!(g_sh[k][c], 0.0, "inactive coefficient {k} must get no gradient");
                    }
                    check.compare(|| format!("sh[{k}][{c}]"), g_sh[k][c], fd, scale);
                }
            }
            for a in 0..3 {
                let (mut hi, mut lo) = (dir, dir);
                hi[a] += EPS;
                lo[a] -= EPS;
                let fd = (loss(&sh, hi) - loss(&sh, lo)) / (2.0 * EPS);
                check.compare(|| format!("dir[{a}]"), g_dir[a], fd, scale);
            }
        }
        check.finish(0.0);
    }
}

#[test]
fn sh_basis_matches_the_3dgs_closed_forms() {
    // Independent spot checks of the basis against the 3DGS formulas at a fixed direction.
    let (x, y, z) = (0.48f64, -0.6, 0.64);
    let ys = sh::basis(3, [x, y, z]);
    let expect = [
        (0, sh::C0),
        (1, -sh::C1 * y),
        (3, -sh::C1 * x),
        (6, sh::C2[2] * (2.0 * z * z - x * x - y * y)),
        (10, sh::C3[1] * x * y * z),
        (12, sh::C3[3] * z * (2.0 * z * z - 3.0 * x * x - 3.0 * y * y)),
        (15, sh::C3[6] * x * (x * x - 3.0 * y * y)),
    ];
    for (k, v) in expect {
        assert!((ys[k] - v).abs() < 1e-15, "Y{k}: {} vs {v}", ys[k]);
    }
    // The public f32 API agrees with the f64 kernel, including the +0.5 offset.
    let mut rng = Pcg32::new(3);
    let sh64 = random_coeffs(&mut rng);
    let sh32: ShCoeffs = sh64.map(|c| c.map(|v| v as f32));
    let got = sh::sh_to_color(3, &sh32, [x as f32, y as f32, z as f32]);
    let want = sh::color(3, &sh32.map(|c| c.map(f64::from)), [x, y, z]).0;
    for c in 0..3 {
        assert!((got[c] as f64 - want[c]).abs() < 1e-6);
    }
}

#[test]
fn sh_clamped_channel_passes_no_gradient() {
    let mut sh = [[0.0f32; 3]; SH_COEFFS];
    sh[0] = [-3.0, 1.0, 0.0]; // red is clamped to 0
    sh[2] = [0.5, 0.5, 0.5];
    let dir = [0.0, 0.6, 0.8];
    let color = sh::sh_to_color(1, &sh, dir);
    assert_eq!(color[0], 0.0);
    assert!(color[1] > 0.5);
    let (g_sh, g_dir) = sh::sh_to_color_backward(1, &sh, dir, [1.0, 0.0, 0.0]);
    assert!(g_sh.iter().all(|c| c[0] == 0.0), "no gradient through the clamped channel");
    assert_eq!(g_dir, [0.0; 3]);
    let (g_sh, _) = sh::sh_to_color_backward(1, &sh, dir, [0.0, 1.0, 0.0]);
    assert!((g_sh[0][1] as f64 - sh::C0).abs() < 1e-6);
}

// ---------------------------------------------------------------------------------------------
// Projection

/// FD of `Σ weights · (mean2d, conic, colour, opacity)` for every parameter of every splat that
/// projects (on both sides of the step), against [`project_one_backward`].
fn check_projection(scene: &Scene, check: &mut Check) {
    let cam = CameraModel::<f64>::new(&scene.camera);
    let degree = scene.splats.sh_degree;
    let mut rng = Pcg32::new(11);
    for (i, base) in params64(&scene.splats).into_iter().enumerate() {
        let Some(_) = project_one(&base, &cam, degree) else { continue };
        let w: [f64; 9] = [0; 9].map(|_| 2.0 * rng.uniform() as f64 - 1.0);
        let loss = |p: &SplatParams<f64>| {
            let mut f = project_one(p, &cam, degree)?;
            Some(footprint_scalars(&mut f).iter().zip(w).map(|((_, v), w)| **v * w).sum::<f64>())
        };
        let grad =
            FootprintGrad { mean2d: [w[0], w[1]], conic: [w[2], w[3], w[4]], color: [w[5], w[6], w[7]], opacity: w[8] };
        let analytic = project_one_backward(&base, &cam, degree, &grad);
        let scale = param_scale(&analytic);
        let mut hi = base;
        let mut lo = base;
        let mut labels = Vec::new();
        for_each_param(&mut hi, |label, _| labels.push(label));
        for label in labels {
            let set = |p: &mut SplatParams<f64>, delta: f64| {
                for_each_param(p, |l, v| {
                    if l == label {
                        *v += delta;
                    }
                })
            };
            set(&mut hi, EPS);
            set(&mut lo, -EPS);
            match (loss(&hi), loss(&lo)) {
                (Some(h), Some(l)) => {
                    let fd = (h - l) / (2.0 * EPS);
                    check.compare(
                        || format!("{} splat {i} {label}", scene.name),
                        param_grad(&analytic, &label),
                        fd,
                        scale,
                    );
                }
                _ => check.skipped += 1,
            }
            hi = base;
            lo = base;
        }
    }
}

#[test]
fn projection_backward_matches_finite_differences() {
    for degree in 0..=3 {
        let mut check = Check::new(&format!("projection, SH degree {degree}"));
        check_projection(&testing::translucent(5 + degree as u64, 12, 64, 48, degree), &mut check);
        check.finish(0.0);
    }
}

#[test]
fn projection_backward_matches_finite_differences_on_edge_cases() {
    let mut check = Check::new("projection, edge cases");
    for scene in testing::edge_cases() {
        check_projection(&scene, &mut check);
    }
    check.finish(0.0);
}

#[test]
fn projection_culls_and_clamps() {
    let scene = testing::behind_camera();
    let projected = project(&scene.splats, &scene.camera);
    assert_eq!(projected.iter().map(|p| p.radius).take(3).collect::<Vec<_>>(), vec![0, 0, 0]);
    assert!(projected[..3].iter().all(|p| *p == ProjectedSplat::default()), "culled splats are all-zero");
    assert!(projected[3].radius > 0);
    assert!((projected[3].mean2d[0] - 20.0).abs() < 1e-3 && (projected[3].mean2d[1] - 20.0).abs() < 1e-3);
    assert!((projected[3].depth - 4.0).abs() < 1e-4);

    let clamps = testing::clamps();
    let projected = project(&clamps.splats, &clamps.camera);
    assert_eq!(projected[0].color[0], 0.0, "a negative SH colour is clamped to 0");
    assert!(projected[1].radius > 0, "the large off-screen splat reaches into the image");
    assert!(projected[1].mean2d[0] < -100.0, "mean2d is not clamped");

    // A zero quaternion cannot be normalised: culled, not NaN.
    let mut bad = testing::subpixel();
    bad.splats.rotations[0] = [0.0; 4];
    let projected = project(&bad.splats, &bad.camera);
    assert_eq!(projected[0].radius, 0);
}

#[test]
fn projection_f32_matches_f64() {
    let scene = testing::random(21, 200, 96, 64);
    let projected = project(&scene.splats, &scene.camera);
    let cam = CameraModel::<f64>::new(&scene.camera);
    for (p32, p) in projected.iter().zip(params64(&scene.splats)) {
        let p64 = project_one(&p, &cam, 3).unwrap_or_default();
        assert_eq!(p32.radius, p64.radius);
        let close = |a: f32, b: f64| (a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs());
        assert!(close(p32.mean2d[0], p64.mean2d[0]) && close(p32.mean2d[1], p64.mean2d[1]));
        assert!((0..3).all(|k| close(p32.conic[k], p64.conic[k]) && close(p32.color[k], p64.color[k])));
        assert!(close(p32.opacity, p64.opacity) && close(p32.depth, p64.depth));
    }
}

// ---------------------------------------------------------------------------------------------
// Rasterisation

/// FD of `Σ weights · image` with respect to every footprint scalar, against
/// [`composite_backward`]. Parameters whose perturbation changes the contribution signature (a
/// discontinuity: a threshold crossed) are skipped and counted.
fn check_raster(scene: &Scene, check: &mut Check) {
    let cam = CameraModel::<f64>::new(&scene.camera);
    let fps = project64(&params64(&scene.splats), &cam, scene.splats.sh_degree);
    let (w, h) = (scene.camera.width(), scene.camera.height());
    let bg = scene.background.map(f64::from);
    let weights = random_weights(17, (w * h) as usize);
    let analytic = raster_grads(&fps, w, h, bg, &weights);
    let (_, base_sig) = raster_loss(&fps, w, h, bg, &weights);
    let scale = analytic.iter().flat_map(grad_scalars).fold(0.0f64, |m, v| m.max(v.abs()));
    for i in 0..fps.len() {
        if fps[i].radius == 0 {
            continue;
        }
        for k in 0..9 {
            let eval = |delta: f64| {
                let mut f = fps.clone();
                *footprint_scalars(&mut f[i])[k].1 += delta;
                raster_loss(&f, w, h, bg, &weights)
            };
            let ((hi, sig_hi), (lo, sig_lo)) = (eval(EPS), eval(-EPS));
            if sig_hi != base_sig || sig_lo != base_sig {
                check.skipped += 1;
                continue;
            }
            let name = footprint_scalars(&mut fps[i].clone())[k].0;
            let fd = (hi - lo) / (2.0 * EPS);
            check.compare(|| format!("{} splat {i} {name}", scene.name), grad_scalars(&analytic[i])[k], fd, scale);
        }
    }
}

#[test]
fn raster_backward_matches_finite_differences() {
    let mut check = Check::new("raster, translucent multi-tile");
    check_raster(&testing::translucent(3, 40, 56, 40, 0), &mut check);
    check.finish(0.0);
    let mut check = Check::new("raster, opaque single tile");
    check_raster(&testing::opaque_tile(4, 12), &mut check);
    check.finish(0.0);
}

#[test]
fn raster_backward_matches_finite_differences_on_edge_cases() {
    // The edge cases deliberately sit on thresholds (MAX_ALPHA, the early stop, tile borders with
    // opaque splats); the few parameters whose ±ε step crosses one are skipped, the rest must match.
    let mut check = Check::new("raster, edge cases");
    for scene in testing::edge_cases() {
        check_raster(&scene, &mut check);
    }
    check.finish(0.1);
}

#[test]
fn tile_compositor_equals_the_literal_contract() {
    let mut scenes = testing::edge_cases();
    scenes.push(testing::random(8, 300, 72, 50));
    scenes.push(testing::opaque_tile(2, 30));
    for scene in scenes {
        let rendered = render(&scene.splats, &scene.camera, scene.background);
        let fps: Vec<Footprint<f32>> = rendered.projected.iter().map(Footprint::from).collect();
        let (w, h) = (scene.camera.width(), scene.camera.height());
        let bins =
            Bins { sorted_ids: rendered.state.sorted_ids.clone(), tile_ranges: rendered.state.tile_ranges.clone() };
        let (literal, _) = literal_composite(&fps, &bins, w, h, scene.background);
        let out = &rendered.output;
        assert_same(scene.name, "image", &out.image.pixels, &literal.image);
        assert_same(scene.name, "alpha", &out.alpha.pixels, &literal.alpha);
        assert_same(scene.name, "depth", &out.depth.pixels, &literal.depth);
        assert_same(scene.name, "median depth", &out.median_depth.pixels, &literal.median_depth);
        assert_same(scene.name, "transmittance", &rendered.state.final_transmittance, &literal.final_transmittance);
        assert_same(scene.name, "last contributor", &rendered.state.last_contributor, &literal.last_contributor);
    }
}

/// Exact equality, reporting the first differing pixel.
fn assert_same<V: PartialEq + std::fmt::Debug>(scene: &str, what: &str, got: &[V], want: &[V]) {
    assert_eq!(got.len(), want.len());
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!("{scene}: {what} differs first at pixel {i}: {:?} vs literal {:?}", got[i], want[i]);
    }
}

#[test]
fn binning_follows_tile_rects_and_sorts_by_depth_then_index() {
    let scene = testing::random(9, 400, 80, 60);
    let mut projected = project(&scene.splats, &scene.camera);
    // Force depth ties between pairs of splats.
    for i in (0..projected.len()).step_by(2) {
        if i + 1 < projected.len() {
            projected[i + 1].depth = projected[i].depth;
        }
    }
    let (_, state) = rasterize(&projected, 80, 60, scene.background);
    let (tiles_x, tiles_y) = tile_grid(80, 60);
    assert_eq!(state.tile_ranges.len(), (tiles_x * tiles_y) as usize);
    let mut expected = vec![Vec::new(); state.tile_ranges.len()];
    for (i, p) in projected.iter().enumerate().filter(|(_, p)| p.radius > 0) {
        let [x0, x1, y0, y1] = tile_rect(p.mean2d, p.radius, 80, 60);
        for ty in y0..y1 {
            for tx in x0..x1 {
                expected[(ty * tiles_x + tx) as usize].push(i as u32);
            }
        }
    }
    for (tile, want) in expected.iter_mut().enumerate() {
        want.sort_by(|&a, &b| projected[a as usize].depth.total_cmp(&projected[b as usize].depth).then(a.cmp(&b)));
        let [s, e] = state.tile_ranges[tile];
        assert_eq!(&state.sorted_ids[s as usize..e as usize], want.as_slice(), "tile {tile}");
    }
}

#[test]
fn max_alpha_clamp_blocks_gradients() {
    // One splat on pixel (8, 8)'s centre, so narrow that only that pixel sees it, and so opaque
    // that its α is capped at MAX_ALPHA there.
    let f = Footprint {
        mean2d: [8.5, 8.5],
        conic: [50.0, 0.0, 50.0],
        depth: 2.0,
        color: [0.2, 0.4, 0.6],
        opacity: 0.9999,
        radius: 1,
    };
    let weights = random_weights(1, 16 * 16);
    let grads = raster_grads(&[f], 16, 16, [0.5; 3], &weights);
    let g = grads[0];
    assert_eq!((g.opacity, g.mean2d, g.conic), (0.0, [0.0; 2], [0.0; 3]), "no gradient through the clamp");
    let i = 8 * 16 + 8;
    for (got, w) in g.color.iter().zip(weights[i]) {
        assert!((got - f64::from(MAX_ALPHA) * w).abs() < 1e-12, "colour still gets α·T");
    }
    let bins = bin(&[f], 16, 16);
    let (c, _) = literal_composite(&[f], &bins, 16, 16, [0.5; 3]);
    assert!((c.alpha[i] - f64::from(MAX_ALPHA)).abs() < 1e-7);
}

// ---------------------------------------------------------------------------------------------
// Composed render

/// FD of `Σ weights · render(splats)` with respect to every splat parameter, against the
/// composed backward passes, all in `f64`.
fn check_render(scene: &Scene, check: &mut Check) {
    let cam = CameraModel::<f64>::new(&scene.camera);
    let degree = scene.splats.sh_degree;
    let params = params64(&scene.splats);
    let (w, h) = (scene.camera.width(), scene.camera.height());
    let bg = scene.background.map(f64::from);
    let weights = random_weights(23, (w * h) as usize);
    let loss = |params: &[SplatParams<f64>]| raster_loss(&project64(params, &cam, degree), w, h, bg, &weights);
    let fps = project64(&params, &cam, degree);
    let fp_grads = raster_grads(&fps, w, h, bg, &weights);
    let analytic: Vec<Option<ParamGrads<f64>>> = params
        .iter()
        .zip(&fps)
        .zip(&fp_grads)
        .map(|((p, f), g)| (f.radius > 0).then(|| project_one_backward(p, &cam, degree, g)))
        .collect();
    let (_, base_sig) = loss(&params);
    let scale = analytic.iter().flatten().map(param_scale).fold(0.0, f64::max);
    for i in 0..params.len() {
        let Some(grads) = &analytic[i] else { continue };
        let mut labels = Vec::new();
        for_each_param(&mut params[i].clone(), |l, _| labels.push(l));
        for label in labels {
            let eval = |delta: f64| {
                let mut p = params.clone();
                for_each_param(&mut p[i], |l, v| {
                    if l == label {
                        *v += delta;
                    }
                });
                loss(&p)
            };
            let ((hi, sig_hi), (lo, sig_lo)) = (eval(EPS), eval(-EPS));
            if sig_hi != base_sig || sig_lo != base_sig {
                check.skipped += 1;
                continue;
            }
            let fd = (hi - lo) / (2.0 * EPS);
            check.compare(|| format!("{} splat {i} {label}", scene.name), param_grad(grads, &label), fd, scale);
        }
    }
}

#[test]
fn render_backward_matches_finite_differences() {
    let mut check = Check::new("render, translucent multi-tile, SH degree 3");
    check_render(&testing::translucent(13, 16, 48, 36, 3), &mut check);
    check.finish(0.0);
    let mut check = Check::new("render, opaque single tile");
    check_render(&testing::opaque_tile(14, 8), &mut check);
    check.finish(0.0);
}

#[test]
fn render_f32_matches_f64() {
    let scene = testing::random(31, 300, 64, 48);
    let (w, h) = (64, 48);
    let rendered = render(&scene.splats, &scene.camera, scene.background);
    let weights = random_weights(2, (w * h) as usize);
    let grad_image = ImageRgb { width: w, height: h, pixels: weights.iter().map(|g| g.map(|v| v as f32)).collect() };
    let (grads, _) = render_backward(&scene.splats, &scene.camera, &rendered, scene.background, &grad_image);

    let cam = CameraModel::<f64>::new(&scene.camera);
    let params = params64(&scene.splats);
    let fps = project64(&params, &cam, 3);
    let bins = bin(&fps, w, h);
    let c = composite(&fps, &bins, w, h, scene.background.map(f64::from));
    for (a, b) in rendered.output.image.pixels.iter().zip(&c.image) {
        assert!((0..3).all(|k| (a[k] as f64 - b[k]).abs() < 1e-4), "{a:?} vs {b:?}");
    }
    let fp_grads =
        composite_backward(&fps, bins.as_ref(), c.as_forward_ref(), w, h, scene.background.map(f64::from), &weights);
    let mut worst = 0.0f64;
    let mut scale = 0.0f64;
    for (i, p) in params.iter().enumerate() {
        if fps[i].radius == 0 {
            continue;
        }
        let g64 = project_one_backward(p, &cam, 3, &fp_grads[i]);
        let pairs = (0..3)
            .map(|k| (grads.means[i][k], g64.mean[k]))
            .chain((0..3).map(|k| (grads.log_scales[i][k], g64.log_scale[k])))
            .chain((0..4).map(|k| (grads.rotations[i][k], g64.rotation[k])))
            .chain(std::iter::once((grads.opacity_logits[i], g64.opacity_logit)))
            .chain((0..48).map(|k| (grads.sh[i][k / 3][k % 3], g64.sh[k / 3][k % 3])));
        for (a, b) in pairs {
            assert!(a.is_finite());
            worst = worst.max((a as f64 - b).abs());
            scale = scale.max(b.abs());
        }
    }
    println!("render f32 vs f64: worst abs gradient difference {worst:e}, largest gradient {scale:e}");
    assert!(worst < 1e-3 * scale, "f32 gradients drift from f64: {worst:e} vs scale {scale:e}");
}

// ---------------------------------------------------------------------------------------------
// Edge cases

fn all_finite(rendered: &Rendered) -> bool {
    let o = &rendered.output;
    o.image.pixels.iter().flatten().all(|v| v.is_finite())
        && [&o.alpha, &o.depth, &o.median_depth].iter().all(|g| g.pixels.iter().all(|v| v.is_finite()))
}

#[test]
fn edge_case_scenes_render_finite_images_and_gradients() {
    for scene in testing::edge_cases() {
        let rendered = render(&scene.splats, &scene.camera, scene.background);
        assert!(all_finite(&rendered), "{}: non-finite output", scene.name);
        let (w, h) = (scene.camera.width(), scene.camera.height());
        let grad_image = ImageRgb::new(w, h, [0.3, -0.2, 0.5]);
        let (grads, pgrads) = render_backward(&scene.splats, &scene.camera, &rendered, scene.background, &grad_image);
        assert_eq!(grads.means.len(), scene.splats.len());
        assert_eq!(pgrads.len(), scene.splats.len());
        let finite = grads
            .means
            .iter()
            .flatten()
            .chain(grads.log_scales.iter().flatten())
            .chain(grads.rotations.iter().flatten())
            .chain(&grads.opacity_logits)
            .chain(grads.sh.iter().flatten().flatten())
            .all(|v| v.is_finite());
        assert!(finite, "{}: non-finite gradient", scene.name);
        for (p, g) in rendered.projected.iter().zip(&grads.means) {
            if p.radius == 0 {
                assert_eq!(*g, [0.0; 3], "{}: culled splats get no gradient", scene.name);
            }
        }
    }
}

#[test]
fn empty_scene_is_the_background() {
    let scene = testing::empty();
    let rendered = render(&scene.splats, &scene.camera, scene.background);
    assert!(rendered.output.image.pixels.iter().all(|p| *p == scene.background));
    assert!(rendered.output.alpha.pixels.iter().all(|&a| a == 0.0));
    assert!(rendered.output.depth.pixels.iter().all(|&d| d == 0.0));
    assert!(rendered.output.median_depth.pixels.iter().all(|&d| d == 0.0));
    assert!(rendered.state.sorted_ids.is_empty());
}

#[test]
fn behind_camera_splats_do_not_change_the_image() {
    let scene = testing::behind_camera();
    let full = render(&scene.splats, &scene.camera, scene.background);
    let mut visible = scene.splats.clone();
    visible.retain_indices(|i| i == 3);
    let only = render(&visible, &scene.camera, scene.background);
    assert_eq!(full.output, only.output);
    assert!(full.output.alpha.pixels.iter().any(|&a| a > 0.3));
}

#[test]
fn full_cover_splat_reaches_every_tile_and_pixel() {
    let scene = testing::full_cover();
    let rendered = render(&scene.splats, &scene.camera, scene.background);
    assert!(rendered.state.tile_ranges.iter().all(|r| r[1] - r[0] == 1));
    assert!(rendered.output.alpha.pixels.iter().all(|&a| a > 0.5), "every pixel is covered");
    let depth = rendered.projected[0].depth;
    assert!(rendered.output.depth.pixels.iter().all(|&d| (d - depth).abs() < 1e-4));
    assert!(rendered.output.median_depth.pixels.iter().all(|&d| d == depth), "α > 0.5 everywhere");
}

#[test]
fn tile_straddling_splats_are_binned_to_every_touched_tile() {
    let scene = testing::tile_straddle();
    let rendered = render(&scene.splats, &scene.camera, scene.background);
    let (tiles_x, _) = tile_grid(scene.camera.width(), scene.camera.height());
    // Splat 0 sits on the corner shared by tiles (0,0), (1,0), (0,1), (1,1).
    for (tx, ty) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        let [s, e] = rendered.state.tile_ranges[(ty * tiles_x + tx) as usize];
        assert!(rendered.state.sorted_ids[s as usize..e as usize].contains(&0), "tile ({tx}, {ty})");
    }
    // The four pixels around the corner see it equally (the splat is isotropic on screen up to
    // the camera's slight rotation).
    let a = &rendered.output.alpha;
    let at = |x: u32, y: u32| a.pixels[(y * a.width + x) as usize];
    let around = [at(15, 15), at(16, 15), at(15, 16), at(16, 16)];
    assert!(around.iter().all(|&v| (v - around[0]).abs() < 0.05 && v > 0.3), "{around:?}");
}

#[test]
fn subpixel_splats_keep_the_low_pass_footprint() {
    let scene = testing::subpixel();
    let rendered = render(&scene.splats, &scene.camera, scene.background);
    for p in &rendered.projected {
        assert!(p.radius >= 1);
        // Σ2 ≈ LOW_PASS · I, so the conic is ≈ I / LOW_PASS.
        assert!((p.conic[0] - 1.0 / LOW_PASS).abs() < 0.01 && p.conic[1].abs() < 0.01);
    }
    // Splat 1 sits on pixel (33, 20)'s centre: α there is its opacity.
    let a = &rendered.output.alpha;
    let centre = a.pixels[(20 * a.width + 33) as usize];
    assert!((centre - rendered.projected[1].opacity).abs() < 1e-5, "{centre}");
}

#[test]
fn opacity_extremes_are_invisible_or_capped() {
    let scene = testing::opacity_extremes();
    let rendered = render(&scene.splats, &scene.camera, scene.background);
    let a = &rendered.output.alpha;
    let at = |x: u32, y: u32| a.pixels[(y * a.width + x) as usize];
    assert_eq!(at(20, 20), 0.0, "opacity 1e-3 is below MIN_ALPHA everywhere");
    assert!((at(40, 20) - MAX_ALPHA).abs() < 1e-6, "opacity ~1 is capped at MAX_ALPHA: {}", at(40, 20));
    let grad_image = ImageRgb::new(a.width, a.height, [1.0, 1.0, 1.0]);
    let (grads, _) = render_backward(&scene.splats, &scene.camera, &rendered, scene.background, &grad_image);
    assert_eq!(grads.opacity_logits[0], 0.0, "an invisible splat gets no gradient");
    assert_eq!(grads.means[0], [0.0; 3]);
}

#[test]
fn early_stop_leaves_transmittance_above_the_threshold() {
    let scene = testing::early_stop();
    let rendered = render(&scene.splats, &scene.camera, scene.background);
    let t = &rendered.state.final_transmittance;
    assert!(t.iter().all(|&v| v >= MIN_TRANSMITTANCE));
    // Somewhere, compositing stopped before the end of the tile's list.
    let (tiles_x, _) = tile_grid(scene.camera.width(), scene.camera.height());
    let w = scene.camera.width();
    let stopped = (0..t.len()).any(|i| {
        let (x, y) = (i as u32 % w, i as u32 / w);
        let [s, e] = rendered.state.tile_ranges[((y / TILE_SIZE) * tiles_x + x / TILE_SIZE) as usize];
        rendered.state.last_contributor[i] < (e - s) / 2 && t[i] < 1e-3
    });
    assert!(stopped, "the early stop never triggered");
}

#[test]
fn mismatched_backward_inputs_give_zero_gradients_not_a_panic() {
    let scene = testing::random(1, 10, 32, 32);
    let rendered = render(&scene.splats, &scene.camera, scene.background);
    let wrong = ImageRgb::new(16, 16, [1.0; 3]);
    let g = rasterize_backward(&rendered.projected, &rendered.state, 32, 32, scene.background, &wrong);
    assert!(g.iter().all(|g| *g == ProjectedGrad::default()));
}
