//! No cross-organisation access: organisation A creates one of every resource, then organisation
//! B, with every scope, walks every operation of `/openapi.json` that takes an id and aims it at
//! A's resources. Each answers 404 or 403, lists never show A's ids, creations that name A's
//! upload are refused, and A's resources are unchanged afterwards. A new route with an id that
//! this test does not know fails it, so the walk stays complete as the API grows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::support;

use std::collections::BTreeMap;

use common::TestServer;
use reqwest::Method;
use serde_json::{Value, json};
use support::{get, one_photo, post, submit, upload};

const ALL_SCOPES: [&str; 4] = ["jobs:read", "jobs:write", "keys:manage", "webhooks:manage"];

/// A's resources, by the first segments of the paths that address them.
struct Resources {
    by_prefix: BTreeMap<&'static str, String>,
}

impl Resources {
    /// The concrete path for `template`, or None when the test has no resource for it.
    fn path(&self, template: &str) -> Option<String> {
        let (prefix, id) =
            self.by_prefix.iter().filter(|(prefix, _)| template.starts_with(*prefix)).max_by_key(|(p, _)| p.len())?;
        let rest = &template[prefix.len()..];
        let (_, after) = rest.split_once('}')?;
        // Outputs: a file name the job would have once finished.
        let after = after.replace("{file}", "model.glb");
        (!after.contains('{')).then(|| format!("{prefix}{id}{after}"))
    }

    fn ids(&self) -> impl Iterator<Item = &String> {
        self.by_prefix.values()
    }
}

async fn create_a(server: &TestServer) -> (String, Resources) {
    let a = server.signup("a@example.com").await;
    let key = server.api_key(&a, &ALL_SCOPES, "live").await;
    let keys: Value = get(server, &key, "/v1/api-keys").await.json().await.unwrap();
    let key_id = keys["data"][0]["id"].as_str().unwrap().to_string();
    let upload_id = upload(server, &key, &one_photo()).await;
    let job = submit(server, &key, upload_id, json!({"preset": "preview"}), "standard").await;
    let batch = post(server, &key, "/v1/batches", &json!({"items": [{"upload_id": upload_id}]})).await;
    assert_eq!(batch.status(), 201, "{:?}", batch.text().await);
    let batch: Value = batch.json().await.unwrap();
    let endpoint = post(server, &key, "/v1/webhook-endpoints", &json!({"url": "http://127.0.0.1:9/hook"})).await;
    assert_eq!(endpoint.status(), 201, "{:?}", endpoint.text().await);
    let endpoint: Value = endpoint.json().await.unwrap();
    let endpoint_id = endpoint["id"].as_str().unwrap().to_string();
    let test = post(server, &key, &format!("/v1/webhook-endpoints/{endpoint_id}/test"), &json!({})).await;
    assert!(test.status().is_success(), "{:?}", test.text().await);
    let test: Value = test.json().await.unwrap();
    let message_id =
        test["message_id"].as_str().or(test["id"].as_str()).expect("the test send names its message").to_string();
    let by_prefix = BTreeMap::from([
        ("/v1/api-keys/{", key_id),
        ("/v1/uploads/{", upload_id.to_string()),
        ("/v1/jobs/{", job["id"].as_str().unwrap().to_string()),
        ("/v1/batches/{", batch["id"].as_str().unwrap().to_string()),
        ("/v1/webhook-endpoints/{", endpoint_id),
        ("/v1/webhook-messages/{", message_id),
        // Staff only: B is not, and gets 403 whatever the organisation.
        ("/v1/admin/orgs/{", a.org_id.to_string()),
    ]);
    // The prefixes end before the parameter's name; keep them as the path's literal part.
    let by_prefix = by_prefix.into_iter().map(|(p, id)| (&p[..p.len() - 1], id)).collect();
    (key, Resources { by_prefix })
}

/// Every (method, path template) of the OpenAPI document.
async fn operations(server: &TestServer) -> Vec<(Method, String)> {
    let doc: Value = server.http.get(server.at("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                operations.push((Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(), path.clone()));
            }
        }
    }
    operations
}

/// A snapshot of A's resources as A sees them, to prove B changed nothing.
async fn snapshot(server: &TestServer, key: &str, resources: &Resources) -> Vec<Value> {
    let mut seen = Vec::new();
    for template in ["/v1/jobs/{id}", "/v1/uploads/{id}", "/v1/batches/{id}", "/v1/webhook-endpoints/{id}"] {
        let response = get(server, key, &resources.path(template).unwrap()).await;
        assert_eq!(response.status(), 200, "{template}");
        let mut body: Value = response.json().await.unwrap();
        // Presigned URLs and queue positions move on their own; the states must not.
        strip(&mut body, &["url", "urls_expire_at", "queue_position", "parts"]);
        seen.push(body);
    }
    let keys: Value = get(server, key, "/v1/api-keys").await.json().await.unwrap();
    seen.push(json!(keys["data"].as_array().unwrap().iter().map(|k| k["revoked_at"].clone()).collect::<Vec<_>>()));
    seen
}

fn strip(value: &mut Value, names: &[&str]) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !names.contains(&k.as_str()));
            map.values_mut().for_each(|v| strip(v, names));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip(v, names)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisation_reaches_nothing_of_the_first_through_any_route() {
    let Some(server) = TestServer::start().await else { return };
    let (a_key, a) = create_a(&server).await;
    let before = snapshot(&server, &a_key, &a).await;

    let b = server.signup("b@example.com").await;
    let b_key = server.api_key(&b, &ALL_SCOPES, "live").await;
    let mut walked = 0;
    for credential in [b.access_token.as_str(), b_key.as_str()] {
        for (method, template) in operations(&server).await {
            if !template.contains('{') {
                continue;
            }
            let path =
                a.path(&template).unwrap_or_else(|| panic!("no resource of A for {template}: add it to this test"));
            let response = server
                .http
                .request(method.clone(), server.at(&path))
                .bearer_auth(credential)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            assert!(matches!(status, 403 | 404), "{method} {path} as B answered {status}: {body}");
            for id in a.ids() {
                assert!(!body.contains(id.as_str()), "{method} {path} as B leaked {id}: {body}");
            }
            walked += 1;
        }

        // Lists show only B's own resources.
        for list in
            ["/v1/jobs", "/v1/api-keys", "/v1/webhook-endpoints", "/v1/credits/ledger", "/v1/usage", "/v1/purchases"]
        {
            let response = get(&server, credential, list).await;
            assert_eq!(response.status(), 200, "{list}");
            let body = response.text().await.unwrap();
            for id in a.ids() {
                assert!(!body.contains(id.as_str()), "GET {list} as B shows A's {id}: {body}");
            }
        }

        // Creations that name A's upload are refused as if it did not exist.
        let upload_id = a.by_prefix["/v1/uploads/"].clone();
        for (path, body) in [
            ("/v1/jobs", json!({"upload_id": upload_id, "settings": {"preset": "preview"}, "priority": "standard"})),
            ("/v1/batches", json!({"items": [{"upload_id": upload_id}]})),
        ] {
            let response = post(&server, credential, path, &body).await;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            let code =
                serde_json::from_str::<Value>(&text).unwrap()["error"]["code"].as_str().unwrap_or_default().to_string();
            assert!(
                status == 404 || (status == 400 && code.ends_with("not_found")),
                "POST {path} with A's upload as B: {status} {text}"
            );
        }
    }
    assert!(walked >= 2 * 13, "only {walked} operations with ids were walked");
    assert_eq!(snapshot(&server, &a_key, &a).await, before, "B changed A's resources");
}
