//! The desktop app end to end, in its real window: under a virtual X server (Xvfb) tauri-driver
//! starts the `kiln-app` binary through WebKitGTK's WebDriver, and the test drives the page as a
//! user would. The mat-box fixture's 20 photos (a box on the calibration mat; kept small by a
//! `kiln.toml`, as the mock-runtime test in `commands.rs` does) are added through
//! `window.kiln.addSources` (the drop handler's own code path: WebDriver cannot drop files), the
//! capture check shows every photo with its verdict, the job runs with its progress and training
//! figures seen live, the report shows registered photos and PSNR, the preview frame on the page
//! equals `kiln render` from the same camera, and the export pane writes a GLB with the
//! validator's verdict.
//!
//! Needs `Xvfb`, `xwininfo`, `WebKitWebDriver` (Debian: `xvfb`, `x11-utils`, `webkit2gtk-driver`)
//! and `tauri-driver` (`scripts/app_e2e_tools.sh`, on `PATH` or in its tools cache); without them
//! it prints SKIPPED, unless `KILN_REQUIRE_APP_E2E=1`. The preview comparison needs the CLI at
//! `KILN_CLI_BIN`. Screenshots of the main screens go to `KILN_APP_SCREENSHOTS` when it is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod webdriver;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use webdriver::Driver;

/// Photos of the mat-box fixture.
const PHOTOS: usize = 20;
/// Fewest of them that must get a camera pose: as `commands.rs` asks.
const MIN_REGISTERED: u32 = 18;
/// How long tauri-driver and WebKitWebDriver may take to listen.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the UI may take to start in a debug build (its first IPC calls open the wgpu device,
/// lavapipe in CI).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The capture check of 20 photos and their thumbnails, in a debug build on two cores.
const CHECK_TIMEOUT: Duration = Duration::from_secs(180);
/// The small box job from Start to done, as `commands.rs` allows it.
const JOB_TIMEOUT: Duration = Duration::from_secs(600);
/// A preview frame or a rendered report, once the job is done.
const FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// Export of the GLB (the job's export stage may run again) and its validation.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(180);

/// The orbit the preview opens a finished job at: ui/src/preview.ts's `DEFAULT_ORBIT` (azimuth,
/// elevation, distance), `kiln render`'s own default camera.
const OPENING_ORBIT: [f32; 3] = [30.0, 20.0, 1.0];
/// Degrees one → key turns the preview: ui/src/preview.ts's `DEGREES_PER_KEY`.
const DEGREES_PER_KEY: f32 = 10.0;
/// How long no new preview frame must arrive for the shown one to be the last asked for: a
/// frame of the small box renders in well under a second on lavapipe.
const SETTLE: Duration = Duration::from_millis(1500);
/// WebDriver's key code of the → key.
const ARROW_RIGHT: &str = "\u{E014}";

/// Largest mean absolute difference (0–255, over every RGB channel of every pixel) between the
/// preview on the page and `kiln render` from the same camera. Both are the same code
/// (kiln-viewer's headless renderer) on the same device and size, so they are identical before
/// the page; the page adds only the PNG round trip (lossless) and WebKit's painting of an `<img>`
/// shown at its own size with device pixel ratio 1 (no scaling, no colour management under
/// Xvfb). Measured on this fixture (458×369 on lavapipe): 0.015 between the two; a frame turned
/// by one degree 2.0, shifted by one pixel 1.7, the splats drawn too 100. 0.5 leaves a wide
/// margin above the first and still fails on the smallest of the others; the drawn-model check
/// below keeps two empty frames from passing.
const MAX_MEAN_ABS_DIFF: f64 = 0.5;
/// Fewest pixels of the preview that must differ from its background: the model is in view (as
/// `commands.rs` asks of its preview frame).
const MIN_DRAWN_FRACTION: f64 = 1.0 / 50.0;

/// Children started by the test, each in its own process group, killed with everything they
/// started (WebKitWebDriver, the app, its web processes) when the test ends, however it ends.
#[derive(Default)]
struct Processes {
    children: Vec<Child>,
    log: Option<PathBuf>,
}

impl Processes {
    fn spawn(&mut self, command: &mut Command) -> &mut Child {
        let child = command.process_group(0).spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        self.children.push(child);
        self.children.last_mut().unwrap()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(log) = &self.log
        {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(80).collect();
            eprintln!("--- last lines of {} ---", log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        // SIGTERM first, so that Xvfb removes its socket and lock file from /tmp (SIGKILL leaves
        // them), then SIGKILL for whatever has not gone within two seconds.
        for child in self.children.iter_mut().rev() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).stderr(Stdio::null()).status();
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while std::time::Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The programs the test needs, found.
struct Tools {
    tauri_driver: PathBuf,
    webkit_driver: PathBuf,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|path| path.is_file())
}

/// tauri-driver on `PATH`, else where `scripts/app_e2e_tools.sh` installs it.
fn find_tauri_driver() -> Option<PathBuf> {
    on_path("tauri-driver").or_else(|| {
        let tools = std::env::var_os("KILN_TOOLS")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/kiln-tools")))?;
        Some(tools.join("tauri-driver/bin/tauri-driver")).filter(|path| path.is_file())
    })
}

fn required() -> bool {
    std::env::var("KILN_REQUIRE_APP_E2E").is_ok_and(|v| v == "1")
}

/// Says loudly that `what` is not checked, or fails under `KILN_REQUIRE_APP_E2E=1`.
fn skip(what: &str) {
    assert!(!required(), "KILN_REQUIRE_APP_E2E=1 but {what}");
    println!("SKIPPED: {what}");
}

fn find_tools() -> Option<Tools> {
    let tauri_driver = find_tauri_driver();
    let mut missing: Vec<&str> =
        ["Xvfb", "xwininfo", "WebKitWebDriver"].into_iter().filter(|tool| on_path(tool).is_none()).collect();
    if tauri_driver.is_none() {
        missing.push("tauri-driver");
    }
    if !missing.is_empty() {
        skip(&format!(
            "the app's end-to-end test needs {} (apt-get install xvfb x11-utils webkit2gtk-driver; scripts/app_e2e_tools.sh)",
            missing.join(", ")
        ));
        return None;
    }
    Some(Tools { tauri_driver: tauri_driver?, webkit_driver: on_path("WebKitWebDriver")? })
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-app-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts Xvfb on a display it picks itself (`-displayfd`), a screen larger than the app's
/// 1280×820 window, and returns the display's name (`:N`). `-noreset`: an X server that resets
/// when its last client leaves drops a client connecting during the reset (between `xwininfo`
/// calls and the app's start, say), whose `XOpenDisplay` then fails.
fn start_xvfb(processes: &mut Processes) -> String {
    let child = processes.spawn(
        Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1400x900x24", "-nolisten", "tcp", "-noreset"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.trim().parse::<u32>().is_ok(), "Xvfb did not report a display: {line:?}");
    format!(":{}", line.trim())
}

fn free_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// Starts tauri-driver (which starts WebKitWebDriver) on two free ports, in the environment the
/// app inherits: the display, the app's data folder, and the validators (`KILN_GLTF_VALIDATOR`,
/// `KILN_USDZ_VALIDATOR`) and Vulkan settings of the test's own environment. Returns its port.
fn start_tauri_driver(processes: &mut Processes, tools: &Tools, display: &str, root: &Path) -> u16 {
    start_tauri_driver_with(processes, tools, display, root, &[])
}

/// [`start_tauri_driver`], with `env` added to what the app inherits.
fn start_tauri_driver_with(
    processes: &mut Processes,
    tools: &Tools,
    display: &str,
    root: &Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> u16 {
    // Both listeners are held until both ports are known, so the two differ.
    let (listener, native) = (free_port(), free_port());
    let port = listener.local_addr().unwrap().port();
    let native_port = native.local_addr().unwrap().port();
    drop((listener, native));
    // A private runtime folder, as GLib and Mesa want it (owned by the user, mode 0700).
    let runtime_dir = root.join("runtime");
    std::fs::create_dir_all(&runtime_dir).unwrap();
    std::fs::set_permissions(&runtime_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let log_path = root.join("tauri-driver.log");
    let log = std::fs::File::create(&log_path).unwrap();
    processes.log = Some(log_path);
    processes.spawn(
        Command::new(&tools.tauri_driver)
            .args(["--port", &port.to_string(), "--native-port", &native_port.to_string(), "--native-driver"])
            .arg(&tools.webkit_driver)
            .env("DISPLAY", display)
            .env_remove("WAYLAND_DISPLAY")
            .env("GDK_BACKEND", "x11")
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            // No accessibility bus under Xvfb: GTK would otherwise look for one on D-Bus.
            .env("NO_AT_BRIDGE", "1")
            // Software painting: with WebKit's accelerated compositing on Xvfb, element screenshots
            // of content inside a scrolled column come back partly black (unpainted layers).
            .env("WEBKIT_DISABLE_COMPOSITING_MODE", "1")
            .env(kiln_app::DATA_DIR_VAR, root.join("data"))
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    );
    port
}

/// Titles of the top-level windows on `display`, from `xwininfo -root -tree`.
fn window_titles(display: &str) -> Vec<String> {
    let output = Command::new("xwininfo").args(["-root", "-tree", "-display", display]).output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once('"')?;
            let (title, _) = rest.split_once('"')?;
            Some(title.to_string())
        })
        .collect()
}

/// mat-box's photos in a folder of their own, with a `kiln.toml` that keeps the job small.
fn box_folder(root: &Path) -> PathBuf {
    box_folder_training(root, 300)
}

/// mat-box's photos with a `kiln.toml` asking for `steps` training steps at 100 px, a checkpoint
/// every 50.
fn box_folder_training(root: &Path, steps: u32) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/fixtures/mat-box/images");
    let folder = root.join("box photos");
    std::fs::create_dir_all(&folder).unwrap();
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, folder.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(folder.join("kiln.toml"), format!("steps = {steps}\nmax_side = 100\ncheckpoint_every = 50\n"))
        .unwrap();
    folder
}

/// Saves a whole-window screenshot as `name` into `KILN_APP_SCREENSHOTS`, when it is set.
fn save_screen(driver: &Driver, name: &str) {
    let Some(dir) = std::env::var_os("KILN_APP_SCREENSHOTS") else { return };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), driver.screenshot()).unwrap();
}

/// The text of the page's error messages (`#messages`), for failure messages.
fn page_messages(driver: &Driver) -> String {
    driver
        .execute("return document.getElementById('messages')?.textContent ?? '';", &[])
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The draft card's check as the page shows it.
const DRAFT_STATE: &str = r#"
const draft = document.querySelector('#drafts [data-testid="draft"]');
if (!draft) return null;
const photos = [...draft.querySelectorAll('[data-testid="photo"]')].map((p) => ({
  verdict: p.dataset.verdict ?? null,
  loaded: (p.querySelector('img')?.naturalWidth ?? 0) > 0,
}));
return {
  name: draft.querySelector('h3')?.textContent ?? null,
  photos,
  outcome: draft.querySelector('[data-testid="outcome"]')?.dataset.outcome ?? null,
  estimate: draft.querySelector('[data-testid="estimate"]')?.textContent ?? null,
  body: draft.querySelector('.draft-body')?.textContent ?? null,
};
"#;

/// The first queue row as the page shows it, and the selected job's training figures.
const ROW_STATE: &str = r#"
const row = document.querySelector('#queue li[data-job-id]');
if (!row) return null;
return {
  id: row.dataset.jobId,
  state: row.dataset.state,
  fraction: row.querySelector('[data-testid="progress"]').value,
  stage: row.querySelector('[data-testid="stage"]').textContent,
  percent: row.querySelector('[data-testid="percent"]').textContent,
  resumed: row.querySelector('[data-testid="resumed"]')?.hidden === false
    ? row.querySelector('[data-testid="resumed"]').textContent
    : null,
  figures: document.getElementById('train-figures')?.textContent ?? '',
};
"#;

/// The report's figures once `#report` is shown.
const REPORT_STATE: &str = r#"
const report = document.getElementById('report');
if (!report || report.hidden) return null;
const figure = (id) => report.querySelector(`[data-testid="${id}"]`)?.textContent ?? null;
return { registered: figure('registered'), psnr: figure('psnr') };
"#;

/// The preview image and the view it shows.
const PREVIEW_STATE: &str = r#"
const img = document.getElementById('preview');
const mode = document.querySelector('#preview-modes [aria-pressed="true"]')?.dataset.mode ?? null;
return {
  hidden: img.hidden,
  src: img.getAttribute('src'),
  complete: img.complete,
  natural: [img.naturalWidth, img.naturalHeight],
  size: [Number(img.dataset.width ?? 0), Number(img.dataset.height ?? 0)],
  mode,
  cameras: document.getElementById('show-cameras').checked,
  ratio: window.devicePixelRatio,
};
"#;

/// Resolves on the second animation frame: whatever the page changed before has been painted.
const AFTER_PAINT: &str = r#"
const done = arguments[arguments.length - 1];
requestAnimationFrame(() => requestAnimationFrame(() => done(null)));
"#;

#[test]
fn photos_added_in_the_window_become_a_previewed_exported_model() {
    let Some(tools) = find_tools() else { return };
    let root = fresh_dir("flow");
    let mut processes = Processes::default();
    let display = start_xvfb(&mut processes);
    let port = start_tauri_driver(&mut processes, &tools, &display, &root);
    let capabilities = json!({ "alwaysMatch": { "tauri:options": { "application": env!("CARGO_BIN_EXE_kiln-app") } } });
    let driver = Driver::start(port, capabilities, DRIVER_TIMEOUT);
    driver.set_script_timeout(CHECK_TIMEOUT);

    app_starts_titled_kiln(&driver, &display);
    let photos = box_folder(&root);
    add_and_check(&driver, &photos);
    start_preview_glb(&driver);
    let job_id = progress_is_seen_until_done(&driver);
    report_shows_registered_photos_and_psnr(&driver);
    let job_dir = job_folder(&root.join("data"));
    preview_matches_kiln_render(&driver, &job_dir, &root);
    export_writes_a_validated_glb(&driver, &root.join("exports"), &job_id);
    watched_folder_picks_up_a_copied_folder(&driver, &root);
}

/// Training steps of the job the kill test interrupts: long enough (about a minute here) that the
/// app is killed mid-training, after its first checkpoint.
const KILLED_JOB_STEPS: u32 = 800;

#[test]
fn a_killed_app_resumes_its_job_from_the_checkpoint_when_started_again() {
    let Some(tools) = find_tools() else { return };
    let root = fresh_dir("kill");
    let mut processes = Processes::default();
    let display = start_xvfb(&mut processes);
    let port = start_tauri_driver(&mut processes, &tools, &display, &root);
    let capabilities = json!({ "alwaysMatch": { "tauri:options": { "application": env!("CARGO_BIN_EXE_kiln-app") } } });
    let driver = Driver::start(port, capabilities.clone(), DRIVER_TIMEOUT);
    driver.set_script_timeout(CHECK_TIMEOUT);
    app_starts_titled_kiln(&driver, &display);
    add_and_check(&driver, &box_folder_training(&root, KILLED_JOB_STEPS));
    start_preview_glb(&driver);
    let data = root.join("data");
    let checkpoint = driver.wait_until("training's first checkpoint", JOB_TIMEOUT, |d| {
        let row = d.execute(ROW_STATE, &[]);
        let jobs = data.join("Kiln");
        let found = std::fs::read_dir(&jobs).ok().and_then(|mut e| e.next()).and_then(Result::ok);
        match found.map(|job| job.path().join("train/checkpoint.bin")) {
            Some(path) if path.is_file() => Ok(path),
            _ => Err(format!("{row}; messages: {}", page_messages(d))),
        }
    });
    let job_id = driver.execute(ROW_STATE, &[])["id"].as_str().unwrap().to_string();
    kill_app(&data);
    drop(driver);

    // Started again on the same data folder: the same job is in the queue and goes on.
    let driver = Driver::start(port, capabilities, DRIVER_TIMEOUT);
    app_starts_titled_kiln(&driver, &display);
    let mut states = Vec::new();
    let row = driver.wait_until("the resumed job to end", JOB_TIMEOUT, |d| {
        let row = d.execute(ROW_STATE, &[]);
        if let Some(state) = row["state"].as_str()
            && states.last().is_none_or(|last: &String| last != state)
        {
            states.push(state.to_string());
        }
        match row["state"].as_str() {
            Some("done" | "failed" | "canceled") => Ok(row),
            _ => Err(format!("{row}; messages: {}", page_messages(d))),
        }
    });
    assert_eq!(row["id"], job_id.as_str(), "the same job, not a new one: {row}");
    assert_eq!(row["state"], "done", "{row}; states seen {states:?}; messages: {}", page_messages(&driver));
    assert!(!checkpoint.exists(), "the checkpoint is removed once training finished");
    let job_dir = checkpoint.parent().and_then(Path::parent).unwrap();
    let report: Value = serde_json::from_slice(&std::fs::read(job_dir.join("report.json")).unwrap()).unwrap();
    let statuses: Vec<&str> =
        report["stages"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(&statuses[..2], ["skipped", "skipped"], "check and poses were not run again: {statuses:?}");
    let resumed = report["metrics"]["train"]["resumed_from_step"].as_u64();
    assert!(
        resumed.is_some_and(|step| (50..u64::from(KILLED_JOB_STEPS)).contains(&step)),
        "training resumed from its checkpoint: {resumed:?}"
    );
    let shown = row["resumed"].as_str().unwrap_or_default();
    assert_eq!(shown, format!("resumed from step {}", resumed.unwrap_or_default()), "the row says it resumed: {row}");
    println!("after the kill the queue showed {states:?}; training resumed from step {resumed:?}; the row: {shown:?}");
}

/// The first watched folder's card: its path and counts.
const WATCHED_STATE: &str = r#"
const card = document.querySelector('#watched li[data-watched-id]');
if (!card) return null;
const count = (what) => card.querySelector(`[data-testid="${what}-count"]`)?.textContent ?? null;
return {
  folder: card.querySelector('.path')?.textContent ?? null,
  picked_up: count('picked-up'),
  waiting: count('waiting'),
  failed: count('failed'),
  jobs: [...document.querySelectorAll('#queue li[data-job-id] .name')].map((n) => n.textContent),
};
"#;

/// Watches an empty inbox through the pane's form (typed path, a one-second quiet period), copies
/// a folder of photos into it as a user would (a real copy, file by file), and waits for the card
/// to say it was picked up and for its job to be in the queue, named after the folder.
fn watched_folder_picks_up_a_copied_folder(driver: &Driver, root: &Path) {
    let inbox = root.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    driver.click(&driver.find("#watch-add"));
    let path = driver.find("#watch-path");
    driver.clear(&path);
    driver.send_keys(&path, &inbox.display().to_string());
    let quiet = driver.find("#watch-quiet");
    driver.clear(&quiet);
    driver.send_keys(&quiet, "1");
    driver.click(&driver.find("#watch-submit"));
    let card = driver.wait_until("the watched folder's card", CHECK_TIMEOUT, |d| {
        let state = d.execute(WATCHED_STATE, &[]);
        if state["folder"].as_str() == Some(&inbox.display().to_string()) { Ok(state) } else { Err(state.to_string()) }
    });
    assert_eq!(card["picked_up"], "0 picked up", "nothing yet: {card}");

    let arrived = inbox.join("shoe box");
    std::fs::create_dir_all(&arrived).unwrap();
    for entry in std::fs::read_dir(box_folder(root)).unwrap() {
        let source = entry.unwrap().path();
        std::fs::copy(&source, arrived.join(source.file_name().unwrap())).unwrap();
    }
    let card = driver.wait_until("the copied folder picked up and queued", JOB_TIMEOUT, |d| {
        let state = d.execute(WATCHED_STATE, &[]);
        let queued = state["jobs"].as_array().is_some_and(|jobs| jobs.iter().any(|j| j == "shoe box"));
        if state["picked_up"] == "1 picked up" && queued { Ok(state) } else { Err(state.to_string()) }
    });
    assert_eq!(card["failed"], "0 failed", "{card}");
    save_screen(driver, "app-watched.png");
}

/// Kills (SIGKILL) the `kiln-app` process whose data folder is `data`: the one this test started,
/// not another test's.
fn kill_app(data: &Path) {
    let binary = std::fs::canonicalize(env!("CARGO_BIN_EXE_kiln-app")).unwrap();
    let wanted = format!("{}={}", kiln_app::DATA_DIR_VAR, data.display());
    let pids: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter(|entry| std::fs::read_link(entry.path().join("exe")).is_ok_and(|exe| exe == binary))
        .filter(|entry| {
            std::fs::read(entry.path().join("environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()))
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(pids.len(), 1, "one kiln-app on {}: {pids:?}", data.display());
    let status = Command::new("kill").args(["-KILL", &pids[0]]).status().unwrap();
    assert!(status.success(), "kill -KILL {}", pids[0]);
    let gone = std::time::Instant::now();
    while Path::new(&format!("/proc/{}", pids[0])).exists() {
        assert!(gone.elapsed() < Duration::from_secs(10), "kiln-app {} outlived SIGKILL", pids[0]);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn app_starts_titled_kiln(driver: &Driver, display: &str) {
    driver.wait_until("the UI to start (window.kiln and the device line)", START_TIMEOUT, |d| {
        let state = d.execute(
            "return { kiln: typeof window.kiln, device: document.getElementById('device-info')?.textContent ?? null, ready: document.readyState };",
            &[],
        );
        let device = state["device"].as_str().unwrap_or_default();
        if state["kiln"] == "object" && !device.is_empty() { Ok(()) } else { Err(format!("{state}; messages: {}", page_messages(d))) }
    });
    assert_eq!(driver.title(), "Kiln", "the page's title");
    let titles = window_titles(display);
    assert!(titles.iter().any(|t| t == "Kiln"), "no X window titled Kiln among {titles:?}");
}

/// Adds the folder as a drop does, then waits for its check: 20 thumbnails with verdicts, the
/// set's outcome, an estimate.
fn add_and_check(driver: &Driver, photos: &Path) {
    let answer = driver.execute_async(
        "const done = arguments[arguments.length - 1];
         window.kiln.addSources(arguments[0]).then(() => done(null), (e) => done(String(e)));",
        &[json!([photos])],
    );
    assert_eq!(answer, Value::Null, "addSources failed");
    let check = driver.wait_until(
        "the draft's check: 20 photos with verdicts and thumbnails, an outcome, an estimate",
        CHECK_TIMEOUT,
        |d| {
            let state = d.execute(DRAFT_STATE, &[]);
            let photos = state["photos"].as_array().cloned().unwrap_or_default();
            let verdicts_shown =
                photos.iter().all(|p| matches!(p["verdict"].as_str(), Some("good" | "warn" | "reject")));
            let loaded = photos.iter().all(|p| p["loaded"] == true);
            let estimated = state["estimate"].as_str().is_some_and(|e| e.starts_with("Estimated time:"));
            if photos.len() == PHOTOS && verdicts_shown && loaded && state["outcome"].is_string() && estimated {
                Ok(state)
            } else {
                Err(format!("{state}; messages: {}", page_messages(d)))
            }
        },
    );
    assert_eq!(check["name"], "box photos", "{check}");
    assert!(matches!(check["outcome"].as_str(), Some("good" | "risky")), "mat-box gives a model: {check}");
    save_screen(driver, "app-add-check.png");
}

/// Preset `preview`, GLB alone, on this machine; Start.
fn start_preview_glb(driver: &Driver) {
    let draft = r#"#drafts [data-testid="draft"]"#;
    driver.click(&driver.find(&format!(r#"{draft} [data-testid="preset"] option[value="preview"]"#)));
    let preset = driver.find(&format!(r#"{draft} [data-testid="preset"]"#));
    assert_eq!(driver.property(&preset, "value"), "preview");
    set_checkboxes(driver, &format!(r#"{draft} [data-testid="formats"] input[type="checkbox"]"#), &["glb"]);
    let local = driver.find(&format!(r#"{draft} [data-testid="where"] input[value="local"]"#));
    if driver.property(&local, "checked") != true {
        driver.click(&local);
    }
    driver.click(&driver.find(&format!(r#"{draft} [data-testid="start"]"#)));
}

/// Ticks exactly the checkboxes matching `css` whose value is in `wanted`.
fn set_checkboxes(driver: &Driver, css: &str, wanted: &[&str]) {
    for checkbox in driver.find_all(css) {
        let value = driver.property(&checkbox, "value");
        let want = wanted.iter().any(|w| value == *w);
        if driver.property(&checkbox, "checked") != want {
            driver.click(&checkbox);
        }
    }
}

/// Watches the job's queue row until it is done: its progress must be seen moving while it
/// runs, and the selected job's training figures live. Returns the job's id.
fn progress_is_seen_until_done(driver: &Driver) -> String {
    let mut fractions = BTreeSet::new();
    let mut seen = Vec::new();
    let mut training = None;
    let row = driver.wait_until("the job to end (queue row data-state done or failed)", JOB_TIMEOUT, |d| {
        let row = d.execute(ROW_STATE, &[]);
        if row["state"] == "running"
            && let Some(fraction) = row["fraction"].as_f64()
        {
            // Fractions to the thousandth: the bar's resolution, and BTreeSet needs an Ord key.
            if fractions.insert((fraction * 1000.0).round() as u32) {
                seen.push(format!(
                    "{} {}",
                    row["percent"].as_str().unwrap_or_default(),
                    row["stage"].as_str().unwrap_or_default()
                ));
            }
            let figures = row["figures"].as_str().unwrap_or_default();
            // Once a loss is plotted: the screenshot shows the plot with a curve.
            if training.is_none() && figures.starts_with("step ") && !figures.contains("loss –") {
                save_screen(d, "app-queue-running.png");
                training = Some(figures.to_string());
            }
        }
        match row["state"].as_str() {
            Some("done" | "failed" | "canceled" | "interrupted") => Ok(row),
            _ => Err(format!("{row}; messages: {}", page_messages(d))),
        }
    });
    let detail = driver.execute("return document.getElementById('detail-error')?.textContent ?? '';", &[]);
    assert_eq!(row["state"], "done", "{row}; error: {detail}; messages: {}", page_messages(driver));
    let moving: Vec<u32> = fractions.iter().copied().filter(|f| (1..1000).contains(f)).collect();
    assert!(fractions.len() >= 2 && !moving.is_empty(), "progress was not seen moving while running: {seen:?}");
    let shown: Vec<&String> = seen.iter().take(3).chain(seen.iter().rev().take(3).rev()).collect();
    println!("progress seen while running: {} distinct fractions, first and last {shown:?}", fractions.len());
    let training =
        training.unwrap_or_else(|| panic!("no live training figures (#train-figures) while running: {seen:?}"));
    println!("training figures seen while running: {training}");
    row["id"].as_str().unwrap().to_string()
}

fn report_shows_registered_photos_and_psnr(driver: &Driver) {
    driver.wait_until("the job's report (#report with registered photos and PSNR)", FRAME_TIMEOUT, |d| {
        let report = d.execute(REPORT_STATE, &[]);
        if report["psnr"].as_str().is_some_and(|p| p.ends_with(" dB")) { Ok(()) } else { Err(report.to_string()) }
    });
    // As the user reads them: WebDriver's rendered text of the two figures.
    let registered = driver.text(&driver.find(r#"#report [data-testid="registered"]"#));
    let psnr = driver.text(&driver.find(r#"#report [data-testid="psnr"]"#));
    let (count, of) =
        registered.split_once(" of ").unwrap_or_else(|| panic!("registered photos as `N of M`: {registered:?}"));
    let all = PHOTOS.to_string();
    assert!(count.parse::<u32>().is_ok_and(|n| n >= MIN_REGISTERED) && of == all, "registered photos: {registered}");
    let db: f64 = psnr.trim_end_matches(" dB").parse().unwrap_or_else(|e| panic!("PSNR {psnr:?}: {e}"));
    assert!(db.is_finite() && db > 0.0, "PSNR {psnr}");
}

/// The one job folder under the app's data folder (`$KILN_APP_DATA/Kiln/<name>-<hash>`).
fn job_folder(data: &Path) -> PathBuf {
    let jobs: Vec<PathBuf> =
        std::fs::read_dir(data.join("Kiln")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    assert_eq!(jobs.len(), 1, "one job folder: {jobs:?}");
    jobs.into_iter().next().unwrap()
}

/// Waits for a preview frame other than `previous` to be shown, then for no other to follow
/// within [`SETTLE`]; its state.
fn wait_for_frame(driver: &Driver, previous: Option<&str>) -> Value {
    let mut last = driver.wait_until("a new preview frame in #preview", FRAME_TIMEOUT, |d| {
        let state = d.execute(PREVIEW_STATE, &[]);
        let src = state["src"].as_str();
        let shown =
            state["hidden"] == false && state["complete"] == true && state["natural"][0].as_u64().unwrap_or(0) > 0;
        if shown && src.is_some_and(|s| s.starts_with("blob:")) && src != previous {
            Ok(state)
        } else {
            Err(format!("{state}; messages: {}", page_messages(d)))
        }
    });
    driver.wait_until("the preview to settle on one frame", FRAME_TIMEOUT, |d| {
        std::thread::sleep(SETTLE);
        let state = d.execute(PREVIEW_STATE, &[]);
        if state["src"] == last["src"] && state["complete"] == true {
            return Ok(state);
        }
        let seen = format!("frames still changing: {state}");
        last = state;
        Err(seen)
    })
}

/// Turns the preview one key step, then holds the frame on the page against `kiln render` of
/// the job folder from the same orbit and size.
fn preview_matches_kiln_render(driver: &Driver, job_dir: &Path, root: &Path) {
    let opened = wait_for_frame(driver, None);
    let preview = driver.find("#preview");
    driver.send_keys(&preview, ARROW_RIGHT);
    let state = wait_for_frame(driver, opened["src"].as_str());
    // The → key focused the image; its focus ring would be in the screenshot.
    driver.execute("document.activeElement?.blur();", &[]);
    driver.execute("document.getElementById('preview-pane').scrollIntoView({ block: 'nearest' });", &[]);
    driver.execute_async(AFTER_PAINT, &[]);
    save_screen(driver, "app-preview.png");
    assert_eq!(state["ratio"].as_f64(), Some(1.0), "device pixel ratio under Xvfb: {state}");
    assert_eq!((state["mode"].as_str(), state["cameras"].as_bool()), (Some("mesh"), Some(false)), "{state}");
    let size = (state["size"][0].as_u64().unwrap() as u32, state["size"][1].as_u64().unwrap() as u32);
    assert_eq!(
        (state["natural"][0].as_u64(), state["natural"][1].as_u64()),
        (Some(size.0.into()), Some(size.1.into())),
        "{state}"
    );

    let shot = image::load_from_memory(&driver.element_screenshot(&preview)).unwrap().into_rgb8();
    shot.save(root.join("preview-page.png")).unwrap();
    assert_eq!(shot.dimensions(), size, "the element screenshot has the frame's size");
    let background = shot.get_pixel(0, 0).0;
    let drawn = shot.pixels().filter(|p| p.0 != background).count();
    assert!(
        drawn as f64 > MIN_DRAWN_FRACTION * f64::from(size.0 * size.1),
        "the model is in the preview ({drawn} pixels drawn)"
    );

    let Some(cli) = std::env::var_os("KILN_CLI_BIN") else {
        skip("the preview is not compared with `kiln render`: KILN_CLI_BIN is not set (scripts/test.sh sets it)");
        return;
    };
    let [azimuth, elevation, distance] = OPENING_ORBIT;
    let orbit = format!("{},{elevation},{distance}", azimuth + DEGREES_PER_KEY);
    let rendered_path = root.join("preview-kiln-render.png");
    let output = Command::new(&cli)
        .arg("render")
        .arg(job_dir)
        .args(["--orbit", &orbit, "--size", &format!("{}x{}", size.0, size.1)])
        // The preview's mesh mode: the mesh without splats, cameras or points.
        .args(["--no-splats", "--no-cameras", "--no-points", "--out"])
        .arg(&rendered_path)
        .output()
        .unwrap();
    assert!(output.status.success(), "kiln render failed: {}", String::from_utf8_lossy(&output.stderr));
    let rendered = image::open(&rendered_path).unwrap().into_rgb8();
    assert_eq!(rendered.dimensions(), size);
    let total: u64 = shot.as_raw().iter().zip(rendered.as_raw()).map(|(a, b)| u64::from(a.abs_diff(*b))).sum();
    let mean = total as f64 / shot.as_raw().len() as f64;
    assert!(
        mean <= MAX_MEAN_ABS_DIFF,
        "the preview differs from `kiln render --orbit {orbit}` by {mean:.2} on average (at most {MAX_MEAN_ABS_DIFF}); see {} and {}",
        root.join("preview-page.png").display(),
        rendered_path.display()
    );
    println!("preview vs kiln render --orbit {orbit}: mean absolute difference {mean:.3}");
}

/// Exports GLB alone into `folder` through the export pane; the file is there and the pane shows
/// the validator's verdict.
fn export_writes_a_validated_glb(driver: &Driver, folder: &Path, job_id: &str) {
    let pane = driver.execute("return document.getElementById('export').dataset.jobId;", &[]);
    assert_eq!(pane, job_id, "the export pane follows the finished job");
    let input = driver.find("#export-folder");
    driver.clear(&input);
    driver.send_keys(&input, folder.to_str().unwrap());
    set_checkboxes(driver, r#"#export-formats input[type="checkbox"]"#, &["glb"]);
    driver.click(&driver.find("#export-run"));
    let row = driver.wait_until("the exported GLB's row in the export pane", EXPORT_TIMEOUT, |d| {
        let row = d.execute(
            r#"const row = document.querySelector('[data-testid="export-files"] tr[data-format="glb"]');
               const results = document.getElementById('export-results')?.textContent ?? '';
               if (!row) return { results };
               const v = row.querySelector('[data-testid="validator"]');
               return { path: row.querySelector('td[title]')?.title ?? null, passed: v?.dataset.passed ?? null, validator: v?.textContent ?? null };"#,
            &[],
        );
        if row["path"].is_string() { Ok(row) } else { Err(format!("{row}; messages: {}", page_messages(d))) }
    });
    let path = PathBuf::from(row["path"].as_str().unwrap());
    assert_eq!(path.parent(), Some(folder), "{row}");
    assert!(std::fs::metadata(&path).is_ok_and(|m| m.len() > 0), "no GLB at {}", path.display());
    if std::env::var_os("KILN_GLTF_VALIDATOR").is_some() {
        assert_eq!(row["passed"], "true", "the glTF validator's verdict on the page: {row}");
    } else {
        skip("the export pane's validator verdict: KILN_GLTF_VALIDATOR is not set");
        assert_eq!(row["validator"], "not validated", "{row}");
    }
}

/// A session bus address where nothing listens: the app keeps its cloud login in the credentials
/// file of its own `XDG_CONFIG_HOME`, never in a keyring of the machine.
const NO_BUS: &str = "unix:path=/nonexistent/kiln-app-e2e-bus";

/// The cloud pane as the page shows it.
const CLOUD_STATE: &str = r#"
const pane = document.getElementById('cloud-pane');
const text = (id) => pane.querySelector(`[data-testid="${id}"]`)?.textContent ?? null;
return {
  sign_in: pane.querySelector('#cloud-sign-in') !== null,
  waiting: text('cloud-waiting'),
  email: text('cloud-email'),
  available: text('cloud-available'),
  secret: pane.querySelector('[data-testid="cloud-key-secret"]')?.value ?? null,
  keys: [...pane.querySelectorAll('li[data-key-id]')].map((k) => ({ id: k.dataset.keyId, state: k.dataset.state })),
  error: text('cloud-error'),
};
"#;

/// The first queue row's place and phase.
const CLOUD_ROW_STATE: &str = r#"
const row = document.querySelector('#queue li[data-job-id]');
if (!row) return null;
return {
  state: row.dataset.state,
  phase: row.dataset.cloudPhase ?? '',
  cloud: row.querySelector('[data-testid="where-cloud"]')?.hidden === false,
  stage: row.querySelector('[data-testid="stage"]').textContent,
};
"#;

/// Digits of a count as the page writes it (`1 000`, `1,000`): the number.
fn count(text: &Value) -> Option<i64> {
    text.as_str()?.chars().filter(char::is_ascii_digit).collect::<String>().parse().ok()
}

#[test]
fn the_cloud_pane_signs_in_makes_and_revokes_a_key_and_a_cloud_job_comes_back() {
    let Some(tools) = find_tools() else { return };
    let Some(server) = common::api_server::ApiServer::start("e2e") else { return };
    let email = "window@example.com";
    server.signup(email);
    let root = fresh_dir("cloud");
    // The "browser": records the address the app opens; the test then plays the person at it.
    let (browser, opened) = common::browser_script(&root);
    let config = root.join("config");
    let env = [
        ("BROWSER", browser.as_os_str()),
        ("XDG_CONFIG_HOME", config.as_os_str()),
        ("DBUS_SESSION_BUS_ADDRESS", std::ffi::OsStr::new(NO_BUS)),
    ];
    let mut processes = Processes::default();
    let display = start_xvfb(&mut processes);
    let port = start_tauri_driver_with(&mut processes, &tools, &display, &root, &env);
    let capabilities = json!({ "alwaysMatch": { "tauri:options": { "application": env!("CARGO_BIN_EXE_kiln-app") } } });
    let driver = Driver::start(port, capabilities, DRIVER_TIMEOUT);
    driver.set_script_timeout(CHECK_TIMEOUT);
    app_starts_titled_kiln(&driver, &display);

    // Settings: the cloud server is the local one; the pane offers the sign-in.
    driver.click(&driver.find("#open-settings"));
    let url = driver.find("#settings-cloud");
    driver.clear(&url);
    driver.send_keys(&url, &server.url);
    driver.click(&driver.find(r#"[data-testid="settings-save"]"#));
    driver.wait_until("the pane's Sign in", START_TIMEOUT, |d| {
        let state = d.execute(CLOUD_STATE, &[]);
        if state["sign_in"] == true { Ok(()) } else { Err(format!("{state}; messages: {}", page_messages(d))) }
    });

    // Sign-in through the system browser: the app opens it and waits; the person approves.
    driver.click_css("#cloud-sign-in", START_TIMEOUT);
    let address = driver.wait_until("the browser opened on the sign-in page", START_TIMEOUT, |d| {
        std::fs::read_to_string(&opened).map_err(|_| d.execute(CLOUD_STATE, &[]).to_string())
    });
    assert!(address.starts_with(&server.at("/oauth/authorize?")), "{address}");
    let waiting = driver.execute(CLOUD_STATE, &[]);
    assert!(waiting["waiting"].is_string(), "the pane says it waits for the browser: {waiting}");
    let visit = common::api_server::play_browser(&server, &address, email);
    assert_eq!(visit.final_status, 200, "{}", visit.final_page);
    let signed_in = driver.wait_until("the account and its balance", START_TIMEOUT, |d| {
        let state = d.execute(CLOUD_STATE, &[]);
        if state["email"] == email && state["available"].is_string() { Ok(state) } else { Err(state.to_string()) }
    });
    assert_eq!(count(&signed_in["available"]), Some(common::api_server::SIGNUP_CREDITS), "{signed_in}");

    // An API key: its secret shown once and working; revoked after a confirmation, then refused.
    let name = driver.find("#cloud-key-name");
    driver.send_keys(&name, "render farm");
    driver.click_css(r#"[data-testid="cloud-key-create"]"#, START_TIMEOUT);
    let created = driver.wait_until("the new key's secret", START_TIMEOUT, |d| {
        let state = d.execute(CLOUD_STATE, &[]);
        if state["secret"].as_str().is_some_and(|s| s.starts_with("kiln_live_")) {
            Ok(state)
        } else {
            Err(state.to_string())
        }
    });
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(server.get("/v1/me", &secret).0, 200, "the key the page showed works");
    save_screen(&driver, "app-cloud.png");
    driver.click_css(r#"[data-testid="cloud-key-done"]"#, START_TIMEOUT);
    assert!(driver.execute(CLOUD_STATE, &[])["secret"].is_null(), "the secret is shown once");
    driver.click_css(r#"#cloud-pane li[data-key-id] [data-action="revoke"]"#, START_TIMEOUT);
    driver.click_css(r#"[data-testid="confirm-yes"]"#, START_TIMEOUT);
    driver.wait_until("the key shown revoked", START_TIMEOUT, |d| {
        let state = d.execute(CLOUD_STATE, &[]);
        if state["keys"][0]["state"] == "revoked" { Ok(()) } else { Err(state.to_string()) }
    });
    assert_eq!(server.get("/v1/me", &secret).0, 401, "the revoked key is refused");

    // A job sent to the cloud: a worker runs it; its stages show in the queue; it comes back.
    let _worker = server.spawn_worker("e2e");
    add_and_check(&driver, &box_folder(&root));
    let draft = r#"#drafts [data-testid="draft"]"#;
    driver.click(&driver.find(&format!(r#"{draft} [data-testid="preset"] option[value="preview"]"#)));
    set_checkboxes(&driver, &format!(r#"{draft} [data-testid="formats"] input[type="checkbox"]"#), &["glb"]);
    driver.click(&driver.find(&format!(r#"{draft} [data-testid="where"] input[value="cloud"]"#)));
    let quoted = driver.wait_until("the cloud quote in the estimate", CHECK_TIMEOUT, |d| {
        let state = d.execute(DRAFT_STATE, &[]);
        let estimate = state["estimate"].as_str().unwrap_or_default().to_string();
        if estimate.ends_with(" credits") {
            Ok(estimate)
        } else {
            Err(format!("{state}; messages: {}", page_messages(d)))
        }
    });
    let credits = count(&json!(quoted.rsplit(" · ").next().unwrap_or_default())).unwrap();
    driver.click(&driver.find(&format!(r#"{draft} [data-testid="start"]"#)));
    let mut phases: Vec<String> = Vec::new();
    let row = driver.wait_until("the cloud job to end", JOB_TIMEOUT, |d| {
        let row = d.execute(CLOUD_ROW_STATE, &[]);
        if let Some(phase) = row["phase"].as_str().filter(|p| !p.is_empty())
            && phases.last().is_none_or(|last| last != phase)
        {
            if phase == "running" {
                save_screen(d, "app-queue-cloud.png");
            }
            phases.push(phase.to_string());
        }
        match row["state"].as_str() {
            Some("done" | "failed" | "canceled") => Ok(row),
            _ => Err(format!("{row}; messages: {}", page_messages(d))),
        }
    });
    assert_eq!(row["state"], "done", "{row}; messages: {}", page_messages(&driver));
    assert_eq!(row["cloud"], true, "the row says it ran in the cloud: {row}");
    assert!(phases.iter().any(|p| p == "running") && phases.iter().any(|p| p == "downloading"), "{phases:?}");
    report_shows_registered_photos_and_psnr(&driver);
    let export = job_folder(&root.join("data")).join("export");
    let glb = std::fs::read_dir(&export)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "glb"));
    assert!(glb.is_some(), "the GLB came back into {}", export.display());
    let charged = driver.wait_until("the balance after the job", START_TIMEOUT, |d| {
        let state = d.execute(CLOUD_STATE, &[]);
        if count(&state["available"]) == Some(common::api_server::SIGNUP_CREDITS - credits) {
            Ok(state)
        } else {
            Err(state.to_string())
        }
    });
    println!("cloud job: phases {phases:?}, {credits} credits charged, the pane shows {}", charged["available"]);
}
