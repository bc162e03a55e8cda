//! The SIFT descriptor (Lowe 2004, §6): gradients in a square window aligned with the keypoint's
//! orientation, pooled into 4 × 4 cells × 8 directions with a Gaussian window and trilinear
//! interpolation; normalised, clamped at 0.2, renormalised; then RootSIFT (Arandjelović &
//! Zisserman 2012: L1 normalise, square root), which is unit length in L2.

use std::f32::consts::TAU;

use crate::features::DESCRIPTOR_LEN;
use crate::features::orientation::Gradients;

/// Spatial cells per side.
const CELLS: usize = 4;

/// Direction bins per cell.
const DIRECTIONS: usize = 8;

/// A cell's side as a multiple of the keypoint's scale (Lowe, VLFeat: 3).
const MAGNIFICATION: f32 = 3.0;

/// The Gaussian window's σ in cells: half the descriptor's width (Lowe).
const WINDOW_SIGMA_CELLS: f32 = CELLS as f32 / 2.0;

/// Largest normalised entry before renormalisation: limits the weight of a few strong gradients
/// such as lighting edges (Lowe: 0.2).
const CLAMP: f32 = 0.2;

/// The descriptor of a keypoint at `(x, y)` with scale `sigma` (sample units of `gradients`) and
/// orientation `angle` (radians), written into `out`.
pub(super) fn describe(gradients: &Gradients, x: f32, y: f32, sigma: f32, angle: f32, out: &mut [f32]) {
    let mut histogram = [0.0f32; DESCRIPTOR_LEN];
    accumulate(gradients, x, y, sigma, angle, &mut histogram);
    normalize_l2(&mut histogram);
    for value in &mut histogram {
        *value = value.min(CLAMP);
    }
    normalize_l2(&mut histogram);
    let l1: f32 = histogram.iter().sum();
    let inverse = if l1 > 0.0 { 1.0 / l1 } else { 0.0 };
    for (o, value) in out.iter_mut().zip(histogram) {
        *o = (value * inverse).sqrt();
    }
}

fn accumulate(gradients: &Gradients, x: f32, y: f32, sigma: f32, angle: f32, histogram: &mut [f32; DESCRIPTOR_LEN]) {
    let cell = MAGNIFICATION * sigma;
    // Half-width covering the rotated window of CELLS + 1 cells (for the interpolation).
    let radius = (std::f32::consts::SQRT_2 * cell * (CELLS as f32 + 1.0) * 0.5).round() as isize;
    let (xi, yi) = (x.round() as isize, y.round() as isize);
    let (x0, x1) = ((xi - radius).max(1), (xi + radius).min(gradients.width as isize - 2));
    let (y0, y1) = ((yi - radius).max(1), (yi + radius).min(gradients.height as isize - 2));
    let (sin, cos) = angle.sin_cos();
    let inverse_two_variance = 1.0 / (2.0 * WINDOW_SIGMA_CELLS * WINDOW_SIGMA_CELLS);
    let half = CELLS as f32 / 2.0;
    for py in y0..=y1 {
        let row = py as usize * gradients.width;
        let dy = py as f32 - y;
        for px in x0..=x1 {
            let dx = px as f32 - x;
            // Position in cells, in the keypoint's frame, origin at the descriptor's centre.
            let u = (cos * dx + sin * dy) / cell;
            let v = (-sin * dx + cos * dy) / cell;
            if u.abs() >= half + 0.5 || v.abs() >= half + 0.5 {
                continue;
            }
            let index = row + px as usize;
            let weight = (-(u * u + v * v) * inverse_two_variance).exp() * gradients.magnitude[index];
            let direction = (gradients.angle[index] - angle).rem_euclid(TAU) * (DIRECTIONS as f32 / TAU);
            vote(histogram, u + half - 0.5, v + half - 0.5, direction, weight);
        }
    }
}

/// Trilinear vote at cell coordinates `(cx, cy)` (cell centres at integers) and direction bin
/// `direction` (circular).
fn vote(histogram: &mut [f32; DESCRIPTOR_LEN], cx: f32, cy: f32, direction: f32, weight: f32) {
    let (x0, y0, t0) = (cx.floor(), cy.floor(), direction.floor());
    let (fx, fy, ft) = (cx - x0, cy - y0, direction - t0);
    let (x0, y0, t0) = (x0 as isize, y0 as isize, t0 as usize);
    for (yy, wy) in [(y0, 1.0 - fy), (y0 + 1, fy)] {
        if !(0..CELLS as isize).contains(&yy) {
            continue;
        }
        for (xx, wx) in [(x0, 1.0 - fx), (x0 + 1, fx)] {
            if !(0..CELLS as isize).contains(&xx) {
                continue;
            }
            let base = (yy as usize * CELLS + xx as usize) * DIRECTIONS;
            let w = weight * wy * wx;
            histogram[base + t0 % DIRECTIONS] += w * (1.0 - ft);
            histogram[base + (t0 + 1) % DIRECTIONS] += w * ft;
        }
    }
}

fn normalize_l2(values: &mut [f32]) {
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for v in values {
            *v /= norm;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::scale_space::Plane;
    use super::*;

    fn textured(width: usize, height: usize, rotation: f32) -> Gradients {
        // A smooth pattern evaluated in coordinates rotated by `rotation` about (20, 20).
        let (sin, cos) = rotation.sin_cos();
        let data = (0..width * height)
            .map(|i| {
                let (x, y) = ((i % width) as f32 - 20.0, (i / width) as f32 - 20.0);
                let (u, v) = (cos * x + sin * y, -sin * x + cos * y);
                (0.3 * u).sin() * (0.17 * v + 0.05 * u * u / 10.0).cos() + 0.02 * u
            })
            .collect();
        Gradients::of(&Plane { width, height, data })
    }

    #[test]
    fn descriptors_are_unit_rootsift_and_rotation_invariant() {
        let mut plain = [0.0f32; DESCRIPTOR_LEN];
        let mut turned = [0.0f32; DESCRIPTOR_LEN];
        describe(&textured(41, 41, 0.0), 20.0, 20.0, 2.0, 0.3, &mut plain);
        let rotation = 90f32.to_radians();
        describe(&textured(41, 41, rotation), 20.0, 20.0, 2.0, 0.3 + rotation, &mut turned);
        let norm: f32 = plain.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(plain.iter().all(|&v| v >= 0.0));
        let similarity: f32 = plain.iter().zip(&turned).map(|(a, b)| a * b).sum();
        assert!(similarity > 0.99, "{similarity}");
        // A different orientation gives a different descriptor.
        describe(&textured(41, 41, 0.0), 20.0, 20.0, 2.0, 1.5, &mut turned);
        let other: f32 = plain.iter().zip(&turned).map(|(a, b)| a * b).sum();
        assert!(other < 0.95, "{other}");
    }
}
