//! The export frame: glTF and USD files are in metres with +Y up, while Kiln's world is whatever
//! the input poses use (Blender's +Z up, COLMAP's arbitrary frame, any unit).
//!
//! [`ExportFrame::new`] builds `export_from_world` = translate · scale · rotate:
//! - **rotate**: the world's up direction (the ground plane's normal when cleanup found one, else
//!   the mean camera up vector, see [`mean_camera_up`]) onto +Y, by the shortest rotation;
//! - **scale**: metres per world unit: 1 when the input is taken as metric (bunny-synth is), or
//!   from a known distance between two world points, or from the object's known size along
//!   its longest side, times the user's `scale` ([`ScaleSource`] says which);
//! - **translate**: the object's lowest point to y = 0 and its bounding box centred in x and z.
//!
//! The rotation is proper and the scale uniform and positive, so triangle winding and normals
//! (rotated only) stay valid.

use std::str::FromStr;

use glam::{DMat4, DQuat, DVec3, DVec4};

use crate::ExportError;
use kiln_core::camera::Camera;
use kiln_core::mesh::TriMesh;

/// Shortest world distance accepted for a known distance or an up vector; anything smaller is a
/// degenerate input rather than a measurement.
const MIN_LENGTH: f64 = 1e-12;

/// "The distance between these two world points is `millimetres`": fixes the metric scale of a
/// reconstruction whose poses have no unit (SfM).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnownDistance {
    pub a: DVec3,
    pub b: DVec3,
    pub millimetres: f64,
}

impl FromStr for KnownDistance {
    type Err = String;

    /// Parses `x1,y1,z1:x2,y2,z2=N` (N in millimetres, an optional `mm` suffix allowed).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?}: expected x1,y1,z1:x2,y2,z2=N (N in millimetres)");
        let (points, length) = text.split_once('=').ok_or_else(bad)?;
        let (a, b) = points.split_once(':').ok_or_else(bad)?;
        let millimetres: f64 = length.trim().trim_end_matches("mm").trim().parse().map_err(|_| bad())?;
        let known = Self { a: parse_point(a).ok_or_else(bad)?, b: parse_point(b).ok_or_else(bad)?, millimetres };
        if !(millimetres > 0.0 && millimetres.is_finite()) || known.a.distance(known.b) < MIN_LENGTH {
            return Err(format!("{text:?}: the distance must be positive between two distinct points"));
        }
        Ok(known)
    }
}

fn parse_point(text: &str) -> Option<DVec3> {
    let values: Vec<f64> = text.split(',').map(|v| v.trim().parse().ok()).collect::<Option<_>>()?;
    match values[..] {
        [x, y, z] if values.iter().all(|v| v.is_finite()) => Some(DVec3::new(x, y, z)),
        _ => None,
    }
}

/// The user's choices for the export frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameOptions {
    /// Multiplies the metric scale (e.g. to correct a known error).
    pub scale: f64,
    /// Sets metres per world unit from a measured distance; `None` takes world units as metres.
    pub known_distance: Option<KnownDistance>,
    /// The object's longest side (of its upright bounding box), millimetres: sets metres per
    /// world unit from the mesh itself.
    pub size_mm: Option<f64>,
}

impl Default for FrameOptions {
    fn default() -> Self {
        Self { scale: 1.0, known_distance: None, size_mm: None }
    }
}

impl FrameOptions {
    /// Where the export's metric scale comes from with these options.
    pub fn scale_source(&self) -> ScaleSource {
        if self.known_distance.is_some() || self.size_mm.is_some() { ScaleSource::User } else { ScaleSource::Unknown }
    }
}

pub use kiln_protocol::ScaleSource;

/// The transform from the input's world to the exported frame (metres, +Y up, base at y = 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExportFrame {
    pub export_from_world: DMat4,
    /// Metres per world unit (the uniform scale inside `export_from_world`).
    pub metres_per_world_unit: f64,
}

impl ExportFrame {
    /// The frame that stands `mesh_in_world` upright (`up_in_world` → +Y), in metres, with its
    /// lowest point at y = 0 and its bounding box centred in x and z.
    pub fn new(mesh_in_world: &TriMesh, up_in_world: DVec3, options: &FrameOptions) -> Result<Self, ExportError> {
        if up_in_world.length() < MIN_LENGTH || !up_in_world.is_finite() {
            return Err(ExportError::Frame(format!("up vector {up_in_world} is not a direction")));
        }
        let rotation = DQuat::from_rotation_arc(up_in_world.normalize(), DVec3::Y);
        let metres_per_world_unit = match options.size_mm {
            Some(size_mm) => metres_for_size(mesh_in_world, rotation, size_mm)? * options.scale,
            None => metres_per_world_unit(options)?,
        };
        let scaled_from_world =
            DMat4::from_scale_rotation_translation(DVec3::splat(metres_per_world_unit), rotation, DVec3::ZERO);
        let (lo, hi) = transformed_bounds(mesh_in_world, &scaled_from_world)
            .ok_or_else(|| ExportError::InvalidMesh("the mesh has no vertices".into()))?;
        let offset = DVec3::new(-0.5 * (lo.x + hi.x), -lo.y, -0.5 * (lo.z + hi.z));
        Ok(Self { export_from_world: DMat4::from_translation(offset) * scaled_from_world, metres_per_world_unit })
    }

    /// The frame of an object standing on a support whose metric frame is known (the
    /// calibration mat): `support_from_world` takes world points to millimetres with the support
    /// at z = 0 and +Z up. The support's +Z becomes +Y, its plane y = 0 (not the mesh's lowest
    /// point: the object rests on it), millimetres become metres times the user's `scale`, and
    /// the mesh's bounding box is centred in x and z.
    pub fn on_support(
        mesh_in_world: &TriMesh,
        support_from_world: DMat4,
        options: &FrameOptions,
    ) -> Result<Self, ExportError> {
        if !(options.scale > 0.0 && options.scale.is_finite()) {
            return Err(ExportError::Frame(format!("scale {} must be positive", options.scale)));
        }
        let millimetres_per_world_unit = support_from_world.x_axis.truncate().length();
        if !(millimetres_per_world_unit > MIN_LENGTH && millimetres_per_world_unit.is_finite()) {
            return Err(ExportError::Frame("the support's frame has no scale".into()));
        }
        // Support +X stays +X, +Y goes to −Z, +Z (up) to +Y: a proper rotation.
        let y_up_from_z_up = DMat4::from_cols(DVec4::X, DVec4::NEG_Z, DVec4::Y, DVec4::W);
        let scaled = DMat4::from_scale(DVec3::splat(1e-3 * options.scale)) * y_up_from_z_up * support_from_world;
        let (lo, hi) = transformed_bounds(mesh_in_world, &scaled)
            .ok_or_else(|| ExportError::InvalidMesh("the mesh has no vertices".into()))?;
        let offset = DVec3::new(-0.5 * (lo.x + hi.x), 0.0, -0.5 * (lo.z + hi.z));
        Ok(Self {
            export_from_world: DMat4::from_translation(offset) * scaled,
            metres_per_world_unit: 1e-3 * options.scale * millimetres_per_world_unit,
        })
    }

    pub fn transform_point(&self, point_in_world: DVec3) -> DVec3 {
        self.export_from_world.transform_point3(point_in_world)
    }

    /// `export_from_world` as 16 numbers, row after row (the layout `mesh.json` records).
    pub fn row_major(&self) -> [f64; 16] {
        self.export_from_world.transpose().to_cols_array()
    }

    /// Reads a row-major 4×4 back (as written by [`ExportFrame::row_major`]).
    pub fn from_row_major(rows: &[f64; 16]) -> Self {
        let export_from_world = DMat4::from_cols_array(rows).transpose();
        let metres_per_world_unit = export_from_world.x_axis.truncate().length();
        Self { export_from_world, metres_per_world_unit }
    }

    /// The mesh in the export frame: positions transformed, normals rotated (and renormalised);
    /// triangles, UVs and colours unchanged.
    pub fn apply(&self, mesh_in_world: &TriMesh) -> TriMesh {
        let rotation = glam::DMat3::from_mat4(self.export_from_world) / self.metres_per_world_unit.max(MIN_LENGTH);
        let to_f32 = |v: DVec3| [v.x as f32, v.y as f32, v.z as f32];
        let positions = mesh_in_world.positions.iter().map(|p| to_f32(self.transform_point(as_dvec3(p)))).collect();
        let normals =
            mesh_in_world.normals.iter().map(|n| to_f32((rotation * as_dvec3(n)).normalize_or_zero())).collect();
        TriMesh { positions, normals, ..mesh_in_world.clone() }
    }
}

fn as_dvec3(p: &[f32; 3]) -> DVec3 {
    DVec3::new(f64::from(p[0]), f64::from(p[1]), f64::from(p[2]))
}

/// Metres per world unit that make the longest side of `mesh`'s bounding box, upright
/// (`rotation` applied), `size_mm` millimetres.
fn metres_for_size(mesh: &TriMesh, rotation: DQuat, size_mm: f64) -> Result<f64, ExportError> {
    if !(size_mm > 0.0 && size_mm.is_finite()) {
        return Err(ExportError::Frame(format!("object size {size_mm} mm must be positive")));
    }
    let (lo, hi) = transformed_bounds(mesh, &DMat4::from_quat(rotation))
        .ok_or_else(|| ExportError::InvalidMesh("the mesh has no vertices".into()))?;
    let longest = (hi - lo).max_element();
    if longest < MIN_LENGTH {
        return Err(ExportError::Frame("the mesh has no extent to scale to a size".into()));
    }
    Ok(size_mm * 1e-3 / longest)
}

fn metres_per_world_unit(options: &FrameOptions) -> Result<f64, ExportError> {
    if !(options.scale > 0.0 && options.scale.is_finite()) {
        return Err(ExportError::Frame(format!("scale {} must be positive", options.scale)));
    }
    let from_distance = match options.known_distance {
        Some(known) => {
            let world_length = known.a.distance(known.b);
            if world_length < MIN_LENGTH || known.millimetres <= 0.0 {
                return Err(ExportError::Frame("known distance between coincident points".into()));
            }
            known.millimetres * 1e-3 / world_length
        }
        None => 1.0,
    };
    Ok(from_distance * options.scale)
}

fn transformed_bounds(mesh: &TriMesh, target_from_world: &DMat4) -> Option<(DVec3, DVec3)> {
    let mut points = mesh.positions.iter().map(|p| target_from_world.transform_point3(as_dvec3(p)));
    let first = points.next()?;
    Some(points.fold((first, first), |(lo, hi), p| (lo.min(p), hi.max(p))))
}

/// The mean up direction of the cameras in world coordinates (OpenCV cameras: up is the camera's
/// −Y axis), normalised; `None` without cameras or when they cancel out.
pub fn mean_camera_up(cameras: &[Camera]) -> Option<DVec3> {
    let sum: DVec3 = cameras.iter().map(|c| -c.world_from_camera.rotation.y_axis.as_dvec3()).sum();
    (sum.length() > MIN_LENGTH).then(|| sum.normalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use glam::{Mat3, Vec3};
    use kiln_core::camera::{Intrinsics, WorldFromCameraGl};

    /// A tetrahedron standing on z = 0.1 in a +Z-up world, centred at (2, 3) in x/y.
    fn z_up_tetrahedron() -> TriMesh {
        TriMesh {
            positions: vec![[1.5, 2.5, 0.1], [2.5, 2.5, 0.1], [2.0, 3.5, 0.1], [2.0, 3.0, 0.6]],
            triangles: vec![[0, 2, 1], [0, 1, 3], [1, 2, 3], [2, 0, 3]],
            normals: vec![[0.0, 0.0, 1.0]; 4],
            ..Default::default()
        }
    }

    #[test]
    fn z_up_world_comes_out_y_up_with_base_at_zero() {
        let mesh = z_up_tetrahedron();
        let frame = ExportFrame::new(&mesh, DVec3::Z, &FrameOptions::default()).unwrap();
        let out = frame.apply(&mesh);
        let (lo, hi) = out.bounds().unwrap();
        assert!(lo[1].abs() < 1e-6, "base at y = 0, got {}", lo[1]);
        assert!((hi[1] - 0.5).abs() < 1e-6, "height 0.5 along +Y, got {}", hi[1]);
        assert!((lo[0] + hi[0]).abs() < 1e-6 && (lo[2] + hi[2]).abs() < 1e-6, "centred in x/z");
        // The apex (world +Z) is straight above the base centre: +Y in the export frame.
        let apex = frame.transform_point(DVec3::new(2.0, 3.0, 0.6));
        assert!((apex - DVec3::new(0.0, 0.5, 0.0)).length() < 1e-6, "{apex}");
        // Rotating +Z onto +Y by the shortest arc sends world +Y to export −Z.
        let along_y =
            frame.transform_point(DVec3::new(2.0, 4.0, 0.1)) - frame.transform_point(DVec3::new(2.0, 3.0, 0.1));
        assert!((along_y - DVec3::NEG_Z).length() < 1e-9, "{along_y}");
        assert!((out.normals[0][1] - 1.0).abs() < 1e-6, "a +Z normal becomes +Y");
    }

    #[test]
    fn a_known_size_scales_the_longest_upright_side() {
        // Upright, the tetrahedron is 1.0 × 0.5 × 1.0 world units: its longest side is 1.0.
        let mesh = z_up_tetrahedron();
        let options = FrameOptions { size_mm: Some(150.0), ..Default::default() };
        assert_eq!(options.scale_source(), ScaleSource::User);
        let frame = ExportFrame::new(&mesh, DVec3::Z, &options).unwrap();
        assert!((frame.metres_per_world_unit - 0.15).abs() < 1e-12, "{}", frame.metres_per_world_unit);
        let (lo, hi) = frame.apply(&mesh).bounds().unwrap();
        let longest = (0..3).map(|k| hi[k] - lo[k]).fold(0.0f32, f32::max);
        assert!((longest - 0.15).abs() < 1e-6, "{longest}");
        assert_eq!(FrameOptions::default().scale_source(), ScaleSource::Unknown);
        let bad = FrameOptions { size_mm: Some(-1.0), ..Default::default() };
        assert!(ExportFrame::new(&mesh, DVec3::Z, &bad).is_err());
    }

    #[test]
    fn known_distance_sets_metres_and_scale_multiplies() {
        let mesh = z_up_tetrahedron();
        let known: KnownDistance = "0,0,0:0,0,2=500".parse().unwrap();
        let options = FrameOptions { scale: 2.0, known_distance: Some(known), ..Default::default() };
        let frame = ExportFrame::new(&mesh, DVec3::Z, &options).unwrap();
        // 2 world units are 0.5 m, times 2.
        assert!((frame.metres_per_world_unit - 0.5).abs() < 1e-12);
        let a = frame.transform_point(DVec3::new(2.0, 3.0, 0.1));
        let b = frame.transform_point(DVec3::new(2.0, 3.0, 0.6));
        assert!(((b - a).length() - 0.25).abs() < 1e-9);
        assert!("1,2:3,4,5=10".parse::<KnownDistance>().is_err());
        assert!("1,2,3:1,2,3=10".parse::<KnownDistance>().is_err());
        assert_eq!("0,0,0:1,0,0=25mm".parse::<KnownDistance>().unwrap().millimetres, 25.0);
    }

    #[test]
    fn a_support_frame_puts_its_plane_at_y_zero_in_metres() {
        // A world at 1/100 of millimetres (1 unit = 100 mm) whose support is the plane z = 0.1
        // with +Z up: support_from_world scales by 100 and drops the plane to z = 0.
        let mesh = z_up_tetrahedron();
        let support_from_world =
            DMat4::from_translation(DVec3::new(0.0, 0.0, -10.0)) * DMat4::from_scale(DVec3::splat(100.0));
        let frame = ExportFrame::on_support(&mesh, support_from_world, &FrameOptions::default()).unwrap();
        assert!((frame.metres_per_world_unit - 0.1).abs() < 1e-12);
        let (lo, hi) = frame.apply(&mesh).bounds().unwrap();
        assert!(
            lo[1].abs() < 1e-6 && (hi[1] - 0.05).abs() < 1e-6,
            "on the plane, 0.5 units = 50 mm tall: {lo:?} {hi:?}"
        );
        assert!((lo[0] + hi[0]).abs() < 1e-6 && (lo[2] + hi[2]).abs() < 1e-6, "centred in x/z");
        let up = frame.transform_point(DVec3::new(2.0, 3.0, 0.6)) - frame.transform_point(DVec3::new(2.0, 3.0, 0.1));
        assert!((up - DVec3::new(0.0, 0.05, 0.0)).length() < 1e-9, "{up}");
        assert!(ExportFrame::on_support(&mesh, DMat4::ZERO, &FrameOptions::default()).is_err());
    }

    #[test]
    fn row_major_round_trips_and_has_translation_last_column() {
        let mesh = z_up_tetrahedron();
        let frame = ExportFrame::new(&mesh, DVec3::new(0.1, 0.2, 1.0), &FrameOptions::default()).unwrap();
        let rows = frame.row_major();
        let t = frame.export_from_world.w_axis;
        assert_eq!([rows[3], rows[7], rows[11], rows[15]], [t.x, t.y, t.z, 1.0]);
        let back = ExportFrame::from_row_major(&rows);
        assert!(back.export_from_world.abs_diff_eq(frame.export_from_world, 1e-15));
        assert!((back.metres_per_world_unit - 1.0).abs() < 1e-12);
    }

    #[test]
    fn mean_camera_up_of_blender_cameras_is_world_z() {
        // Blender-style cameras on a ring, looking at the origin from 30° elevation, no roll.
        let intrinsics = Intrinsics { fx: 100.0, fy: 100.0, cx: 50.0, cy: 50.0, width: 100, height: 100 };
        let cameras: Vec<Camera> = (0..8)
            .map(|i| {
                let azimuth = i as f32 * std::f32::consts::TAU / 8.0;
                let centre = Vec3::new(azimuth.cos(), azimuth.sin(), 0.577);
                let back = centre.normalize(); // OpenGL camera +Z points away from the target
                let right = Vec3::Z.cross(back).normalize();
                let up = back.cross(right);
                let gl = WorldFromCameraGl { rotation: Mat3::from_cols(right, up, back), translation: centre };
                Camera { intrinsics, world_from_camera: gl.to_cv() }
            })
            .collect();
        let up = mean_camera_up(&cameras).unwrap();
        assert!((up - DVec3::Z).length() < 1e-5, "{up}");
        assert!(mean_camera_up(&[]).is_none());
    }
}
