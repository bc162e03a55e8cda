//! `kiln_cloud::job`, the cloud-job flow the CLI and the app share, against the real server: the
//! estimate and its balance check, the upload (resumed: a second run sends nothing), the job
//! created and recorded in its folder, and `follow` falling back to polling when the job's event
//! stream is refused (a small proxy in front of the server answers the stream 503), to the job's
//! end; and a balance short of the quote refused before anything is uploaded.

use crate::common;
use crate::support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::{Options, TestServer};
use kiln_api::jobs::JobState;
use kiln_api::prices::Priority;
use kiln_cloud::job::{self, JobRecord, JobUpdate};
use kiln_cloud::login::Session;
use kiln_cloud::{Client, ClientConfig, ErrorKind, JobError, RetryPolicy};
use kiln_protocol::{Preset, SettingsOverrides};
use kiln_server::config::BillingConfig;
use serde_json::json;
use support::one_photo;

const WRITE: [&str; 2] = ["jobs:read", "jobs:write"];

/// How long a followed job may take to end once canceled: polls come every 2 s.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(30);

/// A folder with the test's photos, and the job folder beside it.
fn photos_and_folder(name: &str) -> (PathBuf, PathBuf) {
    let root = std::env::temp_dir().join(format!("kiln-cloud-job-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let photos = root.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for (name, bytes) in one_photo() {
        std::fs::write(photos.join(name), bytes).unwrap();
    }
    (photos, root.join("job"))
}

fn session_of(url: &str, key: &str) -> Session {
    let client = Client::new(ClientConfig {
        server: url::Url::parse(url).unwrap(),
        credential: None,
        retry: RetryPolicy { attempts: 3, base: Duration::from_millis(20), max: Duration::from_secs(1) },
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    Session::with_api_key(client, key.to_string())
}

/// A proxy that passes every request to `upstream` but a job's event stream, which it refuses
/// with 503 (counted).
struct NoStream {
    url: String,
    refused: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct NoStreamState {
    upstream: String,
    http: reqwest::Client,
    refused: Arc<AtomicUsize>,
}

impl NoStream {
    async fn start(server: &TestServer) -> NoStream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let refused = Arc::new(AtomicUsize::new(0));
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let state = NoStreamState { upstream: server.url.clone(), http, refused: refused.clone() };
        let app = axum::Router::new().fallback(pass_but_streams).with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        NoStream { url, refused }
    }
}

async fn pass_but_streams(State(state): State<NoStreamState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if parts.uri.path().ends_with("/events") {
        state.refused.fetch_add(1, Ordering::SeqCst);
        let body = json!({"error": {"code": "proxy_refused", "message": "no event streams here"}});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let target = format!("{}{}", state.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut forward = state.http.request(parts.method.clone(), &target).body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            forward = forward.header(name, value);
        }
    }
    let answer = forward.send().await.unwrap();
    let mut response = Response::new(Body::empty());
    *response.status_mut() = answer.status();
    for (name, value) in answer.headers() {
        if !matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection") {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    *response.body_mut() = Body::from(answer.bytes().await.unwrap());
    response
}

/// The bytes of the photos in `folder`.
fn folder_bytes(folder: &Path) -> u64 {
    std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

#[tokio::test]
async fn a_job_is_estimated_uploaded_created_and_followed_by_polling_when_its_stream_is_refused() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("cloud-job-flow@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let proxy = NoStream::start(&server).await;
    let session = session_of(&proxy.url, &key);
    let (photos, out) = photos_and_folder("flow");
    let overrides = SettingsOverrides { preset: Some(Preset::Preview), ..SettingsOverrides::default() };

    let estimate = job::estimate(&session, &photos, &overrides, Priority::Standard).await.unwrap();
    assert_eq!((estimate.quote.photos, estimate.quote.preset), (1, Preset::Preview));
    assert!(estimate.quote.credits > 0 && estimate.available >= estimate.quote.credits, "{estimate:?}");
    estimate.check().unwrap();

    let reports = AtomicUsize::new(0);
    let uploaded = job::upload(&session, &photos, &out, |_| {
        reports.fetch_add(1, Ordering::SeqCst);
    })
    .await
    .unwrap();
    let summary = uploaded.summary.unwrap();
    let total = folder_bytes(&photos);
    assert_eq!((summary.bytes_sent, summary.bytes_resumed, summary.total_bytes), (total, 0, total));
    assert!(summary.parts_sent >= 1);
    assert_eq!(reports.load(Ordering::SeqCst) as u64, summary.parts_sent + 1, "one report before, one per part");
    assert!(out.join("cloud-upload.json").is_file(), "the upload's state is in the job folder");
    let again = job::upload(&session, &photos, &out, |_| panic!("nothing to send")).await.unwrap();
    assert_eq!((again.upload_id, again.summary), (uploaded.upload_id, None), "the complete upload is found again");

    let created = job::create(&session, uploaded.upload_id, &overrides, Priority::Standard, &out).await.unwrap();
    assert_eq!((created.upload_id, created.state), (uploaded.upload_id, JobState::Queued));
    let record = JobRecord::read(&out).unwrap().unwrap();
    assert_eq!(
        record,
        JobRecord { server: format!("{}/", proxy.url), job_id: created.id, upload_id: created.upload_id }
    );

    // Follow the queued job; once the stream is refused and polling has begun, cancel it from
    // elsewhere (the server itself, not through the proxy).
    let polling = AtomicBool::new(false);
    let mut updates = Vec::new();
    let followed = job::follow(&session, created.id, |update| {
        if matches!(update, JobUpdate::Polling(_)) {
            polling.store(true, Ordering::SeqCst);
        }
        updates.push(update);
    });
    let cancel = async {
        while !polling.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let response = support::post(&server, &key, &format!("/v1/jobs/{}/cancel", created.id), &json!({})).await;
        assert!(response.status().is_success(), "{}", response.status());
    };
    let (ended, ()) = tokio::time::timeout(FOLLOW_TIMEOUT, async { tokio::join!(followed, cancel) }).await.unwrap();
    let ended = ended.unwrap();
    assert_eq!((ended.id, ended.state), (created.id, JobState::Canceled));
    let Some(JobUpdate::Polling(error)) = updates.first() else { panic!("the stream's failure first: {updates:?}") };
    assert_eq!((error.kind(), error.code()), (ErrorKind::Server, Some("proxy_refused")));
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 3, "opened as many times as the retry policy allows");
    let Some(JobUpdate::Polled(last)) = updates.last() else { panic!("a polled job last: {updates:?}") };
    assert_eq!(last.state, JobState::Canceled);
    assert!(updates[1..].iter().all(|u| matches!(u, JobUpdate::Polled(_))), "{updates:?}");
    std::fs::remove_dir_all(out.parent().unwrap()).unwrap();
}

#[tokio::test]
async fn a_balance_short_of_the_quote_is_refused_before_any_upload() {
    let options = Options {
        billing: BillingConfig { signup_credits: 0, ..BillingConfig::without_stripe() },
        ..Options::default()
    };
    let Some(server) = TestServer::start_with(options).await else { return };
    let account = server.signup("cloud-job-poor@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let session = session_of(&server.url, &key);
    let (photos, out) = photos_and_folder("poor");
    let estimate = job::estimate(&session, &photos, &SettingsOverrides::default(), Priority::Rush).await.unwrap();
    assert_eq!(estimate.available, 0);
    assert!(estimate.quote.credits > 0);
    let error = estimate.check().unwrap_err();
    assert!(
        matches!(error, JobError::NotEnoughCredits { needed, available: 0 } if needed == estimate.quote.credits),
        "{error:?}"
    );
    assert_eq!(error.kind(), ErrorKind::PaymentRequired);
    assert!(!out.exists(), "nothing written");
    std::fs::remove_dir_all(out.parent().unwrap()).unwrap();
}
