//! The captured object, found without masks. Kiln's users photograph an object: the cameras
//! converge on it and it stands on something (a table) or hangs on something (a wall). On a
//! first, coarse surface of the whole region, the supports are found: the largest planes in the
//! region a framed object can occupy (`surface::object_region`) that span most of it; they are
//! cut away, and the connected component nearest to the point the cameras' axes
//! converge on is the object ([`find_object`]). Its silhouette in each view,
//! inflated by a margin for the coarse surface's error ([`silhouettes`]), is the view's object
//! mask: depth pixels outside it are fused as seen-empty space ([`carve`]), which removes the
//! table and the room, and the bake keeps their colours off the texture. The object's own
//! surface is then extracted in its box at the preset's full voxel count.
//!
//! An object that fills the photos (a mounted head on a wall, photographed close) leaves little
//! of its support inside the framed region, so no plane there holds a support's share. The
//! structure-from-motion points cover the whole of every photo, and in them the wall behind is
//! the plane that most points lie on with every camera and the focus in front of it
//! ([`find_backdrop`]); it is then cut away like a support found in the surface.

use glam::Vec3;

use crate::cleanup::{
    CleanupOptions, Focus, MAX_GROUND_TILT_DEG, Plane, cleanup, clip_above, detect_ground, fit_plane, ground_cut_height,
};
use crate::tsdf::{DepthFrame, SEEN_EMPTY};
use kiln_core::camera::Camera;
use kiln_core::image_buf::ImageGray;
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::raster::depth_buffer;

/// The object's box grows by this share of its longest side on each side: room for what the
/// coarse surface missed (thin parts, a voxel of erosion).
pub const OBJECT_BOX_MARGIN: f32 = 0.1;
/// The coarse surface is inflated by this many of its voxels before its silhouettes are drawn:
/// the coarse surface lies within a voxel or so of the true one, and a silhouette too tight
/// would carve the object itself.
pub const SILHOUETTE_INFLATE_VOXELS: f32 = 1.5;

/// Planes cut away at most: a table and a wall behind it.
const MAX_SUPPORTS: usize = 2;
/// Planes examined at most, supports or not (a large flat part of the scene that cameras stand
/// on both sides of is set aside and the next plane tried).
const MAX_PLANES_TRIED: usize = 5;
/// A support holds at least this share of the surface near the focus: a table or a wall fills
/// much of what the photos show around an object, whose own flat facets hold less.
const MIN_SUPPORT_SHARE: f32 = 0.15;
/// A support's inliers span at least this many region radii (a plane filling the region spans
/// up to 2.8; an object framed by the photos spans less than the region's diameter).
const MIN_SUPPORT_SPAN: f32 = 1.5;

/// A second support stands at least this angle from the first (a wall behind a table); a
/// plane closer in angle is the first one's layer found again.
const MIN_SUPPORT_ANGLE_DEG: f32 = 30.0;
/// The sparse points a backdrop is looked for in lie within this many region radii of the focus:
/// the wall or table behind an object reaches past the region an object can occupy, but the far
/// walls of the room do not count.
const BACKDROP_REACH: f32 = 3.0;
/// A backdrop holds at least this share of those points: on the fox (a head mounted on a wall,
/// 50 photos) the wall holds 49 % of the 19 k points within reach, the best plane through the
/// head itself under 10 %.
const MIN_BACKDROP_SHARE: f32 = 0.3;
/// Plane hypotheses drawn for a backdrop: at a share of 30 % a few hundred draws find it with
/// overwhelming probability; most draws fail the cameras-in-front test and cost little.
const BACKDROP_ITERATIONS: usize = 2000;
/// The focus lies at least this many inlier margins in front of a backdrop: an object stands
/// out from what it hangs on, a façade's relief does not.
const BACKDROP_MIN_DEPTH_MARGINS: f32 = 4.0;

/// A backdrop is cut this share of the way from its layer's top out to the focus. Between a
/// mounted object and its wall lie its mount and what no photo taken from the front sees
/// clearly, which the fused surface fills with sheets joined to the object. Measured on the fox
/// (a head mounted on a wall, photographed over 90° in front of it): cut just above the wall's
/// layer or a quarter of the way, the head keeps its mount and sheets behind its ears (held-out
/// silhouette IoU 0.88 and 0.92); cut halfway, the head alone (0.93).
const BACKDROP_CUT_SHARE: f32 = 0.5;
/// The object is the component with the most surface within this share of the framed region's
/// radius around the focus (the object fills the middle of the photos).
pub const FOCUS_RADIUS: f32 = 0.5;

/// What [`find_object`] found.
#[derive(Clone, Debug)]
pub struct FoundObject {
    /// The object's coarse surface, world frame.
    pub mesh: TriMesh,
    /// The planes it stands or hangs on, each moved up to the top of its layer (a finer surface
    /// is cut a margin above), normals towards the cameras.
    pub supports: Vec<Plane>,
    /// Where the cameras' axes converge (brought in front of the supports), and how far around
    /// it the object is looked for.
    pub focus: Focus,
    /// The box to extract the object's surface in.
    pub min: [f32; 3],
    pub max: [f32; 3],
}

impl FoundObject {
    /// The support that is level with `up` (a table, the floor), if any.
    pub fn ground(&self, up: Option<[f32; 3]>) -> Option<Plane> {
        let up = Vec3::from_array(up?);
        let min_cos = MAX_GROUND_TILT_DEG.to_radians().cos();
        self.supports.iter().copied().find(|p| Vec3::from_array(p.normal).dot(up) >= min_cos)
    }
}

/// Finds the object in a coarse surface of the capture around `focus`, the point the photos
/// look at, within `radius` (the region a framed object can occupy; see the module docs), with
/// the capture's sparse `points` (world frame; empty when there are none) to find a backdrop in;
/// `None` when nothing is left there.
pub fn find_object(
    coarse: &TriMesh,
    cameras: &[Camera],
    (focus, radius): (Vec3, f32),
    voxel_size: f32,
    up: Option<[f32; 3]>,
    points: &[[f32; 3]],
) -> Option<FoundObject> {
    let margin = 2.0 * voxel_size;
    let supports = find_supports(coarse, cameras, focus, radius, margin);
    let backdrop = if supports.is_empty() { find_backdrop(points, cameras, focus, radius, margin) } else { None };
    let focus = in_front_of(focus, supports.iter().chain(&backdrop), margin);
    // A backdrop's layer is measured in the points it was found in (in the coarse surface the
    // object outweighs it), and the cut stands a share of the way out to the focus.
    let (cut, supports) = match backdrop {
        Some(wall) => {
            let out = (BACKDROP_CUT_SHARE * wall.signed_distance(focus.to_array())).max(margin);
            (cut_at(coarse, &raised(&[wall], out)), vec![wall])
        }
        None => cut_supports(coarse, &supports, margin),
    };
    object_left(&cut, supports, (focus, radius), voxel_size, up)
}

/// [`find_object`] on a support known beforehand (the calibration mat's plane, its normal
/// towards the cameras) rather than searched for in the surface. The support's layer (the
/// reconstructed table is some noise thick) is measured on the surface's level faces alone: an
/// object with tall flat sides (a box) fills every height of the histogram that measures it,
/// and the cut would climb its walls.
pub fn find_object_on(
    coarse: &TriMesh,
    (focus, radius): (Vec3, f32),
    voxel_size: f32,
    up: Option<[f32; 3]>,
    support: Plane,
) -> Option<FoundObject> {
    let margin = 2.0 * voxel_size;
    let focus = in_front_of(focus, [&support], margin);
    let layer = ground_cut_height(&level_faces(coarse, Vec3::from_array(support.normal)), &support, margin);
    let (cut, tops) = cut_supports_at(coarse, &[(support, layer)], margin);
    object_left(&cut, tops, (focus, radius), voxel_size, up)
}

/// The corners of `mesh`'s faces within [`MAX_GROUND_TILT_DEG`] of level with `normal` (as
/// points only: what a height histogram needs).
fn level_faces(mesh: &TriMesh, normal: Vec3) -> TriMesh {
    let min_cos = MAX_GROUND_TILT_DEG.to_radians().cos();
    let corner = |i: u32| Vec3::from_array(mesh.positions[i as usize]);
    let positions = mesh
        .triangles
        .iter()
        .filter(|t| {
            let [a, b, c] = t.map(corner);
            (b - a).cross(c - a).normalize_or_zero().dot(normal).abs() >= min_cos
        })
        .flat_map(|t| t.map(|i| mesh.positions[i as usize]))
        .collect();
    TriMesh { positions, ..Default::default() }
}

/// Axes that converge poorly (a capture over a narrow arc) can meet behind the wall the object
/// hangs on: the object is then where that point, brought in front of it, is.
fn in_front_of<'a>(focus: Vec3, planes: impl IntoIterator<Item = &'a Plane>, margin: f32) -> Vec3 {
    planes.into_iter().fold(focus, |focus, plane| {
        let behind = 2.0 * margin - plane.signed_distance(focus.to_array());
        if behind > 0.0 { focus + behind * Vec3::from_array(plane.normal) } else { focus }
    })
}

/// The object: what is left of the `cut` surface around `focus`, with the box to extract it in.
fn object_left(
    cut: &TriMesh,
    supports: Vec<Plane>,
    (focus, radius): (Vec3, f32),
    voxel_size: f32,
    up: Option<[f32; 3]>,
) -> Option<FoundObject> {
    let options = CleanupOptions {
        remove_ground: false,
        watertight: false,
        up,
        focus: Some(Focus { centre: focus.to_array(), radius: FOCUS_RADIUS * radius }),
        ..CleanupOptions::for_voxel_size(voxel_size)
    };
    let mesh = match cleanup(cut, &options) {
        Ok((mesh, _)) => mesh,
        Err(error) => {
            tracing::warn!("no object found near the cameras' focus: {error}");
            return None;
        }
    };
    let (lo, hi) = mesh.bounds()?;
    let (lo, hi) = (Vec3::from_array(lo), Vec3::from_array(hi));
    let grow = OBJECT_BOX_MARGIN * (hi - lo).max_element() + voxel_size;
    tracing::info!(
        "object: {} triangles in {lo}..{hi} near focus {focus}, supports {supports:?}",
        mesh.num_triangles()
    );
    let focus = Focus { centre: focus.to_array(), radius: FOCUS_RADIUS * radius };
    Some(FoundObject { mesh, supports, focus, min: (lo - grow).to_array(), max: (hi + grow).to_array() })
}

/// The supports around `focus` (see the module docs), each oriented towards the cameras.
fn find_supports(mesh: &TriMesh, cameras: &[Camera], focus: Vec3, radius: f32, margin: f32) -> Vec<Plane> {
    let eye = cameras.iter().map(Camera::center).sum::<Vec3>() / cameras.len().max(1) as f32;
    let mut near: Vec<[f32; 3]> =
        mesh.positions.iter().copied().filter(|p| Vec3::from_array(*p).distance(focus) <= radius).collect();
    tracing::debug!("{} of {} vertices within {radius} of the focus {focus}", near.len(), mesh.positions.len());
    let mut supports: Vec<Plane> = Vec::new();
    for _ in 0..MAX_PLANES_TRIED {
        // The plane with the most points, of any orientation: a table under the object or a
        // wall behind it (an up hint from the cameras is not trusted to tell them apart).
        let points = TriMesh { positions: near.clone(), ..Default::default() };
        let Some(plane) = detect_ground(&points, None, margin) else { break };
        let plane = facing(plane, eye);
        let is_support = spans_region(&near, &plane, margin, radius) && cameras_in_front(cameras, &plane);
        near.retain(|p| plane.signed_distance(*p) > margin || (!is_support && plane.signed_distance(*p) < -margin));
        if !is_support {
            continue;
        }
        let normal = Vec3::from_array(plane.normal);
        let same = supports
            .iter()
            .position(|s| Vec3::from_array(s.normal).dot(normal) > MIN_SUPPORT_ANGLE_DEG.to_radians().cos());
        match same {
            // The same support again, in front of the first fit (its layer is thicker than the
            // inlier band, or the first fit was tilted): the front one is where to cut.
            Some(k) => supports[k] = plane,
            None if supports.len() < MAX_SUPPORTS => supports.push(plane),
            None => break,
        }
    }
    supports
}

/// The plane behind the object in the sparse `points` (see the module docs), facing the cameras
/// and moved up to the top of its layer of points: the one with the most points within `margin`
/// among those with every camera and the focus in front, holding at least [`MIN_BACKDROP_SHARE`]
/// of the points within [`BACKDROP_REACH`] region radii of the focus.
fn find_backdrop(points: &[[f32; 3]], cameras: &[Camera], focus: Vec3, radius: f32, margin: f32) -> Option<Plane> {
    let near: Vec<Vec3> =
        points.iter().map(|p| Vec3::from_array(*p)).filter(|p| p.distance(focus) <= BACKDROP_REACH * radius).collect();
    if near.len() < 3 {
        return None;
    }
    let centres: Vec<Vec3> = cameras.iter().map(Camera::center).collect();
    let (first, _) = centres.split_first()?;
    // A plane, turned so the cameras are in front, that has all of them and the focus there.
    let backdrop = |normal: Vec3, offset: f32| {
        let (normal, offset) = if normal.dot(*first) + offset < 0.0 { (-normal, -offset) } else { (normal, offset) };
        let in_front = centres.iter().all(|c| normal.dot(*c) + offset > 0.0)
            && normal.dot(focus) + offset > BACKDROP_MIN_DEPTH_MARGINS * margin;
        in_front.then_some((normal, offset))
    };
    let inliers = |normal: Vec3, offset: f32| near.iter().filter(move |p| (normal.dot(**p) + offset).abs() <= margin);
    let mut draw = xorshift(near.len());
    let mut best: Option<(usize, Vec3, f32)> = None;
    for _ in 0..BACKDROP_ITERATIONS {
        let [a, b, c] = [draw(), draw(), draw()].map(|i| near[i]);
        let normal = (b - a).cross(c - a).normalize_or_zero();
        let Some((normal, offset)) = (normal != Vec3::ZERO).then(|| backdrop(normal, -normal.dot(a))).flatten() else {
            continue;
        };
        let count = inliers(normal, offset).count();
        if best.is_none_or(|(most, ..)| count > most) {
            best = Some((count, normal, offset));
        }
    }
    let (count, normal, offset) = best?;
    let share = count as f32 / near.len() as f32;
    tracing::debug!("backdrop candidate {normal} {offset}: {:.0} % of {} sparse points", 100.0 * share, near.len());
    if share < MIN_BACKDROP_SHARE {
        return None;
    }
    let on_it: Vec<Vec3> = inliers(normal, offset).copied().collect();
    let (normal, offset) = fit_plane(&on_it).and_then(|(n, o)| backdrop(n, o)).unwrap_or((normal, offset));
    let wall = Plane { normal: normal.to_array(), offset };
    let cloud = TriMesh { positions: near.iter().map(|p| p.to_array()).collect(), ..Default::default() };
    Some(Plane { offset: offset - (ground_cut_height(&cloud, &wall, margin) - margin), ..wall })
}

/// A deterministic draw of indices below `n` (xorshift64, fixed seed): the same capture gives the
/// same planes on every run.
fn xorshift(n: usize) -> impl FnMut() -> usize {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    }
}

/// Whether every camera is on `plane`'s front side: nothing is photographed from inside a wall or
/// under a table, so a plane with cameras behind it is not a support.
fn cameras_in_front(cameras: &[Camera], plane: &Plane) -> bool {
    let in_front = cameras.iter().filter(|c| plane.signed_distance(c.center().to_array()) > 0.0).count();
    tracing::debug!("{in_front} of {} cameras in front of {plane:?}", cameras.len());
    in_front == cameras.len()
}

/// Whether `plane` holds at least [`MIN_SUPPORT_SHARE`] of `points` and its inliers reach across
/// most of the region (an object's own flat face does not: the object fits in the frame).
fn spans_region(points: &[[f32; 3]], plane: &Plane, margin: f32, radius: f32) -> bool {
    let inliers: Vec<Vec3> =
        points.iter().filter(|p| plane.signed_distance(**p).abs() <= margin).map(|p| Vec3::from_array(*p)).collect();
    let (lo, hi) = inliers.iter().fold((Vec3::INFINITY, Vec3::NEG_INFINITY), |(lo, hi), p| (lo.min(*p), hi.max(*p)));
    let (share, span) = (inliers.len() as f32 / points.len().max(1) as f32, (hi - lo).length() / radius);
    tracing::debug!(
        "support candidate {plane:?}: {:.0} % of the surface near the focus, spans {span:.2} radii",
        100.0 * share
    );
    share >= MIN_SUPPORT_SHARE && span >= MIN_SUPPORT_SPAN
}

/// `plane` with its normal turned towards `eye`.
fn facing(plane: Plane, eye: Vec3) -> Plane {
    if plane.signed_distance(eye.to_array()) >= 0.0 {
        plane
    } else {
        Plane { normal: plane.normal.map(|v| -v), offset: -plane.offset }
    }
}

/// `mesh` with each support and what lies behind it cut away, `margin` above the top of the
/// support's layer (as the ground cut does), and the supports moved up to their layers' tops
/// (a cut that would leave nothing is not made).
fn cut_supports(mesh: &TriMesh, supports: &[Plane], margin: f32) -> (TriMesh, Vec<Plane>) {
    let cuts: Vec<(Plane, f32)> =
        supports.iter().map(|plane| (*plane, ground_cut_height(mesh, plane, margin))).collect();
    cut_supports_at(mesh, &cuts, margin)
}

/// `mesh` cut at each support's height (a [`ground_cut_height`]), and the supports moved up to
/// the top of their layers.
fn cut_supports_at(mesh: &TriMesh, cuts: &[(Plane, f32)], margin: f32) -> (TriMesh, Vec<Plane>) {
    let tops: Vec<Plane> =
        cuts.iter().map(|(plane, height)| Plane { offset: plane.offset - (height - margin), ..*plane }).collect();
    (cut_at(mesh, &raised(&tops, margin)), tops)
}

/// `planes` moved `by` along their normals.
pub fn raised(planes: &[Plane], by: f32) -> Vec<Plane> {
    planes.iter().map(|p| Plane { offset: p.offset - by, ..*p }).collect()
}

/// `mesh` with what lies behind each of `cuts` cut away (a cut that would leave nothing is not
/// made). A finer surface of the same capture is cut where the coarse one was: its support layer
/// is mostly carved away by then, so it no longer shows where the support's top is.
pub fn cut_at(mesh: &TriMesh, cuts: &[Plane]) -> TriMesh {
    let mut mesh = mesh.clone();
    for plane in cuts {
        let cut = clip_above(&mesh, plane, 0.0);
        if cut.triangles.is_empty() {
            tracing::warn!("cut {plane:?} would remove the whole surface: not made");
        } else {
            mesh = cut;
        }
    }
    mesh
}

/// The object's mask in each camera's image: 1 where `object`, inflated by `inflate` (world
/// units) along its normals, covers the pixel.
pub fn silhouettes(object: &TriMesh, cameras: &[Camera], inflate: f32) -> Vec<ImageGray> {
    let normals = object.vertex_normals();
    let mut inflated = object.clone();
    for (p, n) in inflated.positions.iter_mut().zip(&normals) {
        *p = (Vec3::from_array(*p) + inflate * Vec3::from_array(*n)).to_array();
    }
    cameras
        .iter()
        .map(|camera| {
            let depth = depth_buffer(&inflated, camera);
            let pixels = depth.iter().map(|d| if d.is_finite() { 1.0 } else { 0.0 }).collect();
            ImageGray { width: camera.width(), height: camera.height(), pixels }
        })
        .collect()
}

/// `frames` with every pixel outside its mask (same resolution) marked seen-empty.
pub fn carve(frames: &[DepthFrame], masks: &[ImageGray]) -> Vec<DepthFrame> {
    frames
        .iter()
        .zip(masks)
        .map(|(frame, mask)| {
            let mut frame = frame.clone();
            for (d, &m) in frame.depth.pixels.iter_mut().zip(&mask.pixels) {
                if m < 0.5 {
                    *d = SEEN_EMPTY;
                }
            }
            frame
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::camera::{Intrinsics, WorldFromCameraCv};

    /// A camera at `eye` looking at the origin, OpenCV axes, +Z world up.
    fn looking_at_origin(eye: Vec3) -> Camera {
        let intrinsics = Intrinsics { fx: 80.0, fy: 80.0, cx: 40.0, cy: 40.0, width: 80, height: 80 };
        Camera { intrinsics, world_from_camera: WorldFromCameraCv::look_at(eye, Vec3::ZERO, Vec3::Z) }
    }

    #[test]
    fn the_object_is_the_component_at_the_focus_not_the_largest_or_the_ground() {
        // A small ball at the origin on a large floor, and a big wall far behind it.
        let ball = TriMesh::uv_sphere(12, 24, |_| 0.2);
        let mut scene = ball.clone();
        let mut add = |mesh: TriMesh, offset: Vec3| {
            let base = scene.positions.len() as u32;
            scene.positions.extend(mesh.positions.iter().map(|p| (Vec3::from_array(*p) + offset).to_array()));
            scene.triangles.extend(mesh.triangles.iter().map(|t| t.map(|i| i + base)));
        };
        let grid = |nx: usize, ny: usize, at: &dyn Fn(f32, f32) -> Vec3| {
            let mut mesh = TriMesh::default();
            for j in 0..=ny {
                for i in 0..=nx {
                    mesh.positions.push(at(i as f32 / nx as f32, j as f32 / ny as f32).to_array());
                }
            }
            let index = |i: usize, j: usize| (j * (nx + 1) + i) as u32;
            for j in 0..ny {
                for i in 0..nx {
                    mesh.triangles.push([index(i, j), index(i + 1, j), index(i + 1, j + 1)]);
                    mesh.triangles.push([index(i, j), index(i + 1, j + 1), index(i, j + 1)]);
                }
            }
            mesh
        };
        add(grid(40, 40, &|u, v| Vec3::new(4.0 * u - 2.0, 4.0 * v - 2.0, -0.2)), Vec3::ZERO);
        add(grid(40, 20, &|u, v| Vec3::new(6.0 * u - 3.0, 3.0, 3.0 * v - 0.2)), Vec3::ZERO);
        let cameras: Vec<Camera> =
            (0..8).map(|k| looking_at_origin(Vec3::new((k as f32).cos() * 2.0, (k as f32).sin() * 2.0, 1.0))).collect();
        let found = find_object(&scene, &cameras, (Vec3::ZERO, 1.0), 0.05, Some([0.0, 0.0, 1.0]), &[]).unwrap();
        assert!(Vec3::from_array(found.focus.centre).length() < 0.05, "{:?}", found.focus);
        let ground = found.ground(Some([0.0, 0.0, 1.0])).unwrap();
        assert!(ground.normal[2] > 0.99, "{ground:?}");
        let (lo, hi) = found.mesh.bounds().unwrap();
        assert!(lo.iter().chain(&hi).all(|v| v.abs() < 0.25), "only the ball: {lo:?}..{hi:?}");
        assert!(found.max[2] > 0.2 && found.min[0] < -0.2 && found.max[0] < 0.35, "{found:?}");
        // Its silhouettes cover the ball's pixels, not the corners of the image.
        let masks = silhouettes(&found.mesh, &cameras, 0.02);
        for mask in &masks {
            assert!(mask.pixels[(40 * 80 + 40) as usize] > 0.5);
            assert!(mask.pixels[0] < 0.5);
        }
    }

    #[test]
    fn a_wall_the_surface_barely_shows_is_found_in_the_sparse_points() {
        // A head filling the region (a ball), hanging on a wall at y = 0.8 that the coarse surface
        // does not reach; the sparse points lie on the wall (most of them) and on the ball.
        let ball = TriMesh::uv_sphere(12, 24, |_| 0.45);
        let cameras: Vec<Camera> = (0..8)
            .map(|k| {
                let azimuth = (k as f32 / 7.0 - 0.5) * std::f32::consts::FRAC_PI_2;
                looking_at_origin(Vec3::new(3.0 * azimuth.sin(), -3.0 * azimuth.cos(), 0.5))
            })
            .collect();
        let mut points: Vec<[f32; 3]> = ball.positions.clone();
        points.extend((0..60).flat_map(|i| (0..60).map(move |j| [i as f32 * 0.1 - 3.0, 0.8, j as f32 * 0.1 - 3.0])));
        assert!(find_object(&ball, &cameras, (Vec3::ZERO, 1.0), 0.05, None, &[]).unwrap().supports.is_empty());
        let found = find_object(&ball, &cameras, (Vec3::ZERO, 1.0), 0.05, None, &points).unwrap();
        let [wall] = found.supports.as_slice() else { panic!("one support: {:?}", found.supports) };
        assert!(wall.normal[1] < -0.99, "facing the cameras: {wall:?}");
        assert!((wall.signed_distance([0.0, 0.8, 0.0])).abs() < 0.2, "at the wall: {wall:?}");
        // A plane through the middle of the ball with cameras on both sides is never a backdrop.
        let through: Vec<[f32; 3]> =
            (0..60).flat_map(|i| (0..60).map(move |j| [i as f32 * 0.1 - 3.0, j as f32 * 0.1 - 3.0, 0.0])).collect();
        assert!(find_object(&ball, &cameras, (Vec3::ZERO, 1.0), 0.05, None, &through).unwrap().supports.is_empty());
    }
}
