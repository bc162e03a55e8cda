//! USDZ writer (OpenUSD's usdz file format specification): a zip archive whose entries are
//! stored uncompressed with every file's data 64-byte aligned, holding a `.usda` root layer first
//! and the PNG textures it refers to by package-relative asset paths.
//!
//! The stage is in metres (`metersPerUnit = 1`) with `upAxis = "Y"`, one `Mesh` prim with vertex
//! normals and `primvars:st`, and a `UsdPreviewSurface` material fed by `UsdUVTexture` nodes.
//! USD's texture coordinates have their origin at the image's bottom-left, glTF's (Kiln's) at the
//! top-left, so `st = (u, 1 − v)`.

use std::fmt::Write as _;
use std::path::Path;

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
const DATA_ALIGNMENT: usize = 64;

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
    Ok(zip_stored(&files))
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

/// Zip local file header signature.
const LOCAL_HEADER_SIGNATURE: u32 = 0x0403_4B50;
const CENTRAL_HEADER_SIGNATURE: u32 = 0x0201_4B50;
const END_OF_CENTRAL_SIGNATURE: u32 = 0x0605_4B50;
const LOCAL_HEADER_BYTES: usize = 30;
/// Version 1.0 of the zip format suffices for stored entries.
const ZIP_VERSION: u16 = 10;
/// Compression method 0: stored.
const STORED: u16 = 0;
/// 1980-01-01 00:00, the zip epoch: a fixed timestamp keeps the output reproducible.
const DOS_DATE: u16 = (1 << 5) | 1;
/// Extra-field id of the alignment padding (any id a reader does not know is skipped).
const PADDING_EXTRA_ID: u16 = 0x1986;
/// An extra field is at least its 4-byte id + size header.
const EXTRA_HEADER_BYTES: usize = 4;

/// A zip archive of `files` in order, stored, each file's data aligned to [`DATA_ALIGNMENT`].
fn zip_stored(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let header_offset = out.len();
        let extra = alignment_padding(header_offset + LOCAL_HEADER_BYTES + name.len());
        let crc = crc32(data);
        out.extend_from_slice(&LOCAL_HEADER_SIGNATURE.to_le_bytes());
        push_entry_fields(&mut out, name, data.len(), crc, extra.len());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&extra);
        out.extend_from_slice(data);

        central.extend_from_slice(&CENTRAL_HEADER_SIGNATURE.to_le_bytes());
        central.extend_from_slice(&ZIP_VERSION.to_le_bytes()); // version made by
        push_entry_fields(&mut central, name, data.len(), crc, 0);
        for field in [0u16, 0, 0, 0, 0] {
            // comment length, disk number, internal attributes, external attributes (2 words)
            central.extend_from_slice(&field.to_le_bytes());
        }
        central.extend_from_slice(&(header_offset as u32).to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = out.len();
    out.extend_from_slice(&central);
    out.extend_from_slice(&END_OF_CENTRAL_SIGNATURE.to_le_bytes());
    for field in [0u16, 0, files.len() as u16, files.len() as u16] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&(central_offset as u32).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    out
}

/// The fields shared by local and central headers, from "version needed" to "extra length".
fn push_entry_fields(out: &mut Vec<u8>, name: &str, size: usize, crc: u32, extra_len: usize) {
    for field in [ZIP_VERSION, 0, STORED, 0, DOS_DATE] {
        // version needed, flags, method, time, date
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(size as u32).to_le_bytes()); // compressed
    out.extend_from_slice(&(size as u32).to_le_bytes()); // uncompressed
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&(extra_len as u16).to_le_bytes());
}

/// An extra field that moves data starting at `unpadded_data_offset` to the next multiple of
/// [`DATA_ALIGNMENT`] (empty when already aligned).
fn alignment_padding(unpadded_data_offset: usize) -> Vec<u8> {
    let mut pad = (DATA_ALIGNMENT - unpadded_data_offset % DATA_ALIGNMENT) % DATA_ALIGNMENT;
    if pad == 0 {
        return Vec::new();
    }
    if pad < EXTRA_HEADER_BYTES {
        pad += DATA_ALIGNMENT;
    }
    let mut extra = Vec::with_capacity(pad);
    extra.extend_from_slice(&PADDING_EXTRA_ID.to_le_bytes());
    extra.extend_from_slice(&((pad - EXTRA_HEADER_BYTES) as u16).to_le_bytes());
    extra.resize(pad, 0);
    extra
}

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as zip requires.
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = crc_table();
    !data.iter().fold(!0u32, |crc, &byte| TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8))
}

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The CRC-32 catalogue's check value for "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn padding_aligns_every_offset() {
        for offset in 0..200 {
            let pad = alignment_padding(offset);
            assert_eq!((offset + pad.len()) % DATA_ALIGNMENT, 0, "offset {offset}");
            assert!(pad.is_empty() || pad.len() >= EXTRA_HEADER_BYTES);
        }
    }
}
