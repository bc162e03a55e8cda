//! USDZ writer (OpenUSD's usdz file format specification): a zip archive whose entries are
//! stored uncompressed with every file's data 64-byte aligned, holding a `.usda` root layer first
//! and the PNG textures it refers to by package-relative asset paths.
//!
//! The stage is in metres (`metersPerUnit = 1`) with `upAxis = "Y"`, one `Mesh` prim with vertex
//! normals and `primvars:st`, and a `UsdPreviewSurface` material fed by `UsdUVTexture` nodes.
//! USD's texture coordinates have their origin at the image's bottom-left, glTF's (Kiln's) at the
//! top-left, so `st = (u, 1 − v)`.

use std::fmt::Write as _;
use std::io::{Cursor, Write as _};
use std::path::Path;

use zip::result::ZipError;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::ExportError;
use crate::glb::{GENERATOR, ROUGHNESS};
use crate::png::encode_png;
use crate::prepare::{Prepared, prepare};
use kiln_core::atomic_file::write_atomically;
use kiln_core::mesh::TexturedMesh;

/// Root layer name: the first entry of the archive.
const ROOT_LAYER: &str = "model.usda";
const BASE_COLOR_FILE: &str = "textures/basecolor.png";
const NORMAL_MAP_FILE: &str = "textures/normal.png";
/// The usdz specification aligns every file's data to 64 bytes so it can be memory-mapped.
const DATA_ALIGNMENT: u16 = 64;

/// Metadata ending a primvar declaration: one value per vertex.
const VERTEX_INTERPOLATION: &str = " (\n            interpolation = \"vertex\"\n        )\n";

/// Writes `model` as a `.usdz` package at `path` (atomically).
pub fn write_usdz(path: &Path, model: &TexturedMesh) -> Result<(), ExportError> {
    let bytes = usdz_bytes(model)?;
    write_atomically(path, |w| std::io::Write::write_all(w, &bytes)).map_err(ExportError::io(path))
}

/// The `.usdz` package of `model`, in memory.
pub fn usdz_bytes(model: &TexturedMesh) -> Result<Vec<u8>, ExportError> {
    let prepared = prepare(model)?;
    let layer = root_layer(&prepared, model.normal_map.is_some());
    let mut files = vec![
        (ROOT_LAYER, layer.into_bytes()),
        (BASE_COLOR_FILE, encode_png(&model.base_color, "base colour texture")?),
    ];
    if let Some(map) = &model.normal_map {
        files.push((NORMAL_MAP_FILE, encode_png(map, "normal map")?));
    }
    zip_stored(&files)
}

/// The `.usda` text of the stage.
fn root_layer(mesh: &Prepared, with_normal_map: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "#usda 1.0\n(\n    defaultPrim = \"Model\"\n    doc = \"{GENERATOR}\"\n    metersPerUnit = 1\n    upAxis = \"Y\"\n)\n"
    );
    s.push_str("def Xform \"Model\" (\n    kind = \"component\"\n)\n{\n");
    write_mesh(&mut s, mesh);
    write_material(&mut s, with_normal_map);
    s.push_str("}\n");
    s
}

fn write_mesh(s: &mut String, mesh: &Prepared) {
    let (lo, hi) = extent(mesh.positions);
    s.push_str("    def Mesh \"Mesh\" (\n        prepend apiSchemas = [\"MaterialBindingAPI\"]\n    )\n    {\n");
    let _ =
        writeln!(s, "        float3[] extent = [({}, {}, {}), ({}, {}, {})]", lo[0], lo[1], lo[2], hi[0], hi[1], hi[2]);
    write_array(s, "int[] faceVertexCounts", mesh.triangles.iter().map(|_| "3".to_string()));
    s.push('\n');
    write_array(s, "int[] faceVertexIndices", mesh.triangles.iter().flatten().map(u32::to_string));
    s.push('\n');
    s.push_str("        rel material:binding = </Model/Materials/Surface>\n");
    write_array(s, "normal3f[] normals", mesh.normals.iter().map(|n| format!("({}, {}, {})", n[0], n[1], n[2])));
    s.push_str(VERTEX_INTERPOLATION);
    write_array(s, "point3f[] points", mesh.positions.iter().map(|p| format!("({}, {}, {})", p[0], p[1], p[2])));
    s.push('\n');
    // glTF v runs down the image, USD t up it.
    write_array(s, "texCoord2f[] primvars:st", mesh.uvs.iter().map(|uv| format!("({}, {})", uv[0], 1.0 - uv[1])));
    s.push_str(VERTEX_INTERPOLATION);
    s.push_str("        uniform token subdivisionScheme = \"none\"\n    }\n\n");
}

/// `        <declaration> = [a, b, …]` on one line, not ended (metadata may follow).
fn write_array(s: &mut String, declaration: &str, items: impl Iterator<Item = String>) {
    let _ = write!(s, "        {declaration} = [");
    for (i, item) in items.enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&item);
    }
    s.push(']');
}

fn extent(positions: &[[f32; 3]]) -> ([f32; 3], [f32; 3]) {
    positions.iter().fold(([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]), |(lo, hi), p| {
        (std::array::from_fn(|k| lo[k].min(p[k])), std::array::from_fn(|k| hi[k].max(p[k])))
    })
}

fn write_material(s: &mut String, with_normal_map: bool) {
    const M: &str = "/Model/Materials/Surface";
    s.push_str("    def Scope \"Materials\"\n    {\n        def Material \"Surface\"\n        {\n");
    let _ = writeln!(s, "            token outputs:surface.connect = <{M}/PreviewSurface.outputs:surface>\n");
    s.push_str("            def Shader \"PreviewSurface\"\n            {\n");
    s.push_str("                uniform token info:id = \"UsdPreviewSurface\"\n");
    let _ = writeln!(s, "                color3f inputs:diffuseColor.connect = <{M}/BaseColor.outputs:rgb>");
    let _ =
        writeln!(s, "                float inputs:metallic = 0\n                float inputs:roughness = {ROUGHNESS}");
    if with_normal_map {
        let _ = writeln!(s, "                normal3f inputs:normal.connect = <{M}/NormalMap.outputs:rgb>");
    }
    s.push_str("                token outputs:surface\n            }\n\n");
    s.push_str("            def Shader \"StReader\"\n            {\n");
    s.push_str("                uniform token info:id = \"UsdPrimvarReader_float2\"\n");
    s.push_str(
        "                string inputs:varname = \"st\"\n                float2 outputs:result\n            }\n",
    );
    write_texture(s, "BaseColor", BASE_COLOR_FILE, "sRGB", None);
    if with_normal_map {
        // 8-bit [0, 1] to [−1, 1]; linear data, so "raw" (UsdPreviewSurface's normal-map rules).
        write_texture(s, "NormalMap", NORMAL_MAP_FILE, "raw", Some(("(2, 2, 2, 1)", "(-1, -1, -1, 0)")));
    }
    s.push_str("        }\n    }\n");
}

fn write_texture(s: &mut String, name: &str, file: &str, colour_space: &str, scale_bias: Option<(&str, &str)>) {
    let _ = writeln!(s, "\n            def Shader \"{name}\"\n            {{");
    s.push_str("                uniform token info:id = \"UsdUVTexture\"\n");
    let _ = writeln!(s, "                asset inputs:file = @{file}@");
    let _ = writeln!(s, "                token inputs:sourceColorSpace = \"{colour_space}\"");
    s.push_str("                float2 inputs:st.connect = </Model/Materials/Surface/StReader.outputs:result>\n");
    s.push_str("                token inputs:wrapS = \"clamp\"\n                token inputs:wrapT = \"clamp\"\n");
    if let Some((scale, bias)) = scale_bias {
        let _ =
            writeln!(s, "                float4 inputs:scale = {scale}\n                float4 inputs:bias = {bias}");
    }
    s.push_str("                float3 outputs:rgb\n            }\n");
}

/// A zip archive of `files` in order, stored, each file's data aligned to [`DATA_ALIGNMENT`].
fn zip_stored(files: &[(&str, Vec<u8>)]) -> Result<Vec<u8>, ExportError> {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .with_alignment(DATA_ALIGNMENT)
        // The zip epoch rather than the clock, so that the same model gives the same bytes.
        .last_modified_time(DateTime::default());
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in files {
        zip.start_file(*name, options)?;
        zip.write_all(data).map_err(ZipError::Io)?;
    }
    Ok(zip.finish()?.into_inner())
}
