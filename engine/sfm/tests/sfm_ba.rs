//! Bundle adjustment on synthetic scenes with known answers: accuracy against the truth, robust
//! losses against outliers, local BA leaving fixed photos untouched, degenerate inputs, and a
//! timing run (`--ignored`, release) of a global BA at the size of an 80-photo capture.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use glam::{DMat3, DVec2, DVec3};
use kiln_sfm::ba::{BaOptions, RobustLoss, bundle_adjust};
use kiln_vision::model::{ImageState, Observation, RadialCamera, Reconstruction, RigidCv};

/// xorshift64* with Box–Muller: deterministic noise without a dependency.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }

    fn vector(&mut self) -> DVec3 {
        DVec3::new(self.normal(), self.normal(), self.normal())
    }
}

struct Scene {
    truth: Reconstruction,
    /// Per image, per keypoint: whether the measurement is an outlier.
    outlier: Vec<Vec<bool>>,
}

struct SceneSpec {
    cameras: usize,
    points: usize,
    /// Each point keeps at most this many observations (random photos among those that see it).
    max_track: usize,
    noise_px: f64,
    outlier_fraction: f64,
    seed: u64,
}

/// Photos on two rings (radius 4) around a 3×3×3 cube of points, two camera groups (even / odd photos) with
/// different focal lengths and distortion.
fn make_scene(spec: &SceneSpec) -> Scene {
    let mut rng = Rng(spec.seed);
    let groups = vec![
        RadialCamera { k1: -0.05, k2: 0.01, cx: 403.0, cy: 296.0, ..RadialCamera::pinhole(800, 600, 700.0) },
        RadialCamera { k1: 0.03, k2: -0.005, cx: 398.0, cy: 304.0, ..RadialCamera::pinhole(800, 600, 820.0) },
    ];
    let images = (0..spec.cameras)
        .map(|i| {
            let angle = std::f64::consts::TAU * i as f64 / spec.cameras as f64;
            let height = if i % 3 == 0 { 1.5 } else { -0.5 };
            let center = DVec3::new(4.0 * angle.cos(), 4.0 * angle.sin(), height);
            ImageState {
                camera: i % 2,
                camera_from_world: Some(RigidCv::look_at(center, DVec3::ZERO, DVec3::Z)),
                keypoints: Vec::new(),
                point_of_keypoint: Vec::new(),
            }
        })
        .collect();
    let mut truth = Reconstruction::new(groups, images);
    let mut outlier = vec![Vec::new(); spec.cameras];
    for _ in 0..spec.points {
        let position = DVec3::new(rng.uniform() - 0.5, rng.uniform() - 0.5, rng.uniform() - 0.5) * 3.0;
        let mut seen: Vec<(usize, DVec2)> = (0..spec.cameras)
            .filter_map(|i| {
                let image = &truth.images[i];
                let camera = truth.cameras[image.camera];
                let pixel = camera.project(image.camera_from_world?.transform_point(position))?;
                let inside = pixel.x > 0.0 && pixel.y > 0.0 && pixel.x < 800.0 && pixel.y < 600.0;
                inside.then_some((i, pixel))
            })
            .collect();
        while seen.len() > spec.max_track {
            let drop = (rng.uniform() * seen.len() as f64) as usize % seen.len();
            seen.swap_remove(drop);
        }
        if seen.len() < 2 {
            continue;
        }
        let mut track = Vec::new();
        for (i, pixel) in seen {
            let mut measured = pixel + DVec2::new(rng.normal(), rng.normal()) * spec.noise_px;
            let is_outlier = rng.uniform() < spec.outlier_fraction;
            if is_outlier {
                let angle = rng.uniform() * std::f64::consts::TAU;
                measured += DVec2::new(angle.cos(), angle.sin()) * (20.0 + 30.0 * rng.uniform());
            }
            let image = &mut truth.images[i];
            track.push(Observation { image: i, keypoint: image.keypoints.len() as u32 });
            image.keypoints.push(measured);
            image.point_of_keypoint.push(None);
            outlier[i].push(is_outlier);
        }
        truth.add_point(position, [128; 3], track);
    }
    Scene { truth, outlier }
}

/// The truth with every pose except photo 0 turned by ~1° and moved by ~1 cm, points moved by
/// ~1 cm and focal lengths off by 5 % (distortion and principal point as given by `intrinsics`).
fn perturbed(truth: &Reconstruction, seed: u64, intrinsics: bool) -> Reconstruction {
    let mut rng = Rng(seed);
    let mut start = truth.clone();
    for image in start.images.iter_mut().skip(1) {
        if let Some(pose) = image.camera_from_world.as_mut() {
            let axis = rng.vector().normalize();
            pose.rotation = DMat3::from_axis_angle(axis, 1f64.to_radians()) * pose.rotation;
            pose.translation += rng.vector().normalize() * 0.01;
        }
    }
    for point in start.points.values_mut() {
        point.position += rng.vector() * 0.01;
    }
    for (k, camera) in start.cameras.iter_mut().enumerate() {
        camera.focal *= if k == 0 { 1.05 } else { 0.95 };
        if intrinsics {
            camera.k1 = 0.0;
            camera.k2 = 0.0;
            camera.cx = 400.0;
            camera.cy = 300.0;
        }
    }
    start
}

fn angle_deg(a: DMat3, b: DMat3) -> f64 {
    let cos = (((a * b.transpose()).to_cols_array().iter().step_by(4).sum::<f64>() - 1.0) / 2.0).clamp(-1.0, 1.0);
    cos.acos().to_degrees()
}

/// Per-photo rotation errors (sorted) after removing the best common rotation of the world (the
/// gauge): `camera_from_world` estimates equal the truth times `G` up to noise; `G` is the
/// normalised mean of the per-photo quaternions `R_trueᵀ R_est`.
fn rotation_errors_deg(estimate: &Reconstruction, truth: &Reconstruction) -> Vec<f64> {
    let pairs: Vec<(DMat3, DMat3)> = estimate
        .images
        .iter()
        .zip(&truth.images)
        .filter_map(|(e, t)| Some((e.camera_from_world?.rotation, t.camera_from_world?.rotation)))
        .collect();
    let mean = pairs.iter().fold(glam::DQuat::from_xyzw(0.0, 0.0, 0.0, 0.0), |sum, (e, t)| {
        let q = glam::DQuat::from_mat3(&(t.transpose() * *e));
        sum + if q.w < 0.0 { -q } else { q }
    });
    let gauge = DMat3::from_quat(mean.normalize());
    let mut errors: Vec<f64> = pairs.iter().map(|(e, t)| angle_deg(*e, *t * gauge)).collect();
    errors.sort_by(f64::total_cmp);
    errors
}

/// Ratio of distances between camera centres, estimate over truth, for every photo to photo 0:
/// the largest deviation from a common scale.
fn max_relative_baseline_error(estimate: &Reconstruction, truth: &Reconstruction) -> f64 {
    let center = |r: &Reconstruction, i: usize| r.images[i].camera_from_world.map_or(DVec3::ZERO, |p| p.center());
    let ratios: Vec<f64> = (1..truth.images.len())
        .map(|i| center(estimate, i).distance(center(estimate, 0)) / center(truth, i).distance(center(truth, 0)))
        .collect();
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    ratios.iter().map(|r| (r / mean - 1.0).abs()).fold(0.0, f64::max)
}

/// RMS reprojection error over the observations that are not outliers.
fn inlier_rms(reconstruction: &Reconstruction, outlier: &[Vec<bool>]) -> f64 {
    let (sum, count) = reconstruction
        .points
        .values()
        .flat_map(|p| p.track.iter().map(move |o| (o, p.position)))
        .filter(|(o, _)| !outlier[o.image][o.keypoint as usize])
        .filter_map(|(o, x)| reconstruction.reprojection_error(*o, x))
        .fold((0.0, 0usize), |(s, c), e| (s + e * e, c + 1));
    (sum / count as f64).sqrt()
}

fn global(loss: RobustLoss, intrinsics: bool) -> BaOptions {
    BaOptions {
        variable_images: None,
        refine_focal: true,
        refine_principal_point: intrinsics,
        refine_distortion: intrinsics,
        loss,
        max_iterations: 100,
    }
}

const NOISE_PX: f64 = 0.5;

fn small_scene(outlier_fraction: f64) -> Scene {
    make_scene(&SceneSpec { cameras: 20, points: 2000, max_track: 20, noise_px: NOISE_PX, outlier_fraction, seed: 7 })
}

#[test]
fn global_ba_recovers_poses_and_shared_intrinsics() {
    let scene = small_scene(0.0);
    let mut estimate = perturbed(&scene.truth, 11, true);
    let summary = bundle_adjust(&mut estimate, &global(RobustLoss::Trivial, true)).expect("bundle adjustment");
    println!("{summary:?}");
    // |r| of 2-D Gaussian noise has RMS sqrt(2) σ; the fit absorbs a few of the degrees of freedom.
    let expected = NOISE_PX * 2f64.sqrt();
    assert!(summary.initial_rms_px > 10.0 * expected, "{summary:?}");
    assert!(summary.final_rms_px < expected * 1.02 && summary.final_rms_px > expected * 0.9, "{summary:?}");
    // The same BA started at the truth reaches the maximum-likelihood answer for this noise: the
    // perturbed start must land on it, and both must be near the truth.
    let mut from_truth = scene.truth.clone();
    bundle_adjust(&mut from_truth, &global(RobustLoss::Trivial, true)).expect("bundle adjustment");
    let to_optimum = rotation_errors_deg(&estimate, &from_truth);
    assert!(to_optimum[to_optimum.len() - 1] < 0.005, "not converged: {to_optimum:?}");
    let errors = rotation_errors_deg(&estimate, &scene.truth);
    println!("rotation error vs truth: median {}°, max {}°", errors[errors.len() / 2], errors[errors.len() - 1]);
    assert!(errors[errors.len() / 2] < 0.02 && errors[errors.len() - 1] < 0.05, "rotation errors {errors:?}");
    let baseline_error = max_relative_baseline_error(&estimate, &scene.truth);
    assert!(baseline_error < 1e-3, "baseline error {baseline_error}");
    for (got, want) in estimate.cameras.iter().zip(&scene.truth.cameras) {
        assert!((got.focal / want.focal - 1.0).abs() < 2e-3, "focal {} vs {}", got.focal, want.focal);
        assert!((got.k1 - want.k1).abs() < 5e-3, "k1 {} vs {}", got.k1, want.k1);
        assert!(
            (got.cx - want.cx).abs() < 1.0 && (got.cy - want.cy).abs() < 1.0,
            "principal point {got:?} vs {want:?}"
        );
    }
    // The anchor photo keeps its pose exactly.
    assert_eq!(estimate.images[0].camera_from_world, perturbed(&scene.truth, 11, true).images[0].camera_from_world);
}

#[test]
fn cauchy_loss_ignores_outliers_and_trivial_does_not() {
    let scene = small_scene(0.05);
    let start = perturbed(&scene.truth, 13, false);
    let mut robust = start.clone();
    bundle_adjust(&mut robust, &global(RobustLoss::Cauchy { scale_px: 1.0 }, false)).expect("bundle adjustment");
    let mut plain = start;
    bundle_adjust(&mut plain, &global(RobustLoss::Trivial, false)).expect("bundle adjustment");
    let (robust_rms, plain_rms) = (inlier_rms(&robust, &scene.outlier), inlier_rms(&plain, &scene.outlier));
    println!("inlier RMS: cauchy {robust_rms}, trivial {plain_rms}");
    let expected = NOISE_PX * 2f64.sqrt();
    assert!(robust_rms < expected * 1.05, "cauchy inlier RMS {robust_rms}");
    assert!(plain_rms > expected * 1.3, "trivial inlier RMS {plain_rms}");
    assert!(rotation_errors_deg(&robust, &scene.truth).last().is_some_and(|e| *e < 0.05));
}

#[test]
fn huber_loss_also_resists_outliers() {
    let scene = small_scene(0.05);
    let mut estimate = perturbed(&scene.truth, 17, false);
    bundle_adjust(&mut estimate, &global(RobustLoss::Huber { scale_px: 1.0 }, false)).expect("bundle adjustment");
    let rms = inlier_rms(&estimate, &scene.outlier);
    assert!(rms < NOISE_PX * 2f64.sqrt() * 1.15, "huber inlier RMS {rms}");
}

#[test]
fn local_ba_leaves_fixed_photos_untouched() {
    let scene = small_scene(0.0);
    let variable: BTreeSet<usize> = [4, 5, 6].into();
    // Only the variable photos (and the points) start away from the truth.
    let mut start = perturbed(&scene.truth, 19, false);
    start.cameras = scene.truth.cameras.clone();
    for (i, image) in start.images.iter_mut().enumerate().filter(|(i, _)| !variable.contains(i)) {
        image.camera_from_world = scene.truth.images[i].camera_from_world;
    }
    let options = BaOptions {
        variable_images: Some(variable.clone()),
        refine_focal: false,
        refine_principal_point: false,
        refine_distortion: false,
        loss: RobustLoss::Cauchy { scale_px: 1.0 },
        max_iterations: 25,
    };
    let mut estimate = start.clone();
    let summary = bundle_adjust(&mut estimate, &options).expect("bundle adjustment");
    assert!(summary.final_rms_px < NOISE_PX * 2f64.sqrt() * 1.05 && summary.initial_rms_px > 3.0, "{summary:?}");
    assert_eq!(estimate.cameras, start.cameras);
    for (i, (got, was)) in estimate.images.iter().zip(&start.images).enumerate() {
        if variable.contains(&i) {
            assert_ne!(got.camera_from_world, was.camera_from_world, "photo {i} should move");
        } else {
            assert_eq!(got.camera_from_world, was.camera_from_world, "photo {i} is fixed");
        }
    }
    for (id, point) in &estimate.points {
        let seen_by_variable = point.track.iter().any(|o| variable.contains(&o.image));
        if !seen_by_variable {
            assert_eq!(point.position, start.points[id].position, "point {id} is seen by fixed photos only");
        }
    }
}

#[test]
fn results_are_deterministic() {
    let scene = small_scene(0.02);
    let start = perturbed(&scene.truth, 23, true);
    let mut a = start.clone();
    let mut b = start;
    let sa = bundle_adjust(&mut a, &global(RobustLoss::Cauchy { scale_px: 1.0 }, true)).expect("bundle adjustment");
    let sb = bundle_adjust(&mut b, &global(RobustLoss::Cauchy { scale_px: 1.0 }, true)).expect("bundle adjustment");
    assert_eq!(sa, sb);
    assert!(a == b, "two runs differ");
}

#[test]
fn degenerate_inputs_return_cleanly() {
    let mut empty = Reconstruction::default();
    let summary = bundle_adjust(&mut empty, &BaOptions::default()).expect("empty");
    assert_eq!((summary.observations, summary.iterations), (0, 0));

    // Points behind some of the photos: photos on both sides of the points, facing the same way.
    let scene = small_scene(0.0);
    let mut odd = perturbed(&scene.truth, 29, false);
    for point in odd.points.values_mut().take(200) {
        point.position *= -30.0;
    }
    let summary =
        bundle_adjust(&mut odd, &global(RobustLoss::Cauchy { scale_px: 1.0 }, false)).expect("behind-camera points");
    assert!(summary.final_rms_px.is_finite() && summary.final_rms_px <= summary.initial_rms_px, "{summary:?}");
    assert!(odd.points.values().all(|p| p.position.is_finite()));
    assert!(
        odd.images
            .iter()
            .all(|i| i.camera_from_world.is_some_and(|p| p.translation.is_finite() && p.rotation.is_finite()))
    );

    // Nothing variable: an empty set of variable photos.
    let mut fixed = perturbed(&scene.truth, 31, false);
    let before = fixed.clone();
    let options = BaOptions { variable_images: Some(BTreeSet::new()), ..BaOptions::default() };
    let summary = bundle_adjust(&mut fixed, &options).expect("no variable photo");
    assert_eq!(summary.observations, 0);
    assert!(fixed == before);

    // Invalid loss scale is an error, not a panic.
    assert!(
        bundle_adjust(&mut fixed, &BaOptions { loss: RobustLoss::Cauchy { scale_px: 0.0 }, ..BaOptions::default() })
            .is_err()
    );
}
