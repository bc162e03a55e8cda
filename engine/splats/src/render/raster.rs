//! Tile binning, per-tile depth sort and front-to-back alpha compositing (the "Binning" and
//! "Compositing" parts of the contract in `render`), and the backward pass of compositing.
//!
//! Tiles are independent, so both passes run in parallel over tiles. Within a tile the loops go
//! splat by splat (front to back, or back to front in the backward pass) over per-pixel state.
//! Each splat visits only the rows its *visibility ellipse* reaches (where
//! `opacity · exp(power) ≥ MIN_ALPHA`, slightly widened against rounding); per row it computes the
//! contract's `power` for all sixteen columns at once in plain arrays (which LLVM vectorises), and
//! evaluates `exp` and the compositing step only where `power ≥ ln(MIN_ALPHA / opacity)` (again
//! slightly widened). Every pixel skipped would be skipped by the `α < MIN_ALPHA` rule anyway, and
//! the pixels kept go through exactly the contract's operations, so the result is exactly the
//! contract's (a test holds it against a literal per-pixel implementation) at a fraction of the
//! cost. Each tile first copies its splats into a contiguous list, so that their cache misses
//! overlap instead of stalling the compositing loop one by one.
//!
//! The backward pass writes one gradient per (tile, splat) entry into its own slot, then sums the
//! entries of each splat serially: no atomics, and the result does not depend on thread timing.

use rayon::prelude::*;

use crate::render::project::{Footprint, FootprintGrad};
use crate::render::real::{Real, arr_f32};
use crate::render::tiles::{tile_grid, tile_rect};
use crate::render::{
    MAX_ALPHA, MIN_ALPHA, MIN_TRANSMITTANCE, ProjectedGrad, ProjectedSplat, RasterOutput, RasterState, TILE_SIZE,
};
use kiln_core::image_buf::{ImageGray, ImageRgb};

/// Pixels in one tile.
const TILE_PIXELS: usize = (TILE_SIZE * TILE_SIZE) as usize;
/// Transmittance at or below which a pixel's median depth is recorded.
const MEDIAN_TRANSMITTANCE: f64 = 0.5;

/// Composites the projected splats into a `width × height` image over `background`.
pub fn rasterize(
    projected: &[ProjectedSplat],
    width: u32,
    height: u32,
    background: [f32; 3],
) -> (RasterOutput, RasterState) {
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
        tracing::error!(
            width,
            height,
            "rasterize_backward: raster state or image gradient does not match the image size"
        );
        return vec![ProjectedGrad::default(); projected.len()];
    }
    let footprints: Vec<Footprint<f32>> = projected.par_iter().map(Footprint::from).collect();
    let bins = BinsRef { sorted_ids: &state.sorted_ids, tile_ranges: &state.tile_ranges };
    let forward =
        ForwardRef { final_transmittance: &state.final_transmittance, last_contributor: &state.last_contributor };
    // `into_iter` (not `iter`): same size and alignment, so the collect reuses the allocation.
    composite_backward(&footprints, bins, forward, width, height, background, &grad_image.pixels)
        .into_iter()
        .map(FootprintGrad::to_projected)
        .collect()
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

    /// Local rows `[y0, y1)` of this tile that splat `p` can reach.
    fn rows<T: Real>(&self, p: &Prepared<T>) -> (u32, u32) {
        span(p.f.mean2d[1].to_f64(), p.half_height, self.origin[1], self.size[1])
    }

    /// Pixel-centre `x` of every column of the tile (columns past the image edge included: the
    /// live masks exclude them).
    fn column_centres<T: Real>(&self) -> Row<T> {
        std::array::from_fn(|lx| centre(self.origin[0], lx as u32))
    }
}

/// Relative and absolute widening of the visibility ellipse's level (see [`Prepared::new`]):
/// far above `f32` rounding in the exponent, far below a pixel.
const LEVEL_SLACK: f64 = 1e-3;
/// How far below `ln(MIN_ALPHA / opacity)` a pixel's `power` may be and still be evaluated (see
/// [`Prepared::min_power`]): far above the few-ulp rounding of `opacity · exp(power)`.
const POWER_SLACK: f64 = 1e-3;

/// One splat as the compositor reads it: its footprint and where it can reach `MIN_ALPHA`.
#[derive(Clone, Copy, Debug)]
struct Prepared<T> {
    f: Footprint<T>,
    /// Pixels whose `power` is below this cannot reach `MIN_ALPHA`: `opacity · exp(power) ≥
    /// MIN_ALPHA` needs `power ≥ ln(MIN_ALPHA / opacity)`, lowered by [`POWER_SLACK`] so that the
    /// rounding of `exp` and of the product never skips a pixel the contract keeps.
    min_power: T,
    /// Half-height in pixels of the visibility ellipse `ΔᵀQΔ ≤ level`; infinite when the conic
    /// is not positive definite (every row is tried).
    half_height: f64,
}

impl<T: Real> Prepared<T> {
    /// `None` when the splat cannot reach `MIN_ALPHA` anywhere.
    fn new(f: &Footprint<T>) -> Option<Self> {
        if f.radius == 0 || f.opacity < T::from_f32(MIN_ALPHA) {
            return None;
        }
        let log_ratio = (f.opacity.to_f64() / MIN_ALPHA as f64).ln();
        // α ≥ MIN_ALPHA needs ΔᵀQΔ ≤ level = 2 ln(opacity / MIN_ALPHA). The level is widened so
        // that float rounding in the per-pixel test can never put a visible pixel outside.
        let level = 2.0 * log_ratio * (1.0 + LEVEL_SLACK) + LEVEL_SLACK;
        let [a, b, c] = f.conic.map(T::to_f64);
        let det = a * c - b * b;
        // The ellipse's half-height is √(level · (Q⁻¹)₁₁) = √(level · a / det).
        let half_height = if a > 0.0 && det > 0.0 { (level * a / det).sqrt() } else { f64::INFINITY };
        Some(Self { f: *f, min_power: T::c(-log_ratio - POWER_SLACK), half_height })
    }
}

/// The prepared splats `ids`, copied into one contiguous list first: the copies are independent
/// loads that the CPU overlaps, where loading each splat inside the compositing loop stalls on
/// every cache miss.
fn gather<T: Real>(prepared: &[Option<Prepared<T>>], ids: &[u32]) -> Vec<Option<Prepared<T>>> {
    ids.iter().map(|&id| prepared.get(id as usize).copied().flatten()).collect()
}

/// [`Prepared::new`] of every footprint.
fn prepare<T: Real>(footprints: &[Footprint<T>]) -> Vec<Option<Prepared<T>>> {
    footprints.par_iter().map(Prepared::new).collect()
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

/// One bit per pixel of a tile row.
type RowMask = u16;
const _: () = assert!(TILE_SIZE <= RowMask::BITS, "a tile row must fit in a RowMask");

/// One value per pixel of a tile row: plain arrays, so that the per-row loops vectorise.
type Row<T> = [T; TILE_SIZE as usize];

/// Bits `[x0, x1)` of a row mask.
fn row_mask(x0: u32, x1: u32) -> RowMask {
    let below = |x: u32| ((1u32 << x.min(TILE_SIZE)) - 1) as RowMask;
    below(x1) & !below(x0)
}

/// A splat's `power` at every pixel of one tile row, and which of them the contract may keep.
struct RowPowers<T> {
    /// `pixel_centre.y − mean2d.y`.
    dy: T,
    power: Row<T>,
    /// Pixels with `power ≤ 0` and `power ≥ min_power` (or NaN, which the contract keeps with
    /// `α = MAX_ALPHA`): a superset of the pixels where `α ≥ MIN_ALPHA`.
    candidates: RowMask,
}

impl<T: Real> RowPowers<T> {
    /// The contract's `power`, computed with exactly its operations and order for all columns
    /// at once (`xs`: the column centres), then masked.
    #[inline]
    fn new(p: &Prepared<T>, xs: &Row<T>, py: T) -> Self {
        let f = &p.f;
        let [a, b, c] = f.conic;
        let dy = py - f.mean2d[1];
        let c_dy2 = c * dy * dy;
        let half = -T::c(0.5);
        let mut power = [T::ZERO; TILE_SIZE as usize];
        for (out, &x) in power.iter_mut().zip(xs) {
            let dx = x - f.mean2d[0];
            *out = half * (a * dx * dx + c_dy2) - b * dx * dy;
        }
        Self { dy, power, candidates: candidates(&power, p.min_power) }
    }

    /// The contract's opacity at column `lx`; `None` when skipped.
    #[inline]
    fn hit(&self, f: &Footprint<T>, xs: &Row<T>, lx: usize) -> Option<Hit<T>> {
        let gauss = self.power[lx].exp();
        let raw = f.opacity * gauss;
        let max_alpha = T::from_f32(MAX_ALPHA);
        let alpha = raw.min(max_alpha);
        if alpha < T::from_f32(MIN_ALPHA) {
            return None;
        }
        Some(Hit { alpha, gauss, delta: [xs[lx] - f.mean2d[0], self.dy], clamped: raw > max_alpha })
    }
}

/// Bit `lx` set unless `power[lx] > 0` or `power[lx] < min_power` (so NaN sets its bit).
#[inline]
fn candidates<T: Real>(power: &Row<T>, min_power: T) -> RowMask {
    let mut mask = 0u32;
    for (lx, &pw) in power.iter().enumerate() {
        let skip = (pw > T::ZERO) | (pw < min_power);
        mask |= u32::from(!skip) << lx;
    }
    mask as RowMask
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
    let prepared = prepare(footprints);
    let tiles: Vec<TileOut<T>> = (0..bins.tile_ranges.len())
        .into_par_iter()
        .map(|tile| {
            let geom = TileGeom::new(tile, width, height);
            composite_tile(&prepared, bins.tile(tile), geom, background)
        })
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

/// Front-to-back compositing of one tile: splat by splat over the live pixels of the rows it
/// reaches.
fn composite_tile<T: Real>(
    prepared: &[Option<Prepared<T>>],
    ids: &[u32],
    geom: TileGeom,
    background: [T; 3],
) -> TileOut<T> {
    let mut out = TileOut {
        color: [[T::ZERO; 3]; TILE_PIXELS],
        transmittance: [T::ONE; TILE_PIXELS],
        depth: [T::ZERO; TILE_PIXELS],
        median_depth: [T::ZERO; TILE_PIXELS],
        last_contributor: [0; TILE_PIXELS],
    };
    let mut weight = [T::ZERO; TILE_PIXELS];
    let mut median_set = [false; TILE_PIXELS];
    // Per row, the pixels still compositing (inside the image and not stopped early).
    let mut live = [0 as RowMask; TILE_SIZE as usize];
    live[..geom.size[1] as usize].fill(row_mask(0, geom.size[0]));
    let mut n_live = geom.size[0] * geom.size[1];
    let min_t = T::from_f32(MIN_TRANSMITTANCE);
    let median_t = T::c(MEDIAN_TRANSMITTANCE);
    let xs = geom.column_centres::<T>();
    for (pos, p) in gather(prepared, ids).iter().enumerate() {
        let Some(p) = p else { continue };
        let f = &p.f;
        let (y0, y1) = geom.rows(p);
        for ly in y0..y1 {
            if live[ly as usize] == 0 {
                continue;
            }
            let row = RowPowers::new(p, &xs, centre(geom.origin[1], ly));
            let mut bits = live[ly as usize] & row.candidates;
            while bits != 0 {
                let lx = bits.trailing_zeros();
                bits &= bits - 1;
                let k = (ly * TILE_SIZE + lx) as usize;
                let Some(hit) = row.hit(f, &xs, lx as usize) else { continue };
                let t = out.transmittance[k];
                let next_t = t * (T::ONE - hit.alpha);
                if next_t < min_t {
                    live[ly as usize] &= !(1 << lx);
                    n_live -= 1;
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
        if n_live == 0 {
            break;
        }
    }
    for (k, &w) in weight.iter().enumerate() {
        let t = out.transmittance[k];
        for (color, bg) in out.color[k].iter_mut().zip(background) {
            *color += t * bg;
        }
        if w > T::ZERO {
            out.depth[k] = out.depth[k] / w;
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
    let prepared = prepare(footprints);
    // Per-tile gradient lists (small allocations that the allocator recycles, where one
    // image-sized list would be fresh, page-faulting memory on every call).
    let entries: Vec<Vec<FootprintGrad<T>>> = tile_ids
        .par_iter()
        .enumerate()
        .map(|(tile, &ids)| {
            let geom = TileGeom::new(tile, width, height);
            backward_tile(&TileInputs { prepared: &prepared, ids, geom, width }, forward, background, grad_image)
        })
        .collect();
    let mut grads = vec![FootprintGrad::<T>::default(); footprints.len()];
    for (ids, tile_grads) in tile_ids.iter().zip(&entries) {
        for (&id, g) in ids.iter().zip(tile_grads) {
            if let Some(total) = grads.get_mut(id as usize) {
                total.add(g);
            }
        }
    }
    grads
}

/// Per-pixel state of the backward pass within one tile.
#[derive(Clone, Copy, Default)]
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
}

/// The splats of one tile, as the backward pass reads them.
struct TileInputs<'a, T> {
    prepared: &'a [Option<Prepared<T>>],
    /// The tile's depth-sorted splat ids.
    ids: &'a [u32],
    geom: TileGeom,
    /// Image width, to index the per-pixel buffers.
    width: u32,
}

/// Back-to-front pass over one tile: element `pos` is the gradient of the splat at position `pos`
/// of the tile's list (the list stops after the last splat that contributed anywhere).
fn backward_tile<T: Real>(
    tile: &TileInputs<'_, T>,
    forward: ForwardRef<'_, T>,
    background: [T; 3],
    grad_image: &[[T; 3]],
) -> Vec<FootprintGrad<T>> {
    let TileInputs { prepared, ids, geom, width } = *tile;
    let mut px = [PixelState::<T>::default(); TILE_PIXELS];
    // In-image pixels by decreasing last contributor: walking the list back to front, a pixel
    // becomes active once the position drops below its last contributor.
    let mut order = [(0u32, 0u16); TILE_PIXELS];
    let mut n_order = 0;
    geom.for_each_pixel(width, |k, i| {
        let (t, grad, last) = (forward.final_transmittance[i], grad_image[i], forward.last_contributor[i]);
        let bg_dot = background[0] * grad[0] + background[1] * grad[1] + background[2] * grad[2];
        px[k] = PixelState { transmittance: t, grad, background_term: t * bg_dot, ..PixelState::default() };
        order[n_order] = (last, k as u16);
        n_order += 1;
    });
    let order = &mut order[..n_order];
    order.sort_unstable_by_key(|o| std::cmp::Reverse(o.0));
    let mut next_active = 0;
    let mut active = [0 as RowMask; TILE_SIZE as usize];
    let half = T::c(0.5);
    let xs = geom.column_centres::<T>();
    let max_last = order.first().map_or(0, |o| o.0) as usize;
    let splats = gather(prepared, &ids[..max_last.min(ids.len())]);
    let mut out = vec![FootprintGrad::<T>::default(); splats.len()];
    for pos in (0..splats.len()).rev() {
        while let Some(&(_, k)) = order.get(next_active).filter(|o| o.0 as usize > pos) {
            active[k as usize / TILE_SIZE as usize] |= 1 << (u32::from(k) % TILE_SIZE);
            next_active += 1;
        }
        let Some(p) = &splats[pos] else { continue };
        let f = &p.f;
        let [a, b, c] = f.conic;
        let mut acc = FootprintGrad::<T>::default();
        let (y0, y1) = geom.rows(p);
        for ly in y0..y1 {
            if active[ly as usize] == 0 {
                continue;
            }
            let row = RowPowers::new(p, &xs, centre(geom.origin[1], ly));
            let mut bits = active[ly as usize] & row.candidates;
            while bits != 0 {
                let lx = bits.trailing_zeros();
                bits &= bits - 1;
                let k = (ly * TILE_SIZE + lx) as usize;
                let s = &mut px[k];
                let Some(hit) = row.hit(f, &xs, lx as usize) else { continue };
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
    out
}
