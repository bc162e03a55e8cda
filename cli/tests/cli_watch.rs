//! `kiln watch` end to end with the real binary, on small bunny-synth photo sets (jobs stop after
//! `poses` to stay cheap; `SKIPPED` without `$KILN_DATASETS`):
//! 1. two photo folders copied in slowly, file by file (pauses shorter than the quiet period):
//!    nothing is queued while they are being copied, then exactly two jobs;
//! 2. the watcher is killed (SIGKILL) while one job runs and the other waits; a restart resumes
//!    the interrupted one and runs the waiting one: both done, each folder's report finished;
//! 3. a third start redoes nothing (same attempts, report.json untouched);
//! 4. a folder of non-images fails with a clear line in watch.log while the watcher keeps running
//!    and then processes the next folder (whose `kiln.toml` stops it after the capture check);
//!    Ctrl-C (SIGINT) stops the watcher cleanly.

#![cfg(feature = "queue")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_queue::store::{JobState, QueueStore, QueuedJob};

/// Quiet period given to the watcher.
const QUIET_SECONDS: &str = "2";
/// Pause between copied files: longer than an inotify burst, shorter than the quiet period.
const COPY_PAUSE: Duration = Duration::from_millis(600);
/// Longest wait for any job to get somewhere on a loaded 2-core machine.
const JOB_TIMEOUT: Duration = Duration::from_secs(600);

fn synth_images() -> Option<PathBuf> {
    kiln_testkit::dataset("bunny-synth/images")
}

fn start_watcher(root: &Path, extra: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(root.join("stderr.txt")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("KILN_LOG", "info")
        .arg("watch")
        .arg(root.join("in"))
        .arg("--out")
        .arg(root.join("out"))
        .args(["--quiet-seconds", QUIET_SECONDS, "--preset", "preview", "--until", "poses"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn jobs(root: &Path) -> Vec<QueuedJob> {
    let path = root.join("out/queue.sqlite");
    if !path.exists() {
        return Vec::new();
    }
    QueueStore::open(&path).unwrap().jobs().unwrap()
}

fn wait_until(what: &str, root: &Path, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < JOB_TIMEOUT, "timed out waiting for {what}; stderr:\n{}", stderr(root));
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_for_exit(child: &mut Child, root: &Path) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < JOB_TIMEOUT, "the watcher did not exit; stderr:\n{}", stderr(root));
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stderr(root: &Path) -> String {
    std::fs::read_to_string(root.join("stderr.txt")).unwrap_or_default()
}

fn watch_log(root: &Path) -> String {
    std::fs::read_to_string(root.join("out/watch.log")).unwrap_or_default()
}

fn job_report(job: &QueuedJob) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(job.job_dir.join("report.json")).unwrap()).unwrap()
}

fn job_named<'a>(jobs: &'a [QueuedJob], name: &str) -> &'a QueuedJob {
    jobs.iter()
        .find(|j| j.input.file_name().is_some_and(|n| n == name))
        .unwrap_or_else(|| panic!("no job for {name}: {jobs:?}"))
}

#[test]
fn watch_queues_quiet_folders_once_survives_a_kill_and_keeps_going_after_a_failure() {
    let Some(source) = synth_images() else { return };
    let root = std::env::temp_dir().join(format!("kiln-cli-watch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("in")).unwrap();
    let views = |range: std::ops::Range<u32>| range.map(|k| format!("{k:04}.jpg")).collect::<Vec<_>>();
    let (set_a, set_b) = (views(17..27), views(41..51));

    // 1. Two folders copied in slowly, interleaved file by file.
    let mut watcher = start_watcher(&root, &[]);
    for (a, b) in set_a.iter().zip(&set_b) {
        for (folder, name) in [("shoot-a", a), ("shoot-b", b)] {
            std::fs::create_dir_all(root.join("in").join(folder)).unwrap();
            std::fs::copy(source.join(name), root.join("in").join(folder).join(name)).unwrap();
            std::thread::sleep(COPY_PAUSE);
            assert!(jobs(&root).is_empty(), "a folder still being copied must not be queued: {:?}", jobs(&root));
        }
    }
    // 2. Kill the watcher while one job runs and the other waits.
    wait_until("one job running and one queued", &root, || {
        let states: Vec<JobState> = jobs(&root).iter().map(|j| j.state).collect();
        states.contains(&JobState::Running) && states.contains(&JobState::Queued)
    });
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    let before_restart = jobs(&root);
    assert_eq!(before_restart.len(), 2, "exactly two jobs: {before_restart:?}");
    let interrupted = before_restart.iter().find(|j| j.state == JobState::Running).unwrap().id;

    let mut watcher = start_watcher(&root, &["--exit-when-idle"]);
    assert!(wait_for_exit(&mut watcher, &root).success(), "stderr:\n{}", stderr(&root));
    let after = jobs(&root);
    assert_eq!(after.len(), 2, "nothing new, nothing lost: {after:?}");
    for job in &after {
        assert_eq!(job.state, JobState::Done, "{job:?}\nlog:\n{}", watch_log(&root));
        let expected_attempts = if job.id == interrupted { 2 } else { 1 };
        assert_eq!(job.attempts, expected_attempts, "the killed job ran again once, the other once: {job:?}");
        let report = job_report(job);
        assert_eq!(report["status"], "finished", "{report}");
        assert!(report["metrics"]["poses"]["registered_images"].as_u64().unwrap() >= 8, "{report}");
    }

    // 3. A third start redoes nothing.
    let reports: Vec<Vec<u8>> = after.iter().map(|j| std::fs::read(j.job_dir.join("report.json")).unwrap()).collect();
    let mut watcher = start_watcher(&root, &["--exit-when-idle"]);
    assert!(wait_for_exit(&mut watcher, &root).success(), "stderr:\n{}", stderr(&root));
    assert_eq!(jobs(&root), after, "the queue is unchanged");
    let reports_again: Vec<Vec<u8>> =
        after.iter().map(|j| std::fs::read(j.job_dir.join("report.json")).unwrap()).collect();
    assert_eq!(reports_again, reports, "finished jobs are not run again");
    let log = watch_log(&root);
    assert!(log.contains("1 interrupted job(s) to resume"), "{log}");

    // 4. A folder of non-images fails clearly; the watcher goes on to the next folder.
    let mut watcher = start_watcher(&root, &[]);
    let junk = root.join("in/not-photos");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("readme.txt"), "no photos here").unwrap();
    std::fs::write(junk.join("broken.jpg"), b"\xff\xd8 not really a jpeg").unwrap();
    wait_until("the junk folder to fail", &root, || jobs(&root).iter().any(|j| j.state == JobState::Failed));
    let failed = job_named(&jobs(&root), "not-photos").clone();
    assert_eq!(failed.state, JobState::Failed);
    let log = watch_log(&root);
    let line = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("not-photos"))
        .unwrap_or_else(|| panic!("no failure line: {log}"));
    assert!(line.contains(&format!("job #{} failed", failed.id)), "{line}");
    assert!(watcher.try_wait().unwrap().is_none(), "the watcher keeps running after a failed job");

    let next = root.join("in/shoot-c");
    std::fs::create_dir_all(&next).unwrap();
    for name in views(60..66) {
        std::fs::copy(source.join(&name), next.join(&name)).unwrap();
    }
    std::fs::write(next.join("kiln.toml"), "until = \"check\"\n").unwrap();
    wait_until("the next folder to be done", &root, || {
        jobs(&root).iter().any(|j| j.input.ends_with("shoot-c") && matches!(j.state, JobState::Done | JobState::Failed))
    });
    let third = job_named(&jobs(&root), "shoot-c").clone();
    assert_eq!(third.settings.until, kiln_job::Stage::Check, "the sidecar overrides --until");
    assert!(!third.job_dir.join("poses").join("stage.json").exists(), "stopped after the check as kiln.toml says");
    assert_eq!(job_report(&third)["stages"][0]["stage"], "check");

    // Ctrl-C: a clean stop.
    let stopped = Command::new("kill").args(["-INT", &watcher.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    let status = wait_for_exit(&mut watcher, &root);
    assert!(status.success(), "Ctrl-C is a clean exit: {status:?}\n{}", stderr(&root));
    assert!(!root.join("out/watch.lock").exists(), "the lock is released on a clean stop");
    assert!(jobs(&root).iter().all(|j| matches!(j.state, JobState::Done | JobState::Failed)), "{:?}", jobs(&root));
    std::fs::remove_dir_all(&root).unwrap();
}
