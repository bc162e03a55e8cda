//! Two-view verification on synthetic scenes with known ground truth: random 3D points seen by
//! two OpenCV cameras with radial distortion, 0.5 px keypoint noise and random outlier matches.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use glam::{DMat3, DVec2, DVec3};
use kiln_core::rng::Pcg32;
use kiln_vision::features::{DESCRIPTOR_LEN, Features, Keypoint};
use kiln_vision::model::{RadialCamera, RigidCv};
use kiln_vision::verify::{TwoViewConfig, TwoViewGeometry, VerifyOptions, verify_pair, verify_pairs};

fn camera() -> RadialCamera {
    RadialCamera { k1: -0.06, k2: 0.01, ..RadialCamera::pinhole(1280, 960, 1100.0) }
}

struct Scene {
    keypoints_i: Vec<Keypoint>,
    keypoints_j: Vec<Keypoint>,
    matches: Vec<(u32, u32)>,
    /// Whether match `k` is a true correspondence.
    is_inlier: Vec<bool>,
}

fn keypoint(p: DVec2) -> Keypoint {
    Keypoint { x: p.x as f32, y: p.y as f32, scale: 2.0, orientation: 0.0 }
}

fn inside(camera: &RadialCamera, p: DVec2) -> bool {
    p.x >= 0.0 && p.y >= 0.0 && p.x < f64::from(camera.width) && p.y < f64::from(camera.height)
}

/// `points` projected into both cameras with noise; then `outlier_fraction` of the matches
/// replaced by random pixel pairs.
fn build_scene(
    rng: &mut Pcg32,
    camera_j_from_camera_i: RigidCv,
    points: &mut dyn FnMut(&mut Pcg32) -> DVec3,
    count: usize,
    noise_px: f64,
    outlier_fraction: f64,
) -> Scene {
    let cam = camera();
    let noise = |rng: &mut Pcg32| DVec2::new(f64::from(rng.normal()), f64::from(rng.normal())) * noise_px;
    let (mut keypoints_i, mut keypoints_j, mut is_inlier) = (Vec::new(), Vec::new(), Vec::new());
    while keypoints_i.len() < count {
        let random_pixel =
            |rng: &mut Pcg32| DVec2::new(f64::from(rng.uniform()) * 1280.0, f64::from(rng.uniform()) * 960.0);
        if f64::from(rng.uniform()) < outlier_fraction {
            keypoints_i.push(keypoint(random_pixel(rng)));
            keypoints_j.push(keypoint(random_pixel(rng)));
            is_inlier.push(false);
            continue;
        }
        let p = points(rng);
        let (Some(a), Some(b)) = (cam.project(p), cam.project(camera_j_from_camera_i.transform_point(p))) else {
            continue;
        };
        let (a, b) = (a + noise(rng), b + noise(rng));
        if inside(&cam, a) && inside(&cam, b) {
            keypoints_i.push(keypoint(a));
            keypoints_j.push(keypoint(b));
            is_inlier.push(true);
        }
    }
    let matches = (0..count as u32).map(|k| (k, k)).collect();
    Scene { keypoints_i, keypoints_j, matches, is_inlier }
}

/// Camera `j` orbits the scene centre (0, 0, 6.5) in camera `i`'s frame by 6–20° about a random
/// axis, still looking at the centre: the motion of a capture around an object.
fn random_motion(rng: &mut Pcg32) -> RigidCv {
    let axis = DVec3::new(0.3 * f64::from(rng.normal()), f64::from(rng.normal()), 0.3 * f64::from(rng.normal()));
    let angle = (6.0 + 14.0 * f64::from(rng.uniform())).to_radians();
    let world_from_j = DMat3::from_axis_angle(axis.normalize(), angle);
    let center = DVec3::new(0.0, 0.0, 6.5);
    // Camera j's centre and axes, in camera i's frame: rotated about the scene centre.
    let center_j = center + world_from_j * -center;
    let rotation = world_from_j.transpose();
    RigidCv { rotation, translation: -(rotation * center_j) }
}

fn general_points(rng: &mut Pcg32) -> DVec3 {
    DVec3::new(
        f64::from(rng.uniform()) * 6.0 - 3.0,
        f64::from(rng.uniform()) * 4.0 - 2.0,
        4.0 + 5.0 * f64::from(rng.uniform()),
    )
}

fn verify(scene: &Scene) -> Option<TwoViewGeometry> {
    let cam = camera();
    verify_pair(0, 1, &scene.keypoints_i, &scene.keypoints_j, &cam, &cam, &scene.matches, &VerifyOptions::default())
}

fn rotation_error_deg(a: DMat3, b: DMat3) -> f64 {
    let m = a.transpose() * b;
    ((m.x_axis.x + m.y_axis.y + m.z_axis.z - 1.0) / 2.0).clamp(-1.0, 1.0).acos().to_degrees()
}

#[test]
fn general_scenes_give_accurate_calibrated_poses() {
    let mut rotation_errors = Vec::new();
    for (seed, outliers) in (0..12).zip([0.3, 0.45, 0.6].into_iter().cycle()) {
        let mut rng = Pcg32::new(100 + seed);
        let motion = random_motion(&mut rng);
        let scene = build_scene(&mut rng, motion, &mut general_points, 1000, 0.5, outliers);
        let geometry = verify(&scene).expect("verified");
        assert_eq!(geometry.config, TwoViewConfig::Calibrated, "seed {seed}");
        let pose = geometry.relative_pose.expect("pose");
        let rotation_error = rotation_error_deg(pose.rotation, motion.rotation);
        let translation_error = pose.translation.angle_between(motion.translation.normalize()).to_degrees();
        assert!(rotation_error < 0.1, "seed {seed}: rotation error {rotation_error}°");
        assert!(translation_error < 0.5, "seed {seed}: translation error {translation_error}°");
        assert!((pose.translation.length() - 1.0).abs() < 1e-9);
        let true_total = scene.is_inlier.iter().filter(|&&b| b).count();
        let found_true = geometry.inliers.iter().filter(|m| scene.is_inlier[m.0 as usize]).count();
        let recall = found_true as f64 / true_total as f64;
        let precision = found_true as f64 / geometry.inliers.len() as f64;
        assert!(recall >= 0.95 && precision >= 0.95, "seed {seed}: recall {recall}, precision {precision}");
        assert!(geometry.median_triangulation_angle_deg > 3.0, "{}", geometry.median_triangulation_angle_deg);
        rotation_errors.push(rotation_error);
    }
    rotation_errors.sort_by(f64::total_cmp);
    let median = rotation_errors[rotation_errors.len() / 2];
    println!("median rotation error {median:.4}° (max {:.4}°)", rotation_errors[rotation_errors.len() - 1]);
    assert!(median < 0.05, "median rotation error {median}°");
}

#[test]
fn planar_scene_is_planar() {
    let mut rng = Pcg32::new(7);
    let motion = random_motion(&mut rng);
    // A tilted plane 6 units ahead.
    let mut plane = |rng: &mut Pcg32| {
        let (u, v) = (f64::from(rng.uniform()) * 8.0 - 4.0, f64::from(rng.uniform()) * 6.0 - 3.0);
        DVec3::new(u, v, 6.0 + 0.3 * u - 0.2 * v)
    };
    let scene = build_scene(&mut rng, motion, &mut plane, 600, 0.5, 0.3);
    let geometry = verify(&scene).expect("verified");
    assert_eq!(geometry.config, TwoViewConfig::Planar);
    assert!(geometry.homography.is_some());
}

#[test]
fn pure_rotation_has_no_parallax() {
    let mut rng = Pcg32::new(8);
    let motion = RigidCv {
        rotation: DMat3::from_axis_angle(DVec3::new(0.2, 1.0, 0.1).normalize(), 0.3),
        translation: DVec3::ZERO,
    };
    let scene = build_scene(&mut rng, motion, &mut general_points, 600, 0.5, 0.3);
    let geometry = verify(&scene).expect("verified");
    assert_ne!(geometry.config, TwoViewConfig::Calibrated);
    assert!(geometry.median_triangulation_angle_deg < 0.2, "{}", geometry.median_triangulation_angle_deg);
}

#[test]
fn duplicated_photos_are_flagged_not_fatal() {
    let mut rng = Pcg32::new(9);
    let motion = RigidCv::IDENTITY;
    let scene = build_scene(&mut rng, motion, &mut general_points, 500, 0.0, 0.0);
    let geometry = verify(&scene).expect("verified");
    assert_eq!(geometry.config, TwoViewConfig::Planar);
    assert!(geometry.median_triangulation_angle_deg < 0.01);
    assert_eq!(geometry.inliers.len(), 500);
}

#[test]
fn random_matches_are_rejected() {
    let mut rng = Pcg32::new(10);
    let scene = build_scene(&mut rng, RigidCv::IDENTITY, &mut general_points, 300, 0.5, 1.0);
    assert!(verify(&scene).is_none());
}

#[test]
fn verify_pairs_runs_every_pair() {
    let mut rng = Pcg32::new(12);
    let motion = random_motion(&mut rng);
    let scene = build_scene(&mut rng, motion, &mut general_points, 400, 0.5, 0.3);
    let features = |keypoints: &[Keypoint]| Features {
        keypoints: keypoints.to_vec(),
        descriptors: vec![0.0; keypoints.len() * DESCRIPTOR_LEN],
        colors: Vec::new(),
    };
    let all = [features(&scene.keypoints_i), features(&scene.keypoints_j)];
    let cameras = [camera(), camera()];
    let matches = vec![((0, 1), scene.matches.clone()), ((0, 1), Vec::new()), ((0, 5), scene.matches.clone())];
    let done = std::sync::atomic::AtomicUsize::new(0);
    let count = |_, _| {
        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let result = verify_pairs(&all, &cameras, &matches, &VerifyOptions::default(), &count, &|| false).unwrap();
    assert_eq!(result.len(), 1, "only the real pair verifies");
    assert_eq!((result[0].i, result[0].j, result[0].config), (0, 1, TwoViewConfig::Calibrated));
    assert_eq!(done.into_inner(), 3);
}
