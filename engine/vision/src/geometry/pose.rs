//! Relative pose from an essential matrix: the four `(R, t)` decompositions, the cheirality test
//! that picks the one placing points in front of both cameras, two-ray triangulation and its
//! angle, and a Levenberg–Marquardt refinement of the pose on the Sampson error.
//!
//! Poses are `camera_j_from_camera_i` (OpenCV axes) with unit translation; points are normalised
//! image coordinates `(X/Z, Y/Z)`.

use glam::{DMat3, DVec2, DVec3};
use nalgebra::{Matrix5, Vector5};

use crate::geometry::linalg::{skew, svd3};
use crate::model::RigidCv;

/// The essential matrix `[t]× R` of a pose.
pub fn essential_from_pose(camera_j_from_camera_i: &RigidCv) -> DMat3 {
    skew(camera_j_from_camera_i.translation) * camera_j_from_camera_i.rotation
}

/// The four poses (unit translation) an essential matrix allows: `(R₁, ±t)`, `(R₂, ±t)`.
pub fn decompose_essential(e: &DMat3) -> Option<[RigidCv; 4]> {
    let (mut u, _, mut v) = svd3(*e)?;
    if u.determinant() < 0.0 {
        u = -u;
    }
    if v.determinant() < 0.0 {
        v = -v;
    }
    let w = DMat3::from_cols(DVec3::Y, -DVec3::X, DVec3::Z);
    let r1 = u * w * v.transpose();
    let r2 = u * w.transpose() * v.transpose();
    let t = u.col(2).normalize();
    let pose = |rotation, translation| RigidCv { rotation, translation };
    Some([pose(r1, t), pose(r1, -t), pose(r2, t), pose(r2, -t)])
}

/// Rays closer to parallel than this (sine² of their angle) do not triangulate.
const MIN_RAY_SINE_SQ: f64 = 1e-14;

/// Two-ray midpoint triangulation: the point in camera `i`'s frame, or `None` when the rays are
/// parallel or the point lies behind either camera.
pub fn triangulate_midpoint(camera_j_from_camera_i: &RigidCv, xi: DVec2, xj: DVec2) -> Option<DVec3> {
    let (rotation, t) = (camera_j_from_camera_i.rotation, camera_j_from_camera_i.translation);
    let a = rotation * xi.extend(1.0);
    let b = xj.extend(1.0);
    // Depths (di, dj) minimise |di a + t − dj b|².
    let (aa, bb, ab) = (a.dot(a), b.dot(b), a.dot(b));
    let det = aa * bb - ab * ab;
    if det <= MIN_RAY_SINE_SQ * aa * bb {
        return None;
    }
    let (at, bt) = (a.dot(t), b.dot(t));
    let di = (-bb * at + ab * bt) / det;
    let dj = (aa * bt - ab * at) / det;
    if di <= 0.0 || dj <= 0.0 {
        return None;
    }
    let midpoint_in_j = 0.5 * (a * di + t + b * dj);
    Some(rotation.transpose() * (midpoint_in_j - t))
}

/// Angle in radians at `point_in_i` between the rays from the two camera centres.
pub fn triangulation_angle(camera_j_from_camera_i: &RigidCv, point_in_i: DVec3) -> f64 {
    let center_j = camera_j_from_camera_i.inverse().translation;
    let (ray_i, ray_j) = (point_in_i, point_in_i - center_j);
    let cosine = ray_i.dot(ray_j) / (ray_i.length() * ray_j.length());
    if cosine.is_finite() { cosine.clamp(-1.0, 1.0).acos() } else { 0.0 }
}

/// The decomposition of `e` with the most correspondences in front of both cameras, and that
/// count; `None` when no point triangulates in front.
pub fn pose_from_essential(e: &DMat3, xi: &[DVec2], xj: &[DVec2]) -> Option<(RigidCv, usize)> {
    decompose_essential(e)?
        .into_iter()
        .map(|pose| (pose, xi.iter().zip(xj).filter(|(a, b)| triangulate_midpoint(&pose, **a, **b).is_some()).count()))
        .max_by_key(|(_, count)| *count)
        .filter(|(_, count)| *count > 0)
}

/// Signed Sampson residual (its square is the Sampson error) of a correspondence under `e`.
fn sampson_residual(e: &DMat3, xi: DVec2, xj: DVec2) -> f64 {
    let (a, b) = (xi.extend(1.0), xj.extend(1.0));
    let ea = *e * a;
    let etb = e.transpose() * b;
    let denominator = (ea.x * ea.x + ea.y * ea.y + etb.x * etb.x + etb.y * etb.y).sqrt();
    if denominator > f64::MIN_POSITIVE { b.dot(ea) / denominator } else { 0.0 }
}

/// Levenberg–Marquardt iterations of the pose refinement; it converges in well under 10 from a
/// RANSAC estimate.
const REFINE_ITERATIONS: usize = 20;
/// Central-difference step for the numerical Jacobian (radians, and unit-sphere tangent units).
const JACOBIAN_STEP: f64 = 1e-6;
/// Relative cost decrease under which the refinement stops.
const REFINE_TOLERANCE: f64 = 1e-12;

/// Refines `camera_j_from_camera_i` (unit translation) to minimise the Cauchy-robustified
/// Sampson error `Σ c² ln(1 + r²/c²)` of the correspondences (`c = cauchy_scale`, in the
/// points' unit; `f64::INFINITY` gives plain least squares): 3 rotation parameters (left
/// increment) and 2 on the translation sphere. The robust loss keeps the few outliers that fall
/// inside the RANSAC band from biasing the pose.
pub fn refine_relative_pose(
    camera_j_from_camera_i: &RigidCv,
    xi: &[DVec2],
    xj: &[DVec2],
    cauchy_scale: f64,
) -> RigidCv {
    let loss = Cauchy { scale_sq: cauchy_scale * cauchy_scale };
    let mut pose = *camera_j_from_camera_i;
    let mut cost = total_cost(&pose, xi, xj, &loss);
    let mut damping = 1e-3;
    for _ in 0..REFINE_ITERATIONS {
        let (jtj, jtr) = normal_equations(&pose, xi, xj, &loss);
        let mut improved = false;
        while damping < 1e10 {
            let mut lhs = jtj;
            for k in 0..5 {
                lhs[(k, k)] += damping * jtj[(k, k)].max(1e-12);
            }
            let Some(step) = lhs.cholesky().map(|c| c.solve(&(-jtr))) else {
                damping *= 10.0;
                continue;
            };
            let candidate = apply_step(&pose, &step);
            let candidate_cost = total_cost(&candidate, xi, xj, &loss);
            if candidate_cost < cost {
                let relative = (cost - candidate_cost) / cost.max(f64::MIN_POSITIVE);
                pose = candidate;
                cost = candidate_cost;
                damping = (damping * 0.1).max(1e-12);
                improved = relative > REFINE_TOLERANCE;
                break;
            }
            damping *= 10.0;
        }
        if !improved {
            break;
        }
    }
    pose
}

/// The Cauchy loss `ρ(s) = c² ln(1 + s/c²)` of a squared residual `s`, and its derivative
/// (the IRLS weight).
struct Cauchy {
    scale_sq: f64,
}

impl Cauchy {
    fn rho(&self, s: f64) -> f64 {
        if self.scale_sq.is_finite() { self.scale_sq * (s / self.scale_sq).ln_1p() } else { s }
    }

    fn weight(&self, s: f64) -> f64 {
        if self.scale_sq.is_finite() { 1.0 / (1.0 + s / self.scale_sq) } else { 1.0 }
    }
}

/// Median absolute Sampson residual of the correspondences under a pose, times 1.4826: a robust
/// estimate of the residuals' standard deviation (for the Cauchy scale).
pub fn robust_residual_sigma(camera_j_from_camera_i: &RigidCv, xi: &[DVec2], xj: &[DVec2]) -> f64 {
    let e = essential_from_pose(camera_j_from_camera_i);
    let mut residuals: Vec<f64> = xi.iter().zip(xj).map(|(a, b)| sampson_residual(&e, *a, *b).abs()).collect();
    if residuals.is_empty() {
        return 0.0;
    }
    let mid = residuals.len() / 2;
    1.4826 * *residuals.select_nth_unstable_by(mid, f64::total_cmp).1
}

fn total_cost(pose: &RigidCv, xi: &[DVec2], xj: &[DVec2], loss: &Cauchy) -> f64 {
    let e = essential_from_pose(pose);
    xi.iter().zip(xj).map(|(a, b)| loss.rho(sampson_residual(&e, *a, *b).powi(2))).sum()
}

/// Two unit vectors orthogonal to `t` and to each other.
fn tangent_basis(t: DVec3) -> (DVec3, DVec3) {
    let helper = if t.x.abs() < 0.9 { DVec3::X } else { DVec3::Y };
    let b1 = t.cross(helper).normalize();
    (b1, t.cross(b1).normalize())
}

fn apply_step(pose: &RigidCv, step: &Vector5<f64>) -> RigidCv {
    let omega = DVec3::new(step[0], step[1], step[2]);
    let angle = omega.length();
    let increment = if angle > 0.0 { DMat3::from_axis_angle(omega / angle, angle) } else { DMat3::IDENTITY };
    let (b1, b2) = tangent_basis(pose.translation);
    let translation = (pose.translation + b1 * step[3] + b2 * step[4]).normalize();
    RigidCv { rotation: increment * pose.rotation, translation }
}

/// `JᵀWJ` and `JᵀWr` of the Sampson residuals (IRLS weights `W` of the loss), with a
/// central-difference Jacobian.
fn normal_equations(pose: &RigidCv, xi: &[DVec2], xj: &[DVec2], loss: &Cauchy) -> (Matrix5<f64>, Vector5<f64>) {
    let e0 = essential_from_pose(pose);
    let perturbed: [(DMat3, DMat3); 5] = std::array::from_fn(|k| {
        let mut step = Vector5::zeros();
        step[k] = JACOBIAN_STEP;
        (essential_from_pose(&apply_step(pose, &step)), essential_from_pose(&apply_step(pose, &(-step))))
    });
    let mut jtj = Matrix5::zeros();
    let mut jtr = Vector5::zeros();
    for (a, b) in xi.iter().zip(xj) {
        let r = sampson_residual(&e0, *a, *b);
        let row = Vector5::from_fn(|k, _| {
            let (plus, minus) = &perturbed[k];
            (sampson_residual(plus, *a, *b) - sampson_residual(minus, *a, *b)) / (2.0 * JACOBIAN_STEP)
        });
        let w = loss.weight(r * r);
        jtj += row * row.transpose() * w;
        jtr += row * (r * w);
    }
    (jtj, jtr)
}

#[cfg(test)]
mod tests {
    use super::super::essential::tests::random_scene;
    use super::*;
    use kiln_core::rng::Pcg32;

    fn rotation_error_deg(a: DMat3, b: DMat3) -> f64 {
        let m = a.transpose() * b;
        ((m.x_axis.x + m.y_axis.y + m.z_axis.z - 1.0) / 2.0).clamp(-1.0, 1.0).acos().to_degrees()
    }

    #[test]
    fn cheirality_picks_ground_truth() {
        let mut rng = Pcg32::new(3);
        for _ in 0..20 {
            let (r, t, xi, xj) = random_scene(&mut rng, 40);
            let truth = RigidCv { rotation: r, translation: t };
            let (pose, in_front) = pose_from_essential(&(essential_from_pose(&truth) * -3.0), &xi, &xj).unwrap();
            assert_eq!(in_front, 40);
            assert!(rotation_error_deg(pose.rotation, r) < 1e-6);
            assert!(pose.translation.distance(t) < 1e-8);
            // Triangulated points reproject onto both observations.
            let p = triangulate_midpoint(&pose, xi[0], xj[0]).unwrap();
            assert!((p.truncate() / p.z).distance(xi[0]) < 1e-9);
            let q = pose.transform_point(p);
            assert!((q.truncate() / q.z).distance(xj[0]) < 1e-9);
        }
    }

    #[test]
    fn refinement_reduces_error_of_perturbed_pose() {
        let mut rng = Pcg32::new(9);
        let (r, t, xi, xj) = random_scene(&mut rng, 200);
        let noisy =
            |p: DVec2, rng: &mut Pcg32| p + DVec2::new(f64::from(rng.normal()), f64::from(rng.normal())) * 0.5 / 1000.0;
        let xi: Vec<DVec2> = xi.into_iter().map(|p| noisy(p, &mut rng)).collect();
        let xj: Vec<DVec2> = xj.into_iter().map(|p| noisy(p, &mut rng)).collect();
        let start = RigidCv {
            rotation: DMat3::from_axis_angle(DVec3::new(1.0, 2.0, 0.5).normalize(), 1.0f64.to_radians()) * r,
            translation: (t + DVec3::new(0.03, -0.02, 0.01)).normalize(),
        };
        let plain = Cauchy { scale_sq: f64::INFINITY };
        // Plain least squares, and the Cauchy loss at the scale of the starting residuals (as
        // verification uses it).
        for scale in [f64::INFINITY, robust_residual_sigma(&start, &xi, &xj)] {
            let refined = refine_relative_pose(&start, &xi, &xj, scale);
            assert!(rotation_error_deg(refined.rotation, r) < 0.05, "{}", rotation_error_deg(refined.rotation, r));
            assert!(refined.translation.angle_between(t).to_degrees() < 0.5);
            assert!(total_cost(&refined, &xi, &xj, &plain) < total_cost(&start, &xi, &xj, &plain));
        }
        // Sampson residuals of 0.5/1000 noise in both views: σ ≈ 0.5/1000.
        let sigma = robust_residual_sigma(&RigidCv { rotation: r, translation: t }, &xi, &xj);
        assert!((sigma * 1000.0 - 0.5).abs() < 0.1, "{sigma}");
    }

    #[test]
    fn parallel_rays_do_not_triangulate() {
        let rotation_only = RigidCv { rotation: DMat3::from_rotation_y(0.2), translation: DVec3::ZERO };
        let x = DVec2::new(0.1, -0.2);
        let xj = rotation_only.rotation * x.extend(1.0);
        assert!(triangulate_midpoint(&rotation_only, x, xj.truncate() / xj.z).is_none());
    }
}
