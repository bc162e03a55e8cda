//! The job's verdict on its own model: a real job on bunny-synth photos gets a verdict that is not
//! `failed`, with figures measured on held-out views; the same job with its mesh replaced by a
//! plane (what a lost object looks like) is judged `failed`, names the reason, and its export is
//! made again under the failed name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{bunny_subset, tiny_settings};
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::ply::write_mesh;
use kiln_job::layout::MESH_FILE;
use kiln_job::layout::VERDICT_FILE;
use kiln_job::mesh_stage::read_mesh_dir;
use kiln_job::verdict::{FindingCode, ModelVerdict, RegionSource};
use kiln_job::{CancelFlag, JobReport, run_job};

fn run(photos: &std::path::Path, job: &std::path::Path) -> JobReport {
    run_job(photos, job, &tiny_settings(), &CancelFlag::default(), &mut |_| {}).unwrap()
}

/// A flat square through the middle of `mesh`'s box, level in the export frame (+Y up), with UVs.
fn plane_through(mesh: &TriMesh) -> TriMesh {
    let (lo, hi) = mesh.bounds().unwrap();
    let y = 0.5 * (lo[1] + hi[1]);
    let positions = vec![[lo[0], y, lo[2]], [hi[0], y, lo[2]], [hi[0], y, hi[2]], [lo[0], y, hi[2]]];
    TriMesh {
        positions,
        triangles: vec![[0, 2, 1], [0, 3, 2]],
        normals: vec![[0.0, 1.0, 0.0]; 4],
        uvs: vec![[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]],
        colors: Vec::new(),
    }
}

#[test]
fn a_good_job_is_not_failed_and_a_plane_in_its_place_is() {
    let root = std::env::temp_dir().join(format!("kiln-job-verdict-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let Some(photos) = bunny_subset(&root) else { return };
    let job = root.join("job");

    let report = run(&photos, &job);
    let quality = report.metrics.quality.clone().expect("the verdict measured held-out views");
    println!("verdict {:?}: {quality:?}\nfindings {:#?}", report.verdict, report.findings);
    assert!(report.verdict.is_some_and(|v| v != ModelVerdict::Failed), "{:?}: {:#?}", report.verdict, report.findings);
    assert!(!quality.views.is_empty());
    assert_eq!(quality.object_region, RegionSource::AutomaticMasks, "bunny-synth's photos come without masks");
    assert!(quality.silhouette_iou > 0.5 && quality.depth_agreement > 0.5, "{quality:?}");
    assert!(report.outputs().iter().any(|f| f.path.ends_with("model.glb")));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job.join("report.json")).unwrap()).unwrap();
    assert!(json["verdict"].is_string(), "report.json has a top-level verdict: {}", json["verdict"]);

    // The mesh replaced by a plane across the object's box, the verdict measured again.
    let mesh_dir = job.join("mesh");
    let (model, _) = read_mesh_dir(&mesh_dir).unwrap();
    write_mesh(&mesh_dir.join(MESH_FILE), &plane_through(&model.mesh)).unwrap();
    std::fs::remove_file(mesh_dir.join(VERDICT_FILE)).unwrap();
    let report = run(&photos, &job);
    println!("with a plane: {:?} {:?}\nfindings {:#?}", report.verdict, report.metrics.quality, report.findings);
    assert_eq!(report.verdict, Some(ModelVerdict::Failed));
    let failing: Vec<FindingCode> =
        report.findings.iter().filter(|f| f.severity == ModelVerdict::Failed).map(|f| f.code).collect();
    assert!(
        failing.iter().any(|c| matches!(c, FindingCode::Silhouette | FindingCode::Depth)),
        "failed for its shape: {:#?}",
        report.findings
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["verdict"], "failed");
    let names: Vec<String> =
        report.outputs().iter().map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["model.failed.glb"], "the export is kept, named as failed");
    assert!(!job.join("export/model.glb").exists(), "no model.glb beside the failed one");
    std::fs::remove_dir_all(&root).unwrap();
}
