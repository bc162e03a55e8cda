//! COLMAP's text model format (`cameras.txt`, `images.txt`, `points3D.txt`): one record per line
//! (two per image), `#` comments. Errors name the file and line.

use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use crate::DatasetError;
use crate::colmap::{CameraModel, ColmapCamera, ColmapImage, ColmapPoint3D, Point2D, TrackElement, unsupported_model};
use kiln_core::atomic_file::write_atomically;

fn read_text(path: &Path) -> Result<String, DatasetError> {
    std::fs::read_to_string(path).map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })
}

fn is_data(line: &str) -> bool {
    let line = line.trim();
    !line.is_empty() && !line.starts_with('#')
}

/// The whitespace-separated fields of one line, parsed with errors that name file and line.
struct Fields<'a> {
    path: &'a Path,
    line: usize,
    rest: &'a str,
}

impl<'a> Fields<'a> {
    fn new(path: &'a Path, index: usize, text: &'a str) -> Self {
        Self { path, line: index + 1, rest: text.trim() }
    }

    fn error(&self, problem: impl Into<String>) -> DatasetError {
        DatasetError::Invalid {
            path: self.path.to_path_buf(),
            location: format!("line {}", self.line),
            problem: problem.into(),
        }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn token(&mut self, what: &str) -> Result<&'a str, DatasetError> {
        let rest = self.rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if end == 0 {
            return Err(self.error(format!("missing {what}")));
        }
        self.rest = &rest[end..];
        Ok(&rest[..end])
    }

    fn parse<T: FromStr>(&mut self, what: &str) -> Result<T, DatasetError> {
        let token = self.token(what)?;
        token.parse().map_err(|_| self.error(format!("{what} '{token}' is not valid")))
    }

    fn real(&mut self, what: &str) -> Result<f64, DatasetError> {
        let value: f64 = self.parse(what)?;
        if !value.is_finite() {
            return Err(self.error(format!("{what} is {value}")));
        }
        Ok(value)
    }

    fn reals<const N: usize>(&mut self, what: &str) -> Result<[f64; N], DatasetError> {
        let mut out = [0.0; N];
        for value in &mut out {
            *value = self.real(what)?;
        }
        Ok(out)
    }

    fn finish(&self) -> Result<(), DatasetError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!("unexpected extra fields '{}'", self.rest.trim())))
        }
    }
}

pub(super) fn read_cameras(path: &Path) -> Result<Vec<ColmapCamera>, DatasetError> {
    let text = read_text(path)?;
    let mut cameras = Vec::new();
    for (index, line) in text.lines().enumerate().filter(|(_, line)| is_data(line)) {
        let mut fields = Fields::new(path, index, line);
        let camera_id = fields.parse("CAMERA_ID")?;
        let model_name = fields.token("MODEL")?;
        let model = CameraModel::from_name(model_name).ok_or_else(|| fields.error(unsupported_model(model_name)))?;
        let width = fields.parse("WIDTH")?;
        let height = fields.parse("HEIGHT")?;
        let params = (0..model.num_params()).map(|_| fields.real("camera parameter")).collect::<Result<_, _>>()?;
        fields.finish()?;
        cameras.push(ColmapCamera { camera_id, model, width, height, params });
    }
    Ok(cameras)
}

pub(super) fn read_images(path: &Path) -> Result<Vec<ColmapImage>, DatasetError> {
    let text = read_text(path)?;
    let mut lines = text.lines().enumerate();
    let mut images = Vec::new();
    while let Some((index, line)) = lines.by_ref().find(|(_, line)| is_data(line)) {
        let mut fields = Fields::new(path, index, line);
        let image_id = fields.parse("IMAGE_ID")?;
        let qvec = fields.reals::<4>("QVEC")?;
        let tvec = fields.reals::<3>("TVEC")?;
        let camera_id = fields.parse("CAMERA_ID")?;
        let name = fields.rest.trim().to_string();
        if name.is_empty() {
            return Err(fields.error("missing NAME"));
        }
        // The POINTS2D line always follows, possibly empty (or absent at the very end).
        let (points_index, points_line) = lines.next().unwrap_or((index + 1, ""));
        let mut fields = Fields::new(path, points_index, points_line);
        let mut points2d = Vec::new();
        while !fields.is_empty() {
            let xy = fields.reals::<2>("POINTS2D X/Y")?;
            let id: i64 = fields.parse("POINT3D_ID")?;
            let point3d_id = match id {
                -1 => None,
                id => Some(u64::try_from(id).map_err(|_| fields.error(format!("POINT3D_ID {id} is negative")))?),
            };
            points2d.push(Point2D { xy, point3d_id });
        }
        images.push(ColmapImage { image_id, qvec, tvec, camera_id, name, points2d });
    }
    Ok(images)
}

pub(super) fn read_points3d(path: &Path) -> Result<Vec<ColmapPoint3D>, DatasetError> {
    let text = read_text(path)?;
    let mut points = Vec::new();
    for (index, line) in text.lines().enumerate().filter(|(_, line)| is_data(line)) {
        let mut fields = Fields::new(path, index, line);
        let point3d_id = fields.parse("POINT3D_ID")?;
        let xyz = fields.reals::<3>("XYZ")?;
        let rgb = [fields.parse("R")?, fields.parse("G")?, fields.parse("B")?];
        let error = fields.real("ERROR")?;
        let mut track = Vec::new();
        while !fields.is_empty() {
            track.push(TrackElement {
                image_id: fields.parse("TRACK IMAGE_ID")?,
                point2d_idx: fields.parse("TRACK POINT2D_IDX")?,
            });
        }
        points.push(ColmapPoint3D { point3d_id, xyz, rgb, error, track });
    }
    Ok(points)
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { path: path.to_path_buf(), source }
}

fn join<T: std::fmt::Display>(values: impl IntoIterator<Item = T>) -> String {
    values.into_iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" ")
}

pub(super) fn write_cameras(path: &Path, cameras: &[ColmapCamera]) -> Result<(), DatasetError> {
    write_atomically(path, |w| {
        writeln!(w, "# Camera list with one line of data per camera:")?;
        writeln!(w, "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]")?;
        writeln!(w, "# Number of cameras: {}", cameras.len())?;
        for c in cameras {
            writeln!(w, "{} {} {} {} {}", c.camera_id, c.model.name(), c.width, c.height, join(&c.params))?;
        }
        Ok(())
    })
    .map_err(io_error(path))
}

pub(super) fn write_images(path: &Path, images: &[ColmapImage]) -> Result<(), DatasetError> {
    if let Some(bad) = images.iter().find(|i| i.name.trim() != i.name || i.name.is_empty() || i.name.contains('\n')) {
        return Err(DatasetError::Invalid {
            path: path.to_path_buf(),
            location: format!("image {}", bad.image_id),
            problem: format!("name {:?} cannot be written to a text model", bad.name),
        });
    }
    let observations: usize = images.iter().map(|i| i.points2d.len()).sum();
    write_atomically(path, |w| {
        writeln!(w, "# Image list with two lines of data per image:")?;
        writeln!(w, "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME")?;
        writeln!(w, "#   POINTS2D[] as (X, Y, POINT3D_ID)")?;
        let mean = observations as f64 / images.len().max(1) as f64;
        writeln!(w, "# Number of images: {}, mean observations per image: {mean}", images.len())?;
        for i in images {
            writeln!(w, "{} {} {} {} {}", i.image_id, join(i.qvec), join(i.tvec), i.camera_id, i.name)?;
            let points = i.points2d.iter().map(|p| {
                let id = p.point3d_id.map_or_else(|| "-1".to_string(), |id| id.to_string());
                format!("{} {} {id}", p.xy[0], p.xy[1])
            });
            writeln!(w, "{}", join(points))?;
        }
        Ok(())
    })
    .map_err(io_error(path))
}

pub(super) fn write_points3d(path: &Path, points: &[ColmapPoint3D]) -> Result<(), DatasetError> {
    let observations: usize = points.iter().map(|p| p.track.len()).sum();
    write_atomically(path, |w| {
        writeln!(w, "# 3D point list with one line of data per point:")?;
        writeln!(w, "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)")?;
        let mean = observations as f64 / points.len().max(1) as f64;
        writeln!(w, "# Number of points: {}, mean track length: {mean}", points.len())?;
        for p in points {
            let track = p.track.iter().map(|t| format!("{} {}", t.image_id, t.point2d_idx));
            writeln!(w, "{} {} {} {} {}", p.point3d_id, join(p.xyz), join(p.rgb), p.error, join(track))?;
        }
        Ok(())
    })
    .map_err(io_error(path))
}
