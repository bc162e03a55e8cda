//! Watched folders on Tauri's mock runtime: the real commands, scanner thread, queue and runner.
//! A folder of mat-box photos (with a `kiln.toml` keeping the job small) copied into a watched
//! folder waits out the quiet period, is picked up, queued and finished like any job; a paused
//! folder picks nothing up; a second app on the same data folder (a restart) keeps the folder
//! and its settings, does not queue the same photos again, and picks up what arrived meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tauri::Listener;
use tauri::ipc::InvokeResponseBody;
use tauri::test::MockRuntime;

mod common;

/// How long the small box job may take in a debug build on two cores before the test gives up.
const JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// The watched folder's quiet period in the test: short, yet several scans long (a scan every
/// quarter of it), so the folder is seen waiting before it is picked up.
const QUIET_S: f64 = 1.0;

/// How long a pick-up may take once the copy is done: the quiet period plus scans, with room
/// for a loaded machine.
const PICK_UP_TIMEOUT: Duration = Duration::from_secs(60);

struct App {
    _app: tauri::App<MockRuntime>,
    webview: tauri::WebviewWindow<MockRuntime>,
    events: Arc<Mutex<Vec<Value>>>,
}

/// An app on the data folder `data` (a second start on the same folder is a restart).
fn start(data: &Path) -> App {
    let (app, webview) = common::mock_app(data);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    app.listen("watched-changed", move |event| {
        sink.lock().unwrap().push(serde_json::from_str(event.payload()).unwrap());
    });
    App { _app: app, webview, events }
}

impl App {
    fn invoke(&self, cmd: &str, args: Value) -> Result<InvokeResponseBody, Value> {
        common::invoke(&self.webview, cmd, args)
    }

    fn call(&self, cmd: &str, args: Value) -> Value {
        common::call(&self.webview, cmd, args)
    }

    fn refused(&self, cmd: &str, args: Value) -> String {
        let error = self.invoke(cmd, args).unwrap_err();
        assert_eq!(error["class"], "bad_input", "{error}");
        error["message"].as_str().unwrap().to_string()
    }

    fn watched(&self) -> Value {
        let list = self.call("list_watched", json!({}));
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        list[0].clone()
    }

    fn jobs(&self) -> Vec<Value> {
        self.call("list_jobs", json!({})).as_array().unwrap().clone()
    }

    /// Polls the watched folder until `done` holds for it.
    fn wait_for_folder(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let folder = self.watched();
            if done(&folder) {
                return folder;
            }
            assert!(start.elapsed() < PICK_UP_TIMEOUT, "{what} did not happen: {folder}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls the queue until job `id` is done or failed.
    fn wait_for_end(&self, id: &str) -> Value {
        let start = Instant::now();
        loop {
            let job = self.jobs().into_iter().find(|j| j["id"] == id).unwrap();
            if job["state"] == "done" || job["state"] == "failed" {
                return job;
            }
            assert!(start.elapsed() < JOB_TIMEOUT, "job {id} still {} after {JOB_TIMEOUT:?}", job["state"]);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Copies `count` of mat-box's photos and a `kiln.toml` that keeps the job small into `folder`.
fn copy_box_photos(folder: &Path, count: usize) {
    common::copy_box_photos(folder, count, "steps = 300\nmax_side = 100\n");
}

fn picked_up(folder: &Value) -> Vec<(String, String)> {
    let picked = folder["picked_up"].as_array().unwrap();
    picked
        .iter()
        .map(|p| (p["input"].as_str().unwrap().to_string(), p["job_id"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn a_watched_folder_picks_up_a_copied_folder_once_pauses_and_resumes_after_a_restart() {
    let root = common::fresh_dir("watched");
    let data = root.join("data");
    let inbox = root.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let app = start(&data);
    assert_eq!(app.call("list_watched", json!({})), json!([]));

    // Bad folders are refused with the reason.
    assert!(
        app.refused("add_watched", json!({ "folder": root.join("gone"), "settings": { "overrides": {} } }))
            .contains("existing folder")
    );
    let negative = json!({ "folder": inbox, "settings": { "overrides": {}, "quiet_s": -1.0 } });
    assert!(app.refused("add_watched", negative).contains("quiet period"));

    let settings = json!({ "overrides": { "preset": "preview", "formats": ["glb"] }, "quiet_s": QUIET_S });
    let added = app.call("add_watched", json!({ "folder": inbox, "settings": settings }));
    let id = added["id"].as_str().unwrap().to_string();
    assert_eq!(added["folder"], json!(std::fs::canonicalize(&inbox).unwrap()));
    assert_eq!((added["paused"].as_bool(), added["settings"]["quiet_s"].as_f64()), (Some(false), Some(QUIET_S)));
    assert_eq!(added["settings"]["overrides"], json!({ "preset": "preview", "formats": ["glb"] }));
    assert!(app.refused("add_watched", json!({ "folder": inbox, "settings": settings })).contains("watched already"));
    assert!(app.events.lock().unwrap().iter().any(|list| list[0]["id"] == id.as_str()), "watched-changed on add");

    // A folder copied in waits out the quiet period, then becomes a job that runs to the end.
    let photos = std::fs::canonicalize(&inbox).unwrap().join("box photos");
    copy_box_photos(&photos, 20);
    let folder = app.wait_for_folder("the pick-up", |f| !f["picked_up"].as_array().unwrap().is_empty());
    let waited = app.events.lock().unwrap().iter().any(|list| list[0]["waiting"] == json!([photos]));
    assert!(waited, "the folder was shown waiting before it was picked up");
    let picked = picked_up(&folder);
    assert_eq!(picked.len(), 1, "{folder}");
    assert_eq!(picked[0].0, photos.to_string_lossy());
    let job_id = picked[0].1.clone();
    let job = app.wait_for_end(&job_id);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!((job["source"].as_str(), job["preset"].as_str()), (photos.to_str(), Some("preview")));
    let report = app.call("job_report", json!({ "jobId": job_id }));
    assert!(report["metrics"]["train"]["steps"].as_u64().is_some_and(|s| s <= 300), "the kiln.toml's steps: {report}");
    let folder = app.wait_for_folder("the done state", |f| f["picked_up"][0]["state"] == "done");
    assert_eq!((folder["waiting"].clone(), folder["failed"].clone()), (json!([]), json!([])));

    // Paused: a new folder is not picked up.
    let paused = app.call("pause_watched", json!({ "id": id, "paused": true }));
    assert_eq!(paused["paused"], true);
    let second = std::fs::canonicalize(&inbox).unwrap().join("second take");
    copy_box_photos(&second, 19);
    std::thread::sleep(Duration::from_secs_f64(QUIET_S * 3.0));
    let folder = app.watched();
    assert_eq!((picked_up(&folder).len(), folder["waiting"].clone()), (1, json!([])), "{folder}");
    assert_eq!(app.jobs().len(), 1);

    // A restart on the same data folder: the folder is kept, still paused; resumed, it picks up
    // what arrived while paused and does not queue the first folder again.
    let restarted = start(&data);
    let folder = restarted.watched();
    assert_eq!((folder["id"].as_str(), folder["paused"].as_bool()), (Some(id.as_str()), Some(true)));
    assert_eq!(folder["settings"], added["settings"]);
    assert_eq!(picked_up(&folder), picked);
    restarted.call("pause_watched", json!({ "id": id, "paused": false }));
    let folder = restarted.wait_for_folder("the second pick-up", |f| f["picked_up"].as_array().unwrap().len() == 2);
    std::thread::sleep(Duration::from_secs_f64(QUIET_S * 2.0));
    let jobs = restarted.jobs();
    assert_eq!(jobs.len(), 2, "the first folder is not queued again: {jobs:?}");
    assert!(jobs.iter().any(|j| j["source"] == json!(second)), "{jobs:?}");
    assert_eq!(picked_up(&folder)[0], picked[0]);

    // Removing stops watching and leaves the folder and the jobs alone.
    restarted.call("remove_watched", json!({ "id": id }));
    assert_eq!(restarted.call("list_watched", json!({})), json!([]));
    assert_eq!(restarted.jobs().len(), 2);
    assert_eq!(std::fs::read_dir(&photos).unwrap().count(), 21, "the photos and kiln.toml are untouched");
    assert!(restarted.refused("pause_watched", json!({ "id": id, "paused": false })).contains("no watched folder"));
}
