//! A job folder whose photos sit elsewhere now: a cloud job's folder downloaded to this machine
//! (its worker read the photos from its own disk), or a local job whose photo folder moved.
//!
//! The stage keys hash the photos' names and contents, not where they sit, so a job given the
//! same photos keeps every finished stage. Two files name the photos by path, and are pointed at
//! the photos where they are now before any stage runs: the capture check's report (each photo's
//! `path`, which the poses stage takes its photos from) and the poses stage's `transforms.json`
//! (each frame's `file_path`, relative to the poses folder, through which training, the mesh
//! stage and the verdict load the photos). A recorded path is matched to a photo by its name (the
//! photo's path relative to the photo folder, `/`-separated): the longest name the recorded path
//! ends with, component by component. A path that matches no photo is left as it is (the photos
//! changed, and the stages that read them run again anyway).

use std::path::{Component, Path};

use serde_json::Value;

use crate::JobError;
use crate::layout::JobLayout;
use crate::manifest::InputFile;
use crate::report::read_json;
use kiln_core::atomic_file::write_atomically;

/// Points the check report and `transforms.json` of the job folder `layout` (where they exist) at
/// the photos `names` in `photos_dir` (absolute).
pub(crate) fn point_at_photos(layout: &JobLayout, photos_dir: &Path, photos: &[InputFile]) -> Result<(), JobError> {
    let names: Vec<String> = photos.iter().map(|photo| photo.name.clone()).collect();
    let names = names.as_slice();
    let check = layout.check_report();
    rewrite(&check, |report| {
        let photos = report.get_mut("photos").and_then(Value::as_array_mut).into_iter().flatten();
        photos.filter_map(|photo| photo.get_mut("path")).fold(false, |changed, path| {
            let recorded = path.as_str().unwrap_or_default();
            let now = rebased(recorded, names)
                .map(|name| photos_dir.join(name))
                .filter(|photo| !same_file(Path::new(recorded), photo))
                .map(|photo| photo.to_string_lossy().into_owned());
            replace(path, now) || changed
        })
    })?;
    let transforms = layout.transforms();
    let Some(poses_dir) = transforms.parent() else { return Ok(()) };
    rewrite(&transforms, |dataset| {
        let frames = dataset.get_mut("frames").and_then(Value::as_array_mut).into_iter().flatten();
        frames.filter_map(|frame| frame.get_mut("file_path")).fold(false, |changed, path| {
            let recorded = path.as_str().unwrap_or_default();
            let now = rebased(recorded, names)
                .map(|name| photos_dir.join(name))
                .filter(|photo| !same_file(&poses_dir.join(recorded), photo))
                .map(|photo| relative_from(poses_dir, &photo));
            replace(path, now) || changed
        })
    })
}

/// Whether the recorded path already leads to `photo` (spelled another way: through a link, with
/// `..`, relative to another folder): then the file is left as it is.
fn same_file(recorded: &Path, photo: &Path) -> bool {
    match (std::fs::canonicalize(recorded), std::fs::canonicalize(photo)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Sets `value` to `now` when that is another path; whether it changed.
fn replace(value: &mut Value, now: Option<String>) -> bool {
    match now {
        Some(now) if value.as_str() != Some(now.as_str()) => {
            *value = Value::String(now);
            true
        }
        _ => false,
    }
}

/// Applies `edit` to the JSON file `path` and writes it back (atomically) when it changed
/// anything; a missing or unreadable file is left alone (its stage runs again).
fn rewrite(path: &Path, edit: impl FnOnce(&mut Value) -> bool) -> Result<(), JobError> {
    let Ok(mut value) = read_json::<Value>(path) else { return Ok(()) };
    if !edit(&mut value) {
        return Ok(());
    }
    tracing::info!("{}: pointed at the photos where they are now", path.display());
    let io_error = |source| JobError::Io { path: path.to_path_buf(), source };
    let text = serde_json::to_string_pretty(&value).map_err(|e| io_error(std::io::Error::other(e)))?;
    write_atomically(path, |w| std::io::Write::write_all(w, text.as_bytes())).map_err(io_error)
}

/// The photo of `names` that the recorded path `recorded` is (see the module docs).
fn rebased<'a>(recorded: &str, names: &'a [String]) -> Option<&'a str> {
    let parts: Vec<&str> = recorded.split(['/', '\\']).filter(|p| !p.is_empty()).collect();
    names
        .iter()
        .filter(|name| {
            let wanted: Vec<&str> = name.split('/').collect();
            parts.ends_with(&wanted)
        })
        .max_by_key(|name| name.split('/').count())
        .map(String::as_str)
}

/// `target` relative to the folder `base` (`../../photos/a.jpg`), `/`-separated; both absolute.
/// The absolute `target` when they share no root (another drive).
fn relative_from(base: &Path, target: &Path) -> String {
    let base: Vec<Component> = base.components().collect();
    let target_parts: Vec<Component> = target.components().collect();
    if base.first() != target_parts.first() {
        return target.to_string_lossy().into_owned();
    }
    let common = base.iter().zip(&target_parts).take_while(|(a, b)| a == b).count();
    let up = std::iter::repeat_n("..".to_string(), base.len() - common);
    let down = target_parts[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned());
    up.chain(down).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn files(list: &[&str]) -> Vec<InputFile> {
        list.iter().map(|name| InputFile { name: name.to_string(), bytes: 1, sha256: String::new() }).collect()
    }

    #[test]
    fn a_recorded_path_is_matched_by_the_longest_name_it_ends_with() {
        let photos = names(&["a.jpg", "sub/a.jpg", "b.jpg"]);
        assert_eq!(rebased("../../photos/sub/a.jpg", &photos), Some("sub/a.jpg"));
        assert_eq!(rebased("../../photos/a.jpg", &photos), Some("a.jpg"));
        assert_eq!(rebased("photos/b.jpg", &photos), Some("b.jpg"));
        assert_eq!(rebased("C:\\shots\\b.jpg", &photos), Some("b.jpg"));
        assert_eq!(rebased("../../photos/xb.jpg", &photos), None, "whole names only");
        assert_eq!(rebased("../../photos/c.jpg", &photos), None);
    }

    #[test]
    fn relative_paths_climb_to_the_common_folder() {
        assert_eq!(
            relative_from(Path::new("/home/me/job/poses"), Path::new("/home/me/shots/a.jpg")),
            "../../shots/a.jpg"
        );
        assert_eq!(relative_from(Path::new("/j/poses"), Path::new("/j/input/a.jpg")), "../input/a.jpg");
    }

    #[test]
    fn a_downloaded_job_folder_is_pointed_at_the_local_photos() {
        let root = std::env::temp_dir().join(format!("kiln-relocate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let layout = JobLayout::new(root.join("job"));
        let photos = root.join("shots");
        std::fs::create_dir_all(layout.stage(crate::Stage::Poses)).unwrap();
        std::fs::create_dir_all(layout.stage(crate::Stage::Check)).unwrap();
        // As a worker ships them: paths of its own folders, made relative to them.
        let check = serde_json::json!({"outcome": "ok", "photos": [{"path": "photos/a.jpg", "verdict": "keep"},
            {"path": "photos/b.jpg"}]});
        std::fs::write(layout.check_report(), check.to_string()).unwrap();
        let transforms = serde_json::json!({"camera_model": "OPENCV", "frames": [{"file_path": "../../photos/b.jpg",
            "transform_matrix": [[1.0]]}], "ply_file_path": "sparse_pc.ply"});
        std::fs::write(layout.transforms(), transforms.to_string()).unwrap();
        point_at_photos(&layout, &photos, &files(&["a.jpg", "b.jpg"])).unwrap();
        let check: Value = read_json(&layout.check_report()).unwrap();
        assert_eq!(check["photos"][0]["path"], photos.join("a.jpg").to_string_lossy().as_ref());
        assert_eq!(check["photos"][0]["verdict"], "keep", "the rest is kept");
        assert_eq!(check["photos"][1]["path"], photos.join("b.jpg").to_string_lossy().as_ref());
        let transforms: Value = read_json(&layout.transforms()).unwrap();
        assert_eq!(transforms["frames"][0]["file_path"], "../../shots/b.jpg");
        assert_eq!(transforms["ply_file_path"], "sparse_pc.ply");
        // Pointed already: nothing is written.
        let before = std::fs::metadata(layout.transforms()).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        point_at_photos(&layout, &photos, &files(&["a.jpg", "b.jpg"])).unwrap();
        assert_eq!(std::fs::metadata(layout.transforms()).unwrap().modified().unwrap(), before);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
