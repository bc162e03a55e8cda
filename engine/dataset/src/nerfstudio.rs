//! nerfstudio / instant-ngp `transforms.json`: intrinsics (top level, overridable per frame),
//! OPENCV distortion, camera-to-world poses in the OpenGL camera convention, splits, masks and
//! the optional `ply_file_path` point cloud.
//!
//! Python's `json` writes `NaN` and `Infinity`, which are not JSON; they are read as `null` so
//! that the error names the frame and field instead of a column number.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use glam::{Mat3, Vec3};
use serde_json::{Map, Value};

use crate::{Dataset, DatasetError, OpenOptions, PointCloud, Split, View, every_eighth_is_test, keep_present_images};
use kiln_core::camera::{Camera, Distortion, Intrinsics, WorldFromCameraCv, WorldFromCameraGl};

/// Largest accepted deviation of a pose's rotation part from orthonormality (max |RᵀR − I|).
/// Poses written by Blender or colmap2nerf are orthonormal to float precision (~1e-6); beyond
/// 1e-3 the matrix is scaled or sheared and is not a camera pose.
const ORTHONORMAL_TOLERANCE: f64 = 1e-3;

/// Largest accepted image side in pixels: far above any camera, low enough to catch garbage.
const MAX_IMAGE_SIDE: f64 = 1_000_000.0;

/// Extensions tried, in order, for a `file_path` without one (the NeRF-synthetic sets write
/// `./train/r_0` for `./train/r_0.png`).
const IMPLIED_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

type Object = Map<String, Value>;

/// One frame whose image path has been resolved.
struct Listed<'a> {
    index: usize,
    frame: &'a Object,
    file_path: String,
    image_path: PathBuf,
}

pub(super) fn read(path: &Path, options: &OpenOptions) -> Result<Dataset, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })?;
    let root: Value = serde_json::from_str(&nonfinite_literals_to_null(&text))
        .map_err(|source| DatasetError::Json { path: path.to_path_buf(), source })?;
    let root = root.as_object().ok_or_else(|| invalid(path, "top level", "expected a JSON object"))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let listed = keep_present_images(path, list_frames(path, root, base)?, |l| &l.image_path, options)?;
    let named_split = NamedSplit::read(root, path)?;
    let mut views = Vec::with_capacity(listed.len());
    for (kept_index, item) in listed.into_iter().enumerate() {
        let lookup = Lookup { path, root, frame: item.frame, index: item.index };
        let split = match lookup.frame_split()? {
            Some(split) => split,
            None => named_split.as_ref().map_or_else(|| every_eighth_is_test(kept_index), |s| s.of(&item.file_path)),
        };
        let mask_path = lookup.frame_string("mask_path")?.map(|m| base.join(m));
        let camera = Camera { intrinsics: lookup.intrinsics(&item.image_path)?, world_from_camera: lookup.pose()? };
        let distortion = lookup.distortion()?;
        views.push(View { name: item.file_path, image_path: item.image_path, mask_path, camera, distortion, split });
    }
    let points = match root.get("ply_file_path") {
        None => None,
        Some(Value::String(ply)) => Some(PointCloud::read_ply(&base.join(ply))?),
        Some(_) => return Err(invalid(path, "ply_file_path", "expected a string")),
    };
    Ok(Dataset { source: path.to_path_buf(), views, points })
}

/// Every frame with its image path resolved against `base` (the folder of `transforms.json`).
fn list_frames<'a>(path: &Path, root: &'a Object, base: &Path) -> Result<Vec<Listed<'a>>, DatasetError> {
    let frames = root
        .get("frames")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(path, "frames", "missing or not an array"))?;
    let mut listed = Vec::with_capacity(frames.len());
    for (index, frame) in frames.iter().enumerate() {
        let location = format!("frames[{index}]");
        let frame = frame.as_object().ok_or_else(|| invalid(path, &location, "expected an object"))?;
        let file_path = match frame.get("file_path") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(invalid(path, &format!("{location}.file_path"), "missing or not a string")),
        };
        let image_path = resolve_image(base, &file_path);
        listed.push(Listed { index, frame, file_path, image_path });
    }
    Ok(listed)
}

fn invalid(path: &Path, location: &str, problem: impl Into<String>) -> DatasetError {
    DatasetError::Invalid { path: path.to_path_buf(), location: location.to_string(), problem: problem.into() }
}

/// Replaces the bare literals `NaN`, `Infinity` and `-Infinity` (outside strings) with `null`.
fn nonfinite_literals_to_null(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut in_string = false;
    let mut escaped = false;
    'scan: while let Some(c) = rest.chars().next() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c == '"' {
            in_string = true;
        } else {
            for literal in ["-Infinity", "Infinity", "NaN"] {
                if let Some(after) = rest.strip_prefix(literal) {
                    out.push_str("null");
                    rest = after;
                    continue 'scan;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn resolve_image(base: &Path, file_path: &str) -> PathBuf {
    let path = base.join(file_path);
    if path.extension().is_some() || path.is_file() {
        return path;
    }
    IMPLIED_EXTENSIONS.iter().map(|ext| path.with_extension(ext)).find(|p| p.is_file()).unwrap_or(path)
}

/// `./images/a.jpg` and `images/a.jpg` name the same file in split lists.
fn normalize_name(name: &str) -> String {
    let mut name = name.replace('\\', "/");
    while let Some(stripped) = name.strip_prefix("./") {
        name = stripped.to_string();
    }
    name
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "NaN, infinite or null".into(),
        Value::Number(n) => format!("{n}, not finite"),
        other => format!("not a number ({other})"),
    }
}

/// A split given by the top-level `train_filenames` / `test_filenames` / `val_filenames` lists.
enum NamedSplit {
    /// Listed in `test_filenames` or `val_filenames`: test; anything else: train.
    TestNames(HashSet<String>),
    /// Only `train_filenames` given: listed ones train, the rest test.
    TrainNames(HashSet<String>),
}

impl NamedSplit {
    fn read(root: &Object, path: &Path) -> Result<Option<Self>, DatasetError> {
        let names = |key: &str| -> Result<Option<HashSet<String>>, DatasetError> {
            let Some(value) = root.get(key) else { return Ok(None) };
            let list = value.as_array().ok_or_else(|| invalid(path, key, "expected an array of file names"))?;
            list.iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(normalize_name)
                        .ok_or_else(|| invalid(path, &format!("{key}[{i}]"), "expected a string"))
                })
                .collect::<Result<HashSet<_>, _>>()
                .map(Some)
        };
        let test = names("test_filenames")?;
        let val = names("val_filenames")?;
        if test.is_some() || val.is_some() {
            return Ok(Some(Self::TestNames(test.into_iter().chain(val).flatten().collect())));
        }
        Ok(names("train_filenames")?.map(Self::TrainNames))
    }

    fn of(&self, file_path: &str) -> Split {
        let name = normalize_name(file_path);
        match self {
            Self::TestNames(test) if test.contains(&name) => Split::Test,
            Self::TestNames(_) => Split::Train,
            Self::TrainNames(train) if train.contains(&name) => Split::Train,
            Self::TrainNames(_) => Split::Test,
        }
    }
}

/// Reads a frame's keys, falling back to the top level (nerfstudio's per-frame intrinsics).
struct Lookup<'a> {
    path: &'a Path,
    root: &'a Object,
    frame: &'a Object,
    index: usize,
}

impl Lookup<'_> {
    /// The value of `key` and where it was found (`frames[i].key` or `key`).
    fn get(&self, key: &str) -> Option<(&Value, String)> {
        match self.frame.get(key) {
            Some(value) => Some((value, format!("frames[{}].{key}", self.index))),
            None => self.root.get(key).map(|value| (value, key.to_string())),
        }
    }

    fn error(&self, location: &str, problem: impl Into<String>) -> DatasetError {
        invalid(self.path, location, problem)
    }

    fn frame_location(&self) -> String {
        format!("frames[{}]", self.index)
    }

    fn number(&self, key: &str) -> Result<Option<f64>, DatasetError> {
        let Some((value, location)) = self.get(key) else { return Ok(None) };
        match value.as_f64().filter(|v| v.is_finite()) {
            Some(v) => Ok(Some(v)),
            None => Err(self.error(&location, format!("{} (frame {})", describe(value), self.index))),
        }
    }

    fn frame_string(&self, key: &str) -> Result<Option<&str>, DatasetError> {
        match self.frame.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.error(&format!("frames[{}].{key}", self.index), "expected a string")),
        }
    }

    fn frame_split(&self) -> Result<Option<Split>, DatasetError> {
        match self.frame_string("split")? {
            None => Ok(None),
            Some("train") => Ok(Some(Split::Train)),
            Some("test" | "val") => Ok(Some(Split::Test)),
            Some(other) => Err(self
                .error(&format!("frames[{}].split", self.index), format!("'{other}' is not one of train, test, val"))),
        }
    }

    /// An image side (`w` / `h`): a positive whole number, possibly written as `1080.0`.
    fn side(&self, key: &str, value: f64) -> Result<u32, DatasetError> {
        if (1.0..=MAX_IMAGE_SIDE).contains(&value) && value.fract() == 0.0 {
            return Ok(value as u32);
        }
        let location = self.get(key).map_or_else(|| key.to_string(), |(_, l)| l);
        Err(self.error(&location, format!("{value} is not a positive whole number of pixels")))
    }

    fn intrinsics(&self, image_path: &Path) -> Result<Intrinsics, DatasetError> {
        let (width, height) = match (self.number("w")?, self.number("h")?) {
            (Some(w), Some(h)) => (self.side("w", w)?, self.side("h", h)?),
            _ => image::image_dimensions(image_path)
                .map_err(|source| DatasetError::Decode { path: image_path.to_path_buf(), source })?,
        };
        let focal_from_angle = |side: u32, angle: f64| 0.5 * side as f64 / (0.5 * angle).tan();
        let fx = match (self.number("fl_x")?, self.number("camera_angle_x")?) {
            (Some(f), _) => f,
            (None, Some(angle)) => focal_from_angle(width, angle),
            (None, None) => {
                return Err(
                    self.error(&self.frame_location(), "no fl_x and no camera_angle_x, here or at the top level")
                );
            }
        };
        let fy = match (self.number("fl_y")?, self.number("camera_angle_y")?) {
            (Some(f), _) => f,
            (None, Some(angle)) => focal_from_angle(height, angle),
            (None, None) => fx,
        };
        if !(fx > 0.0 && fy > 0.0 && fx.is_finite() && fy.is_finite()) {
            return Err(self.error(&self.frame_location(), format!("focal lengths {fx}, {fy} are not positive")));
        }
        let cx = self.number("cx")?.unwrap_or(width as f64 / 2.0);
        let cy = self.number("cy")?.unwrap_or(height as f64 / 2.0);
        Ok(Intrinsics { fx: fx as f32, fy: fy as f32, cx: cx as f32, cy: cy as f32, width, height })
    }

    fn distortion(&self) -> Result<Distortion, DatasetError> {
        let coefficient = |key: &str| self.number(key).map(|v| v.unwrap_or(0.0) as f32);
        let (model, location) = match self.get("camera_model") {
            None => ("OPENCV", String::new()),
            Some((Value::String(model), location)) => (model.as_str(), location),
            Some((_, location)) => return Err(self.error(&location, "expected a string")),
        };
        match model {
            "PINHOLE" => Ok(Distortion::default()),
            "OPENCV" => {
                if coefficient("k4")? != 0.0 {
                    return Err(self.error(&self.frame_location(), "k4 is not part of the OPENCV model"));
                }
                Ok(Distortion {
                    k1: coefficient("k1")?,
                    k2: coefficient("k2")?,
                    p1: coefficient("p1")?,
                    p2: coefficient("p2")?,
                    k3: coefficient("k3")?,
                })
            }
            other => {
                Err(self
                    .error(&location, format!("camera model '{other}' is not supported (supported: OPENCV, PINHOLE)")))
            }
        }
    }

    /// `transform_matrix`: camera-to-world, OpenGL camera axes, rows of 4 (3 or 4 rows).
    fn pose(&self) -> Result<WorldFromCameraCv, DatasetError> {
        let location = format!("frames[{}].transform_matrix", self.index);
        let bad = |problem: String| self.error(&location, problem);
        let rows = match self.frame.get("transform_matrix") {
            Some(Value::Array(rows)) if rows.len() == 3 || rows.len() == 4 => rows,
            Some(_) => return Err(bad("expected 3 or 4 rows of 4 numbers".into())),
            None => return Err(bad("missing".into())),
        };
        let mut m = [[0.0f64, 0.0, 0.0, 0.0], [0.0; 4], [0.0; 4], [0.0, 0.0, 0.0, 1.0]];
        for (r, row) in rows.iter().enumerate() {
            let row =
                row.as_array().filter(|row| row.len() == 4).ok_or_else(|| bad(format!("row {r} is not 4 numbers")))?;
            for (c, value) in row.iter().enumerate() {
                m[r][c] = value
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| bad(format!("element [{r}][{c}] is {}", describe(value))))?;
            }
        }
        if m[3].iter().zip([0.0, 0.0, 0.0, 1.0]).any(|(a, b)| (a - b).abs() > ORTHONORMAL_TOLERANCE) {
            return Err(bad(format!("last row {:?} is not [0, 0, 0, 1]", m[3])));
        }
        let deviation = rotation_deviation(&m);
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        if deviation > ORTHONORMAL_TOLERANCE || det < 0.0 {
            return Err(bad(format!(
                "rotation part is not a rotation (max |RᵀR − I| = {deviation:.2e}, det = {det:.3})"
            )));
        }
        let column = |c: usize| Vec3::new(m[0][c] as f32, m[1][c] as f32, m[2][c] as f32);
        let world_from_camera =
            WorldFromCameraGl { rotation: Mat3::from_cols(column(0), column(1), column(2)), translation: column(3) };
        Ok(world_from_camera.to_cv())
    }
}

/// `max |RᵀR − I|` of the upper-left 3×3 block of row-major `m`.
fn rotation_deviation(m: &[[f64; 4]; 4]) -> f64 {
    let mut deviation = 0.0f64;
    for a in 0..3 {
        for b in 0..3 {
            let dot: f64 = (0..3).map(|k| m[k][a] * m[k][b]).sum();
            let identity = if a == b { 1.0 } else { 0.0 };
            deviation = deviation.max((dot - identity).abs());
        }
    }
    deviation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_nonfinite_literals_become_null_outside_strings() {
        let text = r#"{"a": NaN, "b": [-Infinity, Infinity], "c": "NaN \" Infinity", "d": 1.5}"#;
        let value: Value = serde_json::from_str(&nonfinite_literals_to_null(text)).unwrap();
        assert_eq!(value["a"], Value::Null);
        assert_eq!(value["b"], serde_json::json!([null, null]));
        assert_eq!(value["c"], "NaN \" Infinity");
        assert_eq!(value["d"], 1.5);
    }

    #[test]
    fn dataset_split_lists_ignore_dot_slash() {
        let root: Value = serde_json::json!({"test_filenames": ["./images/a.jpg"]});
        let split = NamedSplit::read(root.as_object().unwrap(), Path::new("t.json")).unwrap().unwrap();
        assert_eq!(split.of("images/a.jpg"), Split::Test);
        assert_eq!(split.of("images/b.jpg"), Split::Train);
    }
}
