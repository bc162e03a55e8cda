//! Jobs and the queue without the engine: the test plays the worker through the workers' API.
//! Submission checks (nothing written on refusal), queue order and positions, cancel while
//! queued and while running, final states the database keeps, leases that expire (requeued,
//! then `worker_lost`), a dead attempt's late calls refused, outputs verified against storage,
//! downloaded through fresh presigned URLs and expired, the SSE log replayed from
//! `Last-Event-ID`, pagination, and no access from another organisation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::support;

use std::time::Duration;

use common::{Options, TestServer, error_code};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{get, job, one_photo, post, read_events, states, submit, upload, wait_for, worker_call};
use uuid::Uuid;

const WRITE: [&str; 2] = ["jobs:read", "jobs:write"];

async fn job_count(server: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&server.db).await.unwrap()
}

async fn lease(server: &TestServer, worker: &str) -> Option<Value> {
    let response = worker_call(server, "/v1/worker/lease", &json!({"worker_id": worker, "device": "cpu"})).await;
    match response.status().as_u16() {
        204 => None,
        200 => Some(response.json().await.unwrap()),
        other => panic!("lease answered {other}: {:?}", response.text().await),
    }
}

#[tokio::test]
async fn submissions_are_checked_and_refusals_write_nothing() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("jobs-submit@example.com").await;
    let live = server.api_key(&account, &WRITE, "live").await;
    let test = server.api_key(&account, &WRITE, "test").await;
    let upload_id = upload(&server, &live, &one_photo()).await;

    let refusals = [
        (&live, json!({"upload_id": upload_id, "settings": {"preset": "huge"}}), 400, "invalid_settings"),
        (&live, json!({"upload_id": upload_id, "settings": {"presets": "full"}}), 400, "invalid_settings"),
        (&live, json!({"upload_id": upload_id, "settings": {"max_side": 0}}), 400, "invalid_settings"),
        (&live, json!({"upload_id": upload_id, "colour": "red"}), 400, "invalid_json"),
        (&live, json!({"upload_id": upload_id, "priority": "asap"}), 400, "invalid_json"),
        (&live, json!({"upload_id": Uuid::now_v7()}), 404, "not_found"),
        (&test, json!({"upload_id": upload_id, "settings": {"preset": "full"}}), 403, "test_mode_preset"),
        // Preview in name, more in fact: a test key is held to preview's own sizes.
        (
            &test,
            json!({"upload_id": upload_id, "settings": {"train_steps": 4_000_000_000u32}}),
            403,
            "test_mode_preset",
        ),
        (&test, json!({"upload_id": upload_id, "settings": {"texture_size": 65536}}), 403, "test_mode_preset"),
        (&test, json!({"upload_id": upload_id, "priority": "rush"}), 403, "test_mode_priority"),
        // Nobody gets past the largest preset.
        (&live, json!({"upload_id": upload_id, "settings": {"max_side": 100_000}}), 400, "setting_too_large"),
    ];
    for (key, body, status, code) in refusals {
        let response = post(&server, key, "/v1/jobs", &body).await;
        assert_eq!(error_code(response).await, (status, code.to_string()), "{body}");
    }
    // An upload still open.
    let declared =
        json!({"files": [{"name": "a.jpg", "size": 10, "sha256": hex::encode(Sha256::digest(b"0123456789"))}]});
    let open: Value = post(&server, &live, "/v1/uploads", &declared).await.json().await.unwrap();
    let response = post(&server, &live, "/v1/jobs", &json!({"upload_id": open["id"]})).await;
    assert_eq!(error_code(response).await, (409, "upload_not_complete".into()));
    // Another organisation's upload is not found, like a missing one.
    let other = server.signup("jobs-submit-other@example.com").await;
    let other_key = server.api_key(&other, &WRITE, "live").await;
    let response = post(&server, &other_key, "/v1/jobs", &json!({"upload_id": upload_id})).await;
    assert_eq!(error_code(response).await, (404, "not_found".into()));
    // A read-only key cannot submit.
    let reader = server.api_key(&account, &["jobs:read"], "live").await;
    let response = post(&server, &reader, "/v1/jobs", &json!({"upload_id": upload_id})).await;
    assert_eq!(error_code(response).await, (403, "missing_scope".into()));
    assert_eq!(job_count(&server).await, 0, "no refusal wrote a job");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM job_events").fetch_one(&server.db).await.unwrap();
    assert_eq!(events, 0);

    // Accepted: a test key runs at preview; `device` is the worker's business and dropped.
    let job = submit(&server, &test, upload_id, json!({"device": "gpu", "train_steps": 50}), "standard").await;
    assert_eq!(job["state"], "queued");
    assert_eq!(job["mode"], "test");
    assert_eq!(job["settings"], json!({"preset": "preview", "train_steps": 50}));
    assert_eq!(job["queue_position"], 0);
    assert_eq!(job["attempts"], 0);
    assert_eq!(job["outputs"], json!([]));
    let live_job = submit(&server, &live, upload_id, json!({"preset": "full"}), "standard").await;
    assert_eq!(live_job["settings"]["preset"], "full");
    assert_eq!(job_count(&server).await, 2);
}

#[tokio::test]
async fn the_queue_serves_rush_first_then_oldest_and_shows_positions() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("jobs-queue@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let upload_id = upload(&server, &key, &one_photo()).await;
    let a = submit(&server, &key, upload_id, json!({}), "standard").await;
    let b = submit(&server, &key, upload_id, json!({}), "standard").await;
    let c = submit(&server, &key, upload_id, json!({}), "rush").await;
    let position = |j: Value| j["queue_position"].clone();
    let ids = [&a, &b, &c].map(|j| j["id"].as_str().unwrap().to_string());
    assert_eq!(position(job(&server, &key, &ids[2]).await), 0, "rush goes first");
    assert_eq!(position(job(&server, &key, &ids[0]).await), 1);
    assert_eq!(position(job(&server, &key, &ids[1]).await), 2);

    // The worker token is required, compared whole.
    let response = server
        .http
        .post(server.at("/v1/worker/lease"))
        .bearer_auth(&key)
        .json(&json!({"worker_id": "w", "device": "cpu"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, (401, "invalid_worker_token".into()));
    let openapi: Value = server.http.get(server.at("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(
        openapi["paths"].as_object().unwrap().keys().all(|p| !p.starts_with("/v1/worker")),
        "worker routes are not public"
    );

    let mut order = Vec::new();
    while let Some(lease) = lease(&server, "queue-worker").await {
        assert_eq!(lease["attempt"], 1);
        assert_eq!(lease["inputs"].as_array().unwrap().len(), 1);
        assert!(lease["inputs"][0]["url"].as_str().unwrap().contains("X-Amz-Signature"));
        order.push(lease["job_id"].as_str().unwrap().to_string());
    }
    assert_eq!(order, [ids[2].clone(), ids[0].clone(), ids[1].clone()]);
    let running = job(&server, &key, &ids[1]).await;
    assert_eq!((running["state"].as_str(), running["attempts"].as_i64()), (Some("running"), Some(1)));
    assert!(
        running["queue_position"].is_null() && running["started_at"].is_string() && running["heartbeat_at"].is_string()
    );

    // Listing: newest first, by pages.
    let page: Value = get(&server, &key, "/v1/jobs?limit=2").await.json().await.unwrap();
    let listed: Vec<&str> = page["data"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    let next = page["next"].as_str().unwrap();
    let page: Value = get(&server, &key, &format!("/v1/jobs?limit=2&after={next}")).await.json().await.unwrap();
    assert_eq!(page["data"][0]["id"].as_str(), Some(ids[0].as_str()));
    assert!(page["next"].is_null());
    let response = get(&server, &key, &format!("/v1/jobs?after={}", Uuid::now_v7())).await;
    assert_eq!(error_code(response).await, (400, "invalid_cursor".into()));
    let response = get(&server, &key, "/v1/jobs?limit=1000").await;
    assert_eq!(error_code(response).await, (400, "invalid_query".into()));
}

#[tokio::test]
async fn cancel_while_queued_and_running_and_final_states_never_change() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("jobs-cancel@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let upload_id = upload(&server, &key, &one_photo()).await;

    // Queued, no worker: canceled at once.
    let queued = submit(&server, &key, upload_id, json!({}), "standard").await;
    let id = queued["id"].as_str().unwrap();
    let response = post(&server, &key, &format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(response.status(), 200);
    let canceled: Value = response.json().await.unwrap();
    assert_eq!(canceled["state"], "canceled");
    assert_eq!(canceled["error"]["code"], "canceled");
    assert_eq!(canceled["error"]["class"], "cancelled");
    assert!(canceled["finished_at"].is_string() && canceled["expires_at"].is_string());
    let events = read_events(&server, &key, id, None, Duration::from_secs(10)).await;
    assert_eq!(states(&events), ["queued", "canceled"]);
    assert!(lease(&server, "cancel-worker").await.is_none(), "a canceled job is never leased");
    // Final: canceling again is refused, and the database refuses any change of state.
    let response = post(&server, &key, &format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(error_code(response).await, (409, "job_final".into()));
    let id_uuid: Uuid = id.parse().unwrap();
    for state in ["queued", "running", "succeeded", "failed", "expired"] {
        let changed =
            sqlx::query("UPDATE jobs SET state = $2 WHERE id = $1").bind(id_uuid).bind(state).execute(&server.db).await;
        assert!(changed.is_err_and(|e| e.to_string().contains("final")), "canceled → {state} refused");
    }

    // Running: flagged, the next heartbeat says stop, the worker's cancel ends it.
    let running = submit(&server, &key, upload_id, json!({}), "standard").await;
    let id = running["id"].as_str().unwrap();
    let leased = lease(&server, "cancel-worker").await.unwrap();
    assert_eq!(leased["job_id"].as_str(), Some(id));
    let beat = json!({"worker_id": "cancel-worker", "attempt": 1, "events": []});
    let reply: Value =
        worker_call(&server, &format!("/v1/worker/jobs/{id}/heartbeat"), &beat).await.json().await.unwrap();
    assert_eq!(reply["cancel"], false);
    let flagged: Value = post(&server, &key, &format!("/v1/jobs/{id}/cancel"), &json!({})).await.json().await.unwrap();
    assert_eq!((flagged["state"].as_str(), flagged["cancel_requested"].as_bool()), (Some("running"), Some(true)));
    let reply: Value =
        worker_call(&server, &format!("/v1/worker/jobs/{id}/heartbeat"), &beat).await.json().await.unwrap();
    assert_eq!(reply["cancel"], true);
    let finish = json!({"worker_id": "cancel-worker", "attempt": 1, "outcome": "canceled", "device_seconds": 1.5});
    let response = worker_call(&server, &format!("/v1/worker/jobs/{id}/finish"), &finish).await;
    assert_eq!(response.status(), 200);
    let ended = job(&server, &key, id).await;
    assert_eq!(ended["state"], "canceled");
    assert_eq!(ended["gpu_seconds"], 1.5);
    let response = post(&server, &key, &format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(error_code(response).await, (409, "job_final".into()));
    // A worker's call after the end is refused; the same finish again is answered the same.
    let response = worker_call(&server, &format!("/v1/worker/jobs/{id}/heartbeat"), &beat).await;
    assert_eq!(error_code(response).await, (409, "lease_lost".into()));
    let response = worker_call(&server, &format!("/v1/worker/jobs/{id}/finish"), &finish).await;
    assert_eq!(response.status(), 200);
    let events = read_events(&server, &key, id, None, Duration::from_secs(10)).await;
    assert_eq!(states(&events), ["queued", "running", "canceled"]);
}

#[tokio::test]
async fn expired_leases_requeue_then_fail_and_dead_attempts_are_refused() {
    let options = Options { lease: Duration::from_secs(2), max_attempts: 2, ..Options::default() };
    let Some(server) = TestServer::start_with(options).await else { return };
    let account = server.signup("jobs-lease@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let upload_id = upload(&server, &key, &one_photo()).await;
    let submitted = submit(&server, &key, upload_id, json!({}), "rush").await;
    let id = submitted["id"].as_str().unwrap();

    let first = lease(&server, "lost-1").await.unwrap();
    assert_eq!(first["attempt"], 1);
    // Heartbeats keep the lease past its length…
    let beat = json!({"worker_id": "lost-1", "attempt": 1, "events": [progress_event(0.1)]});
    for _ in 0..4 {
        let response = worker_call(&server, &format!("/v1/worker/jobs/{id}/heartbeat"), &beat).await;
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let progressing = job(&server, &key, id).await;
    assert_eq!((progressing["state"].as_str(), progressing["stage"].as_str()), (Some("running"), Some("check")));
    assert!((progressing["fraction"].as_f64().unwrap() - 0.1).abs() < 1e-6);
    // …and without them the job goes back to the queue, keeping its attempt count.
    let requeued = wait_for(&server, &key, id, Duration::from_secs(15), |j| j["state"] == "queued").await;
    assert_eq!(requeued["attempts"], 1);
    assert_eq!(requeued["queue_position"], 0);
    for path in ["heartbeat", "outputs", "finish"] {
        let body = match path {
            "outputs" => json!({"worker_id": "lost-1", "attempt": 1, "files": ["model.glb"]}),
            "finish" => json!({"worker_id": "lost-1", "attempt": 1, "outcome": "succeeded", "device_seconds": 1}),
            _ => json!({"worker_id": "lost-1", "attempt": 1}),
        };
        let response = worker_call(&server, &format!("/v1/worker/jobs/{id}/{path}"), &body).await;
        assert_eq!(error_code(response).await, (409, "lease_lost".into()), "{path} from the lost attempt");
    }
    let second = lease(&server, "lost-2").await.unwrap();
    assert_eq!(second["attempt"], 2);
    // The old attempt is refused even under the new worker's name.
    let response =
        worker_call(&server, &format!("/v1/worker/jobs/{id}/heartbeat"), &json!({"worker_id": "lost-2", "attempt": 1}))
            .await;
    assert_eq!(error_code(response).await, (409, "lease_lost".into()));
    // The last attempt lost too: the job fails with a clear code.
    let failed = wait_for(&server, &key, id, Duration::from_secs(15), |j| j["state"] == "failed").await;
    assert_eq!(failed["error"]["code"], "worker_lost");
    assert_eq!(failed["attempts"], 2);
    let events = read_events(&server, &key, id, None, Duration::from_secs(10)).await;
    assert_eq!(states(&events), ["queued", "running", "queued", "running", "failed"]);
    let progress: Vec<&support::SseEvent> = events.iter().filter(|e| e.kind == "progress").collect();
    assert_eq!(progress.len(), 4);
    assert_eq!(progress[0].data["event"]["kind"], "progress");
    assert_eq!(progress[0].data["stage"], "check");
    assert!(progress[0].data["event"]["preview"].is_null(), "worker paths are not passed on");
    // Resumed after the third event: the rest, ending with the final state.
    let resumed = read_events(&server, &key, id, Some(events[2].id), Duration::from_secs(10)).await;
    assert_eq!(resumed.iter().map(|e| e.id).collect::<Vec<_>>(), events[3..].iter().map(|e| e.id).collect::<Vec<_>>());
    // Resumed after the final event: the stream ends at once, empty.
    let after_end = read_events(&server, &key, id, Some(events.last().unwrap().id), Duration::from_secs(10)).await;
    assert!(after_end.is_empty());
}

fn progress_event(fraction: f64) -> Value {
    json!({"stage": "check", "kind": "progress", "phase": "measuring_photos", "step": {"done": 1, "total": 10},
           "metrics": null, "stage_fraction": fraction, "job_fraction": fraction, "eta_s": 30.0,
           "message": "measuring photos 1/10", "preview": "/worker/disk/preview.png"})
}

#[tokio::test]
async fn outputs_are_verified_downloaded_through_fresh_urls_and_expire() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("jobs-outputs@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let upload_id = upload(&server, &key, &one_photo()).await;
    let submitted = submit(&server, &key, upload_id, json!({"preset": "preview"}), "standard").await;
    let id = submitted["id"].as_str().unwrap();
    lease(&server, "out-worker").await.unwrap();

    let files =
        [("model.glb", b"glTF fake model bytes".to_vec()), ("report.json", br#"{"status":"finished"}"#.to_vec())];
    let body = json!({"worker_id": "out-worker", "attempt": 1, "files": ["model.glb", "report.json"]});
    let response = worker_call(&server, &format!("/v1/worker/jobs/{id}/outputs"), &body).await;
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    for (upload, (name, bytes)) in reply["uploads"].as_array().unwrap().iter().zip(&files) {
        assert_eq!(upload["name"], *name);
        assert!(upload["url"].as_str().unwrap().contains(&format!("jobs/{id}/attempt-1/{name}")));
        let put = server.http.put(upload["url"].as_str().unwrap()).body(bytes.clone()).send().await.unwrap();
        assert!(put.status().is_success());
    }
    let bad_name = json!({"worker_id": "out-worker", "attempt": 1, "files": ["../escape"]});
    let response = worker_call(&server, &format!("/v1/worker/jobs/{id}/outputs"), &bad_name).await;
    assert_eq!(error_code(response).await, (400, "invalid_output_name".into()));
    let outputs = |size_of_glb: usize| {
        json!([
            {"name": "model.glb", "size": size_of_glb, "sha256": hex::encode(Sha256::digest(&files[0].1))},
            {"name": "report.json", "size": files[1].1.len(), "sha256": hex::encode(Sha256::digest(&files[1].1))},
        ])
    };
    let finish = |outputs: Value| {
        json!({"worker_id": "out-worker", "attempt": 1, "outcome": "succeeded", "report": {"status": "finished"},
               "outputs": outputs, "device_seconds": 12.5})
    };
    // Sizes are checked against storage.
    let response = worker_call(&server, &format!("/v1/worker/jobs/{id}/finish"), &finish(outputs(999))).await;
    assert_eq!(error_code(response).await, (400, "output_mismatch".into()));
    let missing = json!([{"name": "model.usdz", "size": 3, "sha256": "00".repeat(32)}]);
    let response = worker_call(&server, &format!("/v1/worker/jobs/{id}/finish"), &finish(missing)).await;
    assert_eq!(error_code(response).await, (400, "output_mismatch".into()));
    assert_eq!(job(&server, &key, id).await["state"], "running", "a refused finish changes nothing");
    let response =
        worker_call(&server, &format!("/v1/worker/jobs/{id}/finish"), &finish(outputs(files[0].1.len()))).await;
    assert_eq!(response.status(), 200);
    let done = job(&server, &key, id).await;
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["fraction"], 1.0);
    assert_eq!(done["gpu_seconds"], 12.5);
    assert_eq!(done["report"], json!({"status": "finished"}));
    assert_eq!(done["outputs"], outputs(files[0].1.len()));
    assert_eq!(done["outputs_expired"], false);

    // Each call signs a new URL (signatures carry the second they were made).
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut urls = Vec::new();
    for _ in 0..2 {
        let response = no_redirects
            .get(server.at(&format!("/v1/jobs/{id}/outputs/model.glb")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        let location = response.headers()["location"].to_str().unwrap().to_string();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["url"].as_str(), Some(location.as_str()));
        urls.push(location);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_ne!(urls[0], urls[1]);
    let downloaded = server.http.get(&urls[1]).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(downloaded.as_ref(), files[0].1.as_slice());
    // Following the redirect gives the file too.
    let followed = server
        .http
        .get(server.at(&format!("/v1/jobs/{id}/outputs/report.json")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(followed.bytes().await.unwrap().as_ref(), files[1].1.as_slice());
    let response = get(&server, &key, &format!("/v1/jobs/{id}/outputs/model.usdz")).await;
    assert_eq!(error_code(response).await, (404, "not_found".into()));

    // Another organisation sees nothing of it.
    let other = server.signup("jobs-outputs-other@example.com").await;
    let other_key = server.api_key(&other, &WRITE, "live").await;
    for path in [format!("/v1/jobs/{id}"), format!("/v1/jobs/{id}/events"), format!("/v1/jobs/{id}/outputs/model.glb")]
    {
        assert_eq!(error_code(get(&server, &other_key, &path).await).await, (404, "not_found".into()), "{path}");
    }
    let response = post(&server, &other_key, &format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(error_code(response).await, (404, "not_found".into()));
    let listed: Value = get(&server, &other_key, "/v1/jobs").await.json().await.unwrap();
    assert_eq!(listed["data"], json!([]));

    // Past retention: 410, and the reaper deletes the objects.
    let id_uuid: Uuid = id.parse().unwrap();
    sqlx::query("UPDATE jobs SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(id_uuid)
        .execute(&server.db)
        .await
        .unwrap();
    let response = no_redirects
        .get(server.at(&format!("/v1/jobs/{id}/outputs/model.glb")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, (410, "outputs_expired".into()));
    assert_eq!(job(&server, &key, id).await["outputs_expired"], true);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let deleted: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT outputs_deleted_at FROM jobs WHERE id = $1")
                .bind(id_uuid)
                .fetch_one(&server.db)
                .await
                .unwrap();
        if deleted.is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the reaper did not delete the outputs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone = server.http.get(&urls[1]).send().await.unwrap();
    assert_eq!(gone.status(), 404, "the object is deleted from storage");
    assert_eq!(job(&server, &key, id).await["state"], "succeeded", "the job keeps its state");
}
