//! A `kiln.toml` job spec through the real `kiln` binary to the real server: `kiln cloud submit
//! <folder>/kiln.toml` of bunny-mini's photos creates a job whose settings (`GET /v1/jobs/{id}`)
//! are the spec's, with the flags given on the command line over them; the quote line and the
//! `--json` summary name the spec; the upload carries the photos and not the spec. A spec with an
//! unknown key is refused with exit code 2, the problem first and the file last, before anything
//! reaches the server.
//!
//! The runners are `cloud_cli`'s (the binary is `$KILN_BIN` or `target/debug/kiln`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::cloud_cli::{COMMAND_TIMEOUT, WRITE, assert_only, cloud_env, kiln, kiln_bin, scratch};
use crate::common::TestServer;
use crate::support;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The spec the test writes: a preset, a list, a number, and a stage the command line overrides.
const SPEC: &str = "# bunny-mini in the cloud\npreset = \"preview\"\nformats = [\"obj\", \"ply\"]\nmax_side = 200\n\
                    until = \"poses\"\n";

/// A copy of bunny-mini's photos in `dir`, with `spec` as its `kiln.toml`; answers the photos'
/// names.
fn photos_with_spec(dir: &Path, spec: &str) -> Vec<String> {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/fixtures/bunny-mini/images");
    std::fs::create_dir_all(dir).unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&images).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(&path, dir.join(&name)).unwrap();
        names.push(name);
    }
    names.sort();
    std::fs::write(dir.join("kiln.toml"), spec).unwrap();
    names
}

fn submit_args(input: &Path, out: &Path) -> Vec<String> {
    let args = ["cloud", "submit", input.to_str().unwrap(), "--until", "check", "--yes", "--json"];
    let mut args: Vec<String> = args.map(str::to_string).to_vec();
    args.extend(["--out".to_string(), out.to_str().unwrap().to_string()]);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_spec_gives_the_cloud_jobs_settings_under_the_flags() {
    let Some(bin) = kiln_bin() else { return };
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("cli-spec@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let root = scratch("spec");
    let photos = root.join("bunny-mini");
    let names = photos_with_spec(&photos, SPEC);
    let spec = photos.join("kiln.toml");
    let out = root.join("job");

    let args = submit_args(&spec, &out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = kiln(&bin, &args, &cloud_env(&server, &key), &root.join("submit"), COMMAND_TIMEOUT).await;
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let summary = run.json();
    assert_eq!(summary["settings_from"], spec.to_str().unwrap(), "{summary:#}");
    assert_eq!(summary["quote"]["preset"], "preview", "the spec's preset is quoted: {summary:#}");
    assert_eq!(summary["quote"]["photos"], names.len(), "the spec's folder holds the photos: {summary:#}");
    let quote_line = run.stderr.lines().find(|l| l.starts_with("quote: ")).unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(quote_line.ends_with(&format!("settings from {}", spec.display())), "{quote_line}");

    // The job's settings are the spec's, `until` the flag's; nothing else was set.
    let job_id = summary["job_id"].as_str().unwrap();
    let job = support::job(&server, &key, job_id).await;
    assert_eq!(
        job["settings"],
        json!({"preset": "preview", "formats": ["obj", "ply"], "max_side": 200, "until": "check"}),
        "{job:#}"
    );
    // The upload carried the photos, not the spec.
    let upload: Value = support::get(&server, &key, &format!("/v1/uploads/{}", summary["upload_id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    let mut uploaded: Vec<String> =
        upload["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()).collect();
    uploaded.sort();
    assert_eq!(uploaded, names, "{upload:#}");

    // A spec with a typo: exit 2, what is wrong first and the file last; nothing submitted.
    let bad = root.join("bad");
    photos_with_spec(&bad, "preset = \"preview\"\nqualty = \"high\"\n");
    let bad_spec: PathBuf = bad.join("kiln.toml");
    let bad_out = root.join("bad-job");
    // The folder stands for its spec.
    let args = submit_args(&bad, &bad_out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = kiln(&bin, &args, &cloud_env(&server, &key), &root.join("bad-logs"), COMMAND_TIMEOUT).await;
    assert_eq!(run.code, Some(2), "{}", run.describe());
    let error = run.stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(error.starts_with("error: unknown field `qualty`"), "{error}");
    assert!(error.contains("(line 2, column 1)") && error.ends_with(bad_spec.to_str().unwrap()), "{error}");
    assert!(!run.stderr.contains("quote: "), "refused before the quote:\n{}", run.stderr);
    assert_only(&bad_out, &[]);
    let jobs: Value = support::get(&server, &key, "/v1/jobs").await.json().await.unwrap();
    assert_eq!(jobs["data"].as_array().unwrap().len(), 1, "only the first job: {jobs:#}");
    std::fs::remove_dir_all(&root).unwrap();
}
