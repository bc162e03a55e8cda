//! Batches against the real server and PostgreSQL: a bad item refuses the whole batch with a
//! code and a message naming it, and nothing is written; a good batch makes one job per item;
//! the items are finished through the workers' HTTP API (lease, finish) and a cancel, without
//! running the engine; the batch shows each item's state and counts, stays `running` until the
//! last item ends, then `completed`; each item sends its `job.*` webhook with the batch's id, and
//! `batch.completed` comes once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::{TestServer, WORKER_TOKEN, error_code};
use serde_json::{Value, json};
use standardwebhooks::Webhook;
use uuid::Uuid;

/// Every delivery's (headers, body), in arrival order.
type Deliveries = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A receiver on loopback that accepts and keeps every delivery.
async fn receiver() -> (String, Deliveries) {
    async fn receive(State(got): State<Deliveries>, headers: HeaderMap, body: Bytes) -> StatusCode {
        got.lock().unwrap().push((headers, body));
        StatusCode::OK
    }
    let got: Deliveries = Arc::default();
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// A complete upload of `org_id`'s, written directly (the upload flow has its own tests; a batch
/// only needs uploads that are complete).
async fn upload(server: &TestServer, org_id: Uuid, state: &str) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO uploads (id, org_id, state, kind, expires_at, completed_at) \
         VALUES ($1, $2, $3, 'photos', now() + interval '1 day', CASE WHEN $3 = 'complete' THEN now() END)",
    )
    .bind(id)
    .bind(org_id)
    .bind(state)
    .execute(&server.db)
    .await
    .unwrap();
    id
}

async fn post_batch(server: &TestServer, token: &str, body: Value) -> reqwest::Response {
    server.http.post(server.at("/v1/batches")).bearer_auth(token).json(&body).send().await.unwrap()
}

async fn get_batch(server: &TestServer, token: &str, id: &str) -> Value {
    let response = server.http.get(server.at(&format!("/v1/batches/{id}"))).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn count(server: &TestServer, table_query: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(table_query.to_string())).fetch_one(&server.db).await.unwrap()
}

/// Leases the next job as worker `worker`: (job id, attempt).
async fn lease(server: &TestServer, worker: &str) -> (String, i64) {
    let response = server
        .http
        .post(server.at("/v1/worker/lease"))
        .bearer_auth(WORKER_TOKEN)
        .json(&json!({"worker_id": worker, "device": "cpu"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let lease: Value = response.json().await.unwrap();
    (lease["job_id"].as_str().unwrap().to_string(), lease["attempt"].as_i64().unwrap())
}

async fn finish(server: &TestServer, worker: &str, job_id: &str, attempt: i64, outcome: Value) {
    let mut body = json!({"worker_id": worker, "attempt": attempt, "device_seconds": 1.5});
    body.as_object_mut().unwrap().extend(outcome.as_object().unwrap().clone());
    let response = server
        .http
        .post(server.at(&format!("/v1/worker/jobs/{job_id}/finish")))
        .bearer_auth(WORKER_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

fn item_state(batch: &Value, job_id: &str) -> String {
    let items = batch["items"].as_array().unwrap();
    let item = items.iter().find(|i| i["job_id"] == job_id).unwrap();
    item["state"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_bad_item_refuses_the_whole_batch_and_names_the_item() {
    kiln_server::webhooks::deliver::set_retry_scale(0.001);
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("bad-batch@example.com").await;
    let token = &account.access_token;
    let (a, b) = (upload(&server, account.org_id, "complete").await, upload(&server, account.org_id, "complete").await);
    let open = upload(&server, account.org_id, "open").await;
    let elsewhere = upload(&server, server.signup("other@example.com").await.org_id, "complete").await;

    for (body, status, code, names) in [
        (
            json!({"items": [{"upload_id": a}, {"upload_id": b}, {"upload_id": Uuid::now_v7()}]}),
            400,
            "upload_not_found",
            "items[2]",
        ),
        (json!({"items": [{"upload_id": a}, {"upload_id": elsewhere}]}), 400, "upload_not_found", "items[1]"),
        (json!({"items": [{"upload_id": a}, {"upload_id": open}]}), 409, "upload_not_complete", "items[1]"),
        (
            json!({"items": [{"upload_id": a}, {"upload_id": b, "settings": {"preset": "ultra"}}]}),
            400,
            "invalid_settings",
            "items[1]",
        ),
        (json!({"items": [{"upload_id": a, "settings": {"max_side": 0}}]}), 400, "invalid_settings", "items[0]"),
        (json!({"csv": format!("upload_id,preset\n{a},preview\n{b},huge\n")}), 400, "invalid_manifest", "line 3"),
        (json!({"csv": format!("upload_id,colour\n{a},red\n")}), 400, "invalid_manifest", "`colour`"),
        (json!({"csv": format!("upload_id\n{a}\n{}\n", Uuid::now_v7())}), 400, "upload_not_found", "line 3"),
        (json!({"items": []}), 400, "empty_batch", ""),
        (json!({"items": [{"upload_id": a}], "csv": format!("upload_id\n{a}\n")}), 400, "invalid_batch", ""),
    ] {
        let response = post_batch(&server, token, body.clone()).await;
        let got = response.status().as_u16();
        let error: Value = response.json().await.unwrap();
        assert_eq!((got, error["error"]["code"].as_str().unwrap()), (status, code), "{body}: {error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(names), "{body}: {error}");
    }
    // All or nothing: no batch and no job was left behind.
    assert_eq!(count(&server, "SELECT count(*) FROM batches").await, 0);
    assert_eq!(count(&server, "SELECT count(*) FROM jobs").await, 0);
}

#[tokio::test]
async fn items_finish_one_by_one_and_the_batch_completes_once() {
    kiln_server::webhooks::deliver::set_retry_scale(0.001);
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("batch@example.com").await;
    let token = &account.access_token;
    let (url, got) = receiver().await;
    let endpoint: Value = server
        .http
        .post(server.at("/v1/webhook-endpoints"))
        .bearer_auth(token)
        .json(&json!({"url": url, "events": ["batch.completed", "job.succeeded", "job.failed", "job.canceled"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let verifier = Webhook::new(endpoint["secret"].as_str().unwrap()).unwrap();

    // A CSV manifest: three items, the batch's settings under each row's.
    let uploads = [
        upload(&server, account.org_id, "complete").await,
        upload(&server, account.org_id, "complete").await,
        upload(&server, account.org_id, "complete").await,
    ];
    let csv = format!(
        "upload_id,preset,formats,max_side\n{},preview,glb;usdz,\n{},,,640\n\n{},,\"obj,ply\",\n",
        uploads[0], uploads[1], uploads[2]
    );
    let response =
        post_batch(&server, token, json!({"csv": csv, "settings": {"preset": "reduced", "train_steps": 50}})).await;
    assert_eq!(response.status(), 201);
    let batch: Value = response.json().await.unwrap();
    let batch_id = batch["id"].as_str().unwrap().to_string();
    assert_eq!(batch["state"], "running");
    assert_eq!((batch["counts"]["total"].as_i64(), batch["counts"]["queued"].as_i64()), (Some(3), Some(3)));
    let items = batch["items"].as_array().unwrap();
    let jobs: Vec<String> = items.iter().map(|i| i["job_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(items.iter().map(|i| i["item"].as_i64().unwrap()).collect::<Vec<_>>(), [0, 1, 2]);
    for (item, upload) in items.iter().zip(uploads) {
        assert_eq!(item["upload_id"], upload.to_string().as_str());
    }
    // Each job carries its row's settings over the batch's, and its place in the batch.
    let job: Value = server
        .http
        .get(server.at(&format!("/v1/jobs/{}", jobs[1])))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["settings"], json!({"preset": "reduced", "train_steps": 50, "max_side": 640}));
    assert_eq!((job["batch_id"].as_str(), job["batch_item"].as_i64()), (Some(batch_id.as_str()), Some(1)));
    let job: Value = server
        .http
        .get(server.at(&format!("/v1/jobs/{}", jobs[0])))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["settings"], json!({"preset": "preview", "train_steps": 50, "formats": ["glb", "usdz"]}));

    // The first leased item succeeds, the next fails, the last is canceled while queued.
    let (first, attempt) = lease(&server, "worker-a").await;
    let batch_now = get_batch(&server, token, &batch_id).await;
    assert_eq!(
        (item_state(&batch_now, &first).as_str(), batch_now["counts"]["running"].as_i64()),
        ("running", Some(1))
    );
    finish(&server, "worker-a", &first, attempt, json!({"outcome": "succeeded", "outputs": []})).await;
    let (second, attempt) = lease(&server, "worker-a").await;
    let failure = json!({"code": "model_failed", "message": "training diverged", "class": "internal"});
    finish(&server, "worker-a", &second, attempt, json!({"outcome": "failed", "error": failure})).await;
    let batch_now = get_batch(&server, token, &batch_id).await;
    assert_eq!(batch_now["state"], "running", "one item is still queued");
    assert!(batch_now["completed_at"].is_null());
    let third = jobs.iter().find(|j| **j != first && **j != second).unwrap().clone();
    assert_eq!(item_state(&batch_now, &third), "queued");
    let response =
        server.http.post(server.at(&format!("/v1/jobs/{third}/cancel"))).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let done = get_batch(&server, token, &batch_id).await;
    assert_eq!(done["state"], "completed");
    assert!(done["completed_at"].is_string());
    let counts = &done["counts"];
    assert_eq!(
        [&counts["succeeded"], &counts["failed"], &counts["canceled"], &counts["queued"], &counts["running"]]
            .map(|c| c.as_i64().unwrap()),
        [1, 1, 1, 0, 0]
    );
    assert_eq!(item_state(&done, &first), "succeeded");
    let failed = done["items"].as_array().unwrap().iter().find(|i| i["job_id"] == second.as_str()).unwrap();
    assert_eq!((failed["state"].as_str(), failed["error"]["code"].as_str()), (Some("failed"), Some("model_failed")));
    assert_eq!(item_state(&done, &third), "canceled");

    // Webhooks: one per item (with the batch's id), and batch.completed once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.lock().unwrap().len() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "4 deliveries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deliveries = got.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 4, "no duplicates");
    let mut types = Vec::new();
    for (headers, body) in &deliveries {
        verifier.verify(body, headers).unwrap();
        let event: Value = serde_json::from_slice(body).unwrap();
        let event_type = event["type"].as_str().unwrap().to_string();
        if event_type == "batch.completed" {
            assert_eq!(event["data"]["id"], batch_id.as_str());
            assert_eq!(event["data"]["state"], "completed");
            assert_eq!(event["data"]["items"].as_array().map(Vec::len), Some(3));
        } else {
            assert_eq!(event["data"]["batch_id"], batch_id.as_str(), "{event}");
        }
        types.push(event_type);
    }
    types.sort();
    assert_eq!(types, ["batch.completed", "job.canceled", "job.failed", "job.succeeded"]);
}

#[tokio::test]
async fn a_list_of_items_layers_settings_and_stays_in_its_organisation() {
    kiln_server::webhooks::deliver::set_retry_scale(0.001);
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("items@example.com").await;
    let key = server.api_key(&account, &["jobs:read", "jobs:write"], "test").await;
    let (a, b) = (upload(&server, account.org_id, "complete").await, upload(&server, account.org_id, "complete").await);
    let body = json!({
        "items": [{"upload_id": a}, {"upload_id": b, "settings": {"formats": ["glb"], "seed": 7}}],
        "settings": {"formats": ["usdz"]},
        "priority": "standard",
    });
    let response = post_batch(&server, &key, body).await;
    assert_eq!(response.status(), 201);
    let batch: Value = response.json().await.unwrap();
    let id = batch["id"].as_str().unwrap();
    let jobs: Vec<&str> = batch["items"].as_array().unwrap().iter().map(|i| i["job_id"].as_str().unwrap()).collect();
    let second: Value = server
        .http
        .get(server.at(&format!("/v1/jobs/{}", jobs[1])))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // A test key's jobs run at preview (the jobs layer's rule holds for batch items too).
    assert_eq!(second["settings"], json!({"preset": "preview", "formats": ["glb"], "seed": 7}));
    assert_eq!(second["priority"], "standard");

    // Rush goes before everyone's work: not for free test jobs, in a batch either.
    let (status, code) =
        error_code(post_batch(&server, &key, json!({"items": [{"upload_id": a}], "priority": "rush"})).await).await;
    assert_eq!((status, code.as_str()), (403, "test_mode_priority"));

    // A test key cannot batch a larger preset: refused, naming the item.
    let (status, code) = error_code(
        post_batch(&server, &key, json!({"items": [{"upload_id": a, "settings": {"preset": "full"}}]})).await,
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "test_mode_preset"));

    // Another organisation sees no such batch.
    let other = server.signup("someone-else@example.com").await;
    let response =
        server.http.get(server.at(&format!("/v1/batches/{id}"))).bearer_auth(&other.access_token).send().await.unwrap();
    assert_eq!(error_code(response).await, (404, "not_found".to_string()));
    let (status, code) =
        error_code(post_batch(&server, &other.access_token, json!({"items": [{"upload_id": a}]})).await).await;
    assert_eq!((status, code.as_str()), (400, "upload_not_found"));
}
