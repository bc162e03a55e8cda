//! Deterministic test scenes for the renderer, shared by the CPU reference's own tests and the
//! GPU backend's GPU-vs-CPU tests, so both are held to exactly the same inputs.
//!
//! Every scene is a pure function of its arguments (seeded [`Pcg32`], no clocks, no files), so a
//! GPU test can build the same [`Scene`], run [`crate::render::render`] as the reference and
//! compare. [`edge_cases`] lists the hard corners of the contract in `render` (culling, tile
//! borders, whole-image and sub-pixel splats, the `MIN_ALPHA`/`MAX_ALPHA` clamps, the
//! transmittance early stop, an empty scene); [`random`] and [`translucent`] are general scenes.
//!
//! A culled splat projects to an all-zero `ProjectedSplat` (`radius == 0`); compare only the radius
//! for those.
//!
//! For finite-difference tests of positions and scales, use [`translucent`]: its opacities stay
//! at or below [`TRANSLUCENT_MAX_OPACITY`], so a pixel outside a splat's `3σ` square (where tile
//! binning changes discontinuously) never reaches `MIN_ALPHA`.

use glam::Vec3;

use kiln_core::camera::{Camera, Intrinsics, WorldFromCameraCv};
use kiln_core::rng::Pcg32;
use kiln_core::splats::{SH_COEFFS, ShCoeffs, Splats, logit};

/// Highest opacity in [`translucent`]: `0.3 · exp(−4.5) < MIN_ALPHA`, so a splat is invisible
/// outside its `3σ` binning square and moving it never changes a pixel discontinuously.
pub const TRANSLUCENT_MAX_OPACITY: f32 = 0.3;
/// Lowest opacity in the random scenes: comfortably above `MIN_ALPHA` so every splat is visible.
const MIN_RANDOM_OPACITY: f32 = 0.05;
/// Highest opacity in [`random`] and [`opaque_tile`]: below `MAX_ALPHA` with margin, so only the
/// dedicated edge case exercises the clamp.
const MAX_RANDOM_OPACITY: f32 = 0.9;
/// Distance from the camera to the centre of the random splat cloud.
const SCENE_DEPTH: f32 = 4.0;
/// Focal length as a multiple of the image width (a ~50° horizontal field of view).
const FOCAL_PER_WIDTH: f32 = 1.1;

/// One renderer test input.
#[derive(Clone, Debug)]
pub struct Scene {
    pub name: &'static str,
    pub splats: Splats,
    pub camera: Camera,
    pub background: [f32; 3],
}

/// A `width × height` camera at `eye` looking at `target`, image `+Y` towards world `+Y` (world
/// −Y up).
pub fn camera_looking_at(eye: Vec3, target: Vec3, width: u32, height: u32) -> Camera {
    let focal = FOCAL_PER_WIDTH * width as f32;
    Camera {
        intrinsics: Intrinsics { fx: focal, fy: focal, cx: width as f32 / 2.0, cy: height as f32 / 2.0, width, height },
        world_from_camera: WorldFromCameraCv::look_at(eye, target, Vec3::NEG_Y),
    }
}

/// The camera every scene uses: slightly off-axis (so no rotation is the identity) and looking at
/// a point [`SCENE_DEPTH`] in front of the origin.
pub fn default_camera(width: u32, height: u32) -> Camera {
    camera_looking_at(Vec3::new(0.3, -0.2, 0.0), Vec3::new(0.0, 0.0, SCENE_DEPTH), width, height)
}

/// World point that `camera` sees at pixel position `(x, y)` (pixel units, so the centre of pixel
/// `(i, j)` is `(i + 0.5, j + 0.5)`) at camera-frame depth `depth`.
pub fn point_at_pixel(camera: &Camera, x: f32, y: f32, depth: f32) -> [f32; 3] {
    let k = camera.intrinsics;
    let point_in_camera = Vec3::new((x - k.cx) / k.fx * depth, (y - k.cy) / k.fy * depth, depth);
    let pose = camera.world_from_camera;
    (pose.rotation * point_in_camera + pose.translation).to_array()
}

/// SH coefficients giving base colour `rgb` (degree 0) plus `rest_amplitude`-sized random higher
/// bands.
fn random_sh(rng: &mut Pcg32, rgb: [f32; 3], rest_amplitude: f32) -> ShCoeffs {
    let mut sh = [[0.0; 3]; SH_COEFFS];
    sh[0] = rgb.map(|c| (c - 0.5) / kiln_core::splats::SH_C0);
    for coeff in sh.iter_mut().skip(1) {
        *coeff = [0; 3].map(|_| rest_amplitude * (2.0 * rng.uniform() - 1.0));
    }
    sh
}

fn uniform(rng: &mut Pcg32, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.uniform()
}

/// A random unit-ish quaternion (deliberately not normalised: the renderer normalises).
fn random_rotation(rng: &mut Pcg32) -> [f32; 4] {
    [0; 4].map(|_| uniform(rng, -1.0, 1.0) + 0.1)
}

/// How [`random_splats`] draws its splats.
#[derive(Clone, Copy, Debug)]
pub struct RandomSpec {
    pub count: usize,
    /// Opacities are uniform in `[MIN_RANDOM_OPACITY, max_opacity]`.
    pub max_opacity: f32,
    /// Per-axis standard deviations are uniform in this range, in pixels at the splat's depth.
    pub sigma_px: [f32; 2],
    pub sh_degree: u32,
}

/// Random splats inside the view of `camera` (centres at least 6 % of the image from its
/// border, depths within 1 of [`SCENE_DEPTH`]), colours in `[0.2, 0.8]` plus small random higher
/// SH bands.
pub fn random_splats(seed: u64, camera: &Camera, spec: &RandomSpec) -> Splats {
    let mut rng = Pcg32::new(seed);
    let (w, h) = (camera.width() as f32, camera.height() as f32);
    let mut splats = Splats { sh_degree: spec.sh_degree, ..Splats::default() };
    for _ in 0..spec.count {
        let depth = uniform(&mut rng, SCENE_DEPTH - 1.0, SCENE_DEPTH + 1.0);
        let xy = [uniform(&mut rng, 0.06 * w, 0.94 * w), uniform(&mut rng, 0.06 * h, 0.94 * h)];
        let mean = point_at_pixel(camera, xy[0], xy[1], depth);
        let log_scale = [0; 3].map(|_| {
            let sigma_px = uniform(&mut rng, spec.sigma_px[0], spec.sigma_px[1]);
            (sigma_px * depth / camera.intrinsics.fx).ln()
        });
        let opacity = uniform(&mut rng, MIN_RANDOM_OPACITY, spec.max_opacity);
        let rgb = [0; 3].map(|_| uniform(&mut rng, 0.2, 0.8));
        let sh = random_sh(&mut rng, rgb, 0.1);
        splats.push(mean, log_scale, random_rotation(&mut rng), logit(opacity), sh);
    }
    splats
}

/// A general scene: `count` random splats of opacities up to 0.9 and sizes from half a pixel to
/// 6 % of the image width, SH degree 3, on a `width × height` image.
pub fn random(seed: u64, count: usize, width: u32, height: u32) -> Scene {
    let camera = default_camera(width, height);
    let spec =
        RandomSpec { count, max_opacity: MAX_RANDOM_OPACITY, sigma_px: [0.5, 0.06 * width as f32], sh_degree: 3 };
    Scene { name: "random", splats: random_splats(seed, &camera, &spec), camera, background: [0.1, 0.2, 0.3] }
}

/// Like [`random`] but with opacities at most [`TRANSLUCENT_MAX_OPACITY`]: smooth in every
/// parameter almost everywhere, for finite-difference tests.
pub fn translucent(seed: u64, count: usize, width: u32, height: u32, sh_degree: u32) -> Scene {
    let camera = default_camera(width, height);
    let spec =
        RandomSpec { count, max_opacity: TRANSLUCENT_MAX_OPACITY, sigma_px: [0.5, 0.06 * width as f32], sh_degree };
    Scene { name: "translucent", splats: random_splats(seed, &camera, &spec), camera, background: [0.3, 0.5, 0.2] }
}

/// A single 14×12 tile (binning cannot change) with `count` splats of opacity up to 0.9 and
/// 1–3 pixels wide: strong occlusion, for finite-difference tests of the transmittance terms.
pub fn opaque_tile(seed: u64, count: usize) -> Scene {
    let camera = default_camera(14, 12);
    let spec = RandomSpec { count, max_opacity: MAX_RANDOM_OPACITY, sigma_px: [1.0, 3.0], sh_degree: 1 };
    Scene { name: "opaque_tile", splats: random_splats(seed, &camera, &spec), camera, background: [0.6, 0.4, 0.5] }
}

/// Width of the edge-case images: exactly 4 tiles.
const EDGE_W: u32 = 64;
/// Height of the edge-case images: 3 tiles, the last one partial (8 rows).
const EDGE_H: u32 = 40;

/// One splat of colour `rgb` and opacity `opacity`, isotropic with world standard deviation
/// `sigma`, seen by `camera` at pixel `(x, y)` and depth `depth`.
fn push_at(splats: &mut Splats, camera: &Camera, xy: [f32; 2], depth: f32, sigma: f32, opacity: f32, rgb: [f32; 3]) {
    let mut rng = Pcg32::new(splats.len() as u64);
    let mean = point_at_pixel(camera, xy[0], xy[1], depth);
    splats.push(mean, [sigma.ln(); 3], [1.0, 0.0, 0.0, 0.0], logit(opacity), random_sh(&mut rng, rgb, 0.0));
}

fn edge_scene(name: &'static str, build: impl FnOnce(&mut Splats, &Camera)) -> Scene {
    let camera = default_camera(EDGE_W, EDGE_H);
    let mut splats = Splats::default();
    build(&mut splats, &camera);
    Scene { name, splats, camera, background: [0.25, 0.5, 0.75] }
}

/// Splats behind the camera, in its plane and just short of the near plane (all culled), plus
/// one visible splat.
pub fn behind_camera() -> Scene {
    edge_scene("behind_camera", |s, cam| {
        for depth in [-2.0, 0.0, 0.005] {
            push_at(s, cam, [32.0, 20.0], depth, 0.05, 0.8, [0.95, 0.05, 0.05]);
        }
        push_at(s, cam, [20.0, 20.0], 4.0, 0.05, 0.5, [0.05, 0.95, 0.05]);
    })
}

/// Splats centred exactly on tile corners and edges, and one sitting on the partial last tile
/// row.
pub fn tile_straddle() -> Scene {
    edge_scene("tile_straddle", |s, cam| {
        for (i, xy) in [[16.0, 16.0], [32.0, 16.0], [48.0, 24.0], [16.0, 32.0], [40.0, 39.5]].into_iter().enumerate() {
            push_at(s, cam, xy, 4.0 + i as f32 * 0.1, 0.04, 0.7, [0.9, 0.5, 0.1]);
        }
    })
}

/// One splat far larger than the image, covering every tile.
pub fn full_cover() -> Scene {
    edge_scene("full_cover", |s, cam| push_at(s, cam, [30.0, 18.0], 4.0, 5.0, 0.8, [0.2, 0.7, 0.4]))
}

/// Splats far smaller than a pixel (their footprint is the low-pass filter alone).
pub fn subpixel() -> Scene {
    edge_scene("subpixel", |s, cam| {
        for (i, xy) in [[10.3, 10.7], [33.5, 20.5], [50.0, 30.0]].into_iter().enumerate() {
            push_at(s, cam, xy, 4.0 + i as f32, 1e-4, 0.9, [0.95, 0.9, 0.1]);
        }
    })
}

/// Opacity near 0 (below `MIN_ALPHA` everywhere: invisible) and near 1 (`α` capped at
/// `MAX_ALPHA` around the centre), each centred on a pixel centre.
pub fn opacity_extremes() -> Scene {
    edge_scene("opacity_extremes", |s, cam| {
        push_at(s, cam, [20.5, 20.5], 4.0, 0.05, 1e-3, [0.95, 0.05, 0.95]);
        push_at(s, cam, [40.5, 20.5], 4.0, 0.05, 0.9999, [0.05, 0.95, 0.95]);
    })
}

/// No splats: the image is the background.
pub fn empty() -> Scene {
    edge_scene("empty", |_, _| {})
}

/// Forty nearly opaque layers over the centre of the image: transmittance falls below
/// `MIN_TRANSMITTANCE` and compositing stops early.
pub fn early_stop() -> Scene {
    edge_scene("early_stop", |s, cam| {
        for i in 0..40 {
            let rgb = [0.05 + 0.9 * i as f32 / 40.0, 0.5, 0.95 - 0.9 * i as f32 / 40.0];
            push_at(s, cam, [32.0 + (i % 5) as f32, 20.0 - (i % 3) as f32], 3.0 + 0.05 * i as f32, 0.3, 0.95, rgb);
        }
    })
}

/// A splat whose SH colour is negative in one channel (clamped to 0) and one far outside the
/// frustum on the left but large enough to reach into the image (its Jacobian direction is
/// clamped).
pub fn clamps() -> Scene {
    edge_scene("clamps", |s, cam| {
        push_at(s, cam, [20.0, 20.0], 4.0, 0.08, 0.7, [-0.3, 0.6, 0.9]);
        push_at(s, cam, [-120.0, 20.0], 4.0, 2.0, 0.7, [0.9, 0.6, 0.1]);
    })
}

/// Every edge-case scene.
pub fn edge_cases() -> Vec<Scene> {
    vec![
        behind_camera(),
        tile_straddle(),
        full_cover(),
        subpixel(),
        opacity_extremes(),
        empty(),
        early_stop(),
        clamps(),
    ]
}
