//! The app's command handlers on Tauri's mock runtime: no window, the real commands, the real
//! queue, runner and job layer, on the mat-box fixture (20 renders of a box on the calibration
//! mat, 400 × 300; bunny-mini's 12 views are too few for poses), kept small by a `kiln.toml` in
//! the photo folder, as a user would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tauri::Listener;
use tauri::ipc::InvokeResponseBody;
use tauri::test::MockRuntime;

mod common;

/// How long the small box job may take in a debug build on two cores before the test gives up.
const JOB_TIMEOUT: Duration = Duration::from_secs(600);

struct App {
    _app: tauri::App<MockRuntime>,
    webview: tauri::WebviewWindow<MockRuntime>,
    events: Arc<Mutex<Vec<(String, Value)>>>,
    root: PathBuf,
}

fn start(name: &str) -> App {
    let root = common::fresh_dir(name);
    let (app, webview) = common::mock_app(&root.join("data"));
    let events = Arc::new(Mutex::new(Vec::new()));
    for name in ["job-event", "job-changed"] {
        let sink = Arc::clone(&events);
        app.listen(name, move |event| {
            let payload: Value = serde_json::from_str(event.payload()).unwrap();
            sink.lock().unwrap().push((name.to_string(), payload));
        });
    }
    App { _app: app, webview, events, root }
}

impl App {
    fn invoke(&self, cmd: &str, args: Value) -> Result<InvokeResponseBody, Value> {
        common::invoke(&self.webview, cmd, args)
    }

    fn call(&self, cmd: &str, args: Value) -> Value {
        common::call(&self.webview, cmd, args)
    }

    fn bytes(&self, cmd: &str, args: Value) -> Vec<u8> {
        match self.invoke(cmd, args) {
            Ok(InvokeResponseBody::Raw(bytes)) => bytes,
            Ok(InvokeResponseBody::Json(json)) => panic!("{cmd} answered JSON, not bytes: {json}"),
            Err(error) => panic!("{cmd} failed: {error}"),
        }
    }

    fn job(&self, id: &str) -> Value {
        let jobs = self.call("list_jobs", json!({}));
        jobs.as_array().unwrap().iter().find(|j| j["id"] == id).cloned().unwrap()
    }

    /// Polls the queue until job `id` is in one of `states`.
    fn wait_for(&self, id: &str, states: &[&str]) -> Value {
        let start = Instant::now();
        loop {
            let job = self.job(id);
            if states.iter().any(|s| job["state"] == *s) {
                return job;
            }
            assert!(start.elapsed() < JOB_TIMEOUT, "job {id} still {} after {JOB_TIMEOUT:?}", job["state"]);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// mat-box's photos in a folder of their own, with a `kiln.toml` that keeps the job small.
fn box_folder(root: &Path) -> PathBuf {
    let folder = root.join("box photos");
    common::copy_box_photos(&folder, usize::MAX, "steps = 300\nmax_side = 100\ncheckpoint_every = 50\n");
    folder
}

#[test]
fn dropped_items_that_are_not_photos_are_rejected_with_the_reason() {
    let app = start("rejects");
    let notes = app.root.join("notes.txt");
    std::fs::write(&notes, "not photos").unwrap();
    let empty = app.root.join("empty folder");
    std::fs::create_dir_all(&empty).unwrap();
    let bomb = app.root.join("bomb.zip");
    write_zip_bomb(&bomb);
    let missing = app.root.join("gone");
    let added = app.call("add_sources", json!({ "paths": [notes, empty, bomb, missing] }));
    assert_eq!(added["drafts"], json!([]));
    let reasons: Vec<(String, String, String)> = added["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = Path::new(r["path"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                r["error"]["class"].as_str().unwrap().to_string(),
                r["error"]["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    let reason = |name: &str| reasons.iter().find(|r| r.0 == name).unwrap().clone();
    assert!(reason("notes.txt").2.starts_with("not a folder of photos, a ZIP of them or a photo"), "{reasons:?}");
    assert!(reason("empty folder").2.contains("no photos"), "{reasons:?}");
    assert!(reason("gone").2.contains("does not exist"), "{reasons:?}");
    let (_, class, message) = reason("bomb.zip");
    assert_eq!(class, "bad_input", "{message}");
    assert!(message.contains("bomb.zip"), "names the ZIP: {message}");
    assert!(reasons.iter().all(|r| r.1 == "bad_input"), "{reasons:?}");
    // Nothing of the bomb was left unpacked.
    let drafts = app.root.join("data/drafts");
    let leftovers: Vec<_> = std::fs::read_dir(&drafts).map(|d| d.collect::<Vec<_>>()).unwrap_or_default();
    assert!(leftovers.is_empty(), "the refused ZIP left files: {leftovers:?}");
    // The app still answers.
    assert_eq!(app.call("list_jobs", json!({})), json!([]));
}

/// A ZIP whose one entry inflates 64 MiB of zeros from a few kilobytes: far past the ratio limit.
fn write_zip_bomb(path: &Path) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("photo.jpg", options).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        zip.write_all(&zeros).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn a_folder_is_checked_run_canceled_resumed_previewed_exported_and_deleted() {
    let app = start("flow");
    let photos = box_folder(&app.root);
    let before = common::snapshot(&photos);

    let added = app.call("add_sources", json!({ "paths": [photos] }));
    let draft = &added["drafts"][0];
    assert_eq!(
        (draft["name"].as_str(), draft["kind"].as_str(), draft["photos"].as_u64()),
        (Some("box photos"), Some("folder"), Some(20))
    );
    let id = draft["id"].as_str().unwrap();
    let check = app.call("check_draft", json!({ "draftId": id }));
    assert_eq!(check["photos"].as_array().unwrap().len(), 20);
    assert_ne!(check["outcome"], "will_fail");
    let thumbnail = app.bytes("photo_thumbnail", json!({ "draftId": id, "index": 0, "size": 96 }));
    let decoded = image::load_from_memory(&thumbnail).unwrap();
    assert_eq!(decoded.width().max(decoded.height()), 96, "a 96-pixel thumbnail");
    let options = json!({ "preset": "preview", "formats": ["glb"], "where": "local" });
    let estimate = app.call("estimate", json!({ "draftId": id, "options": options }));
    assert!(estimate["seconds"].as_f64().unwrap() > 0.0);

    let row = app.call("start_job", json!({ "draftId": id, "options": options }));
    let job = row["id"].as_str().unwrap().to_string();
    assert!(matches!(row["state"].as_str(), Some("queued" | "running")), "{row}");
    assert_eq!(row["name"], "box photos");

    // Cancel once training has written a checkpoint; the job ends canceled, then resumes.
    let job_dir = PathBuf::from(row["job_dir"].as_str().unwrap());
    let checkpoint = job_dir.join("train/checkpoint.bin");
    let start = Instant::now();
    while !checkpoint.is_file() {
        assert!(start.elapsed() < JOB_TIMEOUT, "no checkpoint after {JOB_TIMEOUT:?}: {}", app.job(&job));
        assert_ne!(app.job(&job)["state"], "failed", "{}", app.job(&job));
        std::thread::sleep(Duration::from_millis(100));
    }
    app.call("cancel_job", json!({ "jobId": job }));
    let canceled = app.wait_for(&job, &["canceled", "done"]);
    assert_eq!(canceled["state"], "canceled", "{canceled}");
    app.call("resume_job", json!({ "jobId": job }));
    let done = app.wait_for(&job, &["done", "failed"]);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!((done["job_fraction"].as_f64(), done["stage"].as_str()), (Some(1.0), Some("export")));

    // Live progress reached the UI as typed events, with training metrics.
    let events = app.events.lock().unwrap().clone();
    let train_progress = events
        .iter()
        .filter(|(name, e)| name == "job-event" && e["job_id"] == job.as_str() && e["event"]["stage"] == "train")
        .filter(|(_, e)| e["event"]["kind"] == "progress" && e["event"]["metrics"].is_object())
        .count();
    assert!(train_progress > 0, "no training progress events among {} events", events.len());
    let states: Vec<&str> = events
        .iter()
        .filter(|(name, e)| name == "job-changed" && e["id"] == job.as_str())
        .map(|(_, e)| e["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"running") && states.contains(&"canceled") && states.last() == Some(&"done"),
        "{states:?}"
    );
    let history = app.call("train_history", json!({ "jobId": job }));
    assert!(!history.as_array().unwrap().is_empty(), "a training plot");

    let report = app.call("job_report", json!({ "jobId": job }));
    assert_eq!(report["status"], "finished", "{report}");
    assert!(report["metrics"]["poses"]["registered_images"].as_u64().unwrap() >= 18, "{report}");
    assert!(report["metrics"]["train"]["psnr"].as_f64().is_some(), "{report}");

    // The preview is a PNG of the requested size.
    let view = json!({ "width": 160, "height": 120, "azimuth_deg": 30.0, "elevation_deg": 20.0, "distance_scale": 1.0,
                       "mode": "mesh", "show_cameras": false, "photo": null });
    let png = app.bytes("preview_frame", json!({ "jobId": job, "view": view }));
    let frame = image::load_from_memory(&png).unwrap().into_rgba8();
    assert_eq!(frame.dimensions(), (160, 120));
    let background = frame.get_pixel(0, 0).0;
    let drawn = frame.pixels().filter(|p| p.0 != background).count();
    assert!(drawn > 160 * 120 / 50, "the model covers part of the frame ({drawn} pixels)");

    // Export into a folder of the user's: the GLB lands there; an unwritable folder is refused.
    let out = app.root.join("exports");
    let exported = app.call("export_job", json!({ "jobId": job, "formats": ["glb", "obj"], "folder": out }));
    let files = exported["files"].as_array().unwrap();
    assert!(files.iter().any(|f| f["format"] == "glb" && out.join("model.glb").is_file()), "{exported}");
    assert!(files.iter().any(|f| f["format"] == "obj"), "{exported}");
    let blocked = app.root.join("a file");
    std::fs::write(&blocked, "").unwrap();
    let refused = app
        .invoke("export_job", json!({ "jobId": job, "formats": ["glb"], "folder": blocked.join("sub") }))
        .unwrap_err();
    assert!(refused["message"].as_str().unwrap().contains("cannot write to the export folder"), "{refused}");
    // "Show in folder" opens folders only: a file, or a folder gone since, is refused with why.
    for not_a_folder in [out.join("model.glb"), app.root.join("gone")] {
        let refused = app.invoke("reveal_export", json!({ "folder": not_a_folder })).unwrap_err();
        assert_eq!(refused["class"], "bad_input", "{refused}");
        assert!(refused["message"].as_str().unwrap().contains("not there any more"), "{refused}");
    }

    // Deleting removes the job folder, never the photos.
    app.call("delete_job", json!({ "jobId": job }));
    assert!(!job_dir.exists());
    assert_eq!(app.call("list_jobs", json!({})), json!([]));
    assert_eq!(common::snapshot(&photos), before, "the photos are untouched");
}
