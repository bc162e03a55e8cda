//! Staff routes: only a staff user's own token gets in (not other users, not API keys, not
//! after a demotion, which takes effect at once), `kiln-server admin promote|demote` sets the
//! flag, grants and revocations move exact balances and are in the organisation's ledger with
//! their reason and administrator, a revocation beyond what is available changes nothing, and
//! an unknown organisation is 404.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::ledger::{grant, staff, start_exact};
use crate::support;

use std::process::Command;

use common::{TestServer, error_code};
use serde_json::{Value, json};
use support::{get, one_photo, post, submit, upload};
use uuid::Uuid;

const WRITE: [&str; 2] = ["jobs:read", "jobs:write"];

/// The three admin routes on `org`, each as (method, path).
fn routes(org: Uuid) -> [(&'static str, String); 3] {
    [
        ("GET", format!("/v1/admin/orgs/{org}")),
        ("POST", format!("/v1/admin/orgs/{org}/credits")),
        ("GET", format!("/v1/admin/orgs/{org}/jobs")),
    ]
}

async fn call(server: &TestServer, credential: Option<&str>, method: &str, path: &str) -> reqwest::Response {
    let mut request = match method {
        "POST" => server.http.post(server.at(path)).json(&json!({"credits": 5, "reason": "probe"})),
        _ => server.http.get(server.at(path)),
    };
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    request.send().await.unwrap()
}

/// `kiln-server admin <action> <email>` against the test database; whether it succeeded.
fn admin_command(server: &TestServer, action: &str, email: &str) -> bool {
    Command::new(env!("CARGO_BIN_EXE_kiln-server"))
        .args(["admin", action, email])
        .env("DATABASE_URL", &server.state.config.database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run kiln-server admin")
        .status
        .success()
}

/// `GET /v1/credits` as `token`.
async fn balances(server: &TestServer, token: &str) -> Value {
    let response = get(server, token, "/v1/credits").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// How many ledger transactions `org` has.
async fn transactions(server: &TestServer, org: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ledger_transactions WHERE org_id = $1")
        .bind(org)
        .fetch_one(&server.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn only_staff_with_a_user_token_get_in() {
    let Some(server) = TestServer::start().await else { return };
    let customer = server.signup("admin-gate-customer@example.com").await;
    let user = server.signup("admin-gate-user@example.com").await;
    let org = customer.org_id;

    // Not staff: a user's token, an API key, no credentials.
    let key = server.api_key(&user, &["jobs:read", "jobs:write", "keys:manage", "webhooks:manage"], "live").await;
    for (method, path) in routes(org) {
        for credential in [&user.access_token, &key] {
            let response = call(&server, Some(credential), method, &path).await;
            assert_eq!(error_code(response).await, (403, "admin_required".into()), "{method} {path}");
        }
        assert_eq!(call(&server, None, method, &path).await.status(), 401);
    }

    // Promoted with the operator's command (the email in any case): the same token gets in.
    assert!(admin_command(&server, "promote", "Admin-Gate-User@Example.com"));
    let response = get(&server, &user.access_token, &format!("/v1/admin/orgs/{org}")).await;
    assert_eq!(response.status(), 200);
    // An API key of a staff member is still not staff.
    let staff_key = server.api_key(&user, &["jobs:read"], "live").await;
    let response = get(&server, &staff_key, &format!("/v1/admin/orgs/{org}")).await;
    assert_eq!(error_code(response).await, (403, "admin_required".into()));
    // Demoted: refused at once, with a token issued while staff.
    assert!(admin_command(&server, "demote", "admin-gate-user@example.com"));
    let response = get(&server, &user.access_token, &format!("/v1/admin/orgs/{org}")).await;
    assert_eq!(error_code(response).await, (403, "admin_required".into()));
    assert!(!admin_command(&server, "promote", "nobody@example.com"), "an unknown email is an error");
    let staff_count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE is_admin").fetch_one(&server.db).await.unwrap();
    assert_eq!(staff_count, 0);
    // Nothing was granted by all those refused POSTs.
    let balance = balances(&server, &customer.access_token).await;
    assert_eq!(balance["available"], 100_000, "only the signup credits");
}

#[tokio::test]
async fn grants_and_revocations_move_exact_balances_and_are_in_the_ledger() {
    let Some(server) = start_exact().await else { return };
    let admin = staff(&server, "admin-credits-staff@example.com").await;
    let customer = server.signup("admin-credits-customer@example.com").await;
    let org = customer.org_id;
    let granted = grant(&server, &admin, org, 500, "  goodwill for the outage  ").await;
    assert_eq!(granted, json!({"available": 500, "reserved": 0, "debt": 0}));
    assert_eq!(balances(&server, &customer.access_token).await, granted);
    let revoked = grant(&server, &admin, org, -200, "granted twice by mistake").await;
    assert_eq!(revoked, json!({"available": 300, "reserved": 0, "debt": 0}));
    assert_eq!(balances(&server, &customer.access_token).await, revoked);

    // Beyond what is available: refused, nothing written.
    let before = transactions(&server, org).await;
    let path = format!("/v1/admin/orgs/{org}/credits");
    let response = post(&server, &admin.access_token, &path, &json!({"credits": -301, "reason": "too much"})).await;
    assert_eq!(error_code(response).await, (409, "insufficient_credits".into()));
    assert_eq!(balances(&server, &customer.access_token).await, revoked);
    assert_eq!(transactions(&server, org).await, before);
    // Malformed changes.
    let long = "x".repeat(501);
    for (body, code) in [
        (json!({"credits": 0, "reason": "nothing"}), "invalid_credits"),
        (json!({"credits": 5, "reason": ""}), "invalid_reason"),
        (json!({"credits": 5, "reason": "   "}), "invalid_reason"),
        (json!({"credits": 5, "reason": long}), "invalid_reason"),
        (json!({"credits": 5}), "invalid_json"),
        (json!({"credits": 5, "reason": "ok", "extra": 1}), "invalid_json"),
    ] {
        let response = post(&server, &admin.access_token, &path, &body).await;
        assert_eq!(error_code(response).await, (400, code.to_string()), "{body}");
    }
    let exactly_500 = "y".repeat(500);
    grant(&server, &admin, org, 1, &exactly_500).await;
    grant(&server, &admin, org, -1, "undo").await;
    assert_eq!(transactions(&server, org).await, before + 2);

    // In the customer's ledger, with the reason; the administrator is recorded.
    let page: Value = get(&server, &customer.access_token, "/v1/credits/ledger").await.json().await.unwrap();
    let data = page["data"].as_array().unwrap();
    let summary: Vec<(&str, i64, &str)> = data
        .iter()
        .map(|t| (t["reason"].as_str().unwrap(), t["available"].as_i64().unwrap(), t["note"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("revoke", -1, "undo"),
            ("grant", 1, exactly_500.as_str()),
            ("revoke", -200, "granted twice by mistake"),
            ("grant", 500, "goodwill for the outage"),
        ]
    );
    let admin_id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = 'admin-credits-staff@example.com'")
        .fetch_one(&server.db)
        .await
        .unwrap();
    let recorded: Vec<Option<Uuid>> = sqlx::query_scalar("SELECT admin_id FROM ledger_transactions WHERE org_id = $1")
        .bind(org)
        .fetch_all(&server.db)
        .await
        .unwrap();
    assert_eq!(recorded, vec![Some(admin_id); 4]);

    // The organisation as staff see it, then with a job.
    let detail: Value = get(&server, &admin.access_token, &format!("/v1/admin/orgs/{org}")).await.json().await.unwrap();
    assert_eq!(detail["id"], json!(org));
    assert_eq!(detail["name"], "admin-credits-customer@example.com");
    let members = detail["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0]["email"].as_str(), members[0]["role"].as_str()),
        (Some("admin-credits-customer@example.com"), Some("owner"))
    );
    assert_eq!(detail["balances"], revoked);
    let zero = json!({"queued": 0, "running": 0, "succeeded": 0, "failed": 0, "canceled": 0, "expired": 0});
    assert_eq!(detail["jobs"], zero);
    let key = server.api_key(&customer, &WRITE, "live").await;
    let upload_id = upload(&server, &key, &one_photo()).await;
    let job = submit(&server, &key, upload_id, json!({"preset": "preview"}), "standard").await;
    let quoted = job["credits"]["quoted"].as_i64().unwrap();
    let detail: Value = get(&server, &admin.access_token, &format!("/v1/admin/orgs/{org}")).await.json().await.unwrap();
    assert_eq!(detail["jobs"]["queued"], 1);
    assert_eq!(detail["balances"], json!({"available": 300 - quoted, "reserved": quoted, "debt": 0}));
    // Reserved credits cannot be revoked.
    let body = json!({"credits": -(300 - quoted + 1), "reason": "more than is available"});
    let response = post(&server, &admin.access_token, &path, &body).await;
    assert_eq!(error_code(response).await, (409, "insufficient_credits".into()));
    let jobs: Value =
        get(&server, &admin.access_token, &format!("/v1/admin/orgs/{org}/jobs")).await.json().await.unwrap();
    assert_eq!(jobs["data"].as_array().unwrap().len(), 1);
    assert_eq!(jobs["data"][0]["id"], job["id"]);
    assert!(jobs["next"].is_null());
    let staff_jobs: Value =
        get(&server, &admin.access_token, &format!("/v1/admin/orgs/{}/jobs", admin.org_id)).await.json().await.unwrap();
    assert_eq!(staff_jobs["data"], json!([]), "each organisation's own jobs");
    let response = get(&server, &admin.access_token, &format!("/v1/admin/orgs/{org}/jobs?limit=0")).await;
    assert_eq!(error_code(response).await, (400, "invalid_query".into()));

    // Unknown organisations, malformed ids.
    let unknown = Uuid::now_v7();
    for (method, path) in routes(unknown) {
        let response = call(&server, Some(&admin.access_token), method, &path).await;
        assert_eq!(error_code(response).await, (404, "not_found".into()), "{method} {path}");
    }
    let response = get(&server, &admin.access_token, "/v1/admin/orgs/not-an-id").await;
    assert_eq!(error_code(response).await, (400, "invalid_id".into()));
}
