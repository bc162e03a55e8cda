//! Wavefront OBJ + MTL + PNG writer for tools without glTF: `<stem>.obj` refers to `<stem>.mtl`,
//! which refers to `<stem>.png` (`map_Kd`), all by bare file names in one folder.
//!
//! OBJ texture coordinates have their origin at the image's bottom-left, so `vt u (1 − v)`
//! against Kiln's (glTF's) top-left origin. Faces are `v/vt/vn` triples, 1-based, counter-clockwise.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ExportError;
use crate::glb::{GENERATOR, ROUGHNESS};
use crate::png::encode_png;
use crate::prepare::prepare;
use kiln_core::atomic_file::write_atomically;
use kiln_core::mesh::TexturedMesh;

/// The material's name in the MTL file.
const MATERIAL: &str = "surface";

/// Writes `<stem>.obj`, `<stem>.mtl` and `<stem>.png` for `obj_path` = `<dir>/<stem>.obj`;
/// returns the three paths.
pub fn write_obj(obj_path: &Path, model: &TexturedMesh) -> Result<Vec<PathBuf>, ExportError> {
    let prepared = prepare(model)?;
    let stem = obj_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .ok_or_else(|| ExportError::Invalid { path: obj_path.to_path_buf(), problem: "no file name".into() })?;
    let mtl_path = obj_path.with_file_name(format!("{stem}.mtl"));
    let png_path = obj_path.with_file_name(format!("{stem}.png"));
    let png = encode_png(&model.base_color, "base colour texture")?;
    write_atomically(&png_path, |w| w.write_all(&png)).map_err(ExportError::io(&png_path))?;
    let mtl = material_text(&format!("{stem}.png"));
    write_atomically(&mtl_path, |w| w.write_all(mtl.as_bytes())).map_err(ExportError::io(&mtl_path))?;
    write_atomically(obj_path, |w| {
        writeln!(w, "# {GENERATOR}\nmtllib {stem}.mtl\no model")?;
        for p in prepared.positions {
            writeln!(w, "v {} {} {}", p[0], p[1], p[2])?;
        }
        for uv in prepared.uvs {
            writeln!(w, "vt {} {}", uv[0], 1.0 - uv[1])?;
        }
        for n in &prepared.normals {
            writeln!(w, "vn {} {} {}", n[0], n[1], n[2])?;
        }
        writeln!(w, "usemtl {MATERIAL}")?;
        for tri in prepared.triangles {
            let [a, b, c] = tri.map(|i| i + 1);
            writeln!(w, "f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}")?;
        }
        Ok(())
    })
    .map_err(ExportError::io(obj_path))?;
    Ok(vec![obj_path.to_path_buf(), mtl_path, png_path])
}

/// A diffuse material with the texture; no specular (photogrammetry albedo, matte).
fn material_text(texture: &str) -> String {
    format!(
        "# {GENERATOR}\nnewmtl {MATERIAL}\nKa 0 0 0\nKd 1 1 1\nKs 0 0 0\nNs 0\nd 1\nillum 1\n\
         Pr {ROUGHNESS}\nPm 0\nmap_Kd {texture}\n"
    )
}
