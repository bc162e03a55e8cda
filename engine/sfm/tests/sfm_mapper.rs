//! The incremental mapper on synthetic scenes with known answers: cameras around a textured
//! sphere of points, keypoints = projections + 0.3 px noise, verified pairs from the true
//! correspondences plus wrong matches. Poses are compared after a similarity alignment.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use glam::{DVec2, DVec3};
use kiln_core::photos::{CameraGroup, ExifSummary, PhotoInfo, PhotoSet};
use kiln_core::rng::Pcg32;
use kiln_sfm::eval::compare_poses;
use kiln_sfm::mapper::{DropReason, MapperOptions, reconstruct};
use kiln_sfm::{Phase, PhaseProgress};
use kiln_vision::features::{Features, Keypoint};
use kiln_vision::model::{RadialCamera, RigidCv};
use kiln_vision::verify::{TwoViewConfig, TwoViewGeometry};

const WIDTH: u32 = 800;
const HEIGHT: u32 = 600;
const FOCAL: f64 = 700.0;

struct Scene {
    poses: Vec<RigidCv>,
    photos: PhotoSet,
    features: Vec<Features>,
    pairs: Vec<TwoViewGeometry>,
}

struct SceneSpec {
    /// Camera rings: (number of cameras, elevation in degrees, azimuth offset in degrees).
    rings: Vec<(usize, f64, f64)>,
    /// Centre of the point sphere and of the cameras' orbit.
    center: DVec3,
    points: usize,
    noise_px: f64,
    /// Wrong matches added to each pair, as a fraction of its true matches.
    outlier_fraction: f64,
    seed: u64,
}

fn gaussian2(rng: &mut Pcg32) -> DVec2 {
    DVec2::new(f64::from(rng.normal()), f64::from(rng.normal()))
}

/// Points on a bumpy sphere (radius 1.5 ± 0.3), visible from cameras on their outer side.
fn build_scene(spec: &SceneSpec) -> (Vec<RigidCv>, Vec<Features>, Vec<Vec<Option<usize>>>) {
    let mut rng = Pcg32::new(spec.seed);
    let mut poses = Vec::new();
    for &(count, elevation, offset) in &spec.rings {
        for k in 0..count {
            let azimuth = (offset + 360.0 * k as f64 / count as f64).to_radians();
            let e = elevation.to_radians();
            let center = spec.center + 6.0 * DVec3::new(e.cos() * azimuth.cos(), e.cos() * azimuth.sin(), e.sin());
            let jitter = DVec3::new(f64::from(rng.normal()), f64::from(rng.normal()), f64::from(rng.normal())) * 0.1;
            poses.push(RigidCv::look_at(center, spec.center + jitter, DVec3::Z));
        }
    }
    let points: Vec<(DVec3, DVec3)> = (0..spec.points)
        .map(|_| {
            let normal =
                DVec3::new(f64::from(rng.normal()), f64::from(rng.normal()), f64::from(rng.normal())).normalize();
            let radius = 1.5 + 0.3 * (f64::from(rng.uniform()) * 2.0 - 1.0);
            (spec.center + normal * radius, normal)
        })
        .collect();
    let camera = RadialCamera::pinhole(WIDTH, HEIGHT, FOCAL);
    let mut features = Vec::new();
    // Per photo, the keypoint of each point (if seen).
    let mut keypoint_of_point = Vec::new();
    for pose in &poses {
        let mut keypoints = Vec::new();
        let mut of_point = vec![None; points.len()];
        let mut order: Vec<usize> = (0..points.len()).collect();
        rng.shuffle(&mut order);
        for p in order {
            let (position, normal) = points[p];
            let facing = (pose.center() - position).normalize().dot(normal) > 0.25;
            let Some(pixel) = camera.project(pose.transform_point(position)) else { continue };
            let pixel = pixel + gaussian2(&mut rng) * spec.noise_px;
            let inside =
                pixel.x > 1.0 && pixel.y > 1.0 && pixel.x < f64::from(WIDTH) - 1.0 && pixel.y < f64::from(HEIGHT) - 1.0;
            if facing && inside {
                of_point[p] = Some(keypoints.len());
                keypoints.push(Keypoint { x: pixel.x as f32, y: pixel.y as f32, scale: 2.0, orientation: 0.0 });
            }
        }
        let colors = vec![[200, 100, 50]; keypoints.len()];
        features.push(Features { keypoints, descriptors: Vec::new(), colors });
        keypoint_of_point.push(of_point);
    }
    (poses, features, keypoint_of_point)
}

/// Verified pairs from the true correspondences of photos `images` (global indices), with
/// wrong matches added.
fn pairs_of(
    spec: &SceneSpec,
    poses: &[RigidCv],
    features: &[Features],
    keypoint_of_point: &[Vec<Option<usize>>],
    global: &dyn Fn(usize) -> usize,
) -> Vec<TwoViewGeometry> {
    let mut rng = Pcg32::new(spec.seed ^ 0xABCD);
    let mut pairs = Vec::new();
    for i in 0..poses.len() {
        for j in i + 1..poses.len() {
            let mut inliers: Vec<(u32, u32)> = keypoint_of_point[i]
                .iter()
                .zip(&keypoint_of_point[j])
                .filter_map(|(a, b)| Some((((*a)? as u32), ((*b)? as u32))))
                .collect();
            if inliers.len() < 40 {
                continue;
            }
            let outliers = (inliers.len() as f64 * spec.outlier_fraction) as usize;
            for _ in 0..outliers {
                inliers.push((rng.below(features[i].len()) as u32, rng.below(features[j].len()) as u32));
            }
            let relative = poses[j].compose(&poses[i].inverse());
            let baseline = relative.translation.length();
            let angle = (poses[i].center() - spec.center).angle_between(poses[j].center() - spec.center).to_degrees();
            pairs.push(TwoViewGeometry {
                i: global(i),
                j: global(j),
                config: TwoViewConfig::Calibrated,
                inliers,
                relative_pose: Some(RigidCv {
                    rotation: relative.rotation,
                    translation: relative.translation / baseline,
                }),
                essential: None,
                fundamental: None,
                homography: None,
                median_triangulation_angle_deg: angle,
            });
        }
    }
    pairs
}

fn photo_set(count: usize) -> PhotoSet {
    PhotoSet {
        input: PathBuf::from("synthetic"),
        photos: (0..count)
            .map(|k| PhotoInfo {
                path: PathBuf::from(format!("synthetic/{k:03}.png")),
                name: format!("{k:03}.png"),
                width: WIDTH,
                height: HEIGHT,
                exif: ExifSummary::default(),
                group: 0,
            })
            .collect(),
        groups: vec![CameraGroup {
            key: "synthetic".into(),
            prior: RadialCamera::pinhole(WIDTH, HEIGHT, FOCAL),
            focal_from_exif: true,
        }],
        rejected: Vec::new(),
    }
}

fn scene(spec: &SceneSpec) -> Scene {
    let (poses, features, kop) = build_scene(spec);
    let pairs = pairs_of(spec, &poses, &features, &kop, &|k| k);
    Scene { photos: photo_set(poses.len()), poses, features, pairs }
}

fn ring_spec(seed: u64) -> SceneSpec {
    SceneSpec {
        rings: vec![(10, 15.0, 0.0), (8, 40.0, 20.0)],
        center: DVec3::ZERO,
        points: 2000,
        noise_px: 0.3,
        outlier_fraction: 0.03,
        seed,
    }
}

fn named(poses: &[(usize, RigidCv)]) -> BTreeMap<String, RigidCv> {
    poses.iter().map(|(k, p)| (format!("{k:03}"), *p)).collect()
}

#[test]
fn synthetic_ring_registers_every_photo_accurately() {
    let spec = ring_spec(1);
    let s = scene(&spec);
    let mut phases = Vec::new();
    let mut progress = |p: &PhaseProgress| phases.push((p.phase, p.done, p.total));
    let result =
        reconstruct(&s.photos, &s.features, &s.pairs, &MapperOptions::default(), &mut progress, &|| false).unwrap();
    let rec = &result.reconstruction;
    assert_eq!(rec.num_registered(), s.poses.len(), "dropped: {:?}", result.dropped);
    assert!(result.dropped.is_empty());
    assert_eq!(result.components.len(), 1);
    let estimated: Vec<(usize, RigidCv)> =
        rec.registered_images().map(|i| (i, rec.images[i].camera_from_world.unwrap())).collect();
    let truth: Vec<(usize, RigidCv)> = s.poses.iter().copied().enumerate().collect();
    let errors = compare_poses(&named(&estimated), &named(&truth)).unwrap();
    println!("{errors:?}");
    let (mean_error, observations) = rec.mean_reprojection_error();
    println!("{} points, {observations} observations, mean reprojection error {mean_error:.3} px", rec.points.len());
    assert!(errors.median_relative_rotation_deg < 0.05, "{errors:?}");
    assert!(errors.median_rotation_deg < 0.05, "{errors:?}");
    assert!(errors.max_center_error < 0.01 * 6.0, "{errors:?}");
    assert!(mean_error < 0.5, "{mean_error}");
    assert!(rec.points.len() > 1500, "{} points", rec.points.len());
    assert!(phases.iter().any(|p| p.0 == Phase::Reconstruction && p.1 == s.poses.len() && p.2 == s.poses.len()));
    assert!(phases.iter().any(|p| p.0 == Phase::BundleAdjustment));
}

#[test]
fn two_unrelated_scenes_give_two_components_and_an_isolated_photo_is_dropped() {
    let a = ring_spec(2);
    let b = SceneSpec { rings: vec![(8, 20.0, 0.0)], center: DVec3::new(100.0, 0.0, 0.0), seed: 3, ..ring_spec(3) };
    let (poses_a, mut features, kop_a) = build_scene(&a);
    let (poses_b, features_b, kop_b) = build_scene(&b);
    let na = poses_a.len();
    let mut pairs = pairs_of(&a, &poses_a, &features, &kop_a, &|k| k);
    pairs.extend(pairs_of(&b, &poses_b, &features_b, &kop_b, &|k| k + na));
    features.extend(features_b);
    // One more photo that matches nothing (a textureless wall).
    features.push(Features::default());
    let total = features.len();
    let photos = photo_set(total);
    let result = reconstruct(&photos, &features, &pairs, &MapperOptions::default(), &mut |_| {}, &|| false).unwrap();
    assert_eq!(result.components.len(), 2, "{:?}", result.components);
    assert_eq!(result.components[0], (0..na).collect::<Vec<_>>());
    assert_eq!(result.components[1], (na..total - 1).collect::<Vec<_>>());
    assert_eq!(result.reconstruction.num_registered(), na);
    let reasons: BTreeMap<usize, DropReason> = result.dropped.iter().cloned().collect();
    assert_eq!(reasons.len(), total - na);
    assert_eq!(reasons[&(total - 1)], DropReason::NoVerifiedPairs);
    for k in na..total - 1 {
        assert_eq!(reasons[&k], DropReason::SeparateModel { component: 1 });
    }
}

#[test]
fn no_overlap_at_all_is_a_clear_error() {
    let features: Vec<Features> = (0..4).map(|_| Features::default()).collect();
    let photos = photo_set(4);
    let error = reconstruct(&photos, &features, &[], &MapperOptions::default(), &mut |_| {}, &|| false).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("no two photos overlap"), "{message}");
}

#[test]
fn mismatched_inputs_are_an_error_not_a_panic() {
    let photos = photo_set(3);
    let features = vec![Features::default(); 2];
    assert!(reconstruct(&photos, &features, &[], &MapperOptions::default(), &mut |_| {}, &|| false).is_err());
}

/// A focal prior 8 % off (no EXIF): every photo still registers and the final adjustment
/// recovers the focal length.
#[test]
fn wrong_focal_prior_is_corrected_by_the_final_adjustment() {
    let s = scene(&ring_spec(4));
    let mut photos = s.photos.clone();
    photos.groups[0].prior = RadialCamera::pinhole(WIDTH, HEIGHT, FOCAL * 1.08);
    photos.groups[0].focal_from_exif = false;
    let result =
        reconstruct(&photos, &s.features, &s.pairs, &MapperOptions::default(), &mut |_| {}, &|| false).unwrap();
    let rec = &result.reconstruction;
    let (mean_error, _) = rec.mean_reprojection_error();
    println!("camera {:?}, mean error {mean_error:.3} px", rec.cameras[0]);
    assert_eq!(rec.num_registered(), s.poses.len(), "dropped: {:?}", result.dropped);
    assert!((rec.cameras[0].focal / FOCAL - 1.0).abs() < 0.01, "focal {}", rec.cameras[0].focal);
    assert!(mean_error < 0.5, "{mean_error}");
}
