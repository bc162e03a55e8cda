//! Marching cubes: the zero level set of a sampled scalar field (negative inside) as a
//! watertight, consistently oriented triangle mesh.
//!
//! Instead of the classic 256-case lookup table, each cube's polygons are built from its faces:
//! on every face, the iso-contour is one or two segments between sign-changing edges, each
//! directed so that walking counter-clockwise around the face (seen from outside the cube) it
//! runs from the edge entering the inside region to the edge leaving it. Faces with two inside
//! corners on a diagonal are disambiguated by the sign of the bilinear interpolant at its saddle
//! point (the asymptotic decider). The segments chain into closed loops, each split into a
//! triangle fan.
//!
//! Because a face's segments depend only on the face's four values, the two cubes sharing a face
//! produce the same segments in opposite directions, and vertices are shared through a key per
//! grid edge: the mesh has no cracks, and every edge inside the sampled region is used by
//! exactly two triangles with opposite directions. Triangles are counter-clockwise seen from
//! the positive (outside) side, glTF's front face.
//!
//! Cubes with a corner where the field is unknown (`None`) emit nothing, which leaves an open
//! boundary there.

use std::collections::HashMap;

use rayon::prelude::*;

use kiln_core::mesh::TriMesh;

/// Edge crossings closer than this fraction of an edge to a corner are moved to it: keeps
/// vertices from different edges of the same corner distinct (no zero-area triangles).
const MIN_EDGE_FRACTION: f32 = 1e-4;

/// Offset of cube corner `c` (bit 0 = +x, bit 1 = +y, bit 2 = +z).
fn corner_offset(c: usize) -> [i32; 3] {
    [(c & 1) as i32, ((c >> 1) & 1) as i32, ((c >> 2) & 1) as i32]
}

/// The four corners of face `f` (axis `f / 2`, side `f % 2`), counter-clockwise seen from
/// outside the cube.
fn face_corners(f: usize) -> [usize; 4] {
    let (k, side) = (f / 2, f % 2);
    let (a, b) = ((k + 1) % 3, (k + 2) % 3);
    // (a, b) is right-handed around +axis k, so this order is CCW around +k; reversed for −k.
    let order: [(usize, usize); 4] =
        if side == 1 { [(0, 0), (1, 0), (1, 1), (0, 1)] } else { [(0, 0), (0, 1), (1, 1), (1, 0)] };
    order.map(|(ua, ub)| (side << k) | (ua << a) | (ub << b))
}

/// A cube edge as (the lower corner, the axis it runs along).
fn edge_of(c0: usize, c1: usize) -> (usize, usize) {
    let diff = c0 ^ c1;
    let axis = diff.trailing_zeros() as usize;
    (c0.min(c1), axis)
}

/// Packs a grid edge (lower sample index, axis) into a key: 20 bits per index, so indices must
/// lie in ±2¹⁹ (half a million samples per axis, far beyond any grid that fits in memory).
fn edge_key(index: [i32; 3], axis: usize) -> u64 {
    let pack = |v: i32| ((v + (1 << 19)) as u64) & 0xF_FFFF;
    (pack(index[0]) << 42) | (pack(index[1]) << 22) | (pack(index[2]) << 2) | axis as u64
}

/// A crossing of the surface with a grid edge, before vertices are shared.
#[derive(Clone, Copy)]
struct Crossing {
    key: u64,
    position: [f32; 3],
}

/// Where the field lives: sample `index` is at `origin + spacing · index`.
#[derive(Clone, Copy, Debug)]
pub struct Lattice {
    pub origin: [f32; 3],
    pub spacing: f32,
}

/// Polygonises the cubes in `boxes` (each `[lo, hi)` of cube minimum-corner indices) of the field
/// `sample(index)` (negative inside; `None` where unknown) into one mesh with shared vertices.
pub fn marching_cubes<F>(boxes: &[([i32; 3], [i32; 3])], sample: F, lattice: Lattice) -> TriMesh
where
    F: Fn([i32; 3]) -> Option<f32> + Sync,
{
    let pieces: Vec<Vec<[Crossing; 3]>> =
        boxes.par_iter().map(|&(lo, hi)| polygonize_box(lo, hi, &sample, lattice)).collect();
    let mut mesh = TriMesh::default();
    let mut vertex_of: HashMap<u64, u32> = HashMap::new();
    for triangle in pieces.iter().flatten() {
        let indices = triangle.map(|c| {
            *vertex_of.entry(c.key).or_insert_with(|| {
                mesh.positions.push(c.position);
                (mesh.positions.len() - 1) as u32
            })
        });
        mesh.triangles.push(indices);
    }
    mesh
}

/// [`marching_cubes`] over a dense `dims` grid of samples stored x-fastest.
pub fn marching_cubes_dense(values: &[f32], dims: [usize; 3], lattice: Lattice) -> TriMesh {
    if dims.iter().any(|&d| d < 2) || values.len() != dims[0] * dims[1] * dims[2] {
        return TriMesh::default();
    }
    let slabs: Vec<([i32; 3], [i32; 3])> =
        (0..dims[2] as i32 - 1).map(|z| ([0, 0, z], [dims[0] as i32 - 1, dims[1] as i32 - 1, z + 1])).collect();
    let sample = |i: [i32; 3]| {
        let [x, y, z] = i.map(|v| v as usize);
        values.get(x + dims[0] * (y + dims[1] * z)).copied()
    };
    marching_cubes(&slabs, sample, lattice)
}

fn polygonize_box<F>(lo: [i32; 3], hi: [i32; 3], sample: &F, lattice: Lattice) -> Vec<[Crossing; 3]>
where
    F: Fn([i32; 3]) -> Option<f32>,
{
    let mut out = Vec::new();
    for z in lo[2]..hi[2] {
        for y in lo[1]..hi[1] {
            for x in lo[0]..hi[0] {
                polygonize_cube([x, y, z], sample, lattice, &mut out);
            }
        }
    }
    out
}

fn polygonize_cube<F>(base: [i32; 3], sample: &F, lattice: Lattice, out: &mut Vec<[Crossing; 3]>)
where
    F: Fn([i32; 3]) -> Option<f32>,
{
    let mut values = [0.0f32; 8];
    for (c, value) in values.iter_mut().enumerate() {
        let o = corner_offset(c);
        match sample([base[0] + o[0], base[1] + o[1], base[2] + o[2]]) {
            Some(v) if v.is_finite() => *value = v,
            _ => return,
        }
    }
    let inside = values.map(|v| v < 0.0);
    if inside.iter().all(|&i| i) || inside.iter().all(|&i| !i) {
        return;
    }
    // next[e] = the edge the contour goes to after edge e (usize::MAX: none yet).
    let mut next = [usize::MAX; 12];
    for f in 0..6 {
        face_segments(face_corners(f), &values, &inside, &mut next);
    }
    let mut visited = [false; 12];
    for start in 0..12 {
        if next[start] == usize::MAX || visited[start] {
            continue;
        }
        let mut ring: Vec<usize> = Vec::with_capacity(8);
        let mut e = start;
        while !visited[e] && next[e] != usize::MAX {
            visited[e] = true;
            ring.push(e);
            e = next[e];
        }
        let crossings: Vec<Crossing> = ring.iter().map(|&e| crossing(base, e, &values, lattice)).collect();
        for k in 1..crossings.len().saturating_sub(1) {
            out.push([crossings[0], crossings[k], crossings[k + 1]]);
        }
    }
}

/// Slot (0..4) of the edge starting at `corner` along `axis` among that axis' four edges.
fn lower_slot(corner: usize, axis: usize) -> usize {
    let (a, b) = ((axis + 1) % 3, (axis + 2) % 3);
    ((corner >> a) & 1) | (((corner >> b) & 1) << 1)
}

/// Local edge number (0..12) of the cube edge between corners `c0` and `c1`.
fn local_edge(c0: usize, c1: usize) -> usize {
    let (corner, axis) = edge_of(c0, c1);
    axis * 4 + lower_slot(corner, axis)
}

/// The cube edge for a local edge number: (lower corner, axis).
fn edge_from_local(e: usize) -> (usize, usize) {
    let (axis, slot) = (e / 4, e % 4);
    let (a, b) = ((axis + 1) % 3, (axis + 2) % 3);
    (((slot & 1) << a) | (((slot >> 1) & 1) << b), axis)
}

/// Adds the directed contour segments of one face (corners CCW seen from outside) to `next`.
fn face_segments(corners: [usize; 4], values: &[f32; 8], inside: &[bool; 8], next: &mut [usize; 12]) {
    let edge = |i: usize| local_edge(corners[i % 4], corners[(i + 1) % 4]);
    // Entry edges go outside → inside walking CCW, exits inside → outside.
    let is_entry = |i: usize| !inside[corners[i]] && inside[corners[(i + 1) % 4]];
    let is_exit = |i: usize| inside[corners[i]] && !inside[corners[(i + 1) % 4]];
    let mut entries = (0..4).filter(|&i| is_entry(i));
    let (first_entry, second_entry) = (entries.next(), entries.next());
    match (first_entry, second_entry) {
        (Some(entry), None) => {
            if let Some(exit) = (0..4).find(|&i| is_exit(i)) {
                next[edge(entry)] = edge(exit);
            }
        }
        (Some(first), Some(second)) => {
            let v = corners.map(|c| values[c]);
            let saddle = (v[0] * v[2] - v[1] * v[3]) / (v[0] + v[2] - v[1] - v[3]);
            let inside_connected = saddle < 0.0;
            for entry in [first, second] {
                // Entry edge i leads into corner i+1 (inside). Separated: leave right after it,
                // through edge i+1. Connected: go around to the exit that leads into the
                // following outside corner's other side, edge i+3 (= i−1).
                let exit = if inside_connected { entry + 3 } else { entry + 1 };
                next[edge(entry)] = edge(exit);
            }
        }
        (None, _) => {}
    }
}

/// The interpolated zero crossing on local edge `e` of the cube at `base`.
fn crossing(base: [i32; 3], e: usize, values: &[f32; 8], lattice: Lattice) -> Crossing {
    let (corner, axis) = edge_from_local(e);
    let other = corner | (1 << axis);
    let (va, vb) = (values[corner], values[other]);
    let t = (va / (va - vb)).clamp(MIN_EDGE_FRACTION, 1.0 - MIN_EDGE_FRACTION);
    let o = corner_offset(corner);
    let index = [base[0] + o[0], base[1] + o[1], base[2] + o[2]];
    let mut position: [f32; 3] = std::array::from_fn(|k| lattice.origin[k] + lattice.spacing * index[k] as f32);
    position[axis] += lattice.spacing * t;
    Crossing { key: edge_key(index, axis), position }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::metrics::{enclosed_volume, surface_area};

    /// Samples `sdf` on an `n³` grid covering `[-half, half]³`.
    fn sample_grid(n: usize, half: f32, sdf: impl Fn([f32; 3]) -> f32) -> (Vec<f32>, Lattice) {
        let spacing = 2.0 * half / (n - 1) as f32;
        let lattice = Lattice { origin: [-half; 3], spacing };
        let mut values = Vec::with_capacity(n * n * n);
        for z in 0..n {
            for y in 0..n {
                for x in 0..n {
                    values.push(sdf([x, y, z].map(|i| -half + spacing * i as f32)));
                }
            }
        }
        (values, lattice)
    }

    /// Directed edge → number of uses.
    fn directed_edges(mesh: &TriMesh) -> HashMap<(u32, u32), usize> {
        let mut edges = HashMap::new();
        for t in &mesh.triangles {
            for k in 0..3 {
                *edges.entry((t[k], t[(k + 1) % 3])).or_insert(0) += 1;
            }
        }
        edges
    }

    /// Every edge is used exactly twice, once in each direction: closed, manifold, oriented.
    fn assert_closed_oriented(mesh: &TriMesh) {
        let edges = directed_edges(mesh);
        for (&(a, b), &count) in &edges {
            assert_eq!(count, 1, "directed edge {a}->{b} used {count} times");
            assert_eq!(edges.get(&(b, a)), Some(&1), "edge {a}-{b} has no opposite half");
        }
    }

    fn euler_characteristic(mesh: &TriMesh) -> i64 {
        let undirected = directed_edges(mesh).len() / 2;
        mesh.num_vertices() as i64 - undirected as i64 + mesh.num_triangles() as i64
    }

    #[test]
    fn sphere_is_closed_with_the_right_size_and_outward_normals() {
        let r = 0.8f32;
        let (values, lattice) = sample_grid(121, 1.0, |p| Vec3Like(p).length() - r);
        let mesh = marching_cubes_dense(&values, [121; 3], lattice);
        assert_closed_oriented(&mesh);
        assert_eq!(euler_characteristic(&mesh), 2);
        let pi = std::f64::consts::PI;
        let r = r as f64;
        let area = surface_area(&mesh) / (4.0 * pi * r * r);
        let volume = enclosed_volume(&mesh) / (4.0 / 3.0 * pi * r.powi(3));
        assert!((area - 1.0).abs() < 0.01, "area ratio {area}");
        assert!((volume - 1.0).abs() < 0.01, "volume ratio {volume}");
        for t in &mesh.triangles {
            let [a, b, c] = t.map(|i| Vec3Like(mesh.positions[i as usize]));
            let normal = b.sub(a).cross(c.sub(a));
            let centroid = a.add(b).add(c);
            assert!(normal.dot(centroid) > 0.0, "inward-facing triangle {t:?}");
        }
        // Every vertex lies on the sphere to within the linear interpolation error.
        let spacing = lattice.spacing as f64;
        for p in &mesh.positions {
            let err = (Vec3Like(*p).length() as f64 - r).abs();
            assert!(err < 0.1 * spacing, "vertex off the sphere by {err}");
        }
    }

    #[test]
    fn torus_has_euler_characteristic_zero() {
        let (major, minor) = (0.55f32, 0.2f32);
        let (values, lattice) = sample_grid(61, 1.0, |[x, y, z]| {
            let q = ((x * x + y * y).sqrt() - major, z);
            (q.0 * q.0 + q.1 * q.1).sqrt() - minor
        });
        let mesh = marching_cubes_dense(&values, [61; 3], lattice);
        assert_closed_oriented(&mesh);
        assert_eq!(euler_characteristic(&mesh), 0);
        let expected = 2.0 * std::f64::consts::PI.powi(2) * major as f64 * (minor as f64).powi(2);
        assert!((enclosed_volume(&mesh) / expected - 1.0).abs() < 0.03);
    }

    #[test]
    fn ambiguous_saddles_stay_closed() {
        // A coarse grid over many small blobs forces ambiguous faces; the result must still be
        // closed and consistently oriented.
        let (values, lattice) =
            sample_grid(24, 1.0, |[x, y, z]| (7.0 * x).sin() * (7.0 * y).sin() * (7.0 * z).sin() - 0.1);
        // Close the field at the border (positive = outside) so the surface cannot leave the box.
        let n = 24;
        let closed: Vec<f32> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let (x, y, z) = (i % n, (i / n) % n, i / (n * n));
                if [x, y, z].iter().any(|&c| c == 0 || c == n - 1) { 1.0 } else { v }
            })
            .collect();
        let mesh = marching_cubes_dense(&closed, [n; 3], lattice);
        assert!(mesh.num_triangles() > 1000);
        assert_closed_oriented(&mesh);
        assert!(enclosed_volume(&mesh) > 0.0);
    }

    #[test]
    fn unknown_samples_leave_an_open_boundary_not_a_crack() {
        let (values, lattice) = sample_grid(41, 1.0, |p| Vec3Like(p).length() - 0.7);
        // Unknown wherever z < 0: the lower half of the sphere is missing.
        let sample = |i: [i32; 3]| {
            let [x, y, z] = i.map(|v| v as usize);
            if z < 20 { None } else { values.get(x + 41 * (y + 41 * z)).copied() }
        };
        let mesh = marching_cubes(&[([0, 0, 0], [40, 40, 40])], sample, lattice);
        let edges = directed_edges(&mesh);
        assert!(edges.values().all(|&c| c == 1), "no directed edge twice");
        let boundary = edges.keys().filter(|(a, b)| !edges.contains_key(&(*b, *a))).count();
        assert!(boundary > 20, "a hemisphere has a boundary loop");
        assert!(mesh.positions.iter().all(|p| p[2] >= -1e-6));
    }

    /// Minimal vector helpers over `[f32; 3]` for the tests.
    #[derive(Clone, Copy)]
    struct Vec3Like([f32; 3]);

    impl Vec3Like {
        fn length(self) -> f32 {
            self.dot(self).sqrt()
        }
        fn dot(self, o: Self) -> f32 {
            (0..3).map(|k| self.0[k] * o.0[k]).sum()
        }
        fn sub(self, o: Self) -> Self {
            Self(std::array::from_fn(|k| self.0[k] - o.0[k]))
        }
        fn add(self, o: Self) -> Self {
            Self(std::array::from_fn(|k| self.0[k] + o.0[k]))
        }
        fn cross(self, o: Self) -> Self {
            let (a, b) = (self.0, o.0);
            Self([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])
        }
    }
}
