//! Tile binning, per-tile depth sort and front-to-back alpha compositing (the "Binning" and
//! "Compositing" parts of the contract in `render`), and the backward pass of compositing.
//!
//! Tiles are independent, so both passes run in parallel over tiles. Within a tile the loops go
//! splat by splat (front to back, or back to front in the backward pass) over per-pixel state, and
//! visit only the pixels inside the splat's *visibility ellipse*, where
//! `opacity · exp(power) ≥ MIN_ALPHA` (slightly widened against rounding), row by row. Every pixel
//! outside it would be skipped by the `α < MIN_ALPHA` rule anyway, so the result is exactly the
//! contract's (a test holds it against a literal per-pixel implementation) at a fraction of the
//! cost.
//!
//! The backward pass writes one gradient per (tile, splat) entry into its own slot, then sums the
//! entries of each splat serially: no atomics, and the result does not depend on thread timing.

use rayon::prelude::*;

use super::project::{Footprint, FootprintGrad};
use super::real::{Real, arr_f32};
use super::{MAX_ALPHA, MIN_ALPHA, MIN_TRANSMITTANCE, ProjectedGrad, ProjectedSplat, RasterOutput, RasterState, TILE_SIZE};
use crate::image_buf::{ImageGray, ImageRgb};

/// Pixels in one tile.
const TILE_PIXELS: usize = (TILE_SIZE * TILE_SIZE) as usize;
/// Transmittance at or below which a pixel's median depth is recorded.
const MEDIAN_TRANSMITTANCE: f64 = 0.5;

/// Composites the projected splats into a `width × height` image over `background`.
pub fn rasterize(projected: &[ProjectedSplat], width: u32, height: u32, background: [f32; 3]) -> (RasterOutput, RasterState) {
    let footprints: Vec<Footprint<f32>> = projected.par_iter().map(Footprint::from).collect();
    let bins = bin(&footprints, width, height);
    let c = composite(&footprints, &bins, width, height, background);
    let gray = |pixels| ImageGray { width, height, pixels };
    let output = RasterOutput {
        image: ImageRgb { width, height, pixels: c.image },
        alpha: gray(c.alpha),
        depth: gray(c.depth),
        median_depth: gray(c.median_depth),
    };
    let state = RasterState {
        sorted_ids: bins.sorted_ids,
        tile_ranges: bins.tile_ranges,
        final_transmittance: c.final_transmittance,
        last_contributor: c.last_contributor,
    };
    (output, state)
}

/// Backward pass of [`rasterize`]: `∂L/∂image` to `∂L/∂(projected splat)`, one per splat.
///
/// A `state` or `grad_image` that does not match `width × height` (not the output of
/// [`rasterize`] for this image) is logged as an error and yields zero gradients.
pub fn rasterize_backward(
    projected: &[ProjectedSplat],
    state: &RasterState,
    width: u32,
    height: u32,
    background: [f32; 3],
    grad_image: &ImageRgb,
) -> Vec<ProjectedGrad> {
    let pixels = width as usize * height as usize;
    let (tiles_x, tiles_y) = tile_grid(width, height);
    let consistent = state.final_transmittance.len() == pixels
        && state.last_contributor.len() == pixels
        && state.tile_ranges.len() == (tiles_x * tiles_y) as usize
        && grad_image.pixels.len() == pixels;
    if !consistent {
        tracing::error!(width, height, "rasterize_backward: raster state or image gradient does not match the image size");
        return vec![ProjectedGrad::default(); projected.len()];
    }
    let footprints: Vec<Footprint<f32>> = projected.par_iter().map(Footprint::from).collect();
    let bins = BinsRef { sorted_ids: &state.sorted_ids, tile_ranges: &state.tile_ranges };
    let forward = ForwardRef { final_transmittance: &state.final_transmittance, last_contributor: &state.last_contributor };
    composite_backward(&footprints, bins, forward, width, height, background, &grad_image.pixels)
        .iter()
        .map(FootprintGrad::to_projected)
        .collect()
}

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

/// Per-tile depth-sorted splat lists (the binning half of [`RasterState`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Bins {
    pub sorted_ids: Vec<u32>,
    pub tile_ranges: Vec<[u32; 2]>,
}

/// Borrowed [`Bins`].
#[derive(Clone, Copy)]
pub(crate) struct BinsRef<'a> {
    pub sorted_ids: &'a [u32],
    pub tile_ranges: &'a [[u32; 2]],
}

impl Bins {
    pub fn as_ref(&self) -> BinsRef<'_> {
        BinsRef { sorted_ids: &self.sorted_ids, tile_ranges: &self.tile_ranges }
    }
}

impl<'a> BinsRef<'a> {
    /// The depth-sorted splat ids of tile `tile` (empty when its range is out of bounds).
    fn tile(&self, tile: usize) -> &'a [u32] {
        let Some(&[start, end]) = self.tile_ranges.get(tile) else { return &[] };
        self.sorted_ids.get(start as usize..end as usize).unwrap_or(&[])
    }
}

/// Bins the visible footprints (`radius > 0`) into tiles and sorts each tile by depth, ties by
/// splat index.
pub(crate) fn bin<T: Real>(footprints: &[Footprint<T>], width: u32, height: u32) -> Bins {
    let (tiles_x, tiles_y) = tile_grid(width, height);
    let rects: Vec<[u32; 4]> = footprints
        .par_iter()
        .map(|f| if f.radius == 0 { [0; 4] } else { tile_rect(arr_f32(f.mean2d), f.radius, width, height) })
        .collect();
    let mut counts = vec![0u32; (tiles_x * tiles_y) as usize];
    for_each_tile(&rects, tiles_x, |_, tile| counts[tile] += 1);
    let mut tile_ranges = Vec::with_capacity(counts.len());
    let mut total = 0u32;
    for &count in &counts {
        tile_ranges.push([total, total + count]);
        total += count;
    }
    let mut cursor: Vec<u32> = tile_ranges.iter().map(|r| r[0]).collect();
    let mut keys = vec![0u64; total as usize];
    for_each_tile(&rects, tiles_x, |i, tile| {
        keys[cursor[tile] as usize] = (u64::from(depth_key(footprints[i].depth.to_f32())) << 32) | i as u64;
        cursor[tile] += 1;
    });
    let mut slices = Vec::with_capacity(tile_ranges.len());
    let mut rest = keys.as_mut_slice();
    for &count in &counts {
        let (head, tail) = rest.split_at_mut(count as usize);
        slices.push(head);
        rest = tail;
    }
    slices.into_par_iter().for_each(|s| s.sort_unstable());
    // The low 32 bits of a key are the splat index.
    let sorted_ids = keys.iter().map(|&k| k as u32).collect();
    Bins { sorted_ids, tile_ranges }
}

/// Calls `f(splat, tile)` for every tile of every splat's rectangle, in splat order.
fn for_each_tile(rects: &[[u32; 4]], tiles_x: u32, mut f: impl FnMut(usize, usize)) {
    for (i, &[x0, x1, y0, y1]) in rects.iter().enumerate() {
        for ty in y0..y1 {
            for tx in x0..x1 {
                f(i, (ty * tiles_x + tx) as usize);
            }
        }
    }
}

/// Maps a depth to a `u32` whose unsigned order is the float's total order.
fn depth_key(depth: f32) -> u32 {
    let bits = depth.to_bits();
    if bits >> 31 == 1 { !bits } else { bits | 0x8000_0000 }
}

/// Forward compositing results, row-major over the image.
#[derive(Clone, Debug)]
pub(crate) struct Composite<T> {
    pub image: Vec<[T; 3]>,
    pub alpha: Vec<T>,
    pub depth: Vec<T>,
    pub median_depth: Vec<T>,
    pub final_transmittance: Vec<T>,
    pub last_contributor: Vec<u32>,
}

/// What the backward pass reads from the forward pass.
#[derive(Clone, Copy)]
pub(crate) struct ForwardRef<'a, T> {
    pub final_transmittance: &'a [T],
    pub last_contributor: &'a [u32],
}

#[cfg(test)]
impl<T> Composite<T> {
    pub fn as_forward_ref(&self) -> ForwardRef<'_, T> {
        ForwardRef { final_transmittance: &self.final_transmittance, last_contributor: &self.last_contributor }
    }
}

/// Where one tile lies in the image.
#[derive(Clone, Copy, Debug)]
struct TileGeom {
    /// Top-left pixel.
    origin: [u32; 2],
    /// Pixels of the tile inside the image (less than `TILE_SIZE` on the right and bottom edges).
    size: [u32; 2],
}

impl TileGeom {
    fn new(tile: usize, width: u32, height: u32) -> Self {
        let (tiles_x, _) = tile_grid(width, height);
        let origin = [(tile as u32 % tiles_x) * TILE_SIZE, (tile as u32 / tiles_x) * TILE_SIZE];
        Self { origin, size: [TILE_SIZE.min(width - origin[0]), TILE_SIZE.min(height - origin[1])] }
    }

    /// Calls `f(local index, image index)` for every pixel of the tile inside the image.
    fn for_each_pixel(&self, width: u32, mut f: impl FnMut(usize, usize)) {
        for ly in 0..self.size[1] {
            for lx in 0..self.size[0] {
                let image_index = (self.origin[1] + ly) as usize * width as usize + (self.origin[0] + lx) as usize;
                f((ly * TILE_SIZE + lx) as usize, image_index);
            }
        }
    }

    /// Where in this tile splat `f` can reach `MIN_ALPHA`, or `None` when it cannot anywhere.
    fn visible<T: Real>(&self, f: &Footprint<T>) -> Option<Visible> {
        if f.opacity < T::from_f32(MIN_ALPHA) {
            return None;
        }
        // α ≥ MIN_ALPHA needs ΔᵀQΔ ≤ level = 2 ln(opacity / MIN_ALPHA). The level is widened so
        // that float rounding in the per-pixel test can never put a visible pixel outside.
        let level = 2.0 * (f.opacity.to_f64() / MIN_ALPHA as f64).ln() * (1.0 + LEVEL_SLACK) + LEVEL_SLACK;
        let [a, b, c] = f.conic.map(T::to_f64);
        let det = a * c - b * b;
        let mean = f.mean2d.map(T::to_f64);
        let conic = (a > 0.0 && det > 0.0).then_some([a, b, c]);
        // The ellipse's half-height is √(level · (Q⁻¹)₁₁) = √(level · a / det).
        let half_height = if conic.is_some() { (level * a / det).sqrt() } else { f64::INFINITY };
        let (y0, y1) = span(mean[1], half_height, self.origin[1], self.size[1]);
        (y0 < y1).then_some(Visible { rows: [y0, y1], mean, conic, level, geom: *self })
    }
}

/// Relative and absolute widening of the visibility ellipse's level (see [`TileGeom::visible`]):
/// far above `f32` rounding in the exponent, far below a pixel.
const LEVEL_SLACK: f64 = 1e-3;

/// The pixels of one tile where a splat can reach `MIN_ALPHA` (a superset: the per-pixel test
/// still decides), row by row.
struct Visible {
    /// Local rows `[y0, y1)`.
    rows: [u32; 2],
    mean: [f64; 2],
    /// `None` for a conic that is not positive definite: every pixel is tried.
    conic: Option<[f64; 3]>,
    level: f64,
    geom: TileGeom,
}

impl Visible {
    /// Local columns `[x0, x1)` of local row `ly`: where `a dx² + 2b dx dy + c dy² ≤ level`.
    fn row(&self, ly: u32) -> (u32, u32) {
        let (origin, len) = (self.geom.origin[0], self.geom.size[0]);
        let Some([a, b, c]) = self.conic else { return (0, len) };
        let dy = self.geom.origin[1] as f64 + ly as f64 + 0.5 - self.mean[1];
        let disc = b * b * dy * dy - a * (c * dy * dy - self.level);
        if disc < 0.0 {
            return (0, 0);
        }
        span(self.mean[0] - b * dy / a, disc.sqrt() / a, origin, len)
    }
}

/// Local pixels `[lo, hi)` of a tile row/column starting at `origin` with `len` pixels whose
/// centres lie within `extent` of `centre`. A non-finite extent means the whole range, a NaN
/// centre an empty one.
fn span(centre: f64, extent: f64, origin: u32, len: u32) -> (u32, u32) {
    if !extent.is_finite() {
        return (0, len);
    }
    let offset = origin as f64 + 0.5;
    // Clamped to [-1, len] first, so that the integer floor below is exact and cannot overflow
    // (and avoids libm's `floor`/`ceil` calls in this hot path).
    let lo = (centre - extent - offset).clamp(-1.0, len as f64);
    let hi = (centre + extent - offset).clamp(-1.0, len as f64);
    let floor = |x: f64| (x + 1.0) as i64 - 1;
    let ceil_lo = floor(lo) + i64::from((floor(lo) as f64) < lo);
    let clamp = |v: i64| v.clamp(0, i64::from(len)) as u32;
    (clamp(ceil_lo), clamp(floor(hi) + 1))
}

/// One splat evaluated at one pixel centre.
#[derive(Clone, Copy, Debug)]
struct Hit<T> {
    alpha: T,
    /// `exp(power)`.
    gauss: T,
    /// `pixel_centre − mean2d`.
    delta: [T; 2],
    /// Whether `α` was capped at `MAX_ALPHA` (no gradient flows).
    clamped: bool,
}

/// The contract's per-pixel opacity of splat `f` at pixel centre `(px, py)`; `None` when skipped.
#[inline]
fn alpha_at<T: Real>(f: &Footprint<T>, px: T, py: T) -> Option<Hit<T>> {
    let dx = px - f.mean2d[0];
    let dy = py - f.mean2d[1];
    let [a, b, c] = f.conic;
    let power = -T::c(0.5) * (a * dx * dx + c * dy * dy) - b * dx * dy;
    if power > T::ZERO {
        return None;
    }
    let gauss = power.exp();
    let raw = f.opacity * gauss;
    let max_alpha = T::from_f32(MAX_ALPHA);
    let alpha = raw.min(max_alpha);
    if alpha < T::from_f32(MIN_ALPHA) {
        return None;
    }
    Some(Hit { alpha, gauss, delta: [dx, dy], clamped: raw > max_alpha })
}

/// Pixel centre coordinate of local pixel `l` in a tile starting at `origin`.
fn centre<T: Real>(origin: u32, l: u32) -> T {
    T::c(origin as f64 + l as f64 + 0.5)
}

/// One tile's forward results, indexed by local pixel.
struct TileOut<T> {
    color: [[T; 3]; TILE_PIXELS],
    transmittance: [T; TILE_PIXELS],
    depth: [T; TILE_PIXELS],
    median_depth: [T; TILE_PIXELS],
    last_contributor: [u32; TILE_PIXELS],
}

/// Front-to-back compositing of every tile.
pub(crate) fn composite<T: Real>(
    footprints: &[Footprint<T>],
    bins: &Bins,
    width: u32,
    height: u32,
    background: [T; 3],
) -> Composite<T> {
    let bins = bins.as_ref();
    let tiles: Vec<TileOut<T>> = (0..bins.tile_ranges.len())
        .into_par_iter()
        .map(|tile| composite_tile(footprints, bins.tile(tile), TileGeom::new(tile, width, height), background))
        .collect();
    let pixels = width as usize * height as usize;
    let mut out = Composite {
        image: vec![[T::ZERO; 3]; pixels],
        alpha: vec![T::ZERO; pixels],
        depth: vec![T::ZERO; pixels],
        median_depth: vec![T::ZERO; pixels],
        final_transmittance: vec![T::ZERO; pixels],
        last_contributor: vec![0; pixels],
    };
    for (tile, t) in tiles.iter().enumerate() {
        TileGeom::new(tile, width, height).for_each_pixel(width, |k, i| {
            out.image[i] = t.color[k];
            out.alpha[i] = T::ONE - t.transmittance[k];
            out.depth[i] = t.depth[k];
            out.median_depth[i] = t.median_depth[k];
            out.final_transmittance[i] = t.transmittance[k];
            out.last_contributor[i] = t.last_contributor[k];
        });
    }
    out
}

fn composite_tile<T: Real>(footprints: &[Footprint<T>], ids: &[u32], geom: TileGeom, background: [T; 3]) -> TileOut<T> {
    let mut out = TileOut {
        color: [[T::ZERO; 3]; TILE_PIXELS],
        transmittance: [T::ONE; TILE_PIXELS],
        depth: [T::ZERO; TILE_PIXELS],
        median_depth: [T::ZERO; TILE_PIXELS],
        last_contributor: [0; TILE_PIXELS],
    };
    let mut weight = [T::ZERO; TILE_PIXELS];
    let mut median_set = [false; TILE_PIXELS];
    let mut done = [false; TILE_PIXELS];
    let live = (geom.size[0] * geom.size[1]) as usize;
    let mut n_done = 0;
    let min_t = T::from_f32(MIN_TRANSMITTANCE);
    let median_t = T::c(MEDIAN_TRANSMITTANCE);
    for (pos, &id) in ids.iter().enumerate() {
        let Some(f) = footprints.get(id as usize) else { continue };
        let Some(visible) = geom.visible(f) else { continue };
        for ly in visible.rows[0]..visible.rows[1] {
            let py = centre(geom.origin[1], ly);
            let (x0, x1) = visible.row(ly);
            for lx in x0..x1 {
                let k = (ly * TILE_SIZE + lx) as usize;
                if done[k] {
                    continue;
                }
                let Some(hit) = alpha_at(f, centre(geom.origin[0], lx), py) else { continue };
                let t = out.transmittance[k];
                let next_t = t * (T::ONE - hit.alpha);
                if next_t < min_t {
                    done[k] = true;
                    n_done += 1;
                    continue;
                }
                let w = hit.alpha * t;
                for c in 0..3 {
                    out.color[k][c] += f.color[c] * w;
                }
                out.depth[k] += f.depth * w;
                weight[k] += w;
                out.transmittance[k] = next_t;
                out.last_contributor[k] = pos as u32 + 1;
                if next_t <= median_t && !median_set[k] {
                    out.median_depth[k] = f.depth;
                    median_set[k] = true;
                }
            }
        }
        if n_done == live {
            break;
        }
    }
    for k in 0..TILE_PIXELS {
        for c in 0..3 {
            out.color[k][c] += out.transmittance[k] * background[c];
        }
        if weight[k] > T::ZERO {
            out.depth[k] = out.depth[k] / weight[k];
        }
    }
    out
}

/// Back-to-front backward pass of [`composite`]: per-splat gradients.
pub(crate) fn composite_backward<T: Real>(
    footprints: &[Footprint<T>],
    bins: BinsRef<'_>,
    forward: ForwardRef<'_, T>,
    width: u32,
    height: u32,
    background: [T; 3],
    grad_image: &[[T; 3]],
) -> Vec<FootprintGrad<T>> {
    let tile_ids: Vec<&[u32]> = (0..bins.tile_ranges.len()).map(|t| bins.tile(t)).collect();
    let mut entries = vec![FootprintGrad::<T>::default(); tile_ids.iter().map(|ids| ids.len()).sum()];
    let mut slices = Vec::with_capacity(tile_ids.len());
    let mut rest = entries.as_mut_slice();
    for ids in &tile_ids {
        let (head, tail) = rest.split_at_mut(ids.len());
        slices.push(head);
        rest = tail;
    }
    slices.into_par_iter().enumerate().for_each(|(tile, out)| {
        let geom = TileGeom::new(tile, width, height);
        backward_tile(footprints, tile_ids[tile], geom, width, forward, background, grad_image, out);
    });
    let mut grads = vec![FootprintGrad::<T>::default(); footprints.len()];
    let mut entry = entries.iter();
    for ids in &tile_ids {
        for (&id, g) in ids.iter().zip(entry.by_ref()) {
            if let Some(total) = grads.get_mut(id as usize) {
                total.add(g);
            }
        }
    }
    grads
}

/// Per-pixel state of the backward pass within one tile.
struct PixelState<T> {
    /// Transmittance in front of the splat being processed (starts at the final transmittance).
    transmittance: T,
    /// Colour composited behind the splat being processed, divided by the transmittance in front
    /// of the splat behind it.
    behind: [T; 3],
    /// α and colour of the previously processed (next farther) splat.
    prev_alpha: T,
    prev_color: [T; 3],
    /// `∂L/∂image` at this pixel.
    grad: [T; 3],
    /// `final transmittance · (background · grad)`: the background's share of `∂L/∂α`.
    background_term: T,
    last_contributor: u32,
}

#[allow(clippy::too_many_arguments)]
fn backward_tile<T: Real>(
    footprints: &[Footprint<T>],
    ids: &[u32],
    geom: TileGeom,
    width: u32,
    forward: ForwardRef<'_, T>,
    background: [T; 3],
    grad_image: &[[T; 3]],
    out: &mut [FootprintGrad<T>],
) {
    let zero3 = [T::ZERO; 3];
    let mut px = [const { None }; TILE_PIXELS];
    let mut max_last = 0;
    geom.for_each_pixel(width, |k, i| {
        let (t, grad, last) = (forward.final_transmittance[i], grad_image[i], forward.last_contributor[i]);
        let bg_dot = background[0] * grad[0] + background[1] * grad[1] + background[2] * grad[2];
        max_last = max_last.max(last);
        px[k] = Some(PixelState {
            transmittance: t,
            behind: zero3,
            prev_alpha: T::ZERO,
            prev_color: zero3,
            grad,
            background_term: t * bg_dot,
            last_contributor: last,
        });
    });
    let half = T::c(0.5);
    for pos in (0..(max_last as usize).min(ids.len())).rev() {
        let Some(f) = footprints.get(ids[pos] as usize) else { continue };
        let Some(visible) = geom.visible(f) else { continue };
        let [a, b, c] = f.conic;
        let mut acc = FootprintGrad::<T>::default();
        for ly in visible.rows[0]..visible.rows[1] {
            let py = centre(geom.origin[1], ly);
            let (x0, x1) = visible.row(ly);
            for lx in x0..x1 {
                let k = (ly * TILE_SIZE + lx) as usize;
                let Some(s) = px[k].as_mut() else { continue };
                if pos as u32 >= s.last_contributor {
                    continue;
                }
                let Some(hit) = alpha_at(f, centre(geom.origin[0], lx), py) else { continue };
                let one_minus = T::ONE - hit.alpha;
                let t = s.transmittance / one_minus;
                s.transmittance = t;
                let w = hit.alpha * t;
                let mut d_alpha = -s.background_term / one_minus;
                for ch in 0..3 {
                    acc.color[ch] += w * s.grad[ch];
                    s.behind[ch] = s.prev_alpha * s.prev_color[ch] + (T::ONE - s.prev_alpha) * s.behind[ch];
                    d_alpha += (f.color[ch] - s.behind[ch]) * t * s.grad[ch];
                }
                s.prev_alpha = hit.alpha;
                s.prev_color = f.color;
                if hit.clamped {
                    continue;
                }
                acc.opacity += hit.gauss * d_alpha;
                let d_power = hit.alpha * d_alpha;
                let [dx, dy] = hit.delta;
                acc.mean2d[0] += d_power * (a * dx + b * dy);
                acc.mean2d[1] += d_power * (b * dx + c * dy);
                acc.conic[0] += -half * d_power * dx * dx;
                acc.conic[1] += -d_power * dx * dy;
                acc.conic[2] += -half * d_power * dy * dy;
            }
        }
        out[pos] = acc;
    }
}
