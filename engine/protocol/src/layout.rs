//! Every path in a job folder, in one place: the CLI, the app, the server's workers and the
//! viewer find a job's files through [`JobLayout`], and each file's name is spelled once, here.
//!
//! ```text
//! <job>/manifest.json     settings, engine version, input photos with hashes
//! <job>/report.json       per-stage status, timings, metrics, verdict
//! <job>/job.lock          held while a process runs the job
//! <job>/input/            photos extracted from a ZIP input
//! <job>/input.zip         an archive the job fetched itself (object storage)
//! <job>/check/            check-report.json
//! <job>/poses/            transforms.json, sparse/0 (COLMAP), sparse_pc.ply, poses-report.json
//! <job>/train/            splats.ply (3DGS), metrics.json, checkpoint.bin while training
//! <job>/mesh/             mesh.ply, basecolor.png, normal.png, mesh.json, masks/, verdict.json, verdict/
//! <job>/export/           model.glb, model.usdz, … (model.failed.* when the verdict failed)
//! <job>/<stage>/stage.json  the stage's completion record
//! ```

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
}
