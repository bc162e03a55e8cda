//! Downloads: a finished job's outputs into a local job folder, each where a local run writes it
//! (`JobLayout::output_path`), so `kiln view`, `kiln export` and the app open the folder like any
//! other.
//!
//! Each file comes through a presigned URL asked for afresh (`GET /v1/jobs/{id}/outputs/{file}`,
//! again before every retry: an old one may have expired) and is streamed into `<final>.part`. An
//! interrupted `.part` is resumed with `Range: bytes=<its length>-` (a `206` is appended to; a
//! `200`, storage ignoring the range, starts the file over). The whole file is then checked
//! against the size and SHA-256 the job lists: a mismatch deletes the `.part` and is a
//! [`CloudError::Integrity`]; a match is synced to disk and renamed into place, so nothing
//! half-written ever has a final name. A file already in place with the right hash is kept.
//!
//! The rest of the job folder comes as one archive ([`FOLDER_ARCHIVE`]: stage records, the COLMAP
//! model, masks, verdict strips, …), downloaded like any output, then unpacked entry by entry
//! (each to a `.part`, renamed into place; an entry with no place in a job folder is skipped) and
//! removed. Outputs come for a job that failed or was canceled too: what it finished, which a
//! local run of the same photos in the folder resumes from.

use std::path::{Path, PathBuf};

use kiln_api::jobs::{Job, JobOutput};
use kiln_protocol::layout::{FOLDER_ARCHIVE, JobLayout};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::client::{Attempt, Client};
use crate::error::CloudError;
use crate::retry::retryable_status;
use crate::upload::{hash_file, storage_refusal};

/// What a file being downloaded is called until it is verified: `<final name>.part`.
pub const PART_SUFFIX: &str = ".part";

/// Where a download is, as bytes arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownloadProgress {
    /// Bytes on disk: files done, and the part of the current one received so far.
    pub received_bytes: u64,
    pub total_bytes: u64,
    pub files_done: usize,
    pub files: usize,
}

/// Downloads every output of `job` into the job folder `folder`; answers the paths of the files
/// now in place. Outputs whose names have no place in a job folder (a newer server's) are skipped
/// with a warning. `progress` hears as bytes arrive.
pub async fn download_outputs(
    client: &Client,
    job: &Job,
    folder: &Path,
    progress: impl Fn(DownloadProgress) + Send + Sync,
) -> Result<Vec<PathBuf>, CloudError> {
    let layout = JobLayout::new(folder);
    let mut wanted = Vec::new();
    for output in &job.outputs {
        let place = if output.name == FOLDER_ARCHIVE {
            Some(folder.join(FOLDER_ARCHIVE))
        } else {
            layout.output_path(&output.name)
        };
        match place {
            Some(path) => wanted.push((output, path, expected_size(output)?)),
            None => tracing::warn!(file = %output.name, "an output with no place in a job folder: skipped"),
        }
    }
    let total_bytes = wanted.iter().map(|(_, _, size)| size).sum();
    let files = wanted.len();
    let mut done_bytes = 0;
    let mut placed = Vec::with_capacity(files);
    for (files_done, (output, path, size)) in wanted.into_iter().enumerate() {
        let report = |received: u64| {
            progress(DownloadProgress { received_bytes: done_bytes + received, total_bytes, files_done, files });
        };
        download_output(client, job.id, output, size, &path, &report).await?;
        done_bytes += size;
        if output.name == FOLDER_ARCHIVE {
            placed.extend(unpack_archive(&layout, &path).await?);
        } else {
            placed.push(path);
        }
    }
    progress(DownloadProgress { received_bytes: done_bytes, total_bytes, files_done: files, files });
    Ok(placed)
}

/// Unpacks the verified job-folder archive at `archive` into the job folder `layout` (each entry
/// written to a `.part` and renamed into place), then removes it; answers the files placed.
async fn unpack_archive(layout: &JobLayout, archive: &Path) -> Result<Vec<PathBuf>, CloudError> {
    let (layout, owned) = (layout.clone(), archive.to_path_buf());
    let placed = tokio::task::spawn_blocking(move || unpack_entries(&layout, &owned))
        .await
        .map_err(|e| CloudError::Protocol(format!("the unpacking thread failed: {e}")))??;
    tokio::fs::remove_file(archive).await.map_err(|source| CloudError::Io { path: archive.to_path_buf(), source })?;
    Ok(placed)
}

fn unpack_entries(layout: &JobLayout, archive: &Path) -> Result<Vec<PathBuf>, CloudError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CloudError::Io { path, source }
    };
    let corrupt = |e: zip::result::ZipError| CloudError::Protocol(format!("{FOLDER_ARCHIVE} does not unpack: {e}"));
    let file = std::fs::File::open(archive).map_err(io(archive))?;
    let mut zip = zip::ZipArchive::new(file).map_err(corrupt)?;
    let mut placed = Vec::with_capacity(zip.len());
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(corrupt)?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().map_err(corrupt)?.into_owned();
        let Some(path) = layout.archived_path(&name) else {
            tracing::warn!(entry = name, "an archive entry with no place in a job folder: skipped");
            continue;
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let part = part_path(&path);
        let written = std::fs::File::create(&part).and_then(|mut out| {
            // The entry's CRC-32 is checked as it is read to its end.
            std::io::copy(&mut entry, &mut out)?;
            out.sync_all()
        });
        if let Err(source) = written.and_then(|()| std::fs::rename(&part, &path)) {
            let _ = std::fs::remove_file(&part);
            return Err(CloudError::Io { path, source });
        }
        placed.push(path);
    }
    Ok(placed)
}

fn expected_size(output: &JobOutput) -> Result<u64, CloudError> {
    u64::try_from(output.size).map_err(|_| CloudError::Protocol(format!("{} has a negative size", output.name)))
}

/// `<path>.part`.
pub fn part_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(PART_SUFFIX);
    PathBuf::from(name)
}

/// Puts `output` (`size` bytes) at `path`, unless a file with its hash is there already.
async fn download_output(
    client: &Client,
    job_id: Uuid,
    output: &JobOutput,
    size: u64,
    path: &Path,
    report: &(dyn Fn(u64) + Send + Sync),
) -> Result<(), CloudError> {
    let expected = output.sha256.to_ascii_lowercase();
    if file_hash(path).await?.is_some_and(|(len, sha)| len == size && sha == expected) {
        tracing::debug!(file = %output.name, "already downloaded");
        report(size);
        return Ok(());
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CloudError::Io { path, source }
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io(parent))?;
    }
    let part = part_path(path);
    client
        .with_retries(|| async {
            let link = match client.output_link(job_id, &output.name).await {
                Ok(link) => link,
                // The API call has had its own retries.
                Err(error) => return Attempt::Fail(error),
            };
            fetch(client, &link.url, &part, size, report).await
        })
        .await?;
    let actual = file_hash(&part).await?;
    match actual {
        Some((len, sha)) if len == size && sha == expected => {}
        other => {
            let _ = tokio::fs::remove_file(&part).await;
            let actual = other.map(|(_, sha)| sha).unwrap_or_default();
            return Err(CloudError::Integrity { file: output.name.clone(), expected, actual });
        }
    }
    tokio::fs::rename(&part, path).await.map_err(io(path))?;
    sync_dir(path.parent());
    tracing::debug!(file = %output.name, bytes = size, "downloaded");
    Ok(())
}

/// The size and SHA-256 of the file at `path`, or `None` when there is none.
async fn file_hash(path: &Path) -> Result<Option<(u64, String)>, CloudError> {
    let owned = path.to_path_buf();
    let hashed = tokio::task::spawn_blocking(move || hash_file(&owned))
        .await
        .map_err(|e| CloudError::Protocol(format!("the hashing thread failed: {e}")))?;
    match hashed {
        Ok(found) => Ok(Some(found)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CloudError::Io { path: path.to_path_buf(), source }),
    }
}

/// Makes a rename in `dir` durable (best effort: not every platform can sync a folder).
fn sync_dir(dir: Option<&Path>) {
    if let Some(dir) = dir
        && let Ok(handle) = std::fs::File::open(dir)
    {
        let _ = handle.sync_all();
    }
}

/// How storage answered a download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resume {
    /// 206 from the byte asked for: append to the `.part`.
    Append,
    /// 200, the whole file: start the `.part` over.
    Restart,
}

/// Reads storage's answer to a request from byte `from` of a `size`-byte file (a `Range` was sent
/// when `from > 0`).
fn range_answer(status: u16, content_range: Option<&str>, from: u64, size: u64) -> Result<Resume, String> {
    match status {
        200 => Ok(Resume::Restart),
        206 => match content_range.and_then(parse_content_range) {
            Some((start, end, total)) if start == from && end + 1 == size && total.is_none_or(|t| t == size) => {
                Ok(Resume::Append)
            }
            _ => Err(format!("storage answered a range other than bytes {from}-{}", size.saturating_sub(1))),
        },
        other => Err(format!("unexpected HTTP {other}")),
    }
}

/// `bytes <start>-<end>/<total or *>` as (start, end, total).
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        text => Some(text.parse().ok()?),
    };
    (start <= end).then_some((start, end, total))
}

/// One try at filling `part` from `url` up to `size` bytes, resuming what it holds; `report`
/// hears the bytes on disk as they grow. Done when the `.part` has `size` bytes (the caller
/// checks them).
async fn fetch(client: &Client, url: &str, part: &Path, size: u64, report: &dyn Fn(u64)) -> Attempt<()> {
    let io = |source| CloudError::Io { path: part.to_path_buf(), source };
    let have = match tokio::fs::metadata(part).await {
        Ok(metadata) if metadata.len() <= size => metadata.len(),
        Ok(_) => match tokio::fs::remove_file(part).await {
            Ok(()) => 0,
            Err(source) => return Attempt::Fail(io(source)),
        },
        Err(_) => 0,
    };
    if have == size {
        return Attempt::Done(());
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return Attempt::Fail(CloudError::Protocol("the download link is not a URL".into()));
    };
    let mut request = client.storage().get(parsed.clone());
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Attempt::Retry(CloudError::network(&parsed, error), None),
    };
    let status = response.status();
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        // The `.part` does not fit the object: start over.
        let _ = tokio::fs::remove_file(part).await;
        return Attempt::Retry(CloudError::Protocol("storage refused the resumed range".into()), None);
    }
    if !status.is_success() {
        let error = storage_refusal(status.as_u16(), response).await;
        return if status == StatusCode::FORBIDDEN || retryable_status(status.as_u16()) {
            Attempt::Retry(error, None)
        } else {
            Attempt::Fail(error)
        };
    }
    let content_range = response.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let resume = match range_answer(status.as_u16(), content_range.as_deref(), have, size) {
        Ok(resume) => resume,
        Err(problem) => {
            let _ = tokio::fs::remove_file(part).await;
            return Attempt::Retry(CloudError::Protocol(problem), None);
        }
    };
    let mut options = tokio::fs::OpenOptions::new();
    match resume {
        Resume::Append => options.append(true).create(true),
        Resume::Restart => options.write(true).create(true).truncate(true),
    };
    let mut file = match options.open(part).await {
        Ok(file) => file,
        Err(source) => return Attempt::Fail(io(source)),
    };
    let mut on_disk = if resume == Resume::Append { have } else { 0 };
    let streamed = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if let Err(source) = file.write_all(&chunk).await {
                    return Attempt::Fail(io(source));
                }
                on_disk += chunk.len() as u64;
                report(on_disk);
            }
            Ok(None) => break Ok(()),
            Err(error) => break Err(CloudError::network(&parsed, error)),
        }
    };
    // What arrived stays in the `.part` for the next try to resume from.
    if let Err(source) = file.flush().await.and(file.sync_all().await) {
        return Attempt::Fail(io(source));
    }
    match streamed {
        Err(error) => Attempt::Retry(error, None),
        Ok(()) if on_disk == size => Attempt::Done(()),
        Ok(()) => {
            if on_disk > size {
                let _ = tokio::fs::remove_file(part).await;
            }
            let problem = format!("the download ended at {on_disk} of {size} bytes");
            Attempt::Retry(CloudError::Protocol(problem), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_answer_is_appended_only_from_the_byte_asked_for() {
        assert_eq!(range_answer(206, Some("bytes 100-999/1000"), 100, 1000), Ok(Resume::Append));
        assert_eq!(range_answer(206, Some("bytes 100-999/*"), 100, 1000), Ok(Resume::Append));
        assert!(range_answer(206, Some("bytes 0-999/1000"), 100, 1000).is_err(), "from the wrong byte");
        assert!(range_answer(206, Some("bytes 100-499/1000"), 100, 1000).is_err(), "not to the end");
        assert!(range_answer(206, Some("bytes 100-999/2000"), 100, 1000).is_err(), "another object");
        assert!(range_answer(206, None, 100, 1000).is_err(), "no Content-Range");
    }

    #[test]
    fn a_whole_answer_restarts_the_file() {
        assert_eq!(range_answer(200, None, 100, 1000), Ok(Resume::Restart));
        assert_eq!(range_answer(200, None, 0, 1000), Ok(Resume::Restart));
        assert!(range_answer(204, None, 0, 1000).is_err());
    }

    #[test]
    fn content_ranges_parse() {
        assert_eq!(parse_content_range("bytes 0-0/1"), Some((0, 0, Some(1))));
        assert_eq!(parse_content_range(" bytes 5-9/* "), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes */10"), None);
    }

    #[test]
    fn an_archive_unpacks_into_the_job_folder_and_nowhere_else() {
        let root = std::env::temp_dir().join(format!("kiln-cloud-unpack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let layout = JobLayout::new(root.join("job"));
        std::fs::create_dir_all(layout.root()).unwrap();
        let archive = layout.root().join(FOLDER_ARCHIVE);
        let mut writer = zip::ZipWriter::new(std::fs::File::create(&archive).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        for (name, bytes) in [
            ("poses/sparse/0/cameras.bin", &b"cameras"[..]),
            ("mesh/stage.json", b"{}"),
            ("../escape.txt", b"x"),
            ("manifest.json", b"{}"),
        ] {
            writer.start_file(name, options).unwrap();
            std::io::Write::write_all(&mut writer, bytes).unwrap();
        }
        writer.finish().unwrap();
        let placed = unpack_entries(&layout, &archive).unwrap();
        assert_eq!(
            placed,
            [
                layout.stage(kiln_protocol::Stage::Poses).join("sparse/0/cameras.bin"),
                layout.stage_record(kiln_protocol::Stage::Mesh)
            ]
        );
        assert_eq!(std::fs::read(&placed[0]).unwrap(), b"cameras");
        assert!(!root.join("escape.txt").exists() && !layout.manifest().exists());
        assert!(!placed[0].with_extension("bin.part").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_part_file_sits_beside_its_final_name() {
        assert_eq!(part_path(Path::new("/j/export/model.glb")), Path::new("/j/export/model.glb.part"));
    }
}
