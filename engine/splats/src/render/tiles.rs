//! The screen's tiles: the grid and the tiles a splat's footprint covers, the binning rule the
//! projection (which culls empty rectangles), the rasteriser and the GPU backend all follow.

use super::TILE_SIZE;

/// Tiles `[x0, x1, y0, y1]` (half-open) covered by a splat centred at `mean2d` with `radius`, in a
/// `width × height` image: the contract's binning rule, shared by projection (which culls empty
/// rectangles) and the GPU backend's tests.
pub fn tile_rect(mean2d: [f32; 2], radius: u32, width: u32, height: u32) -> [u32; 4] {
    let (tiles_x, tiles_y) = tile_grid(width, height);
    let t = TILE_SIZE as f32;
    let r = radius as f32;
    // `as u32` maps NaN to 0, so a NaN centre gives an empty rectangle.
    let lo = |m: f32, n: u32| ((m - r) / t).floor().clamp(0.0, n as f32) as u32;
    let hi = |m: f32, n: u32| ((m + r + t - 1.0) / t).floor().clamp(0.0, n as f32) as u32;
    [lo(mean2d[0], tiles_x), hi(mean2d[0], tiles_x), lo(mean2d[1], tiles_y), hi(mean2d[1], tiles_y)]
}

/// Tiles across and down a `width × height` image.
pub fn tile_grid(width: u32, height: u32) -> (u32, u32) {
    (width.div_ceil(TILE_SIZE), height.div_ceil(TILE_SIZE))
}
