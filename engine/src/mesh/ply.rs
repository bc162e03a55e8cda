//! Triangle meshes in PLY files: read what common tools write, write binary PLY atomically.
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

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use super::TriMesh;
use super::error::MeshError;
use crate::atomic_file::write_atomically;
use crate::texture::bake::{linear_to_srgb, srgb_to_linear};

/// Header lines accepted before `end_header`: real headers have a few dozen.
const MAX_HEADER_LINES: usize = 4096;

/// Names of the list property holding a face's corners, as different tools spell it.
const FACE_LIST_NAMES: [&str; 2] = ["vertex_indices", "vertex_index"];

/// Texture-coordinate property pairs, in order of preference.
const UV_NAMES: [[&str; 2]; 3] = [["texture_u", "texture_v"], ["u", "v"], ["s", "t"]];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scalar {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl Scalar {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "char" | "int8" => Self::I8,
            "uchar" | "uint8" => Self::U8,
            "short" | "int16" => Self::I16,
            "ushort" | "uint16" => Self::U16,
            "int" | "int32" => Self::I32,
            "uint" | "uint32" => Self::U32,
            "float" | "float32" => Self::F32,
            "double" | "float64" => Self::F64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::I8 | Self::U8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    fn is_integer(self) -> bool {
        !matches!(self, Self::F32 | Self::F64)
    }

    fn decode(self, b: &[u8], big_endian: bool) -> f64 {
        macro_rules! num {
            ($t:ty, $n:literal) => {{
                let mut bytes = [0u8; $n];
                bytes.copy_from_slice(&b[..$n]);
                if big_endian { <$t>::from_be_bytes(bytes) as f64 } else { <$t>::from_le_bytes(bytes) as f64 }
            }};
        }
        match self {
            Self::I8 => num!(i8, 1),
            Self::U8 => num!(u8, 1),
            Self::I16 => num!(i16, 2),
            Self::U16 => num!(u16, 2),
            Self::I32 => num!(i32, 4),
            Self::U32 => num!(u32, 4),
            Self::F32 => num!(f32, 4),
            Self::F64 => num!(f64, 8),
        }
    }
}

#[derive(Clone, Debug)]
enum Kind {
    Scalar(Scalar),
    List { count: Scalar, item: Scalar },
}

#[derive(Clone, Debug)]
struct Property {
    name: String,
    kind: Kind,
}

#[derive(Clone, Debug)]
struct Element {
    name: String,
    count: usize,
    properties: Vec<Property>,
}

/// The body of the file after the header: binary bytes or ASCII tokens.
enum Body {
    Binary { bytes: Vec<u8>, pos: usize, big_endian: bool },
    Ascii { text: String, pos: usize },
}

impl Body {
    fn scalar(&mut self, ty: Scalar) -> Result<f64, String> {
        match self {
            Self::Binary { bytes, pos, big_endian } => {
                let end = *pos + ty.size();
                let slice = bytes.get(*pos..end).ok_or("file is truncated")?;
                *pos = end;
                Ok(ty.decode(slice, *big_endian))
            }
            Self::Ascii { text, pos } => {
                let rest = &text[*pos..];
                let start = rest.len() - rest.trim_start().len();
                let token = rest[start..].split_ascii_whitespace().next().ok_or("file is truncated")?;
                *pos += start + token.len();
                token.parse::<f64>().map_err(|_| format!("'{token}' is not a number"))
            }
        }
    }
}

/// Reads a triangle mesh from a PLY file (see the module docs for what is accepted).
pub fn read_mesh(path: &Path) -> Result<TriMesh, MeshError> {
    let ply_err = |problem: String| MeshError::Ply { path: path.to_path_buf(), problem };
    let file = std::fs::File::open(path).map_err(|source| MeshError::Io { path: path.to_path_buf(), source })?;
    let mut reader = BufReader::new(file);
    let (format, elements) = parse_header(&mut reader).map_err(ply_err)?;
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(|source| MeshError::Io { path: path.to_path_buf(), source })?;
    let mut body = match format.as_str() {
        "ascii" => Body::Ascii { text: String::from_utf8_lossy(&bytes).into_owned(), pos: 0 },
        "binary_little_endian" => Body::Binary { bytes, pos: 0, big_endian: false },
        "binary_big_endian" => Body::Binary { bytes, pos: 0, big_endian: true },
        other => return Err(ply_err(format!("unknown format '{other}'"))),
    };
    if !elements.iter().any(|e| e.name == "vertex") {
        return Err(ply_err("no 'vertex' element".into()));
    }
    let mut mesh = TriMesh::default();
    for element in &elements {
        let result = match element.name.as_str() {
            "vertex" => read_vertices(&mut body, element, &mut mesh),
            "face" => read_faces(&mut body, element, &mut mesh),
            _ => skip_element(&mut body, element),
        };
        result.map_err(|problem| ply_err(format!("element '{}': {problem}", element.name)))?;
    }
    let n = mesh.positions.len() as u32;
    if let Some(bad) = mesh.triangles.iter().flatten().find(|&&i| i >= n) {
        return Err(ply_err(format!("face refers to vertex {bad} but there are only {n} vertices")));
    }
    Ok(mesh)
}

fn parse_header(reader: &mut impl BufRead) -> Result<(String, Vec<Element>), String> {
    let mut format = None;
    let mut elements: Vec<Element> = Vec::new();
    let mut raw = Vec::new();
    for line_number in 1..=MAX_HEADER_LINES {
        raw.clear();
        let n = reader.read_until(b'\n', &mut raw).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("header line {line_number}: file ends before 'end_header'"));
        }
        let line = String::from_utf8_lossy(&raw);
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let at = |problem: String| format!("header line {line_number}: {problem}");
        if line_number == 1 {
            if words != ["ply"] {
                return Err("not a PLY file (first line is not 'ply')".into());
            }
            continue;
        }
        match words.as_slice() {
            ["end_header"] => return Ok((format.ok_or_else(|| at("no 'format' line".into()))?, elements)),
            ["format", name, _version] => format = Some(name.to_string()),
            ["comment", ..] | ["obj_info", ..] | [] => {}
            ["element", name, count] => {
                let count = count.parse().map_err(|_| at(format!("bad element count '{count}'")))?;
                elements.push(Element { name: name.to_string(), count, properties: Vec::new() });
            }
            ["property", rest @ ..] => {
                let property = parse_property(rest).map_err(at)?;
                elements.last_mut().ok_or_else(|| at("property before any element".into()))?.properties.push(property);
            }
            _ => return Err(at(format!("unexpected line '{}'", line.trim()))),
        }
    }
    Err("header too long".into())
}

fn parse_property(words: &[&str]) -> Result<Property, String> {
    let scalar = |name: &str| Scalar::parse(name).ok_or_else(|| format!("unknown property type '{name}'"));
    match words {
        ["list", count, item, name] => {
            Ok(Property { name: name.to_string(), kind: Kind::List { count: scalar(count)?, item: scalar(item)? } })
        }
        [ty, name] => Ok(Property { name: name.to_string(), kind: Kind::Scalar(scalar(ty)?) }),
        _ => Err(format!("malformed property line 'property {}'", words.join(" "))),
    }
}

/// Reads one property; a list's items are appended to `items`, its count returned.
fn read_property(body: &mut Body, kind: &Kind, items: &mut Vec<f64>) -> Result<f64, String> {
    match kind {
        Kind::Scalar(ty) => body.scalar(*ty),
        Kind::List { count, item } => {
            let n = body.scalar(*count)?;
            for _ in 0..n as usize {
                items.push(body.scalar(*item)?);
            }
            Ok(n)
        }
    }
}

fn skip_element(body: &mut Body, element: &Element) -> Result<(), String> {
    let mut scratch = Vec::new();
    for row in 0..element.count {
        for property in &element.properties {
            scratch.clear();
            read_property(body, &property.kind, &mut scratch).map_err(|p| format!("row {row}: {p}"))?;
        }
    }
    Ok(())
}

/// Index of each wanted name among the element's scalar properties.
fn find_scalars(element: &Element, names: &[&str]) -> Option<Vec<usize>> {
    names
        .iter()
        .map(|name| element.properties.iter().position(|p| p.name == *name && matches!(p.kind, Kind::Scalar(_))))
        .collect()
}

fn read_vertices(body: &mut Body, element: &Element, mesh: &mut TriMesh) -> Result<(), String> {
    let position = find_scalars(element, &["x", "y", "z"]).ok_or("no scalar 'x', 'y' and 'z' properties")?;
    let normal = find_scalars(element, &["nx", "ny", "nz"]);
    let uv = UV_NAMES.iter().find_map(|names| find_scalars(element, names));
    let color = find_scalars(element, &["red", "green", "blue"]);
    let color_is_integer =
        color.as_ref().is_some_and(|c| matches!(element.properties[c[0]].kind, Kind::Scalar(ty) if ty.is_integer()));
    let mut row = vec![0.0f64; element.properties.len()];
    let mut scratch = Vec::new();
    for r in 0..element.count {
        for (value, property) in row.iter_mut().zip(&element.properties) {
            scratch.clear();
            *value = read_property(body, &property.kind, &mut scratch).map_err(|p| format!("row {r}: {p}"))?;
        }
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

fn read_faces(body: &mut Body, element: &Element, mesh: &mut TriMesh) -> Result<(), String> {
    let list = element
        .properties
        .iter()
        .position(|p| FACE_LIST_NAMES.contains(&p.name.as_str()) && matches!(p.kind, Kind::List { .. }))
        .ok_or("no list property 'vertex_indices' or 'vertex_index'")?;
    let mut corners = Vec::new();
    let mut scratch = Vec::new();
    for r in 0..element.count {
        corners.clear();
        for (i, property) in element.properties.iter().enumerate() {
            let target = if i == list { &mut corners } else { &mut scratch };
            read_property(body, &property.kind, target).map_err(|p| format!("row {r}: {p}"))?;
            scratch.clear();
        }
        if corners.iter().any(|&c| c < 0.0 || c > u32::MAX as f64) {
            return Err(format!("row {r}: negative or oversized vertex index"));
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
                assert!((linear_to_srgb(a[k].clamp(0.0, 1.0)) - linear_to_srgb(b[k].clamp(0.0, 1.0))).abs() <= 0.5 / 255.0 + 1e-6, "{a:?} vs {b:?}");
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
