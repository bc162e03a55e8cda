//! Kiln's shared types, below every stage: cameras and their conventions, images, the PLY
//! container, splats, triangle meshes, point clouds, the photo lister, atomic files, progress from
//! parallel work and the seeded generator.

pub mod atomic_file;
pub mod camera;
pub mod camera_model;
pub mod error_text;
pub mod image_buf;
pub mod mesh;
pub mod photos;
pub mod ply;
pub mod point_cloud;
pub mod progress;
pub mod rng;
pub mod splats;
