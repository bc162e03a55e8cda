//! Tile binning, depth sort and front-to-back alpha compositing, and its backward pass.

use super::{ProjectedGrad, ProjectedSplat, RasterOutput, RasterState};
use crate::image_buf::ImageRgb;

pub fn rasterize(_projected: &[ProjectedSplat], _width: u32, _height: u32, _background: [f32; 3]) -> (RasterOutput, RasterState) {
    todo!("render helper")
}

pub fn rasterize_backward(
    _projected: &[ProjectedSplat],
    _state: &RasterState,
    _width: u32,
    _height: u32,
    _background: [f32; 3],
    _grad_image: &ImageRgb,
) -> Vec<ProjectedGrad> {
    todo!("render helper")
}
