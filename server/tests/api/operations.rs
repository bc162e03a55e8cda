//! Operations against the real PostgreSQL and SeaweedFS: idempotency keys, rate limits, metrics,
//! health and readiness, CORS, security headers and request ids.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::{Options, TestServer, error_code};
use kiln_server::config::{OperationsConfig, RateLimit};
use serde_json::{Value, json};
use uuid::Uuid;

fn key_request(server: &TestServer, token: &str, idempotency_key: &str, body: &Value) -> reqwest::RequestBuilder {
    server.http.post(server.at("/v1/api-keys")).bearer_auth(token).header("Idempotency-Key", idempotency_key).json(body)
}

async fn api_key_rows(server: &TestServer, name: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE name = $1").bind(name).fetch_one(&server.db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_replays_the_first_response_and_refuses_another_request() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("idem@example.com").await;
    let body = json!({"name": "shop", "scopes": ["jobs:read"], "mode": "test"});

    // A response that does not show a secret is replayed byte for byte.
    let declared = json!({"files": [{"name": "a.jpg", "size": 10, "sha256": "84d89877f0d4041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f7882"}]});
    let upload = |key: &'static str| {
        server
            .http
            .post(server.at("/v1/uploads"))
            .bearer_auth(&account.access_token)
            .header("Idempotency-Key", key)
            .json(&declared)
            .send()
    };
    let first = upload("upload-1").await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_bytes = first.bytes().await.unwrap();
    let again = upload("upload-1").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["content-type"], "application/json");
    assert_eq!(again.bytes().await.unwrap(), first_bytes, "the replay is byte for byte the first response");
    let uploads: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads").fetch_one(&server.db).await.unwrap();
    assert_eq!(uploads, 1);

    // One that shows a secret once is not kept: the repeat learns what was created, not the
    // secret, and the secret is nowhere in the table.
    let first = key_request(&server, &account.access_token, "order-42", &body).send().await.unwrap();
    assert_eq!(first.status(), 201);
    let created: Value = first.json().await.unwrap();
    let secret = created["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("kiln_test_"));
    let again = key_request(&server, &account.access_token, "order-42", &body).send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["error"]["code"], "idempotency_secret_shown");
    assert!(again["error"]["message"].as_str().unwrap().contains(created["id"].as_str().unwrap()));
    assert!(!again.to_string().contains(&secret));
    let kept: Vec<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT body FROM idempotency_keys").fetch_all(&server.db).await.unwrap();
    assert!(kept.iter().flatten().all(|b| !String::from_utf8_lossy(b).contains(&secret)), "a secret is kept");
    assert_eq!(api_key_rows(&server, "shop").await, 1);

    // Another credential of the same organisation with the same key is another request.
    let other_credential = server.api_key(&account, &["keys:manage"], "test").await;
    let stranger = key_request(&server, &other_credential, "order-42", &body).send().await.unwrap();
    assert_eq!(error_code(stranger).await, (422, "idempotency_key_reused".into()));

    // The same key with another body, or on another path, is refused and creates nothing.
    let other = json!({"name": "shop", "scopes": ["jobs:read", "jobs:write"], "mode": "test"});
    let reused = key_request(&server, &account.access_token, "order-42", &other).send().await.unwrap();
    assert_eq!(error_code(reused).await, (422, "idempotency_key_reused".into()));
    let elsewhere = server
        .http
        .post(server.at(&format!("/v1/jobs/{}/cancel", Uuid::now_v7())))
        .bearer_auth(&account.access_token)
        .header("Idempotency-Key", "order-42")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(elsewhere).await, (422, "idempotency_key_reused".into()));
    assert_eq!(api_key_rows(&server, "shop").await, 1);

    // Without a key, each request runs.
    for _ in 0..2 {
        let plain = server
            .http
            .post(server.at("/v1/api-keys"))
            .bearer_auth(&account.access_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(plain.status(), 201);
    }
    assert_eq!(api_key_rows(&server, "shop").await, 3);

    // Keys belong to an organisation: another one's same key is its own.
    let other_account = server.signup("idem-other@example.com").await;
    let theirs = key_request(&server, &other_account.access_token, "order-42", &body).send().await.unwrap();
    assert_eq!(theirs.status(), 201);
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    let theirs: Value = theirs.json().await.unwrap();
    assert_ne!(theirs["id"], created["id"]);

    // A key must be 1 to 255 printable characters.
    let long = key_request(&server, &account.access_token, &"k".repeat(256), &body).send().await.unwrap();
    assert_eq!(error_code(long).await, (400, "invalid_idempotency_key".into()));
    // Without valid credentials the request passes through to the handler's refusal.
    let anonymous =
        server.http.post(server.at("/v1/api-keys")).header("Idempotency-Key", "x").json(&body).send().await.unwrap();
    assert_eq!(error_code(anonymous).await.0, 401);
    // The document says so on every authenticated POST under /v1 (not on signup).
    let openapi: Value = server.http.get(server.at("/openapi.json")).send().await.unwrap().json().await.unwrap();
    for (path, operation) in
        openapi["paths"].as_object().unwrap().iter().filter_map(|(p, item)| Some((p, item.get("post")?)))
    {
        let names: Vec<&str> = operation["parameters"]
            .as_array()
            .map_or(Vec::new(), |ps| ps.iter().filter_map(|p| p["name"].as_str()).collect());
        let documented = names.iter().filter(|n| n.eq_ignore_ascii_case("idempotency-key")).count();
        // Keys are bound to the credential: POSTs without one (quotes, Studio's checkout, Stripe's
        // webhook, signup and login) take none.
        let authenticated = operation["security"].as_array().is_some_and(|s| !s.is_empty());
        let expected = usize::from(path.starts_with("/v1/") && !path.starts_with("/v1/auth/") && authenticated);
        assert_eq!(documented, expected, "{path}: {names:?}");
        if expected == 1 {
            assert!(operation["responses"]["422"].is_object() && operation["responses"]["409"].is_object(), "{path}");
        }
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys").fetch_one(&server.db).await.unwrap();
    assert_eq!(
        stored, 3,
        "the upload's, the key's and the other organisation's; refusals before the handler keep nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_kept_and_replayed_and_a_5xx_is_not() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("idem-errors@example.com").await;

    let invalid = json!({"name": "", "scopes": ["jobs:read"], "mode": "test"});
    let first = key_request(&server, &account.access_token, "bad-1", &invalid).send().await.unwrap();
    assert_eq!(first.headers().get("idempotent-replayed"), None);
    assert_eq!(error_code(first).await, (400, "invalid_name".into()));
    let replayed = key_request(&server, &account.access_token, "bad-1", &invalid).send().await.unwrap();
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(error_code(replayed).await, (400, "invalid_name".into()));

    // Make the insert fail inside the handler (a 500), then let it succeed: the retry with the
    // same key runs again instead of replaying the failure.
    sqlx::query("ALTER TABLE api_keys ADD CONSTRAINT refuse_doomed CHECK (name <> 'doomed')")
        .execute(&server.db)
        .await
        .unwrap();
    let doomed = json!({"name": "doomed", "scopes": ["jobs:read"], "mode": "test"});
    let failed = key_request(&server, &account.access_token, "doomed-1", &doomed).send().await.unwrap();
    assert_eq!(error_code(failed).await, (500, "internal".into()));
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE key = 'doomed-1'")
        .fetch_one(&server.db)
        .await
        .unwrap();
    assert_eq!(kept, 0);
    sqlx::query("ALTER TABLE api_keys DROP CONSTRAINT refuse_doomed").execute(&server.db).await.unwrap();
    let retried = key_request(&server, &account.access_token, "doomed-1", &doomed).send().await.unwrap();
    assert_eq!(retried.status(), 201);
    assert!(retried.headers().get("idempotent-replayed").is_none());
    assert_eq!(api_key_rows(&server, "doomed").await, 1);

    // An expired key is a new key (rows are kept 24 hours; age this one past that).
    sqlx::query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'doomed-1'")
        .execute(&server.db)
        .await
        .unwrap();
    let after_expiry = key_request(&server, &account.access_token, "doomed-1", &doomed).send().await.unwrap();
    assert_eq!(after_expiry.status(), 201);
    assert!(after_expiry.headers().get("idempotent-replayed").is_none());
    assert_eq!(api_key_rows(&server, "doomed").await, 2);
    sqlx::query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'bad-1'")
        .execute(&server.db)
        .await
        .unwrap();
    assert_eq!(kiln_server::idempotency::purge_expired(&server.db).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_create_exactly_one() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("idem-race@example.com").await;
    let body = json!({"name": "raced", "scopes": ["jobs:read"], "mode": "test"});
    let requests = (0..8).map(|_| key_request(&server, &account.access_token, "race-1", &body).send());
    let responses = futures_util::future::join_all(requests).await;
    let (mut created, mut shown, mut in_progress) = (0, 0, 0);
    for response in responses {
        let response = response.unwrap();
        match (response.status().as_u16(), error_code(response).await.1.as_str()) {
            (201, _) => created += 1,
            (409, "idempotency_secret_shown") => shown += 1,
            (409, "idempotency_in_progress") => in_progress += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    eprintln!("{created} created, {shown} told it was created, {in_progress} told it is in progress");
    assert_eq!(created, 1, "{shown} shown, {in_progress} in progress");
    assert_eq!(api_key_rows(&server, "raced").await, 1);
}

fn limited(per_key: RateLimit, per_ip: RateLimit) -> Options {
    let trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    Options {
        operations: OperationsConfig { per_key, per_ip, trusted_proxies, ..OperationsConfig::unlimited() },
        ..Options::default()
    }
}

async fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"].to_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after_then_let_requests_through() {
    let options = limited(RateLimit { per_second: 1.0, burst: 2 }, RateLimit { per_second: 1.0, burst: 4 });
    let Some(server) = TestServer::start_with(options).await else { return };
    let account = server.signup("limits@example.com").await; // the address's first request
    let get_keys = |token: &str| server.http.get(server.at("/v1/api-keys")).bearer_auth(token).send();

    // Per credential: a burst of 2, then 429 with Retry-After.
    assert_eq!(get_keys(&account.access_token).await.unwrap().status(), 200);
    assert_eq!(get_keys(&account.access_token).await.unwrap().status(), 200);
    let refused = get_keys(&account.access_token).await.unwrap();
    assert_eq!(retry_after(&refused).await, 1);
    assert!(refused.headers().contains_key("x-request-id"));
    assert_eq!(error_code(refused).await, (429, "rate_limited".into()));
    // Probes and scrapes are never limited.
    for path in ["/healthz", "/readyz", "/metrics"] {
        for _ in 0..5 {
            assert_eq!(server.http.get(server.at(path)).send().await.unwrap().status(), 200, "{path}");
        }
    }
    // Per address: 3 of its burst of 4 are spent (signup and two listings); the 4th passes, the
    // 5th is refused whatever its credential.
    assert_eq!(server.http.get(server.at("/v1/limits")).send().await.unwrap().status(), 200);
    let by_address = server.http.get(server.at("/v1/limits")).send().await.unwrap();
    assert_eq!(error_code(by_address).await, (429, "rate_limited".into()));
    // Another client behind the trusted proxy (127.0.0.1) has its own bucket.
    let forwarded =
        server.http.get(server.at("/v1/limits")).header("x-forwarded-for", "203.0.113.9").send().await.unwrap();
    assert_eq!(forwarded.status(), 200);

    // After Retry-After the credential and the address pass again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get_keys(&account.access_token).await.unwrap().status(), 200);
}

/// The exposition's line for `series`, or a panic showing the text.
fn sample(text: &str, series: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '));
    let line = line.unwrap_or_else(|| panic!("{series} missing from\n{text}"));
    line[series.len()..].trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_routes_by_template_and_read_the_queue_from_the_database() {
    let options = Options {
        operations: OperationsConfig { metrics_token: Some("scrape-token".into()), ..OperationsConfig::unlimited() },
        ..Options::default()
    };
    let Some(server) = TestServer::start_with(options).await else { return };
    let account = server.signup("metrics@example.com").await;
    let ids = [Uuid::now_v7(), Uuid::now_v7()];
    for id in ids {
        let missing = server
            .http
            .delete(server.at(&format!("/v1/api-keys/{id}")))
            .bearer_auth(&account.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
    }
    server.http.get(server.at("/no/such/route")).send().await.unwrap();

    let upload = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO uploads (id, org_id, state, kind, expires_at) VALUES ($1, $2, 'complete', 'photos', now() + interval '1 day')",
    )
    .bind(upload)
    .bind(account.org_id)
    .execute(&server.db)
    .await
    .unwrap();
    for (state, priority, gpu_seconds) in [
        ("queued", "rush", 0.0),
        ("queued", "rush", 0.0),
        ("queued", "standard", 0.0),
        ("running", "standard", 3.0),
        ("failed", "rush", 9.5),
    ] {
        sqlx::query(
            "INSERT INTO jobs (id, org_id, upload_id, state, priority, mode, settings, max_attempts, gpu_seconds)
             VALUES ($1, $2, $3, $4, $5, 'test', '{}', 3, $6)",
        )
        .bind(Uuid::now_v7())
        .bind(account.org_id)
        .bind(upload)
        .bind(state)
        .bind(priority)
        .bind(gpu_seconds)
        .execute(&server.db)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO workers (id, device, last_seen) VALUES ('w-live', 'cpu', now()), ('w-gone', 'cpu', now() - interval '10 minutes')")
        .execute(&server.db)
        .await
        .unwrap();
    server.state.ops.metrics.observe_job(&json!({"stages": [
        {"stage": "check", "status": "finished", "seconds": 4.0, "message": ""},
        {"stage": "train", "status": "skipped", "seconds": 300.0, "message": ""},
    ]}));

    let anonymous = server.http.get(server.at("/metrics")).send().await.unwrap();
    assert_eq!(error_code(anonymous).await, (401, "unauthorized".into()));
    let wrong = server.http.get(server.at("/metrics")).bearer_auth("not-it").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let response = server.http.get(server.at("/metrics")).bearer_auth("scrape-token").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.unwrap();

    assert_eq!(
        sample(&text, r#"kiln_http_requests_total{method="DELETE",route="/v1/api-keys/{id}",status="404"}"#),
        2.0
    );
    assert_eq!(sample(&text, r#"kiln_http_requests_total{method="POST",route="/v1/auth/signup",status="201"}"#), 1.0);
    assert_eq!(sample(&text, r#"kiln_http_requests_total{method="GET",route="unmatched",status="404"}"#), 1.0);
    assert_eq!(sample(&text, r#"kiln_http_requests_total{method="GET",route="/metrics",status="401"}"#), 2.0);
    for id in ids {
        assert!(!text.contains(&id.to_string()), "a raw path leaked into a label");
    }
    assert_eq!(
        sample(&text, r#"kiln_http_request_duration_seconds_count{method="DELETE",route="/v1/api-keys/{id}"}"#),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            r#"kiln_http_request_duration_seconds_bucket{method="DELETE",route="/v1/api-keys/{id}",le="+Inf"}"#
        ),
        2.0
    );
    assert_eq!(sample(&text, "kiln_http_requests_in_flight"), 1.0, "the scrape itself");
    assert_eq!(sample(&text, r#"kiln_queue_depth{priority="rush"}"#), 2.0);
    assert_eq!(sample(&text, r#"kiln_queue_depth{priority="standard"}"#), 1.0);
    assert_eq!(sample(&text, r#"kiln_jobs{state="running"}"#), 1.0);
    assert_eq!(sample(&text, r#"kiln_jobs{state="failed"}"#), 1.0);
    assert_eq!(sample(&text, r#"kiln_jobs{state="succeeded"}"#), 0.0);
    assert_eq!(sample(&text, "kiln_workers_active"), 1.0);
    assert_eq!(sample(&text, "kiln_gpu_seconds_total"), 12.5);
    assert_eq!(sample(&text, "kiln_database_up"), 1.0);
    assert_eq!(sample(&text, r#"kiln_job_stage_duration_seconds_sum{stage="check"}"#), 4.0);
    assert!(!text.contains(r#"stage="train""#), "a skipped stage is not observed again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_cors_security_headers_and_request_ids() {
    let Some(server) = TestServer::start().await else { return };
    let healthz = server.http.get(server.at("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = server.http.get(server.at("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200);
    assert_eq!(readyz.json::<Value>().await.unwrap()["status"], "ready");

    // Every response, success or refusal, carries the security headers and a request id.
    let unauthorized = server.http.get(server.at("/v1/api-keys")).send().await.unwrap();
    let unmatched = server.http.get(server.at("/nowhere")).send().await.unwrap();
    assert_eq!((unauthorized.status().as_u16(), unmatched.status().as_u16()), (401, 404));
    for response in [&healthz, &unauthorized, &unmatched] {
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
        assert!(headers["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
        let id = headers["x-request-id"].to_str().unwrap();
        assert!(Uuid::parse_str(id).is_ok(), "{id}");
    }
    assert_ne!(healthz.headers()["x-request-id"], unauthorized.headers()["x-request-id"]);
    // A caller's own request id is kept, so it can follow the request through the logs.
    let traced = server.http.get(server.at("/healthz")).header("x-request-id", "client-trace-7").send().await.unwrap();
    assert_eq!(traced.headers()["x-request-id"], "client-trace-7");

    // CORS: the configured origin may call with credentials and an idempotency key; another may not.
    let preflight = |origin: &'static str| {
        server
            .http
            .request(reqwest::Method::OPTIONS, server.at("/v1/api-keys"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type,idempotency-key")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    let methods = allowed.headers()["access-control-allow-methods"].to_str().unwrap().to_ascii_uppercase();
    assert!(methods.contains("POST"), "{methods}");
    let headers = allowed.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    for header in ["authorization", "content-type", "idempotency-key"] {
        assert!(headers.contains(header), "{headers}");
    }
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    let simple = server.http.get(server.at("/v1/limits")).header("origin", "https://app.example").send().await.unwrap();
    assert_eq!(simple.headers()["access-control-allow-origin"], "https://app.example");
    let exposed = simple.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    for header in ["x-request-id", "retry-after", "idempotent-replayed"] {
        assert!(exposed.contains(header), "{exposed}");
    }
    let foreign =
        server.http.get(server.at("/v1/limits")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(foreign.headers().get("access-control-allow-origin").is_none());
}
