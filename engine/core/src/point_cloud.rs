//! Sparse point clouds (COLMAP `points3D`, a nerfstudio `ply_file_path`) and reading them from PLY.

use std::path::Path;

use crate::splats::ply::{PlyError, VertexReader};

/// A sparse point cloud (COLMAP `points3D`, or nerfstudio's `ply_file_path`), world frame.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PointCloud {
    pub positions: Vec<[f32; 3]>,
    /// RGB in `[0, 1]`.
    pub colors: Vec<[f32; 3]>,
}

impl PointCloud {
    /// Reads `x y z` and, when present, `red green blue` of a PLY file's vertices (integer colours
    /// are scaled by their type's maximum, float colours taken as `[0, 1]`; absent ones are grey).
    pub fn read_ply(path: &Path) -> Result<Self, PlyError> {
        let mut reader = VertexReader::open(path)?;
        let names = ["x", "y", "z", "red", "green", "blue"];
        if let Some(missing) = names[..3].iter().find(|n| reader.scalar_type(n).is_none()) {
            return Err(PlyError::Layout {
                path: path.to_path_buf(),
                problem: format!("no vertex property '{missing}'"),
            });
        }
        let color_scale = match reader.scalar_type("red") {
            Some(ty) => ty.unsigned_max().unwrap_or(1.0),
            None => 1.0,
        };
        reader.select(&names);
        let mut cloud = PointCloud {
            positions: Vec::with_capacity(reader.capacity_hint()),
            colors: Vec::with_capacity(reader.capacity_hint()),
        };
        let mut row = [0.0f64; 6];
        for _ in 0..reader.len() {
            reader.read_row(&mut row)?;
            cloud.positions.push([row[0] as f32, row[1] as f32, row[2] as f32]);
            let color = |v: f64| if v.is_nan() { 0.5 } else { (v / color_scale) as f32 };
            cloud.colors.push([color(row[3]), color(row[4]), color(row[5])]);
        }
        Ok(cloud)
    }
}
