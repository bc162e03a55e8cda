//! The mat's frame in a posed reconstruction: each marker corner seen in two or more photos is
//! triangulated with the cameras, and the similarity from the world to the mat's frame
//! (millimetres, +Z up out of the paper, see [`crate::layout`]) is fitted to those corners by
//! Umeyama's closed form, dropping the worst corner while any is off by more than
//! [`MAX_CORNER_RESIDUAL_MM`].

use glam::{DMat3, DMat4, DVec2, DVec3};
use nalgebra::{Matrix3, SVD};

use kiln_core::camera::Camera;
use kiln_core::camera_model::RigidCv;
use kiln_vision::geometry::triangulate::{Checks, View, triangulate_robust};

use crate::detect::Sighting;
use crate::layout::Layout;

/// A corner off its printed place by more than this after the fit is an outlier (a misread
/// corner, a marker lifted off the table): detected corners are sub-pixel and the photos see
/// the mat at a pixel per millimetre or finer, so true corners land within about a millimetre.
pub const MAX_CORNER_RESIDUAL_MM: f64 = 3.0;
/// The fewest corners a fit is accepted on: two whole markers, so the mat's plane and its
/// orientation in it are fixed by more than one tag's small square.
const MIN_CORNERS: usize = 8;
/// A triangulated corner must reproject within this many pixels in every view it keeps: the
/// detector's corners are sub-pixel, poses leave a pixel or so.
const MAX_REPROJECTION_PX: f64 = 2.0;
/// Rays to a corner must span at least this angle (radians, 2°), or its depth is unreliable.
const MIN_TRIANGULATION_ANGLE: f64 = 0.035;

/// `target = scale · rotation · source + translation`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    pub scale: f64,
    pub rotation: DMat3,
    pub translation: DVec3,
}

impl Similarity {
    pub fn apply(&self, point: DVec3) -> DVec3 {
        self.scale * (self.rotation * point) + self.translation
    }

    /// As a 4 × 4 matrix.
    pub fn to_mat4(&self) -> DMat4 {
        DMat4::from_translation(self.translation) * DMat4::from_mat3(self.rotation * self.scale)
    }
}

/// The least-squares similarity taking `source[i]` onto `target[i]` (Umeyama 1991), proper
/// (no reflection); `None` for fewer than three points or collinear ones.
pub fn umeyama(source: &[DVec3], target: &[DVec3]) -> Option<Similarity> {
    let n = source.len();
    if n < 3 || target.len() != n {
        return None;
    }
    let mean = |points: &[DVec3]| points.iter().sum::<DVec3>() / n as f64;
    let (mean_source, mean_target) = (mean(source), mean(target));
    let mut covariance = Matrix3::<f64>::zeros();
    let mut variance = 0.0;
    for (s, t) in source.iter().zip(target) {
        let (s, t) = (*s - mean_source, *t - mean_target);
        covariance += nalgebra::Vector3::new(t.x, t.y, t.z) * nalgebra::RowVector3::new(s.x, s.y, s.z);
        variance += s.length_squared();
    }
    let svd = SVD::new(covariance / n as f64, true, true);
    let (u, v_t) = (svd.u?, svd.v_t?);
    let d = svd.singular_values;
    // Two independent directions at least: a plane (the mat) fixes the rotation, a line does not.
    if d[1] <= 1e-12 * d[0].max(1e-300) || variance <= 0.0 {
        return None;
    }
    let sign = if (u.determinant() * v_t.determinant()) < 0.0 { -1.0 } else { 1.0 };
    let s = Matrix3::from_diagonal(&nalgebra::Vector3::new(1.0, 1.0, sign));
    let r = u * s * v_t;
    let scale = (d[0] + d[1] + sign * d[2]) / (variance / n as f64);
    let rotation = DMat3::from_cols_array(&[
        r[(0, 0)],
        r[(1, 0)],
        r[(2, 0)],
        r[(0, 1)],
        r[(1, 1)],
        r[(2, 1)],
        r[(0, 2)],
        r[(1, 2)],
        r[(2, 2)],
    ]);
    let translation = mean_target - scale * (rotation * mean_source);
    Some(Similarity { scale, rotation, translation })
}

/// [`umeyama`] that drops the corner with the largest residual while it exceeds `max_residual`
/// and refits; returns the fit and which pairs it kept, or `None` when fewer than
/// [`MIN_CORNERS`] remain.
pub fn fit_robust(source: &[DVec3], target: &[DVec3], max_residual: f64) -> Option<(Similarity, Vec<bool>)> {
    let mut kept = vec![true; source.len()];
    loop {
        let (s, t): (Vec<DVec3>, Vec<DVec3>) =
            source.iter().zip(target).zip(&kept).filter(|(_, k)| **k).map(|(pair, _)| (*pair.0, *pair.1)).unzip();
        if s.len() < MIN_CORNERS {
            return None;
        }
        let fit = umeyama(&s, &t)?;
        let worst = (0..source.len())
            .filter(|&i| kept[i])
            .map(|i| (i, fit.apply(source[i]).distance(target[i])))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match worst {
            Some((i, residual)) if residual > max_residual => kept[i] = false,
            _ => return Some((fit, kept)),
        }
    }
}

/// The mat found in a posed set of photos.
#[derive(Clone, Debug, PartialEq)]
pub struct MatFit {
    pub layout: &'static Layout,
    /// World to the mat's frame (millimetres, +Z up).
    pub mat_from_world: Similarity,
    /// Root-mean-square distance of the kept corners from their printed places, millimetres.
    pub rms_mm: f64,
    /// Markers with at least one kept corner.
    pub markers: usize,
    pub corners: usize,
    /// Triangulated corners dropped as outliers.
    pub corners_rejected: usize,
}

/// The mat's frame from the markers seen in each photo (`sightings[i]` in `cameras[i]`'s
/// pixels): `None` when no layout has [`MIN_CORNERS`] corners triangulated and consistent.
pub fn fit_mat(cameras: &[Camera], sightings: &[Vec<Sighting>]) -> Option<MatFit> {
    let layout = most_seen_layout(sightings)?;
    let mut world = Vec::new();
    let mut printed = Vec::new();
    let mut marker_of = Vec::new();
    for marker in layout.markers {
        for (corner, on_mat) in marker.corners_mm(layout).iter().enumerate() {
            let views: Vec<View> = cameras
                .iter()
                .zip(sightings)
                .filter_map(|(camera, seen)| {
                    let sighting = seen.iter().find(|s| s.id == marker.id)?;
                    Some(view(camera, sighting.corners_px[corner]))
                })
                .collect();
            let checks = Checks { max_error_px: MAX_REPROJECTION_PX, min_angle_rad: MIN_TRIANGULATION_ANGLE };
            if let Some((point, _)) = triangulate_robust(&views, &checks) {
                world.push(point);
                printed.push(*on_mat);
                marker_of.push(marker.id);
            }
        }
    }
    let (mat_from_world, kept) = fit_robust(&world, &printed, MAX_CORNER_RESIDUAL_MM)?;
    let residuals: Vec<f64> = (0..world.len())
        .filter(|&i| kept[i])
        .map(|i| mat_from_world.apply(world[i]).distance_squared(printed[i]))
        .collect();
    let mut markers: Vec<u32> = marker_of.iter().zip(&kept).filter(|(_, k)| **k).map(|(id, _)| *id).collect();
    markers.dedup();
    let fit = MatFit {
        layout,
        mat_from_world,
        rms_mm: (residuals.iter().sum::<f64>() / residuals.len().max(1) as f64).sqrt(),
        markers: markers.len(),
        corners: residuals.len(),
        corners_rejected: world.len() - residuals.len(),
    };
    tracing::info!(layout = fit.layout.name, markers = fit.markers, rms_mm = fit.rms_mm, "calibration mat found");
    Some(fit)
}

/// The layout whose markers were seen most often.
fn most_seen_layout(sightings: &[Vec<Sighting>]) -> Option<&'static Layout> {
    let mut counts: Vec<(&'static str, usize, &'static Layout)> = Vec::new();
    for (layout, _) in sightings.iter().flatten().filter_map(|s| Layout::of_marker(s.id)) {
        match counts.iter_mut().find(|(name, _, _)| *name == layout.name) {
            Some(entry) => entry.1 += 1,
            None => counts.push((layout.name, 1, layout)),
        }
    }
    counts.into_iter().max_by_key(|(_, count, _)| *count).map(|(_, _, layout)| layout)
}

/// One camera's sighting of a corner as the triangulation takes it.
fn view(camera: &Camera, pixel: DVec2) -> View {
    let camera_from_world = camera.camera_from_world();
    let k = camera.intrinsics;
    let normalized =
        DVec2::new((pixel.x - f64::from(k.cx)) / f64::from(k.fx), (pixel.y - f64::from(k.cy)) / f64::from(k.fy));
    View {
        camera_from_world: RigidCv {
            rotation: camera_from_world.rotation.as_dmat3(),
            translation: camera_from_world.translation.as_dvec3(),
        },
        normalized,
        focal: f64::from(k.fx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Paper;
    use kiln_core::camera::{Intrinsics, WorldFromCameraCv};

    /// A world where the mat lies tilted, shifted and at 1/250 of its size (SfM's arbitrary
    /// frame): `world = truth⁻¹(mat)`.
    fn truth() -> Similarity {
        let rotation = DMat3::from_euler(glam::EulerRot::XYZ, 0.4, -0.3, 1.1);
        Similarity { scale: 250.0, rotation, translation: DVec3::new(12.0, -40.0, 7.0) }
    }

    fn to_world(truth: &Similarity, mat: DVec3) -> DVec3 {
        truth.rotation.transpose() * ((mat - truth.translation) / truth.scale)
    }

    /// A deterministic pseudo-random number in [-1, 1).
    fn noise(i: usize, k: usize) -> f64 {
        let x = ((i * 7919 + k * 104_729) % 10_007) as f64 / 10_007.0;
        2.0 * x - 1.0
    }

    #[test]
    fn umeyama_recovers_a_similarity_from_noisy_planar_points_and_drops_an_outlier() {
        let layout = Paper::A4.layout();
        let truth = truth();
        let printed: Vec<DVec3> = layout.markers.iter().flat_map(|m| m.corners_mm(layout)).collect();
        // 0.3 mm of noise on each world point (in mat units), and one corner 15 mm off.
        let mut world: Vec<DVec3> = printed
            .iter()
            .enumerate()
            .map(|(i, p)| to_world(&truth, *p + 0.3 * DVec3::new(noise(i, 0), noise(i, 1), noise(i, 2))))
            .collect();
        world[5] = to_world(&truth, printed[5] + DVec3::new(15.0, 0.0, 4.0));
        let exact = umeyama(&world[6..], &printed[6..]).unwrap();
        assert!((exact.scale / truth.scale - 1.0).abs() < 2e-3, "{}", exact.scale);
        let (fit, kept) = fit_robust(&world, &printed, MAX_CORNER_RESIDUAL_MM).unwrap();
        assert_eq!(kept.iter().filter(|k| !**k).count(), 1);
        assert!(!kept[5], "the outlier is the one dropped");
        assert!((fit.scale / truth.scale - 1.0).abs() < 2e-3, "{}", fit.scale);
        assert!((fit.rotation * DVec3::Z).distance(truth.rotation * DVec3::Z) < 2e-3, "the mat's normal");
        assert!(fit.rotation.determinant() > 0.999, "a proper rotation");
        assert!(fit.to_mat4().transform_point3(world[0]).distance(fit.apply(world[0])) < 1e-9);
        // Collinear points fix no rotation.
        let line: Vec<DVec3> = (0..5).map(|i| DVec3::X * f64::from(i)).collect();
        assert!(umeyama(&line, &line).is_none());
    }

    #[test]
    fn the_mat_is_found_from_projected_corners_in_posed_cameras() {
        let layout = Paper::A4.layout();
        let truth = truth();
        let intrinsics = Intrinsics { fx: 500.0, fy: 500.0, cx: 320.0, cy: 240.0, width: 640, height: 480 };
        // Eight cameras 40 cm from the mat's centre, 45° up, all around.
        let cameras: Vec<Camera> = (0..8)
            .map(|i| {
                let azimuth = f64::from(i) * std::f64::consts::TAU / 8.0;
                let eye_mat = DVec3::new(400.0 * azimuth.cos(), 400.0 * azimuth.sin(), 400.0);
                let eye = to_world(&truth, eye_mat).as_vec3();
                let target = to_world(&truth, DVec3::ZERO).as_vec3();
                let up = (truth.rotation.transpose() * DVec3::Z).as_vec3();
                Camera { intrinsics, world_from_camera: WorldFromCameraCv::look_at(eye, target, up) }
            })
            .collect();
        let sightings: Vec<Vec<Sighting>> = cameras
            .iter()
            .map(|camera| {
                let camera_from_world = camera.camera_from_world();
                layout
                    .markers
                    .iter()
                    .map(|m| Sighting {
                        id: m.id,
                        corners_px: m.corners_mm(layout).map(|c| {
                            let p = camera_from_world.transform_point(to_world(&truth, c).as_vec3());
                            let [x, y] = intrinsics.project(p);
                            DVec2::new(f64::from(x), f64::from(y))
                        }),
                        margin: 100.0,
                    })
                    .collect()
            })
            .collect();
        let fit = fit_mat(&cameras, &sightings).unwrap();
        assert_eq!((fit.layout.name, fit.markers, fit.corners), ("kiln-mat-a4-v1", 12, 48));
        assert!(fit.rms_mm < 0.1, "{}", fit.rms_mm);
        assert!((fit.mat_from_world.scale / truth.scale - 1.0).abs() < 1e-3);
    }
}
