//! Dataset input: transforms.json and COLMAP readers, the COLMAP writer, image loading, and the
//! camera convention checked against bunny-synth's ground-truth mesh and silhouettes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use glam::{Mat3, Quat, Vec3};
use kiln_core::camera::{Camera, Intrinsics};
use kiln_dataset::colmap::{ColmapCamera, ColmapImage, ColmapModel, ColmapPoint3D, ModelFormat, Point2D, TrackElement};
use kiln_dataset::{Dataset, DatasetError, OpenOptions, PointCloud, Split, View, load_view, load_views};
use serde_json::Value;

fn fixture() -> PathBuf {
    kiln_testkit::bunny_mini()
}

fn shared_dataset(name: &str) -> Option<PathBuf> {
    kiln_testkit::dataset(name)
}

/// A fresh, empty folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-dataset-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture_json() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("transforms.json")).unwrap()).unwrap()
}

/// Writes `json` as `dir/transforms.json` with the fixture's images and masks beside it.
fn write_dataset(dir: &Path, json: &Value) -> PathBuf {
    for sub in ["images", "masks"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for entry in std::fs::read_dir(fixture().join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).unwrap();
        }
    }
    let path = dir.join("transforms.json");
    std::fs::write(&path, serde_json::to_string_pretty(json).unwrap()).unwrap();
    path
}

fn assert_cameras_close(a: &Camera, b: &Camera, tolerance: f32) {
    assert_eq!((a.width(), a.height()), (b.width(), b.height()));
    let ka = [a.intrinsics.fx, a.intrinsics.fy, a.intrinsics.cx, a.intrinsics.cy];
    let kb = [b.intrinsics.fx, b.intrinsics.fy, b.intrinsics.cx, b.intrinsics.cy];
    for (x, y) in ka.iter().zip(kb) {
        assert!((x - y).abs() <= tolerance * y.abs().max(1.0), "intrinsics {ka:?} vs {kb:?}");
    }
    let (ma, mb) = (a.world_from_camera.to_mat4(), b.world_from_camera.to_mat4());
    assert!(ma.abs_diff_eq(mb, tolerance), "poses differ:\n{ma}\n{mb}");
}

// ---------------------------------------------------------------- transforms.json

#[test]
fn dataset_fixture_lists_views_splits_and_intrinsics() {
    let dataset = Dataset::open(&fixture()).unwrap();
    assert_eq!(dataset.views.len(), 12);
    let test: Vec<&str> = dataset.test_views().map(|v| v.name.as_str()).collect();
    assert_eq!(test, ["images/0000.jpg", "images/0008.jpg", "images/0040.jpg"]);
    assert_eq!(dataset.train_views().count(), 9);
    let k = dataset.views[0].camera.intrinsics;
    assert_eq!((k.width, k.height), (200, 150));
    assert!((k.fx - 666.666_7 / 4.0).abs() < 1e-3 && (k.cx - 100.0).abs() < 1e-4 && (k.cy - 75.0).abs() < 1e-4);
    assert!(dataset.views.iter().all(|v| v.distortion.is_identity() && v.image_path.is_file()));
    assert!(dataset.points.is_none());
}

#[test]
fn dataset_bunny_synth_has_70_train_10_test() {
    let Some(dir) = shared_dataset("bunny-synth") else { return };
    let dataset = Dataset::open(&dir.join("transforms.json")).unwrap();
    assert_eq!(dataset.views.len(), 80);
    assert_eq!(dataset.train_views().count(), 70);
    assert_eq!(dataset.test_views().count(), 10);
    for (i, view) in dataset.views.iter().enumerate() {
        assert_eq!(view.split == Split::Test, i % 8 == 0, "{}", view.name);
        assert_eq!((view.camera.width(), view.camera.height()), (800, 600));
    }
}

/// Projects the ground-truth mesh through `camera` and returns (fraction of vertices inside the
/// image, fraction of those on the silhouette `mask` within one pixel).
fn silhouette_agreement(camera: &Camera, vertices: &[[f32; 3]], mask: &image::GrayImage) -> (f32, f32) {
    let (w, h) = (camera.width() as i64, camera.height() as i64);
    assert_eq!(mask.dimensions(), (camera.width(), camera.height()));
    let camera_from_world = camera.camera_from_world();
    let (mut inside, mut on_mask) = (0, 0);
    for v in vertices {
        let p = camera_from_world.transform_point(Vec3::from(*v));
        if p.z <= 0.0 {
            continue;
        }
        let [u, v] = camera.intrinsics.project(p);
        let (i, j) = (u.floor() as i64, v.floor() as i64);
        if i < 0 || j < 0 || i >= w || j >= h {
            continue;
        }
        inside += 1;
        let near = (-1..=1).flat_map(|dy| (-1..=1).map(move |dx| (i + dx, j + dy)));
        if near
            .filter(|&(x, y)| x >= 0 && y >= 0 && x < w && y < h)
            .any(|(x, y)| mask.get_pixel(x as u32, y as u32)[0] > 127)
        {
            on_mask += 1;
        }
    }
    (inside as f32 / vertices.len() as f32, on_mask as f32 / inside.max(1) as f32)
}

fn check_convention(dir: &Path) {
    let dataset = Dataset::open(dir).unwrap();
    let vertices = PointCloud::read_ply(&dir.join("gt_mesh.ply")).unwrap().positions;
    assert_eq!(vertices.len(), 2503);
    let view = &dataset.views[0];
    let mask = image::open(dir.join("masks/0000.png")).unwrap().to_luma8();
    let (inside, on_mask) = silhouette_agreement(&view.camera, &vertices, &mask);
    assert!(inside > 0.99 && on_mask > 0.97, "{}: inside {inside}, on the silhouette {on_mask}", dir.display());
    // Negative control: reading the OpenGL matrix as if it were OpenCV puts the object behind the camera.
    let wrong = Camera { world_from_camera: view.camera.world_from_camera.to_gl().to_cv_unflipped(), ..view.camera };
    let (inside_wrong, _) = silhouette_agreement(&wrong, &vertices, &mask);
    assert!(inside_wrong < 0.01, "wrong convention still projects {inside_wrong} of the vertices");
}

/// The wrong-on-purpose reading of a GL pose used by the negative control.
trait Unflipped {
    fn to_cv_unflipped(&self) -> kiln_core::camera::WorldFromCameraCv;
}

impl Unflipped for kiln_core::camera::WorldFromCameraGl {
    fn to_cv_unflipped(&self) -> kiln_core::camera::WorldFromCameraCv {
        kiln_core::camera::WorldFromCameraCv { rotation: self.rotation, translation: self.translation }
    }
}

#[test]
fn dataset_projection_convention_fixture() {
    check_convention(&fixture());
}

#[test]
fn dataset_projection_convention_bunny_synth() {
    let Some(dir) = shared_dataset("bunny-synth") else { return };
    check_convention(&dir);
}

#[test]
fn dataset_fox_missing_images_error_or_skip() {
    let Some(dir) = shared_dataset("fox") else { return };
    let err = Dataset::open(&dir).unwrap_err();
    let message = err.to_string();
    assert!(matches!(&err, DatasetError::MissingImages { missing, .. } if missing.len() == 17), "{message}");
    assert!(message.contains("transforms.json") && message.contains("0005.jpg"), "{message}");

    let options = OpenOptions { skip_missing_images: true, ..Default::default() };
    let skipped = Dataset::open_with(&dir, &options).unwrap();
    let present = Dataset::open(&dir.join("transforms_present.json")).unwrap();
    assert_eq!(skipped.views.len(), 50);
    assert_eq!(skipped.views, present.views, "skipping must equal the filtered file");
    assert_eq!(present.test_views().count(), 7, "every 8th of 50 views");
    let view = &present.views[0];
    assert!(!view.distortion.is_identity());
    assert_eq!((view.camera.width(), view.camera.height()), (1080, 1920));
    assert!((view.distortion.k1 - 0.057_842_1).abs() < 1e-7);

    let (camera, image, mask) = load_view(view, 480).unwrap();
    assert_eq!((image.width, image.height), (270, 480));
    assert_eq!((camera.width(), camera.height()), (270, 480));
    assert!((camera.intrinsics.fx - 1375.52 / 4.0).abs() < 1e-2);
    if let Some(mask) = mask {
        assert_eq!((mask.width, mask.height), (270, 480));
        let valid = mask.pixels.iter().filter(|&&m| m > 0.5).count() as f32 / mask.pixels.len() as f32;
        assert!(valid > 0.9, "undistortion should keep most pixels valid, kept {valid}");
    }
}

#[test]
fn dataset_every_eighth_frame_is_test_without_split_info() {
    let mut json = fixture_json();
    let root = json.as_object_mut().unwrap();
    for key in ["train_filenames", "val_filenames", "test_filenames"] {
        root.remove(key);
    }
    for frame in root["frames"].as_array_mut().unwrap() {
        frame.as_object_mut().unwrap().remove("split");
    }
    let dir = temp_dir("every_eighth");
    let dataset = Dataset::open(&write_dataset(&dir, &json)).unwrap();
    let test: Vec<usize> =
        dataset.views.iter().enumerate().filter(|(_, v)| v.split == Split::Test).map(|(i, _)| i).collect();
    assert_eq!(test, [0, 8]);
}

#[test]
fn dataset_named_split_lists_are_used_without_frame_split() {
    let mut json = fixture_json();
    for frame in json["frames"].as_array_mut().unwrap() {
        frame.as_object_mut().unwrap().remove("split");
    }
    json["test_filenames"] = serde_json::json!(["./images/0003.jpg"]);
    json["val_filenames"] = serde_json::json!([]);
    let dir = temp_dir("named_split");
    let dataset = Dataset::open(&write_dataset(&dir, &json)).unwrap();
    let test: Vec<&str> = dataset.test_views().map(|v| v.name.as_str()).collect();
    assert_eq!(test, ["images/0003.jpg"]);
}

#[test]
fn dataset_camera_angle_fallback_and_size_from_image() {
    let mut json = fixture_json();
    let root = json.as_object_mut().unwrap();
    for key in ["fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_y"] {
        root.remove(key);
    }
    let angle = root["camera_angle_x"].as_f64().unwrap();
    let dir = temp_dir("camera_angle");
    let dataset = Dataset::open(&write_dataset(&dir, &json)).unwrap();
    let k = dataset.views[0].camera.intrinsics;
    assert_eq!((k.width, k.height), (200, 150), "size read from the JPEG header");
    let expected = (100.0 / (angle / 2.0).tan()) as f32;
    assert!((k.fx - expected).abs() < 1e-3 && (k.fy - expected).abs() < 1e-3, "{} vs {expected}", k.fx);
    assert!((k.fx - 166.666_67).abs() < 1e-2);
    assert_eq!((k.cx, k.cy), (100.0, 75.0));
}

#[test]
fn dataset_per_frame_intrinsics_override_global() {
    let mut json = fixture_json();
    json["frames"][1]["fl_x"] = serde_json::json!(123.5);
    json["frames"][1]["k1"] = serde_json::json!(0.01);
    let dir = temp_dir("per_frame");
    let dataset = Dataset::open(&write_dataset(&dir, &json)).unwrap();
    assert_eq!(dataset.views[1].camera.intrinsics.fx, 123.5);
    assert_eq!(dataset.views[1].distortion.k1, 0.01);
    assert!(dataset.views[0].distortion.is_identity());
}

#[test]
fn dataset_masks_load_with_their_view() {
    let mut json = fixture_json();
    json["frames"][0]["mask_path"] = serde_json::json!("masks/0000.png");
    let dir = temp_dir("masks");
    let dataset = Dataset::open(&write_dataset(&dir, &json)).unwrap();
    let view = &dataset.views[0];
    assert_eq!(view.mask_path.as_deref(), Some(dir.join("masks/0000.png").as_path()));
    let (camera, image, mask) = load_view(view, 100).unwrap();
    let mask = mask.expect("the view has a mask");
    assert_eq!((image.width, image.height, mask.width, mask.height), (100, 75, 100, 75));
    // The downscaled mask still agrees with the mesh projected through the downscaled camera.
    let vertices = PointCloud::read_ply(&fixture().join("gt_mesh.ply")).unwrap().positions;
    let gray =
        image::GrayImage::from_fn(100, 75, |x, y| image::Luma([(mask.pixels[(y * 100 + x) as usize] * 255.0) as u8]));
    let (inside, on_mask) = silhouette_agreement(&camera, &vertices, &gray);
    assert!(inside > 0.99 && on_mask > 0.97, "inside {inside}, on mask {on_mask}");
    assert!(load_view(&dataset.views[1], 100).unwrap().2.is_none(), "no mask, no distortion: no mask");
}

#[test]
fn dataset_load_view_downscales_with_matching_intrinsics() {
    let dataset = Dataset::open(&fixture()).unwrap();
    let loaded = load_views(&dataset.views, 100).unwrap();
    assert_eq!(loaded.len(), 12);
    for ((camera, image, _), view) in loaded.iter().zip(&dataset.views) {
        assert_eq!((image.width, image.height, camera.width(), camera.height()), (100, 75, 100, 75));
        assert!((camera.intrinsics.fx - view.camera.intrinsics.fx / 2.0).abs() < 1e-4);
        assert_eq!(camera.world_from_camera, view.camera.world_from_camera);
    }
    // Box filtering: a downscaled pixel is the mean of its 2×2 block.
    let (_, full, _) = load_view(&dataset.views[0], u32::MAX).unwrap();
    let (_, half, _) = &loaded[0];
    let block: f32 =
        [(20, 30), (21, 30), (20, 31), (21, 31)].iter().map(|&(x, y)| full.get(x, y)[1]).sum::<f32>() / 4.0;
    assert!((half.get(10, 15)[1] - block).abs() < 1e-5);
    // A non-integer factor still gives the exact requested size.
    let (camera, image, _) = load_view(&dataset.views[0], 130).unwrap();
    assert_eq!((image.width, image.height), (130, 98));
    assert_eq!(camera.intrinsics, dataset.views[0].camera.intrinsics.resized(130, 98));
}

/// A smooth test pattern over undistorted normalised coordinates.
fn pattern(x: f32, y: f32) -> f32 {
    0.5 + 0.4 * (12.0 * x).sin() * (9.0 * y).cos()
}

#[test]
fn dataset_undistortion_recovers_the_pinhole_image() {
    let (w, h) = (160u32, 120u32);
    let k = Intrinsics { fx: 150.0, fy: 150.0, cx: 80.0, cy: 60.0, width: w, height: h };
    let distortion = kiln_core::camera::Distortion { k1: 0.15, k2: 0.05, p1: 0.002, p2: -0.001, k3: 0.0 };
    // The distorted photo: each pixel shows the pattern at its undistorted direction, found by
    // fixed-point iteration (independent of the loader's inverse mapping).
    let photo = image::RgbImage::from_fn(w, h, |i, j| {
        let (xd, yd) = ((i as f32 + 0.5 - k.cx) / k.fx, (j as f32 + 0.5 - k.cy) / k.fy);
        let (mut x, mut y) = (xd, yd);
        for _ in 0..50 {
            let [dx, dy] = distortion.distort(x, y);
            x += xd - dx;
            y += yd - dy;
        }
        let v = (pattern(x, y) * 255.0).round() as u8;
        image::Rgb([v, v, v])
    });
    let dir = temp_dir("undistort");
    photo.save(dir.join("photo.png")).unwrap();
    let json = serde_json::json!({
        "fl_x": k.fx, "fl_y": k.fy, "cx": k.cx, "cy": k.cy, "w": w, "h": h,
        "k1": distortion.k1, "k2": distortion.k2, "p1": distortion.p1, "p2": distortion.p2,
        "frames": [{"file_path": "photo.png", "transform_matrix": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}]
    });
    std::fs::write(dir.join("transforms.json"), json.to_string()).unwrap();
    let dataset = Dataset::open(&dir).unwrap();
    let (camera, image, mask) = load_view(&dataset.views[0], u32::MAX).unwrap();
    assert_eq!(camera.intrinsics, k);
    let mask = mask.expect("pincushion distortion leaves output pixels without source");
    let (mut worst, mut compared) = (0.0f32, 0);
    for j in 0..h {
        for i in 0..w {
            if mask.pixels[(j * w + i) as usize] < 1.0 {
                continue;
            }
            let (x, y) = ((i as f32 + 0.5 - k.cx) / k.fx, (j as f32 + 0.5 - k.cy) / k.fy);
            worst = worst.max((image.get(i, j)[0] - pattern(x, y)).abs());
            compared += 1;
        }
    }
    assert!(compared > (w * h) as usize / 2, "only {compared} valid pixels");
    // 8-bit quantisation (0.002) plus bilinear interpolation of a smooth pattern.
    assert!(worst < 0.02, "undistorted image differs from the pinhole pattern by {worst}");
    // Without undistortion the same comparison fails clearly (the test can detect a no-op).
    let raw = image::open(dir.join("photo.png")).unwrap().to_luma8();
    let raw_worst = (0..h)
        .flat_map(|j| (0..w).map(move |i| (i, j)))
        .map(|(i, j)| {
            let (x, y) = ((i as f32 + 0.5 - k.cx) / k.fx, (j as f32 + 0.5 - k.cy) / k.fy);
            (raw.get_pixel(i, j)[0] as f32 / 255.0 - pattern(x, y)).abs()
        })
        .fold(0.0f32, f32::max);
    assert!(raw_worst > 0.1 && raw_worst > 5.0 * worst, "raw {raw_worst} vs undistorted {worst}");
}

#[test]
fn dataset_ply_file_path_gives_the_point_cloud() {
    let mut json = fixture_json();
    json["ply_file_path"] = serde_json::json!("sparse_pc.ply");
    let dir = temp_dir("ply_file_path");
    let path = write_dataset(&dir, &json);
    let mut ply = b"ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\nproperty float y\n\
property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
        .to_vec();
    for (xyz, rgb) in [([0.5f32, -1.0, 2.0], [255u8, 0, 51]), ([0.0, 0.25, -0.125], [0, 255, 102])] {
        for v in xyz {
            ply.extend_from_slice(&v.to_le_bytes());
        }
        ply.extend_from_slice(&rgb);
    }
    std::fs::write(dir.join("sparse_pc.ply"), ply).unwrap();
    let points = Dataset::open(&path).unwrap().points.expect("ply_file_path is set");
    assert_eq!(points.positions, [[0.5, -1.0, 2.0], [0.0, 0.25, -0.125]]);
    assert_eq!(points.colors, [[1.0, 0.0, 0.2], [0.0, 1.0, 0.4]]);
}

// ---------------------------------------------------------------- bad input

fn open_err(json: &Value, name: &str) -> String {
    let dir = temp_dir(name);
    let err = Dataset::open(&write_dataset(&dir, json)).unwrap_err();
    err.to_string()
}

#[test]
fn dataset_missing_image_is_named() {
    let mut json = fixture_json();
    json["frames"][4]["file_path"] = serde_json::json!("images/nope.jpg");
    let message = open_err(&json, "missing_image");
    assert!(message.contains("transforms.json") && message.contains("images/nope.jpg"), "{message}");
}

#[test]
fn dataset_nan_pose_names_file_frame_and_field() {
    let text = std::fs::read_to_string(fixture().join("transforms.json")).unwrap();
    let mut json = fixture_json();
    json["frames"][2]["transform_matrix"][1][3] = serde_json::json!(12345.678);
    let dir = temp_dir("nan_pose");
    let path = write_dataset(&dir, &json);
    // Python's json module writes NaN literally.
    let with_nan = std::fs::read_to_string(&path).unwrap().replace("12345.678", "NaN");
    assert_ne!(with_nan, text);
    std::fs::write(&path, with_nan).unwrap();
    let message = Dataset::open(&path).unwrap_err().to_string();
    assert!(message.ends_with(&path.display().to_string()), "the file last: {message}");
    assert!(message.starts_with("frames[2].transform_matrix") && message.contains("NaN"), "{message}");
}

#[test]
fn dataset_nan_intrinsics_names_the_field() {
    let mut json = fixture_json();
    json["frames"][3]["fl_y"] = Value::Null;
    let message = open_err(&json, "nan_intrinsics");
    assert!(message.contains("frames[3].fl_y"), "{message}");
}

#[test]
fn dataset_malformed_json_names_file_and_field() {
    let dir = temp_dir("malformed");
    let path = write_dataset(&dir, &fixture_json());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let message = Dataset::open(&path).unwrap_err().to_string();
    assert!(message.contains("transforms.json") && message.contains("invalid JSON"), "{message}");

    let mut json = fixture_json();
    json["fl_x"] = serde_json::json!("wide");
    let message = open_err(&json, "wrong_type");
    assert!(message.contains("transforms.json") && message.contains("fl_x") && message.contains("wide"), "{message}");

    let mut json = fixture_json();
    json["frames"][5]["transform_matrix"] = serde_json::json!([[1, 0, 0], [0, 1, 0]]);
    let message = open_err(&json, "short_matrix");
    assert!(message.contains("frames[5].transform_matrix"), "{message}");

    let mut json = fixture_json();
    json["frames"][6]["transform_matrix"][0][0] = serde_json::json!(3.0);
    let message = open_err(&json, "scaled_matrix");
    assert!(message.contains("frames[6].transform_matrix") && message.contains("not a rotation"), "{message}");
}

#[test]
fn dataset_unsupported_camera_model_is_rejected() {
    let mut json = fixture_json();
    json["camera_model"] = serde_json::json!("OPENCV_FISHEYE");
    let message = open_err(&json, "fisheye");
    assert!(message.contains("OPENCV_FISHEYE") && message.contains("not supported"), "{message}");
}

#[test]
fn dataset_zero_size_and_undecodable_images_are_named() {
    let dir = temp_dir("bad_images");
    let path = write_dataset(&dir, &fixture_json());
    let dataset = Dataset::open(&path).unwrap();
    let empty = &dataset.views[0];
    std::fs::write(&empty.image_path, b"").unwrap();
    let message = load_view(empty, 100).unwrap_err().to_string();
    assert!(message.contains("0000.jpg"), "{message}");
    let truncated = &dataset.views[1];
    let bytes = std::fs::read(&truncated.image_path).unwrap();
    std::fs::write(&truncated.image_path, &bytes[..200]).unwrap();
    let message = load_view(truncated, 100).unwrap_err().to_string();
    assert!(message.contains("0003.jpg"), "{message}");
    let message = load_views(&dataset.views, 100).unwrap_err().to_string();
    assert!(message.contains("0000.jpg") || message.contains("0003.jpg"), "{message}");
    let mut wrong_size = dataset.views[2].clone();
    wrong_size.camera.intrinsics.width = 300;
    let message = load_view(&wrong_size, 100).unwrap_err().to_string();
    assert!(message.contains("0008.jpg") && message.contains("200×150"), "{message}");
}

#[test]
fn dataset_not_a_dataset_is_explained() {
    let dir = temp_dir("empty");
    let message = Dataset::open(&dir).unwrap_err().to_string();
    assert!(message.contains("not a dataset") && message.contains("kiln-dataset-test"), "{message}");
}

// ---------------------------------------------------------------- COLMAP

/// `camera_from_world` rotation as COLMAP's `(w, x, y, z)`.
fn qvec(rotation: Mat3) -> [f64; 4] {
    let q = Quat::from_mat3(&rotation);
    [q.w, q.x, q.y, q.z].map(f64::from)
}

/// A COLMAP model of the fixture's views, with a few points and observations.
fn fixture_model(views: &[View]) -> ColmapModel {
    let mut model = ColmapModel::default();
    for (i, view) in views.iter().enumerate() {
        let id = i as u32 + 1;
        let camera = ColmapCamera::from_intrinsics(id, &view.camera.intrinsics, &view.distortion).unwrap();
        let camera_from_world = view.camera.camera_from_world();
        model.cameras.push(camera);
        model.images.push(ColmapImage {
            image_id: id,
            qvec: qvec(camera_from_world.rotation),
            tvec: camera_from_world.translation.to_array().map(f64::from),
            camera_id: id,
            name: view.name.trim_start_matches("images/").to_string(),
            points2d: vec![
                Point2D { xy: [10.25, 20.5], point3d_id: Some(1) },
                Point2D { xy: [0.1, 1e-9], point3d_id: None },
            ],
        });
    }
    model.points3d = vec![
        ColmapPoint3D {
            point3d_id: 1,
            xyz: [0.01, -0.02, 0.05],
            rgb: [255, 128, 0],
            error: 0.5,
            track: vec![TrackElement { image_id: 1, point2d_idx: 0 }, TrackElement { image_id: 2, point2d_idx: 0 }],
        },
        ColmapPoint3D { point3d_id: 7, xyz: [1.0 / 3.0, 0.0, -1e10], rgb: [1, 2, 3], error: 0.0, track: vec![] },
    ];
    model
}

/// `dir/images` holding the fixture images and `dir/sparse/0` the model, in `format`.
fn colmap_layout(name: &str, format: ModelFormat) -> (PathBuf, ColmapModel, Dataset) {
    let nerf = Dataset::open(&fixture()).unwrap();
    let model = fixture_model(&nerf.views);
    let dir = temp_dir(name);
    std::fs::create_dir_all(dir.join("images")).unwrap();
    for view in &nerf.views {
        std::fs::copy(&view.image_path, dir.join("images").join(view.image_path.file_name().unwrap())).unwrap();
    }
    model.write(&dir.join("sparse/0"), format).unwrap();
    (dir, model, nerf)
}

#[test]
fn dataset_colmap_text_and_binary_round_trip() {
    for format in [ModelFormat::Text, ModelFormat::Binary] {
        let (dir, model, _) = colmap_layout(&format!("colmap_round_trip_{format:?}"), format);
        let model_dir = dir.join("sparse/0");
        assert_eq!(ColmapModel::detect(&model_dir), Some(format));
        assert_eq!(ColmapModel::read(&model_dir).unwrap(), model, "{format:?}");
        let leftovers: Vec<_> = std::fs::read_dir(&model_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 3, "only the three model files: {leftovers:?}");
    }
}

#[test]
fn dataset_colmap_layout_gives_the_same_cameras_as_transforms_json() {
    for format in [ModelFormat::Text, ModelFormat::Binary] {
        let (dir, _, nerf) = colmap_layout(&format!("colmap_views_{format:?}"), format);
        let colmap = Dataset::open(&dir).unwrap();
        assert_eq!(colmap.source, dir.join("sparse/0"));
        assert_eq!(colmap.views.len(), nerf.views.len());
        // COLMAP views are sorted by name (the fixture already is) and split every 8th.
        for (i, (c, n)) in colmap.views.iter().zip(&nerf.views).enumerate() {
            assert_eq!(c.image_path, dir.join("images").join(n.image_path.file_name().unwrap()));
            assert_eq!(c.split == Split::Test, i % 8 == 0);
            assert_cameras_close(&c.camera, &n.camera, 1e-5);
        }
        let points = colmap.points.expect("points3D present");
        assert_eq!(points.positions.len(), 2);
        assert_eq!(points.colors[0], [1.0, 128.0 / 255.0, 0.0]);
    }
}

#[test]
fn dataset_colmap_model_folder_with_images_option() {
    let (dir, _, _) = colmap_layout("colmap_model_dir", ModelFormat::Binary);
    let model_dir = dir.join("sparse/0");
    // Found by walking up from the model folder ...
    assert_eq!(Dataset::open(&model_dir).unwrap().views[0].image_path, dir.join("images/0000.jpg"));
    // ... or given explicitly.
    let elsewhere = temp_dir("colmap_images_elsewhere");
    std::fs::copy(dir.join("images/0000.jpg"), elsewhere.join("0000.jpg")).unwrap();
    let options = OpenOptions { images_dir: Some(elsewhere.clone()), skip_missing_images: true };
    let dataset = Dataset::open_with(&model_dir, &options).unwrap();
    assert_eq!(dataset.views.len(), 1);
    assert_eq!(dataset.views[0].image_path, elsewhere.join("0000.jpg"));
    let options = OpenOptions { images_dir: Some(elsewhere), skip_missing_images: false };
    let message = Dataset::open_with(&model_dir, &options).unwrap_err().to_string();
    assert!(message.contains("11 listed image(s) do not exist"), "{message}");
}

#[test]
fn dataset_colmap_truncated_binaries_are_clear_errors() {
    let (dir, _, _) = colmap_layout("colmap_truncated", ModelFormat::Binary);
    let model_dir = dir.join("sparse/0");
    for name in ["cameras.bin", "images.bin", "points3D.bin"] {
        let path = model_dir.join(name);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 4, 8, 9, 30, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let message = ColmapModel::read(&model_dir).unwrap_err().to_string();
            assert!(message.contains(name) && message.contains("byte"), "{name} cut at {cut}: {message}");
        }
        // A corrupt count must not allocate its way into an abort.
        let mut corrupt = bytes.clone();
        corrupt[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        std::fs::write(&path, &corrupt).unwrap();
        let message = ColmapModel::read(&model_dir).unwrap_err().to_string();
        assert!(message.contains("truncated or corrupt"), "{message}");
        std::fs::write(&path, &bytes).unwrap();
    }
    assert!(ColmapModel::read(&model_dir).is_ok());
}

#[test]
fn dataset_colmap_text_errors_name_the_line() {
    let (dir, _, _) = colmap_layout("colmap_text_errors", ModelFormat::Text);
    let model_dir = dir.join("sparse/0");
    let cameras = model_dir.join("cameras.txt");
    let good = std::fs::read_to_string(&cameras).unwrap();
    let fisheye = good.replacen("PINHOLE 200 150", "OPENCV_FISHEYE 200 150", 1);
    std::fs::write(&cameras, fisheye).unwrap();
    let message = ColmapModel::read(&model_dir).unwrap_err().to_string();
    assert!(message.starts_with("line 4: ") && message.ends_with("cameras.txt"), "the file last: {message}");
    assert!(message.contains("OPENCV_FISHEYE"), "{message}");
    std::fs::write(&cameras, good.replacen("PINHOLE 200 150", "PINHOLE 200 abc", 1)).unwrap();
    let message = ColmapModel::read(&model_dir).unwrap_err().to_string();
    assert!(message.contains("line 4") && message.contains("HEIGHT"), "{message}");
    std::fs::write(&cameras, &good).unwrap();

    let images = model_dir.join("images.txt");
    let text = std::fs::read_to_string(&images).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[7] = lines[7].replacen(" -1", " nan", 1); // second image's POINTS2D line
    std::fs::write(&images, lines.join("\n")).unwrap();
    let message = ColmapModel::read(&model_dir).unwrap_err().to_string();
    assert!(message.starts_with("line 8: ") && message.ends_with("images.txt"), "the file last: {message}");
    assert!(message.contains("POINT3D_ID"), "{message}");
}

#[test]
fn dataset_colmap_models_simple_radial_and_opencv() {
    let dir = temp_dir("colmap_models");
    std::fs::write(
        dir.join("cameras.txt"),
        "# comment\n1 SIMPLE_RADIAL 640 480 500 320 240 0.1\n2 RADIAL 640 480 500 321 241 0.1 -0.02\n\
         3 OPENCV 640 480 500 510 322 242 0.1 -0.02 0.001 0.002\n4 SIMPLE_PINHOLE 640 480 400 320 240\n",
    )
    .unwrap();
    std::fs::write(dir.join("images.txt"), "1 1 0 0 0 0 0 0 3 a.jpg\n\n").unwrap();
    let model = ColmapModel::read(&dir).unwrap();
    let (k, d) = model.cameras[2].intrinsics();
    assert_eq!([k.fx, k.fy, k.cx, k.cy], [500.0, 510.0, 322.0, 242.0]);
    assert_eq!([d.k1, d.k2, d.p1, d.p2, d.k3], [0.1, -0.02, 0.001, 0.002, 0.0]);
    let (k, d) = model.cameras[1].intrinsics();
    assert_eq!([k.fx, k.fy, d.k1, d.k2], [500.0, 500.0, 0.1, -0.02]);
    assert_eq!(model.cameras[0].intrinsics().1.k1, 0.1);
    assert!(model.cameras[3].intrinsics().1.is_identity());
    assert!(model.points3d.is_empty());
    assert_eq!(model.images[0].points2d, []);
}
