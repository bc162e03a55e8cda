//! The cloud account pane's commands on Tauri's mock runtime against the real hosted API (the
//! `kiln-server` binary on the services' PostgreSQL and SeaweedFS, `common::api_server`):
//! signed out → sign-in through the browser (the test plays it: `BROWSER` is a script that
//! records the address, the test then signs in and approves) → who and the balance → the ledger
//! and the packs → an API key created (its secret once), listed without it, working, revoked and
//! then refused by the server → sign-out, with the login revoked at the server. A server that
//! cannot be reached is a clear error within seconds. A job sent to the cloud (the app reaching the
//! server through a proxy whose network the test cuts): refused signed out, quoted signed in, its
//! upload cut by a lost network (the row fails with the reason, the photos untouched), retried
//! (only the rest sent), canceled while it waits for a GPU (canceled there too, the credits back),
//! resumed (a new job from the same upload), run by a `kiln-server worker`, its engine events live
//! in the queue and its outputs back in the job folder, its quote charged once.
//!
//! The login goes where the CLI keeps it, here the credentials file (the keyring's fallback) in a
//! scratch `XDG_CONFIG_HOME`, with the session bus pointed nowhere: no keyring of the machine is
//! touched. Without the services the server test prints SKIPPED, unless `KILN_REQUIRE_SERVICES=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use kiln_cloud::login::DESKTOP_CLIENT_ID;
use kiln_cloud::token_store::{StoredTokens, TokenStore};
use serde_json::{Value, json};
use tauri::Listener;
use tauri::test::MockRuntime;

mod common;

use common::api_server::{ApiServer, SIGNUP_CREDITS, free_port, play_browser};
use common::cut_proxy::CutProxy;

/// How long the small box job may take on the test's worker (a debug build on two cores, sharing
/// them with the app) before the test gives up.
const JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// A session bus address where nothing listens: no keyring, so the credentials file is used.
const NO_BUS: &str = "unix:path=/nonexistent/kiln-app-test-bus";

/// How long the sign-in may take once the browser was "opened": a few requests to the server.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The most an unreachable server may take to be reported: three tries with waits of at most
/// 0.5 and 1 s (src-tauri's `CALL_ATTEMPTS`), with room for a loaded machine.
const UNREACHABLE_WITHIN: Duration = Duration::from_secs(8);

/// The scratch folder of this test process: `config/` (XDG_CONFIG_HOME, where the credentials
/// file goes), `browser.sh` (the `BROWSER`) and `opened` (the last address it was given).
/// Set once, before any app starts, for every test of this binary.
fn scratch_env() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = common::fresh_dir("cloud-env");
        let (script, _opened) = common::browser_script(&dir);
        // SAFETY: set once, under the OnceLock, before this test binary starts any app, runtime
        // or client that reads the environment.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("XDG_CONFIG_HOME", dir.join("config"));
            std::env::set_var("DBUS_SESSION_BUS_ADDRESS", NO_BUS);
            std::env::set_var("BROWSER", &script);
            std::env::remove_var("KILN_API_KEY");
        }
        dir
    })
}

/// Held by each test for its whole run: the tests share the credentials file, whose writes are
/// atomic but not merged (two saves at once could each drop the other's server).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn credentials_file() -> PathBuf {
    scratch_env().join("config").join("kiln").join("credentials.json")
}

struct App {
    _app: tauri::App<MockRuntime>,
    webview: tauri::WebviewWindow<MockRuntime>,
    /// Every event of these names, as (name, payload).
    events: Arc<Mutex<Vec<(String, Value)>>>,
}

/// An app on a fresh data folder whose cloud server is `server`.
fn app(name: &str, server: &str) -> App {
    scratch_env();
    let (app, webview) = common::mock_app(&common::fresh_dir(name));
    let events = Arc::new(Mutex::new(Vec::new()));
    for event in ["cloud-changed", "cloud-login-url", "job-changed", "job-event"] {
        let sink = Arc::clone(&events);
        app.listen(event, move |e| {
            sink.lock().unwrap().push((event.to_string(), serde_json::from_str(e.payload()).unwrap()))
        });
    }
    let mut settings = common::call(&webview, "get_settings", json!({}));
    settings["cloud_url"] = json!(server);
    common::call(&webview, "set_settings", json!({ "settings": settings }));
    App { _app: app, webview, events }
}

impl App {
    fn call(&self, cmd: &str, args: Value) -> Value {
        common::call(&self.webview, cmd, args)
    }

    fn refused(&self, cmd: &str, args: Value) -> Value {
        match common::invoke(&self.webview, cmd, args) {
            Ok(body) => panic!("{cmd} should fail, it answered {body:?}"),
            Err(error) => error,
        }
    }

    fn offline(&self) -> bool {
        self.call("app_info", json!({}))["offline"].as_bool().unwrap()
    }

    fn events(&self, name: &str) -> Vec<Value> {
        self.events.lock().unwrap().iter().filter(|(n, _)| n == name).map(|(_, p)| p.clone()).collect()
    }
}

/// Signs `app` in as `email` (an account of `server`), playing the person at the browser; answers
/// the status the sign-in answered.
fn sign_in(app: &App, server: &ApiServer, email: &str) -> Value {
    std::thread::scope(|scope| {
        let webview = app.webview.clone();
        let login = scope.spawn(move || common::call(&webview, "cloud_login", json!({})));
        let address = opened_address();
        let server_url = app.call("get_settings", json!({}))["cloud_url"].as_str().unwrap().to_string();
        assert!(address.starts_with(&format!("{server_url}/oauth/authorize?")), "{address}");
        assert!(address.contains(&format!("client_id={DESKTOP_CLIENT_ID}")), "{address}");
        let visit = play_browser(server, &address, email);
        assert!(visit.login_page.contains("Kiln desktop app"), "the page names the app");
        assert_eq!(visit.final_status, 200, "{}", visit.final_page);
        assert!(visit.final_page.contains("You can close this tab"), "{}", visit.final_page);
        assert!(app.events("cloud-login-url").contains(&json!(address)), "the UI is told the address");
        login.join().unwrap()
    })
}

/// The tokens the credentials file keeps for `server`.
fn stored(server: &str) -> Option<StoredTokens> {
    let store = TokenStore::file(credentials_file());
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(store.load(server)).unwrap()
}

/// Waits for the `BROWSER` script to be handed an address; takes it.
fn opened_address() -> String {
    let opened = scratch_env().join("opened");
    let deadline = Instant::now() + LOGIN_TIMEOUT;
    while !opened.exists() {
        assert!(Instant::now() < deadline, "the browser was not opened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let address = std::fs::read_to_string(&opened).unwrap();
    std::fs::remove_file(&opened).unwrap();
    address
}

/// Whether any file under `dir` contains `text`.
fn any_file_contains(dir: &Path, text: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.map(|e| e.unwrap().path()).any(|path| {
        if path.is_dir() {
            any_file_contains(&path, text)
        } else {
            std::fs::read(&path).is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(text))
        }
    })
}

#[test]
fn sign_in_shows_the_account_keys_are_made_once_and_revoked_and_sign_out_revokes_the_login() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(server) = ApiServer::start("cloud") else { return };
    let email = "pane@example.com";
    server.signup(email);
    let app = app("cloud", &server.url);

    // Signed out: the server, where a login would be kept, and no account; the Add pane offline.
    let status = app.call("cloud_status", json!({}));
    assert_eq!(status["server"], server.url.as_str(), "{status}");
    assert_eq!(status["account"], Value::Null, "{status}");
    let kept_in = status["kept_in"].as_str().unwrap();
    assert!(kept_in.contains(&credentials_file().display().to_string()) && kept_in.contains("readable by you alone"));
    assert!(status["keyring_problem"].is_string(), "no keyring on a bus that does not exist: {status}");
    assert!(app.offline());
    let refused = app.refused("cloud_keys", json!({}));
    assert_eq!(refused["class"], "bad_input", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("not signed in"), "{refused}");

    // Sign-in: the app opens the browser (BROWSER) on the desktop client's consent page and waits;
    // the person signs in and approves; the app stores the login where the CLI finds it.
    let status = sign_in(&app, &server, email);
    assert_eq!(app.events("cloud-login-url").len(), 1, "the UI is told the address too");
    let account = &status["account"];
    assert_eq!(account["email"], email, "{status}");
    assert_eq!(account["role"], "owner", "{status}");
    assert_eq!(account["organisation"], email, "a new organisation is named after its owner: {status}");
    assert_eq!(account["balance"], json!({"available": SIGNUP_CREDITS, "reserved": 0, "debt": 0}), "{status}");
    assert!(account["scopes"].as_array().unwrap().contains(&json!("keys:manage")), "{status}");
    assert_eq!(app.events("cloud-changed").len(), 1, "sign-in changed the account");
    assert!(!app.offline(), "the Add pane's cloud choice follows the sign-in");
    let tokens = stored(&server.url).expect("the login is in the credentials file, where `kiln` looks");
    assert_eq!(tokens.client_id, DESKTOP_CLIENT_ID);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(credentials_file()).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(app.call("cloud_status", json!({}))["account"]["email"], email, "read back from the store");

    // The ledger: the signup grant, newest first, paged as the API pages it.
    let page = app.call("cloud_ledger", json!({ "limit": 10 }));
    let entries = page["entries"].as_array().unwrap();
    let grant = entries.iter().find(|e| e["reason"] == "grant").unwrap_or_else(|| panic!("{page}"));
    assert_eq!((grant["available"].as_i64(), grant["balance_after"]["available"].as_i64()), (Some(1000), Some(1000)));
    assert_eq!(page["next"], Value::Null, "one page: {page}");
    let bad_page = app.refused("cloud_ledger", json!({ "after": "not-an-id" }));
    assert_eq!(bad_page["class"], "bad_input");

    // The packs on sale; buying needs the server's Stripe, which this one lacks: a clear refusal.
    let packs = app.call("cloud_packs", json!({}));
    assert!(
        packs
            .as_array()
            .unwrap()
            .contains(&json!({"id": "pack_100", "credits": 100, "amount": 1000, "currency": "eur"})),
        "{packs}"
    );
    let buy = app.refused("cloud_buy", json!({ "pack": "pack_100" }));
    assert!(buy["message"].as_str().unwrap().contains("payments are not configured"), "{buy}");
    assert!(!scratch_env().join("opened").exists(), "no Checkout to open");

    // Bad key requests are refused before the server is asked.
    let unnamed = app.refused("cloud_key_create", json!({ "name": " ", "scopes": ["jobs:read"] }));
    assert!(unnamed["message"].as_str().unwrap().contains("name"), "{unnamed}");
    let unknown = app.refused("cloud_key_create", json!({ "name": "ci", "scopes": ["admin"] }));
    assert!(unknown["message"].as_str().unwrap().contains("unknown scope 'admin'"), "{unknown}");

    // A key: its secret in the answer once, working at the server, listed without it.
    let created = app.call("cloud_key_create", json!({ "name": "ci", "scopes": ["jobs:read", "jobs:write"] }));
    let secret = created["secret"].as_str().unwrap().to_string();
    let key = &created["key"];
    assert!(secret.starts_with("kiln_live_") && secret.starts_with(key["prefix"].as_str().unwrap()), "{created}");
    assert_eq!((key["name"].as_str(), key["active"].as_bool()), (Some("ci"), Some(true)));
    assert_eq!(key["scopes"], json!(["jobs:read", "jobs:write"]));
    let (status_code, me) = server.get("/v1/me", &secret);
    assert_eq!(status_code, 200, "the new key works: {me}");
    let keys = app.call("cloud_keys", json!({}));
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    assert_eq!(keys[0]["id"], key["id"]);
    assert!(!keys.to_string().contains(&secret), "listings never carry the secret");
    assert!(!any_file_contains(scratch_env(), &secret), "the app keeps no copy of the secret");

    // Revoked: shown so, and refused by the server.
    let revoked = app.call("cloud_key_revoke", json!({ "id": key["id"] }));
    assert_eq!(revoked["active"], false, "{revoked}");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let (status_code, refusal) = server.get("/v1/me", &secret);
    assert_eq!(status_code, 401, "the revoked key is refused: {refusal}");
    assert_eq!(app.call("cloud_keys", json!({}))[0]["active"], false);
    let bad_id = app.refused("cloud_key_revoke", json!({ "id": "kiln_live_x" }));
    assert_eq!(bad_id["class"], "bad_input");

    // Sign-out: the login is revoked at the server and forgotten; the Add pane goes offline.
    let status = app.call("cloud_logout", json!({}));
    assert_eq!(status["account"], Value::Null, "{status}");
    assert_eq!(app.events("cloud-changed").len(), 2, "sign-out changed the account");
    assert!(stored(&server.url).is_none(), "the login is gone from the store");
    assert_eq!(server.refresh(&tokens.refresh_token, DESKTOP_CLIENT_ID), (400, "invalid_grant".into()));
    assert!(app.offline());
    let keys = app.refused("cloud_keys", json!({}));
    assert!(keys["message"].as_str().unwrap().contains("not signed in"), "{keys}");
}

#[test]
fn an_unreachable_server_is_a_clear_error_within_seconds() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let server = format!("http://127.0.0.1:{}", free_port());
    let app = app("cloud-unreachable", &server);

    let started = Instant::now();
    let packs = app.refused("cloud_packs", json!({}));
    assert!(started.elapsed() < UNREACHABLE_WITHIN, "took {:?}", started.elapsed());
    assert_eq!(packs["class"], "busy", "{packs}");
    let message = packs["message"].as_str().unwrap();
    assert!(message.contains("cannot reach 127.0.0.1") && message.contains("cloud server in Settings"), "{message}");

    let login = app.refused("cloud_login", json!({}));
    assert_eq!(login["class"], "busy", "{login}");
    assert!(app.events("cloud-login-url").is_empty(), "no browser for a server that is not there");

    // A stored login for that server: the status is the network error, not "signed out".
    let tokens = StoredTokens {
        client_id: DESKTOP_CLIENT_ID.into(),
        access_token: "not.a.token".into(),
        refresh_token: "krt_unreachable".into(),
        expires_at: (SystemTime::now() + Duration::from_secs(3600)).into(),
        scope: "jobs:read".into(),
    };
    let store = TokenStore::file(credentials_file());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(store.save(&server, &tokens)).unwrap();
    let status = app.refused("cloud_status", json!({}));
    assert_eq!(status["class"], "busy", "{status}");
    assert!(status["message"].as_str().unwrap().contains("cannot reach"), "{status}");
    let logout = app.refused("cloud_logout", json!({}));
    assert!(logout["message"].as_str().unwrap().contains("still signed in"), "{logout}");
    assert!(runtime.block_on(store.load(&server)).unwrap().is_some(), "a login that was not revoked stays");
    runtime.block_on(store.delete(&server)).unwrap();
}

impl App {
    /// The queue's row of job `id`.
    fn job(&self, id: &str) -> Value {
        let jobs = self.call("list_jobs", json!({}));
        jobs.as_array().unwrap().iter().find(|j| j["id"] == id).cloned().unwrap()
    }

    /// Polls the queue until job `id` is in one of `states`.
    fn wait_for(&self, id: &str, states: &[&str], server: &ApiServer) -> Value {
        let start = Instant::now();
        loop {
            let job = self.job(id);
            if states.iter().any(|s| job["state"] == *s) {
                return job;
            }
            assert!(
                start.elapsed() < JOB_TIMEOUT,
                "job {id} still {} after {JOB_TIMEOUT:?}: {job}\nserver: {}\nworker: {}",
                job["state"],
                server.log(),
                std::fs::read_to_string(server.work.join("worker-w1.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn a_cloud_job_survives_a_lost_network_and_a_cancel_runs_on_a_worker_and_comes_back_into_the_queue() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // The app reaches the service through a proxy whose network the test cuts: the address the
    // server calls itself by.
    let proxy = CutProxy::start();
    let Some(server) = ApiServer::start_as("cloud_job", Some(&proxy.url)) else { return };
    proxy.forward_to(&server.url);
    let email = "sender@example.com";
    server.signup(email);
    let app = app("cloud-job", &proxy.url);
    let photos = common::fresh_dir("cloud-job-photos").join("box photos");
    common::copy_box_photos(&photos, usize::MAX, "steps = 300\nmax_side = 100\ncheckpoint_every = 50\n");
    let before = common::snapshot(&photos);
    let added = app.call("add_sources", json!({ "paths": [photos] }));
    let draft = added["drafts"][0]["id"].as_str().unwrap().to_string();
    let cloud = json!({ "preset": "preview", "formats": ["glb"], "where": "cloud" });

    // Signed out, the cloud is refused at Start with what to do; the draft stays.
    let refused = app.refused("start_job", json!({ "draftId": draft, "options": cloud }));
    assert!(refused["message"].as_str().unwrap().contains("not signed in"), "{refused}");
    let refused = app.refused("estimate", json!({ "draftId": draft, "options": cloud }));
    assert!(refused["message"].as_str().unwrap().contains("not signed in"), "{refused}");

    sign_in(&app, &server, email);
    let estimate = app.call("estimate", json!({ "draftId": draft, "options": cloud }));
    let credits = estimate["credits"].as_i64().unwrap_or_else(|| panic!("a cloud estimate has a quote: {estimate}"));
    assert!(credits > 0 && estimate["seconds"].as_f64().unwrap() > 0.0, "{estimate}");
    let local = app.call(
        "estimate",
        json!({ "draftId": draft, "options": { "preset": "preview", "formats": ["glb"], "where": "local" } }),
    );
    assert_eq!(local["credits"], Value::Null, "{local}");

    // The network goes as the upload completes (its parts are in storage): the row fails with the
    // reason and what to do, the photos are untouched, the app still answers.
    proxy.cut_at("/v1/uploads/");
    let row = app.call("start_job", json!({ "draftId": draft, "options": cloud }));
    let id = row["id"].as_str().unwrap().to_string();
    assert_eq!(row["where"], "cloud", "{row}");
    let failed = app.wait_for(&id, &["failed", "done"], &server);
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(proxy.is_cut(), "the network was cut during the upload");
    let error = &failed["error"];
    assert_eq!(error["class"], "busy", "{failed}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("cannot reach 127.0.0.1") && message.contains("network connection"), "{message}");
    assert_eq!(common::snapshot(&photos), before, "the photos are never touched");
    let job_dir = PathBuf::from(failed["job_dir"].as_str().unwrap());
    assert!(job_dir.join("cloud-upload.json").is_file(), "the upload's progress is kept for the retry");
    assert!(!job_dir.join("cloud-job.json").exists(), "no job was created");
    assert_eq!(app.call("list_jobs", json!({})).as_array().unwrap().len(), 1, "the app still answers");

    // Back online: the retry goes on from the upload, and the job waits there for a GPU worker.
    // Canceled here, it is canceled there too, and its reservation released.
    proxy.restore();
    app.call("retry_job", json!({ "jobId": id }));
    let start = Instant::now();
    while app.job(&id)["cloud_phase"] != "waiting" {
        assert!(start.elapsed() < JOB_TIMEOUT, "never waiting for a worker: {}", app.job(&id));
        std::thread::sleep(Duration::from_millis(100));
    }
    let first: Value = serde_json::from_slice(&std::fs::read(job_dir.join("cloud-job.json")).unwrap()).unwrap();
    app.call("cancel_job", json!({ "jobId": id }));
    let canceled = app.wait_for(&id, &["canceled", "failed", "done"], &server);
    assert_eq!(canceled["state"], "canceled", "{canceled}");
    let token = stored(&proxy.url).expect("signed in").access_token;
    let (status, remote) = server.get(&format!("/v1/jobs/{}", first["job_id"].as_str().unwrap()), &token);
    assert_eq!((status, remote["state"].as_str()), (200, Some("canceled")), "{remote}");
    let balance = &app.call("cloud_status", json!({}))["account"]["balance"];
    assert_eq!((balance["available"].as_i64(), balance["reserved"].as_i64()), (Some(SIGNUP_CREDITS), Some(0)));

    // Resumed with a worker: a new job from the same upload runs remotely with its stages live in
    // the queue, and its outputs come back into the job folder.
    let _worker = server.spawn_worker("w1");
    app.call("resume_job", json!({ "jobId": id }));
    let done = app.wait_for(&id, &["done", "failed"], &server);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!((done["where"].as_str(), done["job_fraction"].as_f64()), (Some("cloud"), Some(1.0)), "{done}");
    let phases: Vec<String> = app
        .events("job-changed")
        .iter()
        .filter(|row| row["id"] == id.as_str())
        .filter_map(|row| row["cloud_phase"].as_str().map(str::to_string))
        .fold(Vec::new(), |mut seen, phase| {
            if seen.last() != Some(&phase) {
                seen.push(phase);
            }
            seen
        });
    let order =
        |phase: &str| phases.iter().position(|p| p == phase).unwrap_or_else(|| panic!("no {phase}: {phases:?}"));
    assert!(order("uploading") < order("running") && order("running") < order("downloading"), "{phases:?}");
    let remote_stages: Vec<String> = app
        .events("job-event")
        .iter()
        .filter(|e| e["job_id"] == id.as_str())
        .map(|e| e["event"]["stage"].as_str().unwrap().to_string())
        .collect();
    for stage in ["poses", "train", "mesh", "export"] {
        assert!(remote_stages.iter().any(|s| s == stage), "the worker's {stage} events reached the queue");
    }
    let record: Value = serde_json::from_slice(&std::fs::read(job_dir.join("cloud-job.json")).unwrap()).unwrap();
    assert_eq!(record["server"].as_str().map(|s| s.trim_end_matches('/')), Some(proxy.url.as_str()), "{record}");
    assert_ne!(record["job_id"], first["job_id"], "the canceled job was not run: a new one was");
    assert_eq!(record["upload_id"], first["upload_id"], "from the same upload: no photo sent twice");
    let report = app.call("job_report", json!({ "jobId": id }));
    assert_eq!(report["status"], "finished", "{report}");
    assert!(report["metrics"]["poses"]["registered_images"].as_u64().unwrap() >= 18, "{report}");
    // model.glb, or model.failed.glb where the quality verdict failed (a 300-step preview).
    let export = job_dir.join("export");
    let glb = std::fs::read_dir(&export)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "glb"))
        .unwrap_or_else(|| panic!("no GLB came back into {}", export.display()));
    let bytes = std::fs::read(&glb).unwrap();
    assert_eq!(&bytes[..4], b"glTF", "{}", glb.display());
    assert_eq!(common::snapshot(&photos), before, "the photos are never touched");

    // The job's quote was charged once: the balance the pane shows.
    let balance = &app.call("cloud_status", json!({}))["account"]["balance"];
    assert_eq!(balance["available"].as_i64(), Some(SIGNUP_CREDITS - credits), "{balance}");
    assert_eq!(balance["reserved"].as_i64(), Some(0), "{balance}");
}
