//! What the mock-runtime tests share: a fresh folder, the app started on Tauri's mock runtime on
//! a data folder, a command invoked as the webview invokes it, and mat-box's photos copied with a
//! `kiln.toml` that keeps their job small.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod api_server;
pub mod cut_proxy;

use std::path::{Path, PathBuf};

use serde_json::Value;
use tauri::ipc::{CallbackFn, InvokeBody, InvokeResponseBody};
use tauri::test::{INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder, mock_context, noop_assets};
use tauri::webview::InvokeRequest;

/// `kiln-app-test-<name>-<pid>` in the temporary folder, empty.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-app-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The app on the mock runtime with its data in `data` (a second start on the same folder is a
/// restart), and its main webview.
pub fn mock_app(data: &Path) -> (tauri::App<MockRuntime>, tauri::WebviewWindow<MockRuntime>) {
    let app = kiln_app::builder(mock_builder()).build(mock_context(noop_assets())).unwrap();
    kiln_app::start(app.handle(), Some(data.to_path_buf())).unwrap();
    let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default()).build().unwrap();
    (app, webview)
}

/// Command `cmd` with `args`, as the UI's `invoke` sends it.
pub fn invoke(
    webview: &tauri::WebviewWindow<MockRuntime>,
    cmd: &str,
    args: Value,
) -> Result<InvokeResponseBody, Value> {
    get_ipc_response(
        webview,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().unwrap(),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
}

/// Command `cmd`'s JSON answer; a refusal fails the test.
pub fn call(webview: &tauri::WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Value {
    match invoke(webview, cmd, args) {
        Ok(body) => body.deserialize().unwrap(),
        Err(error) => panic!("{cmd} failed: {error}"),
    }
}

/// Copies the first `count` of mat-box's photos (sorted by name) into `folder` with `kiln_toml`.
pub fn copy_box_photos(folder: &Path, count: usize, kiln_toml: &str) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/fixtures/mat-box/images");
    std::fs::create_dir_all(folder).unwrap();
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&fixture).unwrap().map(|e| e.unwrap().path()).collect();
    photos.sort();
    for path in photos.iter().take(count) {
        std::fs::copy(path, folder.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(folder.join("kiln.toml"), kiln_toml).unwrap();
}

/// Every file directly in `folder` with its bytes, sorted: to see that nothing was changed.
pub fn snapshot(folder: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

/// A `BROWSER` for the app's sign-in, written into `dir`: it records the address the app opens in
/// the file it answers second (the test then plays the person at the browser). Answers the
/// script and that file.
pub fn browser_script(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("browser.sh");
    let opened = dir.join("opened");
    let record = format!("#!/bin/sh\nprintf '%s' \"$1\" > '{0}.tmp' && mv '{0}.tmp' '{0}'\n", opened.display());
    std::fs::write(&script, record).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, opened)
}
