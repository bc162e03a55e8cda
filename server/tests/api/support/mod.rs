//! What the jobs and worker tests share: uploads through the real upload routes, the workers'
//! API called as a worker would, an SSE reader, polling a job, and `kiln-server worker` processes.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod stripe;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::common::{TestServer, WORKER_TOKEN};

/// Uploads `files` (name, bytes) through `POST /v1/uploads`, a PUT per part and
/// `POST /v1/uploads/{id}/complete`; returns the complete upload's id.
pub async fn upload(server: &TestServer, key: &str, files: &[(String, Vec<u8>)]) -> Uuid {
    let declared: Vec<Value> = files
        .iter()
        .map(|(name, bytes)| json!({"name": name, "size": bytes.len(), "sha256": hex::encode(Sha256::digest(bytes))}))
        .collect();
    let response = server
        .http
        .post(server.at("/v1/uploads"))
        .bearer_auth(key)
        .json(&json!({"files": declared}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "create upload: {:?}", response.text().await);
    let created: Value = response.json().await.unwrap();
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    put_parts(server, &created, files, usize::MAX).await;
    complete(server, key, id).await;
    id
}

/// PUTs the parts `upload` (an upload object) still asks for, at most `limit` of them; returns
/// how many it sent.
pub async fn put_parts(server: &TestServer, upload: &Value, files: &[(String, Vec<u8>)], limit: usize) -> usize {
    let mut sent = 0;
    for file in upload["files"].as_array().unwrap() {
        let (_, bytes) = files.iter().find(|(name, _)| name == file["name"].as_str().unwrap()).unwrap();
        let part_size = file["part_size"].as_u64().unwrap() as usize;
        for part in file["parts"].as_array().unwrap() {
            if sent == limit {
                return sent;
            }
            let number = part["number"].as_u64().unwrap() as usize;
            let start = (number - 1) * part_size;
            let end = (start + part_size).min(bytes.len());
            let response =
                server.http.put(part["url"].as_str().unwrap()).body(bytes[start..end].to_vec()).send().await.unwrap();
            assert!(response.status().is_success(), "PUT part: {}", response.status());
            sent += 1;
        }
    }
    sent
}

pub async fn complete(server: &TestServer, key: &str, id: Uuid) {
    let response =
        server.http.post(server.at(&format!("/v1/uploads/{id}/complete"))).bearer_auth(key).send().await.unwrap();
    assert_eq!(response.status(), 200, "complete upload: {:?}", response.text().await);
}

/// The photos of `dir` (sorted by name) as upload files.
pub fn photo_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(p).unwrap()))
        .collect()
}

/// One small real photo (bunny-mini's first), for tests whose jobs never run the engine.
pub fn one_photo() -> Vec<(String, Vec<u8>)> {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/fixtures/bunny-mini/images");
    photo_files(&images).into_iter().take(1).collect()
}

/// Every 4th bunny-synth photo (20 views 18° apart, enough for poses; bunny-mini's 12 small
/// views are not), or `None` after saying the test is skipped.
pub fn bunny_subset() -> Option<Vec<(String, Vec<u8>)>> {
    let images = kiln_testkit::dataset("bunny-synth/images")?;
    Some(photo_files(&images).into_iter().step_by(4).collect())
}

/// `POST path` with `body` as `key`.
pub async fn post(server: &TestServer, key: &str, path: &str, body: &Value) -> reqwest::Response {
    server.http.post(server.at(path)).bearer_auth(key).json(body).send().await.unwrap()
}

pub async fn get(server: &TestServer, key: &str, path: &str) -> reqwest::Response {
    server.http.get(server.at(path)).bearer_auth(key).send().await.unwrap()
}

/// Submits a job for `upload_id` with `settings`; returns the job.
pub async fn submit(server: &TestServer, key: &str, upload_id: Uuid, settings: Value, priority: &str) -> Value {
    let body = json!({"upload_id": upload_id, "settings": settings, "priority": priority});
    let response = post(server, key, "/v1/jobs", &body).await;
    assert_eq!(response.status(), 201, "submit: {:?}", response.text().await);
    response.json().await.unwrap()
}

pub async fn job(server: &TestServer, key: &str, id: &str) -> Value {
    let response = get(server, key, &format!("/v1/jobs/{id}")).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Polls the job until `done` holds, for at most `timeout`.
pub async fn wait_for(
    server: &TestServer,
    key: &str,
    id: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let job = job(server, key, id).await;
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "the job did not get there in {timeout:?}: {job:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A call to the workers' API with the worker token.
pub async fn worker_call(server: &TestServer, path: &str, body: &Value) -> reqwest::Response {
    server.http.post(server.at(path)).bearer_auth(WORKER_TOKEN).json(body).send().await.unwrap()
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: i64,
    pub kind: String,
    pub data: Value,
}

/// Reads the job's event stream (from `last_event_id`) until the server ends it; fails after
/// `timeout`.
pub async fn read_events(
    server: &TestServer,
    key: &str,
    id: &str,
    last_event_id: Option<i64>,
    timeout: Duration,
) -> Vec<SseEvent> {
    let mut request = server.http.get(server.at(&format!("/v1/jobs/{id}/events"))).bearer_auth(key);
    if let Some(last) = last_event_id {
        request = request.header("Last-Event-ID", last.to_string());
    }
    let read = async {
        let mut response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        let mut text = String::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        parse_sse(&text)
    };
    tokio::time::timeout(timeout, read).await.expect("the event stream did not end in time")
}

fn parse_sse(text: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut kind, mut data) = (None, None, String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().parse().unwrap());
            } else if let Some(v) = line.strip_prefix("event:") {
                kind = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if let (Some(id), Some(kind)) = (id, kind) {
            events.push(SseEvent { id, kind, data: serde_json::from_str(&data).unwrap() });
        }
    }
    events
}

/// The `state` events' states, in order.
pub fn states(events: &[SseEvent]) -> Vec<String> {
    events.iter().filter(|e| e.kind == "state").map(|e| e.data["state"].as_str().unwrap().to_string()).collect()
}

/// The work folder of the test worker `id` (tests remove it when done).
pub fn work_dir(id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kiln-server-test-{id}-{}", std::process::id()))
}

/// A `kiln-server worker` process on the CPU against `server`, named `id`, in [`work_dir`].
pub fn spawn_worker(server: &TestServer, id: &str, once: bool) -> Child {
    let work_dir = work_dir(id);
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln-server"));
    command
        .args(["worker", "--server", &server.url, "--device", "cpu", "--id", id])
        .arg("--work-dir")
        .arg(&work_dir)
        .env("KILN_WORKER_TOKEN", WORKER_TOKEN)
        .env("RUST_LOG", "warn,kiln_server=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    if once {
        command.arg("--once");
    }
    command.spawn().expect("start kiln-server worker")
}

/// Waits for `child` to exit, for at most `timeout`.
pub async fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the worker did not exit in {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
