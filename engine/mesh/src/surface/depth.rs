//! Depth maps for fusion: the renderer's compositing order and opacities; each pixel's depth is
//! taken at the splat where transmittance first falls to a given level (½ is the renderer's
//! `median_depth`), either that splat's centre depth or, by default, where the pixel's ray passes
//! closest (in the Gaussian's own metric) to the splat's centre.
//!
//! For a splat with camera-frame centre `p` and covariance `Σ`, the density along the ray
//! `s · r` (`r = ((u − cx)/fx, (v − cy)/fy, 1)`, OpenCV axes, so `s` is the depth z) peaks at
//! `s* = rᵀ Σ⁻¹ p / rᵀ Σ⁻¹ r`. For the flat Gaussians a trained model puts on surfaces this is
//! where the ray crosses the splat's plane, whereas the centre depth is off by up to
//! `σ · tan(incidence)` (millimetres at grazing angles). `Σ⁻¹ = (R_c Rq) diag(1/s²) (R_c Rq)ᵀ` is
//! formed from the scales directly, so very flat splats stay well conditioned.

use glam::{DMat3, DVec3, Mat3, Quat};
use rayon::prelude::*;

use kiln_core::camera::Camera;
use kiln_core::image_buf::ImageGray;
use kiln_core::splats::Splats;
use kiln_splats::render::{MAX_ALPHA, MIN_ALPHA, MIN_TRANSMITTANCE, TILE_SIZE, project, tile_grid, tile_rect};

use crate::surface::DepthMode;

/// What one pixel needs of a splat.
struct DepthSplat {
    mean2d: [f32; 2],
    conic: [f32; 3],
    opacity: f32,
    /// `Σ⁻¹ p` and the six entries of `Σ⁻¹` (camera frame).
    inv_cov_p: DVec3,
    inv_cov: DMat3,
    /// Centre depth, used when the ray-peak depth is not usable.
    depth: f32,
}

impl DepthSplat {
    /// The depth `mode` asks for along `ray` (pixel coordinates `(u, v)` as `((u − cx)/fx,
    /// (v − cy)/fy, 1)`).
    fn depth_along(&self, ray: DVec3, mode: DepthMode) -> f32 {
        match mode {
            DepthMode::SplatCentre => self.depth,
            DepthMode::RayPeak => self.ray_depth(ray),
        }
    }

    /// Depth of the density peak along `ray`.
    fn ray_depth(&self, ray: DVec3) -> f32 {
        let den = ray.dot(self.inv_cov * ray);
        let s = ray.dot(self.inv_cov_p) / den;
        if s.is_finite() && s > 0.0 { s as f32 } else { self.depth }
    }
}

/// `(depth, alpha)` images of `splats` from `camera`, compositing exactly as [`kiln_splats::render`]:
/// the depth (`mode`) of the splat at which transmittance first falls to `transmittance` (0
/// where it never does); alpha = 1 − final transmittance.
pub fn render_depth_at(
    splats: &Splats,
    camera: &Camera,
    mode: DepthMode,
    transmittance: f32,
) -> (ImageGray, ImageGray) {
    let (w, h) = (camera.width(), camera.height());
    let projected = project(splats, camera);
    let camera_from_world = camera.camera_from_world();
    let rc = camera_from_world.rotation.as_dmat3();
    let tc = camera_from_world.translation.as_dvec3();
    let (tiles_x, tiles_y) = tile_grid(w, h);
    let mut bins: Vec<Vec<(f32, u32)>> = vec![Vec::new(); (tiles_x * tiles_y) as usize];
    let mut prepared = Vec::with_capacity(projected.len());
    for (i, p) in projected.iter().enumerate() {
        if p.radius == 0 {
            continue;
        }
        let q = splats.rotations[i];
        let rotation = Mat3::from_quat(Quat::from_xyzw(q[1], q[2], q[3], q[0]).normalize()).as_dmat3();
        let m = rc * rotation;
        let inv_var = DVec3::from_array(splats.log_scales[i].map(|s| (-2.0 * s as f64).exp()));
        let inv_cov = m * DMat3::from_diagonal(inv_var) * m.transpose();
        let mean_c = rc * DVec3::from_array(splats.means[i].map(f64::from)) + tc;
        let index = prepared.len() as u32;
        prepared.push(DepthSplat {
            mean2d: p.mean2d,
            conic: p.conic,
            opacity: p.opacity,
            inv_cov_p: inv_cov * mean_c,
            inv_cov,
            depth: p.depth,
        });
        let [x0, x1, y0, y1] = tile_rect(p.mean2d, p.radius, w, h);
        for ty in y0..y1 {
            for tx in x0..x1 {
                bins[(ty * tiles_x + tx) as usize].push((p.depth, index));
            }
        }
    }
    let k = camera.intrinsics;
    let tiles: Vec<Vec<(u32, f32, f32)>> = bins
        .into_par_iter()
        .enumerate()
        .map(|(tile, mut list)| {
            list.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let (tx, ty) = (tile as u32 % tiles_x, tile as u32 / tiles_x);
            let mut out = Vec::with_capacity((TILE_SIZE * TILE_SIZE) as usize);
            for py in ty * TILE_SIZE..((ty + 1) * TILE_SIZE).min(h) {
                for px in tx * TILE_SIZE..((tx + 1) * TILE_SIZE).min(w) {
                    let (u, v) = (px as f32 + 0.5, py as f32 + 0.5);
                    let ray = DVec3::new(((u - k.cx) / k.fx) as f64, ((v - k.cy) / k.fy) as f64, 1.0);
                    let (depth, alpha) = composite_pixel(&list, &prepared, [u, v], ray, (mode, transmittance));
                    out.push((py * w + px, depth, alpha));
                }
            }
            out
        })
        .collect();
    let mut depth = ImageGray::new(w, h, 0.0);
    let mut alpha = ImageGray::new(w, h, 0.0);
    for (index, d, a) in tiles.into_iter().flatten() {
        depth.pixels[index as usize] = d;
        alpha.pixels[index as usize] = a;
    }
    (depth, alpha)
}

/// Front-to-back compositing of one pixel: `(depth where transmittance reaches the level, or 0;
/// alpha)`.
fn composite_pixel(
    list: &[(f32, u32)],
    splats: &[DepthSplat],
    pixel: [f32; 2],
    ray: DVec3,
    (mode, level): (DepthMode, f32),
) -> (f32, f32) {
    let mut transmittance = 1.0f32;
    let mut depth = 0.0;
    for &(_, i) in list {
        let s = &splats[i as usize];
        let (dx, dy) = (pixel[0] - s.mean2d[0], pixel[1] - s.mean2d[1]);
        let [a, b, c] = s.conic;
        let power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy;
        if power > 0.0 {
            continue;
        }
        let alpha = (s.opacity * power.exp()).min(MAX_ALPHA);
        if alpha < MIN_ALPHA {
            continue;
        }
        let next = transmittance * (1.0 - alpha);
        if next < MIN_TRANSMITTANCE {
            break;
        }
        if depth == 0.0 && next <= level {
            depth = s.depth_along(ray, mode);
        }
        transmittance = next;
    }
    (depth, 1.0 - transmittance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use glam::Vec3;
    use kiln_core::camera::{Intrinsics, WorldFromCameraCv};
    use kiln_core::splats::{SH_COEFFS, logit};
    use kiln_splats::render::render;

    /// A camera at the origin looking along +Z (OpenCV axes).
    fn camera() -> Camera {
        let intrinsics = Intrinsics { fx: 100.0, fy: 100.0, cx: 32.0, cy: 32.0, width: 64, height: 64 };
        Camera {
            intrinsics,
            world_from_camera: WorldFromCameraCv { rotation: Mat3::IDENTITY, translation: Vec3::ZERO },
        }
    }

    /// One big, flat, nearly opaque splat in the plane through `(0, 0, 2)` tilted 45° about Y.
    fn tilted_disc() -> Splats {
        let mut splats = Splats::default();
        let q = Quat::from_rotation_y(std::f32::consts::FRAC_PI_4);
        splats.push(
            [0.0, 0.0, 2.0],
            [0.3f32.ln(), 0.3f32.ln(), 1e-4f32.ln()],
            [q.w, q.x, q.y, q.z],
            logit(0.99),
            [[0.0; 3]; SH_COEFFS],
        );
        splats
    }

    #[test]
    fn depth_follows_the_tilted_plane_not_the_centre() {
        let splats = tilted_disc();
        let (depth, alpha) = render_depth_at(&splats, &camera(), DepthMode::RayPeak, 0.5);
        let reference = render(&splats, &camera(), [0.0; 3]).output;
        // Same compositing as the renderer: identical alpha, median found at the same pixels.
        for (a, b) in alpha.pixels.iter().zip(&reference.alpha.pixels) {
            assert!((a - b).abs() < 1e-5);
        }
        // The plane: normal R·z = (sin 45°, 0, cos 45°) through (0, 0, 2), i.e. x + z = 2.
        let mut checked = 0;
        for py in 0..64u32 {
            for px in 0..64u32 {
                let d = depth.pixels[(py * 64 + px) as usize];
                if d == 0.0 {
                    continue;
                }
                assert!(reference.median_depth.pixels[(py * 64 + px) as usize] > 0.0);
                let x_over_z = (px as f32 + 0.5 - 32.0) / 100.0;
                let expected = 2.0 / (1.0 + x_over_z);
                assert!((d - expected).abs() < 1e-3 * expected, "pixel ({px}, {py}): {d} vs {expected}");
                checked += 1;
            }
        }
        assert!(checked > 500, "{checked} pixels with a depth");
    }
}
