//! Seeing a textured mesh from a camera on the CPU: a z-buffered rasteriser with
//! perspective-correct UVs and bilinear texture lookup. It is how a baked texture is checked
//! against held-out photos (PSNR inside the object mask), independent of any GPU viewer.
//!
//! Cameras are OpenCV pinholes ([`kiln_core::camera`]); pixel `(x, y)` is sampled at its centre.
//! Texture coordinates follow glTF (`(0, 0)` the top-left of the image, texel centres at
//! `(i + 0.5) / size`). Colours stay in the texture's sRGB encoding, like the photos.

use glam::{Vec2, Vec3};

use crate::TextureError;
use kiln_core::camera::Camera;
use kiln_core::image_buf::ImageRgb;
use kiln_core::mesh::TriMesh;
use kiln_core::mesh::raster::rasterize;

/// Camera-frame depth under which a vertex counts as behind the camera (the triangle is
/// skipped rather than clipped: test views frame the whole object).
const NEAR_Z: f32 = 1e-4;

/// A rendered view: sRGB colour per pixel and whether the mesh covers it.
#[derive(Clone, Debug, PartialEq)]
pub struct TexturedView {
    pub image: ImageRgb,
    pub covered: Vec<bool>,
}

/// Renders `mesh` (one UV per vertex) textured with `texture` from `camera`; uncovered pixels
/// are `background`.
pub fn render_textured(
    mesh: &TriMesh,
    texture: &image::RgbImage,
    camera: &Camera,
    background: [f32; 3],
) -> Result<TexturedView, TextureError> {
    if mesh.uvs.len() != mesh.positions.len() {
        return Err(TextureError::MissingUvs { uvs: mesh.uvs.len(), vertices: mesh.positions.len() });
    }
    let (w, h) = (camera.width(), camera.height());
    let mut depth = vec![f32::INFINITY; (w * h) as usize];
    let mut uv = vec![Vec2::ZERO; (w * h) as usize];
    let camera_from_world = camera.camera_from_world();
    for (index, t) in mesh.triangles.iter().enumerate() {
        let vertex = |k: usize| {
            let v = t[k] as usize;
            mesh.positions.get(v).map(|&p| (camera_from_world.transform_point(Vec3::from(p)), Vec2::from(mesh.uvs[v])))
        };
        let (Some(a), Some(b), Some(c)) = (vertex(0), vertex(1), vertex(2)) else {
            let vertex = t.iter().copied().find(|&v| v as usize >= mesh.positions.len()).unwrap_or(0);
            return Err(TextureError::BadIndex { triangle: index, vertex, vertices: mesh.positions.len() });
        };
        let corners = [a, b, c];
        if corners.iter().any(|(p, _)| p.z <= NEAR_Z) {
            continue;
        }
        let screen = corners.map(|(p, _)| camera.intrinsics.project(p));
        rasterize(screen, w, h, 0.0, |x, y, bary| {
            // Perspective-correct interpolation: barycentrics over z, renormalised.
            let inv_z: [f32; 3] = std::array::from_fn(|k| bary[k] / corners[k].0.z);
            let sum = inv_z[0] + inv_z[1] + inv_z[2];
            let i = (y * w + x) as usize;
            let z = 1.0 / sum;
            if z < depth[i] {
                depth[i] = z;
                uv[i] = (corners[0].1 * inv_z[0] + corners[1].1 * inv_z[1] + corners[2].1 * inv_z[2]) / sum;
            }
        });
    }
    let covered: Vec<bool> = depth.iter().map(|d| d.is_finite()).collect();
    let pixels =
        covered.iter().zip(&uv).map(|(&c, &uv)| if c { sample_bilinear(texture, uv) } else { background }).collect();
    Ok(TexturedView { image: ImageRgb { width: w, height: h, pixels }, covered })
}

/// Bilinear lookup of `texture` at `uv` (glTF orientation), clamped at the borders, in `[0, 1]`.
pub fn sample_bilinear(texture: &image::RgbImage, uv: Vec2) -> [f32; 3] {
    let (w, h) = (i64::from(texture.width()), i64::from(texture.height()));
    if w == 0 || h == 0 {
        return [0.0; 3];
    }
    let (x, y) = (uv.x * w as f32 - 0.5, uv.y * h as f32 - 0.5);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |xi: i64, yi: i64| {
        texture.get_pixel(xi.clamp(0, w - 1) as u32, yi.clamp(0, h - 1) as u32).0.map(|c| f32::from(c) / 255.0)
    };
    let (x0, y0) = (x0 as i64, y0 as i64);
    let (a, b, c, d) = (at(x0, y0), at(x0 + 1, y0), at(x0, y0 + 1), at(x0 + 1, y0 + 1));
    std::array::from_fn(|k| (a[k] * (1.0 - fx) + b[k] * fx) * (1.0 - fy) + (c[k] * (1.0 - fx) + d[k] * fx) * fy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use glam::Mat3;
    use kiln_core::camera::{Intrinsics, WorldFromCameraCv};

    /// A camera at the origin looking along +Z (OpenCV axes), 64×64, focal 64.
    fn camera() -> Camera {
        let intrinsics = Intrinsics { fx: 64.0, fy: 64.0, cx: 32.0, cy: 32.0, width: 64, height: 64 };
        Camera {
            intrinsics,
            world_from_camera: WorldFromCameraCv { rotation: Mat3::IDENTITY, translation: Vec3::ZERO },
        }
    }

    /// A square at depth `z` spanning x, y ∈ [−s, s], UVs mapping it onto the whole texture.
    fn square(z: f32, s: f32) -> TriMesh {
        TriMesh {
            positions: vec![[-s, -s, z], [s, -s, z], [s, s, z], [-s, s, z]],
            triangles: vec![[0, 1, 2], [0, 2, 3]],
            uvs: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
            ..TriMesh::default()
        }
    }

    #[test]
    fn a_textured_square_shows_its_texture_and_the_nearer_surface_wins() {
        // Left half red, right half blue.
        let texture =
            image::RgbImage::from_fn(
                8,
                8,
                |x, _| if x < 4 { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 255]) },
            );
        // The square spans pixels 16..48 at depth 2 (x = ±0.5 → u = 32 ± 64·0.5/2).
        let view = render_textured(&square(2.0, 0.5), &texture, &camera(), [0.5; 3]).unwrap();
        let at = |x: u32, y: u32| (view.image.pixels[(y * 64 + x) as usize], view.covered[(y * 64 + x) as usize]);
        assert_eq!(at(2, 2), ([0.5; 3], false));
        assert_eq!(at(20, 32), ([1.0, 0.0, 0.0], true));
        assert_eq!(at(44, 32), ([0.0, 0.0, 1.0], true));
        let covered = view.covered.iter().filter(|&&c| c).count();
        assert!((covered as i64 - 32 * 32).abs() <= 64, "{covered} pixels");
        // A smaller grey square nearer the camera hides the middle.
        let mut both = square(2.0, 0.5);
        let near = square(1.0, 0.1);
        both.positions.extend(&near.positions);
        both.uvs.extend(vec![[0.0, 0.0]; 4]);
        both.triangles.extend(near.triangles.iter().map(|t| t.map(|v| v + 4)));
        let grey =
            image::RgbImage::from_fn(
                8,
                8,
                |x, _| if x == 0 { image::Rgb([128, 128, 128]) } else { image::Rgb([255, 0, 0]) },
            );
        let view = render_textured(&both, &grey, &camera(), [0.0; 3]).unwrap();
        assert_eq!(view.image.pixels[32 * 64 + 32], [128.0 / 255.0; 3]);
    }

    #[test]
    fn missing_uvs_and_bad_indices_are_errors() {
        let texture = image::RgbImage::new(4, 4);
        let mut mesh = square(2.0, 1.0);
        mesh.uvs.clear();
        assert!(matches!(render_textured(&mesh, &texture, &camera(), [0.0; 3]), Err(TextureError::MissingUvs { .. })));
        let mut mesh = square(2.0, 1.0);
        mesh.triangles.push([0, 1, 9]);
        assert!(matches!(
            render_textured(&mesh, &texture, &camera(), [0.0; 3]),
            Err(TextureError::BadIndex { vertex: 9, .. })
        ));
    }
}
