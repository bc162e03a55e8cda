//! Files Kiln did not write: a splat PLY in the INRIA 3DGS layout and a hand-assembled GLB, each
//! produced here by a tiny independent writer from known values, load and render where and in
//! the colour they must.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use glam::Vec3;
use kiln_core::camera::Camera;
use kiln_viewer::headless::{HeadlessRenderer, orbit_camera};
use kiln_viewer::render::RenderOptions;
use kiln_viewer::scene::Scene;

/// `1 / (2√π)` and `√3 / (2√π)`: the real SH constants of degrees 0 and 1, written out here
/// independently of the engine.
const Y0: f32 = 0.282_094_8;
const Y1: f32 = 0.488_602_5;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-viewer-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn pixel_of(camera: &Camera, world: Vec3) -> (u32, u32) {
    let [u, v] = camera.intrinsics.project(camera.camera_from_world().transform_point(world));
    (u.floor() as u32, v.floor() as u32)
}

/// One splat in the INRIA layout: 62 little-endian floats per vertex.
struct InriaSplat {
    position: [f32; 3],
    f_dc: [f32; 3],
    /// Channel-major: 15 coefficients of R, then G, then B.
    f_rest: [f32; 45],
    opacity_logit: f32,
    log_scale: [f32; 3],
    rotation_wxyz: [f32; 4],
}

fn write_inria_ply(path: &Path, splats: &[InriaSplat]) {
    let mut header = format!("ply\nformat binary_little_endian 1.0\nelement vertex {}\n", splats.len());
    let mut names: Vec<String> = ["x", "y", "z", "nx", "ny", "nz"].map(String::from).to_vec();
    names.extend((0..3).map(|i| format!("f_dc_{i}")));
    names.extend((0..45).map(|i| format!("f_rest_{i}")));
    names.push("opacity".into());
    names.extend((0..3).map(|i| format!("scale_{i}")));
    names.extend((0..4).map(|i| format!("rot_{i}")));
    for name in &names {
        header += &format!("property float {name}\n");
    }
    header += "end_header\n";
    let mut bytes = header.into_bytes();
    for s in splats {
        let values: Vec<f32> = s
            .position
            .iter()
            .chain(&[0.0; 3])
            .chain(&s.f_dc)
            .chain(&s.f_rest)
            .chain(&[s.opacity_logit])
            .chain(&s.log_scale)
            .chain(&s.rotation_wxyz)
            .copied()
            .collect();
        assert_eq!(values.len(), names.len());
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn inria_layout_splat_renders_where_and_in_the_colour_expected() {
    let Some(ctx) = common::gpu() else { return };
    let dir = temp_dir("inria");
    let path = dir.join("point_cloud.ply");
    let base = [0.8f32, 0.3, 0.2];
    // The red channel's coefficient 2 (basis Y1·z) is f_rest_1 in the channel-major layout.
    let red_z = 0.3;
    let mut f_rest = [0.0; 45];
    f_rest[1] = red_z;
    let position = [0.3, 0.2, 0.0];
    write_inria_ply(
        &path,
        &[InriaSplat {
            position,
            f_dc: base.map(|c| (c - 0.5) / Y0),
            f_rest,
            opacity_logit: 8.0,
            log_scale: [0.25f32.ln(); 3],
            rotation_wxyz: [1.0, 0.0, 0.0, 0.0],
        }],
    );
    let scene = Scene::load(&path).unwrap();
    assert_eq!(scene.splats.as_ref().unwrap().splats.sh_degree, 3);
    let mut renderer = HeadlessRenderer::with_context(&ctx, &scene).unwrap();
    let options = RenderOptions { background: [0.0, 0.0, 0.0, 1.0], ..Default::default() };
    let bounds = ([-1.0; 3], [1.0; 3]);
    // From +Z the view direction (camera → splat) is about −Z; from −Z about +Z.
    for (azimuth, z_sign) in [(0.0f32, -1.0f32), (180.0, 1.0)] {
        let camera = orbit_camera(bounds, azimuth, 0.0, 4.0, 96, 96);
        let image = renderer.render(&camera, &options).unwrap();
        let (u, v) = pixel_of(&camera, Vec3::from(position));
        // Where: the brightest pixel is the one holding the splat's centre.
        let brightest = image.enumerate_pixels().max_by_key(|(_, _, p)| p[0]).map(|(x, y, _)| (x, y)).unwrap();
        assert!(
            brightest.0.abs_diff(u) <= 1 && brightest.1.abs_diff(v) <= 1,
            "brightest {brightest:?}, centre at ({u}, {v})"
        );
        // What colour: σ is 0.25 m ≈ 8 px here, so the centre pixel has α ≈ 0.99.
        let dir = (Vec3::from(position) - camera.center()).normalize();
        assert!((dir.z - z_sign).abs() < 0.05);
        let expected = [base[0] + Y1 * dir.z * red_z, base[1], base[2]].map(|c| 0.99 * c * 255.0);
        let got = image.get_pixel(u, v);
        for c in 0..3 {
            assert!(
                (f32::from(got[c]) - expected[c]).abs() <= 4.0,
                "azimuth {azimuth}: pixel {got:?}, expected {expected:?}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A GLB holding one textured quad (2×2 texture: red, green / blue, white) under a translated
/// node, assembled by hand: JSON chunk + BIN chunk with positions, UVs, indices and a PNG.
fn write_quad_glb(path: &Path, translation: [f32; 3]) {
    let positions: [[f32; 3]; 4] = [[-0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.5, -0.5, 0.0], [-0.5, -0.5, 0.0]];
    let uvs: [[f32; 2]; 4] = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
    let indices: [u16; 6] = [0, 3, 2, 0, 2, 1];
    let texture = image::RgbaImage::from_fn(2, 2, |x, y| match (x, y) {
        (0, 0) => image::Rgba([255, 0, 0, 255]),
        (1, 0) => image::Rgba([0, 255, 0, 255]),
        (0, 1) => image::Rgba([0, 0, 255, 255]),
        _ => image::Rgba([255, 255, 255, 255]),
    });
    let mut png = Vec::new();
    texture.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let mut bin: Vec<u8> = Vec::new();
    let mut views = Vec::new();
    let mut push = |bytes: &[u8]| {
        while !bin.len().is_multiple_of(4) {
            bin.push(0);
        }
        views.push((bin.len(), bytes.len()));
        bin.extend_from_slice(bytes);
    };
    push(bytemuck::cast_slice(&positions));
    push(bytemuck::cast_slice(&uvs));
    push(bytemuck::cast_slice(&indices));
    push(&png);
    while !bin.len().is_multiple_of(4) {
        bin.push(0);
    }
    let view = |i: usize| serde_json::json!({ "buffer": 0, "byteOffset": views[i].0, "byteLength": views[i].1 });
    let json = serde_json::json!({
        "asset": { "version": "2.0", "generator": "hand-written test GLB" },
        "scene": 0,
        "scenes": [{ "nodes": [0] }],
        "nodes": [{ "mesh": 0, "translation": translation }],
        "meshes": [{ "primitives": [{ "attributes": { "POSITION": 0, "TEXCOORD_0": 1 }, "indices": 2, "material": 0 }] }],
        "materials": [{ "pbrMetallicRoughness": { "baseColorTexture": { "index": 0 }, "metallicFactor": 0.0 } }],
        "textures": [{ "source": 0, "sampler": 0 }],
        "samplers": [{ "magFilter": 9728, "minFilter": 9728 }],
        "images": [{ "bufferView": 3, "mimeType": "image/png" }],
        "accessors": [
            { "bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3", "min": [-0.5, -0.5, 0.0], "max": [0.5, 0.5, 0.0] },
            { "bufferView": 1, "componentType": 5126, "count": 4, "type": "VEC2" },
            { "bufferView": 2, "componentType": 5123, "count": 6, "type": "SCALAR" }
        ],
        "bufferViews": [view(0), view(1), view(2), view(3)],
        "buffers": [{ "byteLength": bin.len() }]
    });
    let mut json = serde_json::to_vec(&json).unwrap();
    while !json.len().is_multiple_of(4) {
        json.push(b' ');
    }
    let mut glb = Vec::new();
    glb.extend_from_slice(b"glTF");
    glb.extend_from_slice(&2u32.to_le_bytes());
    glb.extend_from_slice(&((12 + 8 + json.len() + 8 + bin.len()) as u32).to_le_bytes());
    glb.extend_from_slice(&(json.len() as u32).to_le_bytes());
    glb.extend_from_slice(b"JSON");
    glb.extend_from_slice(&json);
    glb.extend_from_slice(&(bin.len() as u32).to_le_bytes());
    glb.extend_from_slice(b"BIN\0");
    glb.extend_from_slice(&bin);
    std::fs::write(path, glb).unwrap();
}

#[test]
fn hand_written_glb_renders_where_and_in_the_colours_expected() {
    let Some(ctx) = common::gpu() else { return };
    let dir = temp_dir("glb");
    let path = dir.join("quad.glb");
    let translation = [0.2, -0.1, 0.0];
    write_quad_glb(&path, translation);
    let scene = Scene::load(&path).unwrap();
    assert_eq!(scene.mesh.as_ref().unwrap().num_triangles(), 2);
    let mut renderer = HeadlessRenderer::with_context(&ctx, &scene).unwrap();
    let options = RenderOptions { background: [0.0; 4], ..Default::default() };
    let camera = orbit_camera(([-1.0; 3], [1.0; 3]), 0.0, 0.0, 3.0, 120, 100);
    let image = renderer.render(&camera, &options).unwrap();

    // Where: coverage is exactly the projected quad (pixel centres inside its image rectangle).
    let t = Vec3::from(translation);
    let corner = |x: f32, y: f32| {
        camera.intrinsics.project(camera.camera_from_world().transform_point(t + Vec3::new(x, y, 0.0)))
    };
    let ([u0, v0], [u1, v1]) = (corner(-0.5, 0.5), corner(0.5, -0.5));
    let expected: Vec<bool> = (0..image.height())
        .flat_map(|y| (0..image.width()).map(move |x| (x as f32 + 0.5, y as f32 + 0.5)))
        .map(|(x, y)| x > u0 && x < u1 && y > v0 && y < v1)
        .collect();
    let covered: Vec<bool> = image.pixels().map(|p| p[3] > 127).collect();
    let iou = common::iou(&covered, &expected);
    assert!(iou > 0.97, "coverage IoU {iou}");

    // What: each quadrant shows its texel (glTF UV (0, 0) is the image's top-left), lit from
    // the camera so the dominant channel stays dominant. Linear filtering of the 2×2 texture a
    // fraction of a texel off its centre mixes in a few per cent of the neighbours, which the
    // sRGB encode lifts to a few tens of levels; a wrong orientation would put 255 there.
    for ((x, y), channels) in [
        ((-0.25, 0.25), [true, false, false]),
        ((0.25, 0.25), [false, true, false]),
        ((-0.25, -0.25), [false, false, true]),
        ((0.25, -0.25), [true, true, true]),
    ] {
        let (u, v) = pixel_of(&camera, t + Vec3::new(x, y, 0.0));
        let p = image.get_pixel(u, v);
        for c in 0..3 {
            if channels[c] {
                assert!(p[c] > 170, "quadrant ({x}, {y}): {p:?}");
            } else {
                assert!(p[c] < 80, "quadrant ({x}, {y}): {p:?}");
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
