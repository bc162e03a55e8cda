//! Projection of 3D Gaussians into a camera, and its backward pass.

use super::{ProjectedGrad, ProjectedSplat};
use crate::camera::Camera;
use crate::splats::{SplatGrads, Splats};

pub fn project(_splats: &Splats, _camera: &Camera) -> Vec<ProjectedSplat> {
    todo!("render helper")
}

pub fn project_backward(
    _splats: &Splats,
    _camera: &Camera,
    _projected: &[ProjectedSplat],
    _grads: &[ProjectedGrad],
) -> SplatGrads {
    todo!("render helper")
}
