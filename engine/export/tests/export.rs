//! Exported files against third-party validators and our own parsers: a UV-mapped sphere with a
//! generated texture is written as GLB, USDZ and OBJ; the GLB must have 0 errors from the Khronos
//! glTF-Validator, the USDZ 0 errors and 0 failed checks from OpenUSD's ComplianceChecker (ARKit
//! rules). The validators are run through the wrappers `scripts/validators.sh` installs, named by
//! `KILN_GLTF_VALIDATOR` / `KILN_USDZ_VALIDATOR` (scripts/test.sh sets both); without them those
//! checks print SKIPPED and the structural checks still run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use glam::{DVec3, Vec3};
use kiln_core::mesh::{TexturedMesh, TriMesh};
use kiln_export::frame::{ExportFrame, FrameOptions};
use kiln_export::{glb, obj, usdz};

/// A UV sphere of `radius` centred at `centre`: seam and pole vertices duplicated so every vertex
/// has one UV (u around, v from the north pole down, glTF orientation).
fn uv_sphere(centre: Vec3, radius: f32, rings: u32, segments: u32) -> TriMesh {
    let mut mesh = TriMesh::default();
    for i in 0..=rings {
        let v = i as f32 / rings as f32;
        let polar = v * std::f32::consts::PI;
        for j in 0..=segments {
            let u = j as f32 / segments as f32;
            let azimuth = u * std::f32::consts::TAU;
            let n = Vec3::new(polar.sin() * azimuth.cos(), polar.cos(), -polar.sin() * azimuth.sin());
            mesh.positions.push((centre + radius * n).to_array());
            mesh.normals.push(n.to_array());
            mesh.uvs.push([u, v]);
        }
    }
    let row = segments + 1;
    for i in 0..rings {
        for j in 0..segments {
            let (a, b, c, d) = (i * row + j, i * row + j + 1, (i + 1) * row + j, (i + 1) * row + j + 1);
            // Counter-clockwise seen from outside; no zero-area triangles at the poles.
            if i != 0 {
                mesh.triangles.push([a, c, b]);
            }
            if i != rings - 1 {
                mesh.triangles.push([b, c, d]);
            }
        }
    }
    mesh
}

fn checker_texture(width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        let on = ((x / 16) + (y / 16)) % 2 == 0;
        image::Rgb([if on { 220 } else { 40 }, (255 * y / height) as u8, (255 * x / width) as u8])
    })
}

fn flat_normal_map(width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_pixel(width, height, image::Rgb([128, 128, 255]))
}

fn sphere_model(with_normal_map: bool) -> TexturedMesh {
    TexturedMesh {
        mesh: uv_sphere(Vec3::new(0.0, 0.1, 0.0), 0.1, 12, 24),
        base_color: checker_texture(128, 64),
        normal_map: with_normal_map.then(|| flat_normal_map(64, 32)),
    }
}

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("export-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

/// Runs a validator wrapper named by `variable`; `None` (after a loud SKIPPED) when unset.
fn run_validator(variable: &str, file: &Path) -> Option<serde_json::Value> {
    let Ok(wrapper) = std::env::var(variable) else {
        eprintln!("SKIPPED: {variable} is not set (scripts/test.sh sets it); {} not validated", file.display());
        return None;
    };
    let output = Command::new(&wrapper).arg(file).output().unwrap_or_else(|e| panic!("running {wrapper}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{wrapper} rejected {}:\n{stdout}\n{}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{wrapper} printed no JSON report ({e}):\n{stdout}")))
}

/// Parses a GLB: returns the JSON document and the BIN chunk, asserting the container layout.
fn parse_glb(bytes: &[u8]) -> (serde_json::Value, &[u8]) {
    assert_eq!(&bytes[0..4], b"glTF");
    assert_eq!(u32_at(bytes, 4), 2, "GLB version");
    assert_eq!(u32_at(bytes, 8) as usize, bytes.len(), "header length is the file length");
    let json_len = u32_at(bytes, 12) as usize;
    assert_eq!(&bytes[16..20], b"JSON");
    assert_eq!(json_len % 4, 0, "JSON chunk padded to 4 bytes");
    let bin_start = 20 + json_len;
    let bin_len = u32_at(bytes, bin_start) as usize;
    assert_eq!(&bytes[bin_start + 4..bin_start + 8], b"BIN\0");
    assert_eq!(bin_len % 4, 0, "BIN chunk padded to 4 bytes");
    assert_eq!(bin_start + 8 + bin_len, bytes.len(), "nothing after the BIN chunk");
    let json = serde_json::from_slice(&bytes[20..bin_start]).unwrap();
    (json, &bytes[bin_start + 8..])
}

#[test]
fn glb_is_valid_and_reads_back() {
    for with_normal_map in [false, true] {
        let model = sphere_model(with_normal_map);
        let dir = out_dir(&format!("glb-{with_normal_map}"));
        let path = dir.join("model.glb");
        glb::write_glb(&path, &model).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (doc, bin) = parse_glb(&bytes);

        assert_eq!(doc["asset"]["version"], "2.0");
        assert!(doc["asset"]["generator"].as_str().unwrap().starts_with("Kiln "));
        let primitive = &doc["meshes"][0]["primitives"][0];
        let position = &doc["accessors"][primitive["attributes"]["POSITION"].as_u64().unwrap() as usize];
        let (lo, hi) = model.mesh.bounds().unwrap();
        let as_f32 = |v: &serde_json::Value| -> Vec<f32> {
            v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
        };
        assert_eq!(as_f32(&position["min"]), lo.to_vec());
        assert_eq!(as_f32(&position["max"]), hi.to_vec());
        assert_eq!(position["count"].as_u64().unwrap() as usize, model.mesh.num_vertices());

        // Vertex data reads back bit-exact, through the accessor and its buffer view.
        let view = &doc["bufferViews"][position["bufferView"].as_u64().unwrap() as usize];
        let offset = view["byteOffset"].as_u64().unwrap() as usize;
        assert_eq!(offset % 4, 0);
        assert_eq!(view["target"], 34962);
        let floats: &[f32] = bytemuck::cast_slice(&bin[offset..offset + view["byteLength"].as_u64().unwrap() as usize]);
        assert_eq!(floats, bytemuck::cast_slice::<[f32; 3], f32>(&model.mesh.positions));
        let indices = &doc["accessors"][primitive["indices"].as_u64().unwrap() as usize];
        assert_eq!(indices["count"].as_u64().unwrap() as usize, 3 * model.mesh.num_triangles());
        let index_view = &doc["bufferViews"][indices["bufferView"].as_u64().unwrap() as usize];
        assert_eq!(index_view["target"], 34963);
        let index_offset = index_view["byteOffset"].as_u64().unwrap() as usize;
        assert_eq!(u16_at(bin, index_offset + 2 * 4) as u32, model.mesh.triangles[1][1], "u16 indices in order");
        for image in doc["images"].as_array().unwrap() {
            let image_view = &doc["bufferViews"][image["bufferView"].as_u64().unwrap() as usize];
            assert!(image_view.get("target").is_none(), "image views have no target");
            let start = image_view["byteOffset"].as_u64().unwrap() as usize;
            let png = image::load_from_memory(&bin[start..start + image_view["byteLength"].as_u64().unwrap() as usize])
                .unwrap();
            assert!(png.width() == 128 || png.width() == 64);
        }
        assert_eq!(doc["materials"][0].get("normalTexture").is_some(), with_normal_map);
        assert_eq!(doc["samplers"][0]["minFilter"], 9987, "mipmapped minification");

        if let Some(report) = run_validator("KILN_GLTF_VALIDATOR", &path) {
            assert_eq!(report["issues"]["numErrors"], 0, "{report:#}");
            eprintln!(
                "glTF-Validator: 0 errors, {} warnings, {} infos on {}",
                report["issues"]["numWarnings"],
                report["issues"]["numInfos"],
                path.display()
            );
            // The validator is not a rubber stamp: a position moved outside the declared max fails.
            let mut tampered = bytes.clone();
            let first_float = bytes.len() - bin.len() + offset;
            tampered[first_float..first_float + 4].copy_from_slice(&1000.0f32.to_le_bytes());
            let bad = dir.join("tampered.glb");
            std::fs::write(&bad, &tampered).unwrap();
            let status = Command::new(std::env::var("KILN_GLTF_VALIDATOR").unwrap()).arg(&bad).output().unwrap().status;
            assert!(!status.success(), "the validator accepted a POSITION beyond its max");
        }
    }
}

/// One zip entry as read back from its local header.
struct ZipEntry {
    name: String,
    data_offset: usize,
    data: Vec<u8>,
}

/// Walks the local headers of a zip, asserting every entry is stored with a correct size.
fn read_zip(bytes: &[u8]) -> Vec<ZipEntry> {
    let mut entries = Vec::new();
    let mut at = 0;
    while u32_at(bytes, at) == 0x0403_4B50 {
        assert_eq!(u16_at(bytes, at + 8), 0, "stored, not compressed");
        let size = u32_at(bytes, at + 18) as usize;
        assert_eq!(size, u32_at(bytes, at + 22) as usize, "stored size = original size");
        let name_len = u16_at(bytes, at + 26) as usize;
        let extra_len = u16_at(bytes, at + 28) as usize;
        let name = String::from_utf8(bytes[at + 30..at + 30 + name_len].to_vec()).unwrap();
        let data_offset = at + 30 + name_len + extra_len;
        entries.push(ZipEntry { name, data_offset, data: bytes[data_offset..data_offset + size].to_vec() });
        at = data_offset + size;
    }
    assert_eq!(u32_at(bytes, at), 0x0201_4B50, "central directory follows the entries");
    let end = bytes.len() - 22;
    assert_eq!(u32_at(bytes, end), 0x0605_4B50);
    assert_eq!(u16_at(bytes, end + 10) as usize, entries.len());
    entries
}

/// The `(a, b)` / `(a, b, c)` tuples of the array declared on the line starting `declaration`.
fn usda_tuples(layer: &str, declaration: &str) -> Vec<Vec<f32>> {
    let line = layer.lines().find(|l| l.trim_start().starts_with(declaration)).unwrap();
    let body = &line[line.find("= [").unwrap() + 3..line.rfind(']').unwrap()];
    body.split("), (")
        .map(|t| t.trim_matches(|c| c == '(' || c == ')').split(',').map(|v| v.trim().parse().unwrap()).collect())
        .collect()
}

#[test]
fn usdz_is_valid_aligned_and_flips_v() {
    for with_normal_map in [false, true] {
        let model = sphere_model(with_normal_map);
        let dir = out_dir(&format!("usdz-{with_normal_map}"));
        let path = dir.join("model.usdz");
        usdz::write_usdz(&path, &model).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let entries = read_zip(&bytes);
        assert!(entries[0].name.ends_with(".usda"), "root layer first: {}", entries[0].name);
        assert_eq!(entries.len(), if with_normal_map { 3 } else { 2 });
        for entry in &entries {
            assert_eq!(entry.data_offset % 64, 0, "{} at {}", entry.name, entry.data_offset);
        }
        let png = image::load_from_memory(&entries[1].data).unwrap();
        assert_eq!((png.width(), png.height()), (128, 64));

        let layer = String::from_utf8(entries[0].data.clone()).unwrap();
        for needle in ["upAxis = \"Y\"", "metersPerUnit = 1", "defaultPrim = \"Model\"", "subdivisionScheme = \"none\""]
        {
            assert!(layer.contains(needle), "{needle} missing");
        }
        let st = usda_tuples(&layer, "texCoord2f[] primvars:st");
        let points = usda_tuples(&layer, "point3f[] points");
        assert_eq!(st.len(), model.mesh.num_vertices());
        for (k, (uv, st)) in model.mesh.uvs.iter().zip(&st).enumerate() {
            assert_eq!(st[0], uv[0]);
            assert!((st[1] - (1.0 - uv[1])).abs() < 1e-6, "vertex {k}: st {st:?} for uv {uv:?}");
            assert_eq!(points[k], model.mesh.positions[k].to_vec());
        }

        if let Some(report) = run_validator("KILN_USDZ_VALIDATOR", &path) {
            assert_eq!(report["errors"].as_array().unwrap().len(), 0, "{report:#}");
            assert_eq!(report["failed_checks"].as_array().unwrap().len(), 0, "{report:#}");
            eprintln!("ComplianceChecker(arkit): 0 errors, 0 failed checks on {}", path.display());
        }
    }
}

/// The usdz rules read back by an independent zip reader (the `zip` crate's): every entry
/// stored, its data at a multiple of 64 bytes, its bytes as written, and the root layer first.
#[test]
fn usdz_reads_back_stored_and_64_byte_aligned_with_the_zip_crate() {
    let model = sphere_model(true);
    let path = out_dir("usdz-zip-crate").join("model.usdz");
    usdz::write_usdz(&path, &model).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).unwrap();
    let mut names = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).unwrap();
        let name = entry.name().unwrap().to_string();
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored, "{name}");
        let data_start = entry.data_start().unwrap();
        assert_eq!(data_start % 64, 0, "{name}: data at {data_start}");
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        let start = usize::try_from(data_start).unwrap();
        assert_eq!(&bytes[start..start + data.len()], &data[..], "{name}: stored bytes are the file's");
        names.push(name);
    }
    assert_eq!(names, ["model.usda", "textures/basecolor.png", "textures/normal.png"]);
}

#[test]
fn obj_refers_to_its_material_and_flips_v() {
    let model = sphere_model(false);
    let dir = out_dir("obj");
    let written = obj::write_obj(&dir.join("model.obj"), &model).unwrap();
    assert_eq!(written.len(), 3);
    let text = std::fs::read_to_string(dir.join("model.obj")).unwrap();
    assert!(text.contains("mtllib model.mtl"));
    let mtl = std::fs::read_to_string(dir.join("model.mtl")).unwrap();
    assert!(mtl.contains("map_Kd model.png"));
    let png = image::open(dir.join("model.png")).unwrap();
    assert_eq!(png.width(), 128);
    let vt: Vec<[f32; 2]> = text
        .lines()
        .filter_map(|l| l.strip_prefix("vt "))
        .map(|l| {
            let v: Vec<f32> = l.split(' ').map(|x| x.parse().unwrap()).collect();
            [v[0], v[1]]
        })
        .collect();
    assert_eq!(vt.len(), model.mesh.num_vertices());
    for (uv, vt) in model.mesh.uvs.iter().zip(&vt) {
        assert_eq!(vt[0], uv[0]);
        assert!((vt[1] - (1.0 - uv[1])).abs() < 1e-6);
    }
    let faces = text.lines().filter(|l| l.starts_with("f ")).count();
    assert_eq!(faces, model.mesh.num_triangles());
    let first_face = text.lines().find(|l| l.starts_with("f ")).unwrap();
    let [a, b, c] = model.mesh.triangles[0].map(|i| i + 1);
    assert_eq!(first_face, format!("f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}"), "1-based, same winding");
}

#[test]
fn z_up_model_exports_y_up_on_the_ground() {
    // A sphere resting on z = 0.05 in a Blender-like +Z-up world, off-centre.
    let mut world = uv_sphere(Vec3::ZERO, 0.1, 8, 16);
    for p in &mut world.positions {
        // Swap into Z-up: sphere's own +Y (its north pole) becomes world +Z.
        *p = [p[0] + 0.3, -p[2] - 0.2, p[1] + 0.15];
    }
    let frame = ExportFrame::new(&world, DVec3::Z, &FrameOptions::default()).unwrap();
    let exported = frame.apply(&world);
    let (lo, hi) = exported.bounds().unwrap();
    assert!(lo[1].abs() < 1e-6, "base on y = 0");
    assert!((hi[1] - 0.2).abs() < 1e-5, "0.2 m tall along +Y");
    assert!((lo[0] + hi[0]).abs() < 1e-5 && (lo[2] + hi[2]).abs() < 1e-5, "centred in x/z");
    // The north pole (world (0.3, -0.2, 0.25)) maps to the exported vertex that came from it.
    let north = frame.transform_point(DVec3::new(0.3, -0.2, 0.25));
    let vertex = exported.positions[0];
    assert!((north - DVec3::new(f64::from(vertex[0]), f64::from(vertex[1]), f64::from(vertex[2]))).length() < 1e-6);
    assert!((north - DVec3::new(0.0, 0.2, 0.0)).length() < 1e-6, "{north}");
}
