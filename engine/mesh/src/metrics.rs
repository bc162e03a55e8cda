//! Geometric accuracy of a mesh against a reference: area-uniform surface samples, symmetric
//! Chamfer distance and F-score, plus the area and enclosed volume of a mesh.
//!
//! [`compare`] samples each surface uniformly by area and measures, for every sample, the exact
//! **point-to-triangle** distance to the other mesh (nearest triangle through a bounding-volume
//! hierarchy), so the result has no bias from the other side's sampling density.
//! `accuracy_mean` is the mean distance of predicted samples to the reference (pred → gt),
//! `completeness_mean` the mean of reference samples to the prediction (gt → pred),
//! `chamfer_mean` their average; precision / recall are the fractions within `threshold`, and
//! the F-score their harmonic mean (the Tanks-and-Temples definition).

use glam::Vec3;
use rayon::prelude::*;

use kiln_core::mesh::TriMesh;

/// Triangles per BVH leaf: small enough that leaf tests are cheap, large enough to keep the tree
/// shallow.
const LEAF_SIZE: usize = 4;

/// How a predicted surface compares with a reference one (distances in world units).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct SurfaceMetrics {
    /// `(accuracy_mean + completeness_mean) / 2`.
    pub chamfer_mean: f32,
    /// Mean distance from predicted samples to the reference surface.
    pub accuracy_mean: f32,
    /// Mean distance from reference samples to the predicted surface.
    pub completeness_mean: f32,
    /// Fraction of predicted samples within `threshold` of the reference.
    pub precision: f32,
    /// Fraction of reference samples within `threshold` of the prediction.
    pub recall: f32,
    pub fscore: f32,
    pub threshold: f32,
}

fn vec(p: [f32; 3]) -> Vec3 {
    Vec3::from_array(p)
}

fn corners(mesh: &TriMesh, t: [u32; 3]) -> [Vec3; 3] {
    t.map(|i| vec(mesh.positions[i as usize]))
}

/// Area of each triangle.
pub fn triangle_areas(mesh: &TriMesh) -> Vec<f64> {
    mesh.triangles
        .iter()
        .map(|&t| {
            let [a, b, c] = corners(mesh, t);
            0.5 * (b - a).cross(c - a).length() as f64
        })
        .collect()
}

/// Total surface area.
pub fn surface_area(mesh: &TriMesh) -> f64 {
    triangle_areas(mesh).iter().sum()
}

/// Signed enclosed volume by the divergence theorem: positive for a closed mesh whose triangles
/// are counter-clockwise seen from outside.
pub fn enclosed_volume(mesh: &TriMesh) -> f64 {
    mesh.triangles
        .iter()
        .map(|&t| {
            let [a, b, c] = corners(mesh, t).map(|v| v.as_dvec3());
            a.dot(b.cross(c)) / 6.0
        })
        .sum()
}

/// SplitMix64: a tiny, well-mixed deterministic generator for reproducible sampling.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` points distributed uniformly by area over the mesh surface (empty for a mesh without area).
pub fn sample_surface(mesh: &TriMesh, n: usize, seed: u64) -> Vec<[f32; 3]> {
    let mut cumulative = Vec::with_capacity(mesh.triangles.len());
    let mut total = 0.0;
    for area in triangle_areas(mesh) {
        total += area;
        cumulative.push(total);
    }
    if total <= 0.0 {
        return Vec::new();
    }
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| {
            let target = rng.next_f64() * total;
            let index = cumulative.partition_point(|&c| c <= target).min(cumulative.len() - 1);
            let [a, b, c] = corners(mesh, mesh.triangles[index]);
            // Uniform on a triangle: sqrt-warped barycentrics.
            let (r1, r2) = (rng.next_f64().sqrt() as f32, rng.next_f64() as f32);
            (a * (1.0 - r1) + b * (r1 * (1.0 - r2)) + c * (r1 * r2)).to_array()
        })
        .collect()
}

/// Closest point to `p` on triangle `abc` (Ericson, Real-Time Collision Detection, 5.1.5).
fn closest_on_triangle(p: Vec3, a: Vec3, b: Vec3, c: Vec3) -> Vec3 {
    let (ab, ac, ap) = (b - a, c - a, p - a);
    let (d1, d2) = (ab.dot(ap), ac.dot(ap));
    if d1 <= 0.0 && d2 <= 0.0 {
        return a;
    }
    let bp = p - b;
    let (d3, d4) = (ab.dot(bp), ac.dot(bp));
    if d3 >= 0.0 && d4 <= d3 {
        return b;
    }
    let vc = d1 * d4 - d3 * d2;
    if vc <= 0.0 && d1 >= 0.0 && d3 <= 0.0 {
        return a + ab * (d1 / (d1 - d3));
    }
    let cp = p - c;
    let (d5, d6) = (ab.dot(cp), ac.dot(cp));
    if d6 >= 0.0 && d5 <= d6 {
        return c;
    }
    let vb = d5 * d2 - d1 * d6;
    if vb <= 0.0 && d2 >= 0.0 && d6 <= 0.0 {
        return a + ac * (d2 / (d2 - d6));
    }
    let va = d3 * d6 - d5 * d4;
    if va <= 0.0 && (d4 - d3) >= 0.0 && (d5 - d6) >= 0.0 {
        return b + (c - b) * ((d4 - d3) / ((d4 - d3) + (d5 - d6)));
    }
    let denom = 1.0 / (va + vb + vc);
    a + ab * (vb * denom) + ac * (vc * denom)
}

#[derive(Clone, Copy, Debug)]
struct Node {
    min: Vec3,
    max: Vec3,
    /// Leaf: `[start, start + count)` into the triangle order; inner: `count == 0` and the
    /// children are `start` and `start + 1`.
    start: u32,
    count: u32,
}

/// A bounding-volume hierarchy over a mesh's triangles for nearest-surface queries.
pub struct TriangleBvh {
    triangles: Vec<[Vec3; 3]>,
    nodes: Vec<Node>,
}

impl TriangleBvh {
    pub fn new(mesh: &TriMesh) -> Self {
        let mut triangles: Vec<[Vec3; 3]> = mesh.triangles.iter().map(|&t| corners(mesh, t)).collect();
        let mut nodes = vec![Node { min: Vec3::ZERO, max: Vec3::ZERO, start: 0, count: 0 }];
        if !triangles.is_empty() {
            build(&mut triangles, 0, &mut nodes, 0);
        }
        Self { triangles, nodes }
    }

    /// Distance from `p` to the nearest triangle (infinite for an empty mesh).
    pub fn distance(&self, p: [f32; 3]) -> f32 {
        let p = vec(p);
        let mut best = f32::INFINITY;
        if self.triangles.is_empty() {
            return best;
        }
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            let node = self.nodes[i];
            if box_distance_sq(p, node.min, node.max) >= best {
                continue;
            }
            if node.count > 0 {
                for t in &self.triangles[node.start as usize..(node.start + node.count) as usize] {
                    best = best.min(closest_on_triangle(p, t[0], t[1], t[2]).distance_squared(p));
                }
                continue;
            }
            let (l, r) = (node.start as usize, node.start as usize + 1);
            let dl = box_distance_sq(p, self.nodes[l].min, self.nodes[l].max);
            let dr = box_distance_sq(p, self.nodes[r].min, self.nodes[r].max);
            // Nearer child last, so it is searched first.
            if dl < dr {
                stack.extend([r, l]);
            } else {
                stack.extend([l, r]);
            }
        }
        best.sqrt()
    }
}

fn box_distance_sq(p: Vec3, min: Vec3, max: Vec3) -> f32 {
    (min - p).max(p - max).max(Vec3::ZERO).length_squared()
}

/// Builds node `index` over `triangles` (a sub-slice starting at `offset` in the final order).
fn build(triangles: &mut [[Vec3; 3]], offset: usize, nodes: &mut Vec<Node>, index: usize) {
    let (mut min, mut max) = (Vec3::splat(f32::INFINITY), Vec3::splat(f32::NEG_INFINITY));
    for t in triangles.iter() {
        for v in t {
            min = min.min(*v);
            max = max.max(*v);
        }
    }
    if triangles.len() <= LEAF_SIZE {
        nodes[index] = Node { min, max, start: offset as u32, count: triangles.len() as u32 };
        return;
    }
    let extent = max - min;
    let axis = if extent.x >= extent.y && extent.x >= extent.z {
        0
    } else if extent.y >= extent.z {
        1
    } else {
        2
    };
    let centroid = |t: &[Vec3; 3]| (t[0][axis] + t[1][axis] + t[2][axis]) / 3.0;
    let mid = triangles.len() / 2;
    triangles.select_nth_unstable_by(mid, |a, b| centroid(a).total_cmp(&centroid(b)));
    let left = nodes.len();
    nodes.push(Node { min, max, start: 0, count: 0 });
    nodes.push(Node { min, max, start: 0, count: 0 });
    nodes[index] = Node { min, max, start: left as u32, count: 0 };
    let (lo, hi) = triangles.split_at_mut(mid);
    build(lo, offset, nodes, left);
    build(hi, offset + mid, nodes, left + 1);
}

/// Compares `pred` with `gt` using `samples` area-uniform samples on each surface and exact
/// point-to-triangle distances (see the module docs).
pub fn compare(pred: &TriMesh, gt: &TriMesh, samples: usize, threshold: f32) -> SurfaceMetrics {
    /// Fixed seeds, so that a comparison is reproducible.
    const PRED_SEED: u64 = 0x5EED_0001;
    const GT_SEED: u64 = 0x5EED_0002;
    let one_way = |from: &TriMesh, to: &TriMesh, seed: u64| -> (f32, f32) {
        let points = sample_surface(from, samples, seed);
        let bvh = TriangleBvh::new(to);
        let distances: Vec<f32> = points.par_iter().map(|&p| bvh.distance(p)).collect();
        if distances.is_empty() {
            return (f32::INFINITY, 0.0);
        }
        let n = distances.len() as f64;
        let mean = distances.iter().map(|&d| d as f64).sum::<f64>() / n;
        let within = distances.iter().filter(|&&d| d <= threshold).count() as f64 / n;
        (mean as f32, within as f32)
    };
    let (accuracy_mean, precision) = one_way(pred, gt, PRED_SEED);
    let (completeness_mean, recall) = one_way(gt, pred, GT_SEED);
    let fscore = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    SurfaceMetrics {
        chamfer_mean: 0.5 * (accuracy_mean + completeness_mean),
        accuracy_mean,
        completeness_mean,
        precision,
        recall,
        fscore,
        threshold,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A UV sphere with `rings × segments` quads (poles as fans), CCW seen from outside.
    pub(crate) fn uv_sphere(center: [f32; 3], radius: f32, rings: u32, segments: u32) -> TriMesh {
        let mut mesh = TriMesh::uv_sphere(rings, segments, |_| radius);
        for p in &mut mesh.positions {
            *p = (vec(*p) + vec(center)).to_array();
        }
        mesh
    }

    #[test]
    fn samples_are_uniform_by_area() {
        // Two unit-square pieces of very different triangle counts: the sample share follows area.
        let mut mesh = TriMesh {
            positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]],
            triangles: vec![[0, 1, 2], [0, 2, 3]],
            ..Default::default()
        };
        // A second square at x ∈ [2, 4] (area 4) made of 8 thin triangles.
        for k in 0..8 {
            let x0 = 2.0 + k as f32 * 0.25;
            let base = mesh.positions.len() as u32;
            mesh.positions.extend([[x0, 0.0, 0.0], [x0 + 0.25, 0.0, 0.0], [x0 + 0.25, 2.0, 0.0], [x0, 2.0, 0.0]]);
            mesh.triangles.extend([[base, base + 1, base + 2], [base, base + 2, base + 3]]);
        }
        let points = sample_surface(&mesh, 50_000, 7);
        let small = points.iter().filter(|p| p[0] < 1.5).count() as f32 / points.len() as f32;
        assert!((small - 0.2).abs() < 0.01, "share on the area-1 square {small}, expected 0.2");
        // Within the first square, the mean is its centre.
        let inside: Vec<_> = points.iter().filter(|p| p[0] < 1.5).collect();
        let mean_y = inside.iter().map(|p| p[1]).sum::<f32>() / inside.len() as f32;
        assert!((mean_y - 0.5).abs() < 0.01, "mean y {mean_y}");
        assert!(points.iter().all(|p| p[2] == 0.0 && p[0] >= 0.0 && p[0] <= 4.0 && p[1] <= 2.0));
    }

    #[test]
    fn bvh_distance_matches_brute_force() {
        let mesh = uv_sphere([0.1, -0.2, 0.3], 0.5, 12, 20);
        let bvh = TriangleBvh::new(&mesh);
        let mut rng = SplitMix64(3);
        for _ in 0..300 {
            let p: [f32; 3] = std::array::from_fn(|_| (rng.next_f64() as f32 - 0.5) * 3.0);
            let brute = mesh
                .triangles
                .iter()
                .map(|&t| {
                    let [a, b, c] = corners(&mesh, t);
                    closest_on_triangle(vec(p), a, b, c).distance(vec(p))
                })
                .fold(f32::INFINITY, f32::min);
            assert!((bvh.distance(p) - brute).abs() < 1e-6, "{} vs {brute}", bvh.distance(p));
        }
    }

    #[test]
    fn closest_point_regions() {
        let (a, b, c) = (Vec3::ZERO, Vec3::X, Vec3::Y);
        assert!((closest_on_triangle(Vec3::new(0.2, 0.2, 1.0), a, b, c) - Vec3::new(0.2, 0.2, 0.0)).length() < 1e-6);
        assert_eq!(closest_on_triangle(Vec3::new(-1.0, -1.0, 0.0), a, b, c), a);
        assert_eq!(closest_on_triangle(Vec3::new(0.5, -1.0, 0.0), a, b, c), Vec3::new(0.5, 0.0, 0.0));
        let on_hypotenuse = closest_on_triangle(Vec3::new(1.0, 1.0, 0.0), a, b, c);
        assert!((on_hypotenuse - Vec3::new(0.5, 0.5, 0.0)).length() < 1e-6);
    }

    #[test]
    fn concentric_spheres_chamfer_is_the_gap() {
        let (r, d) = (0.05, 0.002);
        let inner = uv_sphere([0.0; 3], r, 64, 128);
        let outer = uv_sphere([0.0; 3], r + d, 64, 128);
        let m = compare(&inner, &outer, 20_000, 0.001);
        // Tessellation makes the chord surface up to r(1 − cos(π/64)) ≈ 0.06 mm inside.
        assert!((m.chamfer_mean - d).abs() < 0.1 * d, "{m:?}");
        assert!((m.accuracy_mean - d).abs() < 0.1 * d && (m.completeness_mean - d).abs() < 0.1 * d, "{m:?}");
        assert_eq!(m.fscore, 0.0, "every sample is 2 mm away, beyond the 1 mm threshold");
        let loose = compare(&inner, &outer, 20_000, 0.003);
        assert_eq!((loose.precision, loose.recall, loose.fscore), (1.0, 1.0, 1.0));
    }

    #[test]
    fn a_mesh_against_itself_is_perfect() {
        let mesh = uv_sphere([0.3, 0.0, 0.0], 0.1, 16, 32);
        let m = compare(&mesh, &mesh, 10_000, 1e-4);
        assert!(m.chamfer_mean < 1e-6, "{m:?}");
        assert_eq!(m.fscore, 1.0);
    }

    #[test]
    fn area_and_volume_of_a_fine_sphere() {
        let r = 0.2f64;
        let mesh = uv_sphere([0.5, 0.5, 0.5], r as f32, 200, 400);
        let area = surface_area(&mesh);
        let volume = enclosed_volume(&mesh);
        let pi = std::f64::consts::PI;
        assert!((area / (4.0 * pi * r * r) - 1.0).abs() < 1e-3, "area {area}");
        assert!((volume / (4.0 / 3.0 * pi * r.powi(3)) - 1.0).abs() < 1e-3, "volume {volume}");
    }
}
