//! Binary glTF 2.0 (`.glb`) writer: one node, one mesh, one metallic-roughness material with an
//! embedded PNG base-colour texture (and normal texture when baked), everything in one buffer.
//!
//! Layout (glTF 2.0 §4.4): a 12-byte header (`glTF`, version 2, total length), a JSON chunk padded
//! with spaces and a BIN chunk padded with zeros, both to 4 bytes. Inside BIN every buffer view
//! starts on a 4-byte boundary, so every accessor is aligned to its component size. Vertex views
//! carry `target` ARRAY_BUFFER, the index view ELEMENT_ARRAY_BUFFER, image views none.

use std::path::Path;

use serde_json::{Value, json};

use crate::ExportError;
use crate::png::encode_png;
use crate::prepare::{Prepared, prepare, tangents};
use kiln_core::atomic_file::write_atomically;
use kiln_core::mesh::TexturedMesh;

/// `asset.generator` of every file Kiln writes.
pub const GENERATOR: &str = concat!("Kiln ", env!("CARGO_PKG_VERSION"));
/// Photogrammetry textures are diffuse albedo of mostly non-metals.
const METALLIC: f32 = 0.0;
/// A matte default: baked photos already hold the highlights that matter.
pub const ROUGHNESS: f32 = 0.8;

/// glTF magic `glTF`, little-endian.
const GLB_MAGIC: u32 = 0x4654_6C67;
const GLB_VERSION: u32 = 2;
const CHUNK_JSON: u32 = 0x4E4F_534A;
const CHUNK_BIN: u32 = 0x004E_4942;
const GLB_HEADER_BYTES: usize = 12;
const CHUNK_HEADER_BYTES: usize = 8;

/// glTF enums (the spec's WebGL values).
const ARRAY_BUFFER: u32 = 34962;
const ELEMENT_ARRAY_BUFFER: u32 = 34963;
const FLOAT: u32 = 5126;
const UNSIGNED_SHORT: u32 = 5123;
const UNSIGNED_INT: u32 = 5125;
const TRIANGLES: u32 = 4;
const LINEAR: u32 = 9729;
const LINEAR_MIPMAP_LINEAR: u32 = 9987;
/// The atlas has gutters but nothing to repeat; clamping keeps charts at the border clean.
const CLAMP_TO_EDGE: u32 = 33071;
/// Largest vertex count indexed with u16: 65535 is the primitive-restart value, not an index.
const MAX_U16_VERTICES: usize = 65535;

/// Writes `model` as a `.glb` file at `path` (atomically).
pub fn write_glb(path: &Path, model: &TexturedMesh) -> Result<(), ExportError> {
    let bytes = glb_bytes(model)?;
    write_atomically(path, |w| std::io::Write::write_all(w, &bytes)).map_err(ExportError::io(path))
}

/// The `.glb` file of `model`, in memory.
pub fn glb_bytes(model: &TexturedMesh) -> Result<Vec<u8>, ExportError> {
    let prepared = prepare(model)?;
    let mut bin = BinBuilder::default();
    let primitive = write_geometry(&mut bin, &prepared, model.normal_map.is_some());
    let base_color = bin.push_image(&encode_png(&model.base_color, "base colour texture")?);
    let normal = match &model.normal_map {
        Some(map) => Some(bin.push_image(&encode_png(map, "normal map")?)),
        None => None,
    };
    let document = document(&bin, primitive, base_color, normal);
    let json = serde_json::to_vec(&document).map_err(|e| ExportError::InvalidMesh(e.to_string()))?;
    Ok(assemble(json, bin.data))
}

/// The BIN chunk under construction with its buffer views and accessors.
#[derive(Default)]
struct BinBuilder {
    data: Vec<u8>,
    views: Vec<Value>,
    accessors: Vec<Value>,
    images: Vec<Value>,
}

impl BinBuilder {
    fn push_view(&mut self, bytes: &[u8], target: Option<u32>) -> usize {
        pad_to_4(&mut self.data, 0);
        let mut view = json!({ "buffer": 0, "byteOffset": self.data.len(), "byteLength": bytes.len() });
        if let Some(target) = target {
            view["target"] = json!(target);
        }
        self.data.extend_from_slice(bytes);
        self.views.push(view);
        self.views.len() - 1
    }

    fn push_accessor(
        &mut self,
        view: usize,
        component: u32,
        count: usize,
        kind: &str,
        bounds: Option<(Vec<f32>, Vec<f32>)>,
    ) -> usize {
        let mut accessor = json!({ "bufferView": view, "componentType": component, "count": count, "type": kind });
        if let Some((min, max)) = bounds {
            accessor["min"] = json!(min);
            accessor["max"] = json!(max);
        }
        self.accessors.push(accessor);
        self.accessors.len() - 1
    }

    fn push_floats<const N: usize>(&mut self, values: &[[f32; N]], kind: &str, with_bounds: bool) -> usize {
        let view = self.push_view(bytemuck::cast_slice(values.as_flattened()), Some(ARRAY_BUFFER));
        let bounds = with_bounds.then(|| component_bounds(values));
        self.push_accessor(view, FLOAT, values.len(), kind, bounds)
    }

    fn push_image(&mut self, png: &[u8]) -> usize {
        let view = self.push_view(png, None);
        self.images.push(json!({ "bufferView": view, "mimeType": "image/png" }));
        self.images.len() - 1
    }
}

/// Per-component minimum and maximum (glTF requires them on POSITION).
fn component_bounds<const N: usize>(values: &[[f32; N]]) -> (Vec<f32>, Vec<f32>) {
    let mut lo = [f32::INFINITY; N];
    let mut hi = [f32::NEG_INFINITY; N];
    for v in values {
        for k in 0..N {
            lo[k] = lo[k].min(v[k]);
            hi[k] = hi[k].max(v[k]);
        }
    }
    (lo.to_vec(), hi.to_vec())
}

/// Vertex and index data (with tangents for a normal map); returns the primitive's JSON.
fn write_geometry(bin: &mut BinBuilder, mesh: &Prepared, with_tangents: bool) -> Value {
    let position = bin.push_floats(mesh.positions, "VEC3", true);
    let normal = bin.push_floats(&mesh.normals, "VEC3", false);
    let texcoord = bin.push_floats(mesh.uvs, "VEC2", false);
    let tangent = with_tangents.then(|| bin.push_floats(&tangents(mesh), "VEC4", false));
    let flat: Vec<u32> = mesh.triangles.iter().flatten().copied().collect();
    let (bytes, component) = if mesh.positions.len() <= MAX_U16_VERTICES {
        let short: Vec<u16> = flat.iter().map(|&i| i as u16).collect();
        (bytemuck::cast_slice::<u16, u8>(&short).to_vec(), UNSIGNED_SHORT)
    } else {
        (bytemuck::cast_slice::<u32, u8>(&flat).to_vec(), UNSIGNED_INT)
    };
    let view = bin.push_view(&bytes, Some(ELEMENT_ARRAY_BUFFER));
    let indices = bin.push_accessor(view, component, flat.len(), "SCALAR", None);
    let mut attributes = json!({ "POSITION": position, "NORMAL": normal, "TEXCOORD_0": texcoord });
    if let Some(tangent) = tangent {
        attributes["TANGENT"] = json!(tangent);
    }
    json!({
        "attributes": attributes,
        "indices": indices,
        "material": 0,
        "mode": TRIANGLES,
    })
}

fn document(bin: &BinBuilder, primitive: Value, base_color: usize, normal: Option<usize>) -> Value {
    let mut material = json!({
        "name": "surface",
        "pbrMetallicRoughness": {
            "baseColorTexture": { "index": base_color },
            "metallicFactor": METALLIC,
            "roughnessFactor": ROUGHNESS,
        },
    });
    if let Some(image) = normal {
        material["normalTexture"] = json!({ "index": image });
    }
    // One texture per image, all through the one sampler.
    let textures: Vec<Value> = (0..bin.images.len()).map(|i| json!({ "sampler": 0, "source": i })).collect();
    json!({
        "asset": { "version": "2.0", "generator": GENERATOR },
        "scene": 0,
        "scenes": [{ "nodes": [0] }],
        "nodes": [{ "name": "model", "mesh": 0 }],
        "meshes": [{ "name": "model", "primitives": [primitive] }],
        "materials": [material],
        "textures": textures,
        "samplers": [{
            "magFilter": LINEAR,
            "minFilter": LINEAR_MIPMAP_LINEAR,
            "wrapS": CLAMP_TO_EDGE,
            "wrapT": CLAMP_TO_EDGE,
        }],
        "images": bin.images,
        "accessors": bin.accessors,
        "bufferViews": bin.views,
        "buffers": [{ "byteLength": bin.data.len() }],
    })
}

fn pad_to_4(bytes: &mut Vec<u8>, fill: u8) {
    while !bytes.len().is_multiple_of(4) {
        bytes.push(fill);
    }
}

/// Header, JSON chunk (space-padded), BIN chunk (zero-padded).
fn assemble(mut json: Vec<u8>, mut bin: Vec<u8>) -> Vec<u8> {
    pad_to_4(&mut json, b' ');
    pad_to_4(&mut bin, 0);
    let total = GLB_HEADER_BYTES + 2 * CHUNK_HEADER_BYTES + json.len() + bin.len();
    let mut out = Vec::with_capacity(total);
    for word in [GLB_MAGIC, GLB_VERSION, total as u32, json.len() as u32, CHUNK_JSON] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&json);
    out.extend_from_slice(&(bin.len() as u32).to_le_bytes());
    out.extend_from_slice(&CHUNK_BIN.to_le_bytes());
    out.extend_from_slice(&bin);
    out
}
