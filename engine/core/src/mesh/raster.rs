//! Triangle rasterisation at pixel centres, shared by the texel map of the baker, the per-view
//! depth buffers and the atlas's overlap checks.
//!
//! Pixel `(x, y)` covers `[x, x+1) × [y, y+1)` and is sampled at its centre `(x + 0.5, y + 0.5)`,
//! the convention of [`crate::camera::Intrinsics`]; the same holds for texels in UV space scaled
//! by the texture size.

use glam::Vec3;

use super::TriMesh;
use crate::camera::{Camera, NEAR_PLANE};

/// Calls `visit(x, y, barycentrics)` for every pixel of the `width × height` grid whose centre
/// lies inside the triangle `corners`, or at most `tolerance` pixels outside its edges (a
/// negative tolerance keeps only centres at least that far inside). Either winding is accepted;
/// degenerate triangles visit nothing. Barycentrics are those of the pixel centre, so they may be
/// slightly negative when `tolerance > 0`.
pub fn rasterize(
    corners: [[f32; 2]; 3],
    width: u32,
    height: u32,
    tolerance: f32,
    mut visit: impl FnMut(u32, u32, [f32; 3]),
) {
    let [a, b, c] = corners;
    let area2 = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
    if area2.abs() <= f32::EPSILON * 1e-3 || width == 0 || height == 0 || !area2.is_finite() {
        return;
    }
    // Per edge (opposite corner i): the length, to turn barycentrics into distances.
    let edge_length = |p: [f32; 2], q: [f32; 2]| ((q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2)).sqrt();
    let lengths = [edge_length(b, c), edge_length(c, a), edge_length(a, b)];
    let margin: [f32; 3] = std::array::from_fn(|i| -tolerance * lengths[i] / area2.abs());
    let lo = |k: usize| a[k].min(b[k]).min(c[k]) - tolerance.max(0.0);
    let hi = |k: usize| a[k].max(b[k]).max(c[k]) + tolerance.max(0.0);
    let x0 = (lo(0) - 0.5).ceil().max(0.0) as u32;
    let y0 = (lo(1) - 0.5).ceil().max(0.0) as u32;
    let x1 = ((hi(0) - 0.5).floor().min(width as f32 - 1.0)).max(-1.0) as i64;
    let y1 = ((hi(1) - 0.5).floor().min(height as f32 - 1.0)).max(-1.0) as i64;
    let cross = |p: [f32; 2], q: [f32; 2], r: [f32; 2]| (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]);
    for y in y0 as i64..=y1 {
        let py = y as f32 + 0.5;
        for x in x0 as i64..=x1 {
            let p = [x as f32 + 0.5, py];
            let w = [cross(b, c, p) / area2, cross(c, a, p) / area2, cross(a, b, p) / area2];
            if w[0] >= margin[0] && w[1] >= margin[1] && w[2] >= margin[2] {
                visit(x as u32, y as u32, w);
            }
        }
    }
}

/// Camera-frame depth (OpenCV +Z) of the nearest surface at each pixel centre, `+∞` where none.
/// Triangles reaching behind the camera are left out.
pub fn depth_buffer(mesh: &TriMesh, camera: &Camera) -> Vec<f32> {
    let (width, height) = (camera.width(), camera.height());
    let mut depth = vec![f32::INFINITY; width as usize * height as usize];
    let camera_from_world = camera.camera_from_world();
    for t in &mesh.triangles {
        let in_camera = t.map(|v| camera_from_world.transform_point(Vec3::from(mesh.positions[v as usize])));
        if in_camera.iter().any(|p| p.z <= NEAR_PLANE) {
            continue;
        }
        let corners = in_camera.map(|p| camera.intrinsics.project(p));
        let inverse_z = in_camera.map(|p| 1.0 / p.z);
        rasterize(corners, width, height, 0.0, |x, y, w| {
            // 1/z is affine in screen space, so barycentrics of the pixel interpolate it.
            let z = 1.0 / (w[0] * inverse_z[0] + w[1] * inverse_z[1] + w[2] * inverse_z[2]);
            let d = &mut depth[y as usize * width as usize + x as usize];
            *d = d.min(z);
        });
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covered_pixel_count_matches_the_area_and_barycentrics_reconstruct_the_centre() {
        let corners: [[f32; 2]; 3] = [[3.2, 4.1], [60.7, 10.3], [20.5, 55.9]];
        let area = 0.5
            * ((corners[1][0] - corners[0][0]) * (corners[2][1] - corners[0][1])
                - (corners[1][1] - corners[0][1]) * (corners[2][0] - corners[0][0]))
                .abs();
        let mut count = 0usize;
        rasterize(corners, 64, 64, 0.0, |x, y, w| {
            count += 1;
            let px: [f32; 2] =
                std::array::from_fn(|k| w[0] * corners[0][k] + w[1] * corners[1][k] + w[2] * corners[2][k]);
            assert!((px[0] - (x as f32 + 0.5)).abs() < 1e-3 && (px[1] - (y as f32 + 0.5)).abs() < 1e-3);
            assert!(w.iter().all(|&v| v >= -1e-6));
        });
        // The pixel-centre count of a large triangle is its area up to a perimeter term.
        assert!((count as f32 - area).abs() < 0.05 * area, "{count} vs {area}");
    }

    #[test]
    fn shared_edges_are_covered_without_gaps_and_winding_does_not_matter() {
        // A square split in two, one triangle clockwise, the other counter-clockwise.
        let mut hits = vec![0u8; 32 * 32];
        let mut mark = |x: u32, y: u32, _w: [f32; 3]| hits[(y * 32 + x) as usize] += 1;
        rasterize([[2.0, 2.0], [30.0, 2.0], [30.0, 30.0]], 32, 32, 0.0, &mut mark);
        rasterize([[2.0, 2.0], [2.0, 30.0], [30.0, 30.0]], 32, 32, 0.0, &mut mark);
        for y in 2..30 {
            for x in 2..30 {
                assert!(hits[y * 32 + x] >= 1, "gap at {x},{y}");
            }
        }
        assert_eq!(hits[0], 0);
    }
}
