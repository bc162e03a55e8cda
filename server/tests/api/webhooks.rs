//! Webhooks to customers against the real server, PostgreSQL and a receiver in the test: every
//! delivery is verified with the `standardwebhooks` crate (the reference implementation of the
//! spec, independent of the server's signing code); a receiver that fails twice gets the message
//! on the third attempt with the same `webhook-id`, and the delivery log shows the three; a
//! forged signature and an old timestamp are refused by that verifier; during a rotation both
//! secrets verify; a job that ends sends its event to the endpoints subscribed to it only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use common::{TestServer, error_code};
use serde_json::{Value, json};
use standardwebhooks::{Webhook, WebhookError};
use uuid::Uuid;

/// One request the receiver got.
#[derive(Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

/// A webhook receiver on loopback that answers `failure` (500 unless set) to its first
/// `fail_first` requests and 204 to the rest, keeping every request.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Receiver {
        Self::failing_with(fail_first, StatusCode::INTERNAL_SERVER_ERROR).await
    }

    async fn failing_with(fail_first: usize, failure: StatusCode) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(Script {
            got: got.clone(),
            fail_first,
            failure,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests came.
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        eventually(&format!("{count} deliveries at {}", self.url), || {
            let got = self.received();
            async move { (got.len() >= count).then_some(got) }
        })
        .await
    }
}

/// What the receiver answers, and where it keeps what it got.
#[derive(Clone)]
struct Script {
    got: Arc<Mutex<Vec<Received>>>,
    fail_first: usize,
    failure: StatusCode,
}

async fn receive(State(script): State<Script>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut got = script.got.lock().unwrap();
    got.push(Received { headers, body });
    if got.len() <= script.fail_first { script.failure } else { StatusCode::NO_CONTENT }
}

/// Polls `probe` until it gives a value, for up to 30 s.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server with the retry schedule shortened a thousandfold (5 s → 5 ms, 5 min → 0.3 s).
async fn server() -> Option<TestServer> {
    kiln_server::webhooks::deliver::set_retry_scale(0.001);
    TestServer::start().await
}

async fn create_endpoint(server: &TestServer, token: &str, body: Value) -> reqwest::Response {
    server.http.post(server.at("/v1/webhook-endpoints")).bearer_auth(token).json(&body).send().await.unwrap()
}

/// Creates an endpoint and returns (id, secret).
async fn endpoint(server: &TestServer, token: &str, url: &str, events: Option<&[&str]>) -> (String, String) {
    let response =
        create_endpoint(server, token, json!({"url": url, "events": events, "description": "test receiver"})).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let secret = body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (body["id"].as_str().unwrap().to_string(), secret)
}

async fn send_test(server: &TestServer, token: &str, endpoint_id: &str) -> String {
    let response = server
        .http
        .post(server.at(&format!("/v1/webhook-endpoints/{endpoint_id}/test")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["message_id"].as_str().unwrap().to_string()
}

async fn attempts(server: &TestServer, token: &str, endpoint_id: &str) -> Vec<Value> {
    let response = server
        .http
        .get(server.at(&format!("/v1/webhook-endpoints/{endpoint_id}/deliveries")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["data"].as_array().unwrap().clone()
}

fn header(received: &Received, name: &str) -> String {
    received.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_failing_receiver_gets_the_message_on_the_third_attempt_with_the_same_id() {
    let Some(server) = server().await else { return };
    let account = server.signup("hooks@example.com").await;
    let token = &account.access_token;
    let receiver = Receiver::start(2).await;
    let (endpoint_id, secret) = endpoint(&server, token, &receiver.url, None).await;
    let message_id = send_test(&server, token, &endpoint_id).await;

    let got = receiver.wait_for(3).await;
    let verifier = Webhook::new(&secret).unwrap();
    for (n, delivery) in got.iter().enumerate() {
        assert_eq!(header(delivery, "webhook-id"), message_id, "attempt {}", n + 1);
        verifier.verify(&delivery.body, &delivery.headers).unwrap_or_else(|e| panic!("attempt {}: {e}", n + 1));
        let body: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(body["type"], "webhook.test");
        assert!(body["timestamp"].is_string() && body["data"].is_object(), "{body}");
    }

    // The log: three attempts, newest first, two failures then the delivery.
    let log = eventually("three logged attempts", || async {
        let log = attempts(&server, token, &endpoint_id).await;
        (log.len() == 3 && log[0]["delivery_state"] == "delivered").then_some(log)
    })
    .await;
    let codes: Vec<i64> = log.iter().map(|a| a["status_code"].as_i64().unwrap()).collect();
    assert_eq!(codes, [204, 500, 500]);
    let numbers: Vec<i64> = log.iter().map(|a| a["attempt"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [3, 2, 1]);
    assert!(log.iter().all(|a| a["message_id"] == message_id.as_str() && a["event_type"] == "webhook.test"));
    assert!(log[0]["error"].is_null() && log[1]["error"].as_str().unwrap().contains("500"));
    assert!(log.iter().all(|a| a["duration_ms"].is_i64() && a["attempted_at"].is_string() && a["manual"] == false));

    // Nothing more is sent once delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 3);

    // A manual redelivery: same webhook-id, signed afresh, logged as manual attempt 4.
    let response = server
        .http
        .post(server.at(&format!("/v1/webhook-messages/{message_id}/redeliver")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let again = receiver.wait_for(4).await;
    assert_eq!(header(&again[3], "webhook-id"), message_id);
    verifier.verify(&again[3].body, &again[3].headers).unwrap();
    assert_eq!(again[3].body, again[0].body, "the same message is sent again");
    let log = eventually("the manual attempt logged", || async {
        let log = attempts(&server, token, &endpoint_id).await;
        (log.len() == 4).then_some(log)
    })
    .await;
    assert_eq!((log[0]["attempt"].as_i64(), log[0]["manual"].as_bool()), (Some(4), Some(true)));
}

#[tokio::test]
async fn the_verifier_refuses_forged_signatures_and_old_timestamps() {
    let Some(server) = server().await else { return };
    let account = server.signup("forgery@example.com").await;
    let receiver = Receiver::start(0).await;
    let (endpoint_id, secret) = endpoint(&server, &account.access_token, &receiver.url, Some(&["webhook.test"])).await;
    send_test(&server, &account.access_token, &endpoint_id).await;
    let genuine = receiver.wait_for(1).await.remove(0);
    let verifier = Webhook::new(&secret).unwrap();
    verifier.verify(&genuine.body, &genuine.headers).unwrap();

    // The body changed after signing.
    let mut forged_body = genuine.body.to_vec();
    forged_body.splice(0..1, *b" ");
    assert!(matches!(verifier.verify(&forged_body, &genuine.headers), Err(WebhookError::InvalidSignature)));
    let tampered: Value = serde_json::from_slice(&genuine.body)
        .map(|mut v: Value| {
            v["type"] = json!("job.succeeded");
            v
        })
        .unwrap();
    assert!(verifier.verify(tampered.to_string().as_bytes(), &genuine.headers).is_err());

    // Signed with another secret (another endpoint's).
    let (_, other_secret) = endpoint(&server, &account.access_token, &receiver.url, None).await;
    let other = Webhook::new(&other_secret).unwrap();
    assert!(matches!(other.verify(&genuine.body, &genuine.headers), Err(WebhookError::InvalidSignature)));

    // A signature that is right but for another message id.
    let mut headers = genuine.headers.clone();
    headers.insert("webhook-id", HeaderValue::from_static("msg_someotherid"));
    assert!(matches!(verifier.verify(&genuine.body, &headers), Err(WebhookError::InvalidSignature)));

    // A replay: the genuine signature over a timestamp more than 5 minutes old.
    let id = header(&genuine, "webhook-id");
    let old = chrono::Utc::now().timestamp() - 6 * 60;
    let mut replayed = genuine.headers.clone();
    replayed.insert("webhook-timestamp", HeaderValue::from_str(&old.to_string()).unwrap());
    replayed
        .insert("webhook-signature", HeaderValue::from_str(&verifier.sign(&id, old, &genuine.body).unwrap()).unwrap());
    assert!(matches!(verifier.verify(&genuine.body, &replayed), Err(WebhookError::TimestampTooOldError)));
}

#[tokio::test]
async fn during_a_rotation_the_old_and_the_new_secret_both_verify() {
    let Some(server) = server().await else { return };
    let account = server.signup("rotate@example.com").await;
    let token = &account.access_token;
    let receiver = Receiver::start(0).await;
    let (endpoint_id, old_secret) = endpoint(&server, token, &receiver.url, None).await;

    let response = server
        .http
        .post(server.at(&format!("/v1/webhook-endpoints/{endpoint_id}/rotate-secret")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert!(new_secret.starts_with("whsec_") && new_secret != old_secret);
    let until: chrono::DateTime<chrono::Utc> = rotated["previous_secret_expires_at"].as_str().unwrap().parse().unwrap();
    let overlap = until - chrono::Utc::now();
    assert!(overlap > chrono::Duration::hours(23) && overlap <= chrono::Duration::hours(24), "{overlap}");

    send_test(&server, token, &endpoint_id).await;
    let delivery = receiver.wait_for(1).await.remove(0);
    assert_eq!(header(&delivery, "webhook-signature").split(' ').count(), 2, "one signature per secret");
    Webhook::new(&old_secret).unwrap().verify(&delivery.body, &delivery.headers).unwrap();
    Webhook::new(&new_secret).unwrap().verify(&delivery.body, &delivery.headers).unwrap();

    // The secret is never shown again outside creation and rotation.
    let read = server
        .http
        .get(server.at(&format!("/v1/webhook-endpoints/{endpoint_id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let text = read.text().await.unwrap();
    assert!(!text.contains("whsec_"), "{text}");
    let list = server.http.get(server.at("/v1/webhook-endpoints")).bearer_auth(token).send().await.unwrap();
    let text = list.text().await.unwrap();
    assert!(text.contains(&endpoint_id) && !text.contains("whsec_"), "{text}");
}

#[tokio::test]
async fn endpoint_urls_must_be_https_and_public_and_events_known() {
    let Some(server) = server().await else { return };
    let account = server.signup("rules@example.com").await;
    let token = &account.access_token;
    for url in [
        "http://example.com/hook",
        "https://10.0.0.1/x",
        "https://169.254.169.254/latest",
        "https://[fd00::1]/x",
        "ftp://example.com/x",
        "not a url",
    ] {
        let (status, code) = error_code(create_endpoint(&server, token, json!({"url": url})).await).await;
        assert_eq!((status, code.as_str()), (400, "invalid_webhook_url"), "{url}");
    }
    for events in [json!(["job.exploded"]), json!([])] {
        let (status, code) =
            error_code(create_endpoint(&server, token, json!({"url": "http://127.0.0.1:9/x", "events": events})).await)
                .await;
        assert_eq!((status, code.as_str()), (400, "invalid_events"), "{events}");
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints").fetch_one(&server.db).await.unwrap();
    assert_eq!(stored, 0);
    // Members (no webhooks:manage) cannot manage endpoints: an API key without the scope.
    let key = server.api_key(&account, &["jobs:read"], "live").await;
    let (status, code) = error_code(create_endpoint(&server, &key, json!({"url": "http://127.0.0.1:9/x"})).await).await;
    assert_eq!((status, code.as_str()), (403, "missing_scope"));
}

#[tokio::test]
async fn endpoints_and_messages_of_another_organisation_are_not_found() {
    let Some(server) = server().await else { return };
    let owner = server.signup("owner@example.com").await;
    let intruder = server.signup("intruder@example.com").await;
    let receiver = Receiver::start(0).await;
    let (endpoint_id, _) = endpoint(&server, &owner.access_token, &receiver.url, None).await;
    let message_id = send_test(&server, &owner.access_token, &endpoint_id).await;
    receiver.wait_for(1).await;
    let token = &intruder.access_token;
    let requests = [
        server.http.get(server.at(&format!("/v1/webhook-endpoints/{endpoint_id}"))),
        server.http.delete(server.at(&format!("/v1/webhook-endpoints/{endpoint_id}"))),
        server.http.post(server.at(&format!("/v1/webhook-endpoints/{endpoint_id}/rotate-secret"))),
        server.http.post(server.at(&format!("/v1/webhook-endpoints/{endpoint_id}/test"))),
        server.http.get(server.at(&format!("/v1/webhook-endpoints/{endpoint_id}/deliveries"))),
        server.http.post(server.at(&format!("/v1/webhook-messages/{message_id}/redeliver"))),
    ];
    for request in requests {
        let (status, code) = error_code(request.bearer_auth(token).send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (404, "not_found"));
    }
    let list: Value = server
        .http
        .get(server.at("/v1/webhook-endpoints"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"], json!([]));
    // Still there for its owner, delivered once.
    assert_eq!(receiver.received().len(), 1);
    let list: Value = server
        .http
        .get(server.at("/v1/webhook-endpoints"))
        .bearer_auth(&owner.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_job_that_ends_notifies_the_endpoints_subscribed_to_its_event() {
    let Some(server) = server().await else { return };
    let account = server.signup("jobs@example.com").await;
    let token = &account.access_token;
    let canceled = Receiver::start(0).await;
    let succeeded = Receiver::start(0).await;
    let (_, secret) = endpoint(&server, token, &canceled.url, Some(&["job.canceled", "job.failed"])).await;
    let (quiet_id, _) = endpoint(&server, token, &succeeded.url, Some(&["job.succeeded"])).await;

    // A complete upload (the upload flow has its own tests), a job on it, canceled while queued:
    // the job's final transition enqueues `job.canceled`.
    let upload_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO uploads (id, org_id, state, kind, expires_at, completed_at) \
         VALUES ($1, $2, 'complete', 'photos', now() + interval '1 day', now())",
    )
    .bind(upload_id)
    .bind(account.org_id)
    .execute(&server.db)
    .await
    .unwrap();
    let job: Value = server
        .http
        .post(server.at("/v1/jobs"))
        .bearer_auth(token)
        .json(&json!({"upload_id": upload_id, "settings": {"preset": "preview"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = job["id"].as_str().unwrap().to_string();
    let response =
        server.http.post(server.at(&format!("/v1/jobs/{job_id}/cancel"))).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let delivery = canceled.wait_for(1).await.remove(0);
    Webhook::new(&secret).unwrap().verify(&delivery.body, &delivery.headers).unwrap();
    let body: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(body["type"], "job.canceled");
    assert_eq!(body["data"]["id"], job_id.as_str());
    assert_eq!(body["data"]["state"], "canceled");
    assert!(body["data"].get("batch_id").is_some(), "job events carry batch_id: {body}");

    // The endpoint subscribed to job.succeeded only got no delivery at all.
    let quiet: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1")
        .bind(quiet_id.parse::<Uuid>().unwrap())
        .fetch_one(&server.db)
        .await
        .unwrap();
    assert_eq!(quiet, 0);
    assert!(succeeded.received().is_empty());
}

#[tokio::test]
async fn a_receiver_that_answers_410_gone_is_disabled() {
    let Some(server) = server().await else { return };
    let account = server.signup("gone@example.com").await;
    let token = &account.access_token;
    let receiver = Receiver::failing_with(usize::MAX, StatusCode::GONE).await;
    let (endpoint_id, _) = endpoint(&server, token, &receiver.url, None).await;
    send_test(&server, token, &endpoint_id).await;
    let log = eventually("the 410 logged", || async {
        let log = attempts(&server, token, &endpoint_id).await;
        (log.len() == 1 && log[0]["delivery_state"] == "failed").then_some(log)
    })
    .await;
    assert_eq!(log[0]["status_code"], 410);
    let read: Value = server
        .http
        .get(server.at(&format!("/v1/webhook-endpoints/{endpoint_id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["enabled"], false);
    // No retry follows, and a disabled endpoint gets no new events.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1);
    let mut tx = server.db.begin().await.unwrap();
    kiln_server::webhooks::enqueue(&mut tx, account.org_id, "job.succeeded", &json!({"id": "x"})).await.unwrap();
    tx.commit().await.unwrap();
    let queued: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries").fetch_one(&server.db).await.unwrap();
    assert_eq!(queued, 1, "only the test message's delivery");
}
