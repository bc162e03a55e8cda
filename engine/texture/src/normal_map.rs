//! Normal-map baking: the detail of a dense mesh, stored in the tangent space of its decimated
//! version (glTF convention).
//!
//! Each texel of the decimated mesh's atlas gives a surface point; the closest point of the dense
//! mesh (found through a uniform grid of its triangles) gives the detailed normal, interpolated
//! from the dense mesh's vertex normals. The normal is written in the texel's tangent frame:
//! tangent `T` along `+u`, bitangent `B` towards `−v` (up in the image, as glTF's "+Y up" normal
//! textures expect with its top-left UV origin), both orthonormalised against the decimated
//! mesh's interpolated vertex normal `N`; RGB = `(n · T, n · B, n · N) / 2 + 1/2`.

use glam::{Vec2, Vec3};
use rayon::prelude::*;

use crate::{MAX_TEXTURE_SIZE, MIN_TEXTURE_SIZE, TextureError};
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::raster::rasterize;

/// Grid cells per dense triangle on average: about one triangle per cell keeps both the number
/// of cells visited and the triangles tested per cell small.
const CELLS_PER_TRIANGLE: f32 = 1.0;
/// Texels within this many texels outside a triangle are baked too (as the base colour is).
const EDGE_TEXELS: f32 = 0.75;
/// Encoded value of a texel outside every triangle: the unperturbed normal `(0, 0, 1)`.
const FLAT: [u8; 3] = [128, 128, 255];

/// A tangent-space normal map (8-bit, glTF / OpenGL convention) for `low` (with `uvs`) carrying
/// the normals of `dense`, the surface `low` was decimated from.
pub fn bake_normal_map(dense: &TriMesh, low: &TriMesh, texture_size: u32) -> Result<image::RgbImage, TextureError> {
    if !(MIN_TEXTURE_SIZE..=MAX_TEXTURE_SIZE).contains(&texture_size) {
        return Err(TextureError::TextureSize(texture_size));
    }
    if low.triangles.is_empty() || dense.triangles.is_empty() {
        return Err(TextureError::EmptyMesh);
    }
    if low.uvs.len() != low.num_vertices() {
        return Err(TextureError::MissingUvs { uvs: low.uvs.len(), vertices: low.num_vertices() });
    }
    super::atlas::check_indices(low)?;
    super::atlas::check_indices(dense)?;
    let grid = TriangleGrid::new(dense);
    let dense_normals =
        if dense.normals.len() == dense.num_vertices() { dense.normals.clone() } else { dense.vertex_normals() };
    let low_normals = if low.normals.len() == low.num_vertices() { low.normals.clone() } else { low.vertex_normals() };
    let texels = texel_triangles(low, texture_size);
    let bytes: Vec<u8> = texels
        .par_iter()
        .flat_map_iter(|hit| {
            let Some((f, w)) = hit else { return FLAT };
            let t = low.triangles[*f as usize];
            let point = interpolate(t.map(|v| Vec3::from(low.positions[v as usize])), *w);
            let normal = interpolate(t.map(|v| Vec3::from(low_normals[v as usize])), *w).normalize_or_zero();
            let Some((tangent, bitangent)) = tangent_frame(low, t, normal) else {
                return FLAT;
            };
            let Some((g, gw)) = grid.closest(dense, point) else {
                return FLAT;
            };
            let detail = interpolate(dense.triangles[g as usize].map(|v| Vec3::from(dense_normals[v as usize])), gw);
            let local = Vec3::new(detail.dot(tangent), detail.dot(bitangent), detail.dot(normal)).normalize_or_zero();
            local.to_array().map(|c| ((c * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
        })
        .collect();
    Ok(image::RgbImage::from_raw(texture_size, texture_size, bytes)
        .unwrap_or_else(|| image::RgbImage::new(texture_size, texture_size)))
}

fn interpolate(corners: [Vec3; 3], w: [f32; 3]) -> Vec3 {
    corners[0] * w[0] + corners[1] * w[1] + corners[2] * w[2]
}

/// Per texel, the triangle of `mesh` it samples and its (clamped) barycentrics.
fn texel_triangles(mesh: &TriMesh, size: u32) -> Vec<Option<(u32, [f32; 3])>> {
    let mut texels = vec![None; size as usize * size as usize];
    for (tolerance, overwrite) in [(0.0, true), (EDGE_TEXELS, false)] {
        for (f, t) in mesh.triangles.iter().enumerate() {
            let corners = t.map(|v| mesh.uvs[v as usize].map(|c| c * size as f32));
            rasterize(corners, size, size, tolerance, |x, y, w| {
                let texel = &mut texels[y as usize * size as usize + x as usize];
                if overwrite || texel.is_none() {
                    let w = w.map(|v| v.max(0.0));
                    let sum = (w[0] + w[1] + w[2]).max(f32::MIN_POSITIVE);
                    *texel = Some((f as u32, w.map(|v| v / sum)));
                }
            });
        }
    }
    texels
}

/// The triangle's tangent (towards `+u`) and bitangent (towards `−v`), orthonormalised against
/// `normal`; `None` for a triangle degenerate in UV or 3D.
fn tangent_frame(mesh: &TriMesh, t: [u32; 3], normal: Vec3) -> Option<(Vec3, Vec3)> {
    let [p0, p1, p2] = t.map(|v| Vec3::from(mesh.positions[v as usize]));
    let [q0, q1, q2] = t.map(|v| Vec2::from(mesh.uvs[v as usize]));
    let (e1, e2) = (p1 - p0, p2 - p0);
    let (d1, d2) = (q1 - q0, q2 - q0);
    let det = d1.perp_dot(d2);
    if det.abs() <= f32::EPSILON * 1e-6 || normal == Vec3::ZERO {
        return None;
    }
    // ∂p/∂u and ∂p/∂v from e = d.u ∂p/∂u + d.v ∂p/∂v for both edges.
    let dp_du = (e1 * d2.y - e2 * d1.y) / det;
    let dp_dv = (e2 * d1.x - e1 * d2.x) / det;
    let tangent = (dp_du - normal * normal.dot(dp_du)).try_normalize()?;
    let up = -dp_dv;
    let bitangent = (up - normal * normal.dot(up) - tangent * tangent.dot(up)).try_normalize()?;
    Some((tangent, bitangent))
}

/// Dense triangles binned by their bounding boxes into a uniform grid.
struct TriangleGrid {
    origin: Vec3,
    cell: f32,
    dims: [usize; 3],
    /// Per cell, the range of `items` holding its triangles.
    starts: Vec<u32>,
    items: Vec<u32>,
}

impl TriangleGrid {
    fn new(mesh: &TriMesh) -> Self {
        let (lo, hi) = mesh.bounds().map(|(a, b)| (Vec3::from(a), Vec3::from(b))).unwrap_or((Vec3::ZERO, Vec3::ONE));
        let extent = (hi - lo).max(Vec3::splat(1e-6));
        let target_cells = (mesh.num_triangles() as f32 * CELLS_PER_TRIANGLE).max(1.0);
        let cell = (extent.x * extent.y * extent.z / target_cells).cbrt().max(extent.max_element() / 1024.0);
        let dims = (extent / cell).ceil().to_array().map(|d| (d as usize).max(1));
        let mut grid = Self { origin: lo, cell, dims, starts: Vec::new(), items: Vec::new() };
        let ranges: Vec<([usize; 3], [usize; 3])> = mesh
            .triangles
            .iter()
            .map(|t| {
                let p = t.map(|v| Vec3::from(mesh.positions[v as usize]));
                (grid.cell_of(p[0].min(p[1]).min(p[2])), grid.cell_of(p[0].max(p[1]).max(p[2])))
            })
            .collect();
        let mut counts = vec![0u32; dims[0] * dims[1] * dims[2] + 1];
        for (a, b) in &ranges {
            grid.for_cells(*a, *b, |c| counts[c + 1] += 1);
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let mut next = counts.clone();
        let mut items = vec![0u32; counts[counts.len() - 1] as usize];
        for (f, (a, b)) in ranges.iter().enumerate() {
            grid.for_cells(*a, *b, |c| {
                items[next[c] as usize] = f as u32;
                next[c] += 1;
            });
        }
        grid.starts = counts;
        grid.items = items;
        grid
    }

    fn cell_of(&self, p: Vec3) -> [usize; 3] {
        let c = ((p - self.origin) / self.cell).floor();
        std::array::from_fn(|k| (c[k].max(0.0) as usize).min(self.dims[k] - 1))
    }

    fn for_cells(&self, a: [usize; 3], b: [usize; 3], mut visit: impl FnMut(usize)) {
        for z in a[2]..=b[2] {
            for y in a[1]..=b[1] {
                for x in a[0]..=b[0] {
                    visit((z * self.dims[1] + y) * self.dims[0] + x);
                }
            }
        }
    }

    /// The dense triangle closest to `point` and the barycentrics of the closest point on it:
    /// shells of cells around the point's cell are searched until no closer triangle can exist.
    fn closest(&self, mesh: &TriMesh, point: Vec3) -> Option<(u32, [f32; 3])> {
        let centre = self.cell_of(point);
        let mut best: Option<(f32, u32, [f32; 3])> = None;
        let max_ring = self.dims.iter().copied().max().unwrap_or(1);
        for ring in 0..=max_ring {
            // Any triangle in a cell of this ring is at least (ring − 1) cells away.
            if let Some((d2, _, _)) = best {
                let reach = (ring as f32 - 1.0).max(0.0) * self.cell;
                if reach * reach > d2 {
                    break;
                }
            }
            let lo: [usize; 3] = std::array::from_fn(|k| centre[k].saturating_sub(ring));
            let hi: [usize; 3] = std::array::from_fn(|k| (centre[k] + ring).min(self.dims[k] - 1));
            self.for_cells(lo, hi, |c| {
                let on_shell = {
                    let (x, y, z) =
                        (c % self.dims[0], (c / self.dims[0]) % self.dims[1], c / (self.dims[0] * self.dims[1]));
                    [x, y, z].iter().zip(&centre).any(|(&i, &m)| i.abs_diff(m) == ring)
                };
                if !on_shell {
                    return;
                }
                for &f in &self.items[self.starts[c] as usize..self.starts[c + 1] as usize] {
                    let p = mesh.triangles[f as usize].map(|v| Vec3::from(mesh.positions[v as usize]));
                    let w = closest_on_triangle(point, p);
                    let d2 = (interpolate(p, w) - point).length_squared();
                    if best.is_none_or(|(b, _, _)| d2 < b) {
                        best = Some((d2, f, w));
                    }
                }
            });
        }
        best.map(|(_, f, w)| (f, w))
    }
}

/// Barycentrics of the point of triangle `[a, b, c]` closest to `p` (Voronoi regions of the
/// vertices, edges and face, after Ericson, *Real-Time Collision Detection* §5.1.5).
fn closest_on_triangle(p: Vec3, [a, b, c]: [Vec3; 3]) -> [f32; 3] {
    let (ab, ac, ap) = (b - a, c - a, p - a);
    let (d1, d2) = (ab.dot(ap), ac.dot(ap));
    if d1 <= 0.0 && d2 <= 0.0 {
        return [1.0, 0.0, 0.0];
    }
    let bp = p - b;
    let (d3, d4) = (ab.dot(bp), ac.dot(bp));
    if d3 >= 0.0 && d4 <= d3 {
        return [0.0, 1.0, 0.0];
    }
    let vc = d1 * d4 - d3 * d2;
    if vc <= 0.0 && d1 >= 0.0 && d3 <= 0.0 {
        let v = d1 / (d1 - d3);
        return [1.0 - v, v, 0.0];
    }
    let cp = p - c;
    let (d5, d6) = (ab.dot(cp), ac.dot(cp));
    if d6 >= 0.0 && d5 <= d6 {
        return [0.0, 0.0, 1.0];
    }
    let vb = d5 * d2 - d1 * d6;
    if vb <= 0.0 && d2 >= 0.0 && d6 <= 0.0 {
        let w = d2 / (d2 - d6);
        return [1.0 - w, 0.0, w];
    }
    let va = d3 * d6 - d5 * d4;
    if va <= 0.0 && (d4 - d3) >= 0.0 && (d5 - d6) >= 0.0 {
        let w = (d4 - d3) / ((d4 - d3) + (d5 - d6));
        return [0.0, 1.0 - w, w];
    }
    let denom = va + vb + vc;
    if denom.abs() <= f32::MIN_POSITIVE {
        return [1.0, 0.0, 0.0];
    }
    let (v, w) = (vb / denom, vc / denom);
    [1.0 - v - w, v, w]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atlas::{AtlasOptions, build_atlas};
    use kiln_mesh::decimate::{DecimateOptions, decimate};

    #[test]
    fn closest_point_matches_brute_force_sampling() {
        let tri = [Vec3::new(0.0, 0.0, 0.0), Vec3::new(1.0, 0.2, 0.0), Vec3::new(0.3, 1.0, 0.4)];
        for i in 0..200 {
            let s = i as f32;
            let p = Vec3::new((s * 0.37).sin() * 1.5, (s * 0.71).cos() * 1.5, (s * 0.13).sin());
            let got = (interpolate(tri, closest_on_triangle(p, tri)) - p).length();
            let mut best = f32::INFINITY;
            for a in 0..=100 {
                for b in 0..=(100 - a) {
                    let w = [a as f32 / 100.0, b as f32 / 100.0, (100 - a - b) as f32 / 100.0];
                    best = best.min((interpolate(tri, w) - p).length());
                }
            }
            assert!(got <= best + 1e-5 && got > best - 0.02, "{got} vs {best}");
        }
    }

    /// A sphere with a bump: radius `1 + 0.1 exp(−|p − north|² / 0.05)`, as a fine UV sphere.
    fn bumpy(rings: u32, segments: u32) -> TriMesh {
        TriMesh::uv_sphere(rings, segments, |dir| 1.0 + 0.1 * (-(dir - Vec3::Z).length_squared() / 0.05).exp())
    }

    #[test]
    fn decoded_normal_map_brings_back_the_dense_normals() {
        let dense = bumpy(120, 180);
        let low = decimate(&dense, 800, &DecimateOptions::default());
        let low = build_atlas(&low, 256, &AtlasOptions::default()).unwrap();
        let map = bake_normal_map(&dense, &low, 256).unwrap();
        let low_normals = low.vertex_normals();
        let dense_normals = dense.vertex_normals();
        let grid = TriangleGrid::new(&dense);
        // At each low triangle's centroid: decode the texel with the same tangent frame and
        // compare with the dense surface's normal there, and with the flat normal of `low`.
        let (mut with_map, mut without, mut count) = (0.0f32, 0.0f32, 0);
        for t in &low.triangles {
            let w = [1.0 / 3.0; 3];
            let uv = t.iter().map(|&v| Vec2::from(low.uvs[v as usize])).sum::<Vec2>() / 3.0;
            let (x, y) = ((uv.x * 256.0) as u32, (uv.y * 256.0) as u32);
            let point = interpolate(t.map(|v| Vec3::from(low.positions[v as usize])), w);
            let normal = interpolate(t.map(|v| Vec3::from(low_normals[v as usize])), w).normalize();
            let Some((tangent, bitangent)) = tangent_frame(&low, *t, normal) else {
                continue;
            };
            let texel = map.get_pixel(x, y).0.map(|c| c as f32 / 255.0 * 2.0 - 1.0);
            let decoded = (tangent * texel[0] + bitangent * texel[1] + normal * texel[2]).normalize();
            let (g, gw) = grid.closest(&dense, point).unwrap();
            let truth =
                interpolate(dense.triangles[g as usize].map(|v| Vec3::from(dense_normals[v as usize])), gw).normalize();
            with_map += decoded.angle_between(truth);
            without += normal.angle_between(truth);
            count += 1;
        }
        let (with_map, without) = (with_map / count as f32, without / count as f32);
        println!(
            "normal map: mean angle to the dense normal {:.2}° with, {:.2}° without",
            with_map.to_degrees(),
            without.to_degrees()
        );
        assert!(with_map < 0.5 * without, "mean angle {with_map} with the map, {without} without");
        assert!(with_map.to_degrees() < 2.0, "mean angle {} degrees", with_map.to_degrees());
    }

    #[test]
    fn a_plane_gets_the_flat_normal_and_the_frame_follows_the_uvs() {
        // A square in the z = 0 plane, u along +x, v along −y (so image-up is +y).
        let positions = vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]];
        let uvs = vec![[0.1, 0.9], [0.9, 0.9], [0.9, 0.1], [0.1, 0.1]];
        let mesh = TriMesh { positions, triangles: vec![[0, 1, 2], [0, 2, 3]], uvs, ..TriMesh::default() };
        let (t, b) = tangent_frame(&mesh, mesh.triangles[0], Vec3::Z).unwrap();
        assert!((t - Vec3::X).length() < 1e-5 && (b - Vec3::Y).length() < 1e-5, "{t} {b}");
        let map = bake_normal_map(&mesh, &mesh, 64).unwrap();
        let centre = map.get_pixel(32, 32).0;
        assert!(centre.iter().zip([128u8, 128, 255]).all(|(&a, b)| a.abs_diff(b) <= 1), "{centre:?}");
    }
}
