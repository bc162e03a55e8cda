//! Real `kiln-server worker` processes running the engine on the CPU against a real server,
//! PostgreSQL and SeaweedFS:
//! - photos → upload (presigned multipart, a part sent twice, the upload resumed) → job → a
//!   worker runs it → progress over SSE → outputs downloaded through presigned URLs → the GLB
//!   passes the Khronos glTF-Validator (`KILN_GLTF_VALIDATOR`);
//! - a worker killed with SIGKILL mid-job: the lease expires, a second worker finishes the job,
//!   which ends once (attempt 2) with one set of outputs, and the dead attempt's late finish is
//!   refused;
//! - a job canceled while a worker runs it ends `canceled`, and the worker goes on (`--once`:
//!   exits);
//! - SIGTERM: the worker stops the engine, hands the job back to the queue and exits 0.
//!
//! Jobs run at CI size (preview preset, 100-px views, 400 training steps, GLB only) on every
//! 4th bunny-synth photo: bunny-mini's 12 small views are too few for poses (see
//! cli/tests/cli_reconstruct.rs), so they only make a job fail with `bad_input`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::support;

use std::time::Duration;

use common::{Options, TestServer, error_code};
use serde_json::{Value, json};
use support::{
    bunny_subset, complete, get, post, put_parts, read_events, spawn_worker, states, submit, upload, wait_exit,
    wait_for, worker_call,
};
use uuid::Uuid;

const WRITE: [&str; 2] = ["jobs:read", "jobs:write"];

/// A whole job in a minute or two of a debug build on two cores.
fn ci_settings() -> Value {
    json!({"preset": "preview", "max_side": 100, "train_steps": 400, "formats": ["glb"]})
}

/// How long a CI-sized job may take on a busy 2-core machine in a debug build.
const JOB_TIMEOUT: Duration = Duration::from_secs(900);

/// Runs the glTF validator wrapper on `file`; without one, fails under `KILN_REQUIRE_SERVICES=1`
/// (scripts/test.sh) and says SKIPPED otherwise.
fn validate_glb(file: &std::path::Path) {
    let Ok(wrapper) = std::env::var("KILN_GLTF_VALIDATOR") else {
        let required = std::env::var("KILN_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        assert!(!required, "KILN_GLTF_VALIDATOR is not set (scripts/test.sh sets it from scripts/validators.sh)");
        println!("SKIPPED: KILN_GLTF_VALIDATOR is not set; {} not validated", file.display());
        return;
    };
    let output = std::process::Command::new(&wrapper).arg(file).output().unwrap();
    assert!(
        output.status.success(),
        "{wrapper} rejected {}:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_to_a_validated_glb_through_a_worker_process() {
    let Some(server) = TestServer::start().await else { return };
    let server = std::sync::Arc::new(server);
    let Some(photos) = bunny_subset() else { return };
    let account = server.signup("worker-e2e@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;

    // Upload through presigned multipart: half the parts, one of them sent twice (a retried part
    // overwrites itself), then the upload resumed from what the server says is still missing.
    let declared: Vec<Value> = photos
        .iter()
        .map(|(name, bytes)| {
            json!({"name": name, "size": bytes.len(), "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))})
        })
        .collect();
    let response = post(&server, &key, "/v1/uploads", &json!({"files": declared})).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let upload_id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let half = photos.len() / 2;
    assert_eq!(put_parts(&server, &created, &photos, half).await, half);
    assert_eq!(put_parts(&server, &created, &photos, 1).await, 1, "the first part again");
    let resumed: Value = get(&server, &key, &format!("/v1/uploads/{upload_id}")).await.json().await.unwrap();
    let missing: usize =
        resumed["files"].as_array().unwrap().iter().map(|f| f["parts"].as_array().unwrap().len()).sum();
    assert_eq!(missing, photos.len() - half, "the server lists what is still missing");
    put_parts(&server, &resumed, &photos, usize::MAX).await;
    complete(&server, &key, upload_id).await;

    let job = submit(&server, &key, upload_id, ci_settings(), "standard").await;
    let id = job["id"].as_str().unwrap().to_string();
    // Follow the events live, from before the worker starts.
    let stream = {
        let (reader, key, id) = (server.clone(), key.clone(), id.clone());
        tokio::spawn(async move { read_events(&reader, &key, &id, None, JOB_TIMEOUT).await })
    };
    let mut worker = spawn_worker(&server, "e2e", true);
    let done = wait_for(&server, &key, &id, JOB_TIMEOUT, |j| j["state"] != "queued" && j["state"] != "running").await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let status = wait_exit(&mut worker, Duration::from_secs(60)).await;
    assert!(status.success(), "the worker exits 0 after its one job (--once)");

    let events = stream.await.unwrap();
    assert_eq!(states(&events), ["queued", "running", "succeeded"]);
    assert_eq!(events.last().unwrap().kind, "state", "the stream ends with the final state");
    let fractions: Vec<f64> =
        events.iter().filter(|e| e.kind == "progress").map(|e| e.data["fraction"].as_f64().unwrap()).collect();
    assert!(fractions.len() >= 5, "progress events: {fractions:?}");
    assert!(fractions.windows(2).all(|w| w[1] >= w[0] - 1e-9), "fractions rise: {fractions:?}");
    assert!(fractions.last().unwrap() > &0.9 && fractions[0] < 0.2, "{fractions:?}");
    let stages: Vec<&str> = events.iter().filter_map(|e| e.data["stage"].as_str()).collect();
    for stage in ["check", "poses", "train", "mesh", "export"] {
        assert!(stages.contains(&stage), "progress from {stage}");
    }

    // The job: report, outputs with hashes, device time, retention.
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["report"]["status"], "finished");
    assert!(done["gpu_seconds"].as_f64().unwrap() > 1.0);
    assert!(done["expires_at"].is_string());
    // The job folder's shipped files, each once: what `kiln view` and `kiln export` read.
    let names: Vec<&str> = done["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    let shipped = ["manifest.json", "report.json", "check-report.json", "transforms.json", "splats.ply", "mesh.ply"];
    for name in shipped.into_iter().chain(["basecolor.png", "mesh.json", "model.glb"]) {
        assert_eq!(names.iter().filter(|n| **n == name).count(), 1, "{name} in {names:?}");
    }
    let root = std::env::temp_dir().join(format!("kiln-server-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    for output in done["outputs"].as_array().unwrap() {
        let name = output["name"].as_str().unwrap();
        let response = get(&server, &key, &format!("/v1/jobs/{id}/outputs/{name}")).await;
        assert_eq!(response.status(), 200, "followed to storage");
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, output["size"].as_u64().unwrap());
        assert_eq!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)), output["sha256"].as_str().unwrap());
        std::fs::write(root.join(name), &bytes).unwrap();
    }
    let report: Value = serde_json::from_slice(&std::fs::read(root.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["status"], "finished");
    // The worker's own folders are not the customer's business: every path is relative.
    let work_dir = support::work_dir("e2e");
    let json_files =
        names.iter().filter(|n| n.ends_with(".json")).map(|n| std::fs::read_to_string(root.join(n)).unwrap());
    for text in json_files.chain([done["report"].to_string()]) {
        assert!(!text.contains(&*work_dir.to_string_lossy()), "the worker's folder leaks: {text}");
    }
    assert_eq!(report["job_dir"], "job");
    validate_glb(&root.join("model.glb"));

    // kiln-cloud puts the outputs back into a job folder, where `kiln export` re-exports the mesh.
    let client = kiln_cloud::Client::new(kiln_cloud::ClientConfig {
        credential: Some(kiln_cloud::Credential::ApiKey(key.clone())),
        ..kiln_cloud::ClientConfig::new(server.url.parse().unwrap())
    })
    .unwrap();
    let job: kiln_api::jobs::Job = serde_json::from_value(done.clone()).unwrap();
    let layout = kiln_job::JobLayout::new(root.join("job"));
    kiln_cloud::download::download_outputs(&client, &job, layout.root(), |_| {}).await.unwrap();
    assert!(layout.splats().is_file() && layout.transforms().is_file() && layout.manifest().is_file());
    let mesh = layout.stage(kiln_job::Stage::Mesh);
    let again = kiln_job::mesh_stage::export_mesh_dir(&mesh, &root.join("again"), &[kiln_job::Format::Glb], "model")
        .expect("the downloaded mesh folder re-exports");
    validate_glb(&again[0]);
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(support::work_dir("e2e")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_job_is_finished_once_by_another() {
    let options = Options { lease: Duration::from_secs(4), ..Options::default() };
    let Some(server) = TestServer::start_with(options).await else { return };
    let Some(photos) = bunny_subset() else { return };
    let account = server.signup("worker-kill@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let upload_id = upload(&server, &key, &photos).await;
    // The capture check alone: seconds of work with progress, enough to be killed in.
    let job = submit(&server, &key, upload_id, json!({"preset": "preview", "until": "check"}), "standard").await;
    let id = job["id"].as_str().unwrap().to_string();
    let id_uuid: Uuid = id.parse().unwrap();

    let mut doomed = spawn_worker(&server, "doomed", false);
    let progress_count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM job_events WHERE job_id = $1 AND kind = 'progress'")
            .bind(id_uuid)
            .fetch_one(&server.db)
            .await
            .unwrap()
    };
    let deadline = std::time::Instant::now() + JOB_TIMEOUT;
    while progress_count().await == 0 {
        assert!(doomed.try_wait().unwrap().is_none(), "the worker exited before sending progress");
        assert!(std::time::Instant::now() < deadline, "no progress from the first worker");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    doomed.kill().unwrap(); // SIGKILL
    doomed.wait().unwrap();
    let running = support::job(&server, &key, &id).await;
    assert_eq!((running["state"].as_str(), running["attempts"].as_i64()), (Some("running"), Some(1)), "{running:#}");

    let requeued = wait_for(&server, &key, &id, Duration::from_secs(30), |j| j["state"] != "running").await;
    assert_eq!(requeued["state"], "queued", "the expired lease puts the job back");
    let mut heir = spawn_worker(&server, "heir", true);
    let done = wait_for(&server, &key, &id, JOB_TIMEOUT, |j| j["state"] != "queued" && j["state"] != "running").await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(done["attempts"], 2);
    assert!(wait_exit(&mut heir, Duration::from_secs(60)).await.success());

    // One set of outputs, the second attempt's.
    let names: Vec<&str> = done["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    // The check's record and the rest of the stage folders travel in the job-folder archive.
    assert_eq!(names, ["manifest.json", "report.json", "check-report.json", "job-folder.zip"]);
    let stored: Value =
        sqlx::query_scalar("SELECT outputs FROM jobs WHERE id = $1").bind(id_uuid).fetch_one(&server.db).await.unwrap();
    for output in stored.as_array().unwrap() {
        assert!(output["object_key"].as_str().unwrap().contains(&format!("/jobs/{id}/attempt-2/")), "{output}");
    }
    let report: Value = get(&server, &key, &format!("/v1/jobs/{id}/outputs/report.json")).await.json().await.unwrap();
    assert_eq!(report["status"], "finished");
    // Ended once: one final state event, after the requeue.
    let events = read_events(&server, &key, &id, None, Duration::from_secs(10)).await;
    assert_eq!(states(&events), ["queued", "running", "queued", "running", "succeeded"]);
    let reasons: Vec<&str> =
        events.iter().filter(|e| e.kind == "state").map(|e| e.data["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons[2], "lease_expired");

    // The dead attempt's late calls are refused; the job stays as it ended.
    let late = json!({"worker_id": "doomed", "attempt": 1, "outcome": "failed", "device_seconds": 1,
                      "error": {"code": "internal_error", "message": "late", "class": "internal"}});
    let response = worker_call(&server, &format!("/v1/worker/jobs/{id}/finish"), &late).await;
    assert_eq!(error_code(response).await, (409, "lease_lost".into()));
    let response =
        worker_call(&server, &format!("/v1/worker/jobs/{id}/heartbeat"), &json!({"worker_id": "doomed", "attempt": 1}))
            .await;
    assert_eq!(error_code(response).await, (409, "lease_lost".into()));
    let after = support::job(&server, &key, &id).await;
    assert_eq!((after["state"].as_str(), after["error"].is_null()), (Some("succeeded"), true));
    // The killed worker's folder is left behind (as on a dead machine); the heir cleaned its own.
    std::fs::remove_dir_all(support::work_dir("doomed")).unwrap();
    std::fs::remove_dir_all(support::work_dir("heir")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_canceled_stops_and_the_worker_goes_on() {
    let Some(server) = TestServer::start().await else { return };
    let Some(photos) = bunny_subset() else { return };
    let account = server.signup("worker-cancel@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let upload_id = upload(&server, &key, &photos).await;
    let job = submit(&server, &key, upload_id, ci_settings(), "standard").await;
    let id = job["id"].as_str().unwrap().to_string();
    let mut worker = spawn_worker(&server, "canceled", true);
    // Canceled once the engine is into pose estimation (it polls the flag between units there).
    wait_for(&server, &key, &id, JOB_TIMEOUT, |j| j["stage"] == "poses").await;
    let response = post(&server, &key, &format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(response.status(), 200);
    let flagged: Value = response.json().await.unwrap();
    assert_eq!(flagged["cancel_requested"], true);
    let done = wait_for(&server, &key, &id, Duration::from_secs(120), |j| j["state"] != "running").await;
    assert_eq!(done["state"], "canceled", "{done:#}");
    assert_eq!(done["error"]["code"], "canceled");
    assert_eq!(done["attempts"], 1);
    assert!(done["gpu_seconds"].as_f64().unwrap() > 0.0, "the device time spent is metered");
    assert_eq!(done["report"]["status"], "cancelled", "the engine's report says where it stopped");
    let status = wait_exit(&mut worker, Duration::from_secs(60)).await;
    assert!(status.success(), "the worker ends its one job and exits 0");
    let events = read_events(&server, &key, &id, None, Duration::from_secs(10)).await;
    assert_eq!(states(&events), ["queued", "running", "canceled"]);
    std::fs::remove_dir_all(support::work_dir("canceled")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_running_job_back_to_the_queue() {
    let Some(server) = TestServer::start().await else { return };
    let Some(photos) = bunny_subset() else { return };
    let account = server.signup("worker-term@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let upload_id = upload(&server, &key, &photos).await;
    let job = submit(&server, &key, upload_id, json!({"preset": "preview", "until": "poses"}), "standard").await;
    let id = job["id"].as_str().unwrap().to_string();
    let mut worker = spawn_worker(&server, "terminated", false);
    wait_for(&server, &key, &id, JOB_TIMEOUT, |j| j["fraction"].as_f64().unwrap() > 0.0).await;
    let sent = std::process::Command::new("kill").arg("-TERM").arg(worker.id().to_string()).status().unwrap();
    assert!(sent.success());
    let status = wait_exit(&mut worker, Duration::from_secs(120)).await;
    assert!(status.success(), "a terminated worker exits 0 once the job is handed back: {status}");
    let back = support::job(&server, &key, &id).await;
    assert_eq!((back["state"].as_str(), back["attempts"].as_i64()), (Some("queued"), Some(1)), "{back:#}");
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT body->>'reason' FROM job_events WHERE job_id = $1 AND kind = 'state' ORDER BY id")
            .bind(id.parse::<Uuid>().unwrap())
            .fetch_all(&server.db)
            .await
            .unwrap();
    assert_eq!(reasons, ["created", "leased", "released"]);
    // Queued again, it can be canceled at once (no worker runs).
    let canceled: Value = post(&server, &key, &format!("/v1/jobs/{id}/cancel"), &json!({})).await.json().await.unwrap();
    assert_eq!(canceled["state"], "canceled");
    std::fs::remove_dir_all(support::work_dir("terminated")).unwrap();
}
