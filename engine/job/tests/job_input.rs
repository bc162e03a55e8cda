//! The job's input seam: an archive fetched by the job itself (as the server's workers fetch from
//! object storage) lands in the job folder whole or not at all, is fetched once across resumed
//! calls, and a failed fetch is the user's bad input, naming the source, with nothing left behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};

use kiln_job::layout::FETCHED_ARCHIVE_FILE;
use kiln_job::manifest::{InputKind, Manifest};
use kiln_job::report::StageStatus;
use kiln_job::{ArchiveSource, CancelFlag, ErrorClass, JobError, JobInput, JobLayout, JobSettings, Preset, Stage};
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

/// A ZIP of bunny-mini's photos, in memory.
fn bunny_mini_zip() -> Vec<u8> {
    let images = kiln_testkit::bunny_mini().join("images");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&images).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let mut writer = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for path in names {
        let name = format!("photos/{}", path.file_name().unwrap().to_string_lossy());
        writer.start_file(name, SimpleFileOptions::default()).unwrap();
        writer.write_all(&std::fs::read(&path).unwrap()).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// An archive in "object storage": counts its fetches, and fails half-way when told to.
struct Stored {
    bytes: Vec<u8>,
    fetches: Cell<usize>,
    fail: bool,
}

impl ArchiveSource for Stored {
    fn describe(&self) -> String {
        "s3://uploads/org-1/job-7.zip".into()
    }

    fn fetch(&self, dest: &Path) -> std::io::Result<()> {
        self.fetches.set(self.fetches.get() + 1);
        let mut file = std::fs::File::create(dest)?;
        if self.fail {
            file.write_all(&self.bytes[..self.bytes.len() / 2])?;
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by peer"));
        }
        file.write_all(&self.bytes)
    }
}

fn sandbox(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-job-input-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn check_only() -> JobSettings {
    JobSettings { until: Stage::Check, ..JobSettings::for_preset(Preset::Preview) }
}

#[test]
fn a_fetched_archive_is_fetched_once_and_read_as_a_zip() {
    let root = sandbox("fetch");
    let job = root.join("job");
    let stored = Stored { bytes: bunny_mini_zip(), fetches: Cell::new(0), fail: false };
    for expected in [StageStatus::Finished, StageStatus::Skipped] {
        let report = kiln_job::run_job_from(
            JobInput::Archive(&stored),
            &job,
            &check_only(),
            &CancelFlag::default(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(report.stage(Stage::Check).map(|s| s.status), Some(expected));
    }
    assert_eq!(stored.fetches.get(), 1, "a resumed job does not fetch again");
    let layout = JobLayout::new(&job);
    assert_eq!(std::fs::read(layout.fetched_archive()).unwrap(), stored.bytes);
    let manifest = Manifest::read(&job).unwrap();
    assert_eq!(manifest.input_kind, InputKind::Zip);
    assert_eq!(manifest.photos.len(), 12, "{:?}", manifest.photos);
    assert!(layout.check_report().is_file());
}

#[test]
fn a_failed_fetch_is_bad_input_naming_the_source_and_leaves_nothing() {
    let root = sandbox("fail");
    let job = root.join("job");
    let stored = Stored { bytes: bunny_mini_zip(), fetches: Cell::new(0), fail: true };
    let error =
        kiln_job::run_job_from(JobInput::Archive(&stored), &job, &check_only(), &CancelFlag::default(), &mut |_| {})
            .unwrap_err();
    assert!(matches!(error, JobError::BadInput { .. }), "{error:?}");
    assert_eq!(error.class(), ErrorClass::BadInput);
    let text = error.to_string();
    assert!(text.starts_with("cannot fetch the photo archive: connection reset by peer"), "{text}");
    assert!(text.ends_with("s3://uploads/org-1/job-7.zip"), "{text}");
    let left: Vec<String> =
        std::fs::read_dir(&job).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!left.iter().any(|name| name.contains(FETCHED_ARCHIVE_FILE)), "left behind: {left:?}");
}
