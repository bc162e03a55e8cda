//! Every path in a job folder, in one place: the CLI, the app, the server's workers and the
//! viewer find a job's files through [`JobLayout`], and each file's name is spelled once, here.
//!
//! ```text
//! <job>/manifest.json     settings, engine version, input photos with hashes
//! <job>/report.json       per-stage status, timings, metrics, verdict
//! <job>/job.lock          held while a process runs the job
//! <job>/input/            photos extracted from a ZIP input
//! <job>/input.zip         an archive the job fetched itself (object storage)
//! <job>/cloud-job.json    the cloud job the folder belongs to (a job run in the cloud)
//! <job>/cloud-upload.json the photos' upload to the cloud, for resuming it
//! <job>/check/            check-report.json
//! <job>/poses/            transforms.json, sparse/0 (COLMAP), sparse_pc.ply, poses-report.json
//! <job>/train/            splats.ply (3DGS), metrics.json, checkpoint.bin while training
//! <job>/mesh/             mesh.ply, basecolor.png, normal.png, mesh.json, masks/, verdict.json, verdict/
//! <job>/export/           model.glb, model.usdz, … (model.failed.* when the verdict failed)
//! <job>/<stage>/stage.json  the stage's completion record
//! ```
//!
//! A job run elsewhere (a cloud worker) ships its files under their plain names ("output
//! names": [`SHIPPED_FILES`] and the exported models); [`JobLayout::output_path`] puts each back
//! where a local run would have written it. Everything else a local run leaves in its stage
//! folders (stage records, the COLMAP model, masks, verdict strips, a training checkpoint, …)
//! travels in one archive, [`FOLDER_ARCHIVE`], whose entries are the files' paths in the job folder
//! ([`JobLayout::archived_path`] places them). So a downloaded job folder is a job folder: a local
//! run on it skips every stage the cloud finished.

use std::path::{Path, PathBuf};

use crate::{Format, Stage};

/// The poses stage's camera file (NeRF / instant-ngp `transforms.json`, OpenGL camera axes).
pub const TRANSFORMS_FILE: &str = "transforms.json";
/// The poses stage's sparse points (PLY), which 3DGS-style trainers start from.
pub const POINT_CLOUD_FILE: &str = "sparse_pc.ply";
/// The poses stage's own report.
pub const POSES_REPORT_FILE: &str = "poses-report.json";

/// The job's settings and inputs.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The job's report.
pub const REPORT_FILE: &str = "report.json";
/// The lock a running process holds.
pub const LOCK_FILE: &str = "job.lock";
/// Where a ZIP input's photos are extracted.
pub const ZIP_INPUT_DIR: &str = "input";
/// An archive the job fetched itself (from object storage), kept so a resumed job fetches nothing.
pub const FETCHED_ARCHIVE_FILE: &str = "input.zip";
/// The record of the cloud job a job folder belongs to: server, job id, upload id.
pub const CLOUD_JOB_FILE: &str = "cloud-job.json";
/// The state of the photos' upload to the cloud, so an interrupted upload resumes.
pub const CLOUD_UPLOAD_FILE: &str = "cloud-upload.json";
/// A finished stage's record, in the stage's folder.
pub const STAGE_RECORD_FILE: &str = "stage.json";
/// The capture check's report, in `check/`.
pub const CHECK_REPORT_FILE: &str = "check-report.json";
/// The trained splats (3DGS PLY), in `train/`; also a `kiln train` output folder's.
pub const SPLATS_FILE: &str = "splats.ply";
/// Training's figures, in `train/`.
pub const TRAIN_METRICS_FILE: &str = "metrics.json";
/// Training's resumable state, in `train/`, while training runs.
pub const CHECKPOINT_FILE: &str = "checkpoint.bin";
/// The textured mesh in a mesh folder: geometry, base colour, normal map, and its summary.
pub const MESH_FILE: &str = "mesh.ply";
pub const BASE_COLOR_FILE: &str = "basecolor.png";
pub const NORMAL_MAP_FILE: &str = "normal.png";
pub const MESH_JSON_FILE: &str = "mesh.json";
/// The object masks the mesh stage found, one PNG per photo stem (the layout `--masks` takes).
pub const MASKS_DIR: &str = "masks";
/// The verdict on the model, and its comparison strips, in `mesh/`.
pub const VERDICT_FILE: &str = "verdict.json";
pub const VERDICT_VIEWS_DIR: &str = "verdict";
/// The exported model's file stem.
pub const MODEL_STEM: &str = "model";
/// The exported model's file stem when the verdict failed it.
pub const FAILED_MODEL_STEM: &str = "model.failed";

/// The files a finished job ships besides its exported models, by output name, in pipeline
/// order: what the viewer loads (splats, cameras, points, the mesh folder), what `kiln export`
/// re-exports from (the mesh folder's files) and the reports. An output name is one file name:
/// folders (`poses/sparse`, `mesh/masks`, `mesh/verdict`) and stage records travel in
/// [`FOLDER_ARCHIVE`] instead.
pub const SHIPPED_FILES: [&str; 13] = [
    MANIFEST_FILE,
    REPORT_FILE,
    CHECK_REPORT_FILE,
    TRANSFORMS_FILE,
    POINT_CLOUD_FILE,
    POSES_REPORT_FILE,
    SPLATS_FILE,
    TRAIN_METRICS_FILE,
    MESH_FILE,
    BASE_COLOR_FILE,
    NORMAL_MAP_FILE,
    MESH_JSON_FILE,
    VERDICT_FILE,
];

/// The output that carries the rest of the job folder (see the module docs): a ZIP whose entries
/// are `/`-separated paths inside the stage folders. One archive, not one output per file: a
/// job's masks and verdict strips alone are one file per photo, and an output is one file name.
pub const FOLDER_ARCHIVE: &str = "job-folder.zip";

/// The stage folder a shipped file sits in (`None`: the job folder itself), or `None` for a name
/// that is not one of [`SHIPPED_FILES`].
fn shipped_stage(name: &str) -> Option<Option<Stage>> {
    let stage = match name {
        MANIFEST_FILE | REPORT_FILE => None,
        CHECK_REPORT_FILE => Some(Stage::Check),
        TRANSFORMS_FILE | POINT_CLOUD_FILE | POSES_REPORT_FILE => Some(Stage::Poses),
        SPLATS_FILE | TRAIN_METRICS_FILE => Some(Stage::Train),
        MESH_FILE | BASE_COLOR_FILE | NORMAL_MAP_FILE | MESH_JSON_FILE | VERDICT_FILE => Some(Stage::Mesh),
        _ => return None,
    };
    Some(stage)
}

/// Whether `name` is an exported model's file: `model.<ext>` or `model.failed.<ext>` with a
/// plain extension (`glb`, `usdz`, and an OBJ's `obj`, `mtl` and `png`).
fn is_model_file(name: &str) -> bool {
    let extension = name.strip_prefix(FAILED_MODEL_STEM).or_else(|| name.strip_prefix(MODEL_STEM));
    extension
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|ext| !ext.is_empty() && ext.len() <= 8 && ext.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The paths of one job folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobLayout {
    root: PathBuf,
}

impl JobLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn manifest(&self) -> PathBuf {
        self.root.join(MANIFEST_FILE)
    }

    pub fn report(&self) -> PathBuf {
        self.root.join(REPORT_FILE)
    }

    pub fn lock(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    pub fn zip_input(&self) -> PathBuf {
        self.root.join(ZIP_INPUT_DIR)
    }

    pub fn fetched_archive(&self) -> PathBuf {
        self.root.join(FETCHED_ARCHIVE_FILE)
    }

    pub fn cloud_job(&self) -> PathBuf {
        self.root.join(CLOUD_JOB_FILE)
    }

    pub fn cloud_upload(&self) -> PathBuf {
        self.root.join(CLOUD_UPLOAD_FILE)
    }

    /// The stage's folder.
    pub fn stage(&self, stage: Stage) -> PathBuf {
        self.root.join(stage.name())
    }

    pub fn stage_record(&self, stage: Stage) -> PathBuf {
        self.stage(stage).join(STAGE_RECORD_FILE)
    }

    pub fn check_report(&self) -> PathBuf {
        self.stage(Stage::Check).join(CHECK_REPORT_FILE)
    }

    /// The cameras as nerfstudio's `transforms.json` (the COLMAP model is beside it).
    pub fn transforms(&self) -> PathBuf {
        self.stage(Stage::Poses).join(TRANSFORMS_FILE)
    }

    pub fn poses_report(&self) -> PathBuf {
        self.stage(Stage::Poses).join(POSES_REPORT_FILE)
    }

    pub fn splats(&self) -> PathBuf {
        self.stage(Stage::Train).join(SPLATS_FILE)
    }

    pub fn train_metrics(&self) -> PathBuf {
        self.stage(Stage::Train).join(TRAIN_METRICS_FILE)
    }

    pub fn checkpoint(&self) -> PathBuf {
        self.stage(Stage::Train).join(CHECKPOINT_FILE)
    }

    pub fn mesh_json(&self) -> PathBuf {
        self.stage(Stage::Mesh).join(MESH_JSON_FILE)
    }

    pub fn masks(&self) -> PathBuf {
        self.stage(Stage::Mesh).join(MASKS_DIR)
    }

    pub fn verdict(&self) -> PathBuf {
        self.stage(Stage::Mesh).join(VERDICT_FILE)
    }

    pub fn verdict_views(&self) -> PathBuf {
        self.stage(Stage::Mesh).join(VERDICT_VIEWS_DIR)
    }

    /// The exported model in `format`; `failed` when the verdict failed it.
    pub fn model(&self, format: Format, failed: bool) -> PathBuf {
        let stem = if failed { FAILED_MODEL_STEM } else { MODEL_STEM };
        self.stage(Stage::Export).join(format!("{stem}.{}", format.name()))
    }

    /// Where the output file `name` sits in this job folder: one of [`SHIPPED_FILES`] in its
    /// stage's folder (or the job folder), an exported model's file in `export/`; `None` for any
    /// other name (so a name never reaches outside the folder).
    pub fn output_path(&self, name: &str) -> Option<PathBuf> {
        match shipped_stage(name) {
            Some(None) => Some(self.root.join(name)),
            Some(Some(stage)) => Some(self.stage(stage).join(name)),
            None if is_model_file(name) => Some(self.stage(Stage::Export).join(name)),
            None => None,
        }
    }

    /// Where the entry `relative` of a [`FOLDER_ARCHIVE`] goes in this job folder: a
    /// `/`-separated path of plain names (none hidden: no temporaries, no `..`) inside a stage
    /// folder; `None` for anything else (the job's root files ship under their own names, its
    /// lock and extracted photos never ship), so an entry never reaches outside the folder.
    pub fn archived_path(&self, relative: &str) -> Option<PathBuf> {
        let parts: Vec<&str> = relative.split('/').collect();
        let plain = parts.iter().all(|part| !part.is_empty() && !part.starts_with('.') && !part.contains('\\'));
        let in_stage = Stage::ALL.iter().any(|stage| parts.first() == Some(&stage.name()));
        (plain && in_stage && parts.len() >= 2)
            .then(|| parts.iter().fold(self.root.clone(), |path, part| path.join(part)))
    }

    /// The [`FOLDER_ARCHIVE`] entry name of `path`, a file of this job folder, when it belongs in
    /// the archive (see [`JobLayout::archived_path`]).
    pub fn archive_name(&self, path: &Path) -> Option<String> {
        let relative = path.strip_prefix(&self.root).ok()?;
        let parts: Option<Vec<&str>> = relative.components().map(|c| c.as_os_str().to_str()).collect();
        let name = parts?.join("/");
        self.archived_path(&name).map(|_| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_sit_in_their_stage_folders() {
        let layout = JobLayout::new("/jobs/a");
        assert_eq!(layout.transforms(), Path::new("/jobs/a/poses/transforms.json"));
        assert_eq!(layout.splats(), Path::new("/jobs/a/train/splats.ply"));
        assert_eq!(layout.stage_record(Stage::Mesh), Path::new("/jobs/a/mesh/stage.json"));
        assert_eq!(layout.model(Format::Usdz, true), Path::new("/jobs/a/export/model.failed.usdz"));
        assert_eq!(layout.model(Format::Glb, false), Path::new("/jobs/a/export/model.glb"));
    }

    #[test]
    fn output_names_map_to_the_paths_a_local_run_writes() {
        let layout = JobLayout::new("/jobs/a");
        let at = |name: &str| layout.output_path(name);
        assert_eq!(at("report.json"), Some(layout.report()));
        assert_eq!(at("manifest.json"), Some(layout.manifest()));
        assert_eq!(at("check-report.json"), Some(layout.check_report()));
        assert_eq!(at("transforms.json"), Some(layout.transforms()));
        assert_eq!(at("sparse_pc.ply"), Some(PathBuf::from("/jobs/a/poses/sparse_pc.ply")));
        assert_eq!(at("poses-report.json"), Some(layout.poses_report()));
        assert_eq!(at("splats.ply"), Some(layout.splats()));
        assert_eq!(at("metrics.json"), Some(layout.train_metrics()));
        assert_eq!(at("mesh.json"), Some(layout.mesh_json()));
        assert_eq!(at("verdict.json"), Some(layout.verdict()));
        for name in ["mesh.ply", "basecolor.png", "normal.png"] {
            assert_eq!(at(name), Some(PathBuf::from("/jobs/a/mesh").join(name)));
        }
        for format in Format::ALL.into_iter().filter(|f| *f != Format::Ply) {
            for failed in [false, true] {
                let model = layout.model(format, failed);
                let name = model.file_name().unwrap().to_str().unwrap();
                assert_eq!(at(name), Some(model.clone()), "{name}");
            }
        }
        assert_eq!(at("model.mtl"), Some(PathBuf::from("/jobs/a/export/model.mtl")));
        assert_eq!(at("model.failed.png"), Some(PathBuf::from("/jobs/a/export/model.failed.png")));
    }

    #[test]
    fn archive_entries_stay_in_the_stage_folders() {
        let layout = JobLayout::new("/jobs/a");
        assert_eq!(
            layout.archived_path("poses/sparse/0/cameras.bin"),
            Some(PathBuf::from("/jobs/a/poses/sparse/0/cameras.bin"))
        );
        assert_eq!(layout.archived_path("mesh/stage.json"), Some(layout.stage_record(Stage::Mesh)));
        assert_eq!(layout.archived_path("mesh/masks/0001.png"), Some(layout.masks().join("0001.png")));
        for refused in [
            "manifest.json",
            "job.lock",
            "input/a.jpg",
            "poses",
            "poses/../../etc/passwd",
            "poses/./x",
            "/poses/x",
            "poses//x",
            "train/.checkpoint.bin.tmp-12",
            "other/x",
            "poses\\..\\x",
        ] {
            assert_eq!(layout.archived_path(refused), None, "{refused:?}");
        }
        assert_eq!(layout.archive_name(&layout.checkpoint()).as_deref(), Some("train/checkpoint.bin"));
        assert_eq!(layout.archive_name(&layout.manifest()), None);
        assert_eq!(layout.archive_name(Path::new("/elsewhere/poses/x")), None);
    }

    #[test]
    fn every_shipped_file_has_a_place_and_other_names_have_none() {
        let layout = JobLayout::new("/jobs/a");
        for name in SHIPPED_FILES {
            let path = layout.output_path(name).unwrap();
            assert!(path.starts_with("/jobs/a") && path.ends_with(name), "{name}: {}", path.display());
        }
        for name in
            ["", "model", "model.", "modelx.glb", "model.a/b", "../report.json", "stage.json", "job.lock", "x.glb"]
        {
            assert_eq!(layout.output_path(name), None, "{name:?}");
        }
    }
}
