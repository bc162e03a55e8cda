//! Decimation to a triangle budget: meshoptimizer's quadric-error edge collapse, keeping the
//! mesh's borders and topology, then a vertex-cache and vertex-fetch ordering of the result.
//!
//! The error limit bounds how far collapses may move the surface (relative to the mesh extent).
//! When it stops the simplifier above the budget, the limit is relaxed by
//! [`ERROR_RELAXATION`] until the budget is met or [`MAX_RELATIVE_ERROR`] is reached; what was
//! achieved is in the [`DecimationReport`].

use meshopt::SimplifyOptions;

use kiln_core::mesh::TriMesh;

/// Factor by which the error limit grows each time the budget was not met.
const ERROR_RELAXATION: f32 = 4.0;
/// Relative error beyond which relaxing makes no difference: 1 is the whole mesh extent.
const MAX_RELATIVE_ERROR: f32 = 1.0;

/// Choices for [`decimate`].
#[derive(Clone, Debug)]
pub struct DecimateOptions {
    /// Initial bound on the surface deviation, relative to the mesh extent (meshoptimizer's
    /// `target_error`). 1e-3 of a 15 cm object is 0.15 mm, below what photos resolve.
    pub relative_error: f32,
    /// Keep vertices on open borders in place (so holes and cut planes keep their outline),
    /// unless the budget cannot be met that way.
    pub lock_border: bool,
}

impl Default for DecimateOptions {
    fn default() -> Self {
        Self { relative_error: 1e-3, lock_border: true }
    }
}

/// What [`decimate_with_report`] achieved.
#[derive(Clone, Debug, PartialEq)]
pub struct DecimationReport {
    pub input_triangles: usize,
    pub output_triangles: usize,
    /// The error limit of the final pass (after relaxation), relative to the mesh extent.
    pub error_limit: f32,
    /// The deviation meshoptimizer reports for the result, relative to the mesh extent.
    pub relative_error: f32,
    /// Whether the result is within the triangle budget.
    pub within_budget: bool,
}

/// Simplifies `mesh` to at most `max_triangles` triangles when the error limit and topology
/// allow; see [`decimate_with_report`].
pub fn decimate(mesh: &TriMesh, max_triangles: usize, options: &DecimateOptions) -> TriMesh {
    decimate_with_report(mesh, max_triangles, options).0
}

/// Simplifies `mesh` to at most `max_triangles` triangles, relaxing the error limit as needed.
///
/// Vertices with identical positions are welded first (so seams of a split mesh do not become
/// borders). The result keeps `colors` of the surviving vertices, recomputes `normals` when the
/// input had them, drops `uvs` (an atlas is built afterwards), and has its triangles ordered for
/// the vertex cache and its vertices in first-use order. A mesh already within budget is only
/// reordered.
pub fn decimate_with_report(
    mesh: &TriMesh,
    max_triangles: usize,
    options: &DecimateOptions,
) -> (TriMesh, DecimationReport) {
    let welded = weld_positions(mesh);
    let mut indices = welded.clone();
    let (mut error_limit, mut relative_error) = (options.relative_error.max(f32::MIN_POSITIVE), 0.0f32);
    if mesh.num_triangles() > max_triangles {
        let locked = if options.lock_border { SimplifyOptions::LockBorder } else { SimplifyOptions::None };
        (indices, error_limit, relative_error) = simplify(&welded, mesh, max_triangles, options.relative_error, locked);
        if indices.len() / 3 > max_triangles && options.lock_border {
            // Open borders everywhere (a partial capture's openings) leave too little to collapse
            // with them locked: the budget wins over the borders' exact outline.
            tracing::info!(
                "{} triangles with locked borders, over the budget of {max_triangles}: borders unlocked",
                indices.len() / 3
            );
            (indices, error_limit, relative_error) =
                simplify(&welded, mesh, max_triangles, options.relative_error, SimplifyOptions::None);
        }
    }
    let out = compact(mesh, &indices);
    let report = DecimationReport {
        input_triangles: mesh.num_triangles(),
        output_triangles: out.num_triangles(),
        error_limit,
        relative_error,
        within_budget: out.num_triangles() <= max_triangles,
    };
    if report.within_budget {
        tracing::info!(
            "decimated {} → {} triangles (relative error {:.2e})",
            report.input_triangles,
            report.output_triangles,
            relative_error
        );
    } else {
        tracing::warn!(
            "decimation reached {} triangles, above the budget of {max_triangles} (borders and topology are kept)",
            report.output_triangles
        );
    }
    (out, report)
}

/// meshoptimizer's simplification of `welded` towards `max_triangles`, relaxing the error limit
/// from `relative_error` by [`ERROR_RELAXATION`] until the budget or [`MAX_RELATIVE_ERROR`] is
/// reached; returns the indices, the last error limit and the error reached.
fn simplify(
    welded: &[u32],
    mesh: &TriMesh,
    max_triangles: usize,
    relative_error: f32,
    flags: SimplifyOptions,
) -> (Vec<u32>, f32, f32) {
    let mut error_limit = relative_error.max(f32::MIN_POSITIVE);
    let mut reached = 0.0f32;
    loop {
        let indices = meshopt::simplify_decoder(
            welded,
            &mesh.positions,
            max_triangles * 3,
            error_limit,
            flags,
            Some(&mut reached),
        );
        if indices.len() / 3 <= max_triangles || error_limit >= MAX_RELATIVE_ERROR {
            return (indices, error_limit, reached);
        }
        tracing::debug!(
            "decimation stopped at {} triangles (budget {max_triangles}) with error limit {error_limit}; relaxing",
            indices.len() / 3
        );
        error_limit = (error_limit * ERROR_RELAXATION).min(MAX_RELATIVE_ERROR);
    }
}

/// The triangle indices with every vertex replaced by the first vertex at the same position;
/// triangles with an out-of-range index are dropped.
fn weld_positions(mesh: &TriMesh) -> Vec<u32> {
    let remap = meshopt::generate_position_remap_decoder(&mesh.positions);
    let vertices = mesh.positions.len();
    mesh.triangles
        .iter()
        .filter(|t| t.iter().all(|&v| (v as usize) < vertices))
        .flat_map(|t| t.map(|v| remap[v as usize]))
        .collect()
}

/// Cache-optimised triangles over the used vertices only, in first-use order (what
/// meshoptimizer's vertex-fetch optimisation does), with the surviving attributes.
fn compact(mesh: &TriMesh, indices: &[u32]) -> TriMesh {
    let ordered = meshopt::optimize_vertex_cache(indices, mesh.positions.len());
    let mut new_index = vec![u32::MAX; mesh.positions.len()];
    let mut old_of_new: Vec<u32> = Vec::new();
    let mut triangles = Vec::with_capacity(ordered.len() / 3);
    for tri in ordered.chunks_exact(3) {
        let mut out = [0u32; 3];
        for (slot, &old) in out.iter_mut().zip(tri) {
            if new_index[old as usize] == u32::MAX {
                new_index[old as usize] = old_of_new.len() as u32;
                old_of_new.push(old);
            }
            *slot = new_index[old as usize];
        }
        triangles.push(out);
    }
    let pick = |values: &[[f32; 3]]| -> Vec<[f32; 3]> {
        if values.len() == mesh.positions.len() {
            old_of_new.iter().map(|&v| values[v as usize]).collect()
        } else {
            Vec::new()
        }
    };
    let mut out =
        TriMesh { positions: pick(&mesh.positions), triangles, colors: pick(&mesh.colors), ..TriMesh::default() };
    if !mesh.normals.is_empty() {
        out.normals = out.vertex_normals();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A UV sphere of radius `r` with `rings × segments` quads, closed at the poles.
    fn uv_sphere(r: f32, rings: u32, segments: u32) -> TriMesh {
        TriMesh::uv_sphere(rings, segments, |_| r)
    }

    /// The unit icosahedron subdivided `levels` times, vertices pushed onto the sphere: nearly
    /// uniform triangles, like a marching-cubes surface.
    fn icosphere(levels: u32) -> TriMesh {
        let t = (1.0 + 5f32.sqrt()) / 2.0;
        let mut positions: Vec<[f32; 3]> = [
            [-1.0, t, 0.0],
            [1.0, t, 0.0],
            [-1.0, -t, 0.0],
            [1.0, -t, 0.0],
            [0.0, -1.0, t],
            [0.0, 1.0, t],
            [0.0, -1.0, -t],
            [0.0, 1.0, -t],
            [t, 0.0, -1.0],
            [t, 0.0, 1.0],
            [-t, 0.0, -1.0],
            [-t, 0.0, 1.0],
        ]
        .map(|p| glam::Vec3::from(p).normalize().to_array())
        .to_vec();
        let mut triangles: Vec<[u32; 3]> = vec![
            [0, 11, 5],
            [0, 5, 1],
            [0, 1, 7],
            [0, 7, 10],
            [0, 10, 11],
            [1, 5, 9],
            [5, 11, 4],
            [11, 10, 2],
            [10, 7, 6],
            [7, 1, 8],
            [3, 9, 4],
            [3, 4, 2],
            [3, 2, 6],
            [3, 6, 8],
            [3, 8, 9],
            [4, 9, 5],
            [2, 4, 11],
            [6, 2, 10],
            [8, 6, 7],
            [9, 8, 1],
        ];
        for _ in 0..levels {
            let mut midpoints: HashMap<(u32, u32), u32> = HashMap::new();
            let mut midpoint = |a: u32, b: u32, positions: &mut Vec<[f32; 3]>| {
                *midpoints.entry((a.min(b), a.max(b))).or_insert_with(|| {
                    let m =
                        (glam::Vec3::from(positions[a as usize]) + glam::Vec3::from(positions[b as usize])).normalize();
                    positions.push(m.to_array());
                    positions.len() as u32 - 1
                })
            };
            triangles = triangles
                .iter()
                .flat_map(|&[a, b, c]| {
                    let (ab, bc, ca) = (
                        midpoint(a, b, &mut positions),
                        midpoint(b, c, &mut positions),
                        midpoint(c, a, &mut positions),
                    );
                    [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
                })
                .collect();
        }
        TriMesh { positions, triangles, ..TriMesh::default() }
    }

    /// Whether every undirected edge is shared by exactly two triangles, in opposite directions.
    fn is_closed_manifold(mesh: &TriMesh) -> bool {
        let mut directed: HashMap<(u32, u32), usize> = HashMap::new();
        for t in &mesh.triangles {
            for k in 0..3 {
                *directed.entry((t[k], t[(k + 1) % 3])).or_default() += 1;
            }
        }
        directed.iter().all(|(&(a, b), &n)| n == 1 && directed.get(&(b, a)) == Some(&1))
    }

    #[test]
    fn fine_sphere_meets_the_budget_stays_close_to_the_sphere_and_closed() {
        let dense = icosphere(7); // 327,680 triangles
        assert_eq!(dense.num_triangles(), 327_680);
        assert!(is_closed_manifold(&dense));
        let budget = 5_000;
        let (low, report) = decimate_with_report(&dense, budget, &DecimateOptions::default());
        assert!(report.within_budget && low.num_triangles() <= budget, "{report:?}");
        assert!(low.num_triangles() > budget / 2, "collapsed far below the budget: {report:?}");
        assert!(is_closed_manifold(&low), "decimation opened or broke the surface");
        // Vertices stay on the sphere, and the faces between them do not cut deep inside it.
        let max_vertex_off =
            low.positions.iter().map(|p| (glam::Vec3::from(*p).length() - 1.0).abs()).fold(0.0, f32::max);
        assert!(max_vertex_off < 2e-3, "vertex off the sphere by {max_vertex_off}");
        let mut mean_face = 0.0;
        for t in &low.triangles {
            let [a, b, c] = t.map(|v| glam::Vec3::from(low.positions[v as usize]));
            mean_face += 1.0 - ((a + b + c) / 3.0).length();
        }
        mean_face /= low.num_triangles() as f32;
        // The best a mesh of this many faces can do: equilateral faces of area 4π/n, whose
        // circumradius R = edge/√3 puts the centroid R²/2 inside the sphere.
        let edge = (4.0 * std::f32::consts::PI / low.num_triangles() as f32 * 4.0 / 3f32.sqrt()).sqrt();
        let ideal_sag = edge * edge / 6.0;
        assert!(mean_face < 2.0 * ideal_sag, "mean centroid sag {mean_face}, ideal {ideal_sag}");
        // Every triangle still faces outwards.
        let facing_out = |mesh: &TriMesh| {
            mesh.triangles
                .iter()
                .filter(|t| {
                    let [a, b, c] = t.map(|v| glam::Vec3::from(mesh.positions[v as usize]));
                    (b - a).cross(c - a).normalize_or_zero().dot((a + b + c).normalize()) > 0.0
                })
                .count()
        };
        assert_eq!(facing_out(&dense), dense.num_triangles());
        assert_eq!(facing_out(&low), low.num_triangles());
        // Vertices are compacted: each is used.
        let mut used = vec![false; low.num_vertices()];
        low.triangles.iter().flatten().for_each(|&v| used[v as usize] = true);
        assert!(used.iter().all(|&u| u));
    }

    #[test]
    fn open_borders_stay_in_place() {
        // A hemisphere (the sphere's triangles with z > 0): its rim is a border and must not move.
        let sphere = uv_sphere(1.0, 60, 80);
        let upper: Vec<[u32; 3]> = sphere
            .triangles
            .iter()
            .copied()
            .filter(|t| t.iter().all(|&v| sphere.positions[v as usize][2] >= -1e-6))
            .collect();
        let half = TriMesh { triangles: upper, ..sphere.clone() };
        let rim: Vec<[f32; 3]> = sphere.positions.iter().copied().filter(|p| p[2].abs() < 1e-6).collect();
        assert_eq!(rim.len(), 80);
        let low = decimate(&half, 400, &DecimateOptions::default());
        for p in &rim {
            assert!(low.positions.contains(p), "rim vertex {p:?} moved or vanished");
        }
        assert!(low.num_triangles() <= 400);
    }

    #[test]
    fn borders_give_way_when_the_budget_cannot_be_met_with_them_locked() {
        // Thin bands of a sphere (a surface seen in strips): nearly every vertex is on a border.
        let sphere = uv_sphere(1.0, 60, 120);
        let banded: Vec<[u32; 3]> = sphere
            .triangles
            .iter()
            .copied()
            .filter(|t| {
                let z = t.iter().map(|&v| sphere.positions[v as usize][2]).sum::<f32>() / 3.0;
                ((z + 1.0) * 15.0) as i32 % 2 == 0
            })
            .collect();
        let bands = TriMesh { triangles: banded, ..sphere.clone() };
        let options = DecimateOptions::default();
        let welded = weld_positions(&bands);
        let (locked, _, _) = simplify(&welded, &bands, 300, options.relative_error, SimplifyOptions::LockBorder);
        assert!(locked.len() / 3 > 300, "the premise: locked borders alone stay over the budget");
        let low = decimate(&bands, 300, &options);
        assert!(low.num_triangles() <= 300, "{} triangles over the budget of 300", low.num_triangles());
        assert!(low.num_triangles() > 50, "{} triangles", low.num_triangles());
    }

    #[test]
    fn a_mesh_within_budget_keeps_its_triangles_and_gets_normals_back() {
        let mut mesh = uv_sphere(2.0, 10, 12);
        mesh.normals = vec![[0.0, 0.0, 1.0]; mesh.num_vertices()];
        let out = decimate(&mesh, 10_000, &DecimateOptions::default());
        assert_eq!(out.num_triangles(), mesh.num_triangles());
        assert_eq!(out.normals.len(), out.num_vertices());
        for (p, n) in out.positions.iter().zip(&out.normals) {
            assert!(glam::Vec3::from(*p).normalize().dot(glam::Vec3::from(*n)) > 0.95);
        }
    }
}
