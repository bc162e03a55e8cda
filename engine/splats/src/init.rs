//! Initial splats: from a sparse point cloud when one exists, else random inside the region the
//! cameras look at. Also the camera-rig measures the trainer scales with ([`scene_extent`]) and
//! the seeded generator every random choice in training draws from ([`Pcg32`]).
//!
//! As in 3DGS, every initial splat is isotropic with a standard deviation equal to the RMS
//! distance to its three nearest neighbours (found with a uniform grid, not O(n²)), identity
//! rotation and opacity 0.1.

use std::collections::HashMap;

use glam::{Mat3, Vec3};

use kiln_core::camera::NEAR_PLANE;
use kiln_core::camera::{Camera, CameraFromWorldCv, Intrinsics};
use kiln_core::image_buf::ImageRgb;
use kiln_core::point_cloud::PointCloud;

use kiln_core::rng::Pcg32;
use kiln_core::splats::{SH_C0, ShCoeffs, Splats, logit};

/// Opacity of a new splat (3DGS): transparent enough that wrong initial splats do little harm
/// and are pruned quickly, opaque enough to receive gradients.
const INIT_OPACITY: f32 = 0.1;
/// Neighbours whose distances set a splat's initial size (3DGS's `distCUDA2`).
const NEIGHBOURS: usize = 3;
/// Smallest initial standard deviation, relative to the cloud's extent: duplicate points would
/// otherwise get a zero (log −∞) scale.
const MIN_SCALE_FRACTION: f32 = 1e-4;
/// 3DGS's scene radius is the farthest camera centre from the rig's mean, enlarged by 10 %.
const EXTENT_MARGIN: f32 = 1.1;
/// Photo-consistency candidates drawn per requested splat: enough that the kept tenth lies close to
/// the surfaces, few enough that initialisation stays a fraction of a second per 10 000 splats.
const CANDIDATES_PER_SPLAT: usize = 10;
/// A candidate must be seen by at least this fraction of the views (and by at least
/// [`MIN_CONSISTENCY_VIEWS`]) for its colour agreement to mean anything: a few views agree by
/// chance far more often than many.
const MIN_CONSISTENCY_FRACTION: f32 = 0.25;
/// See [`MIN_CONSISTENCY_FRACTION`].
const MIN_CONSISTENCY_VIEWS: usize = 3;
/// Largest per-channel difference from the background colour at which a candidate counts as
/// seeing only the backdrop: a few 8-bit steps, above JPEG noise on a flat region.
const BACKGROUND_TOLERANCE: f32 = 0.03;
/// Random initialisation gives up after this many draws per requested splat (a degenerate rig
/// whose cameras see almost nothing of the sampling box).
const MAX_DRAWS_PER_SPLAT: usize = 50;

/// With a single camera nothing fixes the scene's scale: look this many world units ahead.
const SINGLE_CAMERA_DEPTH: f32 = 1.0;

/// 3DGS's scene extent: 1.1 × the largest distance of a camera centre from the centres' mean.
pub fn scene_extent(cameras: &[Camera]) -> f32 {
    let n = cameras.len().max(1) as f32;
    let mean = cameras.iter().map(Camera::center).sum::<Vec3>() / n;
    let radius = cameras.iter().map(|c| (c.center() - mean).length()).fold(0.0, f32::max);
    EXTENT_MARGIN * radius
}

/// The point closest (least squares) to every camera's optical axis: where the rig looks.
/// Falls back to the centres' mean pushed forward along the mean viewing direction when the axes
/// are (nearly) parallel.
pub fn look_at_point(cameras: &[Camera]) -> Vec3 {
    let mut a = Mat3::ZERO;
    let mut b = Vec3::ZERO;
    for camera in cameras {
        let d = camera.world_from_camera.forward().normalize_or_zero();
        let projector = Mat3::IDENTITY - Mat3::from_cols(d * d.x, d * d.y, d * d.z);
        a += projector;
        b += projector * camera.center();
    }
    let n = cameras.len().max(1) as f32;
    if a.determinant().abs() > 1e-6 * n * n * n {
        return a.inverse() * b;
    }
    let mean = cameras.iter().map(Camera::center).sum::<Vec3>() / n;
    let forward = cameras.iter().map(|c| c.world_from_camera.forward()).sum::<Vec3>().normalize_or_zero();
    let extent = scene_extent(cameras);
    mean + forward * if extent > 0.0 { extent } else { SINGLE_CAMERA_DEPTH }
}

/// Splats at the points of a sparse cloud, coloured by it.
pub fn from_point_cloud(cloud: &PointCloud) -> Splats {
    let colors: Vec<[f32; 3]> =
        (0..cloud.positions.len()).map(|i| cloud.colors.get(i).copied().unwrap_or([0.5; 3])).collect();
    splats_at(&cloud.positions, &colors)
}

/// `count` splats chosen among uniformly random points of a cube around [`look_at_point`] (half
/// side: the median camera distance to it) by photo-consistency, a cheap form of space carving:
/// [`CANDIDATES_PER_SPLAT`] candidates are drawn per splat, each is projected into every view that
/// sees it, and the candidates whose colours agree best across views (smallest median absolute
/// deviation from the median) are kept, coloured by that median. Points on surfaces (and on the
/// distant backdrop) agree; points in empty space see unrelated pixels and are dropped, so the
/// model starts near the scene's surfaces with roughly the right colours instead of as a grey
/// cloud. Occlusion is ignored, which the median tolerates for up to half of the views.
/// Candidates whose median colour is the training `background` (within
/// [`BACKGROUND_TOLERANCE`]) are dropped: a uniform backdrop agrees perfectly across views but
/// is already drawn by the background. Deterministic in `seed`.
pub fn random_in_view(
    cameras: &[Camera],
    images: &[ImageRgb],
    background: [f32; 3],
    count: usize,
    seed: u64,
) -> Splats {
    let mut rng = Pcg32::new(seed);
    let views: Vec<_> =
        cameras.iter().zip(images).map(|(c, image)| (c.camera_from_world(), c.intrinsics, image)).collect();
    let min_views =
        ((views.len() as f32 * MIN_CONSISTENCY_FRACTION).ceil() as usize).max(MIN_CONSISTENCY_VIEWS).min(views.len());
    let mut scored: Vec<(f32, Vec3, [f32; 3])> = sample_in_view(cameras, count * CANDIDATES_PER_SPLAT, &mut rng)
        .into_iter()
        .filter_map(|point| {
            let samples = view_samples(&views, point);
            if samples[0].len() < min_views {
                return None;
            }
            let (colour, spread) = median_and_spread(samples);
            let is_background = colour.iter().zip(background).all(|(c, b)| (c - b).abs() <= BACKGROUND_TOLERANCE);
            (!is_background).then_some((spread, point, colour))
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.truncate(count);
    let positions: Vec<[f32; 3]> = scored.iter().map(|(_, p, _)| p.to_array()).collect();
    let colors: Vec<[f32; 3]> = scored.iter().map(|(_, _, c)| *c).collect();
    splats_at(&positions, &colors)
}

/// Up to `count` points uniform in the cube of [`random_in_view`] that at least one camera sees.
fn sample_in_view(cameras: &[Camera], count: usize, rng: &mut Pcg32) -> Vec<Vec3> {
    let centre = look_at_point(cameras);
    let mut distances: Vec<f32> = cameras.iter().map(|c| (c.center() - centre).length()).collect();
    distances.sort_by(f32::total_cmp);
    let half_side = distances.get(distances.len() / 2).copied().unwrap_or(1.0).max(f32::EPSILON);
    let views: Vec<_> = cameras.iter().map(|c| (c.camera_from_world(), c.intrinsics)).collect();
    let mut points = Vec::with_capacity(count);
    for _ in 0..count * MAX_DRAWS_PER_SPLAT {
        if points.len() == count {
            break;
        }
        let offset = Vec3::new(rng.uniform(), rng.uniform(), rng.uniform()) * 2.0 - Vec3::ONE;
        let point_in_world = centre + offset * half_side;
        if views.iter().any(|(camera_from_world, k)| pixel_of(camera_from_world, k, point_in_world).is_some()) {
            points.push(point_in_world);
        }
    }
    points
}

/// Pixel a world point falls on, if it is in front of the camera and inside the image.
fn pixel_of(camera_from_world: &CameraFromWorldCv, k: &Intrinsics, point_in_world: Vec3) -> Option<[u32; 2]> {
    let point_in_camera = camera_from_world.transform_point(point_in_world);
    if point_in_camera.z < NEAR_PLANE {
        return None;
    }
    let [u, v] = k.project(point_in_camera);
    let inside = u >= 0.0 && v >= 0.0 && u < k.width as f32 && v < k.height as f32;
    inside.then_some([u as u32, v as u32])
}

/// The colours of `point` in every view that sees it, per channel.
fn view_samples(views: &[(CameraFromWorldCv, Intrinsics, &ImageRgb)], point: Vec3) -> [Vec<f32>; 3] {
    let mut samples: [Vec<f32>; 3] = Default::default();
    for (camera_from_world, k, image) in views {
        let Some([u, v]) = pixel_of(camera_from_world, k, point) else {
            continue;
        };
        if u >= image.width || v >= image.height {
            continue;
        }
        for (channel, value) in samples.iter_mut().zip(image.get(u, v)) {
            channel.push(value);
        }
    }
    samples
}

/// Per-channel median, and the sum over channels of the median absolute deviation from it.
fn median_and_spread(mut samples: [Vec<f32>; 3]) -> ([f32; 3], f32) {
    let mut colour = [0.5; 3];
    let mut spread = 0.0;
    for (c, channel) in samples.iter_mut().enumerate() {
        if channel.is_empty() {
            continue;
        }
        channel.sort_by(f32::total_cmp);
        let median = channel[channel.len() / 2];
        let mut deviations: Vec<f32> = channel.iter().map(|v| (v - median).abs()).collect();
        deviations.sort_by(f32::total_cmp);
        colour[c] = median;
        spread += deviations[deviations.len() / 2];
    }
    (colour, spread)
}

fn splats_at(positions: &[[f32; 3]], colors: &[[f32; 3]]) -> Splats {
    let scales = neighbour_scales(positions);
    let mut splats = Splats::default();
    for ((p, c), s) in positions.iter().zip(colors).zip(scales) {
        let mut sh: ShCoeffs = Default::default();
        sh[0] = c.map(|v| (v - 0.5) / SH_C0);
        splats.push(*p, [s.ln(); 3], [1.0, 0.0, 0.0, 0.0], logit(INIT_OPACITY), sh);
    }
    splats
}

/// RMS distance of each point to its [`NEIGHBOURS`] nearest others, via a uniform grid whose
/// cells hold a couple of points on average.
fn neighbour_scales(positions: &[[f32; 3]]) -> Vec<f32> {
    let points: Vec<Vec3> = positions.iter().map(|p| Vec3::from(*p)).collect();
    let (lo, hi) =
        points.iter().fold((Vec3::splat(f32::MAX), Vec3::splat(f32::MIN)), |(lo, hi), p| (lo.min(*p), hi.max(*p)));
    let diag = (hi - lo).length();
    let min_scale = (diag * MIN_SCALE_FRACTION).max(f32::MIN_POSITIVE.sqrt());
    if points.len() <= NEIGHBOURS {
        return vec![(diag * 0.5).max(min_scale); points.len()];
    }
    let extent = (hi - lo).max(Vec3::splat(diag * 1e-3).max(Vec3::splat(f32::MIN_POSITIVE)));
    let cell = (extent.x * extent.y * extent.z * 2.0 / points.len() as f32).cbrt();
    let key = |p: Vec3| ((p - lo) / cell).floor().to_array().map(|v| v as i32);
    let mut grid: HashMap<Cell, Vec<u32>> = HashMap::new();
    for (i, p) in points.iter().enumerate() {
        grid.entry(key(*p)).or_default().push(i as u32);
    }
    let max_ring = ((extent / cell).max_element().ceil() as i32) + 1;
    points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut best = [f32::MAX; NEIGHBOURS];
            let c = key(*p);
            for ring in 0..=max_ring {
                visit_shell(&grid, c, ring, |j| {
                    if j as usize != i {
                        insert_smallest(&mut best, (points[j as usize] - *p).length_squared());
                    }
                });
                // Every unvisited point is at least `ring · cell` away.
                let reach = ring as f32 * cell;
                if best[NEIGHBOURS - 1] <= reach * reach {
                    break;
                }
            }
            (best.iter().sum::<f32>() / NEIGHBOURS as f32).sqrt().max(min_scale)
        })
        .collect()
}

/// Integer coordinates of a grid cell.
type Cell = [i32; 3];

/// Calls `f` with every point index in the cells at Chebyshev distance exactly `ring` from `c`.
fn visit_shell(grid: &HashMap<Cell, Vec<u32>>, c: Cell, ring: i32, mut f: impl FnMut(u32)) {
    for dz in -ring..=ring {
        for dy in -ring..=ring {
            for dx in -ring..=ring {
                if dx.abs().max(dy.abs()).max(dz.abs()) != ring {
                    continue;
                }
                if let Some(ids) = grid.get(&[c[0] + dx, c[1] + dy, c[2] + dz]) {
                    ids.iter().copied().for_each(&mut f);
                }
            }
        }
    }
}

/// Keeps the `NEIGHBOURS` smallest values seen, sorted ascending.
fn insert_smallest(best: &mut [f32; NEIGHBOURS], d: f32) {
    if d >= best[NEIGHBOURS - 1] {
        return;
    }
    let mut k = NEIGHBOURS - 1;
    while k > 0 && best[k - 1] > d {
        best[k] = best[k - 1];
        k -= 1;
    }
    best[k] = d;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::camera::{Intrinsics, WorldFromCameraCv};

    #[test]
    fn grid_neighbours_match_brute_force() {
        let mut rng = Pcg32::new(3);
        let positions: Vec<[f32; 3]> =
            (0..400).map(|_| [rng.uniform() * 4.0, rng.uniform(), rng.normal() * 0.3]).collect();
        let scales = neighbour_scales(&positions);
        for (i, p) in positions.iter().enumerate() {
            let mut d: Vec<f32> = positions
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, q)| (Vec3::from(*q) - Vec3::from(*p)).length_squared())
                .collect();
            d.sort_by(f32::total_cmp);
            let want = (d[..3].iter().sum::<f32>() / 3.0).sqrt();
            assert!((scales[i] - want).abs() <= 1e-5 * want.max(1e-3), "point {i}: {} vs {want}", scales[i]);
        }
    }

    #[test]
    fn point_cloud_colours_become_sh_dc() {
        let cloud = PointCloud {
            positions: vec![[0.0; 3], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            colors: vec![[1.0, 0.5, 0.0]; 4],
        };
        let splats = from_point_cloud(&cloud);
        assert_eq!(splats.len(), 4);
        let rgb = splats.sh[0][0].map(|v| v * SH_C0 + 0.5);
        assert!((rgb[0] - 1.0).abs() < 1e-6 && (rgb[2]).abs() < 1e-6);
        assert!((splats.log_scales[0][0].exp() - 1.0).abs() < 1e-5, "three unit-distance neighbours");
    }

    fn orbit(n: usize, target: Vec3, distance: f32) -> Vec<Camera> {
        (0..n)
            .map(|i| {
                let angle = i as f32 / n as f32 * std::f32::consts::TAU;
                let center = target + Vec3::new(angle.cos(), angle.sin(), 0.5) * distance;
                let intrinsics = Intrinsics { fx: 50.0, fy: 50.0, cx: 32.0, cy: 24.0, width: 64, height: 48 };
                Camera { intrinsics, world_from_camera: WorldFromCameraCv::look_at(center, target, Vec3::Z) }
            })
            .collect()
    }

    #[test]
    fn random_init_surrounds_the_look_at_point_deterministically() {
        let target = Vec3::new(1.0, -2.0, 0.5);
        let cameras = orbit(12, target, 3.0);
        assert!((look_at_point(&cameras) - target).length() < 1e-3);
        let images: Vec<ImageRgb> = (0..12).map(|_| ImageRgb::new(64, 48, [0.3; 3])).collect();
        let a = random_in_view(&cameras, &images, [0.0; 3], 500, 7);
        assert_eq!(a, random_in_view(&cameras, &images, [0.0; 3], 500, 7));
        assert_eq!(a.len(), 500);
        let mean = a.means.iter().map(|m| Vec3::from(*m)).sum::<Vec3>() / 500.0;
        assert!((mean - target).length() < 1.0, "mean {mean}");
        let extent = scene_extent(&cameras);
        assert!((extent - 1.1 * 3.0).abs() < 1e-3, "extent {extent}");
    }

    #[test]
    fn photo_consistency_keeps_points_on_the_textured_surface() {
        // 24 cameras around a textured ground plane z = 0: a pixel's colour is a function of the
        // world point its ray hits, so points on the plane agree across views and points above it
        // do not.
        let cameras = orbit(24, Vec3::ZERO, 3.0);
        let texture = |p: Vec3| [(p.x * 0.6).rem_euclid(1.0), (p.y * 0.7).rem_euclid(1.0), 0.5];
        let images: Vec<ImageRgb> = cameras
            .iter()
            .map(|c| {
                let k = c.intrinsics;
                let mut image = ImageRgb::new(k.width, k.height, [0.0; 3]);
                for v in 0..k.height {
                    for u in 0..k.width {
                        let dir_in_camera =
                            Vec3::new((u as f32 + 0.5 - k.cx) / k.fx, (v as f32 + 0.5 - k.cy) / k.fy, 1.0);
                        let dir = c.world_from_camera.rotation * dir_in_camera;
                        let t = -c.center().z / dir.z;
                        if t > 0.0 {
                            image.pixels[(v * k.width + u) as usize] = texture(c.center() + dir * t);
                        }
                    }
                }
                image
            })
            .collect();
        let splats = random_in_view(&cameras, &images, [1.0; 3], 200, 1);
        assert_eq!(splats.len(), 200);
        // Points whose rays all see the black sky agree too (they model the backdrop); every other
        // kept point must lie on the plane, where uniform sampling would put about 0.3 / 3.35 ≈ 9 %.
        let textured: Vec<usize> =
            (0..200).filter(|&i| splats.sh[i][0].iter().map(|v| v * SH_C0 + 0.5).sum::<f32>() > 0.25).collect();
        let on_plane = textured.iter().filter(|&&i| splats.means[i][2].abs() < 0.3).count();
        assert!(
            textured.len() > 50 && on_plane * 10 > textured.len() * 6,
            "{on_plane} of {} textured points near the plane",
            textured.len()
        );
        let (i, m) = splats.means.iter().enumerate().find(|(_, m)| m[2].abs() < 0.05).unwrap();
        let rgb = splats.sh[i][0].map(|v| v * SH_C0 + 0.5);
        let want = texture(Vec3::from(*m));
        assert!((rgb[0] - want[0]).abs() < 0.2 && (rgb[1] - want[1]).abs() < 0.2, "{rgb:?} vs {want:?}");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<usize> = (0..50).collect();
        Pcg32::new(1).shuffle(&mut v);
        assert_ne!(v, (0..50).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..50).collect::<Vec<_>>());
    }
}
