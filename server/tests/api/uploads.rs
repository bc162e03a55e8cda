//! Uploads against the real SeaweedFS: bunny-mini through presigned multipart URLs with a part
//! retried and an upload resumed; a ZIP accepted; bad input refused with its code and nothing
//! left in storage; no access across organisations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::io::{Cursor, Write};

use common::{Options, TestServer, error_code, test_limits};
use kiln_server::config::Limits;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Part size of these tests: S3's (and SeaweedFS's) minimum for every part but the last
/// (SeaweedFS answers `EntityTooSmall` below it).
const PART: usize = 5 << 20;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// bunny-mini's photos, in name order.
fn bunny_mini() -> Vec<(String, Vec<u8>)> {
    let dir = kiln_testkit::workspace_root().join("engine/fixtures/bunny-mini/images");
    let mut photos: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    photos.sort();
    assert!(photos.len() >= 10, "bunny-mini has its photos");
    photos
}

/// A JPEG of bunny-mini padded past one part (decoders ignore bytes after the end marker), so
/// that one file has two parts: no fixture photo is larger than 5 MiB.
fn padded_photo() -> (String, Vec<u8>) {
    let (_, mut bytes) = bunny_mini().remove(0);
    bytes.resize(PART + 4321, 0);
    ("padded.jpg".into(), bytes)
}

fn declare(files: &[(String, Vec<u8>)]) -> Value {
    json!({"files": files.iter().map(|(name, bytes)| json!({
        "name": name, "size": bytes.len(), "sha256": sha256_hex(bytes),
    })).collect::<Vec<_>>()})
}

/// A signed-up organisation with a `jobs:read jobs:write` key.
struct Client {
    key: String,
    org_id: Uuid,
}

impl Client {
    async fn new(server: &TestServer, email: &str) -> Client {
        let account = server.signup(email).await;
        let key = server.api_key(&account, &["jobs:read", "jobs:write"], "live").await;
        Client { key, org_id: account.org_id }
    }

    async fn create(&self, server: &TestServer, body: &Value) -> reqwest::Response {
        server.http.post(server.at("/v1/uploads")).bearer_auth(&self.key).json(body).send().await.unwrap()
    }

    async fn get(&self, server: &TestServer, id: &str) -> reqwest::Response {
        server.http.get(server.at(&format!("/v1/uploads/{id}"))).bearer_auth(&self.key).send().await.unwrap()
    }

    async fn complete(&self, server: &TestServer, id: &str) -> reqwest::Response {
        server.http.post(server.at(&format!("/v1/uploads/{id}/complete"))).bearer_auth(&self.key).send().await.unwrap()
    }

    /// Opens an upload of `files` and returns its body.
    async fn open(&self, server: &TestServer, files: &[(String, Vec<u8>)]) -> Value {
        let response = self.create(server, &declare(files)).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }
}

/// The bytes of part `number` (from 1) of `bytes` cut in [`PART`] pieces.
fn part_of(bytes: &[u8], number: u64) -> Vec<u8> {
    let start = (number as usize - 1) * PART;
    bytes[start..(start + PART).min(bytes.len())].to_vec()
}

/// PUTs `body` to a presigned part URL; returns the status and the `ETag` storage answered.
async fn put_part(server: &TestServer, url: &str, body: Vec<u8>) -> (StatusCode, Option<String>) {
    let response = server.http.put(url).body(body).send().await.unwrap();
    let etag = response.headers().get("etag").map(|v| v.to_str().unwrap().to_string());
    (response.status(), etag)
}

/// Uploads every part listed in `file` (an upload object's file) from `bytes`.
async fn send_parts(server: &TestServer, file: &Value, bytes: &[u8]) {
    for part in file["parts"].as_array().unwrap() {
        let (status, etag) =
            put_part(server, part["url"].as_str().unwrap(), part_of(bytes, part["number"].as_u64().unwrap())).await;
        assert_eq!(status, StatusCode::OK);
        assert!(etag.is_some(), "storage acknowledges a part with an ETag");
    }
}

fn file<'a>(upload: &'a Value, name: &str) -> &'a Value {
    upload["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {upload}"))
}

fn numbers(parts: &Value) -> Vec<u64> {
    parts.as_array().unwrap().iter().map(|p| p["number"].as_u64().unwrap()).collect()
}

/// What storage holds under the organisation's prefix.
async fn org_objects(server: &TestServer, org_id: Uuid) -> Vec<String> {
    server.state.storage.list(&format!("orgs/{org_id}/")).await.unwrap().into_iter().map(|o| o.key).collect()
}

/// The multipart upload ids of an upload's files (while it is open).
async fn multipart_ids(server: &TestServer, upload_id: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT object_key, multipart_id FROM upload_files WHERE upload_id = $1 AND multipart_id IS NOT NULL ORDER BY idx")
        .bind(upload_id.parse::<Uuid>().unwrap())
        .fetch_all(&server.db)
        .await
        .unwrap()
}

/// Completion was refused: the code is as expected, the upload is rejected for good (GET says
/// so, completing again is refused, no job can take it), nothing of it is left in storage and
/// its multipart uploads are gone with their parts.
async fn assert_rejected(server: &TestServer, client: &Client, id: &str, multiparts: &[(String, String)], code: &str) {
    let response = client.get(server, id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let upload: Value = response.json().await.unwrap();
    assert_eq!(upload["state"], "rejected", "{upload}");
    assert_eq!(upload["error"]["code"], code);
    assert!(upload["files"].as_array().unwrap().iter().all(|f| f["parts"].as_array().unwrap().is_empty()), "no URLs");
    assert_eq!(error_code(client.complete(server, id).await).await, (409, "upload_rejected".into()));
    let inputs = kiln_server::uploads::complete_inputs(&server.db, client.org_id, id.parse().unwrap()).await;
    assert_eq!(inputs.err().map(|e| e.code()), Some("upload_not_complete"));
    assert_eq!(org_objects(server, client.org_id).await, Vec::<String>::new(), "nothing left in storage");
    for (key, multipart_id) in multiparts {
        assert_eq!(server.state.storage.list_parts(key, multipart_id).await.unwrap(), None, "multipart {key} aborted");
    }
    assert!(
        !std::fs::read_dir(std::env::temp_dir()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("kiln-upload-{id}"))),
        "no scratch folder left"
    );
}

#[tokio::test]
async fn bunny_mini_uploads_by_presigned_multipart_with_a_part_retried_and_a_resume() {
    let Some(server) = TestServer::start().await else { return };
    let client = Client::new(&server, "uploader@example.com").await;
    let mut files = bunny_mini();
    files.push(padded_photo());
    let (padded_name, padded) = files.last().cloned().unwrap();

    let upload = client.open(&server, &files).await;
    assert_eq!(upload["state"], "open");
    assert_eq!(upload["kind"], "photos");
    assert!(upload["expires_at"].is_string() && upload["urls_expire_at"].is_string());
    let id = upload["id"].as_str().unwrap().to_string();
    let big = file(&upload, &padded_name);
    assert_eq!(big["part_size"], PART);
    assert_eq!(big["part_count"], 2);
    assert_eq!(big["parts"][0]["size"], PART);
    assert_eq!(big["parts"][1]["size"], 4321);
    for (name, bytes) in &files[..files.len() - 1] {
        let small = file(&upload, name);
        assert_eq!(
            (small["part_count"].as_u64(), small["parts"][0]["size"].as_u64()),
            (Some(1), Some(bytes.len() as u64))
        );
    }

    // Part 1 of the big file is retried: a tampered URL is refused by storage, then the right
    // one is sent. Part 2 first arrives truncated (storage takes it; the server will not).
    let url1 = big["parts"][0]["url"].as_str().unwrap();
    let tampered = url1.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    assert_eq!(put_part(&server, &tampered, part_of(&padded, 1)).await.0, StatusCode::FORBIDDEN);
    let (status, etag1) = put_part(&server, url1, part_of(&padded, 1)).await;
    assert_eq!(status, StatusCode::OK);
    let truncated = part_of(&padded, 2)[..4000].to_vec();
    assert_eq!(put_part(&server, big["parts"][1]["url"].as_str().unwrap(), truncated).await.0, StatusCode::OK);
    // Half the photos go up, then the client loses its state.
    let half = files.len() / 2;
    let mut sent_etags = Vec::new();
    for (name, bytes) in &files[..half] {
        let (status, etag) =
            put_part(&server, file(&upload, name)["parts"][0]["url"].as_str().unwrap(), bytes.clone()).await;
        assert_eq!(status, StatusCode::OK);
        sent_etags.push((name.clone(), etag.unwrap()));
    }
    drop(upload);

    // Resume: the server lists what storage holds and gives URLs for the rest only.
    let response = client.get(&server, &id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let resumed: Value = response.json().await.unwrap();
    assert_eq!(resumed["state"], "open");
    for (name, etag) in &sent_etags {
        let f = file(&resumed, name);
        assert_eq!(numbers(&f["parts"]), Vec::<u64>::new(), "{name} needs nothing more");
        assert_eq!(f["received"][0]["etag"].as_str(), Some(etag.as_str()), "{name}'s ETag is the one storage answered");
    }
    for (name, _) in &files[half..files.len() - 1] {
        let f = file(&resumed, name);
        assert_eq!(numbers(&f["parts"]), vec![1], "{name} is still to send");
        assert!(f["received"].as_array().unwrap().is_empty());
    }
    let big = file(&resumed, &padded_name);
    assert_eq!(numbers(&big["parts"]), vec![2], "the truncated part is to send again");
    assert!(
        big["received"].as_array().unwrap().iter().any(|p| p["number"] == 1 && p["etag"].as_str() == etag1.as_deref())
    );
    assert!(big["received"].as_array().unwrap().iter().any(|p| p["number"] == 2 && p["size"] == 4000));
    for (name, bytes) in &files[half..] {
        send_parts(&server, file(&resumed, name), bytes).await;
    }

    let response = client.complete(&server, &id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let complete: Value = response.json().await.unwrap();
    assert_eq!(complete["state"], "complete");
    assert!(complete["completed_at"].is_string());
    assert!(complete["urls_expire_at"].is_null());
    for f in complete["files"].as_array().unwrap() {
        assert!(f["parts"].as_array().unwrap().is_empty() && f["received"].as_array().unwrap().is_empty());
    }

    // Storage holds exactly the files, whole; a job's inputs are them, in declaration order.
    let objects = server.state.storage.list(&format!("orgs/{}/", client.org_id)).await.unwrap();
    assert_eq!(objects.len(), files.len());
    let inputs = kiln_server::uploads::complete_inputs(&server.db, client.org_id, id.parse().unwrap()).await.unwrap();
    assert_eq!(
        inputs.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
        files.iter().map(|f| f.0.clone()).collect::<Vec<_>>()
    );
    for (input, (_, bytes)) in inputs.iter().zip(&files) {
        assert_eq!(input.size, bytes.len() as i64);
        assert_eq!(input.sha256, Sha256::digest(bytes).to_vec());
        assert!(objects.iter().any(|o| o.key == input.object_key && o.size == bytes.len() as u64));
    }
    let big_input = inputs.last().unwrap();
    let downloaded = server.http.get(server.state.storage.presign_get(&big_input.object_key)).send().await.unwrap();
    assert_eq!(downloaded.bytes().await.unwrap().as_ref(), padded.as_slice(), "the retried part is the one assembled");

    // Completing again answers the complete upload; GET shows it with nothing to send.
    let again = client.complete(&server, &id).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        (again["state"].clone(), again["completed_at"].clone()),
        (json!("complete"), complete["completed_at"].clone())
    );
    let read: Value = client.get(&server, &id).await.json().await.unwrap();
    assert_eq!(read["state"], "complete");
}

#[tokio::test]
async fn a_zip_of_photos_is_accepted() {
    let Some(server) = TestServer::start().await else { return };
    let client = Client::new(&server, "zipper@example.com").await;
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in bunny_mini() {
        writer.start_file(format!("bunny/{name}"), zip::write::SimpleFileOptions::default()).unwrap();
        writer.write_all(&bytes).unwrap();
    }
    let archive = ("Bunny Capture.ZIP".to_string(), writer.finish().unwrap().into_inner());
    let upload = client.open(&server, std::slice::from_ref(&archive)).await;
    assert_eq!(upload["kind"], "zip");
    let id = upload["id"].as_str().unwrap();
    send_parts(&server, &upload["files"][0], &archive.1).await;
    let response = client.complete(&server, id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let complete: Value = response.json().await.unwrap();
    assert_eq!(complete["state"], "complete");
    assert_eq!(org_objects(&server, client.org_id).await.len(), 1);
}

#[tokio::test]
async fn bad_declarations_are_refused_before_storage() {
    let limits = Limits { max_files: 3, max_file_bytes: 10 << 20, max_upload_bytes: 15 << 20, ..test_limits() };
    let Some(server) = TestServer::start_with(Options { limits, ..Options::default() }).await else { return };
    let client = Client::new(&server, "careless@example.com").await;
    let hash = sha256_hex(b"x");
    let one = |name: &str, size: u64| json!({"name": name, "size": size, "sha256": hash});

    let malformed = server
        .http
        .post(server.at("/v1/uploads"))
        .bearer_auth(&client.key)
        .header("content-type", "application/json")
        .body("{\"files\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(malformed).await, (400, "invalid_json".into()));

    let cases = [
        (
            json!({"files": [one("a.jpg", 10 << 20), one("b.jpg", (10 << 20) + 1)]}),
            413,
            "file_too_large",
            Some("10485760"),
        ),
        (
            json!({"files": [one("a.jpg", 1), one("b.jpg", 1), one("c.jpg", 1), one("d.jpg", 1)]}),
            413,
            "too_many_files",
            Some("3"),
        ),
        (json!({"files": [one("a.jpg", 8 << 20), one("b.jpg", 8 << 20)]}), 413, "upload_too_large", Some("15728640")),
        (json!({"files": [one("a.gif", 1)]}), 400, "unsupported_file_type", Some("a.gif")),
        (json!({"files": [one("a.zip", 1), one("b.jpg", 1)]}), 400, "unsupported_file_type", None),
        (json!({"files": [one("../a.jpg", 1)]}), 400, "invalid_file_name", None),
        (json!({"files": [one("a.jpg", 1), one("a.jpg", 1)]}), 400, "duplicate_file_name", Some("a.jpg")),
        (json!({"files": [one("a.jpg", 0)]}), 400, "invalid_file_size", None),
        (json!({"files": [{"name": "a.jpg", "size": 1, "sha256": "abc"}]}), 400, "invalid_sha256", None),
        (json!({"files": []}), 400, "empty_upload", None),
    ];
    for (body, status, code, mentions) in cases {
        let response = client.create(&server, &body).await;
        assert_eq!(response.status().as_u16(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body}");
        if let Some(text) = mentions {
            assert!(error["error"]["message"].as_str().unwrap().contains(text), "{error} names {text}");
        }
    }
    let uploads: (i64,) = sqlx::query_as("SELECT count(*) FROM uploads").fetch_one(&server.db).await.unwrap();
    assert_eq!(uploads.0, 0, "no upload was recorded");
    assert_eq!(org_objects(&server, client.org_id).await, Vec::<String>::new());
}

#[tokio::test]
async fn missing_parts_reject_the_upload_and_delete_what_was_sent() {
    let Some(server) = TestServer::start().await else { return };
    let client = Client::new(&server, "hasty@example.com").await;
    let files = vec![bunny_mini().remove(0), padded_photo()];
    let upload = client.open(&server, &files).await;
    let id = upload["id"].as_str().unwrap();
    send_parts(&server, &upload["files"][0], &files[0].1).await;
    let url = upload["files"][1]["parts"][1]["url"].as_str().unwrap();
    assert_eq!(put_part(&server, url, part_of(&files[1].1, 2)).await.0, StatusCode::OK);
    let multiparts = multipart_ids(&server, id).await;
    assert_eq!(multiparts.len(), 2);

    let response = client.complete(&server, id).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "missing_parts");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"padded.jpg\" parts 1"), "{message}");
    assert!(!message.contains(&files[0].0), "{message} names only what is missing");
    assert_rejected(&server, &client, id, &multiparts, "missing_parts").await;
}

#[tokio::test]
async fn a_wrong_hash_rejects_the_upload_and_deletes_the_assembled_file() {
    let Some(server) = TestServer::start().await else { return };
    let client = Client::new(&server, "sloppy@example.com").await;
    let files = bunny_mini()[..2].to_vec();
    let mut declaration = declare(&files);
    declaration["files"][1]["sha256"] = json!(sha256_hex(b"something else"));
    let response = client.create(&server, &declaration).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let upload: Value = response.json().await.unwrap();
    let id = upload["id"].as_str().unwrap();
    for (f, (_, bytes)) in upload["files"].as_array().unwrap().iter().zip(&files) {
        send_parts(&server, f, bytes).await;
    }
    let multiparts = multipart_ids(&server, id).await;

    let response = client.complete(&server, id).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "hash_mismatch");
    assert!(error["error"]["message"].as_str().unwrap().contains(&files[1].0), "{error} names the file");
    assert_rejected(&server, &client, id, &multiparts, "hash_mismatch").await;
}

#[tokio::test]
async fn a_zip_slip_archive_is_refused_with_the_engines_message() {
    let Some(server) = TestServer::start().await else { return };
    let client = Client::new(&server, "attacker@example.com").await;
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let (name, photo) = bunny_mini().remove(0);
    writer.start_file(format!("photos/{name}"), zip::write::SimpleFileOptions::default()).unwrap();
    writer.write_all(&photo).unwrap();
    writer.start_file("../../evil.jpg", zip::write::SimpleFileOptions::default()).unwrap();
    writer.write_all(&photo).unwrap();
    let archive = ("capture.zip".to_string(), writer.finish().unwrap().into_inner());
    let upload = client.open(&server, std::slice::from_ref(&archive)).await;
    let id = upload["id"].as_str().unwrap();
    send_parts(&server, &upload["files"][0], &archive.1).await;
    let multiparts = multipart_ids(&server, id).await;

    let response = client.complete(&server, id).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unsafe_zip");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("unsafe path") && message.contains("../../evil.jpg"), "{message}");
    assert!(message.ends_with(": capture.zip"), "{message} names the upload's file, not a server path");
    assert_rejected(&server, &client, id, &multiparts, "unsafe_zip").await;
}

#[tokio::test]
async fn another_organisation_cannot_see_or_complete_an_upload() {
    let Some(server) = TestServer::start().await else { return };
    let owner = Client::new(&server, "owner@example.com").await;
    let other = Client::new(&server, "other@example.com").await;
    let files = bunny_mini()[..1].to_vec();
    let upload = owner.open(&server, &files).await;
    let id = upload["id"].as_str().unwrap();
    send_parts(&server, &upload["files"][0], &files[0].1).await;

    assert_eq!(error_code(other.get(&server, id).await).await, (404, "not_found".into()));
    assert_eq!(error_code(other.complete(&server, id).await).await, (404, "not_found".into()));
    assert_eq!(error_code(other.get(&server, &Uuid::new_v4().to_string()).await).await, (404, "not_found".into()));
    let inputs = kiln_server::uploads::complete_inputs(&server.db, other.org_id, id.parse().unwrap()).await;
    assert_eq!(inputs.err().map(|e| e.code()), Some("not_found"));

    // Untouched by those attempts: the owner completes it.
    let response = owner.complete(&server, id).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(org_objects(&server, other.org_id).await, Vec::<String>::new());

    // A read-only key reads but cannot upload.
    let account = server.signup("reader@example.com").await;
    let reader = server.api_key(&account, &["jobs:read"], "live").await;
    let response =
        server.http.post(server.at("/v1/uploads")).bearer_auth(&reader).json(&declare(&files)).send().await.unwrap();
    assert_eq!(error_code(response).await, (403, "missing_scope".into()));
    // Nor through an open upload of its organisation: it sees the upload without part URLs.
    let writer = server.api_key(&account, &["jobs:read", "jobs:write"], "live").await;
    let open: Value = server
        .http
        .post(server.at("/v1/uploads"))
        .bearer_auth(&writer)
        .json(&declare(&files))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = open["id"].as_str().unwrap();
    assert!(!open["files"][0]["parts"].as_array().unwrap().is_empty());
    let read: Value = server
        .http
        .get(server.at(&format!("/v1/uploads/{id}")))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["state"], "open");
    assert_eq!(read["files"][0]["parts"], serde_json::json!([]), "{read}");
    assert!(!read.to_string().contains("X-Amz-Signature"), "{read}");
}

#[tokio::test]
async fn open_uploads_past_their_expiry_are_rejected_and_emptied() {
    let Some(server) = TestServer::start().await else { return };
    let client = Client::new(&server, "slow@example.com").await;
    let files = bunny_mini()[..1].to_vec();
    let mut opened = Vec::new();
    for _ in 0..2 {
        let upload = client.open(&server, &files).await;
        send_parts(&server, &upload["files"][0], &files[0].1).await;
        let id = upload["id"].as_str().unwrap().to_string();
        opened.push((multipart_ids(&server, &id).await, id));
    }
    sqlx::query("UPDATE uploads SET expires_at = now() - interval '1 second'").execute(&server.db).await.unwrap();

    // One is completed too late, the other is swept.
    let (late_parts, late) = &opened[0];
    assert_eq!(error_code(client.complete(&server, late).await).await, (409, "upload_expired".into()));
    assert_eq!(kiln_server::uploads::expire_open(&server.state).await.unwrap(), 1);
    let (swept_parts, swept) = &opened[1];
    assert_rejected(&server, &client, late, late_parts, "upload_expired").await;
    assert_rejected(&server, &client, swept, swept_parts, "upload_expired").await;
    assert_eq!(kiln_server::uploads::expire_open(&server.state).await.unwrap(), 0);
}
