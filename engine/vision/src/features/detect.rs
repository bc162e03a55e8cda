//! Keypoint detection in one octave: extrema of the difference of Gaussians over space and scale,
//! refined to sub-sample position and sub-level scale by fitting a quadratic (Lowe 2004, §4),
//! then filtered by contrast and by the edge (principal curvature ratio) test.

use rayon::prelude::*;

use crate::features::scale_space::{Octave, Plane};

/// Samples next to the octave's border where no extremum is taken: the refinement and the
/// derivative stencils need a margin (OpenCV's `SIFT_IMG_BORDER`).
const BORDER: usize = 5;

/// Quadratic-fit moves before a candidate that keeps wandering is dropped (Lowe, VLFeat: 5).
const MAX_REFINE_STEPS: usize = 5;

/// Largest offset (samples or levels) from the fit's centre at which the quadratic fit is taken
/// as the extremum; beyond it the fit moves to the neighbouring sample. Above ½ so that a peak
/// half-way between two samples converges from either instead of oscillating (VLFeat: 0.6).
const MAX_FIT_OFFSET: f32 = 0.6;

/// Newton steps of [`polished`]; it converges in two or three.
const POLISH_STEPS: usize = 4;

/// A Newton step shorter than this (samples) ends [`polished`].
const POLISH_TOLERANCE: f32 = 1e-3;

/// Refined extrema closer than this (samples and levels) are one extremum found from two
/// neighbouring samples.
const DUPLICATE_DISTANCE: f32 = 0.5;

/// Fraction of the peak threshold a raw sample must reach to be examined at all (VLFeat): the
/// refined value can be up to ~25 % larger than the sample.
const PREFILTER_FRACTION: f32 = 0.8;

/// A refined DoG extremum, in the octave's sample coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Extremum {
    pub x: f32,
    pub y: f32,
    /// Fractional DoG level (level `i` is `gaussians[i + 1] - gaussians[i]`).
    pub level: f32,
    /// Interpolated DoG value at the extremum.
    pub response: f32,
}

/// The refined extrema of an octave with `levels` scales per octave.
pub(super) fn detect(octave: &Octave, levels: usize, peak_threshold: f32, edge_threshold: f32) -> Vec<Extremum> {
    let dogs = &octave.dogs;
    let (width, height) = (dogs[0].width, dogs[0].height);
    if width <= 2 * BORDER || height <= 2 * BORDER {
        return Vec::new();
    }
    let prefilter = PREFILTER_FRACTION * peak_threshold;
    let found = (1..=levels)
        .flat_map(|level| (BORDER..height - BORDER).map(move |y| (level, y)))
        .collect::<Vec<_>>()
        .into_par_iter()
        .flat_map_iter(|(level, y)| {
            (BORDER..width - BORDER)
                .filter(move |&x| is_extremum(dogs, level, x, y, prefilter))
                .filter_map(move |x| refine(dogs, levels, x, y, level, peak_threshold, edge_threshold))
                .collect::<Vec<_>>()
        })
        .collect();
    deduplicated(found)
}

/// Drops every extremum within [`DUPLICATE_DISTANCE`] of a stronger one.
fn deduplicated(mut extrema: Vec<Extremum>) -> Vec<Extremum> {
    extrema.sort_by(|a, b| b.response.abs().total_cmp(&a.response.abs()));
    let cell = |e: &Extremum| (e.x.floor() as i64, e.y.floor() as i64);
    let mut kept_by_cell: std::collections::HashMap<(i64, i64), Vec<Extremum>> = std::collections::HashMap::new();
    let mut kept = Vec::with_capacity(extrema.len());
    for extremum in extrema {
        let (cx, cy) = cell(&extremum);
        let is_duplicate = (cy - 1..=cy + 1).any(|y| {
            (cx - 1..=cx + 1).any(|x| {
                kept_by_cell.get(&(x, y)).is_some_and(|others| {
                    others.iter().any(|o| {
                        (o.x - extremum.x).abs() < DUPLICATE_DISTANCE
                            && (o.y - extremum.y).abs() < DUPLICATE_DISTANCE
                            && (o.level - extremum.level).abs() < DUPLICATE_DISTANCE
                    })
                })
            })
        });
        if !is_duplicate {
            kept_by_cell.entry((cx, cy)).or_default().push(extremum);
            kept.push(extremum);
        }
    }
    kept
}

/// Whether sample `(x, y)` of DoG `level` is above `threshold` in magnitude and not smaller (not
/// greater) than any of its 26 neighbours in space and scale. Ties must pass: a peak half-way
/// between two samples gives them equal values up to rounding, and a strict test would miss it;
/// [`deduplicated`] then merges the two refinements.
fn is_extremum(dogs: &[Plane], level: usize, x: usize, y: usize, threshold: f32) -> bool {
    let width = dogs[0].width;
    let value = dogs[level].data[y * width + x];
    if value.abs() < threshold {
        return false;
    }
    for plane in &dogs[level - 1..=level + 1] {
        for row in y - 1..=y + 1 {
            let start = row * width + x - 1;
            for &n in &plane.data[start..start + 3] {
                let beaten = if value > 0.0 { value >= n } else { value <= n };
                if !beaten {
                    return false;
                }
            }
        }
    }
    true
}

/// Fits a quadratic around the sample, moving to the neighbouring sample while the fitted peak
/// lies more than half a sample away; keeps the extremum if it converges, has enough contrast
/// and is not on an edge.
fn refine(
    dogs: &[Plane],
    levels: usize,
    x: usize,
    y: usize,
    level: usize,
    peak_threshold: f32,
    edge_threshold: f32,
) -> Option<Extremum> {
    let (width, height) = (dogs[0].width, dogs[0].height);
    let (mut x, mut y, mut level) = (x, y, level);
    for _ in 0..MAX_REFINE_STEPS {
        let fit = Fit::at(dogs, x, y, level);
        let offset = fit.peak_offset()?;
        if offset.iter().all(|o| o.abs() <= MAX_FIT_OFFSET) {
            let response = fit.value
                + 0.5 * (fit.gradient[0] * offset[0] + fit.gradient[1] * offset[1] + fit.gradient[2] * offset[2]);
            if response.abs() < peak_threshold || fit.is_edge(edge_threshold) {
                return None;
            }
            let start = [x as f32 + offset[0], y as f32 + offset[1], level as f32 + offset[2]];
            let [x, y, level] = polished(dogs, levels, start);
            return Some(Extremum { x, y, level, response });
        }
        x = step(x, offset[0], BORDER, width - BORDER)?;
        y = step(y, offset[1], BORDER, height - BORDER)?;
        level = step(level, offset[2], 1, levels + 1)?;
    }
    None
}

/// The zero of the DoG's gradient, by Newton steps on the trilinear interpolation of the
/// derivatives at the surrounding samples, starting from the quadratic fit's peak `start`
/// (x, y, level). The single quadratic fit is biased by up to ~0.1 sample when the peak lies
/// between samples in several directions at once (its cross derivatives are taken away from the
/// peak); the interpolated gradient is exact for peaks half-way between samples and close
/// elsewhere. Returns `start` if the steps leave its neighbourhood.
fn polished(dogs: &[Plane], levels: usize, start: [f32; 3]) -> [f32; 3] {
    let mut point = start;
    for _ in 0..POLISH_STEPS {
        let Some(offset) = Fit::interpolated(dogs, levels, point).peak_offset() else { return start };
        for (p, o) in point.iter_mut().zip(offset) {
            *p += o;
        }
        if point.iter().zip(start).any(|(p, s)| (p - s).abs() > MAX_FIT_OFFSET) {
            return start;
        }
        if offset.iter().all(|o| o.abs() < POLISH_TOLERANCE) {
            break;
        }
    }
    point
}

/// Moves an index by the rounded offset, or `None` when it leaves `[low, high)`.
fn step(index: usize, offset: f32, low: usize, high: usize) -> Option<usize> {
    let moved = index as f32 + offset.round();
    (moved >= low as f32 && moved < high as f32).then_some(moved as usize)
}

/// Value, gradient and Hessian of the DoG by central differences at one sample, in (x, y, level).
struct Fit {
    value: f32,
    gradient: [f32; 3],
    hessian: [[f32; 3]; 3],
}

impl Fit {
    fn at(dogs: &[Plane], x: usize, y: usize, level: usize) -> Fit {
        let width = dogs[0].width;
        let v = |l: usize, dx: isize, dy: isize| {
            let index = (y as isize + dy) as usize * width + (x as isize + dx) as usize;
            dogs[l].data[index]
        };
        let c = v(level, 0, 0);
        let dxx = v(level, 1, 0) + v(level, -1, 0) - 2.0 * c;
        let dyy = v(level, 0, 1) + v(level, 0, -1) - 2.0 * c;
        let dss = v(level + 1, 0, 0) + v(level - 1, 0, 0) - 2.0 * c;
        let dxy = 0.25 * (v(level, 1, 1) - v(level, -1, 1) - v(level, 1, -1) + v(level, -1, -1));
        let dxs = 0.25 * (v(level + 1, 1, 0) - v(level + 1, -1, 0) - v(level - 1, 1, 0) + v(level - 1, -1, 0));
        let dys = 0.25 * (v(level + 1, 0, 1) - v(level + 1, 0, -1) - v(level - 1, 0, 1) + v(level - 1, 0, -1));
        Fit {
            value: c,
            gradient: [
                0.5 * (v(level, 1, 0) - v(level, -1, 0)),
                0.5 * (v(level, 0, 1) - v(level, 0, -1)),
                0.5 * (v(level + 1, 0, 0) - v(level - 1, 0, 0)),
            ],
            hessian: [[dxx, dxy, dxs], [dxy, dyy, dys], [dxs, dys, dss]],
        }
    }

    /// Value and derivatives at a fractional point, interpolated trilinearly from the samples
    /// around it (extrapolated slightly when the point is within a sample of the usable range).
    fn interpolated(dogs: &[Plane], levels: usize, point: [f32; 3]) -> Fit {
        let (width, height) = (dogs[0].width, dogs[0].height);
        let base = |p: f32, low: usize, high: usize| (p.floor().max(low as f32) as usize).min(high);
        let (x0, y0, l0) = (base(point[0], 1, width - 3), base(point[1], 1, height - 3), base(point[2], 1, levels - 1));
        let fraction = [point[0] - x0 as f32, point[1] - y0 as f32, point[2] - l0 as f32];
        let mut sum = Fit { value: 0.0, gradient: [0.0; 3], hessian: [[0.0; 3]; 3] };
        for corner in 0..8 {
            let bit = |axis: usize| (corner >> axis) & 1;
            let weight: f32 = (0..3).map(|a| if bit(a) == 1 { fraction[a] } else { 1.0 - fraction[a] }).product();
            let fit = Fit::at(dogs, x0 + bit(0), y0 + bit(1), l0 + bit(2));
            sum.value += weight * fit.value;
            for i in 0..3 {
                sum.gradient[i] += weight * fit.gradient[i];
                for j in 0..3 {
                    sum.hessian[i][j] += weight * fit.hessian[i][j];
                }
            }
        }
        sum
    }

    /// The offset `-H⁻¹ g` to the quadratic's stationary point, or `None` when `H` is singular.
    fn peak_offset(&self) -> Option<[f32; 3]> {
        let h = self.hessian.map(|row| row.map(f64::from));
        let g = self.gradient.map(f64::from);
        let cofactor = |r0: usize, r1: usize, c0: usize, c1: usize| h[r0][c0] * h[r1][c1] - h[r0][c1] * h[r1][c0];
        let det = h[0][0] * cofactor(1, 2, 1, 2) - h[0][1] * cofactor(1, 2, 0, 2) + h[0][2] * cofactor(1, 2, 0, 1);
        if det.abs() < f64::from(f32::MIN_POSITIVE) {
            return None;
        }
        // Inverse of a symmetric 3×3 matrix by cofactors.
        let inverse = [
            [cofactor(1, 2, 1, 2), -cofactor(0, 2, 1, 2), cofactor(0, 1, 1, 2)],
            [-cofactor(1, 2, 0, 2), cofactor(0, 2, 0, 2), -cofactor(0, 1, 0, 2)],
            [cofactor(1, 2, 0, 1), -cofactor(0, 2, 0, 1), cofactor(0, 1, 0, 1)],
        ];
        let offset = inverse.map(|row| -(row[0] * g[0] + row[1] * g[1] + row[2] * g[2]) / det);
        offset.iter().all(|o| o.is_finite()).then(|| offset.map(|o| o as f32))
    }

    /// Lowe's edge test: the ratio of principal curvatures exceeds `r` when
    /// `tr² / det ≥ (r + 1)² / r`, or the curvatures have opposite signs.
    fn is_edge(&self, r: f32) -> bool {
        let [[dxx, dxy, _], [_, dyy, _], _] = self.hessian;
        let trace = dxx + dyy;
        let det = dxx * dyy - dxy * dxy;
        det <= 0.0 || trace * trace * r >= (r + 1.0) * (r + 1.0) * det
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_offset_finds_a_quadratic_peak() {
        // D(p) = c + g·p + ½ pᵀ H p has its peak at -H⁻¹ g; check H · offset = -g.
        let fit = Fit {
            value: 1.0,
            gradient: [0.3, -0.2, 0.1],
            hessian: [[-2.0, 0.3, 0.1], [0.3, -1.5, 0.2], [0.1, 0.2, -1.0]],
        };
        let offset = fit.peak_offset().unwrap();
        for (row, g) in fit.hessian.iter().zip(fit.gradient) {
            let h_offset: f32 = row.iter().zip(offset).map(|(h, o)| h * o).sum();
            assert!((h_offset + g).abs() < 1e-6);
        }
    }

    #[test]
    fn duplicates_keep_the_strongest() {
        let at = |x: f32, level: f32, response: f32| Extremum { x, y: 10.0, level, response };
        let kept =
            deduplicated(vec![at(10.0, 2.0, 0.1), at(10.1, 2.05, -0.3), at(12.0, 2.0, 0.2), at(10.0, 3.0, 0.05)]);
        assert_eq!(kept, vec![at(10.1, 2.05, -0.3), at(12.0, 2.0, 0.2), at(10.0, 3.0, 0.05)]);
    }

    #[test]
    fn edge_test_rejects_elongated_peaks() {
        let hessian = |dxx, dyy| [[dxx, 0.0, 0.0], [0.0, dyy, 0.0], [0.0, 0.0, -1.0]];
        let fit = |dxx, dyy| Fit { value: 1.0, gradient: [0.0; 3], hessian: hessian(dxx, dyy) };
        assert!(!fit(-1.0, -1.0).is_edge(10.0));
        assert!(!fit(-1.0, -9.0).is_edge(10.0));
        assert!(fit(-1.0, -11.0).is_edge(10.0));
        assert!(fit(-1.0, 1.0).is_edge(10.0));
    }
}
