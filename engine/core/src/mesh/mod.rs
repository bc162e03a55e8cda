//! Triangle meshes ([`TriMesh`], [`TexturedMesh`]), their PLY files, and rasterising their
//! triangles at pixel centres (texel maps, depth buffers).

pub mod error;
pub mod ply;
pub mod raster;

/// An indexed triangle mesh. Optional per-vertex attributes are empty or one per position.
///
/// Triangles are counter-clockwise seen from outside (glTF's front face). `uvs` follow glTF:
/// `(0, 0)` is the top-left of the texture image, `v` grows downwards.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TriMesh {
    pub positions: Vec<[f32; 3]>,
    pub triangles: Vec<[u32; 3]>,
    pub normals: Vec<[f32; 3]>,
    pub uvs: Vec<[f32; 2]>,
    /// Linear-light RGB in `[0, 1]`, when a vertex colour is known.
    pub colors: Vec<[f32; 3]>,
}

impl TriMesh {
    /// Area-weighted vertex normals (unit length; zero for isolated vertices).
    pub fn vertex_normals(&self) -> Vec<[f32; 3]> {
        let mut sums = vec![glam::Vec3::ZERO; self.positions.len()];
        for t in &self.triangles {
            let [a, b, c] = t.map(|v| glam::Vec3::from(self.positions[v as usize]));
            let area_normal = (b - a).cross(c - a);
            for &v in t {
                sums[v as usize] += area_normal;
            }
        }
        sums.into_iter().map(|n| n.normalize_or_zero().to_array()).collect()
    }

    pub fn num_vertices(&self) -> usize {
        self.positions.len()
    }

    pub fn num_triangles(&self) -> usize {
        self.triangles.len()
    }

    /// A closed UV sphere around the origin for tests and synthetic scenes: `rings` latitude
    /// bands (the poles as triangle fans) × `segments` longitudes, each vertex at
    /// `radius(direction)` along its unit direction. Counter-clockwise seen from outside.
    pub fn uv_sphere(rings: u32, segments: u32, radius: impl Fn(glam::Vec3) -> f32) -> TriMesh {
        let at = |dir: glam::Vec3| (dir * radius(dir)).to_array();
        let mut positions = vec![at(glam::Vec3::Z)];
        for i in 1..rings {
            let theta = std::f32::consts::PI * i as f32 / rings as f32;
            for j in 0..segments {
                let phi = std::f32::consts::TAU * j as f32 / segments as f32;
                positions.push(at(glam::Vec3::new(theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos())));
            }
        }
        positions.push(at(glam::Vec3::NEG_Z));
        let south = positions.len() as u32 - 1;
        let ring = |i: u32, j: u32| 1 + (i - 1) * segments + j % segments;
        let mut triangles = Vec::new();
        for j in 0..segments {
            triangles.push([0, ring(1, j), ring(1, j + 1)]);
            triangles.push([south, ring(rings - 1, j + 1), ring(rings - 1, j)]);
            for i in 1..rings - 1 {
                let (a, b, c, d) = (ring(i, j), ring(i + 1, j), ring(i + 1, j + 1), ring(i, j + 1));
                triangles.push([a, b, c]);
                triangles.push([a, c, d]);
            }
        }
        TriMesh { positions, triangles, ..TriMesh::default() }
    }

    /// Axis-aligned bounds `(min, max)`, or `None` for an empty mesh.
    pub fn bounds(&self) -> Option<([f32; 3], [f32; 3])> {
        let first = *self.positions.first()?;
        Some(self.positions.iter().fold((first, first), |(lo, hi), p| {
            (std::array::from_fn(|k| lo[k].min(p[k])), std::array::from_fn(|k| hi[k].max(p[k])))
        }))
    }
}

/// A mesh with a UV atlas and its baked textures (sRGB 8-bit, glTF UV orientation).
#[derive(Clone, Debug, PartialEq)]
pub struct TexturedMesh {
    pub mesh: TriMesh,
    pub base_color: image::RgbImage,
    /// Tangent-space normal map (OpenGL / glTF convention, +Y up in texture space), if baked.
    pub normal_map: Option<image::RgbImage>,
}
