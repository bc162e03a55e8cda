//! Folders: a Kiln job folder (`poses/`, `train/`, `mesh/`, `export/`), a stage folder on its
//! own (a mesh folder with `mesh.json`, a train folder with `splats.ply`), or a dataset
//! (`transforms.json`, COLMAP model). Whatever the folder holds is loaded, in the export frame
//! when a `mesh.json` gives one (see the parent module's docs).

use std::path::{Path, PathBuf};

use glam::{DMat4, Mat3};
use kiln_dataset::Dataset;
use kiln_job::JobLayout;
use kiln_job::layout::{MESH_JSON_FILE, MODEL_STEM, SPLATS_FILE, TRANSFORMS_FILE};
use kiln_job::mesh_stage::MeshSummary;
use kiln_protocol::{Format, Stage};

use super::{Scene, SplatLayer, dataset_scene, glb, load_gltf};
use crate::ViewerError;

/// The first of `candidates` that exists.
fn first_existing(candidates: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    candidates.into_iter().find(|p| p.exists())
}

/// Loads whatever `dir` holds; fails when it holds nothing the viewer can show.
pub(super) fn load_dir(dir: &Path) -> Result<Scene, ViewerError> {
    let mut scene = Scene::default();
    let job = JobLayout::new(dir);
    let mesh_dir = first_existing([dir.join(MESH_JSON_FILE), job.mesh_json()])
        .and_then(|json| json.parent().map(Path::to_path_buf));
    let summary = match &mesh_dir {
        Some(mesh_dir) => Some(read_summary(&mesh_dir.join(MESH_JSON_FILE))?),
        None => None,
    };

    // Splats, cameras and points come in the input world frame.
    let splats_path = first_existing(
        [job.splats(), dir.join(SPLATS_FILE)].into_iter().chain(summary.as_ref().map(|s| s.sources.splats.clone())),
    );
    if let Some(path) = &splats_path {
        let splats = kiln_core::splats::ply::read_splats(path)?;
        scene.splats = Some(SplatLayer { splats, sh_frame_from_world: Mat3::IDENTITY, source: path.clone() });
        scene.loaded.push(path.clone());
    }
    let dataset_path = first_existing(
        [job.stage(Stage::Poses), dir.to_path_buf()]
            .into_iter()
            .chain(summary.as_ref().map(|s| s.sources.dataset.clone()))
            .filter(|p| p.join(TRANSFORMS_FILE).is_file() || p.join("sparse").is_dir() || p.is_file()),
    );
    if let Some(path) = &dataset_path
        && let Ok(dataset) = Dataset::open(path)
    {
        let cameras = dataset_scene(&dataset);
        scene.cameras = cameras.cameras;
        scene.points = cameras.points;
        scene.loaded.push(path.clone());
    }

    // The mesh is in the export frame; move the rest there.
    scene.frame_note = format!("the input world frame of {}", dir.display());
    if let (Some(mesh_dir), Some(summary)) = (&mesh_dir, &summary) {
        let export_from_world = DMat4::from_cols_array(&summary.export_from_world).transpose();
        scene.transform(&export_from_world);
        scene.mesh = Some(load_mesh(dir, mesh_dir)?);
        scene.loaded.push(mesh_dir.join(MESH_JSON_FILE));
        scene.frame_note = "the exported model's frame (metres, +Y up); splats, cameras and points moved \
                            there with mesh.json's export_from_world"
            .into();
    } else if let Some(glb) = first_existing([job.model(Format::Glb, false), dir.join(format!("{MODEL_STEM}.glb"))]) {
        // A GLB without mesh.json: its frame is unknown relative to the rest, so it is shown alone.
        scene = Scene { mesh: Some(load_gltf(&glb)?), loaded: vec![glb.clone()], ..Scene::default() };
        scene.frame_note = format!("the frame of {}", glb.display());
    }
    if scene.splats.is_none() && scene.mesh.is_none() && scene.cameras.is_empty() && scene.points.is_empty() {
        return Err(ViewerError::Unsupported {
            path: dir.to_path_buf(),
            problem: "no splats.ply, model.glb, mesh.json, transforms.json or COLMAP model found".into(),
        });
    }
    Ok(scene)
}

fn read_summary(path: &Path) -> Result<MeshSummary, ViewerError> {
    let text = std::fs::read_to_string(path).map_err(|source| ViewerError::Io { path: path.to_path_buf(), source })?;
    let summary: MeshSummary = serde_json::from_str(&text)
        .map_err(|e| ViewerError::Invalid { path: path.to_path_buf(), problem: e.to_string() })?;
    // Sources recorded relative to the mesh folder (a job folder's own files) are opened there.
    let mesh_dir = path.parent().unwrap_or(Path::new("."));
    Ok(MeshSummary { sources: summary.sources.resolved(mesh_dir), ..summary })
}

/// The exported GLB when there is one (what the user gets), else the mesh folder itself.
fn load_mesh(job_dir: &Path, mesh_dir: &Path) -> Result<super::MeshLayer, ViewerError> {
    let glb_name = format!("{MODEL_STEM}.glb");
    if let Some(glb) = first_existing([JobLayout::new(job_dir).model(Format::Glb, false), mesh_dir.join(&glb_name)]) {
        return load_gltf(&glb);
    }
    let (textured, _) = kiln_job::mesh_stage::read_mesh_dir(mesh_dir)
        .map_err(|e| ViewerError::Invalid { path: mesh_dir.to_path_buf(), problem: e.to_string() })?;
    Ok(glb::mesh_layer_from_trimesh(&textured.mesh, Some(&textured), mesh_dir))
}
