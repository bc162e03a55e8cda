//! `kiln-cloud`'s transfers against the real server and SeaweedFS, with a proxy in front of
//! storage that counts and interferes. The server under test is given the proxy as its storage
//! endpoint, so every presigned URL it signs points at the proxy; the proxy passes each request
//! on unchanged (its `Host` included, which is what the signature covers) and the answer back.
//! - an upload interrupted after two of its six parts (the proxy lets two through, holds the
//!   rest, and the client's task is aborted) is resumed by the same call: the second run PUTs
//!   exactly the parts storage did not hold, the server completes it with every hash checked, a
//!   third run sends nothing, and changed inputs make a new upload;
//! - a finished job's outputs land at their job-folder paths with their hashes; a download cut
//!   part-way resumes with `Range: bytes=<received>-`; a corrupted body is an integrity error
//!   and leaves nothing under the final name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use common::TestServer;
use futures_util::StreamExt;
use kiln_cloud::upload::{UploadProgress, upload_photos};
use kiln_cloud::{Client, ClientConfig, CloudError, Credential, RetryPolicy};
use kiln_protocol::layout::JobLayout;
use kiln_server::state::AppState;
use kiln_server::storage::Storage;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{one_photo, photo_files, submit, upload, worker_call};
use tokio::sync::watch;
use uuid::Uuid;

const WRITE: [&str; 2] = ["jobs:read", "jobs:write"];

/// The server's part size in these tests (`common::test_limits`).
const PART: usize = 5 << 20;

/// Headers that belong to one connection, not to the request or answer passed on.
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "transfer-encoding", "te", "upgrade", "expect", "proxy-connection"];

/// One part PUT storage accepted through the proxy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PartPut {
    /// The file's index in the upload (the last segment of its object key).
    file: usize,
    number: u16,
    bytes: usize,
}

/// The proxy's counters and switches.
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    parts: Mutex<Vec<PartPut>>,
    /// Part PUTs still let through; `None`: all of them.
    admit: Mutex<Option<usize>>,
    /// Part PUTs held back (never passed on) until `release`.
    held: AtomicUsize,
    release: watch::Sender<bool>,
    /// Requests being passed on right now.
    in_flight: AtomicUsize,
    /// The next download of an output whose name ends with `.0` is cut after `.1` bytes.
    cut: Mutex<Option<(String, usize)>>,
    /// Flip a byte of every output download.
    corrupt: AtomicBool,
    /// Output downloads seen: (object key's file name, its `Range` header).
    gets: Mutex<Vec<(String, Option<String>)>>,
}

struct Proxy {
    url: String,
    state: Arc<ProxyState>,
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let (release, _) = watch::channel(false);
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            parts: Mutex::new(Vec::new()),
            admit: Mutex::new(None),
            held: AtomicUsize::new(0),
            release,
            in_flight: AtomicUsize::new(0),
            cut: Mutex::new(None),
            corrupt: AtomicBool::new(false),
            gets: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new().fallback(forward).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy { url, state }
    }

    fn parts(&self) -> Vec<PartPut> {
        let mut parts = self.state.parts.lock().unwrap().clone();
        parts.sort();
        parts
    }

    fn gets(&self) -> Vec<(String, Option<String>)> {
        self.state.gets.lock().unwrap().clone()
    }
}

/// A part PUT's (file index, part number), from `/bucket/…/<index>?partNumber=N&uploadId=…`.
fn part_of(request: &Request) -> Option<(usize, u16)> {
    let query = request.uri().query()?;
    let number = query.split('&').find_map(|pair| pair.strip_prefix("partNumber="))?.parse().ok()?;
    let file = request.uri().path().rsplit('/').next()?.parse().ok()?;
    Some((file, number))
}

/// A client's download of a job output: a GET under `…/jobs/…`; its file name.
fn output_get(request: &Request) -> Option<String> {
    let path = request.uri().path();
    (request.method() == axum::http::Method::GET && path.contains("/jobs/"))
        .then(|| path.rsplit('/').next().unwrap_or_default().to_string())
}

async fn forward(State(proxy): State<Arc<ProxyState>>, request: Request) -> Response {
    let part = if request.method() == axum::http::Method::PUT { part_of(&request) } else { None };
    if part.is_some() && !admitted(&proxy) {
        proxy.held.fetch_add(1, Ordering::SeqCst);
        let _ = proxy.release.subscribe().wait_for(|released| *released).await;
        return Response::builder().status(503).body(Body::empty()).unwrap();
    }
    let output = output_get(&request);
    if let Some(name) = &output {
        let range = request.headers().get("range").map(|v| v.to_str().unwrap().to_string());
        proxy.gets.lock().unwrap().push((name.clone(), range));
    }
    proxy.in_flight.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let target = format!("{}{}", proxy.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut upstream = proxy.http.request(parts.method.clone(), target).body(body.clone());
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.send().await.unwrap();
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap();
    if let Some((file, number)) = part.filter(|_| status.is_success()) {
        proxy.parts.lock().unwrap().push(PartPut { file, number, bytes: body.len() });
    }
    proxy.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut response = Response::builder().status(status);
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response = response.header(name, value);
        }
    }
    let body = match output.filter(|_| status.is_success()) {
        Some(name) => interfere(&proxy, &name, bytes),
        None => Body::from(bytes),
    };
    response.body(body).unwrap()
}

/// Whether a part PUT may pass (and counts it).
fn admitted(proxy: &ProxyState) -> bool {
    let mut admit = proxy.admit.lock().unwrap();
    match admit.as_mut() {
        None => true,
        Some(0) => false,
        Some(left) => {
            *left -= 1;
            true
        }
    }
}

/// An output's body as the proxy passes it on: cut after some bytes (the connection then drops,
/// short of the `Content-Length` storage gave), a byte flipped, or as it is.
fn interfere(proxy: &ProxyState, name: &str, mut bytes: Bytes) -> Body {
    let cut = {
        let mut cut = proxy.cut.lock().unwrap();
        match cut.as_ref() {
            Some((suffix, after)) if name.ends_with(suffix.as_str()) => {
                let after = *after;
                *cut = None;
                Some(after)
            }
            _ => None,
        }
    };
    if let Some(after) = cut {
        let head = bytes.slice(..after);
        let stream =
            futures_util::stream::iter([Ok::<Bytes, std::io::Error>(head)]).chain(futures_util::stream::once(async {
                // Long enough for the bytes before the cut to reach the client.
                tokio::time::sleep(Duration::from_millis(300)).await;
                Err(std::io::Error::other("cut by the test proxy"))
            }));
        return Body::from_stream(stream);
    }
    if proxy.corrupt.load(Ordering::SeqCst) && !bytes.is_empty() {
        let mut flipped = bytes.to_vec();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x40;
        bytes = Bytes::from(flipped);
    }
    Body::from(bytes)
}

/// A test server whose storage endpoint is the proxy: the harness's server (database, background
/// loops) served again with the proxy in its configuration.
async fn proxied_server() -> Option<(TestServer, Proxy)> {
    let server = TestServer::start().await?;
    let proxy = Proxy::start(&server.state.config.s3.endpoint).await;
    let mut config = (*server.state.config).clone();
    config.s3.endpoint = proxy.url.clone();
    let storage = Storage::new(&config.s3, Duration::from_secs(config.limits.presign_seconds)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    config.public_url = url.clone();
    let state = AppState { storage, config: Arc::new(config), ..server.state.clone() };
    let app = kiln_server::app::app(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    let proxied = TestServer { url, db: server.db.clone(), state, http: reqwest::Client::new() };
    Some((proxied, proxy))
}

/// The kiln-cloud client of `server` with `key`, retrying quickly.
fn cloud_client(server: &TestServer, key: &str) -> Client {
    let config = ClientConfig {
        credential: Some(Credential::ApiKey(key.to_string())),
        retry: RetryPolicy { attempts: 4, base: Duration::from_millis(50), max: Duration::from_secs(1) },
        ..ClientConfig::new(url::Url::parse(&server.url).unwrap())
    };
    Client::new(config).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A fresh folder under the temp dir.
fn temp_folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-cloud-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Three of bunny-mini's photos and one padded past two parts (decoders ignore bytes after a
/// JPEG's end marker): six parts in all.
fn photo_folder(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let images = kiln_testkit::workspace_root().join("engine/fixtures/bunny-mini/images");
    let mut photos: Vec<(String, Vec<u8>)> = photo_files(&images).into_iter().take(3).collect();
    let mut padded = photos[0].1.clone();
    padded.resize(2 * PART + 4321, 0);
    photos.push(("padded.jpg".into(), padded));
    for (name, bytes) in &photos {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    photos.sort();
    photos
}

async fn wait_until(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_upload_resumes_sending_only_the_missing_parts() {
    let Some((server, proxy)) = proxied_server().await else { return };
    let account = server.signup("cloud-upload@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let client = cloud_client(&server, &key);
    let root = temp_folder("upload");
    let inputs = root.join("photos");
    std::fs::create_dir_all(&inputs).unwrap();
    let photos = photo_folder(&inputs);
    let total: usize = photos.iter().map(|(_, b)| b.len()).sum();
    let state = root.join("job/cloud-upload.json");

    // First run: storage gets two parts, the rest are held at the proxy, and the client's task is
    // aborted there (as a killed process would stop).
    *proxy.state.admit.lock().unwrap() = Some(2);
    let first_progress = Arc::new(Mutex::new(Vec::<UploadProgress>::new()));
    let task = {
        let (client, inputs, state, log) = (client.clone(), inputs.clone(), state.clone(), first_progress.clone());
        tokio::spawn(async move { upload_photos(&client, &inputs, &state, move |p| log.lock().unwrap().push(p)).await })
    };
    wait_until("two parts stored and four held", Duration::from_secs(60), || {
        proxy.parts().len() == 2 && proxy.state.held.load(Ordering::SeqCst) == 4
    })
    .await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    *proxy.state.admit.lock().unwrap() = None;
    proxy.state.release.send_replace(true);
    wait_until("no request in flight", Duration::from_secs(10), || proxy.state.in_flight.load(Ordering::SeqCst) == 0)
        .await;
    let first = proxy.parts();
    let first_bytes: usize = first.iter().map(|p| p.bytes).sum();
    let last = *first_progress.lock().unwrap().last().unwrap();
    assert_eq!((last.sent_bytes, last.total_bytes), (first_bytes as u64, total as u64), "progress in bytes");

    // The state file names the upload; the server holds the two parts, and the upload is open.
    let recorded: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let upload_id: Uuid = recorded["upload_id"].as_str().unwrap().parse().unwrap();
    let names: Vec<&str> = recorded["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, photos.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>());
    let open: kiln_api::uploads::Upload = client.get(&format!("/v1/uploads/{upload_id}")).await.unwrap();
    assert_eq!(open.state, "open");
    let mut received: Vec<(usize, u16)> =
        open.files.iter().enumerate().flat_map(|(i, f)| f.received.iter().map(move |p| (i, p.number))).collect();
    received.sort();
    assert_eq!(received, first.iter().map(|p| (p.file, p.number)).collect::<Vec<_>>());

    // Second run, same inputs: only the missing parts go out, and the server completes the upload
    // (sizes and hashes checked).
    proxy.state.parts.lock().unwrap().clear();
    let second_progress = Arc::new(Mutex::new(Vec::<UploadProgress>::new()));
    let log = second_progress.clone();
    let done = upload_photos(&client, &inputs, &state, move |p| log.lock().unwrap().push(p)).await.unwrap();
    assert_eq!((done.id, done.state.as_str()), (upload_id, "complete"));
    for (file, (name, bytes)) in done.files.iter().zip(&photos) {
        assert_eq!((&file.name, file.size as usize, &file.sha256), (name, bytes.len(), &sha256_hex(bytes)));
    }
    let second = proxy.parts();
    let second_bytes: usize = second.iter().map(|p| p.bytes).sum();
    assert_eq!(second.len(), 4, "six parts, two already stored: {second:?}");
    assert!(second.iter().all(|p| !first.iter().any(|f| (f.file, f.number) == (p.file, p.number))), "{second:?}");
    assert_eq!(first_bytes + second_bytes, total, "every byte sent once");
    let progress = second_progress.lock().unwrap().clone();
    assert_eq!(progress.first().unwrap().sent_bytes, first_bytes as u64, "starts from what storage holds");
    assert_eq!(
        *progress.last().unwrap(),
        UploadProgress { sent_bytes: total as u64, total_bytes: total as u64, files_done: 4, files: 4 }
    );
    assert!(progress.windows(2).all(|w| w[1].sent_bytes > w[0].sent_bytes));

    // A third run finds it complete and sends nothing; changed inputs are a new upload.
    proxy.state.parts.lock().unwrap().clear();
    let again = upload_photos(&client, &inputs, &state, |_| {}).await.unwrap();
    assert_eq!((again.id, again.state.as_str(), proxy.parts().len()), (upload_id, "complete", 0));
    std::fs::write(inputs.join("extra.png"), &one_photo()[0].1).unwrap();
    let changed = upload_photos(&client, &inputs, &state, |_| {}).await.unwrap();
    assert_ne!(changed.id, upload_id);
    assert_eq!((changed.state.as_str(), changed.files.len()), ("complete", 5));
    assert_eq!(proxy.parts().len(), 7, "every part of the new upload");
    std::fs::remove_dir_all(&root).unwrap();
}

/// Finishes a job through the workers' API with `files` as its outputs; returns the job's id.
async fn finished_job(server: &TestServer, key: &str, files: &[(&str, Vec<u8>)]) -> Uuid {
    let upload_id = upload(server, key, &one_photo()).await;
    let job = submit(server, key, upload_id, json!({"preset": "preview"}), "standard").await;
    let id = job["id"].as_str().unwrap();
    let lease = worker_call(server, "/v1/worker/lease", &json!({"worker_id": "dl-worker", "device": "cpu"})).await;
    assert_eq!(lease.status(), 200);
    let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    let body = json!({"worker_id": "dl-worker", "attempt": 1, "files": names});
    let reply: Value = worker_call(server, &format!("/v1/worker/jobs/{id}/outputs"), &body).await.json().await.unwrap();
    for (target, (_, bytes)) in reply["uploads"].as_array().unwrap().iter().zip(files) {
        let put = server.http.put(target["url"].as_str().unwrap()).body(bytes.clone()).send().await.unwrap();
        assert!(put.status().is_success());
    }
    let outputs: Vec<Value> = files
        .iter()
        .map(|(name, bytes)| json!({"name": name, "size": bytes.len(), "sha256": sha256_hex(bytes)}))
        .collect();
    let finish = json!({"worker_id": "dl-worker", "attempt": 1, "outcome": "succeeded",
                        "report": {"status": "finished"}, "outputs": outputs, "device_seconds": 3.0});
    let response = worker_call(server, &format!("/v1/worker/jobs/{id}/finish"), &finish).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    id.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_land_in_the_job_layout_resume_with_range_and_refuse_a_corrupt_body() {
    let Some((server, proxy)) = proxied_server().await else { return };
    let account = server.signup("cloud-download@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let client = cloud_client(&server, &key);
    // A model large enough to be cut part-way, and one file of each kind of place.
    let model: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let files = [
        ("report.json", br#"{"status":"finished"}"#.to_vec()),
        ("model.glb", model),
        ("mesh.json", br#"{"triangles":12}"#.to_vec()),
        ("splats.ply", b"ply\nformat binary_little_endian 1.0\nend_header\n".to_vec()),
    ];
    let id = finished_job(&server, &key, &files).await;
    let job = client.job(id).await.unwrap();
    let root = temp_folder("download");
    let folder = root.join("job");
    let layout = JobLayout::new(&folder);

    // The model's first download is cut after 100,000 bytes; the next try resumes from there.
    const CUT: usize = 100_000;
    *proxy.state.cut.lock().unwrap() = Some(("model.glb".into(), CUT));
    let progress = Arc::new(Mutex::new(Vec::new()));
    let log = progress.clone();
    let placed = kiln_cloud::download::download_outputs(&client, &job, &folder, move |p| log.lock().unwrap().push(p))
        .await
        .unwrap();
    let expected = [
        layout.report(),
        layout.stage(kiln_protocol::Stage::Export).join("model.glb"),
        layout.mesh_json(),
        layout.splats(),
    ];
    assert_eq!(placed, expected);
    for (path, (_, bytes)) in expected.iter().zip(&files) {
        assert_eq!(sha256_hex(&std::fs::read(path).unwrap()), sha256_hex(bytes), "{}", path.display());
    }
    let model_gets: Vec<Option<String>> =
        proxy.gets().into_iter().filter(|(name, _)| name == "model.glb").map(|(_, range)| range).collect();
    assert_eq!(model_gets, [None, Some(format!("bytes={CUT}-"))], "resumed with Range from the cut");
    let last = *progress.lock().unwrap().last().unwrap();
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    assert_eq!((last.received_bytes, last.total_bytes, last.files_done), (total as u64, total as u64, 4));
    assert_no_part_files(&folder);

    // Everything in place with its hash: nothing is fetched again.
    let before = proxy.gets().len();
    kiln_cloud::download::download_outputs(&client, &job, &folder, |_| {}).await.unwrap();
    assert_eq!(proxy.gets().len(), before);

    // A corrupted body: an integrity error, and nothing under the final name.
    std::fs::remove_file(&expected[1]).unwrap();
    proxy.state.corrupt.store(true, Ordering::SeqCst);
    let error = kiln_cloud::download::download_outputs(&client, &job, &folder, |_| {}).await.unwrap_err();
    match &error {
        CloudError::Integrity { file, expected: wanted, actual } => {
            assert_eq!((file.as_str(), wanted.as_str()), ("model.glb", sha256_hex(&files[1].1).as_str()));
            assert_ne!(actual, wanted);
        }
        other => panic!("expected an integrity error, got {other:?}"),
    }
    assert!(!expected[1].exists(), "nothing half-written under the final name");
    assert_no_part_files(&folder);
    std::fs::remove_dir_all(&root).unwrap();
}

/// No `.part` file anywhere under `folder`.
fn assert_no_part_files(folder: &Path) {
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            assert!(!path.to_string_lossy().ends_with(".part"), "{} left behind", path.display());
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
}
