//! The files `kiln poses` writes from a [`PosesResult`], in the field's own formats:
//!
//! - `<out>/sparse/0/{cameras,images,points3D}.bin`: the COLMAP model, binary, where COLMAP,
//!   nerfstudio, the 3DGS reference code and Kiln look for it.
//! - `<out>/sparse-text/0/{cameras,images,points3D}.txt`: the same model as text, for reading and
//!   diffing. It lives in its own folder because every reader prefers `.bin` when both exist in
//!   one folder, so an edited `.txt` beside a `.bin` would be silently ignored.
//! - `<out>/transforms.json` + `<out>/sparse_pc.ply`: nerfstudio's layout, which
//!   [`kiln_dataset::Dataset::open`] (and so `kiln train <out>`) reads directly.
//! - `<out>/poses-report.json`: [`crate::report::PosesReport`].
//!
//! Cameras are COLMAP `RADIAL` (`f, cx, cy, k1, k2`), one per camera group, in
//! `transforms.json` the identical `OPENCV` model with `fl_x = fl_y = f`, `p1 = p2 = 0`. Only
//! registered photos appear; image names are [`kiln_core::photos::PhotoInfo::name`] (relative
//! to the input folder), image ids are the photo's index + 1, camera ids the group's index + 1.
//!
//! **Pixel frame.** Keypoints, intrinsics and image sizes are in the photo *as displayed*, with
//! its EXIF orientation applied (see [`kiln_sfm`]), which is also how Kiln's dataset loader
//! reads photos, so `transforms.json` and `kiln train` agree. COLMAP ignores EXIF orientation:
//! for a photo whose orientation is not 1, COLMAP's own tools would see its stored pixels turned
//! against this model (the report adds a note for such inputs).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use glam::DQuat;
use serde_json::{Map, Value, json};

use crate::pipeline::PosesResult;
use crate::report::PosesReport;
use crate::{Phase, SfmError};
use kiln_core::atomic_file::write_atomically;
use kiln_core::camera::{CameraFromWorldCv, WorldFromCameraCv};
use kiln_core::photos::PhotoSet;
use kiln_dataset::colmap::{
    CameraModel, ColmapCamera, ColmapImage, ColmapModel, ColmapPoint3D, ModelFormat, Point2D, TrackElement,
};
use kiln_vision::model::{PointId, RadialCamera, Reconstruction, RigidCv};

/// File and folder names inside `<out>`.
pub const BINARY_MODEL_DIR: &str = "sparse/0";
pub const TEXT_MODEL_DIR: &str = "sparse-text/0";
pub use kiln_protocol::layout::{POINT_CLOUD_FILE, POSES_REPORT_FILE as REPORT_FILE, TRANSFORMS_FILE};

/// Writes the COLMAP model (binary and text), `transforms.json` with `sparse_pc.ply`, and the
/// report (last, with the time spent writing added), each file atomically. `out` is created if
/// needed; nothing is written elsewhere. Returns the report as written.
pub fn write_outputs(result: &PosesResult, out: &Path) -> Result<PosesReport, SfmError> {
    let start = Instant::now();
    std::fs::create_dir_all(out).map_err(|source| SfmError::Io { path: out.to_path_buf(), source })?;
    let model = colmap_model(&result.photos, &result.reconstruction);
    for (dir, format) in [(BINARY_MODEL_DIR, ModelFormat::Binary), (TEXT_MODEL_DIR, ModelFormat::Text)] {
        model
            .write(&out.join(dir), format)
            .map_err(|e| SfmError::Internal(format!("writing the COLMAP model: {e}")))?;
    }
    write_point_cloud(&out.join(POINT_CLOUD_FILE), &result.reconstruction)?;
    let transforms = transforms_json(&result.photos, &result.reconstruction, out)?;
    write_json(&out.join(TRANSFORMS_FILE), &transforms)?;
    let mut report = result.report.clone();
    report.add_phase_time(Phase::Output, start.elapsed().as_secs_f64());
    let value = serde_json::to_value(&report).map_err(|e| SfmError::Internal(format!("report: {e}")))?;
    write_json(&out.join(REPORT_FILE), &value)?;
    Ok(report)
}

/// COLMAP camera id of camera `index` of the reconstruction.
fn camera_id(index: usize) -> u32 {
    index as u32 + 1
}

/// COLMAP image id of photo `index`.
fn image_id(index: usize) -> u32 {
    index as u32 + 1
}

/// The reconstruction as a COLMAP model: registered photos, the cameras they use, every point.
pub fn colmap_model(photos: &PhotoSet, rec: &Reconstruction) -> ColmapModel {
    // COLMAP point ids count from 1 in the order of the (sorted) reconstruction ids.
    let point_ids: BTreeMap<PointId, u64> = rec.points.keys().zip(1u64..).map(|(&id, colmap)| (id, colmap)).collect();
    let registered: Vec<usize> = rec.registered_images().collect();
    let mut used_cameras: Vec<usize> = registered.iter().filter_map(|&i| rec.images.get(i)).map(|i| i.camera).collect();
    used_cameras.sort_unstable();
    used_cameras.dedup();
    let cameras = used_cameras
        .iter()
        .filter_map(|&c| rec.cameras.get(c).map(|camera| radial_camera(camera_id(c), camera)))
        .collect();
    let images = registered
        .iter()
        .filter_map(|&index| {
            let image = rec.images.get(index)?;
            let pose = image.camera_from_world?;
            let q = DQuat::from_mat3(&pose.rotation).normalize();
            // COLMAP writes quaternions with w ≥ 0; q and −q are the same rotation.
            let q = if q.w < 0.0 { -q } else { q };
            let points2d = image
                .keypoints
                .iter()
                .zip(&image.point_of_keypoint)
                .map(|(xy, point)| Point2D {
                    xy: [xy.x, xy.y],
                    point3d_id: point.and_then(|p| point_ids.get(&p).copied()),
                })
                .collect();
            Some(ColmapImage {
                image_id: image_id(index),
                qvec: [q.w, q.x, q.y, q.z],
                tvec: pose.translation.to_array(),
                camera_id: camera_id(image.camera),
                name: photos.photos.get(index).map_or_else(|| format!("{index}"), |p| p.name.clone()),
                points2d,
            })
        })
        .collect();
    let points3d = rec
        .points
        .iter()
        .map(|(id, point)| {
            let errors: Vec<f64> =
                point.track.iter().filter_map(|&o| rec.reprojection_error(o, point.position)).collect();
            let error = if errors.is_empty() { 0.0 } else { errors.iter().sum::<f64>() / errors.len() as f64 };
            ColmapPoint3D {
                point3d_id: point_ids.get(id).copied().unwrap_or(0),
                xyz: point.position.to_array(),
                rgb: point.color,
                error,
                track: point
                    .track
                    .iter()
                    .map(|o| TrackElement { image_id: image_id(o.image), point2d_idx: o.keypoint })
                    .collect(),
            }
        })
        .collect();
    ColmapModel { cameras, images, points3d }
}

fn radial_camera(camera_id: u32, camera: &RadialCamera) -> ColmapCamera {
    ColmapCamera {
        camera_id,
        model: CameraModel::Radial,
        width: camera.width.into(),
        height: camera.height.into(),
        params: vec![camera.focal, camera.cx, camera.cy, camera.k1, camera.k2],
    }
}

/// The nerfstudio `transforms.json` of the registered photos: `OPENCV` intrinsics (top level when
/// every registered photo shares one camera, per frame otherwise), OpenGL camera-to-world poses,
/// image paths relative to `out` where possible, and the point cloud.
pub fn transforms_json(photos: &PhotoSet, rec: &Reconstruction, out: &Path) -> Result<Value, SfmError> {
    let registered: Vec<usize> = rec.registered_images().collect();
    let mut cameras_used: Vec<usize> = registered.iter().filter_map(|&i| rec.images.get(i)).map(|i| i.camera).collect();
    cameras_used.sort_unstable();
    cameras_used.dedup();
    let shared_camera = match cameras_used[..] {
        [only] => rec.cameras.get(only),
        _ => None,
    };
    let mut root = Map::new();
    root.insert("camera_model".into(), json!("OPENCV"));
    if let Some(camera) = shared_camera {
        root.extend(opencv_intrinsics(camera));
    }
    let mut frames = Vec::with_capacity(registered.len());
    for &index in &registered {
        let (Some(image), Some(photo)) = (rec.images.get(index), photos.photos.get(index)) else { continue };
        let Some(pose) = image.camera_from_world else { continue };
        let mut frame = Map::new();
        frame.insert("file_path".into(), json!(path_from(out, &photo.path)?));
        frame.insert("transform_matrix".into(), json!(world_from_camera_gl_rows(&pose)));
        frame.insert("colmap_im_id".into(), json!(image_id(index)));
        if shared_camera.is_none() {
            frame.extend(rec.cameras.get(image.camera).map(opencv_intrinsics).unwrap_or_default());
        }
        frames.push(Value::Object(frame));
    }
    root.insert("frames".into(), Value::Array(frames));
    root.insert("ply_file_path".into(), json!(POINT_CLOUD_FILE));
    Ok(Value::Object(root))
}

fn opencv_intrinsics(camera: &RadialCamera) -> Map<String, Value> {
    let value = json!({
        "fl_x": camera.focal, "fl_y": camera.focal, "cx": camera.cx, "cy": camera.cy,
        "w": camera.width, "h": camera.height,
        "k1": camera.k1, "k2": camera.k2, "p1": 0.0, "p2": 0.0,
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `transform_matrix` rows: camera-to-world in the OpenGL camera convention, through the
/// engine's one conversion ([`WorldFromCameraCv::to_gl`]).
fn world_from_camera_gl_rows(camera_from_world: &RigidCv) -> [[f64; 4]; 4] {
    let world_from_camera: WorldFromCameraCv = CameraFromWorldCv::from_rigid(camera_from_world).inverse();
    let matrix = world_from_camera.to_gl().to_mat4();
    let mut rows = [[0.0; 4]; 4];
    for (r, row) in rows.iter_mut().enumerate() {
        *row = matrix.row(r).to_array().map(f64::from);
    }
    rows
}

/// `target` relative to the folder `base` (`../photos/a.jpg`), with `/` separators; the absolute
/// path when the two share no root.
fn path_from(base: &Path, target: &Path) -> Result<String, SfmError> {
    let canonical = |p: &Path| p.canonicalize().map_err(|source| SfmError::Io { path: p.to_path_buf(), source });
    let (base, target) = (canonical(base)?, canonical(target)?);
    let relative = relative_path(&base, &target).unwrap_or(target);
    Ok(relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"))
}

/// `target` relative to `base`, both absolute and canonical; `None` when their roots differ.
fn relative_path(base: &Path, target: &Path) -> Option<PathBuf> {
    let base: Vec<Component> = base.components().collect();
    let target: Vec<Component> = target.components().collect();
    if base.first() != target.first() {
        return None;
    }
    let common = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut relative = PathBuf::new();
    for _ in common..base.len() {
        relative.push("..");
    }
    for component in &target[common..] {
        relative.push(component.as_os_str());
    }
    Some(relative)
}

/// `sparse_pc.ply`: the 3D points as binary PLY vertices (`float x y z`, `uchar red green blue`),
/// the layout nerfstudio writes and [`kiln_core::point_cloud::PointCloud::read_ply`] reads.
fn write_point_cloud(path: &Path, rec: &Reconstruction) -> Result<(), SfmError> {
    let header = format!(
        "ply\nformat binary_little_endian 1.0\nelement vertex {}\nproperty float x\nproperty float y\n\
         property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n",
        rec.points.len()
    );
    write_atomically(path, |w| {
        w.write_all(header.as_bytes())?;
        for point in rec.points.values() {
            for v in point.position.to_array() {
                w.write_all(&(v as f32).to_le_bytes())?;
            }
            w.write_all(&point.color)?;
        }
        Ok(())
    })
    .map_err(|source| SfmError::Io { path: path.to_path_buf(), source })
}

fn write_json(path: &Path, value: &Value) -> Result<(), SfmError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| SfmError::Internal(format!("cannot write JSON: {e}: {}", path.display())))?;
    write_atomically(path, |w| w.write_all(text.as_bytes()))
        .map_err(|source| SfmError::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use glam::{DVec2, DVec3};

    use super::*;
    use crate::report::{PhotoFate, ReportInputs};
    use kiln_core::photos::{CameraGroup, PhotoInfo};
    use kiln_dataset::Dataset;
    use kiln_vision::model::{ImageState, Observation};

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/bunny-mini")
    }

    /// bunny-mini's ground-truth cameras as a reconstruction with two camera groups (different
    /// focal lengths and distortion, so the per-frame intrinsics path is exercised), one photo
    /// left unregistered, and a grid of points around the object observed exactly.
    fn reconstruction() -> (PhotoSet, Reconstruction) {
        let truth = Dataset::open(&fixture()).unwrap();
        let input = fixture().join("images");
        let cameras = vec![
            RadialCamera { k1: -0.05, k2: 0.01, ..RadialCamera::pinhole(200, 150, 166.7) },
            RadialCamera { cx: 101.0, cy: 74.0, k1: 0.02, k2: 0.0, ..RadialCamera::pinhole(200, 150, 170.0) },
        ];
        let groups = cameras
            .iter()
            .enumerate()
            .map(|(g, c)| CameraGroup { key: format!("group {g}"), prior: *c, focal_from_exif: false })
            .collect();
        let mut photos = Vec::new();
        let mut images = Vec::new();
        for (index, view) in truth.views.iter().enumerate() {
            let name = view.image_path.file_name().unwrap().to_string_lossy().into_owned();
            let group = index % 2;
            photos.push(PhotoInfo {
                path: input.join(&name),
                name,
                width: 200,
                height: 150,
                exif: Default::default(),
                group,
            });
            let world_from_camera = view.camera.world_from_camera;
            let camera_from_world = RigidCv {
                rotation: world_from_camera.rotation.as_dmat3().transpose(),
                translation: -(world_from_camera.rotation.as_dmat3().transpose()
                    * world_from_camera.translation.as_dvec3()),
            };
            let registered = index != 5;
            images.push(ImageState {
                camera: group,
                camera_from_world: registered.then_some(camera_from_world),
                keypoints: Vec::new(),
                point_of_keypoint: Vec::new(),
            });
        }
        let mut rec = Reconstruction::new(cameras, images);
        for (k, position) in (0..27).map(|k| DVec3::new((k % 3) as f64, (k / 3 % 3) as f64, (k / 9) as f64)).enumerate()
        {
            let position = (position - 1.0) * 0.03 + DVec3::new(0.0, 0.0, 0.05);
            let mut track = Vec::new();
            for image in 0..rec.images.len() {
                let state = &rec.images[image];
                let Some(pose) = state.camera_from_world else { continue };
                let Some(pixel) = rec.cameras[state.camera].project(pose.transform_point(position)) else { continue };
                let state = &mut rec.images[image];
                state.keypoints.push(pixel);
                state.point_of_keypoint.push(None);
                track.push(Observation { image, keypoint: state.keypoints.len() as u32 - 1 });
            }
            rec.add_point(position, [k as u8 * 9, 100, 200], track);
        }
        // An unmatched keypoint, written with point id −1.
        rec.images[0].keypoints.push(DVec2::new(1.5, 2.5));
        rec.images[0].point_of_keypoint.push(None);
        (PhotoSet { input, photos, groups, rejected: Vec::new() }, rec)
    }

    fn result() -> PosesResult {
        let (photos, reconstruction) = reconstruction();
        let fates = photos
            .photos
            .iter()
            .enumerate()
            .map(|(index, p)| (p.name.clone(), PhotoFate::Used { index, dropped: None }))
            .collect();
        let report = PosesReport::build(ReportInputs {
            photos: &photos,
            reconstruction: &reconstruction,
            fates,
            verified_pairs: 0,
            components: Vec::new(),
            notes: Vec::new(),
            phase_seconds: Vec::new(),
        });
        PosesResult { photos, reconstruction, report }
    }

    fn temp_out(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-sfm-outputs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn transforms_json_opens_as_the_same_cameras() {
        let result = result();
        let rec = &result.reconstruction;
        let out = temp_out("transforms");
        write_outputs(&result, &out).unwrap();
        let dataset = Dataset::open(&out).unwrap();
        let registered: Vec<usize> = rec.registered_images().collect();
        assert_eq!(dataset.views.len(), registered.len());
        for (view, &index) in dataset.views.iter().zip(&registered) {
            let photo = &result.photos.photos[index];
            assert_eq!(view.image_path.canonicalize().unwrap(), photo.path.canonicalize().unwrap());
            let camera = rec.cameras[rec.images[index].camera];
            let i = view.camera.intrinsics;
            assert_eq!((i.width, i.height), (camera.width, camera.height));
            for (read, written) in [(i.fx, camera.focal), (i.fy, camera.focal), (i.cx, camera.cx), (i.cy, camera.cy)] {
                assert!((f64::from(read) - written).abs() < 1e-4, "{read} vs {written}");
            }
            let pose = rec.images[index].camera_from_world.unwrap();
            let read_pose = view.camera.camera_from_world();
            assert!((read_pose.rotation.as_dmat3() - pose.rotation).abs_diff_eq(glam::DMat3::ZERO, 1e-5));
            assert!(read_pose.translation.as_dvec3().distance(pose.translation) < 1e-5);
            // Kiln's OPENCV distortion projects every point exactly where the RADIAL camera does.
            for point in rec.points.values() {
                let in_camera = pose.transform_point(point.position);
                let expected = camera.project(in_camera).unwrap();
                let [xd, yd] =
                    view.distortion.distort((in_camera.x / in_camera.z) as f32, (in_camera.y / in_camera.z) as f32);
                let pixel = DVec2::new(f64::from(i.fx * xd + i.cx), f64::from(i.fy * yd + i.cy));
                assert!(pixel.distance(expected) < 1e-3, "{pixel} vs {expected}");
            }
        }
        let cloud = dataset.points.expect("ply_file_path is read");
        assert_eq!(cloud.positions.len(), rec.points.len());
        for (read, point) in cloud.positions.iter().zip(rec.points.values()) {
            assert!(DVec3::from_array(read.map(f64::from)).distance(point.position) < 1e-6);
        }
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn colmap_model_round_trips_in_both_formats() {
        let result = result();
        let out = temp_out("colmap");
        let written = write_outputs(&result, &out).unwrap();
        let expected = colmap_model(&result.photos, &result.reconstruction);
        assert_eq!(ColmapModel::read(&out.join(BINARY_MODEL_DIR)).unwrap(), expected);
        assert_eq!(ColmapModel::read(&out.join(TEXT_MODEL_DIR)).unwrap(), expected);
        assert_eq!(expected.cameras.len(), 2);
        assert!(expected.cameras.iter().all(|c| c.model == CameraModel::Radial));
        assert_eq!(expected.images.len(), 11, "the unregistered photo is not in the model");
        assert!(expected.images.iter().all(|i| i.name.ends_with(".jpg") && !i.name.contains('/')));
        assert_eq!(expected.points3d.len(), 27);
        // Every observation was placed exactly, so each point's mean error is ~0, and every track
        // element points back at a 2D point that names the 3D point.
        for point in &expected.points3d {
            assert!(point.error < 1e-6, "error {}", point.error);
            for element in &point.track {
                let image = expected.images.iter().find(|i| i.image_id == element.image_id).unwrap();
                assert_eq!(image.points2d[element.point2d_idx as usize].point3d_id, Some(point.point3d_id));
            }
        }
        let report: PosesReport =
            serde_json::from_str(&std::fs::read_to_string(out.join(REPORT_FILE)).unwrap()).unwrap();
        assert_eq!(report, written);
        assert_eq!(report.photos, result.report.photos);
        assert!(report.phase_seconds.iter().any(|p| p.phase == Phase::Output));
        let leftovers: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn relative_paths_climb_to_the_common_folder() {
        assert_eq!(
            relative_path(Path::new("/a/b/out"), Path::new("/a/photos/x.jpg")),
            Some(PathBuf::from("../../photos/x.jpg"))
        );
        assert_eq!(relative_path(Path::new("/a"), Path::new("/a/x.jpg")), Some(PathBuf::from("x.jpg")));
    }
}
