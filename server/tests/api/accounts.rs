//! Accounts, tokens and API keys against the real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::{TestServer, error_code};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_login_refresh_rotation_and_reuse_detection() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("Ada@Example.com").await;

    let again = server
        .http
        .post(server.at("/v1/auth/signup"))
        .json(&json!({"email": "ada@example.com", "password": "another password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(again).await, (409, "email_taken".into()));
    let weak = server
        .http
        .post(server.at("/v1/auth/signup"))
        .json(&json!({"email": "bob@example.com", "password": "short"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(weak).await, (400, "weak_password".into()));

    let wrong = server
        .http
        .post(server.at("/v1/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": "not it at all"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(wrong).await, (401, "invalid_credentials".into()));
    let unknown = server
        .http
        .post(server.at("/v1/auth/login"))
        .json(&json!({"email": "nobody@example.com", "password": "not it at all"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(unknown).await, (401, "invalid_credentials".into()));
    let login = server
        .http
        .post(server.at("/v1/auth/login"))
        .json(&json!({"email": "ADA@example.com", "password": "a long enough password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let login: Value = login.json().await.unwrap();
    assert_eq!(login["org_id"], account.org_id.to_string());

    // Rotation: the first refresh works and spends the token; presenting it again revokes the
    // family, so even the newest token of that family stops working.
    let first = server
        .http
        .post(server.at("/v1/auth/refresh"))
        .json(&json!({"refresh_token": account.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let newest = first["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(newest, account.refresh_token);
    let reused = server
        .http
        .post(server.at("/v1/auth/refresh"))
        .json(&json!({"refresh_token": account.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(reused).await, (401, "refresh_token_reused".into()));
    let after =
        server.http.post(server.at("/v1/auth/refresh")).json(&json!({"refresh_token": newest})).send().await.unwrap();
    assert_eq!(error_code(after).await, (401, "invalid_grant".into()));
    // The password login's family is separate and still works.
    let other = server
        .http
        .post(server.at("/v1/auth/refresh"))
        .json(&json!({"refresh_token": login["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_shown_once_stored_hashed_scoped_and_revocable() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("keys@example.com").await;
    let created = server
        .http
        .post(server.at("/v1/api-keys"))
        .bearer_auth(&account.access_token)
        .json(&json!({"name": "ci", "scopes": ["jobs:read"], "mode": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("kiln_test_"), "{key}");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));

    // Stored as a hash: the secret appears nowhere in the table.
    let rows: Vec<(Vec<u8>, String)> =
        sqlx::query_as("SELECT secret_hash, prefix FROM api_keys").fetch_all(&server.db).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0.len(), 32);
    assert!(!rows[0].0.windows(key.len().min(32)).any(|w| w == &key.as_bytes()[..key.len().min(32)]));

    // Listed without the secret, last use recorded once used.
    let list: Value = server
        .http
        .get(server.at("/v1/api-keys"))
        .bearer_auth(&account.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(list["data"][0].get("key").is_none());
    assert!(list["data"][0]["last_used_at"].is_null());

    // The key's scope is jobs:read only: managing keys with it is refused.
    let refused = server.http.get(server.at("/v1/api-keys")).bearer_auth(key).send().await.unwrap();
    assert_eq!(error_code(refused).await, (403, "missing_scope".into()));
    let used: Value = server
        .http
        .get(server.at("/v1/api-keys"))
        .bearer_auth(&account.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(used["data"][0]["last_used_at"].is_string(), "{used}");

    let id = created["id"].as_str().unwrap();
    let revoked = server
        .http
        .delete(server.at(&format!("/v1/api-keys/{id}")))
        .bearer_auth(&account.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let after = server.http.get(server.at("/v1/api-keys")).bearer_auth(key).send().await.unwrap();
    assert_eq!(error_code(after).await, (401, "invalid_api_key".into()));

    for bad in [
        json!({"name": "", "scopes": ["jobs:read"], "mode": "live"}),
        json!({"name": "x", "scopes": ["admin"], "mode": "live"}),
        json!({"name": "x", "scopes": [], "mode": "live"}),
        json!({"name": "x", "scopes": ["jobs:read"], "mode": "prod"}),
    ] {
        let response = server
            .http
            .post(server.at("/v1/api-keys"))
            .bearer_auth(&account.access_token)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
    let none = server.http.get(server.at("/v1/api-keys")).send().await.unwrap();
    assert_eq!(error_code(none).await, (401, "unauthorized".into()));
    let forged =
        server.http.get(server.at("/v1/api-keys")).bearer_auth("eyJhbGciOiJub25lIn0.e30.").send().await.unwrap();
    assert_eq!(error_code(forged).await, (401, "invalid_token".into()));
}
