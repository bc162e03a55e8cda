//! `kiln-cloud`'s core against the real server (issue 15): retries that keep one idempotency key
//! (a server made to answer 503 twice, the first after it already created the job, ends with one
//! job), `Retry-After` honoured, typed errors with the server's code and request id, no network,
//! and a job's events followed live through a connection cut mid-stream and resumed with
//! `Last-Event-ID`. A small in-process proxy in front of the real server plays the failures and
//! records what each request carried.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{Options, TestServer};
use futures_util::StreamExt;
use kiln_api::credits::{LedgerQuery, QuoteRequest, Reason};
use kiln_api::jobs::{CreateJob, JobState};
use kiln_api::prices::Priority;
use kiln_cloud::{Client, ClientConfig, CloudError, Credential, ErrorKind, JobStreamEvent, RetryPolicy};
use kiln_protocol::{Preset, Stage};
use kiln_server::billing::ledger::{self, Account, Reference};
use kiln_server::config::BillingConfig;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{one_photo, upload, worker_call};
use uuid::Uuid;

const WRITE: [&str; 2] = ["jobs:read", "jobs:write"];

/// What the proxy does with a request.
#[derive(Clone, Copy, Debug)]
enum Action {
    Forward,
    /// Answers this status itself (with `Retry-After` when given), the server never asked.
    Refuse(u16, Option<&'static str>),
    /// Lets the server handle it, then throws the answer away and says this status instead.
    ForwardThenRefuse(u16),
    /// Forwards an event stream but ends it after its first event.
    CutAfterFirstEvent,
}

/// Decides by method, path and how many requests of that method and path came before.
type Rule = Arc<dyn Fn(&Method, &str, usize) -> Action + Send + Sync>;

/// One request the proxy saw.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    idempotency_key: Option<String>,
    last_event_id: Option<String>,
    at: Instant,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    rule: Rule,
    seen: Arc<Mutex<Vec<Seen>>>,
}

struct Proxy {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    async fn start(
        server: &TestServer,
        rule: impl Fn(&Method, &str, usize) -> Action + Send + Sync + 'static,
    ) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let state = ProxyState { upstream: server.url.clone(), http, rule: Arc::new(rule), seen: seen.clone() };
        let app = axum::Router::new().fallback(proxy).with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy { url, seen }
    }

    /// The requests seen for `method` and `path`, in order.
    fn seen(&self, method: Method, path: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|s| s.method == method && s.path == path).cloned().collect()
    }

    /// A client of the server through this proxy, with `key` and quick retries.
    fn client(&self, key: &str) -> Client {
        client_of(&self.url, Some(key))
    }
}

fn quick_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy { attempts, base: Duration::from_millis(20), max: Duration::from_secs(5) }
}

fn client_of(url: &str, key: Option<&str>) -> Client {
    Client::new(ClientConfig {
        server: url::Url::parse(url).unwrap(),
        credential: key.map(|k| Credential::ApiKey(k.to_string())),
        retry: quick_retries(5),
        timeout: Duration::from_secs(10),
    })
    .unwrap()
}

async fn proxy(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let before = {
        let mut seen = state.seen.lock().unwrap();
        let before = seen.iter().filter(|s| s.method == parts.method && s.path == path).count();
        seen.push(Seen {
            method: parts.method.clone(),
            path: path.clone(),
            idempotency_key: header("idempotency-key"),
            last_event_id: header("last-event-id"),
            at: Instant::now(),
        });
        before
    };
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let target = format!("{}{}", state.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let forward = || {
        let mut request = state.http.request(parts.method.clone(), &target).body(body.clone());
        for (name, value) in &parts.headers {
            if name != "host" && name != "content-length" {
                request = request.header(name, value);
            }
        }
        request.send()
    };
    match (state.rule)(&parts.method, &path, before) {
        Action::Refuse(status, retry_after) => refusal(status, retry_after),
        Action::ForwardThenRefuse(status) => {
            // The server does the work; its answer is lost on the way back.
            let answer = forward().await.unwrap();
            answer.bytes().await.unwrap();
            refusal(status, None)
        }
        Action::Forward => relay(forward().await.unwrap(), false).await,
        Action::CutAfterFirstEvent => relay(forward().await.unwrap(), true).await,
    }
}

fn refusal(status: u16, retry_after: Option<&'static str>) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    let body = json!({"error": {"code": "proxy_refused", "message": "the proxy said no"}});
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(after) = retry_after {
        response.headers_mut().insert("retry-after", after.parse().unwrap());
    }
    response
}

/// The server's answer passed on, streamed; with `cut`, only up to the end of its first event.
async fn relay(mut answer: reqwest::Response, cut: bool) -> Response {
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection") {
            headers.insert(name.clone(), value.clone());
        }
    }
    let status = answer.status();
    let body = if cut {
        let mut first = Vec::new();
        while let Some(chunk) = answer.chunk().await.unwrap() {
            first.extend_from_slice(&chunk);
            if let Some(end) = first.windows(2).position(|w| w == b"\n\n") {
                first.truncate(end + 2);
                break;
            }
        }
        Body::from(first)
    } else {
        Body::from_stream(answer.bytes_stream())
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn create_job(upload_id: Uuid) -> CreateJob {
    CreateJob { upload_id, settings: json!({"preset": "preview"}), priority: Priority::Standard }
}

async fn count(server: &TestServer, sql: &'static str, org_id: Uuid) -> i64 {
    sqlx::query_scalar(sql).bind(org_id).fetch_one(&server.db).await.unwrap()
}

#[tokio::test]
async fn a_post_refused_twice_runs_once_under_one_idempotency_key() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("cloud-retry@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let upload_id = upload(&server, &key, &one_photo()).await;
    // The first try reaches the server, which creates the job, but its answer is lost (503);
    // the second is refused before the server; the third gets through.
    let proxy = Proxy::start(&server, |method, path, before| match (method.as_str(), path, before) {
        ("POST", "/v1/jobs", 0) => Action::ForwardThenRefuse(503),
        ("POST", "/v1/jobs", 1) => Action::Refuse(503, None),
        _ => Action::Forward,
    })
    .await;
    let client = proxy.client(&key);
    let job = client.create_job(&create_job(upload_id)).await.unwrap();

    let tries = proxy.seen(Method::POST, "/v1/jobs");
    assert_eq!(tries.len(), 3, "two refusals, then the answer");
    let keys: Vec<&str> = tries.iter().map(|t| t.idempotency_key.as_deref().expect("an Idempotency-Key")).collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "one key for all three tries: {keys:?}");
    assert_eq!(Uuid::parse_str(keys[0]).unwrap().get_version_num(), 4);
    let jobs: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM jobs WHERE org_id = $1")
        .bind(account.org_id)
        .fetch_all(&server.db)
        .await
        .unwrap();
    assert_eq!(jobs, [(job.id,)], "one job, the one the first try made and the third was answered with");
    let reserved = count(
        &server,
        "SELECT count(*) FROM ledger_transactions WHERE org_id = $1 AND reason = 'reserve'",
        account.org_id,
    )
    .await;
    assert_eq!(reserved, 1, "its credits reserved once");

    // Another logical call gets its own key; GETs carry none.
    let quote = QuoteRequest { photos: 3, preset: Some(Preset::Preview), priority: Priority::Standard };
    client.quote(&quote).await.unwrap();
    client.quote(&quote).await.unwrap();
    let quotes = proxy.seen(Method::POST, "/v1/quotes");
    assert_eq!(quotes.len(), 2);
    assert!(quotes[0].idempotency_key.is_some() && quotes[0].idempotency_key != quotes[1].idempotency_key);
    assert_eq!(client.job(job.id).await.unwrap().state, JobState::Queued);
    assert_eq!(proxy.seen(Method::GET, &format!("/v1/jobs/{}", job.id))[0].idempotency_key, None);
}

#[tokio::test]
async fn rate_limits_are_waited_out_as_retry_after_asks() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("cloud-429@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let proxy = Proxy::start(&server, |method, path, before| match (method.as_str(), path, before) {
        ("GET", "/v1/credits", 0) => Action::Refuse(429, Some("1")),
        _ => Action::Forward,
    })
    .await;
    let started = Instant::now();
    let balances = proxy.client(&key).credits().await.unwrap();
    assert_eq!(balances.available, 100_000, "the default signup credits, read after the wait");
    let tries = proxy.seen(Method::GET, "/v1/credits");
    assert_eq!(tries.len(), 2);
    let waited = tries[1].at - tries[0].at;
    assert!(waited >= Duration::from_secs(1), "Retry-After: 1 asked for a second, the client waited {waited:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "and not much more (the policy's backoff is 20 ms)");

    // A 429 that stays is given up after the policy's tries, as a Server-kind error.
    let stubborn =
        Proxy::start(
            &server,
            |_, path, _| if path == "/v1/credits" { Action::Refuse(429, Some("0")) } else { Action::Forward },
        )
        .await;
    let error = stubborn.client(&key).credits().await.unwrap_err();
    assert!(matches!(&error, CloudError::Api { status: 429, .. }), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Server);
    assert_eq!(stubborn.seen(Method::GET, "/v1/credits").len(), 5, "the policy's five tries");
}

#[tokio::test]
async fn refusals_are_typed_with_code_status_and_request_id_and_not_retried() {
    let options = Options {
        billing: BillingConfig { signup_credits: 0, ..BillingConfig::without_stripe() },
        ..Options::default()
    };
    let Some(server) = TestServer::start_with(options).await else { return };
    let account = server.signup("cloud-errors@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let upload_id = upload(&server, &key, &one_photo()).await;
    let proxy = Proxy::start(&server, |_, _, _| Action::Forward).await;
    let client = proxy.client(&key);

    let assert_api = |error: CloudError, status: u16, code: &str, kind: ErrorKind| {
        assert_eq!(error.kind(), kind, "{error:?}");
        match &error {
            CloudError::Api { status: s, code: c, message, request_id } => {
                assert_eq!((*s, c.as_str()), (status, code));
                assert!(!message.is_empty());
                assert!(request_id.as_deref().is_some_and(|id| !id.is_empty()), "a request id: {error:?}");
                assert!(error.to_string().contains(request_id.as_deref().unwrap()), "shown: {error}");
            }
            other => panic!("expected an API error, got {other:?}"),
        }
    };
    let error = client.create_job(&create_job(upload_id)).await.unwrap_err();
    assert_api(error, 402, "insufficient_credits", ErrorKind::PaymentRequired);
    assert_eq!(proxy.seen(Method::POST, "/v1/jobs").len(), 1, "a 402 is not retried");
    assert_eq!(count(&server, "SELECT count(*) FROM jobs WHERE org_id = $1", account.org_id).await, 0);

    let missing = Uuid::new_v4();
    assert_api(client.job(missing).await.unwrap_err(), 404, "not_found", ErrorKind::NotFound);
    assert_eq!(proxy.seen(Method::GET, &format!("/v1/jobs/{missing}")).len(), 1);

    let stranger = client_of(&proxy.url, Some("kiln_live_not-a-key-of-anyone"));
    assert_api(stranger.credits().await.unwrap_err(), 401, "invalid_api_key", ErrorKind::Unauthorized);
    let nobody = client_of(&proxy.url, None);
    assert_api(nobody.credits().await.unwrap_err(), 401, "unauthorized", ErrorKind::Unauthorized);
    // set_credential takes effect on the next call.
    nobody.set_credential(Some(Credential::ApiKey(key.clone())));
    assert_eq!(nobody.credits().await.unwrap().available, 0);

    // The typed routes read the server's answers: credits, the ledger with a query string,
    // prices and quotes, limits, the job list.
    let mut tx = server.db.begin().await.unwrap();
    let note = Reference { note: Some("cloud client test".into()), ..Reference::default() };
    ledger::credit(&mut tx, account.org_id, Reason::Grant, Account::Grants, 3, &note).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(client.credits().await.unwrap().available, 3);
    let grants = client.ledger(&LedgerQuery { reason: Some(Reason::Grant), ..LedgerQuery::default() }).await.unwrap();
    assert_eq!(grants.data.len(), 1);
    assert_eq!((grants.data[0].available, grants.data[0].note.as_deref()), (3, Some("cloud client test")));
    let refunds = LedgerQuery { reason: Some(Reason::Refund), limit: Some(5), ..LedgerQuery::default() };
    assert!(client.ledger(&refunds).await.unwrap().data.is_empty(), "the reason filter reached the server");
    let prices = client.prices().await.unwrap();
    assert!(prices.presets.contains_key("preview"));
    let quote = client
        .quote(&QuoteRequest { photos: 1, preset: Some(Preset::Preview), priority: Priority::Standard })
        .await
        .unwrap();
    assert!(quote.credits >= 1);
    assert!(client.limits().await.unwrap().max_files > 0);
    assert!(client.jobs(Some(10), None).await.unwrap().data.is_empty());
    let bad_page = client.jobs(Some(10), Some(Uuid::new_v4())).await.unwrap_err();
    assert_api(bad_page, 400, "invalid_cursor", ErrorKind::Invalid);
}

#[tokio::test]
async fn an_unreachable_server_is_a_network_error_after_the_retries() {
    // A port nobody listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = Client::new(ClientConfig {
        server: url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        credential: Some(Credential::ApiKey("kiln_live_secret-never-shown".into())),
        retry: RetryPolicy { attempts: 3, base: Duration::from_millis(10), max: Duration::from_millis(50) },
        timeout: Duration::from_secs(2),
    })
    .unwrap();
    let started = Instant::now();
    let error = client.limits().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "three quick tries, not a hang");
    match &error {
        CloudError::Network { url_host, detail } => {
            assert_eq!(url_host, &format!("127.0.0.1:{port}"));
            assert!(!detail.is_empty());
        }
        other => panic!("expected a network error, got {other:?}"),
    }
    assert_eq!(error.kind(), ErrorKind::Network);
    assert!(!format!("{error} {error:?}").contains("secret-never-shown"), "no credential in the error");
    let posted = client.create_job(&create_job(Uuid::new_v4())).await.unwrap_err();
    assert_eq!(posted.kind(), ErrorKind::Network);
}

/// A progress event as a worker's heartbeat sends it.
fn progress_event() -> Value {
    json!({"stage": "train", "kind": "progress", "phase": "training", "step": {"done": 100, "total": 400},
           "metrics": null, "stage_fraction": 0.25, "job_fraction": 0.4, "eta_s": 60.0,
           "message": "step 100/400", "preview": null})
}

#[tokio::test]
async fn a_jobs_events_are_followed_through_a_cut_connection_without_repeats() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("cloud-events@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let upload_id = upload(&server, &key, &one_photo()).await;
    // The first event stream is cut after its first event; the rest pass.
    let proxy = Proxy::start(&server, |method, path, before| {
        if method == Method::GET && path.ends_with("/events") && before == 0 {
            Action::CutAfterFirstEvent
        } else {
            Action::Forward
        }
    })
    .await;
    let client = proxy.client(&key);
    let job = client.create_job(&create_job(upload_id)).await.unwrap();
    let id = job.id;
    let events_path = format!("/v1/jobs/{id}/events");
    let reader = tokio::spawn(client.events(id, None).collect::<Vec<_>>());

    // The client reconnects after the cut, before anything else happens to the job.
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.seen(Method::GET, &events_path).len() < 2 {
        assert!(Instant::now() < deadline, "the client did not reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A worker leases it, reports progress, uploads its output and finishes.
    let lease = worker_call(&server, "/v1/worker/lease", &json!({"worker_id": "cloud-w", "device": "cpu"})).await;
    assert_eq!(lease.status(), 200);
    let beat = json!({"worker_id": "cloud-w", "attempt": 1, "events": [progress_event()]});
    assert_eq!(worker_call(&server, &format!("/v1/worker/jobs/{id}/heartbeat"), &beat).await.status(), 200);
    let model = b"glTF bytes of the cloud client test".to_vec();
    let body = json!({"worker_id": "cloud-w", "attempt": 1, "files": ["model.glb"]});
    let reply: Value =
        worker_call(&server, &format!("/v1/worker/jobs/{id}/outputs"), &body).await.json().await.unwrap();
    let put_url = reply["uploads"][0]["url"].as_str().unwrap();
    assert!(server.http.put(put_url).body(model.clone()).send().await.unwrap().status().is_success());
    let outputs = json!([{"name": "model.glb", "size": model.len(), "sha256": hex::encode(Sha256::digest(&model))}]);
    let finish = json!({"worker_id": "cloud-w", "attempt": 1, "outcome": "succeeded", "outputs": outputs,
                        "device_seconds": 3.0});
    assert_eq!(worker_call(&server, &format!("/v1/worker/jobs/{id}/finish"), &finish).await.status(), 200);

    let events: Vec<JobStreamEvent> = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the stream ended after the final state")
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let states: Vec<JobState> = events
        .iter()
        .filter_map(|e| match e {
            JobStreamEvent::State { change, .. } => Some(change.state),
            JobStreamEvent::Progress { .. } => None,
        })
        .collect();
    assert_eq!(states, [JobState::Queued, JobState::Running, JobState::Succeeded]);
    let JobStreamEvent::Progress { progress, .. } = &events[2] else { panic!("progress third: {events:?}") };
    assert_eq!(
        (progress.stage, progress.fraction, progress.event.message.as_str()),
        (Stage::Train, 0.4, "step 100/400")
    );
    assert!(events.last().unwrap().is_final());
    // Every event once, in the log's order: the same ids a direct read of the whole log gives.
    let ids: Vec<i64> = events.iter().map(JobStreamEvent::id).collect();
    let log = support::read_events(&server, &key, &id.to_string(), None, Duration::from_secs(10)).await;
    assert_eq!(ids, log.iter().map(|e| e.id).collect::<Vec<_>>());
    let opened = proxy.seen(Method::GET, &events_path);
    assert_eq!(opened.len(), 2, "one cut, one reconnection");
    assert_eq!(opened[0].last_event_id, None);
    assert_eq!(opened[1].last_event_id, Some(ids[0].to_string()), "resumed after the one event it had");

    // Resuming after the final event ends at once, with nothing.
    let after_end = client.events(id, Some(*ids.last().unwrap())).collect::<Vec<_>>();
    let after_end = tokio::time::timeout(Duration::from_secs(10), after_end).await.unwrap();
    assert!(after_end.is_empty(), "{after_end:?}");
    // Polling sees the final snapshot and ends.
    let snapshots =
        tokio::time::timeout(Duration::from_secs(10), client.watch(id, Duration::from_millis(50)).collect::<Vec<_>>())
            .await
            .unwrap();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0].as_ref().unwrap().state, JobState::Succeeded);

    // The output's link comes from the 303's body, not followed; storage serves the bytes.
    let link = client.output_link(id, "model.glb").await.unwrap();
    let fetched = client.storage().get(&link.url).send().await.unwrap();
    assert!(fetched.headers().get("authorization").is_none());
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), model.as_slice());
    let error = client.output_link(id, "model.usdz").await.unwrap_err();
    assert_eq!((error.kind(), error.code()), (ErrorKind::NotFound, Some("not_found")));
    let error = client.cancel_job(id).await.unwrap_err();
    assert_eq!((error.kind(), error.code()), (ErrorKind::Conflict, Some("job_final")));
}

#[tokio::test]
async fn a_job_canceled_while_queued_is_followed_to_its_end() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("cloud-cancel@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let upload_id = upload(&server, &key, &one_photo()).await;
    let client = client_of(&server.url, Some(&key));
    let job = client.create_job(&create_job(upload_id)).await.unwrap();
    let watcher = tokio::spawn(client.watch(job.id, Duration::from_millis(50)).collect::<Vec<_>>());
    let canceled = client.cancel_job(job.id).await.unwrap();
    assert_eq!(canceled.state, JobState::Canceled);
    let events: Vec<JobStreamEvent> =
        tokio::time::timeout(Duration::from_secs(10), client.events(job.id, None).collect::<Vec<_>>())
            .await
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let last = events.last().unwrap();
    assert!(last.is_final());
    let JobStreamEvent::State { change, .. } = last else { panic!("a state event last") };
    assert_eq!((change.state, change.reason.as_str()), (JobState::Canceled, "canceled_by_user"));
    assert_eq!(change.error.as_ref().map(|e| e.code.as_str()), Some("canceled"));
    let snapshots = tokio::time::timeout(Duration::from_secs(10), watcher).await.unwrap().unwrap();
    assert_eq!(snapshots.last().unwrap().as_ref().unwrap().state, JobState::Canceled);
}
