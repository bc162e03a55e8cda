//! Structure-from-motion accuracy gates on the shared datasets, from the photos alone (the
//! reference poses are read only to score the result):
//! - bunny-synth: 80/80 registered; after a similarity alignment to the exact Blender poses, median
//!   pairwise relative rotation error ≤ 0.05° and median camera-centre error ≤ 0.5 mm; mean
//!   reprojection error < 0.8 px;
//! - fox: 50/50 registered; median rotation difference to instant-ngp's COLMAP poses ≤ 0.3°, both
//!   between photo pairs and after aligning the orientations;
//! - sceaux-castle: 11/11 registered, mean reprojection error ≤ 1 px.
//!
//! These run the default settings (those of the medium, full and raw presets: 8192 features on
//! photos up to 1600 px). CI scores the same datasets' poses at `preview` settings inside the
//! end-to-end gates (`cli/tests/cli_reconstruct.rs`), from the job that also trains, meshes and
//! exports, instead of a second structure from motion of each set here (six minutes of CI's
//! two cores). Run these after changing the SfM:
//! `cargo test --release -p kiln-sfm --test sfm_datasets -- --ignored --nocapture`.
//! Without the datasets they print `SKIPPED` and pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_dataset::{Dataset, OpenOptions};
use kiln_sfm::eval::{PoseErrors, compare_poses, poses_by_file_name, registered_poses_by_file_name};
use kiln_sfm::pipeline::{PosesOptions, PosesResult, estimate_poses};
use kiln_vision::model::RigidCv;

fn dataset(name: &str) -> Option<PathBuf> {
    kiln_testkit::dataset(name)
}

/// Runs Kiln's SfM on `<dataset>/images` and prints the report summary.
fn poses(root: &std::path::Path) -> PosesResult {
    let images = root.join("images");
    let start = std::time::Instant::now();
    let result = estimate_poses(&images, &PosesOptions::default(), &mut |_| {}, &|| false).expect("poses");
    eprintln!("{}: poses in {:.1} s", root.display(), start.elapsed().as_secs_f64());
    result
}

fn reference(path: PathBuf) -> BTreeMap<String, RigidCv> {
    let options = OpenOptions { skip_missing_images: true, ..Default::default() };
    let dataset = Dataset::open_with(&path, &options).expect("reference dataset");
    poses_by_file_name(&dataset.views)
}

fn report(name: &str, result: &PosesResult, errors: Option<&PoseErrors>) -> (usize, f64) {
    let registered = registered_poses_by_file_name(&result.photos, &result.reconstruction).len();
    let (reprojection, observations) = result.reconstruction.mean_reprojection_error();
    eprintln!(
        "{name}: {registered}/{} registered, mean reprojection {reprojection:.3} px over {observations} observations, {} points",
        result.photos.photos.len() + result.photos.rejected.len(),
        result.reconstruction.points.len()
    );
    if let Some(e) = errors {
        eprintln!(
            "{name}: median relative rotation {:.4}° (mean {:.4}°), median absolute rotation {:.4}° after centre alignment, {:.4}° after orientation alignment, centre error median {:.3e} / max {:.3e} (reference units)",
            e.median_relative_rotation_deg,
            e.mean_relative_rotation_deg,
            e.median_rotation_deg,
            e.median_rotation_orientation_aligned_deg,
            e.median_center_error,
            e.max_center_error
        );
    }
    (registered, reprojection)
}

#[test]
#[ignore = "release-mode accuracy check of the default settings, minutes of CPU"]
fn bunny_synth_poses_match_ground_truth() {
    let Some(root) = dataset("bunny-synth") else { return };
    let result = poses(&root);
    let truth = reference(root.join("transforms.json"));
    let errors = compare_poses(&registered_poses_by_file_name(&result.photos, &result.reconstruction), &truth)
        .expect("comparable poses");
    let (registered, reprojection) = report("bunny-synth", &result, Some(&errors));
    assert_eq!(registered, 80, "every render must register");
    assert!(errors.median_relative_rotation_deg <= 0.05, "{errors:?}");
    // Metres: bunny-synth's poses are metric.
    assert!(errors.median_center_error <= 0.5e-3, "{errors:?}");
    assert!(reprojection < 0.8, "mean reprojection error {reprojection} px");
}

#[test]
#[ignore = "release-mode accuracy check of the default settings, minutes of CPU"]
fn fox_poses_match_colmap() {
    let Some(root) = dataset("fox") else { return };
    let result = poses(&root);
    let colmap = reference(root.join("transforms_present.json"));
    let errors = compare_poses(&registered_poses_by_file_name(&result.photos, &result.reconstruction), &colmap)
        .expect("comparable poses");
    let (registered, _) = report("fox", &result, Some(&errors));
    assert_eq!(registered, 50, "every photo must register");
    // Fox's cameras span little depth, so the similarity fitted to the camera centres carries
    // their noise into its rotation (0.60° median measured on 2026-11-23, while every pairwise
    // rotation agrees to 0.23°). The rotation difference is therefore scored after aligning the
    // orientations, and gauge-free between pairs; both must be within 0.3°.
    assert!(errors.median_relative_rotation_deg <= 0.3, "{errors:?}");
    assert!(errors.median_rotation_orientation_aligned_deg <= 0.3, "{errors:?}");
}

#[test]
#[ignore = "release-mode accuracy check of the default settings, minutes of CPU"]
fn sceaux_castle_registers_every_photo() {
    let Some(root) = dataset("sceaux-castle") else { return };
    let result = poses(&root);
    let (registered, reprojection) = report("sceaux-castle", &result, None);
    assert_eq!(registered, 11, "every photo must register");
    assert!(reprojection <= 1.0, "mean reprojection error {reprojection} px");
}
