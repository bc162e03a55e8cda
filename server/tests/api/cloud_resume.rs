//! A cloud job's folder taken on locally, and batches in the cloud, with the real `kiln` binary
//! against the real server and a `kiln-server worker`:
//! - a cloud job that fails after its capture check (bunny-mini's twelve small views give too few
//!   poses): `kiln cloud submit --wait` exits 7 and still downloads what the job finished, and
//!   `kiln reconstruct` of the same photos (from another folder) into that folder skips the check
//!   instead of running it again;
//! - `kiln batch <folder of two bunny-mini folders> --cloud --wait --yes`: the whole batch's quote
//!   shown, one batch of two jobs created, each job's outputs downloaded into its own job folder,
//!   which `kiln reconstruct` resumes like a local one; without `--yes` and without a terminal,
//!   nothing is spent.
//!
//! The binary is found as in `cloud_cli.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::cloud_cli::{
    COMMAND_TIMEOUT, JOB_TIMEOUT, WRITE, cloud_env, file_sha256, kiln, kiln_bin, photo_folder, scratch, stage_statuses,
};
use crate::common::TestServer;
use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// bunny-mini's photos (twelve 160 px views of a bunny).
fn bunny_mini() -> Vec<(String, Vec<u8>)> {
    support::photo_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/fixtures/bunny-mini/images"))
}

/// The settings every job here runs with, as `kiln` flags.
const SETTINGS: [&str; 6] = ["--preset", "preview", "--max-side", "100", "--steps", "400"];

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cloud_job_s_finished_stages_come_back_and_resume_locally() {
    let Some(bin) = kiln_bin() else { return };
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("resume-failed@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let root = scratch("resume-failed");
    let photos = bunny_mini();
    let input = photo_folder(&root.join("photos"), &photos);
    let out = root.join("job");
    let mut worker = support::spawn_worker(&server, "resume-failed", true);

    let mut args = vec!["cloud", "submit", input.to_str().unwrap(), "--wait", "--yes", "--out", out.to_str().unwrap()];
    args.extend(SETTINGS);
    let run = kiln(&bin, &args, &cloud_env(&server, &key), &root.join("submit"), JOB_TIMEOUT).await;
    assert_eq!(run.code, Some(7), "the cloud job fails: {}", run.describe());
    assert!(run.stderr.contains("ended failed"), "{}", run.stderr);
    assert!(run.stderr.contains("goes on locally"), "{}", run.stderr);
    // What the job finished came back where a local run keeps it.
    let record = out.join("check/stage.json");
    for file in ["manifest.json", "report.json", "check/check-report.json", "check/stage.json"] {
        assert!(out.join(file).is_file(), "{file} in {}", out.display());
    }
    assert!(!out.join("job-folder.zip").exists(), "the archive is unpacked and removed");
    let cloud_report = read_json(&out.join("report.json"));
    assert_eq!(cloud_report["status"], "failed");
    assert_eq!(cloud_report["stages"][0]["status"], "finished", "{cloud_report:#}");
    let check_record = std::fs::read(&record).unwrap();

    // The same photos from another folder: the check the cloud made stands; the job goes on
    // (and fails again at the same place: these photos give too few poses anywhere).
    let copy = photo_folder(&root.join("shots"), &photos);
    let mut args = vec!["reconstruct", copy.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(SETTINGS);
    let local = kiln(&bin, &args, &[], &root.join("local"), JOB_TIMEOUT).await;
    assert_eq!(local.code, Some(2), "{}", local.describe());
    let report = read_json(&out.join("report.json"));
    assert_eq!(stage_statuses(&report)[0], "skipped", "the cloud's check is not run again: {report:#}");
    assert_eq!(std::fs::read(&record).unwrap(), check_record);
    let check = read_json(&out.join("check/check-report.json"));
    let first = PathBuf::from(check["photos"][0]["path"].as_str().unwrap());
    assert!(first.starts_with(&copy) && first.is_file(), "pointed at the local photos: {}", first.display());

    assert!(support::wait_exit(&mut worker, Duration::from_secs(60)).await.success());
    std::fs::remove_dir_all(&root).unwrap();
    let _ = std::fs::remove_dir_all(support::work_dir("resume-failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_in_the_cloud_and_each_job_lands_in_its_own_folder() {
    let Some(bin) = kiln_bin() else { return };
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("resume-batch@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let root = scratch("batch");
    let photos = bunny_mini();
    let source = root.join("shoot");
    for name in ["mug", "vase"] {
        photo_folder(&source.join(name), &photos);
    }
    let out = root.join("jobs");
    let env = cloud_env(&server, &key);
    let mut args = vec!["batch", source.to_str().unwrap(), "--cloud", "--out", out.to_str().unwrap()];
    args.extend(SETTINGS);
    args.extend(["--until", "check"]);

    // Without --yes and no terminal: the batch's quote, then nothing spent.
    let run = kiln(&bin, &args, &env, &root.join("unconfirmed"), COMMAND_TIMEOUT).await;
    assert_eq!(run.code, Some(2), "{}", run.describe());
    assert!(run.stderr.contains("for the batch of 2 jobs"), "{}", run.stderr);
    let credits: Value = support::get(&server, &key, "/v1/credits").await.json().await.unwrap();
    assert_eq!(credits["reserved"], 0, "nothing reserved: {credits}");

    let mut worker = support::spawn_worker(&server, "resume-batch", false);
    args.extend(["--wait", "--yes"]);
    let run = kiln(&bin, &args, &env, &root.join("batch"), JOB_TIMEOUT).await;
    assert_eq!(run.code, Some(0), "{}", run.describe());
    // One quote for the batch, twice the one job's.
    let quote: Value =
        support::post(&server, &key, "/v1/quotes", &serde_json::json!({"photos": photos.len(), "preset": "preview"}))
            .await
            .json()
            .await
            .unwrap();
    let total = 2 * quote["credits"].as_i64().unwrap();
    assert!(run.stderr.contains(&format!("quote: {total} credits for the batch of 2 jobs")), "{}", run.stderr);

    let record = read_json(&out.join("cloud-batch.json"));
    let batch_id = record["batch_id"].as_str().unwrap();
    let batch: Value = support::get(&server, &key, &format!("/v1/batches/{batch_id}")).await.json().await.unwrap();
    assert_eq!(batch["state"], "completed", "{batch:#}");
    assert_eq!(batch["counts"]["succeeded"], 2, "{batch:#}");
    let items = record["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for (item, name) in items.iter().zip(["mug", "vase"]) {
        let folder = PathBuf::from(item["output"].as_str().unwrap());
        assert!(folder.ends_with(name), "{item}");
        assert_eq!(read_json(&folder.join("cloud-job.json"))["job_id"], item["job_id"]);
        let report = read_json(&folder.join("report.json"));
        assert_eq!(report["status"], "finished", "{report:#}");
        assert!(folder.join("check/stage.json").is_file() && folder.join("check/check-report.json").is_file());
        assert!(run.stdout.contains(item["job_id"].as_str().unwrap()), "{}", run.stdout);
    }

    // Each folder is a job folder: the same photos locally skip what the cloud did.
    let first = PathBuf::from(items[0]["output"].as_str().unwrap());
    let check = file_sha256(&first.join("check/stage.json"));
    let mug = source.join("mug");
    let mut args = vec!["reconstruct", mug.to_str().unwrap(), "--out", first.to_str().unwrap(), "--until", "check"];
    args.push("--json");
    args.extend(SETTINGS);
    let local = kiln(&bin, &args, &[], &root.join("local"), COMMAND_TIMEOUT).await;
    assert_eq!(local.code, Some(0), "{}", local.describe());
    assert_eq!(stage_statuses(&local.json())[0], "skipped");
    assert_eq!(file_sha256(&first.join("check/stage.json")), check);

    worker.kill().unwrap();
    let _ = worker.wait();
    std::fs::remove_dir_all(&root).unwrap();
    let _ = std::fs::remove_dir_all(support::work_dir("resume-batch"));
}
