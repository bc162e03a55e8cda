//! The mat found in real renders: `engine/fixtures/mat-box` (Blender Cycles renders of a box on
//! the printed A4 mat, `scripts/hard_sets/make_mat_set.py`) with its exact poses, whose world is
//! metric with the mat centred at the origin on z = 0: the fit must give that frame back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use glam::DVec3;
use kiln_dataset::{Dataset, load_views};
use kiln_mat::{detect_markers, fit_mat};

#[test]
fn the_mat_in_renders_with_exact_poses_gives_millimetres_and_the_ground() {
    let fixture = kiln_testkit::workspace_root().join("engine/fixtures/mat-box");
    let dataset = Dataset::open(&fixture).unwrap();
    let views = load_views(&dataset.views, 400).unwrap();
    let sightings: Vec<_> = views.iter().map(|(_, image, _)| detect_markers(image).unwrap()).collect();
    let seen: usize = sightings.iter().map(Vec::len).sum();
    println!("{seen} marker sightings in {} photos", views.len());
    assert!(seen >= 6 * views.len(), "about half the markers in each photo: {seen}");
    let cameras: Vec<_> = views.iter().map(|(camera, _, _)| *camera).collect();
    let fit = fit_mat(&cameras, &sightings).unwrap();
    println!(
        "{}: {} markers, {} corners ({} rejected), RMS {:.3} mm, scale {:.2} mm per world unit",
        fit.layout.name, fit.markers, fit.corners, fit.corners_rejected, fit.rms_mm, fit.mat_from_world.scale
    );
    assert_eq!(fit.layout.name, "kiln-mat-a4-v1");
    assert!(fit.markers >= 8, "{} markers", fit.markers);
    assert!(fit.rms_mm < 1.0, "{}", fit.rms_mm);
    // The world is in metres: 1000 mm per unit, within 0.3 %.
    assert!((fit.mat_from_world.scale / 1000.0 - 1.0).abs() < 3e-3, "{}", fit.mat_from_world.scale);
    // The mat's frame is the world's (mm), so its origin and axes come back.
    let origin = fit.mat_from_world.apply(DVec3::ZERO);
    assert!(origin.length() < 1.0, "world origin at {origin} mm on the mat");
    let up = fit.mat_from_world.rotation * DVec3::Z;
    assert!(up.angle_between(DVec3::Z) < 0.005, "the mat's normal is world +Z: {up}");
    let x = fit.mat_from_world.rotation * DVec3::X;
    assert!(x.angle_between(DVec3::X) < 0.005, "the mat's +X is world +X: {x}");
}
