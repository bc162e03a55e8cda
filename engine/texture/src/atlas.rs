//! UV atlas: charts of nearly co-planar faces, each projected onto a plane, packed into a
//! square texture with a gutter between charts.
//!
//! 1. **Segmentation**: greedy region growing over edge-adjacent faces; a face joins the chart
//!    when its normal is within [`AtlasOptions::max_chart_angle_degrees`] of the chart's seed
//!    face normal.
//! 2. **Parameterisation**: orthogonal projection along the seed normal onto the chart plane
//!    (every face is then front-facing, so no triangle flips; the area scale of a face is the
//!    cosine between its normal and the seed normal, at least `cos(max angle)`), rotated to the
//!    principal axes of the chart so its bounding box is tight. Charts are never mirrored (seen
//!    from outside, `+u` is right and `−v` up, so glTF tangent frames have `w = +1`). A chart
//!    whose projection still overlaps itself (a spiral ramp can) is cut in two across its longer
//!    axis until none does.
//! 3. **Packing**: shelf packing of the charts' bounding boxes, tallest first, each padded by
//!    [`AtlasOptions::padding_texels`] on every side; the texel density (texels per world unit,
//!    the same for every chart) is the largest that fits, found by bisection.
//!
//! Vertices on chart boundaries are split, one copy per chart, so UVs are per vertex. UVs follow
//! glTF: `(0, 0)` is the top-left of the image and `v` grows downwards; texel `(x, y)` covers
//! `[x, x+1) × [y, y+1)` in UV × size.
//!
//! xatlas (through the `xatlas-rs` 0.1.3 bindings) was considered and not used: the bindings
//! date from 2019, vendor an old xatlas, and hand out slices whose lifetime is not tied to the
//! atlas they borrow from.

use std::collections::{HashMap, VecDeque};

use glam::{Vec2, Vec3};

use crate::{MAX_TEXTURE_SIZE, MIN_TEXTURE_SIZE, TextureError};
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::raster::rasterize;

/// Bisection steps on the texel density: each halves the interval, 24 reach 1e-7 of it.
const PACKING_BISECTION_STEPS: usize = 24;
/// The overlap check of a chart's projection rasterises it on about this many cells per face
/// (at least [`MIN_OVERLAP_CELLS`]), fine enough to catch folds wider than a small face.
const OVERLAP_CELLS_PER_FACE: f32 = 16.0;
/// Lower bound of the overlap check's cell count, so small charts are still looked at closely.
const MIN_OVERLAP_CELLS: f32 = 4096.0;
/// Upper bound of the overlap check's cell count (memory of one chart's grid).
const MAX_OVERLAP_CELLS: f32 = 4.0e6;
/// Pixel centres must be this far inside two triangles (in cells) to count as an overlap, so
/// triangles that only share an edge never do.
const OVERLAP_INSET: f32 = 1e-3;

/// Choices for [`build_atlas`].
#[derive(Clone, Debug)]
pub struct AtlasOptions {
    /// Largest angle between a face's normal and its chart's projection direction. 45° keeps
    /// the area distortion of the projection at most `1 / cos 45° ≈ 1.41`.
    pub max_chart_angle_degrees: f32,
    /// Empty texels on each side of a chart's bounding box (so `2 ×` between two charts): room
    /// for seam dilation, bilinear filtering and a few mip levels.
    pub padding_texels: u32,
}

impl Default for AtlasOptions {
    fn default() -> Self {
        Self { max_chart_angle_degrees: 45.0, padding_texels: 2 }
    }
}

/// What [`build_atlas_with_report`] produced.
#[derive(Clone, Debug, PartialEq)]
pub struct AtlasReport {
    pub charts: usize,
    /// Texels per world unit, the same for every chart.
    pub texels_per_unit: f32,
    /// Fraction of the texture covered by triangles (their UV area over the texture area).
    pub utilisation: f32,
    /// Vertices in the output (input vertices plus the copies made at chart boundaries).
    pub vertices: usize,
}

/// A UV atlas for `mesh`; see [`build_atlas_with_report`].
pub fn build_atlas(mesh: &TriMesh, texture_size: u32, options: &AtlasOptions) -> Result<TriMesh, TextureError> {
    Ok(build_atlas_with_report(mesh, texture_size, options)?.0)
}

/// A copy of `mesh` with `uvs` for a `texture_size²` texture, its vertices split at chart
/// boundaries (normals and colours are copied with them), and the same triangles in the same
/// order.
pub fn build_atlas_with_report(
    mesh: &TriMesh,
    texture_size: u32,
    options: &AtlasOptions,
) -> Result<(TriMesh, AtlasReport), TextureError> {
    validate(mesh, texture_size)?;
    let faces = FaceFrames::new(mesh);
    let cos_limit = options.max_chart_angle_degrees.to_radians().cos();
    let adjacency = face_adjacency(mesh);
    let mut charts = Vec::new();
    for grown in grow_charts(&faces, &adjacency, cos_limit) {
        charts.extend(project_without_overlap(mesh, &faces, &adjacency, grown));
    }
    let layout = pack(&charts, texture_size, options.padding_texels)
        .ok_or(TextureError::AtlasFull { charts: charts.len(), size: texture_size })?;
    let out = split_vertices(mesh, &charts, &layout, texture_size);
    let report = AtlasReport {
        charts: charts.len(),
        texels_per_unit: layout.texels_per_unit,
        utilisation: uv_area(&out) as f32,
        vertices: out.num_vertices(),
    };
    tracing::info!(
        "atlas: {} charts, {:.1}% of the {texture_size}² texture used, {} → {} vertices",
        report.charts,
        100.0 * report.utilisation,
        mesh.num_vertices(),
        report.vertices
    );
    Ok((out, report))
}

fn validate(mesh: &TriMesh, texture_size: u32) -> Result<(), TextureError> {
    if !(MIN_TEXTURE_SIZE..=MAX_TEXTURE_SIZE).contains(&texture_size) {
        return Err(TextureError::TextureSize(texture_size));
    }
    if mesh.triangles.is_empty() {
        return Err(TextureError::EmptyMesh);
    }
    check_indices(mesh)
}

/// Every triangle's indices are in range.
pub(crate) fn check_indices(mesh: &TriMesh) -> Result<(), TextureError> {
    let vertices = mesh.num_vertices();
    for (triangle, t) in mesh.triangles.iter().enumerate() {
        if let Some(&vertex) = t.iter().find(|&&v| v as usize >= vertices) {
            return Err(TextureError::BadIndex { triangle, vertex, vertices });
        }
    }
    Ok(())
}

/// Unit normals and areas of the faces (zero normal for degenerate faces).
struct FaceFrames {
    normals: Vec<Vec3>,
    areas: Vec<f32>,
}

impl FaceFrames {
    fn new(mesh: &TriMesh) -> Self {
        let (normals, areas) = mesh
            .triangles
            .iter()
            .map(|t| {
                let [a, b, c] = t.map(|v| Vec3::from(mesh.positions[v as usize]));
                let cross = (b - a).cross(c - a);
                (cross.normalize_or_zero(), 0.5 * cross.length())
            })
            .unzip();
        Self { normals, areas }
    }
}

/// For each face, the faces sharing an edge with it.
fn face_adjacency(mesh: &TriMesh) -> Vec<Vec<u32>> {
    let mut by_edge: HashMap<(u32, u32), Vec<u32>> = HashMap::with_capacity(mesh.triangles.len() * 3 / 2);
    for (f, t) in mesh.triangles.iter().enumerate() {
        for k in 0..3 {
            let (a, b) = (t[k], t[(k + 1) % 3]);
            by_edge.entry((a.min(b), a.max(b))).or_default().push(f as u32);
        }
    }
    let mut adjacency = vec![Vec::new(); mesh.triangles.len()];
    for faces in by_edge.values() {
        for &f in faces {
            adjacency[f as usize].extend(faces.iter().copied().filter(|&g| g != f));
        }
    }
    adjacency
}

/// Faces grouped by greedy region growing within the normal cone of each seed face; returns
/// `(seed normal, faces)` per chart.
fn grow_charts(faces: &FaceFrames, adjacency: &[Vec<u32>], cos_limit: f32) -> Vec<(Vec3, Vec<u32>)> {
    let mut chart_of = vec![u32::MAX; faces.normals.len()];
    let mut charts = Vec::new();
    let mut queue = VecDeque::new();
    for seed in 0..faces.normals.len() {
        if chart_of[seed] != u32::MAX {
            continue;
        }
        let id = charts.len() as u32;
        let axis = faces.normals[seed];
        let axis = if axis == Vec3::ZERO { Vec3::Z } else { axis };
        chart_of[seed] = id;
        queue.push_back(seed as u32);
        let mut members = Vec::new();
        while let Some(f) = queue.pop_front() {
            members.push(f);
            for &g in &adjacency[f as usize] {
                let n = faces.normals[g as usize];
                if chart_of[g as usize] == u32::MAX && (n == Vec3::ZERO || n.dot(axis) >= cos_limit) {
                    chart_of[g as usize] = id;
                    queue.push_back(g);
                }
            }
        }
        charts.push((axis, members));
    }
    charts
}

/// A chart projected onto its plane: 2D coordinates (world units, bounding box from the origin)
/// of each face's corners.
struct Chart {
    faces: Vec<u32>,
    /// Per face, its three corners in chart coordinates.
    corners: Vec<[Vec2; 3]>,
    size: Vec2,
}

/// Projects a grown chart; when the projection overlaps itself, cuts it across its longer axis
/// and tries each connected piece again.
fn project_without_overlap(
    mesh: &TriMesh,
    faces: &FaceFrames,
    adjacency: &[Vec<u32>],
    grown: (Vec3, Vec<u32>),
) -> Vec<Chart> {
    let (axis, members) = grown;
    let mut pending = vec![members];
    let mut done = Vec::new();
    while let Some(members) = pending.pop() {
        let chart = project(mesh, axis, members);
        if chart.faces.len() == 1 || !overlaps(&chart, faces) {
            done.push(chart);
            continue;
        }
        let mut centres: Vec<(f32, u32)> =
            chart.faces.iter().zip(&chart.corners).map(|(&f, c)| ((c[0].x + c[1].x + c[2].x) / 3.0, f)).collect();
        centres.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (left, right) = centres.split_at(centres.len() / 2);
        for half in [left, right] {
            let half: Vec<u32> = half.iter().map(|&(_, f)| f).collect();
            pending.extend(connected_pieces(&half, adjacency));
        }
    }
    done
}

/// The connected components of `members` (by edge adjacency restricted to `members`).
fn connected_pieces(members: &[u32], adjacency: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let mut unvisited: std::collections::HashSet<u32> = members.iter().copied().collect();
    let mut pieces = Vec::new();
    for &start in members {
        if !unvisited.remove(&start) {
            continue;
        }
        let mut piece = vec![start];
        let mut next = 0;
        while next < piece.len() {
            let f = piece[next];
            next += 1;
            for &g in &adjacency[f as usize] {
                if unvisited.remove(&g) {
                    piece.push(g);
                }
            }
        }
        pieces.push(piece);
    }
    pieces
}

/// Orthogonal projection of the chart's faces along `axis`, rotated to the principal axes of
/// the projected corners (longer extent along x) and shifted so the bounding box starts at 0.
fn project(mesh: &TriMesh, axis: Vec3, faces: Vec<u32>) -> Chart {
    let (tangent, bitangent) = axis.any_orthonormal_pair();
    let flat = |v: u32| {
        let p = Vec3::from(mesh.positions[v as usize]);
        // `tangent × bitangent = axis`; with `v` growing downwards, −bitangent keeps the chart
        // unmirrored: seen from outside, `+u` is right and `−v` is up.
        Vec2::new(p.dot(tangent), -p.dot(bitangent))
    };
    let mut corners: Vec<[Vec2; 3]> = faces.iter().map(|&f| mesh.triangles[f as usize].map(flat)).collect();
    let rotation = principal_rotation(&corners);
    let (mut lo, mut hi) = (Vec2::splat(f32::INFINITY), Vec2::splat(f32::NEG_INFINITY));
    for p in corners.iter_mut().flatten() {
        *p = rotation.rotate(*p);
        lo = lo.min(*p);
        hi = hi.max(*p);
    }
    let (lo, mut size) = (lo, hi - lo);
    corners.iter_mut().flatten().for_each(|p| *p -= lo);
    if size.y > size.x {
        // Turn by 90° (a rotation, not a mirror) so the longer side is x.
        corners.iter_mut().flatten().for_each(|p| *p = Vec2::new(size.y - p.y, p.x));
        size = Vec2::new(size.y, size.x);
    }
    Chart { faces, corners, size }
}

/// The rotation (as a unit complex number) that takes the principal axis of the points to x.
fn principal_rotation(corners: &[[Vec2; 3]]) -> Vec2 {
    let count = (corners.len() * 3) as f32;
    let mean = corners.iter().flatten().copied().sum::<Vec2>() / count;
    let (mut sxx, mut sxy, mut syy) = (0.0f32, 0.0f32, 0.0f32);
    for p in corners.iter().flatten() {
        let d = *p - mean;
        sxx += d.x * d.x;
        sxy += d.x * d.y;
        syy += d.y * d.y;
    }
    let angle = 0.5 * (2.0 * sxy).atan2(sxx - syy);
    // Rotating by −angle brings the principal direction onto +x.
    Vec2::new(angle.cos(), -angle.sin())
}

/// Whether two of the chart's projected faces cover a common point (checked on a grid of cell
/// centres; faces that only share edges never count). Degenerate faces are ignored.
fn overlaps(chart: &Chart, faces: &FaceFrames) -> bool {
    let area: f32 = chart.faces.iter().map(|&f| faces.areas[f as usize]).sum();
    let box_area = (chart.size.x * chart.size.y).max(area);
    let cells = (OVERLAP_CELLS_PER_FACE * chart.faces.len() as f32).clamp(MIN_OVERLAP_CELLS, MAX_OVERLAP_CELLS);
    // Thin charts: no more cells along x than the cell budget's square side allows.
    let scale =
        (cells / box_area.max(f32::MIN_POSITIVE)).sqrt().min(cells.sqrt() / chart.size.x.max(f32::MIN_POSITIVE));
    let width = ((chart.size.x * scale).ceil() as u32).max(1);
    let height = ((chart.size.y * scale).ceil() as u32).max(1);
    let mut owner = vec![u32::MAX; width as usize * height as usize];
    let mut clash = false;
    for (i, corner) in chart.corners.iter().enumerate() {
        let scaled = corner.map(|p| (p * scale).to_array());
        rasterize(scaled, width, height, -OVERLAP_INSET, |x, y, _| {
            let cell = &mut owner[(y * width + x) as usize];
            if *cell != u32::MAX && *cell != i as u32 {
                clash = true;
            }
            *cell = i as u32;
        });
        if clash {
            return true;
        }
    }
    false
}

/// Where each chart goes in the texture.
struct Layout {
    texels_per_unit: f32,
    /// Per chart, the texel position of its chart-coordinate origin.
    origins: Vec<Vec2>,
}

/// Shelf packing at the largest texel density that fits, or `None` when not even the padding
/// alone fits.
fn pack(charts: &[Chart], texture_size: u32, padding: u32) -> Option<Layout> {
    let mut order: Vec<usize> = (0..charts.len()).collect();
    order.sort_by(|&a, &b| charts[b].size.y.total_cmp(&charts[a].size.y));
    let box_area: f32 = charts.iter().map(|c| c.size.x * c.size.y).sum();
    let mut hi = texture_size as f32 / box_area.max(f32::MIN_POSITIVE).sqrt();
    let mut lo = 0.0f32;
    let mut best = shelf_pack(charts, &order, texture_size, padding, lo)?;
    // The largest chart must fit on its own.
    for chart in charts {
        let side = chart.size.x.max(chart.size.y);
        if side > 0.0 {
            hi = hi.min((texture_size as f32 - 2.0 * padding as f32 - 1.0) / side);
        }
    }
    if let Some(layout) = shelf_pack(charts, &order, texture_size, padding, hi) {
        return Some(layout);
    }
    for _ in 0..PACKING_BISECTION_STEPS {
        let mid = 0.5 * (lo + hi);
        match shelf_pack(charts, &order, texture_size, padding, mid) {
            Some(layout) => {
                best = layout;
                lo = mid;
            }
            None => hi = mid,
        }
    }
    Some(best)
}

/// One shelf-packing attempt at `texels_per_unit`; `None` when the charts overflow the texture.
fn shelf_pack(
    charts: &[Chart],
    order: &[usize],
    texture_size: u32,
    padding: u32,
    texels_per_unit: f32,
) -> Option<Layout> {
    let side = texture_size as f32;
    let pad = padding as f32;
    let mut origins = vec![Vec2::ZERO; charts.len()];
    let (mut x, mut y, mut shelf_height) = (0.0f32, 0.0f32, 0.0f32);
    for &i in order {
        // Whole texels, so chart interiors keep the same fraction on every texel grid.
        let w = (charts[i].size.x * texels_per_unit).ceil() + 2.0 * pad;
        let h = (charts[i].size.y * texels_per_unit).ceil() + 2.0 * pad;
        if w > side {
            return None;
        }
        if x + w > side {
            y += shelf_height;
            x = 0.0;
            shelf_height = 0.0;
        }
        if y + h > side {
            return None;
        }
        origins[i] = Vec2::new(x + pad, y + pad);
        x += w;
        shelf_height = shelf_height.max(h);
    }
    Some(Layout { texels_per_unit, origins })
}

/// The output mesh: one vertex per (chart, input vertex), UVs from the layout.
fn split_vertices(mesh: &TriMesh, charts: &[Chart], layout: &Layout, texture_size: u32) -> TriMesh {
    let has = |n: usize| n == mesh.num_vertices();
    let mut out = TriMesh { triangles: mesh.triangles.clone(), ..TriMesh::default() };
    // The output vertex of an input vertex in the current chart, tagged with the chart.
    let mut copy_of: Vec<(u32, u32)> = vec![(u32::MAX, 0); mesh.num_vertices()];
    let to_uv = |p: Vec2, origin: Vec2| ((origin + p * layout.texels_per_unit) / texture_size as f32).to_array();
    for (c, chart) in charts.iter().enumerate() {
        let origin = layout.origins[c];
        for (&f, corners) in chart.faces.iter().zip(&chart.corners) {
            for (k, &corner) in corners.iter().enumerate() {
                let v = mesh.triangles[f as usize][k];
                let (tag, copy) = copy_of[v as usize];
                let copy = if tag == c as u32 {
                    copy
                } else {
                    let copy = out.positions.len() as u32;
                    copy_of[v as usize] = (c as u32, copy);
                    out.positions.push(mesh.positions[v as usize]);
                    out.uvs.push(to_uv(corner, origin));
                    if has(mesh.normals.len()) {
                        out.normals.push(mesh.normals[v as usize]);
                    }
                    if has(mesh.colors.len()) {
                        out.colors.push(mesh.colors[v as usize]);
                    }
                    copy
                };
                out.triangles[f as usize][k] = copy;
            }
        }
    }
    out
}

/// Total UV area of the triangles (the fraction of the unit square they cover, when charts do
/// not overlap).
pub(crate) fn uv_area(mesh: &TriMesh) -> f64 {
    mesh.triangles
        .iter()
        .map(|t| {
            let [a, b, c] = t.map(|v| Vec2::from(mesh.uvs[v as usize]));
            0.5 * ((b - a).perp_dot(c - a) as f64).abs()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A closed, bumpy sphere: radius modulated so charts are irregular.
    fn bumpy_sphere(rings: u32, segments: u32) -> TriMesh {
        TriMesh::uv_sphere(rings, segments, |dir| {
            let (theta, phi) = (dir.z.clamp(-1.0, 1.0).acos(), dir.y.atan2(dir.x));
            1.0 + 0.15 * (3.0 * phi).sin() * (4.0 * theta).sin()
        })
    }

    /// Chart id per triangle, recovered from the output alone: triangles sharing a UV-space
    /// vertex (same output vertex) are in the same chart.
    fn charts_from_uvs(mesh: &TriMesh) -> Vec<u32> {
        let mut parent: Vec<u32> = (0..mesh.num_vertices() as u32).collect();
        fn find(parent: &mut [u32], v: u32) -> u32 {
            let mut r = v;
            while parent[r as usize] != r {
                r = parent[r as usize];
            }
            parent[v as usize] = r;
            r
        }
        for t in &mesh.triangles {
            let a = find(&mut parent, t[0]);
            for &v in &t[1..] {
                let b = find(&mut parent, v);
                parent[b as usize] = a;
            }
        }
        mesh.triangles.iter().map(|t| find(&mut parent, t[0])).collect()
    }

    #[test]
    fn charts_do_not_overlap_uvs_are_in_range_and_distortion_is_bounded() {
        let mesh = bumpy_sphere(60, 90);
        let size = 512;
        let options = AtlasOptions::default();
        let (out, report) = build_atlas_with_report(&mesh, size, &options).unwrap();
        assert_eq!(out.num_triangles(), mesh.num_triangles());
        assert_eq!(out.uvs.len(), out.num_vertices());
        assert!(out.uvs.iter().flatten().all(|&c| (0.0..=1.0).contains(&c)), "UV outside [0, 1]");
        // Same surface: each output triangle has the input triangle's positions.
        for (a, b) in out.triangles.iter().zip(&mesh.triangles) {
            assert_eq!(a.map(|v| out.positions[v as usize]), b.map(|v| mesh.positions[v as usize]));
        }
        // Coverage grid: texel centres strictly inside triangles; no two charts' texels may be
        // within 2 texels of each other (the padding leaves 2 × 2 texels between bounding boxes).
        let chart = charts_from_uvs(&out);
        let n = size as usize;
        let mut owner = vec![u32::MAX; n * n];
        let mut self_overlap = 0;
        for (f, t) in out.triangles.iter().enumerate() {
            let corners = t.map(|v| out.uvs[v as usize].map(|c| c * size as f32));
            rasterize(corners, size, size, -1e-3, |x, y, _| {
                let cell = &mut owner[y as usize * n + x as usize];
                if *cell == f as u32 {
                    return;
                }
                if *cell != u32::MAX {
                    self_overlap += 1;
                }
                *cell = f as u32;
            });
        }
        assert_eq!(self_overlap, 0, "triangles overlap in UV space");
        let chart_at = |x: usize, y: usize| match owner[y * n + x] {
            u32::MAX => None,
            f => Some(chart[f as usize]),
        };
        for y in 0..n {
            for x in 0..n {
                let Some(c) = chart_at(x, y) else { continue };
                // Every texel within Chebyshev distance 2 (each unordered pair visited once).
                let offsets = (-2i64..=2).flat_map(|dy| (-2i64..=2).map(move |dx| (dx, dy)));
                for (dx, dy) in offsets.filter(|&(dx, dy)| dy > 0 || (dy == 0 && dx > 0)) {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    let inside = nx >= 0 && ny >= 0 && nx < n as i64 && ny < n as i64;
                    if let Some(d) = inside.then(|| chart_at(nx as usize, ny as usize)).flatten() {
                        assert_eq!(c, d, "charts {c} and {d} closer than the gutter at {x},{y}");
                    }
                }
            }
        }
        // Area distortion: UV area / 3D area, relative to the chart density squared, lies in
        // [cos 45°, 1] for a planar projection within a 45° cone.
        let density = report.texels_per_unit / size as f32;
        for t in &out.triangles {
            let [a, b, c] = t.map(|v| Vec3::from(out.positions[v as usize]));
            let area3 = 0.5 * (b - a).cross(c - a).length();
            let [p, q, r] = t.map(|v| Vec2::from(out.uvs[v as usize]));
            let signed = 0.5 * (q - p).perp_dot(r - p);
            let ratio = signed.abs() / (area3 * density * density);
            assert!((0.70..=1.0 + 1e-3).contains(&ratio), "area ratio {ratio}");
            // Not mirrored: a triangle counter-clockwise from outside is counter-clockwise in
            // (u, −v), i.e. clockwise in (u, v) with v down.
            assert!(signed < 0.0, "mirrored chart: UV signed area {signed}");
        }
        println!("atlas: {} charts, utilisation {:.1}%", report.charts, 100.0 * report.utilisation);
        assert!(report.charts > 6 && report.charts < 2000, "{} charts", report.charts);
        assert!(report.utilisation > 0.3, "utilisation {:.3}", report.utilisation);
    }

    #[test]
    fn a_spiral_ramp_is_cut_until_its_projection_does_not_overlap() {
        // A helicoid strip of two full turns: every face points roughly up, yet its projection
        // onto the horizontal plane covers itself twice.
        let (turns, steps) = (2.0f32, 200u32);
        let mut positions = Vec::new();
        for i in 0..=steps {
            let a = std::f32::consts::TAU * turns * i as f32 / steps as f32;
            let z = 0.05 * a;
            positions.push([0.5 * a.cos(), 0.5 * a.sin(), z]);
            positions.push([1.0 * a.cos(), 1.0 * a.sin(), z]);
        }
        let mut triangles = Vec::new();
        for i in 0..steps {
            let (a, b, c, d) = (2 * i, 2 * i + 1, 2 * i + 2, 2 * i + 3);
            triangles.push([a, b, d]);
            triangles.push([a, d, c]);
        }
        let mesh = TriMesh { positions, triangles, ..TriMesh::default() };
        let (out, report) = build_atlas_with_report(&mesh, 256, &AtlasOptions::default()).unwrap();
        assert!(report.charts >= 2, "a two-turn ramp cannot be one planar chart");
        let mut owner = vec![u32::MAX; 256 * 256];
        for (f, t) in out.triangles.iter().enumerate() {
            let corners = t.map(|v| out.uvs[v as usize].map(|c| c * 256.0));
            rasterize(corners, 256, 256, -1e-3, |x, y, _| {
                let cell = &mut owner[(y * 256 + x) as usize];
                assert!(*cell == u32::MAX || *cell == f as u32, "overlap at {x},{y}");
                *cell = f as u32;
            });
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mesh = bumpy_sphere(6, 8);
        assert!(matches!(build_atlas(&mesh, 8, &AtlasOptions::default()), Err(TextureError::TextureSize(8))));
        assert!(matches!(
            build_atlas(&TriMesh::default(), 256, &AtlasOptions::default()),
            Err(TextureError::EmptyMesh)
        ));
        let mut broken = mesh.clone();
        broken.triangles[3][1] = 10_000;
        assert!(matches!(
            build_atlas(&broken, 256, &AtlasOptions::default()),
            Err(TextureError::BadIndex { triangle: 3, .. })
        ));
    }
}
