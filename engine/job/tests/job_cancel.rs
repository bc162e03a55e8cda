//! A job cancelled in the middle of the poses stage and then of the mesh stage: it ends with
//! `JobError::Cancelled(stage)` soon after the flag is set (no later phase starts), report.json says
//! so, the stage leaves no completion record nor outputs under their final names, and the next call
//! finishes the job, skipping the stages that had finished.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Instant;

use common::{bunny_subset, tiny_settings};
use kiln_job::layout::{MESH_FILE, MESH_JSON_FILE};
use kiln_job::report::{StageRecord, StageStatus, read_report};
use kiln_job::{CancelFlag, EventKind, JobError, JobEvent, JobReport, Phase, Stage, run_job};
use kiln_sfm::pipeline::outputs::TRANSFORMS_FILE;

/// Runs the job, setting the cancel flag at the first progress event of `stage` in a phase that
/// `cancels` accepts; returns the outcome and the events, with the index of the cancelling one.
fn run(
    photos: &Path,
    job: &Path,
    stage: Option<Stage>,
    cancels: impl Fn(Phase) -> bool,
) -> (Result<JobReport, JobError>, Vec<JobEvent>, Option<usize>) {
    let flag = CancelFlag::default();
    let mut events = Vec::new();
    let mut cancelled_at = None;
    let mut cancel_time = None;
    let mut sink = |event: &JobEvent| {
        let hit = Some(event.stage) == stage && event.kind == EventKind::Progress && event.phase.is_some_and(&cancels);
        if hit && cancelled_at.is_none() {
            flag.cancel();
            cancelled_at = Some(events.len());
            cancel_time = Some(Instant::now());
            println!("cancelling at {:?} {:?}", event.stage, event.message);
        }
        events.push(event.clone());
    };
    let outcome = run_job(photos, job, &tiny_settings(), &flag, &mut sink);
    if let Some(time) = cancel_time {
        println!("run_job returned {:.2} s after the cancel", time.elapsed().as_secs_f64());
    }
    (outcome, events, cancelled_at)
}

fn statuses(job: &Path) -> Vec<StageStatus> {
    read_report(job).unwrap().stages.iter().map(|s| s.status).collect()
}

#[test]
fn cancelled_mid_poses_and_mid_mesh_then_resumed() {
    let root = std::env::temp_dir().join(format!("kiln-job-cancel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let Some(photos) = bunny_subset(&root) else { return };
    let job = root.join("job");

    // 1. Cancelled while features are extracted: nothing after the features phase runs.
    let (outcome, events, at) = run(&photos, &job, Some(Stage::Poses), |p| p == Phase::Features);
    let at = at.expect("the poses stage reported its features phase");
    assert!(matches!(outcome, Err(JobError::Cancelled(Stage::Poses))), "{outcome:?}");
    let later_phases = [Phase::Matching, Phase::Verification, Phase::Mapping, Phase::BundleAdjustment];
    let after = &events[at + 1..];
    assert!(
        !after.iter().any(|e| e.stage > Stage::Poses || e.phase.is_some_and(|p| later_phases.contains(&p))),
        "events after the cancel: {after:?}"
    );
    assert_eq!(after.last().map(|e| (e.stage, e.kind)), Some((Stage::Poses, EventKind::Failed)));
    let report = read_report(&job).unwrap();
    assert_eq!(report.stage(Stage::Poses).unwrap().status, StageStatus::Cancelled);
    assert_eq!(report.stage(Stage::Check).unwrap().status, StageStatus::Finished);
    assert!(StageRecord::read(&job, Stage::Check).is_some());
    assert!(StageRecord::read(&job, Stage::Poses).is_none(), "no record for the cancelled stage");
    assert!(!job.join("poses").join(TRANSFORMS_FILE).exists(), "no poses output");

    // 2. Cancelled after the first depth render of the mesh stage: no further view is rendered.
    let (outcome, events, at) = run(&photos, &job, Some(Stage::Mesh), |p| p == Phase::Surface);
    let at = at.expect("the mesh stage reported its surface renders");
    assert!(matches!(outcome, Err(JobError::Cancelled(Stage::Mesh))), "{outcome:?}");
    let after = &events[at + 1..];
    assert_eq!(after.len(), 1, "only the stage's end follows the cancel: {after:?}");
    assert_eq!((after[0].stage, after[0].kind), (Stage::Mesh, EventKind::Failed));
    use StageStatus::{Cancelled, Finished, Pending, Skipped};
    assert_eq!(statuses(&job), [Skipped, Finished, Finished, Cancelled, Pending]);
    assert!(StageRecord::read(&job, Stage::Train).is_some());
    assert!(StageRecord::read(&job, Stage::Mesh).is_none(), "no record for the cancelled stage");
    for name in [MESH_FILE, MESH_JSON_FILE] {
        assert!(!job.join("mesh").join(name).exists(), "no mesh output {name}");
    }

    // 3. Not cancelled: the finished stages are skipped, the rest run to the end.
    let (outcome, _, at) = run(&photos, &job, None, |_| false);
    assert_eq!(at, None);
    let report = outcome.unwrap();
    assert_eq!(
        report.stages.iter().map(|s| s.status).collect::<Vec<_>>(),
        [Skipped, Skipped, Skipped, Finished, Finished]
    );
    assert_eq!(statuses(&job), [Skipped, Skipped, Skipped, Finished, Finished]);
    assert!(job.join("mesh").join(MESH_FILE).is_file());
    assert!(report.outputs().iter().any(|f| f.path.ends_with("model.glb") && f.path.is_file()));
    std::fs::remove_dir_all(&root).unwrap();
}
