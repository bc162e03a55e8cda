//! The real `kiln` binary's cloud commands against the real server (PostgreSQL, SeaweedFS, a
//! `kiln-server worker`):
//! - `kiln cloud submit … --wait` of bunny photos: the outputs land in a job folder whose GLB
//!   passes the glTF validator, `kiln export` re-exports its mesh, `kiln cloud status` reads it;
//!   the folder is a job folder: `kiln reconstruct` of the same photos (moved to another folder)
//!   skips every stage the cloud finished, a format added later runs only the export, a changed
//!   mesh setting reruns only the mesh and export (loading the photos where they are now), and
//!   `kiln export --format ply` and `kiln render` (the viewer's headless loader) take it;
//! - a multipart upload SIGKILLed after its first parts reached storage, and the same command run
//!   again: storage receives each part exactly once (a forward proxy, `HTTP_PROXY`, counts and
//!   holds the PUTs), and the CLI reports the parts it sent;
//! - exit codes: no server listening (6), insufficient credits (5), a revoked key (4), a job
//!   canceled from elsewhere while `--wait` follows it (7), each with a clear message and nothing
//!   half-written under a final name;
//! - `kiln reconstruct --where auto` on a machine without a hardware GPU chooses the cloud, says
//!   why, and shows the quote before anything is spent.
//!
//! The binary is not built by `cargo test -p kiln-server`: it is `$KILN_BIN`, or `kiln` beside
//! the test executable's folder (`target/debug/kiln`, which `cargo test --workspace` builds, as
//! `scripts/test.sh` runs). Without it the tests say SKIPPED, or fail under
//! `KILN_REQUIRE_SERVICES=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Options, TestServer};
use kiln_server::config::BillingConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(crate) const WRITE: [&str; 2] = ["jobs:read", "jobs:write"];

/// How long a CI-sized cloud job may take on a busy 2-core machine in a debug build.
pub(crate) const JOB_TIMEOUT: Duration = Duration::from_secs(900);

/// How long a command that does not run a job may take (retries included).
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The `kiln` binary, or `None` after saying the test is skipped.
pub(crate) fn kiln_bin() -> Option<PathBuf> {
    let path = match std::env::var_os("KILN_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe().unwrap();
            // target/debug/deps/api-… → target/debug/kiln
            exe.parent().and_then(Path::parent).unwrap().join(format!("kiln{}", std::env::consts::EXE_SUFFIX))
        }
    };
    if path.is_file() {
        return Some(path);
    }
    let required = std::env::var("KILN_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
    assert!(!required, "the kiln binary is not at {} (set KILN_BIN, or build it: cargo build -p kiln)", path.display());
    println!("SKIPPED: no kiln binary at {} (cargo build -p kiln)", path.display());
    None
}

/// A fresh folder for one test.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-cloud-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One run of `kiln`: its exit code, stdout and stderr.
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.describe()))
    }

    pub(crate) fn describe(&self) -> String {
        format!("exit {:?}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// `kiln args…` as a child with `env`, a private HOME (no login of the machine's), output to
/// files in `logs`.
pub(crate) fn spawn_kiln(bin: &Path, args: &[&str], env: &[(&str, String)], logs: &Path) -> Child {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env("HOME", logs)
        .env("XDG_CONFIG_HOME", logs.join("config"))
        .env("NO_COLOR", "1")
        .env("KILN_LOG", "warn")
        .env_remove("KILN_SERVER")
        .env_remove("KILN_API_KEY");
    for name in
        ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"]
    {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let stdout = std::fs::File::create(logs.join("stdout")).unwrap();
    let stderr = std::fs::File::create(logs.join("stderr")).unwrap();
    command.stdin(Stdio::null()).stdout(stdout).stderr(stderr).spawn().expect("start kiln")
}

/// Waits (off the runtime's threads) for `child` to exit, killing it after `timeout`.
pub(crate) async fn finish(mut child: Child, logs: &Path, timeout: Duration) -> Run {
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    let run = Run {
        code: status.and_then(|s| s.code()),
        stdout: std::fs::read_to_string(logs.join("stdout")).unwrap_or_default(),
        stderr: std::fs::read_to_string(logs.join("stderr")).unwrap_or_default(),
    };
    assert!(status.is_some(), "kiln did not finish in {timeout:?}:\n{}", run.describe());
    run
}

pub(crate) async fn kiln(bin: &Path, args: &[&str], env: &[(&str, String)], logs: &Path, timeout: Duration) -> Run {
    std::fs::create_dir_all(logs).unwrap();
    finish(spawn_kiln(bin, args, env, logs), logs, timeout).await
}

/// `KILN_SERVER` and `KILN_API_KEY` for `server` and `key`.
pub(crate) fn cloud_env(server: &TestServer, key: &str) -> Vec<(&'static str, String)> {
    vec![("KILN_SERVER", server.url.clone()), ("KILN_API_KEY", key.to_string())]
}

/// Writes `files` into a new folder `dir`.
pub(crate) fn photo_folder(dir: &Path, files: &[(String, Vec<u8>)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    dir.to_path_buf()
}

/// Every file under `dir`, relative, sorted.
pub(crate) fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, found);
            } else {
                found.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found);
    found.sort();
    found
}

/// Nothing in `dir` but the records a submission keeps (`allowed`), and nothing half-written.
pub(crate) fn assert_only(dir: &Path, allowed: &[&str]) {
    for file in files_under(dir) {
        assert!(allowed.contains(&file.as_str()), "{file} should not be in {}: {:?}", dir.display(), files_under(dir));
    }
}

/// Runs the glTF validator wrapper on `file`; without one, fails under `KILN_REQUIRE_SERVICES=1`
/// and says SKIPPED otherwise.
pub(crate) fn validate_glb(file: &Path) {
    let Ok(wrapper) = std::env::var("KILN_GLTF_VALIDATOR") else {
        let required = std::env::var("KILN_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        assert!(!required, "KILN_GLTF_VALIDATOR is not set (scripts/test.sh sets it from scripts/validators.sh)");
        println!("SKIPPED: KILN_GLTF_VALIDATOR is not set; {} not validated", file.display());
        return;
    };
    let output = Command::new(&wrapper).arg(file).output().unwrap();
    assert!(
        output.status.success(),
        "{wrapper} rejected {}:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_downloads_a_job_folder_that_exports_and_validates() {
    let Some(bin) = kiln_bin() else { return };
    let Some(server) = TestServer::start().await else { return };
    let Some(photos) = support::bunny_subset() else { return };
    let account = server.signup("cli-e2e@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let root = scratch("e2e");
    let input = photo_folder(&root.join("photos"), &photos);
    let out = root.join("job");
    let mut worker = support::spawn_worker(&server, "cli-e2e", true);

    // The CI size of tests/api/worker.rs, through the same flags `kiln reconstruct` takes.
    let args = [
        "cloud",
        "submit",
        input.to_str().unwrap(),
        "--preset",
        "preview",
        "--formats",
        "glb",
        "--max-side",
        "100",
        "--steps",
        "400",
        "--wait",
        "--yes",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ];
    let run = kiln(&bin, &args, &cloud_env(&server, &key), &root.join("submit"), JOB_TIMEOUT).await;
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let summary = run.json();
    assert_eq!(summary["state"], "succeeded", "{summary:#}");
    assert_eq!(summary["quote"]["photos"], photos.len(), "the quote counts the photos");
    assert!(run.stderr.contains("quote: "), "the quote is shown:\n{}", run.stderr);
    let job_id = summary["job_id"].as_str().unwrap().to_string();
    let record: Value = serde_json::from_slice(&std::fs::read(out.join("cloud-job.json")).unwrap()).unwrap();
    assert_eq!(record["job_id"], job_id.as_str());

    // The job folder: where a local run writes each file, nothing half-written.
    let glb = out.join("export/model.glb");
    assert!(glb.is_file(), "{:?}", files_under(&out));
    for file in ["manifest.json", "report.json", "train/splats.ply", "poses/transforms.json", "mesh/mesh.ply"] {
        assert!(out.join(file).is_file(), "{file} in {:?}", files_under(&out));
    }
    assert!(files_under(&out).iter().all(|f| !f.ends_with(".part") && !f.ends_with(".tmp")), "{:?}", files_under(&out));
    let job = support::job(&server, &key, &job_id).await;
    let remote_glb = job["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "model.glb").unwrap();
    let bytes = std::fs::read(&glb).unwrap();
    assert_eq!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)), remote_glb["sha256"].as_str().unwrap());
    validate_glb(&glb);

    // `kiln export` takes the downloaded mesh folder like a local job's.
    let again = root.join("again");
    let mesh = out.join("mesh");
    let export_args = ["export", mesh.to_str().unwrap(), "--format", "glb", "--out", again.to_str().unwrap()];
    let export = kiln(&bin, &export_args, &[], &root.join("export"), COMMAND_TIMEOUT).await;
    assert_eq!(export.code, Some(0), "{}", export.describe());
    validate_glb(&again.join("model.glb"));

    resume_locally(&bin, &root, &input, &out).await;

    // status takes the folder, list names the job.
    let status = kiln(
        &bin,
        &["cloud", "status", out.to_str().unwrap(), "--json"],
        &cloud_env(&server, &key),
        &root.join("status"),
        COMMAND_TIMEOUT,
    )
    .await;
    assert_eq!(status.code, Some(0), "{}", status.describe());
    assert_eq!(status.json()["state"], "succeeded");
    let list =
        kiln(&bin, &["cloud", "list", "--json"], &cloud_env(&server, &key), &root.join("list"), COMMAND_TIMEOUT).await;
    assert_eq!(list.code, Some(0), "{}", list.describe());
    assert!(list.json()["data"].as_array().unwrap().iter().any(|j| j["id"] == job_id.as_str()));

    assert!(support::wait_exit(&mut worker, Duration::from_secs(60)).await.success());
    std::fs::remove_dir_all(&root).unwrap();
    let _ = std::fs::remove_dir_all(support::work_dir("cli-e2e"));
}

/// The statuses of the five stages in a `report.json`, in order.
pub(crate) fn stage_statuses(report: &Value) -> Vec<String> {
    report["stages"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap().to_string()).collect()
}

/// SHA-256 of a file, hex.
pub(crate) fn file_sha256(path: &Path) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(path).unwrap()))
}

/// The downloaded cloud job folder `out` of the photos `input` (the CI settings of the e2e test),
/// taken on by local commands: the photos moved elsewhere first, so that nothing but the local
/// copy can be read.
async fn resume_locally(bin: &Path, root: &Path, input: &Path, out: &Path) {
    let photos = root.join("shots");
    std::fs::rename(input, &photos).unwrap();
    let poses_record = std::fs::read(out.join("poses/stage.json")).unwrap();
    let splats = file_sha256(&out.join("train/splats.ply"));
    let reconstruct = |formats: &str, extra: &[&str]| {
        let mut args = vec!["reconstruct", photos.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"];
        args.extend(["--preset", "preview", "--max-side", "100", "--steps", "400", "--formats", formats]);
        args.extend(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run_local = async |args: Vec<String>, logs: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = kiln(bin, &args, &[], &root.join(logs), JOB_TIMEOUT).await;
        assert_eq!(run.code, Some(0), "{}", run.describe());
        run.json()
    };

    // The same job: every stage the cloud finished is skipped; nothing is recomputed.
    let report = run_local(reconstruct("glb", &[]), "resume-same").await;
    assert_eq!(stage_statuses(&report), ["skipped"; 5], "{report:#}");
    assert_eq!(std::fs::read(out.join("poses/stage.json")).unwrap(), poses_record, "the poses stand");
    assert_eq!(file_sha256(&out.join("train/splats.ply")), splats);
    let transforms: Value = serde_json::from_slice(&std::fs::read(out.join("poses/transforms.json")).unwrap()).unwrap();
    let first = transforms["frames"][0]["file_path"].as_str().unwrap();
    assert!(first.starts_with("../../shots/") && out.join("poses").join(first).is_file(), "{first}");

    // A format added later: only the export runs.
    let report = run_local(reconstruct("glb,usdz", &[]), "resume-usdz").await;
    assert_eq!(stage_statuses(&report), ["skipped", "skipped", "skipped", "skipped", "finished"], "{report:#}");
    assert!(out.join("export/model.usdz").is_file() && out.join("export/model.glb").is_file());

    // Back to the cloud's formats: only the export runs, and removes the format no longer asked
    // for (the export record names its files in this folder, not the worker's).
    let report = run_local(reconstruct("glb", &[]), "resume-glb").await;
    assert_eq!(stage_statuses(&report), ["skipped", "skipped", "skipped", "skipped", "finished"], "{report:#}");
    assert!(!out.join("export/model.usdz").exists(), "a format no longer asked for is removed");

    // A mesh setting changed: the mesh stage and its verdict run here, loading the photos from
    // their new folder through the downloaded poses; poses and training still stand.
    let report = run_local(reconstruct("glb", &["--size-mm", "80"]), "resume-mesh").await;
    assert_eq!(stage_statuses(&report), ["skipped", "skipped", "skipped", "finished", "finished"], "{report:#}");
    assert!(report["verdict"].is_string(), "the verdict was measured again: {report:#}");
    assert_eq!(std::fs::read(out.join("poses/stage.json")).unwrap(), poses_record);
    assert_eq!(file_sha256(&out.join("train/splats.ply")), splats);
    validate_glb(&out.join("export/model.glb"));

    // `kiln export --format ply` finds the splats mesh.json names in this folder.
    let ply = root.join("ply");
    let mesh = out.join("mesh");
    let args = ["export", mesh.to_str().unwrap(), "--format", "ply", "--out", ply.to_str().unwrap()];
    let run = kiln(bin, &args, &[], &root.join("export-ply"), COMMAND_TIMEOUT).await;
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_eq!(file_sha256(&ply.join("splats.ply")), splats);

    // The viewer's headless loader opens the folder (lavapipe where there is no GPU).
    let image = root.join("view.png");
    let args =
        ["render", out.to_str().unwrap(), "--orbit", "30,20,1", "--size", "160x120", "--out", image.to_str().unwrap()];
    let run = kiln(bin, &args, &[], &root.join("render"), COMMAND_TIMEOUT).await;
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let png = std::fs::read(&image).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000, "{} bytes", png.len());
}

/// `(object path, partNumber)` → the body size of each PUT of it that storage answered 2xx.
type PartLog = Mutex<BTreeMap<(String, String), Vec<usize>>>;

/// A forward proxy (`HTTP_PROXY` for the CLI) that passes everything on and, for PUTs to
/// storage, records each part it forwarded and holds every PUT beyond `allow` (never forwarding
/// it, so storage does not receive it).
struct Proxy {
    url: String,
    allow: Arc<AtomicUsize>,
    /// `(object path, partNumber) → bytes` of each PUT storage answered 2xx, with a count.
    received: Arc<PartLog>,
}

impl Proxy {
    async fn start(storage_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let allow = Arc::new(AtomicUsize::new(usize::MAX));
        let received = Arc::new(Mutex::new(BTreeMap::new()));
        let (gate, log) = (allow.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (gate, log) = (gate.clone(), log.clone());
                tokio::spawn(async move {
                    let _ = relay(stream, storage_port, &gate, &log).await;
                });
            }
        });
        Proxy { url, allow, received }
    }

    fn parts(&self) -> BTreeMap<(String, String), Vec<usize>> {
        self.received.lock().unwrap().clone()
    }
}

/// One proxied request (the proxy asks both sides to close after it).
async fn relay(
    mut client: TcpStream,
    storage_port: u16,
    allow: &AtomicUsize,
    received: &PartLog,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 8192];
        let read = client.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let mut request_line = lines.next().unwrap().split(' ');
    let (method, target, version) =
        (request_line.next().unwrap(), request_line.next().unwrap(), request_line.next().unwrap());
    let url = url::Url::parse(target).unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .filter(|(n, _)| !n.eq_ignore_ascii_case("connection") && !n.eq_ignore_ascii_case("proxy-connection"))
        .collect();
    let length: usize =
        headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")).map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; 65536];
        let read = client.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..read]);
    }
    let part = (method == "PUT" && url.port() == Some(storage_port)).then(|| {
        let number =
            url.query_pairs().find(|(n, _)| n == "partNumber").map(|(_, v)| v.into_owned()).unwrap_or_default();
        (url.path().to_string(), number)
    });
    if part.is_some() && allow.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_err() {
        // Held: never forwarded; the client waits until it is killed.
        std::future::pending::<()>().await;
    }
    let path = &url[url::Position::BeforePath..];
    let mut upstream = TcpStream::connect((url.host_str().unwrap(), url.port_or_known_default().unwrap())).await?;
    let mut request = format!("{method} {path} {version}\r\n");
    for (name, value) in &headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    upstream.write_all(request.as_bytes()).await?;
    upstream.write_all(&body).await?;
    let mut answer = Vec::new();
    let mut first = true;
    loop {
        let mut chunk = vec![0u8; 65536];
        let read = upstream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        if first && let Some(part) = &part {
            first = false;
            answer.extend_from_slice(&chunk[..read]);
            let ok = String::from_utf8_lossy(&answer).split(' ').nth(1).is_some_and(|s| s.starts_with('2'));
            if ok {
                received.lock().unwrap().entry(part.clone()).or_default().push(body.len());
            }
        }
        client.write_all(&chunk[..read]).await?;
    }
    client.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upload_resumes_without_sending_finished_parts_again() {
    let Some(bin) = kiln_bin() else { return };
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("cli-resume@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let root = scratch("resume");
    // Two "photos" of 11 MiB: three parts each at the tests' 5 MiB part size (5, 5, 1).
    let part_bytes = server.state.config.limits.part_bytes as usize;
    let size = 2 * part_bytes + (1 << 20);
    let files: Vec<(String, Vec<u8>)> = ["a.jpg", "b.jpg"]
        .iter()
        .enumerate()
        .map(|(i, name)| (name.to_string(), (0..size).map(|b| ((b * 31 + i * 7) % 251) as u8).collect()))
        .collect();
    let input = photo_folder(&root.join("photos"), &files);
    let out = root.join("job");
    let storage_port = url::Url::parse(&server.state.config.s3.endpoint).unwrap().port().unwrap();
    let proxy = Proxy::start(storage_port).await;
    let mut env = cloud_env(&server, &key);
    env.push(("HTTP_PROXY", proxy.url.clone()));
    env.push(("http_proxy", proxy.url.clone()));
    let args = [
        "cloud",
        "submit",
        input.to_str().unwrap(),
        "--preset",
        "preview",
        "--yes",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ];

    // First run: two parts reach storage, the rest are held; then SIGKILL.
    proxy.allow.store(2, Ordering::SeqCst);
    let logs = root.join("first");
    std::fs::create_dir_all(&logs).unwrap();
    let mut child = spawn_kiln(&bin, &args, &env, &logs);
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let upload_id = loop {
        let state =
            std::fs::read(out.join("cloud-upload.json")).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let landed: usize = proxy.parts().values().map(Vec::len).sum();
        if let Some(state) = state
            && landed == 2
        {
            break state["upload_id"].as_str().unwrap().to_string();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "kiln ended before it was killed: {}",
            std::fs::read_to_string(logs.join("stderr")).unwrap()
        );
        assert!(Instant::now() < deadline, "two parts never landed: {:?}", proxy.parts());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let upload = support::get(&server, &key, &format!("/v1/uploads/{upload_id}")).await.json::<Value>().await.unwrap();
    let held: usize = upload["files"].as_array().unwrap().iter().map(|f| f["received"].as_array().unwrap().len()).sum();
    assert_eq!(held, 2, "the server sees the two parts storage holds: {upload:#}");
    assert!(!out.join("cloud-job.json").exists(), "no job before the upload completed");

    // The same command again: only the four missing parts go out.
    proxy.allow.store(usize::MAX, Ordering::SeqCst);
    let run = kiln(&bin, &args, &env, &root.join("second"), COMMAND_TIMEOUT).await;
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let summary = run.json();
    assert_eq!(summary["upload_id"], upload_id.as_str(), "the same upload, resumed");
    assert_eq!(summary["upload"]["parts_sent"], 4, "{summary:#}");
    let total = 2 * size as u64;
    let resumed = summary["upload"]["bytes_resumed"].as_u64().unwrap();
    assert_eq!(resumed + summary["upload"]["bytes_sent"].as_u64().unwrap(), total);
    assert!(resumed >= 2 * (1 << 20) as u64, "at least two parts were resumed: {summary:#}");

    // Storage received each of the six parts exactly once, all bytes once.
    let parts = proxy.parts();
    assert_eq!(parts.len(), 6, "{parts:?}");
    assert!(parts.values().all(|sends| sends.len() == 1), "a part went twice: {parts:?}");
    assert_eq!(parts.values().flatten().sum::<usize>() as u64, total);
    assert!(out.join("cloud-job.json").is_file());
    let job = support::job(&server, &key, summary["job_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "queued");
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_has_its_exit_code_and_leaves_nothing_half_written() {
    let Some(bin) = kiln_bin() else { return };
    let root = scratch("codes");
    let input = photo_folder(&root.join("photos"), &support::one_photo());
    let submit = |out: &Path| {
        ["cloud", "submit", input.to_str().unwrap(), "--yes", "--out", out.to_str().unwrap()].map(str::to_string)
    };
    fn argv(args: &[String]) -> Vec<&str> {
        args.iter().map(String::as_str).collect()
    }

    // Nobody listens: the network code, and the host named.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nowhere =
        vec![("KILN_SERVER", format!("http://127.0.0.1:{port}")), ("KILN_API_KEY", "kiln_live_x".to_string())];
    let out = root.join("network");
    let run = kiln(&bin, &argv(&submit(&out)), &nowhere, &root.join("network-logs"), COMMAND_TIMEOUT).await;
    assert_eq!(run.code, Some(6), "{}", run.describe());
    assert!(run.stderr.contains(&format!("cannot reach 127.0.0.1:{port}")), "{}", run.stderr);
    assert!(!run.stderr.contains("kiln_live_x"), "the key is never printed");
    assert_only(&out, &[]);

    // No credits: refused before anything is uploaded.
    let options = Options {
        billing: BillingConfig { signup_credits: 0, ..BillingConfig::without_stripe() },
        ..Options::default()
    };
    let Some(poor) = TestServer::start_with(options).await else { return };
    let account = poor.signup("cli-poor@example.com").await;
    let key = poor.api_key(&account, &WRITE, "live").await;
    let out = root.join("credits");
    let run =
        kiln(&bin, &argv(&submit(&out)), &cloud_env(&poor, &key), &root.join("credits-logs"), COMMAND_TIMEOUT).await;
    assert_eq!(run.code, Some(5), "{}", run.describe());
    assert!(run.stderr.contains("insufficient credits"), "{}", run.stderr);
    assert_only(&out, &[]);
    let jobs: Value = support::get(&poor, &key, "/v1/jobs").await.json().await.unwrap();
    assert_eq!(jobs["data"].as_array().unwrap().len(), 0);

    // A revoked key: the log-in code, the message says what to do.
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("cli-codes@example.com").await;
    let created: Value = server
        .http
        .post(server.at("/v1/api-keys"))
        .bearer_auth(&account.access_token)
        .json(&json!({"name": "revoked", "scopes": WRITE, "mode": "live"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let revoked = created["key"].as_str().unwrap().to_string();
    let response = server
        .http
        .delete(server.at(&format!("/v1/api-keys/{}", created["id"].as_str().unwrap())))
        .bearer_auth(&account.access_token)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "revoke: {}", response.status());
    let run = kiln(&bin, &["whoami"], &cloud_env(&server, &revoked), &root.join("revoked-logs"), COMMAND_TIMEOUT).await;
    assert_eq!(run.code, Some(4), "{}", run.describe());
    assert!(!run.stderr.contains(&revoked) && !run.stdout.contains(&revoked), "the key is never printed");
    let out = root.join("revoked");
    let run =
        kiln(&bin, &argv(&submit(&out)), &cloud_env(&server, &revoked), &root.join("revoked-submit"), COMMAND_TIMEOUT)
            .await;
    assert_eq!(run.code, Some(4), "{}", run.describe());
    assert_only(&out, &[]);

    // A job canceled through the API while `--wait` follows it (no worker: it stays queued).
    let key = server.api_key(&account, &WRITE, "live").await;
    let out = root.join("canceled");
    let mut args = submit(&out).to_vec();
    args.push("--wait".into());
    let logs = root.join("canceled-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let child =
        spawn_kiln(&bin, &args.iter().map(String::as_str).collect::<Vec<_>>(), &cloud_env(&server, &key), &logs);
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let job_id = loop {
        if let Some(record) =
            std::fs::read(out.join("cloud-job.json")).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        {
            break record["job_id"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no job was recorded: {}",
            std::fs::read_to_string(logs.join("stderr")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Let the CLI open the event stream, then cancel from elsewhere.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let canceled = support::post(&server, &key, &format!("/v1/jobs/{job_id}/cancel"), &json!({})).await;
    assert!(canceled.status().is_success(), "cancel: {}", canceled.status());
    let run = finish(child, &logs, COMMAND_TIMEOUT).await;
    assert_eq!(run.code, Some(7), "{}", run.describe());
    assert!(run.stderr.contains(&format!("the cloud job {job_id} ended canceled")), "{}", run.stderr);
    assert_only(&out, &["cloud-job.json", "cloud-upload.json"]);
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconstruct_where_auto_without_a_gpu_chooses_the_cloud_and_quotes_first() {
    let Some(bin) = kiln_bin() else { return };
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("cli-auto@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let root = scratch("auto");
    let input = photo_folder(&root.join("photos"), &support::one_photo());
    let out = root.join("job");
    // No --yes and no terminal: the decision and the quote are shown, then nothing is spent.
    let args =
        ["reconstruct", input.to_str().unwrap(), "--where", "auto", "--until", "check", "--out", out.to_str().unwrap()];
    let run = kiln(&bin, &args, &cloud_env(&server, &key), &root.join("logs"), COMMAND_TIMEOUT).await;
    if run.stderr.contains("running locally") {
        println!("SKIPPED: this machine has a hardware GPU, so --where auto ran locally:\n{}", run.stderr);
        std::fs::remove_dir_all(&root).unwrap();
        return;
    }
    assert!(run.stderr.contains("--where auto: "), "{}", run.describe());
    assert!(
        run.stderr.contains("running in the cloud")
            && (run.stderr.contains("no GPU adapter found") || run.stderr.contains("without GPU support")),
        "{}",
        run.describe()
    );
    let decision = run.stderr.find("running in the cloud").unwrap();
    let quote = run.stderr.find("quote: ").unwrap_or_else(|| panic!("no quote shown:\n{}", run.stderr));
    assert!(decision < quote, "the decision comes first:\n{}", run.stderr);
    assert_eq!(run.code, Some(2), "not confirmed without --yes: {}", run.describe());
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    let credits: Value = support::get(&server, &key, "/v1/credits").await.json().await.unwrap();
    assert_eq!(
        (credits["available"].as_i64(), credits["reserved"].as_i64()),
        (Some(100_000), Some(0)),
        "nothing spent"
    );
    let jobs: Value = support::get(&server, &key, "/v1/jobs").await.json().await.unwrap();
    assert_eq!(jobs["data"].as_array().unwrap().len(), 0);
    assert_only(&out, &[]);
    std::fs::remove_dir_all(&root).unwrap();
}
