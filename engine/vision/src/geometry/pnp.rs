//! Absolute pose (PnP): the `camera_from_world` pose (OpenCV convention) of a calibrated camera
//! from 2D–3D correspondences. A P3P minimal solver (Lambda Twist, Persson & Nordberg 2018),
//! an [`Estimator`] so that [`super::ransac::lo_ransac`] can run it, and a robust
//! Levenberg–Marquardt refinement of the 6-DoF pose on the reprojection error.

use glam::{DMat3, DVec2, DVec3};
use nalgebra::{Matrix3, Matrix6, SymmetricEigen, Vector3, Vector6};

use crate::geometry::ransac::Estimator;
use crate::geometry::triangulate::rotation_from_axis_angle;
use crate::model::RigidCv;

/// Gauss–Newton steps polishing the three depths of a P3P solution; the algebraic solution is
/// already close, two steps reach machine precision and the rest is margin.
const DEPTH_REFINE_ITERATIONS: usize = 4;
/// Two P3P solutions whose depths differ by less than this (relative) are the same solution.
const DUPLICATE_DEPTH_TOLERANCE: f64 = 1e-7;
/// Squared residual given to a correspondence behind the camera: far beyond any threshold.
const BEHIND_CAMERA_RESIDUAL_SQ: f64 = 1e12;
/// Levenberg–Marquardt iterations of [`refine_pose`]; convergence from a RANSAC pose takes < 10.
const REFINE_MAX_ITERATIONS: usize = 30;
/// Initial LM damping relative to the normal matrix' diagonal (Ceres' default trust radius 1e4).
const INITIAL_DAMPING: f64 = 1e-4;
/// Damping increases (×10 each) tried in one LM iteration before giving up: 10⁸ more damping
/// turns the step into a tiny gradient step, and if even that fails the pose is at a minimum.
const MAX_DAMPING_INCREASES: usize = 8;
/// A P3P solution must satisfy the three distance equations to this fraction of their sum;
/// true solutions do to ~1e-12 after polishing, spurious ones from a degenerate quadric do not.
const EQUATION_TOLERANCE: f64 = 1e-6;

/// A 2D–3D correspondence: a world point and the unit bearing of its observation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Correspondence {
    pub point_in_world: DVec3,
    /// Unit vector towards the observation in the OpenCV camera frame.
    pub bearing: DVec3,
}

/// Every pose (at most four) mapping the three world points onto the three bearings.
pub fn p3p(correspondences: &[Correspondence; 3]) -> Vec<RigidCv> {
    let x = correspondences.map(|c| c.point_in_world);
    let y = correspondences.map(|c| c.bearing.normalize());
    let a12 = x[0].distance_squared(x[1]);
    let a13 = x[0].distance_squared(x[2]);
    let a23 = x[1].distance_squared(x[2]);
    let (b12, b13, b23) = (y[0].dot(y[1]), y[0].dot(y[2]), y[1].dot(y[2]));
    let m12 = Matrix3::new(1.0, -b12, 0.0, -b12, 1.0, 0.0, 0.0, 0.0, 0.0);
    let m13 = Matrix3::new(1.0, 0.0, -b13, 0.0, 0.0, 0.0, -b13, 0.0, 1.0);
    let m23 = Matrix3::new(0.0, 0.0, 0.0, 0.0, 1.0, -b23, 0.0, -b23, 1.0);
    let equations = Equations { m: [m12, m13, m23], a: [a12, a13, a23] };
    // Λᵀ D Λ = 0 for both homogeneous combinations, hence for D1 + γ D2.
    let d1 = m12 * a23 - m23 * a12;
    let d2 = m13 * a23 - m23 * a13;
    let mut depths: Vec<Vector3<f64>> = Vec::new();
    for gamma in cubic_in_gamma_roots(&d1, &d2) {
        let other = if gamma.abs() > 1.0 { d1 } else { d2 };
        for lambda in depths_on_degenerate_quadric(&(d1 + d2 * gamma), &other, &equations) {
            let lambda = equations.polish(lambda);
            let duplicate = depths.iter().any(|d| (d - lambda).norm() <= DUPLICATE_DEPTH_TOLERANCE * lambda.norm());
            if !duplicate
                && lambda.iter().all(|&l| l > 0.0)
                && equations.residual(&lambda).norm() < EQUATION_TOLERANCE * (a12 + a13 + a23)
            {
                depths.push(lambda);
            }
        }
    }
    depths.iter().filter_map(|l| pose_from_three(&x, &[y[0] * l[0], y[1] * l[1], y[2] * l[2]])).collect()
}

/// The three P3P constraints `Λᵀ M_k Λ = a_k` (squared distances between the points).
struct Equations {
    m: [Matrix3<f64>; 3],
    a: [f64; 3],
}

impl Equations {
    fn residual(&self, lambda: &Vector3<f64>) -> Vector3<f64> {
        Vector3::from_fn(|k, _| lambda.dot(&(self.m[k] * lambda)) - self.a[k])
    }

    /// Gauss–Newton on the three quadratic equations; keeps the input if a step fails.
    fn polish(&self, start: Vector3<f64>) -> Vector3<f64> {
        let mut lambda = start;
        for _ in 0..DEPTH_REFINE_ITERATIONS {
            let r = self.residual(&lambda);
            let jacobian = Matrix3::from_rows(&[
                (self.m[0] * lambda * 2.0).transpose(),
                (self.m[1] * lambda * 2.0).transpose(),
                (self.m[2] * lambda * 2.0).transpose(),
            ]);
            let Some(step) = jacobian.lu().solve(&r) else { break };
            let next = lambda - step;
            if self.residual(&next).norm() >= r.norm() {
                break;
            }
            lambda = next;
        }
        lambda
    }
}

/// Real `γ` with `det(D1 + γ D2) = 0`; the determinant is a cubic whose coefficients come from
/// its values at γ = 0, ±1 and its leading term `det(D2)`.
fn cubic_in_gamma_roots(d1: &Matrix3<f64>, d2: &Matrix3<f64>) -> Vec<f64> {
    let c3 = d2.determinant();
    let c0 = d1.determinant();
    let plus = (d1 + d2).determinant();
    let minus = (d1 - d2).determinant();
    let c2 = (plus + minus) / 2.0 - c0;
    let c1 = (plus - minus) / 2.0 - c3;
    real_cubic_roots(c3, c2, c1, c0)
}

/// Real roots of `c3 x³ + c2 x² + c1 x + c0`, each polished by Newton steps.
fn real_cubic_roots(c3: f64, c2: f64, c1: f64, c0: f64) -> Vec<f64> {
    let scale = c3.abs().max(c2.abs()).max(c1.abs()).max(c0.abs());
    if scale == 0.0 {
        return Vec::new();
    }
    let roots = if c3.abs() <= 1e-12 * scale {
        real_quadratic_roots(c2, c1, c0)
    } else {
        // Depressed cubic t³ + p t + q with x = t − b/3.
        let (b, c, d) = (c2 / c3, c1 / c3, c0 / c3);
        let p = c - b * b / 3.0;
        let q = 2.0 * b * b * b / 27.0 - b * c / 3.0 + d;
        let shift = -b / 3.0;
        let discriminant = q * q / 4.0 + p * p * p / 27.0;
        if discriminant > 0.0 {
            let s = discriminant.sqrt();
            vec![(-q / 2.0 + s).cbrt() + (-q / 2.0 - s).cbrt() + shift]
        } else {
            let r = (-p / 3.0).max(0.0).sqrt();
            let phi = if r > 0.0 { (-q / (2.0 * r * r * r)).clamp(-1.0, 1.0).acos() } else { 0.0 };
            (0..3).map(|k| 2.0 * r * ((phi + 2.0 * std::f64::consts::PI * f64::from(k)) / 3.0).cos() + shift).collect()
        }
    };
    roots
        .into_iter()
        .map(|mut x| {
            for _ in 0..3 {
                let f = ((c3 * x + c2) * x + c1) * x + c0;
                let df = (3.0 * c3 * x + 2.0 * c2) * x + c1;
                if df.abs() > f64::MIN_POSITIVE {
                    x -= f / df;
                }
            }
            x
        })
        .filter(|x| x.is_finite())
        .collect()
}

fn real_quadratic_roots(a: f64, b: f64, c: f64) -> Vec<f64> {
    if a.abs() <= f64::MIN_POSITIVE {
        return if b.abs() > f64::MIN_POSITIVE { vec![-c / b] } else { Vec::new() };
    }
    let discriminant = b * b - 4.0 * a * c;
    if discriminant < 0.0 {
        return Vec::new();
    }
    let q = -0.5 * (b + b.signum() * discriminant.sqrt());
    if q == 0.0 { vec![0.0] } else { vec![q / a, c / q] }
}

/// Depth triples on the degenerate quadric `Λᵀ D0 Λ = 0` (a pair of planes through the origin)
/// that also satisfy `Λᵀ other Λ = 0` and the distance equations.
fn depths_on_degenerate_quadric(d0: &Matrix3<f64>, other: &Matrix3<f64>, equations: &Equations) -> Vec<Vector3<f64>> {
    let eigen = SymmetricEigen::new(*d0);
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| eigen.eigenvalues[j].abs().total_cmp(&eigen.eigenvalues[i].abs()));
    let (sa, sb) = (eigen.eigenvalues[order[0]], eigen.eigenvalues[order[1]]);
    let (ea, eb): (Vector3<f64>, Vector3<f64>) =
        (eigen.eigenvectors.column(order[0]).into(), eigen.eigenvectors.column(order[1]).into());
    let mut directions = Vec::new();
    if sa * sb >= 0.0 || sa == 0.0 {
        // Semi-definite: the only real points lie on the null direction.
        directions.push(eigen.eigenvectors.column(order[2]).into());
    } else {
        let s = (-sb / sa).sqrt();
        for normal in [ea - eb * s, ea + eb * s] {
            directions.extend(directions_in_plane(&normal, other));
        }
    }
    directions.into_iter().filter_map(|d| scale_to_distances(&d, equations)).collect()
}

/// Directions `d` in the plane `normal · d = 0` with `dᵀ q d = 0` (a homogeneous quadratic).
fn directions_in_plane(normal: &Vector3<f64>, q: &Matrix3<f64>) -> Vec<Vector3<f64>> {
    let n = normal.normalize();
    let helper = if n.x.abs() < 0.9 { Vector3::x() } else { Vector3::y() };
    let u = n.cross(&helper).normalize();
    let v = n.cross(&u);
    let (a, b, c) = (u.dot(&(q * u)), u.dot(&(q * v)), v.dot(&(q * v)));
    let discriminant = b * b - a * c;
    if discriminant < -1e-10 * (a.abs() + b.abs() + c.abs()).powi(2) {
        return Vec::new();
    }
    let root = discriminant.max(0.0).sqrt();
    let qq = -(b + if b >= 0.0 { root } else { -root });
    // Roots of a r² + 2 b r + c as homogeneous pairs (α : β) = (qq : a) and (c : qq).
    [(qq, a), (c, qq)]
        .into_iter()
        .filter(|(alpha, beta)| alpha.abs() + beta.abs() > 0.0)
        .map(|(alpha, beta)| u * alpha + v * beta)
        .collect()
}

/// Scales a direction so the depths satisfy the distance equations, positive side.
fn scale_to_distances(direction: &Vector3<f64>, equations: &Equations) -> Option<Vector3<f64>> {
    let (k, quadratic) =
        (0..3).map(|k| (k, direction.dot(&(equations.m[k] * direction)))).max_by(|a, b| a.1.total_cmp(&b.1))?;
    if quadratic <= 0.0 || equations.a[k] <= 0.0 {
        return None;
    }
    let mut lambda = direction * (equations.a[k] / quadratic).sqrt();
    if lambda.sum() < 0.0 {
        lambda = -lambda;
    }
    Some(lambda)
}

/// The rigid transform taking three world points onto three camera-frame points (Kabsch).
fn pose_from_three(world: &[DVec3; 3], camera: &[DVec3; 3]) -> Option<RigidCv> {
    let world_mean = (world[0] + world[1] + world[2]) / 3.0;
    let camera_mean = (camera[0] + camera[1] + camera[2]) / 3.0;
    let mut covariance = Matrix3::<f64>::zeros();
    for (w, c) in world.iter().zip(camera) {
        let (w, c) = (*w - world_mean, *c - camera_mean);
        covariance += Vector3::new(c.x, c.y, c.z) * Vector3::new(w.x, w.y, w.z).transpose();
    }
    let rotation = nearest_rotation(&covariance)?;
    let translation = camera_mean - rotation * world_mean;
    (rotation.is_finite() && translation.is_finite()).then_some(RigidCv { rotation, translation })
}

/// The rotation closest to `m` (`U diag(1, 1, det) Vᵀ`).
fn nearest_rotation(m: &Matrix3<f64>) -> Option<DMat3> {
    let svd = m.svd(true, true);
    let (u, v_t) = (svd.u?, svd.v_t?);
    let mut correction = Matrix3::<f64>::identity();
    correction[(2, 2)] = (u * v_t).determinant().signum();
    let r = u * correction * v_t;
    Some(DMat3::from_cols_array(&[
        r[(0, 0)],
        r[(1, 0)],
        r[(2, 0)],
        r[(0, 1)],
        r[(1, 1)],
        r[(2, 1)],
        r[(0, 2)],
        r[(1, 2)],
        r[(2, 2)],
    ]))
}

/// Reprojection residual in the normalised image plane, or `None` behind the camera.
fn normalized_residual(pose: &RigidCv, point_in_world: DVec3, observed: DVec2) -> Option<DVec2> {
    let p = pose.transform_point(point_in_world);
    (p.z > f64::EPSILON).then(|| p.truncate() / p.z - observed)
}

/// Observed normalised coordinates `(X/Z, Y/Z)` of a bearing (assumed in front).
fn normalized_of(bearing: DVec3) -> DVec2 {
    bearing.truncate() / bearing.z
}

/// PnP for [`super::ransac::lo_ransac`]: residuals in pixels (`focal ×` the normalised-plane
/// error), minimal samples of three, local optimisation by [`refine_pose`].
pub struct PnpEstimator<'a> {
    pub correspondences: &'a [Correspondence],
    /// Focal length in pixels, converting normalised errors to pixels.
    pub focal: f64,
    /// Scale of the robust loss in the refinement (pixels).
    pub loss_scale_px: f64,
}

impl Estimator for PnpEstimator<'_> {
    type Model = RigidCv;
    const SAMPLE_SIZE: usize = 3;

    fn num_data(&self) -> usize {
        self.correspondences.len()
    }

    fn fit_minimal(&self, sample: &[usize]) -> Vec<RigidCv> {
        match sample {
            [a, b, c] => p3p(&[self.correspondences[*a], self.correspondences[*b], self.correspondences[*c]]),
            _ => Vec::new(),
        }
    }

    /// P3P on three inliers spread through the list, the best of its solutions on all inliers,
    /// then the robust refinement on all inliers.
    fn fit_nonminimal(&self, inliers: &[usize]) -> Option<RigidCv> {
        if inliers.len() < 4 {
            return None;
        }
        let n = inliers.len();
        let sample = [inliers[0], inliers[n / 2], inliers[n - 1]];
        let cost = |pose: &RigidCv| {
            inliers.iter().map(|&i| self.residual_sq(pose, i).min(BEHIND_CAMERA_RESIDUAL_SQ)).sum::<f64>()
        };
        let start = self.fit_minimal(&sample).into_iter().min_by(|a, b| cost(a).total_cmp(&cost(b)))?;
        let subset: Vec<Correspondence> = inliers.iter().map(|&i| self.correspondences[i]).collect();
        Some(refine_pose(&subset, start, self.loss_scale_px / self.focal))
    }

    fn residual_sq(&self, pose: &RigidCv, index: usize) -> f64 {
        let c = &self.correspondences[index];
        if c.bearing.z <= f64::EPSILON {
            return BEHIND_CAMERA_RESIDUAL_SQ;
        }
        normalized_residual(pose, c.point_in_world, normalized_of(c.bearing))
            .map_or(BEHIND_CAMERA_RESIDUAL_SQ, |r| (r * self.focal).length_squared())
    }
}

/// Cauchy weight `1 / (1 + s²/c²)` for a squared residual `s²` (IRLS).
fn cauchy_weight(residual_sq: f64, scale_sq: f64) -> f64 {
    1.0 / (1.0 + residual_sq / scale_sq)
}

/// Robust cost `Σ c² log(1 + s²/c²)` of a pose.
fn robust_cost(correspondences: &[Correspondence], pose: &RigidCv, scale_sq: f64) -> f64 {
    correspondences
        .iter()
        .map(|c| match normalized_residual(pose, c.point_in_world, normalized_of(c.bearing)) {
            Some(r) => scale_sq * (r.length_squared() / scale_sq).ln_1p(),
            None => scale_sq * (BEHIND_CAMERA_RESIDUAL_SQ).ln_1p(),
        })
        .sum()
}

/// Levenberg–Marquardt on the Cauchy-robust reprojection error in the normalised plane;
/// `loss_scale` is the Cauchy scale in normalised units (pixels / focal). The pose update is
/// `camera_from_world ← (exp(ω), δt) ∘ camera_from_world`. Returns the start when no step helps.
pub fn refine_pose(correspondences: &[Correspondence], start: RigidCv, loss_scale: f64) -> RigidCv {
    let scale_sq = (loss_scale * loss_scale).max(f64::MIN_POSITIVE);
    let usable: Vec<Correspondence> = correspondences.iter().copied().filter(|c| c.bearing.z > f64::EPSILON).collect();
    if usable.len() < 3 {
        return start;
    }
    let mut pose = start;
    let mut cost = robust_cost(&usable, &pose, scale_sq);
    let mut damping = INITIAL_DAMPING;
    for _ in 0..REFINE_MAX_ITERATIONS {
        let (jtj, jtr) = normal_equations(&usable, &pose, scale_sq);
        let mut improved = false;
        for _ in 0..MAX_DAMPING_INCREASES {
            let mut damped = jtj;
            for k in 0..6 {
                damped[(k, k)] += damping * jtj[(k, k)].max(1e-12);
            }
            let Some(step) = damped.cholesky().map(|c| c.solve(&(-jtr))) else {
                damping *= 10.0;
                continue;
            };
            let candidate = apply_update(&pose, &step);
            let candidate_cost = robust_cost(&usable, &candidate, scale_sq);
            if candidate_cost < cost {
                let converged = (cost - candidate_cost) <= 1e-12 * cost.max(f64::MIN_POSITIVE) || step.norm() < 1e-12;
                pose = candidate;
                cost = candidate_cost;
                damping = (damping / 10.0).max(1e-12);
                improved = !converged;
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

/// IRLS normal equations `JᵀWJ`, `JᵀWr` for the 6-vector (ω, δt).
fn normal_equations(correspondences: &[Correspondence], pose: &RigidCv, scale_sq: f64) -> (Matrix6<f64>, Vector6<f64>) {
    let mut jtj = Matrix6::<f64>::zeros();
    let mut jtr = Vector6::<f64>::zeros();
    for c in correspondences {
        let p = pose.transform_point(c.point_in_world);
        if p.z <= f64::EPSILON {
            continue;
        }
        let residual = p.truncate() / p.z - normalized_of(c.bearing);
        let weight = cauchy_weight(residual.length_squared(), scale_sq);
        let inv_z = 1.0 / p.z;
        // The update rotates the whole camera-frame point: dp/dω = −[p]×, dp/dδt = I.
        let rows = [DVec3::new(inv_z, 0.0, -p.x * inv_z * inv_z), DVec3::new(0.0, inv_z, -p.y * inv_z * inv_z)];
        for (row, e) in rows.into_iter().zip([residual.x, residual.y]) {
            // d/dω (row · (ω × p)) = p × row.
            let d_omega = p.cross(row);
            let j = Vector6::new(d_omega.x, d_omega.y, d_omega.z, row.x, row.y, row.z);
            jtj += j * j.transpose() * weight;
            jtr += j * (e * weight);
        }
    }
    (jtj, jtr)
}

fn apply_update(pose: &RigidCv, step: &Vector6<f64>) -> RigidCv {
    let delta = rotation_from_axis_angle(DVec3::new(step[0], step[1], step[2]));
    RigidCv {
        rotation: delta * pose.rotation,
        translation: delta * pose.translation + DVec3::new(step[3], step[4], step[5]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::ransac::{RansacOptions, lo_ransac};
    use kiln_core::rng::Pcg32;

    fn random_pose(rng: &mut Pcg32) -> RigidCv {
        let axis = DVec3::new(f64::from(rng.normal()), f64::from(rng.normal()), f64::from(rng.normal()));
        let rotation = rotation_from_axis_angle(axis.normalize_or(DVec3::X) * f64::from(rng.uniform()) * 3.0);
        let translation = DVec3::new(f64::from(rng.normal()), f64::from(rng.normal()), 6.0 + f64::from(rng.uniform()));
        RigidCv { rotation, translation }
    }

    /// World points in front of `pose`, and their exact bearings.
    fn scene(rng: &mut Pcg32, pose: &RigidCv, n: usize) -> Vec<Correspondence> {
        let world_from_camera = pose.inverse();
        (0..n)
            .map(|_| {
                let in_camera = DVec3::new(
                    f64::from(rng.uniform()) * 4.0 - 2.0,
                    f64::from(rng.uniform()) * 3.0 - 1.5,
                    3.0 + 5.0 * f64::from(rng.uniform()),
                );
                Correspondence {
                    point_in_world: world_from_camera.transform_point(in_camera),
                    bearing: in_camera.normalize(),
                }
            })
            .collect()
    }

    fn pose_distance(a: &RigidCv, b: &RigidCv) -> f64 {
        (a.rotation - b.rotation).to_cols_array().iter().map(|v| v.abs()).sum::<f64>()
            + a.translation.distance(b.translation)
    }

    #[test]
    fn p3p_is_exact_on_noise_free_data() {
        let mut rng = Pcg32::new(11);
        for trial in 0..200 {
            let pose = random_pose(&mut rng);
            let c = scene(&mut rng, &pose, 3);
            let solutions = p3p(&[c[0], c[1], c[2]]);
            assert!(!solutions.is_empty() && solutions.len() <= 4, "trial {trial}: {} solutions", solutions.len());
            let best = solutions.iter().map(|s| pose_distance(s, &pose)).fold(f64::INFINITY, f64::min);
            assert!(best < 1e-7, "trial {trial}: best pose off by {best}");
            // Every solution maps the three points onto their rays.
            for s in &solutions {
                for k in &c {
                    let p = s.transform_point(k.point_in_world);
                    assert!(p.normalize().distance(k.bearing) < 1e-7);
                }
            }
        }
    }

    #[test]
    fn ransac_and_refinement_recover_pose_among_outliers() {
        let mut rng = Pcg32::new(5);
        let pose = random_pose(&mut rng);
        let focal = 800.0;
        let mut c = scene(&mut rng, &pose, 300);
        let mut is_outlier = vec![false; c.len()];
        for (k, item) in c.iter_mut().enumerate() {
            let noise = DVec2::new(f64::from(rng.normal()), f64::from(rng.normal())) * (0.5 / focal);
            let mut xy = normalized_of(item.bearing) + noise;
            if k % 3 == 0 {
                xy += DVec2::new(f64::from(rng.uniform()) - 0.5, f64::from(rng.uniform()) - 0.5) * 0.6;
                is_outlier[k] = true;
            }
            item.bearing = xy.extend(1.0).normalize();
        }
        let estimator = PnpEstimator { correspondences: &c, focal, loss_scale_px: 2.0 };
        let result = lo_ransac(&estimator, &RansacOptions { max_error: 4.0, ..RansacOptions::default() }).unwrap();
        let wrong = result.inliers.iter().filter(|&&i| is_outlier[i]).count();
        assert!(result.inliers.len() >= 190 && wrong < 5, "{} inliers, {wrong} outliers", result.inliers.len());
        let inliers: Vec<Correspondence> = result.inliers.iter().map(|&i| c[i]).collect();
        let refined = refine_pose(&inliers, result.model, 2.0 / focal);
        let rotation_error = (refined.rotation.transpose() * pose.rotation).to_cols_array();
        let angle = ((rotation_error[0] + rotation_error[4] + rotation_error[8] - 1.0) / 2.0).clamp(-1.0, 1.0).acos();
        assert!(angle.to_degrees() < 0.05, "rotation error {}°", angle.to_degrees());
        assert!(
            refined.center().distance(pose.center()) < 0.02,
            "centre off by {}",
            refined.center().distance(pose.center())
        );
    }

    #[test]
    fn refinement_converges_from_a_perturbed_pose() {
        let mut rng = Pcg32::new(9);
        let pose = random_pose(&mut rng);
        let c = scene(&mut rng, &pose, 50);
        let start = apply_update(&pose, &Vector6::new(0.02, -0.01, 0.015, 0.1, -0.05, 0.2));
        let refined = refine_pose(&c, start, 1e-3);
        assert!(pose_distance(&refined, &pose) < 1e-8, "{}", pose_distance(&refined, &pose));
    }

    #[test]
    fn cubic_roots_match_known_roots() {
        // (x − 1)(x + 2)(x − 3) = x³ − 2x² − 5x + 6.
        let mut roots = real_cubic_roots(1.0, -2.0, -5.0, 6.0);
        roots.sort_by(f64::total_cmp);
        assert_eq!(roots.len(), 3);
        for (r, e) in roots.iter().zip([-2.0, 1.0, 3.0]) {
            assert!((r - e).abs() < 1e-12, "{r} vs {e}");
        }
        // x³ + x + 1 has one real root near −0.6823.
        let single = real_cubic_roots(1.0, 0.0, 1.0, 1.0);
        assert_eq!(single.len(), 1);
        assert!((single[0] + 0.682_327_803_8).abs() < 1e-9);
    }
}
