//! Pose accuracy against a reference (ground truth, or another tool's poses).
//!
//! SfM recovers poses up to a similarity (scale, rotation, translation of the world). Two kinds of
//! figures are reported, as in the SfM literature:
//! - **gauge-free**: the relative rotation between every pair of photos, compared with the
//!   reference's (`camera_a_from_camera_b`; no alignment needed);
//! - **after alignment**: a least-squares similarity (Umeyama 1991) maps the estimated camera
//!   centres onto the reference centres; then centre distances (in reference units) and absolute
//!   rotation differences.

use std::collections::BTreeMap;

use glam::{DMat3, DVec3};

use kiln_core::photos::PhotoSet;
use kiln_vision::geometry::linalg::{from_nalgebra, to_nalgebra};
use kiln_vision::model::{Reconstruction, RigidCv};

/// `reference_from_estimate`: `point_in_reference = scale · rotation · point_in_estimate + translation`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    pub scale: f64,
    pub rotation: DMat3,
    pub translation: DVec3,
}

impl Similarity {
    pub fn transform_point(&self, point: DVec3) -> DVec3 {
        self.scale * (self.rotation * point) + self.translation
    }
}

/// The least-squares similarity taking `source[i]` to `target[i]` (Umeyama's closed form, with
/// the reflection fix). `None` for fewer than 3 pairs or degenerate (collinear or coincident)
/// source points.
pub fn umeyama(source: &[DVec3], target: &[DVec3]) -> Option<Similarity> {
    let n = source.len();
    if n < 3 || target.len() != n {
        return None;
    }
    let mean = |points: &[DVec3]| points.iter().copied().sum::<DVec3>() / n as f64;
    let (mean_source, mean_target) = (mean(source), mean(target));
    let mut covariance = nalgebra::Matrix3::<f64>::zeros();
    let mut source_variance = 0.0;
    for (s, t) in source.iter().zip(target) {
        let (s, t) = (*s - mean_source, *t - mean_target);
        covariance += nalgebra::Vector3::new(t.x, t.y, t.z) * nalgebra::RowVector3::new(s.x, s.y, s.z);
        source_variance += s.length_squared();
    }
    covariance /= n as f64;
    source_variance /= n as f64;
    let svd = covariance.svd(true, true);
    let (u, v_t) = (svd.u?, svd.v_t?);
    let mut signs = nalgebra::Matrix3::<f64>::identity();
    if (u.determinant() * v_t.determinant()) < 0.0 {
        signs[(2, 2)] = -1.0;
    }
    // Degenerate when the source spans less than a plane (two singular values vanish).
    let singular = svd.singular_values;
    if source_variance <= f64::EPSILON || singular[1] <= singular[0] * 1e-12 {
        return None;
    }
    let rotation_na = u * signs * v_t;
    let scale =
        (singular[0] * signs[(0, 0)] + singular[1] * signs[(1, 1)] + singular[2] * signs[(2, 2)]) / source_variance;
    let rotation = from_nalgebra(&rotation_na);
    let translation = mean_target - scale * (rotation * mean_source);
    Some(Similarity { scale, rotation, translation })
}

/// Angle of a rotation matrix in degrees (robust near 0° and 180°).
pub fn rotation_angle_deg(rotation: &DMat3) -> f64 {
    let cos = ((rotation.x_axis.x + rotation.y_axis.y + rotation.z_axis.z - 1.0) / 2.0).clamp(-1.0, 1.0);
    // Near 0 the arccos loses precision; the antisymmetric part gives sin.
    let sin = 0.5
        * DVec3::new(
            rotation.y_axis.z - rotation.z_axis.y,
            rotation.z_axis.x - rotation.x_axis.z,
            rotation.x_axis.y - rotation.y_axis.x,
        )
        .length();
    sin.atan2(cos).to_degrees()
}

/// Errors of estimated poses against reference poses, over the photos both have.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PoseErrors {
    /// Photos compared (present and posed in both).
    pub compared: usize,
    /// Reference photos without an estimated pose.
    pub missing: Vec<String>,
    /// Over all pairs of compared photos, the angle between estimated and reference
    /// `camera_a_from_camera_b` rotations, in degrees.
    pub median_relative_rotation_deg: f64,
    pub mean_relative_rotation_deg: f64,
    /// After aligning camera centres by a similarity: absolute rotation error (degrees).
    pub median_rotation_deg: f64,
    /// After aligning the world rotation by the camera orientations instead (the chordal L2
    /// mean of `world_reference_from_world_estimate` over the photos): absolute rotation error
    /// (degrees). Free of the centre alignment's sensitivity to centre noise, which dominates
    /// when the cameras span little depth (e.g. fox).
    pub median_rotation_orientation_aligned_deg: f64,
    /// After alignment: camera centre distance in reference units.
    pub median_center_error: f64,
    pub mean_center_error: f64,
    pub max_center_error: f64,
    /// The similarity's scale (reference units per estimate unit).
    pub alignment_scale: f64,
}

/// Compares poses matched by name. `None` when fewer than 3 photos are common or the centres are
/// degenerate.
pub fn compare_poses(
    estimated: &BTreeMap<String, RigidCv>,
    reference: &BTreeMap<String, RigidCv>,
) -> Option<PoseErrors> {
    let common: Vec<(&RigidCv, &RigidCv)> =
        reference.iter().filter_map(|(name, r)| estimated.get(name).map(|e| (e, r))).collect();
    let missing = reference.keys().filter(|name| !estimated.contains_key(*name)).cloned().collect();
    let estimated_centers: Vec<DVec3> = common.iter().map(|(e, _)| e.center()).collect();
    let reference_centers: Vec<DVec3> = common.iter().map(|(_, r)| r.center()).collect();
    let alignment = umeyama(&estimated_centers, &reference_centers)?;

    let mut relative = Vec::with_capacity(common.len() * common.len() / 2);
    for (a, (ea, ra)) in common.iter().enumerate() {
        for (eb, rb) in &common[a + 1..] {
            let estimated_ab = ea.rotation * eb.rotation.transpose();
            let reference_ab = ra.rotation * rb.rotation.transpose();
            relative.push(rotation_angle_deg(&(estimated_ab * reference_ab.transpose())));
        }
    }
    // camera_from_reference = camera_from_estimate · estimate_from_reference.
    let absolute: Vec<f64> = common
        .iter()
        .map(|(e, r)| rotation_angle_deg(&(e.rotation * alignment.rotation.transpose() * r.rotation.transpose())))
        .collect();
    let orientation_alignment = rotation_alignment(&common);
    let orientation_aligned: Vec<f64> = common
        .iter()
        .map(|(e, r)| rotation_angle_deg(&(e.rotation * orientation_alignment.transpose() * r.rotation.transpose())))
        .collect();
    let center_errors: Vec<f64> = estimated_centers
        .iter()
        .zip(&reference_centers)
        .map(|(e, r)| alignment.transform_point(*e).distance(*r))
        .collect();
    Some(PoseErrors {
        compared: common.len(),
        missing,
        median_relative_rotation_deg: median(&relative),
        mean_relative_rotation_deg: mean(&relative),
        median_rotation_deg: median(&absolute),
        median_rotation_orientation_aligned_deg: median(&orientation_aligned),
        median_center_error: median(&center_errors),
        mean_center_error: mean(&center_errors),
        max_center_error: center_errors.iter().copied().fold(0.0, f64::max),
        alignment_scale: alignment.scale,
    })
}

/// The rotation `world_reference_from_world_estimate` closest (chordal L2) to every photo's
/// `reference_world_from_camera · camera_from_estimate_world`: the projection of their sum onto
/// SO(3).
fn rotation_alignment(common: &[(&RigidCv, &RigidCv)]) -> DMat3 {
    let mut sum = nalgebra::Matrix3::<f64>::zeros();
    for (e, r) in common {
        sum += to_nalgebra(r.rotation.transpose() * e.rotation);
    }
    let svd = sum.svd(true, true);
    let (Some(u), Some(v_t)) = (svd.u, svd.v_t) else { return DMat3::IDENTITY };
    let mut signs = nalgebra::Matrix3::<f64>::identity();
    if (u * v_t).determinant() < 0.0 {
        signs[(2, 2)] = -1.0;
    }
    from_nalgebra(&(u * signs * v_t))
}

/// Reference poses of a dataset, keyed by image file name (the last path component), so that
/// `images/0001.jpg` in a `transforms.json` meets `0001.jpg` of a photo folder.
pub fn poses_by_file_name(views: &[kiln_dataset::View]) -> BTreeMap<String, RigidCv> {
    views
        .iter()
        .map(|view| {
            let camera_from_world = view.camera.camera_from_world();
            let pose = RigidCv {
                rotation: camera_from_world.rotation.as_dmat3(),
                translation: camera_from_world.translation.as_dvec3(),
            };
            (file_name(&view.name), pose)
        })
        .collect()
}

/// Poses of the registered photos of a reconstruction, keyed by image file name.
pub fn registered_poses_by_file_name(photos: &PhotoSet, reconstruction: &Reconstruction) -> BTreeMap<String, RigidCv> {
    photos
        .photos
        .iter()
        .zip(&reconstruction.images)
        .filter_map(|(photo, image)| Some((file_name(&photo.name), image.camera_from_world?)))
        .collect()
}

/// The last component of a `/`- or `\`-separated name.
pub fn file_name(name: &str) -> String {
    name.rsplit(['/', '\\']).next().unwrap_or(name).to_string()
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() { f64::NAN } else { values.iter().sum::<f64>() / values.len() as f64 }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use glam::DQuat;

    use super::*;

    fn pose(axis: DVec3, angle: f64, center: DVec3) -> RigidCv {
        let rotation = DMat3::from_quat(DQuat::from_axis_angle(axis.normalize(), angle));
        RigidCv { rotation, translation: -(rotation * center) }
    }

    fn cameras() -> BTreeMap<String, RigidCv> {
        (0..8)
            .map(|i| {
                let a = f64::from(i) * 0.7;
                let center = DVec3::new(a.cos() * 2.0, a.sin() * 2.0, 0.3 * f64::from(i % 3));
                (format!("{i:04}.jpg"), pose(DVec3::new(0.2, 1.0, 0.1 * f64::from(i)), a, center))
            })
            .collect()
    }

    /// The same cameras in a world moved by a similarity: `world' = s R world + t`.
    fn moved(poses: &BTreeMap<String, RigidCv>, sim: &Similarity) -> BTreeMap<String, RigidCv> {
        poses
            .iter()
            .map(|(name, p)| {
                // camera_from_world' = camera_from_world · world_from_world'; with the scale
                // absorbed into the translation (points shrink by 1/s in camera units).
                let rotation = p.rotation * sim.rotation.transpose();
                let center = sim.transform_point(p.center());
                (name.clone(), RigidCv { rotation, translation: -(rotation * center) })
            })
            .collect()
    }

    #[test]
    fn umeyama_recovers_a_known_similarity() {
        let truth = Similarity {
            scale: 3.5,
            rotation: DMat3::from_quat(DQuat::from_euler(glam::EulerRot::XYZ, 0.4, -1.2, 2.0)),
            translation: DVec3::new(1.0, -2.0, 0.5),
        };
        let source: Vec<DVec3> =
            (0..10).map(|i| DVec3::new(f64::from(i).sin(), f64::from(i * i % 7), f64::from(i) * 0.3)).collect();
        let target: Vec<DVec3> = source.iter().map(|p| truth.transform_point(*p)).collect();
        let found = umeyama(&source, &target).expect("non-degenerate");
        assert!((found.scale - truth.scale).abs() < 1e-9);
        assert!(rotation_angle_deg(&(found.rotation * truth.rotation.transpose())) < 1e-7);
        assert!(found.translation.distance(truth.translation) < 1e-9);
        assert!(umeyama(&source[..2], &target[..2]).is_none());
        let collinear: Vec<DVec3> = (0..5).map(|i| DVec3::X * f64::from(i)).collect();
        assert!(umeyama(&collinear, &collinear).is_none());
    }

    #[test]
    fn identical_poses_in_another_gauge_have_no_error() {
        let reference = cameras();
        let sim = Similarity {
            scale: 0.25,
            rotation: DMat3::from_quat(DQuat::from_euler(glam::EulerRot::ZYX, 1.0, 0.2, -0.3)),
            translation: DVec3::new(5.0, 1.0, -3.0),
        };
        let estimated = moved(&reference, &sim);
        let errors = compare_poses(&estimated, &reference).expect("comparable");
        assert_eq!(errors.compared, 8);
        assert!(errors.median_relative_rotation_deg < 1e-6, "{errors:?}");
        assert!(errors.median_rotation_deg < 1e-6, "{errors:?}");
        assert!(errors.median_rotation_orientation_aligned_deg < 1e-6, "{errors:?}");
        assert!(errors.max_center_error < 1e-9, "{errors:?}");
        assert!((errors.alignment_scale - 4.0).abs() < 1e-9);
    }

    #[test]
    fn a_rotated_camera_shows_up_in_the_errors() {
        let reference = cameras();
        let mut estimated = reference.clone();
        let Some(tilted) = estimated.get_mut("0003.jpg") else { panic!("camera 3 exists") };
        tilted.rotation = DMat3::from_quat(DQuat::from_rotation_x(0.5f64.to_radians())) * tilted.rotation;
        estimated.remove("0007.jpg");
        let errors = compare_poses(&estimated, &reference).expect("comparable");
        assert_eq!(errors.missing, vec!["0007.jpg".to_string()]);
        // 6 of the 21 pairs involve camera 3, each off by 0.5°; the median pair is exact.
        assert!(errors.mean_relative_rotation_deg > 0.1 && errors.mean_relative_rotation_deg < 0.5, "{errors:?}");
        assert!(errors.median_relative_rotation_deg < 1e-6, "{errors:?}");
    }

    #[test]
    fn small_angles_are_precise() {
        let r = DMat3::from_quat(DQuat::from_rotation_y(1e-5f64.to_radians()));
        assert!((rotation_angle_deg(&r) - 1e-5).abs() < 1e-10);
        assert!((rotation_angle_deg(&DMat3::from_rotation_z(std::f64::consts::PI)) - 180.0).abs() < 1e-9);
    }
}
