//! Surfaces from trained splats: extraction, cleanup and decimation, and the geometric metrics
//! that compare a mesh with a reference. The mesh types themselves are [`kiln_core::mesh`].
//!
//! Stage flow: [`surface`] (median depth renders → TSDF → marching cubes; for an object capture,
//! [`object`] finds the object and its masks on a coarse pass and the surface is fused again in
//! its box) → [`cleanup`] (main component, floaters, support plane, small holes capped) → [`decimate`] (quadric, to a triangle budget) → the
//! [`kiln_texture`] module (UV atlas, baking from the photos) → [`kiln_export`].
//! `kiln_job::mesh_stage` runs them; [`metrics`] holds Chamfer distance and F-score.

pub mod cleanup;
pub mod decimate;
pub mod marching_cubes;
pub mod metrics;
pub mod object;
pub mod surface;
pub mod tsdf;

pub use kiln_core::mesh::error::MeshError;
pub use kiln_core::mesh::{TexturedMesh, TriMesh};
