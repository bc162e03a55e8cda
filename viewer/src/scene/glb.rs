//! glTF 2.0 input (`.glb` and `.gltf` with external or embedded buffers) through the `gltf`
//! crate: every mesh primitive of the default scene with its node transforms applied, base colour
//! and normal textures, UVs, normals and vertex colours. Also Kiln's own [`TriMesh`] as a layer.

use std::path::Path;
use std::sync::Arc;

use glam::{Mat3, Mat4, Vec3};
use kiln_core::mesh::TriMesh;

use super::{Material, MeshLayer, MeshPrimitive};
use crate::ViewerError;

/// Loads every triangle primitive of a `.glb` / `.gltf` (points and lines are left out).
pub fn load_gltf(path: &Path) -> Result<MeshLayer, ViewerError> {
    let bytes = std::fs::read(path).map_err(|source| ViewerError::Io { path: path.to_path_buf(), source })?;
    let gltf =
        gltf::Gltf::from_slice(&bytes).map_err(|source| ViewerError::Gltf { path: path.to_path_buf(), source })?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let buffers = gltf
        .document
        .buffers()
        .map(|buffer| buffer_data(&buffer, gltf.blob.as_deref(), base_dir, path))
        .collect::<Result<Vec<_>, _>>()?;
    let images = gltf
        .document
        .images()
        .map(|image| decode_image(&image, &buffers, base_dir, path).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let mut primitives = Vec::new();
    let roots: Vec<gltf::Node> = match gltf.document.default_scene().or_else(|| gltf.document.scenes().next()) {
        Some(scene) => scene.nodes().collect(),
        None => gltf.document.nodes().collect(),
    };
    for node in roots {
        collect_node(&node, Mat4::IDENTITY, &buffers, &images, &mut primitives, path)?;
    }
    if primitives.is_empty() {
        return Err(ViewerError::Unsupported { path: path.to_path_buf(), problem: "no triangle meshes".into() });
    }
    Ok(MeshLayer { primitives, source: path.to_path_buf() })
}

fn invalid(path: &Path, problem: impl Into<String>) -> ViewerError {
    ViewerError::Invalid { path: path.to_path_buf(), problem: problem.into() }
}

fn buffer_data(
    buffer: &gltf::Buffer,
    blob: Option<&[u8]>,
    base_dir: &Path,
    path: &Path,
) -> Result<Vec<u8>, ViewerError> {
    match buffer.source() {
        gltf::buffer::Source::Bin => {
            blob.map(<[u8]>::to_vec).ok_or_else(|| invalid(path, "buffer refers to a missing GLB binary chunk"))
        }
        gltf::buffer::Source::Uri(uri) => read_uri(uri, base_dir, path),
    }
}

/// A relative file URI (percent-escapes for spaces decoded) or a base64 `data:` URI.
fn read_uri(uri: &str, base_dir: &Path, path: &Path) -> Result<Vec<u8>, ViewerError> {
    if let Some(rest) = uri.strip_prefix("data:") {
        let (_, data) = rest.split_once(";base64,").ok_or_else(|| invalid(path, "data URI is not base64"))?;
        return decode_base64(data).ok_or_else(|| invalid(path, "malformed base64 in a data URI"));
    }
    let file = base_dir.join(uri.replace("%20", " "));
    std::fs::read(&file).map_err(|source| ViewerError::Io { path: file, source })
}

/// Standard base64 (RFC 4648, `=` padding optional).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

fn decode_image(
    image: &gltf::Image,
    buffers: &[Vec<u8>],
    base_dir: &Path,
    path: &Path,
) -> Result<image::RgbaImage, ViewerError> {
    let bytes = match image.source() {
        gltf::image::Source::View { view, .. } => {
            let data = buffers.get(view.buffer().index()).ok_or_else(|| invalid(path, "image view out of range"))?;
            data.get(view.offset()..view.offset() + view.length())
                .ok_or_else(|| invalid(path, "image view past the end of its buffer"))?
                .to_vec()
        }
        gltf::image::Source::Uri { uri, .. } => read_uri(uri, base_dir, path)?,
    };
    Ok(image::load_from_memory(&bytes)
        .map_err(|source| ViewerError::Image { path: path.to_path_buf(), source })?
        .to_rgba8())
}

fn collect_node(
    node: &gltf::Node,
    parent_from_node: Mat4,
    buffers: &[Vec<u8>],
    images: &[Arc<image::RgbaImage>],
    out: &mut Vec<MeshPrimitive>,
    path: &Path,
) -> Result<(), ViewerError> {
    let world_from_node = parent_from_node * Mat4::from_cols_array_2d(&node.transform().matrix());
    if let Some(mesh) = node.mesh() {
        for primitive in mesh.primitives() {
            if primitive.mode() == gltf::mesh::Mode::Triangles {
                out.push(read_primitive(&primitive, world_from_node, buffers, images, path)?);
            }
        }
    }
    for child in node.children() {
        collect_node(&child, world_from_node, buffers, images, out, path)?;
    }
    Ok(())
}

fn read_primitive(
    primitive: &gltf::Primitive,
    world_from_node: Mat4,
    buffers: &[Vec<u8>],
    images: &[Arc<image::RgbaImage>],
    path: &Path,
) -> Result<MeshPrimitive, ViewerError> {
    let reader = primitive.reader(|buffer| buffers.get(buffer.index()).map(Vec::as_slice));
    let positions: Vec<[f32; 3]> = reader
        .read_positions()
        .ok_or_else(|| invalid(path, "a triangle primitive has no POSITION"))?
        .map(|p| world_from_node.transform_point3(Vec3::from(p)).to_array())
        .collect();
    let normal_from_node = Mat3::from_mat4(world_from_node).inverse().transpose();
    let normals = reader
        .read_normals()
        .map(|n| n.map(|n| (normal_from_node * Vec3::from(n)).normalize_or_zero().to_array()).collect())
        .unwrap_or_default();
    let uvs = reader.read_tex_coords(0).map(|t| t.into_f32().collect()).unwrap_or_default();
    let colors = reader.read_colors(0).map(|c| c.into_rgba_f32().collect()).unwrap_or_default();
    let indices: Vec<u32> = match reader.read_indices() {
        Some(indices) => indices.into_u32().collect(),
        None => (0..positions.len() as u32).collect(),
    };
    if indices.iter().any(|&i| i as usize >= positions.len()) {
        return Err(invalid(path, "a triangle index is past the last vertex"));
    }
    let mut indices = indices;
    indices.truncate(indices.len() / 3 * 3);
    if world_from_node.determinant() < 0.0 {
        // A mirroring node transform flips the winding; restore counter-clockwise front faces.
        for tri in indices.chunks_exact_mut(3) {
            tri.swap(1, 2);
        }
    }
    let material = primitive.material();
    let texture = |index: usize| images.get(index).cloned();
    let pbr = material.pbr_metallic_roughness();
    let material = Material {
        base_color_factor: pbr.base_color_factor(),
        base_color: pbr.base_color_texture().and_then(|info| texture(info.texture().source().index())),
        normal_map: material.normal_texture().and_then(|info| texture(info.texture().source().index())),
    };
    Ok(MeshPrimitive { positions, normals, uvs, colors, indices, material })
}

/// A [`TriMesh`] (and its optional baked textures, sRGB) as a one-primitive layer.
pub(crate) fn mesh_layer_from_trimesh(
    mesh: &TriMesh,
    textures: Option<&kiln_core::mesh::TexturedMesh>,
    source: &Path,
) -> MeshLayer {
    let rgba = |image: &image::RgbImage| Arc::new(image::DynamicImage::ImageRgb8(image.clone()).to_rgba8());
    let material = Material {
        base_color_factor: [1.0; 4],
        base_color: textures.map(|t| rgba(&t.base_color)),
        normal_map: textures.and_then(|t| t.normal_map.as_ref()).map(rgba),
    };
    let primitive = MeshPrimitive {
        positions: mesh.positions.clone(),
        normals: mesh.normals.clone(),
        uvs: if textures.is_some() { mesh.uvs.clone() } else { Vec::new() },
        colors: mesh.colors.iter().map(|c| [c[0], c[1], c[2], 1.0]).collect(),
        indices: mesh.triangles.iter().flatten().copied().collect(),
        material,
    };
    MeshLayer { primitives: vec![primitive], source: source.to_path_buf() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_known_strings() {
        assert_eq!(decode_base64("TWFu").unwrap(), b"Man");
        assert_eq!(decode_base64("TWE=").unwrap(), b"Ma");
        assert_eq!(decode_base64("TQ==").unwrap(), b"M");
        assert!(decode_base64("T!==").is_none());
    }
}
