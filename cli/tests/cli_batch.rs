//! `kiln batch` end to end with the real binary: a folder of folders (real bunny-synth photos and
//! a folder of junk) where the junk fails without stopping the photos; a CSV manifest that points
//! at the finished job again (resumed, not redone); a ZIP of folders; a zip-slip ZIP refused with
//! exit code 2 and nothing written; Ctrl-C during an item, which exits 130 and resumes on the same
//! command. Jobs stop after `poses` to stay cheap. The photo parts print
//! `SKIPPED` without `$KILN_DATASETS`.

#![cfg(feature = "queue")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{kiln, running_stage, send_signal, synth_images};

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-cli-batch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn junk_folder(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a photo").unwrap();
    std::fs::write(dir.join("broken.jpg"), b"\xff\xd8 truncated").unwrap();
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("batch-report.json")).unwrap()).unwrap()
}

/// Twelve bunny-synth photos copied into `folder`.
fn bunny_folder(source: &Path, folder: &Path) {
    std::fs::create_dir_all(folder).unwrap();
    for k in 17..29 {
        let name = format!("{k:04}.jpg");
        std::fs::copy(source.join(&name), folder.join(&name)).unwrap();
    }
}

#[test]
fn a_failing_item_does_not_stop_the_others_and_csv_items_resume() {
    let Some(source) = synth_images() else { return };
    let root = fresh_dir("folders");
    let photos = root.join("photos");
    bunny_folder(&source, &photos.join("bunny"));
    junk_folder(&photos.join("junk"));
    let out = root.join("out");
    let output = kiln()
        .arg("batch")
        .arg(&photos)
        .arg("--out")
        .arg(&out)
        .args(["--preset", "preview", "--until", "poses"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "only a bad input failed: exit 2\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 done, 1 failed"), "summary table: {stdout}");
    let first = report(&out);
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["input"], photos.join("bunny").to_string_lossy().as_ref());
    assert_eq!(items[0]["status"], "done", "{stdout}");
    assert!(items[0]["metrics"]["registered_images"].as_u64().unwrap() >= 10, "{}", items[0]);
    assert_eq!(items[1]["status"], "bad_input");
    let error = items[1]["error"].as_str().unwrap();
    assert!(error.contains("junk"), "the error names the input: {error}");
    assert!(out.join("bunny/report.json").is_file() && out.join("bunny/poses").is_dir());

    // A CSV naming the same photos and job folder: the finished job is reused, not recomputed.
    let poses_record = std::fs::read(out.join("bunny/poses/stage.json")).unwrap();
    let csv = root.join("list.csv");
    // The settings come from the CSV's columns alone (`until` included), as the flags gave them.
    std::fs::write(&csv, "input,output,preset,formats,until\nphotos/bunny,out/bunny,preview,glb;usdz,poses\n").unwrap();
    let output = kiln().arg("batch").arg(&csv).arg("--out").arg(root.join("csv-out")).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let second = report(&root.join("csv-out"));
    assert_eq!(second["items"][0]["output"], out.join("bunny").to_string_lossy().as_ref());
    assert_eq!(second["items"][0]["status"], "done");
    assert_eq!(std::fs::read(out.join("bunny/poses/stage.json")).unwrap(), poses_record, "poses were not recomputed");
    let job_report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bunny/report.json")).unwrap()).unwrap();
    let poses = job_report["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "poses").unwrap().clone();
    assert_eq!(poses["status"], "skipped", "{job_report}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// A ZIP written with the given `(name, bytes)` entries, stored uncompressed.
fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let mut writer = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in entries {
        writer.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap();
}

#[test]
fn a_zip_of_folders_is_extracted_and_each_folder_is_an_item() {
    let root = fresh_dir("zip");
    let zip = root.join("shoots.zip");
    write_zip(&zip, &[("shoots/first/notes.txt", b"no photos"), ("shoots/second/a.txt", b"none here either")]);
    let out = root.join("out");
    let output = kiln().arg("batch").arg(&zip).arg("--out").arg(&out).args(["--until", "poses"]).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    let items = report(&out)["items"].as_array().unwrap().clone();
    let inputs: Vec<&str> = items.iter().map(|i| i["input"].as_str().unwrap()).collect();
    assert_eq!(inputs.len(), 2, "{inputs:?}");
    assert!(inputs[0].ends_with("shoots/first") && inputs[1].ends_with("shoots/second"), "{inputs:?}");
    assert!(items.iter().all(|i| i["status"] == "bad_input"), "{items:?}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_zip_slip_archive_is_refused_and_nothing_is_written() {
    let root = fresh_dir("slip");
    let zip = root.join("evil.zip");
    write_zip(&zip, &[("shoots/a/1.jpg", b"x"), ("../evil.jpg", b"evil")]);
    let out = root.join("out");
    let output = kiln().arg("batch").arg(&zip).arg("--out").arg(&out).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("evil.zip") && stderr.contains("../evil.jpg") && stderr.contains("unsafe path"),
        "{stderr}"
    );
    assert!(!root.join("evil.jpg").exists() && !out.join("evil.jpg").exists());
    let leftovers: Vec<_> =
        std::fs::read_dir(out.join("batch-input")).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(leftovers.is_empty(), "no partial extraction remains: {leftovers:?}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_csv_with_a_mistake_names_the_line_and_exits_2() {
    let root = fresh_dir("csv-bad");
    let csv = root.join("list.csv");
    std::fs::write(&csv, "input,preset\nsomewhere,ultra\n").unwrap();
    let output = kiln().arg("batch").arg(&csv).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("preset: unknown variant `ultra`") && stderr.contains("(line 2, column 2)"), "{stderr}");
    assert!(stderr.trim_end().ends_with("list.csv"), "the file last: {stderr}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// Ctrl-C while the first item's poses are estimated: the batch stops there with exit code 130,
/// its report lists the item as cancelled and runs nothing after it, and the same command then
/// finishes both items without redoing the first one's capture check.
#[test]
fn ctrl_c_stops_the_batch_with_exit_130_and_the_same_command_resumes() {
    let Some(source) = synth_images() else { return };
    let root = fresh_dir("interrupt");
    let photos = root.join("photos");
    bunny_folder(&source, &photos.join("a"));
    bunny_folder(&source, &photos.join("b"));
    let out = root.join("out");
    let batch = || {
        let mut command = kiln();
        command.arg("batch").arg(&photos).arg("--out").arg(&out).args(["--preset", "preview", "--until", "poses"]);
        command
    };
    let mut child = batch().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while running_stage(&out.join("a")).as_deref() != Some("poses") {
        assert!(child.try_wait().unwrap().is_none(), "kiln batch ended before item a's poses ran");
        assert!(Instant::now() < deadline, "item a's poses did not start in 10 minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
    send_signal(&child, "INT");
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(stderr.contains("resume"), "says how to go on: {stderr}");
    let interrupted = report(&out);
    let items = interrupted["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "nothing runs after the interrupted item: {interrupted}");
    assert_eq!(items[0]["status"], "cancelled");
    assert!(!out.join("b").exists(), "item b never started");

    let output = batch().output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let resumed = report(&out);
    let statuses: Vec<&str> =
        resumed["items"].as_array().unwrap().iter().map(|i| i["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["done", "done"]);
    let job: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("a/report.json")).unwrap()).unwrap();
    let check = job["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "check").unwrap().clone();
    assert_eq!(check["status"], "skipped", "item a's check is not redone: {job}");
    std::fs::remove_dir_all(&root).unwrap();
}
