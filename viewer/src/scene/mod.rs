//! [`Scene`]: everything one file or job folder holds, in one frame, ready to draw.
//!
//! # Frame convention
//!
//! All layers share one world frame:
//! - a lone file (splat PLY, GLB/glTF, `transforms.json`, COLMAP model) keeps its own frame;
//! - a Kiln mesh or job folder whose `mesh.json` exists is shown in the **exported frame**
//!   (glTF's: metres, +Y up), because the exported file is what a user gets. Cameras, sparse
//!   points and splats are moved into it with mesh.json's `export_from_world` (a similarity
//!   `x ↦ s·R·x + t`, row-major 4×4): splat centres and camera centres are mapped, splat
//!   log-scales gain `ln s`, splat and camera rotations are pre-multiplied by `R`. Spherical
//!   harmonics are *not* re-expanded: [`SplatLayer::sh_frame_from_world`] keeps `R⁻¹`, and the
//!   renderer turns each view direction back into the input frame before evaluating the SH, which
//!   is exact.
//!
//! Cameras are always [`Camera`]s in the OpenCV convention (+X right, +Y down, looking along +Z).

mod glb;
mod job;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use glam::{DMat4, Mat3, Quat, Vec3};
use kiln_core::camera::{Camera, WorldFromCameraCv};
use kiln_core::splats::Splats;
use kiln_dataset::Dataset;

use crate::ViewerError;

pub use glb::load_gltf;

/// Gaussian splats to draw.
#[derive(Clone, Debug)]
pub struct SplatLayer {
    /// In the scene frame.
    pub splats: Splats,
    /// Rotation from the scene frame to the frame the SH coefficients were fitted in (identity
    /// unless the splats were moved into an export frame, see the module docs).
    pub sh_frame_from_world: Mat3,
    pub source: PathBuf,
}

/// Surface appearance of one primitive (the glTF metallic-roughness subset the viewer shows).
#[derive(Clone, Debug)]
pub struct Material {
    /// Linear RGBA multiplier of the base colour.
    pub base_color_factor: [f32; 4],
    /// sRGB-encoded base colour texture.
    pub base_color: Option<Arc<image::RgbaImage>>,
    /// Tangent-space normal map (glTF convention: +Y up in texture space), linear.
    pub normal_map: Option<Arc<image::RgbaImage>>,
}

impl Default for Material {
    fn default() -> Self {
        Self { base_color_factor: [1.0; 4], base_color: None, normal_map: None }
    }
}

/// One indexed triangle list, already placed in the scene frame (node transforms applied).
#[derive(Clone, Debug, Default)]
pub struct MeshPrimitive {
    pub positions: Vec<[f32; 3]>,
    /// Unit normals, one per position; empty means flat shading.
    pub normals: Vec<[f32; 3]>,
    /// glTF UVs (`(0, 0)` top-left of the image), one per position or empty.
    pub uvs: Vec<[f32; 2]>,
    /// Linear vertex colours, one per position or empty.
    pub colors: Vec<[f32; 4]>,
    /// Counter-clockwise triangles (glTF front faces).
    pub indices: Vec<u32>,
    pub material: Material,
}

/// A triangle mesh to draw.
#[derive(Clone, Debug, Default)]
pub struct MeshLayer {
    pub primitives: Vec<MeshPrimitive>,
    pub source: PathBuf,
}

impl MeshLayer {
    pub fn num_triangles(&self) -> usize {
        self.primitives.iter().map(|p| p.indices.len() / 3).sum()
    }
}

/// An input camera, drawn as a frustum; "snap to camera" views through it.
#[derive(Clone, Debug)]
pub struct SceneCamera {
    pub camera: Camera,
    /// Its photo, when the dataset names one that exists.
    pub image: Option<PathBuf>,
    pub name: String,
}

/// Everything loaded from one path, in one frame (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Scene {
    pub splats: Option<SplatLayer>,
    pub mesh: Option<MeshLayer>,
    pub cameras: Vec<SceneCamera>,
    /// Sparse points with their 8-bit sRGB colour.
    pub points: Vec<([f32; 3], [u8; 3])>,
    /// The files the layers came from, for the window's "loaded" list and logs.
    pub loaded: Vec<PathBuf>,
    /// Which frame the scene is in, in words.
    pub frame_note: String,
    /// The similarity that moved the inputs into the scene frame (identity unless a mesh.json
    /// gave an export frame): apply it to any other camera or point of the same inputs.
    pub scene_from_input: DMat4,
}

/// Bounds used when a scene holds nothing: a unit cube around the origin.
const EMPTY_BOUNDS: ([f32; 3], [f32; 3]) = ([-1.0; 3], [1.0; 3]);

impl Scene {
    /// Loads a splat `.ply`, a `.glb`/`.gltf`, a `transforms.json`, a COLMAP model folder, or a
    /// Kiln job / mesh / train folder.
    pub fn load(path: &Path) -> Result<Scene, ViewerError> {
        if path.is_dir() {
            return job::load_dir(path);
        }
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let mut scene = match extension.as_deref() {
            Some("ply") => load_ply(path)?,
            Some("glb" | "gltf") => Scene { mesh: Some(load_gltf(path)?), ..Scene::default() },
            Some("json") => dataset_scene(&Dataset::open(path)?),
            _ => {
                return Err(ViewerError::Unsupported {
                    path: path.to_path_buf(),
                    problem: "expected a .ply, .glb, .gltf, transforms.json or a folder".into(),
                });
            }
        };
        scene.loaded.push(path.to_path_buf());
        scene.frame_note = format!("the frame of {}", path.display());
        Ok(scene)
    }

    /// A scene holding only `splats` (benchmarks, tests).
    pub fn from_splats(splats: Splats) -> Scene {
        Scene {
            splats: Some(SplatLayer { splats, sh_frame_from_world: Mat3::IDENTITY, source: PathBuf::new() }),
            frame_note: "the splats' frame".into(),
            ..Scene::default()
        }
    }

    /// Axis-aligned `(min, max)` over every layer (a unit cube around the origin when empty).
    /// Splats count by their 3σ boxes, cameras by their centres.
    pub fn bounds(&self) -> ([f32; 3], [f32; 3]) {
        let mut points: Vec<[f32; 3]> = Vec::new();
        if let Some(layer) = &self.splats {
            // Each splat by its 3σ box, so that a lone splat still has a size to frame.
            for (mean, log_scale) in layer.splats.means.iter().zip(&layer.splats.log_scales) {
                let reach = 3.0 * log_scale.iter().copied().fold(f32::NEG_INFINITY, f32::max).exp();
                points.push(mean.map(|v| v - reach));
                points.push(mean.map(|v| v + reach));
            }
        }
        if let Some(mesh) = &self.mesh {
            for primitive in &mesh.primitives {
                points.extend_from_slice(&primitive.positions);
            }
        }
        points.extend(self.points.iter().map(|(p, _)| *p));
        points.extend(self.cameras.iter().map(|c| c.camera.center().to_array()));
        bounds_of(points.iter().filter(|p| p.iter().all(|v| v.is_finite()))).unwrap_or(EMPTY_BOUNDS)
    }

    /// The box a view of the `shown` layers frames: what is shown of the model, not every
    /// camera or stray splat. The mesh when it is shown (the object); else the core of the
    /// splats (the central [`SPLAT_CORE`] of their centres along each axis, so that floaters far
    /// out do not shrink the object to a dot); else the points; else the cameras. With nothing
    /// shown, [`Self::bounds`].
    pub fn framing_bounds(&self, shown: Shown) -> ([f32; 3], [f32; 3]) {
        let finite = |p: &&[f32; 3]| p.iter().all(|v| v.is_finite());
        let mesh = self
            .mesh
            .as_ref()
            .filter(|_| shown.mesh)
            .and_then(|mesh| bounds_of(mesh.primitives.iter().flat_map(|p| p.positions.iter()).filter(finite)));
        let splats = self.splats.as_ref().filter(|_| shown.splats).and_then(|layer| core_bounds(&layer.splats));
        let points = Some(&self.points)
            .filter(|_| shown.points)
            .and_then(|points| bounds_of(points.iter().map(|(p, _)| p).filter(finite)));
        let centres: Vec<[f32; 3]> = self.cameras.iter().map(|c| c.camera.center().to_array()).collect();
        let cameras = Some(&centres).filter(|_| shown.cameras).and_then(|c| bounds_of(c.iter().filter(finite)));
        mesh.or(splats).or(points).or(cameras).unwrap_or_else(|| self.bounds())
    }

    /// Moves every layer by the similarity `to_from_world` (see the module docs).
    pub fn transform(&mut self, to_from_world: &DMat4) {
        self.scene_from_input = *to_from_world * self.scene_from_input;
        let similarity = Similarity::from_mat4(to_from_world);
        if let Some(layer) = &mut self.splats {
            similarity.apply_to_splats(&mut layer.splats);
            layer.sh_frame_from_world *= similarity.rotation.transpose();
        }
        if let Some(mesh) = &mut self.mesh {
            for primitive in &mut mesh.primitives {
                for p in &mut primitive.positions {
                    *p = similarity.point(Vec3::from(*p)).to_array();
                }
                for n in &mut primitive.normals {
                    *n = (similarity.rotation * Vec3::from(*n)).to_array();
                }
            }
        }
        for camera in &mut self.cameras {
            camera.camera = similarity.camera(&camera.camera);
        }
        for (p, _) in &mut self.points {
            *p = similarity.point(Vec3::from(*p)).to_array();
        }
    }

    /// `camera` (from the same inputs) moved into the scene frame.
    pub fn camera_from_input(&self, camera: &Camera) -> Camera {
        Similarity::from_mat4(&self.scene_from_input).camera(camera)
    }
}

/// `x ↦ scale · rotation · x + translation`.
#[derive(Clone, Copy, Debug)]
struct Similarity {
    rotation: Mat3,
    scale: f32,
    translation: Vec3,
}

impl Similarity {
    fn from_mat4(m: &DMat4) -> Self {
        let linear = glam::DMat3::from_mat4(*m);
        let scale = linear.determinant().cbrt();
        let rotation = if scale > 0.0 { linear / scale } else { glam::DMat3::IDENTITY };
        Self { rotation: rotation.as_mat3(), scale: scale as f32, translation: m.w_axis.truncate().as_vec3() }
    }

    fn point(&self, p: Vec3) -> Vec3 {
        self.scale * (self.rotation * p) + self.translation
    }

    /// The same camera in the new frame: same image, centre and axes moved.
    fn camera(&self, camera: &Camera) -> Camera {
        let pose = camera.world_from_camera;
        Camera {
            world_from_camera: WorldFromCameraCv {
                rotation: self.rotation * pose.rotation,
                translation: self.point(pose.translation),
            },
            ..*camera
        }
    }

    fn apply_to_splats(&self, splats: &mut Splats) {
        let q_rotation = Quat::from_mat3(&self.rotation);
        let log_scale = self.scale.ln();
        for mean in &mut splats.means {
            *mean = self.point(Vec3::from(*mean)).to_array();
        }
        for s in &mut splats.log_scales {
            *s = s.map(|v| v + log_scale);
        }
        for r in &mut splats.rotations {
            // Splats store `[w, x, y, z]`; glam's Quat is `(x, y, z, w)`.
            let q = q_rotation * Quat::from_xyzw(r[1], r[2], r[3], r[0]);
            *r = [q.w, q.x, q.y, q.z];
        }
    }
}

/// Share of splat centres, per axis, that [`Scene::framing_bounds`] frames: the 2 % at each end
/// are the floaters and far background a capture leaves.
const SPLAT_CORE: f32 = 0.96;

/// Which layers a view draws (what [`Scene::framing_bounds`] frames).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown {
    pub splats: bool,
    pub mesh: bool,
    pub cameras: bool,
    pub points: bool,
}

impl Shown {
    pub const ALL: Shown = Shown { splats: true, mesh: true, cameras: true, points: true };
}

/// The box of the central [`SPLAT_CORE`] of the splats' centres along each axis, grown by their
/// median 3σ reach (so that a lone splat still has a size to frame).
fn core_bounds(splats: &Splats) -> Option<([f32; 3], [f32; 3])> {
    let mut reaches: Vec<f32> = splats
        .log_scales
        .iter()
        .map(|s| 3.0 * s.iter().copied().fold(f32::NEG_INFINITY, f32::max).exp())
        .filter(|r| r.is_finite())
        .collect();
    reaches.sort_by(f32::total_cmp);
    let reach = reaches.get(reaches.len() / 2).copied().unwrap_or(0.0);
    let mut lo = [0.0; 3];
    let mut hi = [0.0; 3];
    for k in 0..3 {
        let mut values: Vec<f32> = splats.means.iter().map(|m| m[k]).filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f32::total_cmp);
        let cut = ((1.0 - SPLAT_CORE) / 2.0 * values.len() as f32) as usize;
        lo[k] = values[cut.min(values.len() - 1)] - reach;
        hi[k] = values[(values.len() - 1).saturating_sub(cut)] + reach;
    }
    Some((lo, hi))
}

fn bounds_of<'a>(points: impl Iterator<Item = &'a [f32; 3]>) -> Option<([f32; 3], [f32; 3])> {
    points.fold(None, |acc, p| match acc {
        None => Some((*p, *p)),
        Some((lo, hi)) => Some((std::array::from_fn(|k| lo[k].min(p[k])), std::array::from_fn(|k| hi[k].max(p[k])))),
    })
}

/// A `.ply`: 3DGS splats when it has their properties, else a triangle mesh, else a point cloud.
fn load_ply(path: &Path) -> Result<Scene, ViewerError> {
    match kiln_core::splats::ply::read_splats(path) {
        Ok(splats) => {
            return Ok(Scene {
                splats: Some(SplatLayer { splats, sh_frame_from_world: Mat3::IDENTITY, source: path.to_path_buf() }),
                ..Scene::default()
            });
        }
        Err(kiln_core::splats::ply::PlyError::Layout { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let mesh = kiln_core::mesh::ply::read_mesh(path)?;
    if mesh.num_triangles() > 0 {
        return Ok(Scene { mesh: Some(glb::mesh_layer_from_trimesh(&mesh, None, path)), ..Scene::default() });
    }
    let cloud = kiln_core::point_cloud::PointCloud::read_ply(path)?;
    Ok(Scene { points: points_of(Some(&cloud)), ..Scene::default() })
}

/// Cameras and sparse points of a dataset.
pub(crate) fn dataset_scene(dataset: &Dataset) -> Scene {
    let cameras = dataset
        .views
        .iter()
        .map(|view| SceneCamera {
            camera: view.camera,
            image: view.image_path.is_file().then(|| view.image_path.clone()),
            name: view.name.clone(),
        })
        .collect();
    Scene { cameras, points: points_of(dataset.points.as_ref()), ..Scene::default() }
}

fn points_of(cloud: Option<&kiln_core::point_cloud::PointCloud>) -> Vec<([f32; 3], [u8; 3])> {
    let Some(cloud) = cloud else { return Vec::new() };
    cloud
        .positions
        .iter()
        .zip(&cloud.colors)
        .map(|(p, c)| (*p, c.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_moves_splats_like_their_points() {
        let rotation = Mat3::from_quat(Quat::from_euler(glam::EulerRot::XYZ, 0.3, -0.5, 1.2));
        let m = DMat4::from_scale_rotation_translation(
            glam::DVec3::splat(2.5),
            glam::DQuat::from_mat3(&rotation.as_dmat3()),
            glam::DVec3::new(1.0, -2.0, 3.0),
        );
        let q = Quat::from_euler(glam::EulerRot::XYZ, -0.7, 0.2, 0.4);
        let mut splats = Splats::default();
        splats.push([0.1, 0.2, 0.3], [0.0, -1.0, 0.5], [q.w, q.x, q.y, q.z], 0.0, [[0.0; 3]; 16]);
        let axis_end = |s: &Splats| {
            let r = s.rotations[0];
            let q = Quat::from_xyzw(r[1], r[2], r[3], r[0]);
            Vec3::from(s.means[0]) + q * Vec3::new(s.log_scales[0][0].exp(), 0.0, 0.0)
        };
        let before = axis_end(&splats);
        let mut scene = Scene::from_splats(splats);
        scene.transform(&m);
        let layer = scene.splats.as_ref().map(|l| &l.splats).unwrap();
        let after = axis_end(layer);
        let expected = m.transform_point3(before.as_dvec3()).as_vec3();
        assert!((after - expected).length() < 1e-5, "{after} vs {expected}");
        let sh_back = scene.splats.as_ref().unwrap().sh_frame_from_world * rotation;
        assert!(sh_back.abs_diff_eq(Mat3::IDENTITY, 1e-5));
    }
}
