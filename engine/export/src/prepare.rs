//! What every exporter needs from a [`TexturedMesh`] before writing it: a checked mesh (finite
//! positions, indices in range, one UV per vertex) with unit vertex normals (computed
//! area-weighted when the mesh has none or renormalised when it has them).

use glam::Vec3;

use crate::ExportError;
use kiln_core::mesh::{TexturedMesh, TriMesh};

/// Normal written for a vertex whose faces have no area (validators reject zero-length normals).
const FALLBACK_NORMAL: [f32; 3] = [0.0, 1.0, 0.0];

/// Vertex data ready for writing; every array has one entry per vertex.
pub(crate) struct Prepared<'a> {
    pub positions: &'a [[f32; 3]],
    pub normals: Vec<[f32; 3]>,
    pub uvs: &'a [[f32; 2]],
    pub triangles: &'a [[u32; 3]],
}

pub(crate) fn prepare(model: &TexturedMesh) -> Result<Prepared<'_>, ExportError> {
    let mesh = &model.mesh;
    check(mesh)?;
    let normals = if mesh.normals.len() == mesh.positions.len() {
        mesh.normals.iter().map(|n| unit_or_fallback(Vec3::from(*n))).collect()
    } else {
        area_weighted_normals(mesh)
    };
    Ok(Prepared { positions: &mesh.positions, normals, uvs: &mesh.uvs, triangles: &mesh.triangles })
}

fn check(mesh: &TriMesh) -> Result<(), ExportError> {
    let invalid = |what: String| Err(ExportError::InvalidMesh(what));
    if mesh.triangles.is_empty() || mesh.positions.is_empty() {
        return invalid("it has no triangles".into());
    }
    if mesh.uvs.len() != mesh.positions.len() {
        return invalid(format!(
            "{} UVs for {} vertices (a texture atlas is needed)",
            mesh.uvs.len(),
            mesh.positions.len()
        ));
    }
    if let Some(i) = mesh.positions.iter().position(|p| !p.iter().all(|c| c.is_finite())) {
        return invalid(format!("vertex {i} has a non-finite position"));
    }
    if let Some(i) = mesh.uvs.iter().position(|uv| !uv.iter().all(|c| c.is_finite())) {
        return invalid(format!("vertex {i} has a non-finite UV"));
    }
    let count = mesh.positions.len() as u64;
    if let Some(t) = mesh.triangles.iter().position(|tri| tri.iter().any(|&i| u64::from(i) >= count)) {
        return invalid(format!("triangle {t} indexes a vertex beyond the {count} there are"));
    }
    Ok(())
}

fn unit_or_fallback(n: Vec3) -> [f32; 3] {
    let unit = n.normalize_or_zero();
    if unit == Vec3::ZERO { FALLBACK_NORMAL } else { unit.to_array() }
}

/// Sum of the (area-weighted) face normals around each vertex, normalised.
fn area_weighted_normals(mesh: &TriMesh) -> Vec<[f32; 3]> {
    let mut sums = vec![Vec3::ZERO; mesh.positions.len()];
    for tri in &mesh.triangles {
        let [a, b, c] = tri.map(|i| Vec3::from(mesh.positions[i as usize]));
        let doubled_area_normal = (b - a).cross(c - a);
        for &i in tri {
            sums[i as usize] += doubled_area_normal;
        }
    }
    sums.into_iter().map(unit_or_fallback).collect()
}

/// Per-vertex tangents for a normal map (glTF `TANGENT`): `xyz` along increasing `u`,
/// orthonormalised against the vertex normal; `w = ±1` makes `cross(N, T) · w` point towards
/// decreasing `v` (up in the image, the "+Y up" of glTF normal textures with their top-left UV
/// origin). Accumulated over the triangles around each vertex, area-weighted by the UV Jacobian.
pub(crate) fn tangents(mesh: &Prepared) -> Vec<[f32; 4]> {
    let n = mesh.positions.len();
    let (mut along_u, mut up_image) = (vec![Vec3::ZERO; n], vec![Vec3::ZERO; n]);
    for tri in mesh.triangles {
        let [a, b, c] = tri.map(|i| i as usize);
        let (p0, p1, p2) =
            (Vec3::from(mesh.positions[a]), Vec3::from(mesh.positions[b]), Vec3::from(mesh.positions[c]));
        let (e1, e2) = (p1 - p0, p2 - p0);
        // Texture coordinates with the image's up as +t: t = −v.
        let (du1, dt1) = (mesh.uvs[b][0] - mesh.uvs[a][0], mesh.uvs[a][1] - mesh.uvs[b][1]);
        let (du2, dt2) = (mesh.uvs[c][0] - mesh.uvs[a][0], mesh.uvs[a][1] - mesh.uvs[c][1]);
        let det = du1 * dt2 - du2 * dt1;
        if det.abs() <= f32::EPSILON * (du1.abs() + du2.abs() + dt1.abs() + dt2.abs()).powi(2) {
            continue;
        }
        // d p / d u and d p / d t, scaled by det (keeps larger triangles more influential).
        let sign = det.signum();
        let t = (e1 * dt2 - e2 * dt1) * sign;
        let bt = (e2 * du1 - e1 * du2) * sign;
        for i in [a, b, c] {
            along_u[i] += t;
            up_image[i] += bt;
        }
    }
    (0..n)
        .map(|i| {
            let normal = Vec3::from(mesh.normals[i]);
            let mut tangent = (along_u[i] - normal * normal.dot(along_u[i])).normalize_or_zero();
            if tangent == Vec3::ZERO {
                tangent = normal.any_orthonormal_vector();
            }
            let w = if normal.cross(tangent).dot(up_image[i]) < 0.0 { -1.0 } else { 1.0 };
            [tangent.x, tangent.y, tangent.z, w]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(mesh: TriMesh) -> TexturedMesh {
        TexturedMesh { mesh, base_color: image::RgbImage::new(4, 4), normal_map: None }
    }

    #[test]
    fn computes_unit_normals_facing_the_winding() {
        let mesh = TriMesh {
            positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            triangles: vec![[0, 1, 2]],
            uvs: vec![[0.0; 2]; 3],
            ..Default::default()
        };
        let m = model(mesh);
        let prepared = prepare(&m).unwrap();
        assert!(prepared.normals.iter().all(|n| *n == [0.0, 0.0, 1.0]));
    }

    #[test]
    fn tangents_follow_u_and_image_up() {
        // A quad in the z = 0 plane facing +z: u grows along +x, v (glTF, downwards) along −y,
        // so the image's up is +y and cross(N, T) = +y: w = +1.
        let mesh = TriMesh {
            positions: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]],
            triangles: vec![[0, 1, 2], [0, 2, 3]],
            uvs: vec![[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]],
            ..Default::default()
        };
        let m = model(mesh.clone());
        let t = tangents(&prepare(&m).unwrap());
        assert!(t.iter().all(|t| (Vec3::new(t[0], t[1], t[2]) - Vec3::X).length() < 1e-6 && t[3] == 1.0), "{t:?}");
        // Mirrored texture (v upwards along +y): w flips.
        let mirrored = TriMesh { uvs: mesh.uvs.iter().map(|uv| [uv[0], 1.0 - uv[1]]).collect(), ..mesh };
        let m = model(mirrored);
        assert!(tangents(&prepare(&m).unwrap()).iter().all(|t| t[3] == -1.0));
    }

    #[test]
    fn rejects_missing_uvs_and_bad_indices() {
        let mut mesh = TriMesh {
            positions: vec![[0.0; 3]; 3],
            triangles: vec![[0, 1, 3]],
            uvs: vec![[0.0; 2]; 3],
            ..Default::default()
        };
        assert!(prepare(&model(mesh.clone())).is_err());
        mesh.triangles = vec![[0, 1, 2]];
        mesh.uvs.clear();
        assert!(prepare(&model(mesh.clone())).is_err());
        mesh.uvs = vec![[0.0; 2]; 3];
        let m = model(mesh);
        // Degenerate triangle: no area, so the fallback normal (validators reject zero normals).
        assert_eq!(prepare(&m).unwrap().normals[0], FALLBACK_NORMAL);
    }
}
