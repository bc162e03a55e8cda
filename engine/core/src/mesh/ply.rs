//! Triangle meshes in PLY files: read what common tools write (through the shared container reader
//! of [`crate::ply`]), write binary PLY atomically.
//!
//! Reading accepts `ascii`, `binary_little_endian` and `binary_big_endian`; any scalar type for
//! any property; a `vertex` element with `x y z` and optionally `nx ny nz`, texture coordinates
//! (`texture_u texture_v`, `u v` or `s t`) and colours (`red green blue`); a `face` element whose
//! list property is `vertex_indices` or `vertex_index` (any count and index types). Polygons with
//! more than three corners are split into a triangle fan; other elements and properties are
//! skipped.
//!
//! Conventions on disk (MeshLab's): texture `v` grows **upwards** (OpenGL), so it is flipped to
//! and from [`TriMesh::uvs`]' glTF `v`-down; integer colours are 8-bit sRGB-encoded and are
//! decoded to the linear-light [`TriMesh::colors`] (float colours are taken as linear already).
//!
//! Writing produces binary little-endian `float` vertex properties (`x y z`, then `nx ny nz`,
//! `texture_u texture_v` and `uchar red green blue` when the mesh has them) and `list uchar int
//! vertex_indices` faces, atomically.

use std::io::Write;
use std::path::Path;

use crate::atomic_file::write_atomically;
use crate::image_buf::{linear_to_srgb, srgb_to_linear};
use crate::mesh::TriMesh;
use crate::mesh::error::MeshError;
use crate::ply::{Element, PlyError, PlyReader};

/// Names of the list property holding a face's corners, as different tools spell it.
const FACE_LIST_NAMES: [&str; 2] = ["vertex_indices", "vertex_index"];

/// Texture-coordinate property pairs, in order of preference.
const UV_NAMES: [[&str; 2]; 3] = [["texture_u", "texture_v"], ["u", "v"], ["s", "t"]];

/// Reads a triangle mesh from a PLY file (see the module docs for what is accepted).
pub fn read_mesh(path: &Path) -> Result<TriMesh, MeshError> {
    let mut ply = PlyReader::open(path).map_err(mesh_error)?;
    let vertex = ply.element_index("vertex").map_err(mesh_error)?;
    let face = ply.elements().iter().position(|e| e.name == "face");
    // In file order (a face element may come first); other elements are skipped on the way.
    let mut wanted: Vec<usize> = std::iter::once(vertex).chain(face).collect();
    wanted.sort_unstable();
    let mut mesh = TriMesh::default();
    for index in wanted {
        ply.start_element(index).map_err(mesh_error)?;
        let element = ply.elements()[index].clone();
        if index == vertex {
            read_vertices(&mut ply, &element, &mut mesh)?;
        } else {
            read_faces(&mut ply, &element, &mut mesh)?;
        }
    }
    let n = mesh.positions.len() as u32;
    if let Some(bad) = mesh.triangles.iter().flatten().find(|&&i| i >= n) {
        let problem = format!("face refers to vertex {bad} but there are only {n} vertices");
        return Err(MeshError::Ply { path: path.to_path_buf(), problem });
    }
    Ok(mesh)
}

/// The mesh stage's error for a PLY container error (same path, same wording).
fn mesh_error(error: PlyError) -> MeshError {
    match error {
        PlyError::Io { path, source } => MeshError::Io { path, source },
        PlyError::Header { path, line, problem } => {
            MeshError::Ply { path, problem: format!("PLY header line {line}: {problem}") }
        }
        PlyError::Layout { path, problem } => MeshError::Ply { path, problem },
        PlyError::Body { path, element, row, problem } => {
            MeshError::Ply { path, problem: format!("element '{element}' row {row}: {problem}") }
        }
    }
}

/// Index of each wanted name among the element's scalar properties.
fn find_scalars(element: &Element, names: &[&str]) -> Option<Vec<usize>> {
    names.iter().map(|name| element.scalar_index(name)).collect()
}

fn read_vertices(ply: &mut PlyReader, element: &Element, mesh: &mut TriMesh) -> Result<(), MeshError> {
    let position = find_scalars(element, &["x", "y", "z"]).ok_or_else(|| {
        mesh_error(ply.layout_error("element 'vertex': no scalar 'x', 'y' and 'z' properties".into()))
    })?;
    let normal = find_scalars(element, &["nx", "ny", "nz"]);
    let uv = UV_NAMES.iter().find_map(|names| find_scalars(element, names));
    let color = find_scalars(element, &["red", "green", "blue"]);
    let color_is_integer =
        color.as_ref().is_some_and(|c| element.properties[c[0]].kind.scalar().is_some_and(|ty| ty.is_integer()));
    let mut row = vec![0.0f64; element.properties.len()];
    for _ in 0..element.count {
        ply.read_row(&mut row, None).map_err(mesh_error)?;
        let pick = |idx: &[usize]| -> [f32; 3] { std::array::from_fn(|k| row[idx[k]] as f32) };
        mesh.positions.push(pick(&position));
        if let Some(idx) = &normal {
            mesh.normals.push(pick(idx));
        }
        if let Some(idx) = &uv {
            mesh.uvs.push([row[idx[0]] as f32, 1.0 - row[idx[1]] as f32]);
        }
        if let Some(idx) = &color {
            let c = pick(idx);
            mesh.colors.push(if color_is_integer { c.map(|v| srgb_to_linear(v / 255.0)) } else { c });
        }
    }
    Ok(())
}

fn read_faces(ply: &mut PlyReader, element: &Element, mesh: &mut TriMesh) -> Result<(), MeshError> {
    let list = element.list_index(&FACE_LIST_NAMES).ok_or_else(|| {
        mesh_error(ply.layout_error("element 'face': no list property 'vertex_indices' or 'vertex_index'".into()))
    })?;
    let mut corners = Vec::new();
    for r in 0..element.count {
        corners.clear();
        ply.read_row(&mut [], Some((list, &mut corners))).map_err(mesh_error)?;
        if corners.iter().any(|&c| c < 0.0 || c > u32::MAX as f64) {
            let problem = format!("element 'face' row {r}: negative or oversized vertex index");
            return Err(MeshError::Ply { path: ply.path().to_path_buf(), problem });
        }
        for k in 1..corners.len().saturating_sub(1) {
            mesh.triangles.push([corners[0] as u32, corners[k] as u32, corners[k + 1] as u32]);
        }
    }
    Ok(())
}

/// Writes `mesh` as binary little-endian PLY (see the module docs), atomically.
pub fn write_mesh(path: &Path, mesh: &TriMesh) -> Result<(), MeshError> {
    let n = mesh.positions.len();
    for (name, len) in [("normals", mesh.normals.len()), ("uvs", mesh.uvs.len()), ("colors", mesh.colors.len())] {
        if len != 0 && len != n {
            return Err(MeshError::InvalidInput(format!("mesh has {n} vertices but {len} {name}")));
        }
    }
    if let Some(bad) = mesh.triangles.iter().flatten().find(|&&i| i as usize >= n) {
        return Err(MeshError::InvalidInput(format!("triangle refers to vertex {bad} of {n}")));
    }
    write_atomically(path, |w| {
        write_header(w, mesh)?;
        for i in 0..n {
            for v in mesh.positions[i] {
                w.write_all(&v.to_le_bytes())?;
            }
            if let Some(normal) = mesh.normals.get(i) {
                for v in normal {
                    w.write_all(&v.to_le_bytes())?;
                }
            }
            if let Some(uv) = mesh.uvs.get(i) {
                w.write_all(&uv[0].to_le_bytes())?;
                w.write_all(&(1.0 - uv[1]).to_le_bytes())?;
            }
            if let Some(color) = mesh.colors.get(i) {
                w.write_all(&color.map(|c| (linear_to_srgb(c.clamp(0.0, 1.0)) * 255.0).round() as u8))?;
            }
        }
        for triangle in &mesh.triangles {
            w.write_all(&[3u8])?;
            for index in triangle {
                w.write_all(&(*index as i32).to_le_bytes())?;
            }
        }
        Ok(())
    })
    .map_err(|source| MeshError::Io { path: path.to_path_buf(), source })
}

fn write_header(w: &mut impl Write, mesh: &TriMesh) -> std::io::Result<()> {
    writeln!(w, "ply\nformat binary_little_endian 1.0\ncomment written by Kiln")?;
    writeln!(w, "element vertex {}", mesh.positions.len())?;
    let mut names = vec!["x", "y", "z"];
    if !mesh.normals.is_empty() {
        names.extend(["nx", "ny", "nz"]);
    }
    if !mesh.uvs.is_empty() {
        names.extend(UV_NAMES[0]);
    }
    for name in names {
        writeln!(w, "property float {name}")?;
    }
    if !mesh.colors.is_empty() {
        writeln!(w, "property uchar red\nproperty uchar green\nproperty uchar blue")?;
    }
    writeln!(w, "element face {}\nproperty list uchar int vertex_indices\nend_header", mesh.triangles.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-mesh-ply-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn quad_mesh() -> TriMesh {
        TriMesh {
            positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.5], [0.0, 1.0, -0.25]],
            triangles: vec![[0, 1, 2], [0, 2, 3]],
            normals: vec![[0.0, 0.0, 1.0]; 4],
            uvs: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.25, 0.75]],
            colors: vec![[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.2, 0.1], [0.02, 0.9, 0.3]],
        }
    }

    #[test]
    fn binary_round_trip_keeps_every_attribute() {
        let path = temp_file("round_trip.ply");
        let mesh = quad_mesh();
        write_mesh(&path, &mesh).unwrap();
        let back = read_mesh(&path).unwrap();
        assert_eq!(back.positions, mesh.positions);
        assert_eq!(back.triangles, mesh.triangles);
        assert_eq!(back.normals, mesh.normals);
        assert_eq!(back.uvs, mesh.uvs);
        // 8-bit sRGB storage: within half a code value after the transfer function.
        for (a, b) in back.colors.iter().zip(&mesh.colors) {
            for k in 0..3 {
                assert!(
                    (linear_to_srgb(a[k].clamp(0.0, 1.0)) - linear_to_srgb(b[k].clamp(0.0, 1.0))).abs()
                        <= 0.5 / 255.0 + 1e-6,
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn ascii_quads_and_vertex_index_are_split_into_triangles() {
        let path = temp_file("ascii_quad.ply");
        let text = "ply\nformat ascii 1.0\nelement vertex 5\nproperty double x\nproperty double y\nproperty double z\n\
                    element face 2\nproperty list int uint vertex_index\nproperty uchar flags\nend_header\n\
                    0 0 0\n1 0 0\n1 1 0\n0 1 0\n2 2 2\n4 0 1 2 3 7\n3 1 4 2 0\n";
        std::fs::write(&path, text).unwrap();
        let mesh = read_mesh(&path).unwrap();
        assert_eq!(mesh.positions.len(), 5);
        assert_eq!(mesh.triangles, vec![[0, 1, 2], [0, 2, 3], [1, 4, 2]]);
        assert!(mesh.normals.is_empty() && mesh.uvs.is_empty() && mesh.colors.is_empty());
    }

    #[test]
    fn big_endian_uchar_counts_and_extra_elements() {
        let path = temp_file("big_endian.ply");
        let mut bytes = b"ply\nformat binary_big_endian 1.0\nelement material 1\nproperty float shine\n\
                          element vertex 3\nproperty float x\nproperty float y\nproperty float z\n\
                          element face 1\nproperty list uchar int vertex_indices\nend_header\n"
            .to_vec();
        bytes.extend(2.5f32.to_be_bytes());
        for v in [[0.0f32, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]] {
            for c in v {
                bytes.extend(c.to_be_bytes());
            }
        }
        bytes.push(3);
        for i in [2i32, 1, 0] {
            bytes.extend(i.to_be_bytes());
        }
        std::fs::write(&path, bytes).unwrap();
        let mesh = read_mesh(&path).unwrap();
        assert_eq!(mesh.positions[1], [1.0, 0.0, 0.0]);
        assert_eq!(mesh.triangles, vec![[2, 1, 0]]);
    }

    #[test]
    fn errors_name_the_problem() {
        let path = temp_file("bad_index.ply");
        let text = "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n\
                    element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n3 0 1 2\n";
        std::fs::write(&path, text).unwrap();
        let message = read_mesh(&path).unwrap_err().to_string();
        assert!(message.contains("refers to vertex"), "{message}");
        let truncated = temp_file("truncated.ply");
        std::fs::write(&truncated, "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nend_header\n0 0 0\n").unwrap();
        let message = read_mesh(&truncated).unwrap_err().to_string();
        assert!(message.contains("truncated"), "{message}");
    }
}
