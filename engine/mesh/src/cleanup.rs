//! Mesh cleanup after extraction: merged duplicate vertices, no degenerate triangles, the
//! support plane cut away, only the main connected component(s), manifold edges and vertices,
//! and, when asked, every hole capped so that the mesh is watertight.
//!
//! The support plane is found by RANSAC over the vertices, restricted to planes whose normal is
//! within [`MAX_GROUND_TILT_DEG`] of an "up" hint (the capture's cameras give one, see
//! [`camera_up`]); everything below `ground_margin` above it is clipped off (triangles crossing
//! the cut are split, so the cut is exactly planar). Holes are capped by ear clipping each
//! boundary loop in its best-fit plane (Newell normal), which makes the planar bottom cut a flat,
//! exact cap. Only holes of a size fusion leaves in observed surface (a boundary shorter than
//! [`HOLE_CAP_PERIMETER_VOXELS`] voxels) and the support-plane cut are capped: the large openings
//! of a partial capture stay open rather than being spanned by big flat triangles, and the report
//! says how long they are. An object cut off a support it stands on (`rests_on`) rests on it
//! again: the opening the cut left is closed flat on the support's top rather than at the cut
//! (see `rest_bases`). Cleanup keeps positions only: normals are recomputed
//! ([`TriMesh::vertex_normals`]), other attributes are dropped (cleanup runs before texturing).

use std::collections::HashMap;

use glam::Vec3;

use kiln_core::camera::Camera;
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::error::MeshError;

/// Largest angle between the support plane's normal and the up hint.
pub const MAX_GROUND_TILT_DEG: f32 = 25.0;
/// RANSAC hypotheses for the support plane: with inlier fractions above 20 % a few hundred
/// draws find it with overwhelming probability.
const RANSAC_ITERATIONS: usize = 400;
/// Vertices RANSAC scores each plane on (an even subsample of large meshes).
const RANSAC_SAMPLE: usize = 20_000;
/// A plane is only taken as the support when this fraction of the vertices lies on it.
const MIN_GROUND_FRACTION: f32 = 0.05;

/// Boundary loops longer than this many voxels are openings of a partial capture, left open: a
/// fused surface seen from every side has holes only in crevices and at occlusion edges, a few
/// voxels across (perimeter well under 48 voxels, i.e. about 15 voxels across); an unseen back
/// or bottom is a loop around most of the object.
pub const HOLE_CAP_PERIMETER_VOXELS: f32 = 48.0;

/// With a focus, other components are kept only inside the main one's box grown by this share
/// of its size on each side (detached parts of the object, not the background beyond it).
const FOCUS_BOX_GROWTH: f32 = 0.1;

/// A vertex lies on a cut within this share of the margin (the cut splits triangles exactly on
/// the plane; only rounding separates them).
const CUT_TOLERANCE: f32 = 0.01;

/// Share of the mesh's height, from its lowest point along up, where a flat horizontal opening
/// is taken for the object's base (see `is_flat_base`).
const BASE_BAND: f32 = 0.1;

/// A boundary loop is the opening a cut left when at least this share of its length lies on
/// the cut: the rest are notches where the surface ends above it, under overhangs no photo saw,
/// with ragged edges (on bunny-synth 17 % of the base opening's 1.1 m lies on the cut; its
/// notches reach 29 mm above it, 20 % of the bunny's height).
const BASE_ON_CUT_SHARE: f64 = 0.1;
/// ... and when no vertex of it lies higher above the cut than this share of the mesh's extent
/// along the cut's normal: a partial capture's unseen side joined to the cut reaches far higher.
const BASE_NOTCH_SHARE: f32 = 0.25;

/// Rounds of (fix non-manifold edges and vertices, cap holes): a cap can meet an existing edge
/// and make it non-manifold, whose fix opens a smaller hole; three rounds settle real meshes.
const MANIFOLD_PASSES: usize = 4;
/// Histogram bin for the heights of vertices above the support plane, in units of the margin.
const HEIGHT_BIN_MARGINS: f32 = 0.25;
/// The ground layer ends where the height histogram falls below this fraction of its peak.
const GROUND_TAIL_FRACTION: f32 = 0.05;

/// What cleanup does.
#[derive(Clone, Debug, PartialEq)]
pub struct CleanupOptions {
    /// Detect the support plane and cut away it and everything under it.
    pub remove_ground: bool,
    /// Cap holes (after the cut): those within [`Self::max_cap_perimeter`] and the cut's own.
    pub watertight: bool,
    /// Holes whose boundary is longer than this (world units) are left open, unless they lie on
    /// the support plane's cut (the flat bottom is always capped); `None` caps every hole.
    pub max_cap_perimeter: Option<f32>,
    /// Connected components smaller than this fraction of the largest one's area are dropped
    /// (1.0 keeps the largest only).
    pub min_component_fraction: f32,
    /// World "up" for finding the support plane (see [`camera_up`]); `None` accepts any plane
    /// orientation and takes the side with more of the mesh as up.
    pub up: Option<[f32; 3]>,
    /// Where the capture's object is (a point the cameras converge on, and a radius around it):
    /// the main component is the one with the most area within it rather than the largest
    /// overall. `None`: the largest.
    pub focus: Option<Focus>,
    /// Planes the mesh was already cut at (supports found elsewhere): a flat opening on one of
    /// them is capped like the support plane's own cut.
    pub cuts: Vec<Plane>,
    /// The top of the support the object stands on, when one of `cuts` cut it away: the base
    /// opening that cut left is extended straight down to this plane and closed there
    /// (see `rest_bases`). `None`: a base opening is closed where the cut left it.
    pub rests_on: Option<Plane>,
    /// Distance from a vertex to the support plane under which it belongs to the plane, and how
    /// far above the plane the cut is made (world units). About twice the extraction's voxel.
    pub ground_margin: f32,
}

impl CleanupOptions {
    /// Defaults for a surface extracted with voxels of side `voxel_size`: ground removed, small
    /// holes and the cut capped, floaters below 5 % of the main component dropped, cut two
    /// voxels above the ground.
    pub fn for_voxel_size(voxel_size: f32) -> Self {
        Self {
            remove_ground: true,
            watertight: true,
            max_cap_perimeter: Some(HOLE_CAP_PERIMETER_VOXELS * voxel_size),
            min_component_fraction: 0.05,
            up: None,
            focus: None,
            cuts: Vec::new(),
            rests_on: None,
            ground_margin: 2.0 * voxel_size,
        }
    }
}

/// A ball around the object of a capture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Focus {
    pub centre: [f32; 3],
    pub radius: f32,
}

/// A plane `normal · p + offset = 0` with a unit normal pointing up (to the object's side).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plane {
    pub normal: [f32; 3],
    pub offset: f32,
}

impl Plane {
    pub fn signed_distance(&self, p: [f32; 3]) -> f32 {
        Vec3::from_array(self.normal).dot(Vec3::from_array(p)) + self.offset
    }
}

/// What [`cleanup`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CleanupReport {
    pub ground: Option<Plane>,
    pub components_dropped: usize,
    pub holes_capped: usize,
    /// Surface area of the hole caps (world units²): surface that no photo showed.
    pub capped_area: f64,
    /// Surface area of the flat base closed where the object stood on its support, and of the
    /// walls closing the gaps under its overhangs down to it (world units²): no photo can show
    /// them, and no capture is faulted for them.
    pub base_area: f64,
    /// Base openings closed on the support the object rests on (see
    /// [`CleanupOptions::rests_on`]).
    pub bases_rested: usize,
    /// Boundary loops left open (openings of a partial capture).
    pub holes_left_open: usize,
    /// Total length of those loops, world units.
    pub open_boundary_length: f64,
    pub non_manifold_edges_fixed: usize,
    pub non_manifold_vertices_split: usize,
}

/// The cameras' mean up direction (OpenCV −Y in world), normalised; `None` when they disagree
/// so much that it cancels out. For a capture walked around an object on a table this is the
/// table's normal to within the cameras' pitch.
pub fn camera_up(cameras: &[Camera]) -> Option<[f32; 3]> {
    let sum: Vec3 = cameras.iter().map(|c| -c.world_from_camera.rotation.y_axis).sum();
    (sum.length() > 0.3 * cameras.len() as f32).then(|| sum.normalize().to_array())
}

/// Runs every cleanup step of `options` on `mesh` (see the module docs).
pub fn cleanup(mesh: &TriMesh, options: &CleanupOptions) -> Result<(TriMesh, CleanupReport), MeshError> {
    if mesh.triangles.is_empty() {
        return Err(MeshError::NoSurface(
            "the mesh to clean up has no triangles: extract it again over a region that contains the object".into(),
        ));
    }
    let mut report = CleanupReport::default();
    let mut mesh =
        TriMesh { positions: mesh.positions.clone(), triangles: mesh.triangles.clone(), ..Default::default() };
    merge_duplicate_vertices(&mut mesh);
    remove_degenerate_triangles(&mut mesh);
    if options.remove_ground {
        report.ground = detect_ground(&mesh, options.up, options.ground_margin);
        match report.ground {
            Some(plane) => {
                let height = ground_cut_height(&mesh, &plane, options.ground_margin);
                let mut cut = clip_above(&mesh, &plane, height);
                remove_degenerate_triangles(&mut cut);
                if cut.triangles.is_empty() {
                    // A plane through the object, not under it (a surface with no ground, e.g.
                    // carved by masks): cutting would leave nothing, so nothing is cut.
                    tracing::warn!(
                        "plane {plane:?} has the whole surface within {height} above it: not ground, not cut"
                    );
                    report.ground = None;
                } else {
                    tracing::info!("support plane {plane:?}: cutting {height} above it");
                    mesh = cut;
                }
            }
            None => tracing::warn!("no support plane found: the ground is left in the mesh"),
        }
    }
    report.components_dropped = keep_main_components(&mut mesh, options.min_component_fraction, options.focus);
    let cuts: Vec<Plane> = report.ground.iter().chain(&options.cuts).copied().collect();
    let base = options.up.map(Vec3::from_array).and_then(|up| base_height(&mesh, up).map(|h| (up, h)));
    let levels: Vec<Plane> = cuts.iter().chain(&options.rests_on).copied().collect();
    let extent = |plane: &Plane| mesh_extent(&mesh, plane);
    let extents: Vec<f32> = levels.iter().map(extent).collect();
    let is_base = |ring: &[Vec3]| {
        levels.iter().zip(&extents).any(|(plane, &extent)| is_cut_opening(ring, plane, options.ground_margin, extent))
            || base.is_some_and(|(up, height)| is_flat_base(ring, up, height, options.ground_margin))
    };
    let is_small = |ring: &[Vec3]| options.max_cap_perimeter.is_none_or(|limit| perimeter(ring) <= f64::from(limit));
    for pass in 0..MANIFOLD_PASSES {
        report.non_manifold_edges_fixed += fix_non_manifold_edges(&mut mesh);
        report.non_manifold_vertices_split += split_non_manifold_vertices(&mut mesh);
        if !options.watertight {
            break;
        }
        // On manifold boundaries, so that each opening is one loop.
        if let Some(rest) = options.rests_on.filter(|_| pass == 0) {
            (report.bases_rested, report.base_area) = rest_bases(&mut mesh, &cuts, &rest, options.ground_margin);
        }
        // Ear clipping gives flat, tidy caps; later passes close what is left with fans around
        // a new centre vertex, whose edges cannot collide with existing ones.
        let style = if pass == 0 { CapStyle::EarClip } else { CapStyle::CentreFan };
        let (bases, base_area) = cap_measured(&mut mesh, style, &is_base);
        let (holes, hole_area) = cap_measured(&mut mesh, style, &is_small);
        let capped = bases + holes;
        report.holes_capped += capped;
        report.base_area += base_area;
        report.capped_area += hole_area;
        if capped == 0 {
            break;
        }
    }
    let open = boundary_loops(&mesh);
    report.holes_left_open = open.len();
    report.open_boundary_length = open.iter().map(|ring| perimeter(&ring_positions(ring, &mesh.positions))).sum();
    remove_unreferenced_vertices(&mut mesh);
    if mesh.triangles.is_empty() {
        return Err(MeshError::NoSurface(format!(
            "nothing is left after cleanup ({} support plane cut, {} components dropped): the surface was only \
             ground or floaters; check that the region contains the object, or keep the ground",
            if report.ground.is_some() { "a" } else { "no" },
            report.components_dropped
        )));
    }
    if options.watertight && report.holes_left_open == 0 {
        check_outward(&mesh)?;
    }
    mesh.normals = mesh.vertex_normals();
    Ok((mesh, report))
}

/// An error when the closed `mesh` encloses negative volume, i.e. faces inwards. (Open meshes
/// have no enclosed volume to check: a partial capture's surface is left open.)
fn check_outward(mesh: &TriMesh) -> Result<(), MeshError> {
    let volume = super::metrics::enclosed_volume(mesh);
    if volume < 0.0 {
        return Err(MeshError::Inverted(format!(
            "the closed surface encloses {volume:.3e} cubic units, so its triangles face inwards"
        )));
    }
    Ok(())
}

/// Whether a boundary `ring` is the opening the cut at `plane` left: at least
/// [`BASE_ON_CUT_SHARE`] of its length on the plane (within a hundredth of `margin`), and none of
/// it higher above the plane than [`BASE_NOTCH_SHARE`] of the mesh's `extent` along the plane's
/// normal.
fn is_cut_opening(ring: &[Vec3], plane: &Plane, margin: f32, extent: f32) -> bool {
    let height = |p: &Vec3| plane.signed_distance(p.to_array());
    let on = |p: &Vec3| height(p).abs() <= CUT_TOLERANCE * margin;
    let on_length: f64 = (0..ring.len())
        .filter(|&k| on(&ring[k]) && on(&ring[(k + 1) % ring.len()]))
        .map(|k| f64::from(ring[k].distance(ring[(k + 1) % ring.len()])))
        .sum();
    on_length >= BASE_ON_CUT_SHARE * perimeter(ring)
        && ring.iter().all(|p| height(p) >= -CUT_TOLERANCE * margin && height(p) <= BASE_NOTCH_SHARE * extent)
}

/// The mesh's extent along `plane`'s normal.
fn mesh_extent(mesh: &TriMesh, plane: &Plane) -> f32 {
    let heights = mesh.positions.iter().map(|p| plane.signed_distance(*p));
    let (lo, hi) = heights.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), h| (lo.min(h), hi.max(h)));
    (hi - lo).max(0.0)
}

/// Closes each opening one of `cuts` left (see [`is_cut_opening`]) flat on `rest`, the top of
/// the support the object stands on, rather than where the cut took its lowest band away: the
/// opening's outline projected onto `rest` is the base, and a wall joins the base to the
/// opening where the opening lies on the cut. Where it does not (a notch: the surface ends above
/// the cut under an overhang no photo saw), the gap between the notch and the base is a hole of
/// its own, closed later as a base too: a wall hanging from the notch. It stands where the
/// overhang's underside curves in (on bunny-synth, under the chest, most of what is left of the
/// Chamfer distance); leaving the gaps open was closer (1.19 against 1.28 mm) but left 20
/// openings in a model meant to be closed. Returns the openings closed and the base's area.
fn rest_bases(mesh: &mut TriMesh, cuts: &[Plane], rest: &Plane, margin: f32) -> (usize, f64) {
    let normal = Vec3::from_array(rest.normal);
    let parallel =
        |plane: &&Plane| Vec3::from_array(plane.normal).dot(normal) >= MAX_GROUND_TILT_DEG.to_radians().cos();
    let cuts: Vec<(Plane, f32)> =
        cuts.iter().filter(parallel).map(|plane| (*plane, mesh_extent(mesh, plane))).collect();
    let (mut closed, mut area) = (0, 0.0);
    for ring in boundary_loops(mesh) {
        let positions = ring_positions(&ring, &mesh.positions);
        let Some((cut, _)) = cuts.iter().find(|(plane, extent)| is_cut_opening(&positions, plane, margin, *extent))
        else {
            continue;
        };
        let on_cut: Vec<bool> =
            positions.iter().map(|p| cut.signed_distance(p.to_array()).abs() <= CUT_TOLERANCE * margin).collect();
        let first = mesh.positions.len() as u32;
        mesh.positions.extend(positions.iter().map(|p| (*p - rest.signed_distance(p.to_array()) * normal).to_array()));
        let walls_from = mesh.triangles.len();
        for k in 0..ring.len() {
            let next = (k + 1) % ring.len();
            if !(on_cut[k] && on_cut[next]) {
                continue;
            }
            let (a, b, a_low, b_low) = (ring[k], ring[next], first + k as u32, first + next as u32);
            // The opening runs a → b in its triangle; the wall meets it b → a.
            mesh.triangles.extend([[b, a, a_low], [b, a_low, b_low]]);
        }
        // The base runs against the walls' lower edges, so it runs against the opening too.
        let base: Vec<u32> = (0..ring.len() as u32).rev().map(|k| first + k).collect();
        let cap = ear_clip(&base, &mesh.positions);
        let corner = |i: u32| Vec3::from_array(mesh.positions[i as usize]).as_dvec3();
        area += cap
            .iter()
            .map(|&[a, b, c]| 0.5 * (corner(b) - corner(a)).cross(corner(c) - corner(a)).length())
            .sum::<f64>();
        mesh.triangles.extend(cap);
        tracing::debug!("base closed on the support: {} triangles of wall and base", mesh.triangles.len() - walls_from);
        closed += 1;
    }
    (closed, area)
}

/// Height along `up` under which a boundary loop counts as the object's base: the lowest
/// [`BASE_BAND`] of the mesh.
fn base_height(mesh: &TriMesh, up: Vec3) -> Option<f32> {
    let heights = mesh.positions.iter().map(|&p| up.dot(Vec3::from_array(p)));
    let (lo, hi) = heights.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), h| (lo.min(h), hi.max(h)));
    (lo < hi).then_some(lo + BASE_BAND * (hi - lo))
}

/// Whether `ring` is the opening an object's unseen underside leaves (masks carve the support
/// away, so no cut made it): flat within `tolerance` of a plane tilted at most
/// [`MAX_GROUND_TILT_DEG`] from `up`, and entirely below `base_height`. Capping it flat is what
/// an object standing on a table has there; a partial capture's side openings are neither.
fn is_flat_base(ring: &[Vec3], up: Vec3, base_height: f32, tolerance: f32) -> bool {
    if ring.iter().any(|p| up.dot(*p) > base_height) {
        return false;
    }
    let Some((normal, offset)) = fit_plane(ring) else { return false };
    let tilt_ok = normal.dot(up).abs() >= MAX_GROUND_TILT_DEG.to_radians().cos();
    tilt_ok && ring.iter().all(|p| (normal.dot(*p) + offset).abs() <= tolerance)
}

/// Length of the closed polygon `ring`.
fn perimeter(ring: &[Vec3]) -> f64 {
    (0..ring.len()).map(|k| f64::from(ring[k].distance(ring[(k + 1) % ring.len()]))).sum()
}

fn ring_positions(ring: &[u32], positions: &[[f32; 3]]) -> Vec<Vec3> {
    ring.iter().map(|&i| Vec3::from_array(positions[i as usize])).collect()
}

/// Merges vertices at bit-identical positions.
pub fn merge_duplicate_vertices(mesh: &mut TriMesh) {
    let mut first: HashMap<[u32; 3], u32> = HashMap::with_capacity(mesh.positions.len());
    let mut positions = Vec::with_capacity(mesh.positions.len());
    let remap: Vec<u32> = mesh
        .positions
        .iter()
        .map(|p| {
            *first.entry(p.map(f32::to_bits)).or_insert_with(|| {
                positions.push(*p);
                (positions.len() - 1) as u32
            })
        })
        .collect();
    mesh.positions = positions;
    for t in &mut mesh.triangles {
        *t = t.map(|i| remap[i as usize]);
    }
}

/// Drops triangles with a repeated corner, zero area, or the same corners as an earlier one.
pub fn remove_degenerate_triangles(mesh: &mut TriMesh) {
    let mut seen = std::collections::HashSet::new();
    let positions = &mesh.positions;
    mesh.triangles.retain(|t| {
        if t[0] == t[1] || t[1] == t[2] || t[0] == t[2] {
            return false;
        }
        let [a, b, c] = t.map(|i| Vec3::from_array(positions[i as usize]));
        let mut key = *t;
        key.sort_unstable();
        (b - a).cross(c - a).length_squared() > 0.0 && seen.insert(key)
    });
}

/// Finds the support plane by RANSAC (see the module docs).
pub fn detect_ground(mesh: &TriMesh, up: Option<[f32; 3]>, inlier_distance: f32) -> Option<Plane> {
    let n = mesh.positions.len();
    if n < 3 {
        return None;
    }
    let stride = n.div_ceil(RANSAC_SAMPLE);
    let sample: Vec<Vec3> = mesh.positions.iter().step_by(stride).map(|p| Vec3::from_array(*p)).collect();
    let up = up.map(|u| Vec3::from_array(u).normalize_or_zero());
    let min_cos = MAX_GROUND_TILT_DEG.to_radians().cos();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |m: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % m as u64) as usize
    };
    let mut best: Option<(usize, Vec3, f32)> = None;
    for _ in 0..RANSAC_ITERATIONS {
        let [a, b, c] = [next(sample.len()), next(sample.len()), next(sample.len())].map(|i| sample[i]);
        let normal = (b - a).cross(c - a).normalize_or_zero();
        if normal == Vec3::ZERO || up.is_some_and(|u| normal.dot(u).abs() < min_cos) {
            continue;
        }
        let offset = -normal.dot(a);
        let inliers = sample.iter().filter(|p| (normal.dot(**p) + offset).abs() <= inlier_distance).count();
        if best.is_none_or(|(count, ..)| inliers > count) {
            best = Some((inliers, normal, offset));
        }
    }
    let (count, normal, offset) = best?;
    if (count as f32) < MIN_GROUND_FRACTION * sample.len() as f32 {
        return None;
    }
    let inliers: Vec<Vec3> =
        sample.iter().copied().filter(|p| (normal.dot(*p) + offset).abs() <= inlier_distance).collect();
    let (normal, offset) = fit_plane(&inliers).unwrap_or((normal, offset));
    let above = sample.iter().filter(|p| normal.dot(**p) + offset > inlier_distance).count();
    let below = sample.iter().filter(|p| normal.dot(**p) + offset < -inlier_distance).count();
    let flip = match up {
        Some(u) => normal.dot(u) < 0.0,
        None => below > above,
    };
    let (normal, offset) = if flip { (-normal, -offset) } else { (normal, offset) };
    Some(Plane { normal: normal.to_array(), offset })
}

/// How far above `plane` to cut: the reconstructed ground is a layer of some thickness (noise,
/// depth bias), so the cut goes `margin` above the height at which the histogram of vertex
/// heights near the plane drops below [`GROUND_TAIL_FRACTION`] of the ground peak.
pub fn ground_cut_height(mesh: &TriMesh, plane: &Plane, margin: f32) -> f32 {
    let bin = (HEIGHT_BIN_MARGINS * margin).max(f32::MIN_POSITIVE);
    let bins = 80usize;
    let lowest = -(bins as f32 / 2.0) * bin;
    let mut histogram = vec![0usize; bins];
    for p in &mesh.positions {
        let k = ((plane.signed_distance(*p) - lowest) / bin).floor();
        if k >= 0.0 && (k as usize) < bins {
            histogram[k as usize] += 1;
        }
    }
    let Some((peak, &peak_count)) = histogram.iter().enumerate().max_by_key(|(_, c)| **c) else { return margin };
    let tail = (GROUND_TAIL_FRACTION * peak_count as f32) as usize;
    let end = (peak..bins).find(|&k| histogram[k] <= tail).unwrap_or(bins);
    (lowest + end as f32 * bin).max(0.0) + margin
}

/// Least-squares plane through points: the centroid and the covariance's smallest eigenvector.
pub(crate) fn fit_plane(points: &[Vec3]) -> Option<(Vec3, f32)> {
    if points.len() < 3 {
        return None;
    }
    let centroid = points.iter().copied().sum::<Vec3>() / points.len() as f32;
    let mut cov = nalgebra::Matrix3::<f64>::zeros();
    for p in points {
        let d = (*p - centroid).as_dvec3();
        let v = nalgebra::Vector3::new(d.x, d.y, d.z);
        cov += v * v.transpose();
    }
    let eigen = cov.symmetric_eigen();
    let (k, _) = eigen.eigenvalues.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1))?;
    let e = eigen.eigenvectors.column(k);
    let normal = Vec3::new(e[0] as f32, e[1] as f32, e[2] as f32).normalize_or_zero();
    (normal != Vec3::ZERO).then(|| (normal, -normal.dot(centroid)))
}

/// The part of `mesh` at least `height` above `plane`; triangles crossing the cut are split.
pub fn clip_above(mesh: &TriMesh, plane: &Plane, height: f32) -> TriMesh {
    let s: Vec<f32> = mesh.positions.iter().map(|p| plane.signed_distance(*p) - height).collect();
    let mut out = TriMesh { positions: mesh.positions.clone(), ..Default::default() };
    let mut cut_vertex: HashMap<(u32, u32), u32> = HashMap::new();
    let mut on_edge = |a: u32, b: u32, positions: &mut Vec<[f32; 3]>| -> u32 {
        let key = (a.min(b), a.max(b));
        *cut_vertex.entry(key).or_insert_with(|| {
            let (pa, pb) = (Vec3::from_array(positions[key.0 as usize]), Vec3::from_array(positions[key.1 as usize]));
            let (sa, sb) = (s[key.0 as usize], s[key.1 as usize]);
            positions.push(pa.lerp(pb, sa / (sa - sb)).to_array());
            (positions.len() - 1) as u32
        })
    };
    for t in &mesh.triangles {
        let keep = t.map(|i| s[i as usize] >= 0.0);
        if keep.iter().all(|&k| k) {
            out.triangles.push(*t);
            continue;
        }
        // Sutherland–Hodgman on one triangle, keeping the corner order (and so the winding).
        let mut polygon: Vec<u32> = Vec::with_capacity(4);
        for k in 0..3 {
            let (a, b) = (t[k], t[(k + 1) % 3]);
            if keep[k] {
                polygon.push(a);
            }
            if keep[k] != keep[(k + 1) % 3] {
                polygon.push(on_edge(a, b, &mut out.positions));
            }
        }
        for k in 1..polygon.len().saturating_sub(1) {
            out.triangles.push([polygon[0], polygon[k], polygon[k + 1]]);
        }
    }
    remove_unreferenced_vertices(&mut out);
    out
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        parent[i as usize] = parent[parent[i as usize] as usize];
        i = parent[i as usize];
    }
    i
}

/// Keeps the main connected component (through shared vertices) and those whose area is at
/// least `fraction` of its; returns how many were dropped. Without a `focus` the main one is the
/// largest; with one, the one nearest to it, and the others kept must lie within its box (grown
/// by [`FOCUS_BOX_GROWTH`]).
pub fn keep_main_components(mesh: &mut TriMesh, fraction: f32, focus: Option<Focus>) -> usize {
    let mut parent: Vec<u32> = (0..mesh.positions.len() as u32).collect();
    for t in &mesh.triangles {
        let r0 = find(&mut parent, t[0]);
        for &v in &t[1..] {
            let r = find(&mut parent, v);
            parent[r as usize] = r0;
        }
    }
    let mut area: HashMap<u32, f64> = HashMap::new();
    let mut bounds: HashMap<u32, (Vec3, Vec3)> = HashMap::new();
    let roots: Vec<u32> = mesh.triangles.iter().map(|t| find(&mut parent, t[0])).collect();
    for (t, root) in mesh.triangles.iter().zip(&roots) {
        let [a, b, c] = t.map(|i| Vec3::from_array(mesh.positions[i as usize]));
        *area.entry(*root).or_default() += 0.5 * (b - a).cross(c - a).length() as f64;
        let entry = bounds.entry(*root).or_insert((a, a));
        *entry = (entry.0.min(a.min(b).min(c)), entry.1.max(a.max(b).max(c)));
    }
    let keep: HashMap<u32, bool> = match focus.and_then(|f| focused_component(mesh, &roots, f)) {
        Some(main) => {
            let (lo, hi) = bounds[&main];
            let grow = FOCUS_BOX_GROWTH * (hi - lo);
            let inside = |(l, h): (Vec3, Vec3)| l.cmpge(lo - grow).all() && h.cmple(hi + grow).all();
            area.iter()
                .map(|(&root, &a)| {
                    (root, root == main || (inside(bounds[&root]) && a >= fraction as f64 * area[&main]))
                })
                .collect()
        }
        None => {
            let largest = area.values().copied().fold(0.0, f64::max);
            area.iter().map(|(&root, &a)| (root, a >= fraction as f64 * largest)).collect()
        }
    };
    let dropped = keep.values().filter(|k| !**k).count();
    let mut kept = roots.iter().map(|root| keep[root]);
    mesh.triangles.retain(|_| kept.next().unwrap_or(false));
    remove_unreferenced_vertices(mesh);
    dropped
}

/// The component (by its root in `roots`, one per triangle) with the most area inside `focus`'s
/// ball; `None` when no triangle is inside.
fn focused_component(mesh: &TriMesh, roots: &[u32], focus: Focus) -> Option<u32> {
    let centre = Vec3::from_array(focus.centre);
    let mut inside: HashMap<u32, f64> = HashMap::new();
    for (t, root) in mesh.triangles.iter().zip(roots) {
        let [a, b, c] = t.map(|i| Vec3::from_array(mesh.positions[i as usize]));
        if ((a + b + c) / 3.0).distance(centre) <= focus.radius {
            *inside.entry(*root).or_default() += 0.5 * (b - a).cross(c - a).length() as f64;
        }
    }
    inside.into_iter().max_by(|a, b| a.1.total_cmp(&b.1)).map(|(root, _)| root)
}

/// Removes triangles so that no edge has more than two, and no two run along an edge in the
/// same direction (an orientation conflict); returns how many edges were fixed.
pub fn fix_non_manifold_edges(mesh: &mut TriMesh) -> usize {
    let mut users: HashMap<(u32, u32), Vec<(usize, bool)>> = HashMap::new();
    for (i, t) in mesh.triangles.iter().enumerate() {
        for k in 0..3 {
            let (a, b) = (t[k], t[(k + 1) % 3]);
            users.entry((a.min(b), a.max(b))).or_default().push((i, a < b));
        }
    }
    let mut remove = vec![false; mesh.triangles.len()];
    let mut fixed = 0;
    for list in users.values() {
        let conflict = list.len() == 2 && list[0].1 == list[1].1;
        if list.len() <= 2 && !conflict {
            continue;
        }
        fixed += 1;
        let keep = if conflict { 1 } else { 2 };
        for &(i, _) in &list[keep..] {
            remove[i] = true;
        }
    }
    let mut flags = remove.into_iter();
    mesh.triangles.retain(|_| !flags.next().unwrap_or(false));
    fixed
}

/// Gives each fan of triangles around a vertex (triangles linked through edges at that vertex)
/// its own copy of the vertex; returns how many vertices were split.
pub fn split_non_manifold_vertices(mesh: &mut TriMesh) -> usize {
    let mut incident: Vec<Vec<usize>> = vec![Vec::new(); mesh.positions.len()];
    for (i, t) in mesh.triangles.iter().enumerate() {
        for &v in t {
            incident[v as usize].push(i);
        }
    }
    let mut split = 0;
    for (v, tris) in incident.iter().enumerate() {
        if tris.len() < 2 {
            continue;
        }
        let mut group: Vec<u32> = (0..tris.len() as u32).collect();
        for a in 0..tris.len() {
            for b in a + 1..tris.len() {
                let (ta, tb) = (mesh.triangles[tris[a]], mesh.triangles[tris[b]]);
                let shares_edge = ta.iter().any(|&w| w != v as u32 && tb.contains(&w));
                if shares_edge {
                    let (ra, rb) = (find(&mut group, a as u32), find(&mut group, b as u32));
                    group[ra as usize] = rb;
                }
            }
        }
        let roots: Vec<u32> = (0..tris.len() as u32).map(|i| find(&mut group, i)).collect();
        let first_root = roots[0];
        let mut copies: HashMap<u32, u32> = HashMap::new();
        for (k, root) in roots.iter().enumerate() {
            if *root == first_root {
                continue;
            }
            let copy = *copies.entry(*root).or_insert_with(|| {
                mesh.positions.push(mesh.positions[v]);
                (mesh.positions.len() - 1) as u32
            });
            for corner in mesh.triangles[tris[k]].iter_mut() {
                if *corner == v as u32 {
                    *corner = copy;
                }
            }
        }
        split += usize::from(!copies.is_empty());
    }
    split
}

/// How [`cap_holes`] triangulates a hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapStyle {
    /// Ear clipping in the loop's best-fit plane (no new vertices).
    EarClip,
    /// A fan around a new vertex at the loop's centroid.
    CentreFan,
}

/// [`cap_holes_where`], also returning the area the caps added.
fn cap_measured(mesh: &mut TriMesh, style: CapStyle, cappable: &dyn Fn(&[Vec3]) -> bool) -> (usize, f64) {
    let before = mesh.triangles.len();
    let capped = cap_holes_where(mesh, style, cappable);
    let caps = TriMesh {
        positions: mesh.positions.clone(),
        triangles: mesh.triangles[before..].to_vec(),
        ..Default::default()
    };
    (capped, super::metrics::triangle_areas(&caps).iter().sum())
}

/// Closes every boundary loop with a cap; returns how many were capped.
pub fn cap_holes(mesh: &mut TriMesh, style: CapStyle) -> usize {
    cap_holes_where(mesh, style, &|_| true)
}

/// Closes the boundary loops for which `cappable(loop positions)` holds; returns how many.
pub fn cap_holes_where(mesh: &mut TriMesh, style: CapStyle, cappable: &dyn Fn(&[Vec3]) -> bool) -> usize {
    let mut capped = 0;
    for mut ring in boundary_loops(mesh) {
        if !cappable(&ring_positions(&ring, &mesh.positions)) {
            continue;
        }
        // The cap runs against the boundary's direction, so each boundary edge gets its twin.
        ring.reverse();
        match style {
            CapStyle::EarClip => {
                let cap = ear_clip(&ring, &mesh.positions);
                mesh.triangles.extend(cap);
            }
            CapStyle::CentreFan => {
                let centroid = ring_positions(&ring, &mesh.positions).iter().sum::<Vec3>() / ring.len() as f32;
                let centre = mesh.positions.len() as u32;
                mesh.positions.push(centroid.to_array());
                for k in 0..ring.len() {
                    mesh.triangles.push([ring[k], ring[(k + 1) % ring.len()], centre]);
                }
            }
        }
        capped += 1;
    }
    capped
}

/// The mesh's boundary loops (edges without a twin), each in the boundary's direction.
pub fn boundary_loops(mesh: &TriMesh) -> Vec<Vec<u32>> {
    let mut directed: HashMap<(u32, u32), usize> = HashMap::new();
    for t in &mesh.triangles {
        for k in 0..3 {
            *directed.entry((t[k], t[(k + 1) % 3])).or_insert(0) += 1;
        }
    }
    // Sorted, so that where two boundary edges leave one vertex (a pinch) the same one is
    // followed on every run: the hash map's order differs between processes.
    let mut edges: Vec<(u32, u32)> =
        directed.keys().copied().filter(|&(a, b)| !directed.contains_key(&(b, a))).collect();
    edges.sort_unstable();
    let mut next: HashMap<u32, u32> = edges.into_iter().collect();
    let mut starts: Vec<u32> = next.keys().copied().collect();
    starts.sort_unstable();
    let mut loops = Vec::new();
    for start in starts {
        let mut ring = Vec::new();
        let mut v = start;
        while let Some(w) = next.remove(&v) {
            ring.push(v);
            v = w;
        }
        if v == start && ring.len() >= 3 {
            loops.push(ring);
        }
    }
    loops
}

/// Triangulates a closed polygon of mesh vertices (in order) in its best-fit plane; the
/// triangles follow the polygon's order, so their winding matches it.
fn ear_clip(ring: &[u32], positions: &[[f32; 3]]) -> Vec<[u32; 3]> {
    let p3: Vec<Vec3> = ring.iter().map(|&i| Vec3::from_array(positions[i as usize])).collect();
    let centroid = p3.iter().copied().sum::<Vec3>() / p3.len() as f32;
    // Newell's normal: the polygon's area vector, robust for non-planar loops.
    let normal: Vec3 = (0..p3.len()).map(|i| (p3[i] - centroid).cross(p3[(i + 1) % p3.len()] - centroid)).sum();
    let normal = normal.normalize_or_zero();
    let u = normal.any_orthonormal_vector();
    let w = normal.cross(u);
    let p2: Vec<[f32; 2]> = p3.iter().map(|p| [(*p - centroid).dot(u), (*p - centroid).dot(w)]).collect();
    let cross = |a: [f32; 2], b: [f32; 2], c: [f32; 2]| (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
    // In (u, w) the polygon runs counter-clockwise, as its Newell normal is u × w.
    let mut idx: Vec<usize> = (0..ring.len()).collect();
    let mut out = Vec::with_capacity(ring.len() - 2);
    while idx.len() > 3 {
        let m = idx.len();
        let ear = (0..m).find(|&k| {
            let (a, b, c) = (idx[(k + m - 1) % m], idx[k], idx[(k + 1) % m]);
            if cross(p2[a], p2[b], p2[c]) <= 0.0 {
                return false;
            }
            idx.iter().all(|&o| {
                o == a
                    || o == b
                    || o == c
                    || cross(p2[a], p2[b], p2[o]) < 0.0
                    || cross(p2[b], p2[c], p2[o]) < 0.0
                    || cross(p2[c], p2[a], p2[o]) < 0.0
            })
        });
        // No ear (a self-overlapping projection): fall back to a fan from the current vertex.
        let k = ear.unwrap_or(0);
        let (a, b, c) = (idx[(k + m - 1) % m], idx[k], idx[(k + 1) % m]);
        out.push([ring[a], ring[b], ring[c]]);
        idx.remove(k);
    }
    if let [a, b, c] = idx[..] {
        out.push([ring[a], ring[b], ring[c]]);
    }
    out
}

/// Drops vertices no triangle uses and renumbers the rest.
pub fn remove_unreferenced_vertices(mesh: &mut TriMesh) {
    let mut remap = vec![u32::MAX; mesh.positions.len()];
    let mut positions = Vec::new();
    for t in &mut mesh.triangles {
        for v in t.iter_mut() {
            if remap[*v as usize] == u32::MAX {
                remap[*v as usize] = positions.len() as u32;
                positions.push(mesh.positions[*v as usize]);
            }
            *v = remap[*v as usize];
        }
    }
    mesh.positions = positions;
    mesh.normals.clear();
    mesh.uvs.clear();
    mesh.colors.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marching_cubes::{Lattice, marching_cubes_dense};
    use crate::metrics::enclosed_volume;

    #[test]
    fn empty_and_inverted_meshes_are_clear_errors() {
        let options = CleanupOptions { remove_ground: false, ..CleanupOptions::for_voxel_size(0.01) };
        match cleanup(&TriMesh::default(), &options) {
            Err(MeshError::NoSurface(why)) => assert!(why.contains("region that contains the object"), "{why}"),
            other => panic!("{other:?}"),
        }
        let sphere = TriMesh::uv_sphere(16, 32, |_| 1.0);
        let (clean, _) = cleanup(&sphere, &options).unwrap();
        assert!(enclosed_volume(&clean) > 4.0, "an outward sphere passes");
        let mut inside_out = sphere.clone();
        for t in &mut inside_out.triangles {
            t.swap(1, 2);
        }
        match cleanup(&inside_out, &options) {
            Err(e @ MeshError::Inverted(_)) => assert!(e.to_string().contains("face inwards"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    /// A ball of radius `r` centred at height `c` sunk into a ground half-space (z < 0), plus a
    /// small floating ball, sampled on a grid over [-1, 1]³.
    fn ball_on_ground(n: usize, r: f32, c: f32) -> TriMesh {
        let spacing = 2.0 / (n - 1) as f32;
        let mut values = Vec::with_capacity(n * n * n);
        for z in 0..n {
            for y in 0..n {
                for x in 0..n {
                    let p = [x, y, z].map(|i| -1.0 + spacing * i as f32);
                    let ball = (p[0] * p[0] + p[1] * p[1] + (p[2] - c) * (p[2] - c)).sqrt() - r;
                    let floater = ((p[0] - 0.7).powi(2) + (p[1] + 0.7).powi(2) + (p[2] - 0.7).powi(2)).sqrt() - 0.06;
                    values.push(ball.min(p[2]).min(floater));
                }
            }
        }
        marching_cubes_dense(&values, [n; 3], Lattice { origin: [-1.0; 3], spacing })
    }

    fn bad_edges(mesh: &TriMesh) -> usize {
        let mut directed = HashMap::new();
        for t in &mesh.triangles {
            for k in 0..3 {
                *directed.entry((t[k], t[(k + 1) % 3])).or_insert(0usize) += 1;
            }
        }
        directed.iter().filter(|&(&(a, b), &n)| !(n == 1 && directed.get(&(b, a)) == Some(&1))).count()
    }

    #[test]
    fn ground_is_cut_floaters_dropped_and_the_object_closed() {
        let (r, c) = (0.4f32, 0.2f32);
        let mesh = ball_on_ground(81, r, c);
        let margin = 0.05;
        let options = CleanupOptions {
            up: Some([0.0, 0.0, 1.0]),
            ground_margin: margin,
            ..CleanupOptions::for_voxel_size(0.025)
        };
        let (clean, report) = cleanup(&mesh, &options).unwrap();
        let ground = report.ground.unwrap();
        assert!(ground.normal[2] > 0.999 && ground.offset.abs() < 0.1 * 0.025, "{ground:?}");
        assert!(report.components_dropped >= 1, "the floater goes: {report:?}");
        assert!(
            report.base_area > 0.1 && report.capped_area < 0.01 * report.base_area,
            "the cut base is a base: {report:?}"
        );
        assert_eq!(bad_edges(&clean), 0, "closed and oriented: {report:?}");
        // What is left: the ball above the flat cut z = h, a spherical cap of height r + c − h.
        // The cut is `margin` above the top of the ground layer (one histogram bin thick here).
        let h = clean.positions.iter().map(|p| p[2]).fold(f32::INFINITY, f32::min) as f64;
        assert!(h >= margin as f64 - 1e-3 && h <= 1.5 * margin as f64, "cut at {h}");
        let cap = (r + c) as f64 - h;
        let expected = std::f64::consts::PI * cap * cap * (3.0 * r as f64 - cap) / 3.0;
        let volume = enclosed_volume(&clean);
        assert!((volume / expected - 1.0).abs() < 0.03, "volume {volume} vs {expected}");
        let on_cut = clean.positions.iter().filter(|p| (p[2] as f64 - h).abs() < 1e-5).count();
        assert!(on_cut > 20, "the bottom is a flat cap: {on_cut} vertices on the cut");
        assert_eq!(clean.normals.len(), clean.positions.len());
    }

    #[test]
    fn a_plane_with_the_whole_surface_in_its_cut_band_is_not_cut() {
        // A flat pancake (a sphere squashed to 2 cm) with no ground: RANSAC finds its own face
        // as a plane, and the cut band (10 cm margin) holds every vertex. Cutting would leave
        // nothing; the surface is kept whole instead.
        let mut pancake = TriMesh::uv_sphere(16, 32, |_| 1.0);
        for p in &mut pancake.positions {
            p[2] *= 0.01;
        }
        let options =
            CleanupOptions { up: Some([0.0, 0.0, 1.0]), ground_margin: 0.1, ..CleanupOptions::for_voxel_size(0.05) };
        assert!(
            detect_ground(&pancake, options.up, options.ground_margin).is_some(),
            "the test needs a plane to be found"
        );
        let (clean, report) = cleanup(&pancake, &options).unwrap();
        assert!(report.ground.is_none(), "{report:?}");
        assert_eq!(clean.triangles.len(), pancake.triangles.len());
    }

    #[test]
    fn without_ground_removal_only_floaters_go() {
        let mesh = ball_on_ground(41, 0.4, 0.2);
        let options =
            CleanupOptions { remove_ground: false, watertight: false, ..CleanupOptions::for_voxel_size(0.05) };
        let (clean, report) = cleanup(&mesh, &options).unwrap();
        assert!(report.ground.is_none() && report.holes_capped == 0);
        assert!(clean.positions.iter().any(|p| p[2].abs() < 1e-3 && p[0].abs() > 0.9), "the ground stays");
        assert!(clean.positions.iter().all(|p| (p[0] - 0.7).abs() > 0.1 || (p[2] - 0.7).abs() > 0.1), "no floater");
    }

    /// A unit sphere (voxel-sized facets for `for_voxel_size(0.05)`) without the triangles whose
    /// centroid `drop` selects.
    fn sphere_without(drop: impl Fn(Vec3) -> bool) -> TriMesh {
        let mut sphere = TriMesh::uv_sphere(32, 64, |_| 1.0);
        sphere.triangles.retain(|t| {
            let centroid = t.iter().map(|&i| Vec3::from_array(sphere.positions[i as usize])).sum::<Vec3>() / 3.0;
            !drop(centroid)
        });
        sphere
    }

    #[test]
    fn a_partial_capture_keeps_its_opening_and_small_holes_are_capped() {
        // The back (x < −0.3) never photographed, and a small hole at the north pole.
        let mesh = sphere_without(|c| c.x < -0.3 || c.z > 0.98);
        let options = CleanupOptions { remove_ground: false, ..CleanupOptions::for_voxel_size(0.05) };
        let (clean, report) = cleanup(&mesh, &options).unwrap();
        assert_eq!(report.holes_capped, 1, "{report:?}");
        assert_eq!(report.holes_left_open, 1, "{report:?}");
        // The opening's rim: a circle of radius √(1 − 0.3²) ≈ 0.95, as a staircase of facet edges.
        let rim = std::f64::consts::TAU * (1.0f64 - 0.09).sqrt();
        assert!((0.95..1.6).contains(&(report.open_boundary_length / rim)), "{report:?} vs {rim}");
        // Only the pole's cap, a disc of radius sin(2π/32) ≈ 0.2.
        assert!(report.capped_area > 0.1 && report.capped_area < 0.13, "{report:?}");
        let centroid_x = |t: &[u32; 3]| t.iter().map(|&i| clean.positions[i as usize][0]).sum::<f32>() / 3.0;
        assert!(clean.triangles.iter().all(|t| centroid_x(t) > -0.3), "no surface spans the opening");
    }

    #[test]
    fn an_open_surface_seen_from_its_concave_side_is_not_an_error() {
        // A bowl seen from inside (a façade's recess, a fox's hollow flank): capping its rim
        // would enclose negative volume; it stays open instead of failing as inverted.
        let mut bowl = sphere_without(|c| c.z > 0.0);
        for t in &mut bowl.triangles {
            t.swap(1, 2);
        }
        let options = CleanupOptions { remove_ground: false, ..CleanupOptions::for_voxel_size(0.05) };
        let (_, report) = cleanup(&bowl, &options).unwrap();
        assert_eq!((report.holes_capped, report.holes_left_open), (0, 1), "{report:?}");
    }

    #[test]
    fn a_flat_opening_at_the_bottom_is_a_base_and_capped() {
        // Masks carve the support away: the object ends in a flat, level opening underneath.
        let mesh = sphere_without(|c| c.z < -0.6);
        let options =
            CleanupOptions { remove_ground: false, up: Some([0.0, 0.0, 1.0]), ..CleanupOptions::for_voxel_size(0.05) };
        let (clean, report) = cleanup(&mesh, &options).unwrap();
        assert_eq!((report.holes_capped, report.holes_left_open), (1, 0), "{report:?}");
        assert_eq!(bad_edges(&clean), 0);
        assert!(enclosed_volume(&clean) > 3.0);
        // The same opening on the side (up along +x) is a partial capture's, and stays open.
        let sideways = CleanupOptions { up: Some([1.0, 0.0, 0.0]), ..options };
        let (_, report) = cleanup(&mesh, &sideways).unwrap();
        assert_eq!((report.holes_capped, report.holes_left_open), (0, 1), "{report:?}");
    }

    #[test]
    fn an_object_cut_above_its_support_rests_on_it_again() {
        // A ball cut 0.2 above the table it stands on (z = −0.8), with a notch where the surface
        // ends above the cut (an overhang's unseen underside); fine facets, so the cut is smooth.
        let cut = Plane { normal: [0.0, 0.0, 1.0], offset: 0.6 };
        let table = Plane { offset: 0.8, ..cut };
        let mut ball = clip_above(&TriMesh::uv_sphere(64, 128, |_| 1.0), &cut, 0.0);
        ball.triangles.retain(|t| {
            let c = t.iter().map(|&i| Vec3::from_array(ball.positions[i as usize])).sum::<Vec3>() / 3.0;
            !(c.x > 0.0 && c.y.abs() < 0.15 && c.z < -0.5)
        });
        let options = CleanupOptions {
            remove_ground: false,
            up: Some([0.0, 0.0, 1.0]),
            cuts: vec![cut],
            rests_on: Some(table),
            ..CleanupOptions::for_voxel_size(0.05)
        };
        let (clean, report) = cleanup(&ball, &options).unwrap();
        assert_eq!(report.bases_rested, 1, "{report:?}");
        let lowest = clean.positions.iter().map(|p| p[2]).fold(f32::INFINITY, f32::min);
        assert!((lowest + 0.8).abs() < 1e-4, "rests on the table: {lowest}");
        // The base is the cut's outline (radius 0.8) on the table, with the notch's outline (out
        // to radius 0.87 over 0.3 of it): about 1 % more than the disc.
        let on_table = TriMesh {
            positions: clean.positions.clone(),
            triangles: clean
                .triangles
                .iter()
                .copied()
                .filter(|t| t.iter().all(|&i| clean.positions[i as usize][2] < -0.8 + 1e-4))
                .collect(),
            ..Default::default()
        };
        let (base, disc) = (crate::metrics::surface_area(&on_table), std::f64::consts::PI * 0.64);
        assert!((1.0..1.03).contains(&(base / disc)), "{base} vs {disc}");
        assert!(report.base_area >= base, "{report:?}");
        // The gap under the notch is closed like the base: the ball is closed and outward.
        assert_eq!((report.holes_left_open, bad_edges(&clean)), (0, 0), "{report:?}");
        assert!(enclosed_volume(&clean) > 3.0);
        // Without the support, the opening is closed where the cut left it.
        let (clean, report) = cleanup(&ball, &CleanupOptions { rests_on: None, ..options.clone() }).unwrap();
        let lowest = clean.positions.iter().map(|p| p[2]).fold(f32::INFINITY, f32::min);
        assert_eq!((report.bases_rested, report.holes_left_open), (0, 0), "{report:?}");
        assert!((lowest + 0.6).abs() < 1e-4, "{lowest}");
        // A partial capture whose unseen back joins the cut is no base: it stays open.
        let mut partial = ball.clone();
        partial.triangles.retain(|t| t.iter().all(|&i| ball.positions[i as usize][0] > -0.3));
        let (_, report) = cleanup(&partial, &options).unwrap();
        assert_eq!((report.bases_rested, report.holes_left_open), (0, 1), "{report:?}");
    }

    #[test]
    fn centre_fan_closes_a_square_hole() {
        // An open box (no top), CCW from outside.
        let positions = vec![
            [0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [1.0, 1.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [1.0, 0.0, 1.0],
            [1.0, 1.0, 1.0],
            [0.0, 1.0, 1.0],
        ];
        let triangles = vec![
            [0, 2, 1],
            [0, 3, 2],
            [0, 1, 5],
            [0, 5, 4],
            [1, 2, 6],
            [1, 6, 5],
            [2, 3, 7],
            [2, 7, 6],
            [3, 0, 4],
            [3, 4, 7],
        ];
        for style in [CapStyle::EarClip, CapStyle::CentreFan] {
            let mut mesh = TriMesh { positions: positions.clone(), triangles: triangles.clone(), ..Default::default() };
            assert_eq!(cap_holes(&mut mesh, style), 1);
            assert_eq!(bad_edges(&mesh), 0, "{style:?}");
            assert!((enclosed_volume(&mesh) - 1.0).abs() < 1e-6, "{style:?}");
        }
    }
}
