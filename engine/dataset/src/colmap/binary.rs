//! COLMAP's binary model format (`cameras.bin`, `images.bin`, `points3D.bin`), little-endian, as
//! written by `colmap/scene/reconstruction_io.cc`. Errors name the file, the byte offset and the
//! record; counts are never trusted for allocation beyond what the file size allows.

use std::io::Write;
use std::path::Path;

use crate::DatasetError;
use crate::colmap::{CameraModel, ColmapCamera, ColmapImage, ColmapPoint3D, Point2D, TrackElement, unsupported_model};
use kiln_core::atomic_file::write_atomically;

/// Bytes of the smallest camera record: id, model, width, height (no parameters).
const MIN_CAMERA_BYTES: usize = 4 + 4 + 8 + 8;
/// Bytes of the smallest image record: id, qvec, tvec, camera id, empty name, point count.
const MIN_IMAGE_BYTES: usize = 4 + 32 + 24 + 4 + 1 + 8;
/// Bytes of one 2D point: x, y, 3D point id.
const POINT2D_BYTES: usize = 8 + 8 + 8;
/// Bytes of the smallest 3D point record: id, xyz, rgb, error, track length.
const MIN_POINT3D_BYTES: usize = 8 + 24 + 3 + 8 + 8;
/// Bytes of one track element: image id, 2D point index.
const TRACK_ELEMENT_BYTES: usize = 4 + 4;
/// COLMAP's "no 3D point" id (`kInvalidPoint3DId`, the largest `uint64`).
const INVALID_POINT3D_ID: u64 = u64::MAX;

/// Reads little-endian values from a file's bytes, naming the offset and record on error.
struct Reader<'a> {
    path: &'a Path,
    data: Vec<u8>,
    pos: usize,
    /// The record being read, e.g. "image record 3", for messages.
    record: String,
}

impl<'a> Reader<'a> {
    fn open(path: &'a Path) -> Result<Self, DatasetError> {
        let data = std::fs::read(path).map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })?;
        Ok(Self { path, data, pos: 0, record: "header".into() })
    }

    fn error(&self, problem: impl Into<String>) -> DatasetError {
        DatasetError::Invalid {
            path: self.path.to_path_buf(),
            location: format!("byte {} ({})", self.pos, self.record),
            problem: problem.into(),
        }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DatasetError> {
        let mut out = [0u8; N];
        let slice = self.data.get(self.pos..self.pos + N).ok_or_else(|| {
            self.error(format!("file is truncated: {what} needs {N} bytes, {} left", self.remaining()))
        })?;
        out.copy_from_slice(slice);
        self.pos += N;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DatasetError> {
        Ok(self.bytes::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, DatasetError> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn i32(&mut self, what: &str) -> Result<i32, DatasetError> {
        Ok(i32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DatasetError> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    fn f64(&mut self, what: &str) -> Result<f64, DatasetError> {
        let value = f64::from_le_bytes(self.bytes(what)?);
        if !value.is_finite() {
            return Err(self.error(format!("{what} is {value}")));
        }
        Ok(value)
    }

    fn f64s<const N: usize>(&mut self, what: &str) -> Result<[f64; N], DatasetError> {
        let mut out = [0.0; N];
        for value in &mut out {
            *value = self.f64(what)?;
        }
        Ok(out)
    }

    /// A record count, checked against the bytes left (each item needs at least `min_bytes`).
    fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize, DatasetError> {
        let count = self.u64(what)?;
        let possible = (self.remaining() / min_bytes) as u64;
        if count > possible {
            return Err(self.error(format!(
                "{what} is {count} but only {} bytes follow (room for at most {possible}): file is truncated or corrupt",
                self.remaining()
            )));
        }
        Ok(count as usize)
    }

    /// A NUL-terminated UTF-8 string.
    fn name(&mut self) -> Result<String, DatasetError> {
        let rest = &self.data[self.pos..];
        let len =
            rest.iter().position(|&b| b == 0).ok_or_else(|| self.error("file is truncated inside an image name"))?;
        let name = std::str::from_utf8(&rest[..len]).map_err(|_| self.error("image name is not UTF-8"))?.to_string();
        self.pos += len + 1;
        Ok(name)
    }

    fn finish(mut self) -> Result<(), DatasetError> {
        self.record = "end".into();
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error(format!("{n} unexpected bytes after the last record"))),
        }
    }
}

pub(super) fn read_cameras(path: &Path) -> Result<Vec<ColmapCamera>, DatasetError> {
    let mut r = Reader::open(path)?;
    let count = r.count("camera count", MIN_CAMERA_BYTES)?;
    let mut cameras = Vec::with_capacity(count);
    for index in 0..count {
        r.record = format!("camera record {index}");
        let camera_id = r.u32("camera id")?;
        let model_id = r.i32("model id")?;
        let model =
            CameraModel::from_id(model_id).ok_or_else(|| r.error(unsupported_model(&format!("id {model_id}"))))?;
        let width = r.u64("width")?;
        let height = r.u64("height")?;
        let params = (0..model.num_params()).map(|_| r.f64("camera parameter")).collect::<Result<_, _>>()?;
        cameras.push(ColmapCamera { camera_id, model, width, height, params });
    }
    r.finish()?;
    Ok(cameras)
}

pub(super) fn read_images(path: &Path) -> Result<Vec<ColmapImage>, DatasetError> {
    let mut r = Reader::open(path)?;
    let count = r.count("image count", MIN_IMAGE_BYTES)?;
    let mut images = Vec::with_capacity(count);
    for index in 0..count {
        r.record = format!("image record {index}");
        let image_id = r.u32("image id")?;
        let qvec = r.f64s::<4>("qvec")?;
        let tvec = r.f64s::<3>("tvec")?;
        let camera_id = r.u32("camera id")?;
        let name = r.name()?;
        let num_points = r.count("2D point count", POINT2D_BYTES)?;
        let mut points2d = Vec::with_capacity(num_points);
        for _ in 0..num_points {
            let xy = r.f64s::<2>("2D point")?;
            let id = r.u64("3D point id")?;
            points2d.push(Point2D { xy, point3d_id: (id != INVALID_POINT3D_ID).then_some(id) });
        }
        images.push(ColmapImage { image_id, qvec, tvec, camera_id, name, points2d });
    }
    r.finish()?;
    Ok(images)
}

pub(super) fn read_points3d(path: &Path) -> Result<Vec<ColmapPoint3D>, DatasetError> {
    let mut r = Reader::open(path)?;
    let count = r.count("point count", MIN_POINT3D_BYTES)?;
    let mut points = Vec::with_capacity(count);
    for index in 0..count {
        r.record = format!("point record {index}");
        let point3d_id = r.u64("point id")?;
        let xyz = r.f64s::<3>("xyz")?;
        let rgb = [r.u8("red")?, r.u8("green")?, r.u8("blue")?];
        let error = r.f64("error")?;
        let track_len = r.count("track length", TRACK_ELEMENT_BYTES)?;
        let mut track = Vec::with_capacity(track_len);
        for _ in 0..track_len {
            track
                .push(TrackElement { image_id: r.u32("track image id")?, point2d_idx: r.u32("track 2D point index")? });
        }
        points.push(ColmapPoint3D { point3d_id, xyz, rgb, error, track });
    }
    r.finish()?;
    Ok(points)
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), DatasetError> {
    write_atomically(path, |w| w.write_all(bytes))
        .map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })
}

fn put_f64s(out: &mut Vec<u8>, values: &[f64]) {
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

pub(super) fn write_cameras(path: &Path, cameras: &[ColmapCamera]) -> Result<(), DatasetError> {
    let mut out = Vec::with_capacity(8 + cameras.len() * (MIN_CAMERA_BYTES + 64));
    out.extend_from_slice(&(cameras.len() as u64).to_le_bytes());
    for c in cameras {
        out.extend_from_slice(&c.camera_id.to_le_bytes());
        out.extend_from_slice(&c.model.id().to_le_bytes());
        out.extend_from_slice(&c.width.to_le_bytes());
        out.extend_from_slice(&c.height.to_le_bytes());
        put_f64s(&mut out, &c.params);
    }
    write_bytes(path, &out)
}

pub(super) fn write_images(path: &Path, images: &[ColmapImage]) -> Result<(), DatasetError> {
    if let Some(bad) = images.iter().find(|i| i.name.contains('\0')) {
        return Err(DatasetError::Invalid {
            path: path.to_path_buf(),
            location: format!("image {}", bad.image_id),
            problem: "image name contains a NUL byte".into(),
        });
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(images.len() as u64).to_le_bytes());
    for i in images {
        out.extend_from_slice(&i.image_id.to_le_bytes());
        put_f64s(&mut out, &i.qvec);
        put_f64s(&mut out, &i.tvec);
        out.extend_from_slice(&i.camera_id.to_le_bytes());
        out.extend_from_slice(i.name.as_bytes());
        out.push(0);
        out.extend_from_slice(&(i.points2d.len() as u64).to_le_bytes());
        for p in &i.points2d {
            put_f64s(&mut out, &p.xy);
            out.extend_from_slice(&p.point3d_id.unwrap_or(INVALID_POINT3D_ID).to_le_bytes());
        }
    }
    write_bytes(path, &out)
}

pub(super) fn write_points3d(path: &Path, points: &[ColmapPoint3D]) -> Result<(), DatasetError> {
    let mut out = Vec::with_capacity(8 + points.len() * (MIN_POINT3D_BYTES + 4 * TRACK_ELEMENT_BYTES));
    out.extend_from_slice(&(points.len() as u64).to_le_bytes());
    for p in points {
        out.extend_from_slice(&p.point3d_id.to_le_bytes());
        put_f64s(&mut out, &p.xyz);
        out.extend_from_slice(&p.rgb);
        put_f64s(&mut out, &[p.error]);
        out.extend_from_slice(&(p.track.len() as u64).to_le_bytes());
        for t in &p.track {
            out.extend_from_slice(&t.image_id.to_le_bytes());
            out.extend_from_slice(&t.point2d_idx.to_le_bytes());
        }
    }
    write_bytes(path, &out)
}
