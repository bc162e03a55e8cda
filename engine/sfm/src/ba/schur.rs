//! The damped Gauss–Newton system of one Levenberg–Marquardt step, solved by eliminating the
//! points (Schur complement on their 3×3 blocks) and factorising the reduced camera system with a
//! dense Cholesky.
//!
//! Work is parallel (rayon) and deterministic: every sum is owned by one task and runs in a fixed
//! order — per point for the point blocks, per *column block* of the reduced matrix (one pose or
//! one camera group) for the camera side; only the lower triangle is assembled.
//!
//! Scaling: the dense factorisation costs `n³/6` multiply–adds for `n` camera parameters
//! (6 per photo + 5 per camera group): about 0.05 s at n = 900 (150 photos) on one core, and it
//! dominates beyond roughly 1500 parameters (250 photos). Past that the reduced system must use
//! its sparsity (photos that share no point give zero blocks): a supernodal sparse Cholesky on the
//! covisibility pattern, or preconditioned conjugate gradients on the implicit Schur complement
//! with a block-Jacobi preconditioner (Ceres' ITERATIVE_SCHUR).

use nalgebra::{DMatrix, DVector, Matrix3, Matrix6, SMatrix, SVector, Vector3, Vector6};
use rayon::prelude::*;

use crate::ba::problem::Problem;
use crate::ba::residual::{INTRINSICS, Linearization};

type Matrix6x3 = SMatrix<f64, 6, 3>;
type MatrixIx3 = SMatrix<f64, INTRINSICS, 3>;
type MatrixIx6 = SMatrix<f64, INTRINSICS, 6>;
type MatrixI = SMatrix<f64, INTRINSICS, INTRINSICS>;
type VectorI = SVector<f64, INTRINSICS>;

/// Smallest diagonal entry used for the Levenberg–Marquardt damping: a parameter the residuals
/// barely see still gets a positive diagonal (Ceres' `min_lm_diagonal`).
const MIN_DIAGONAL: f64 = 1e-6;
/// Largest diagonal entry used for damping (Ceres' `max_lm_diagonal`).
const MAX_DIAGONAL: f64 = 1e32;

/// The undamped normal equations `JᵀJ δ = −Jᵀr` in block form (λ-independent, built once per
/// linearisation).
pub(super) struct NormalEquations {
    /// Point blocks `V_p = Σ J_pᵀJ_p` and gradients `g_p = Σ J_pᵀr`.
    v: Vec<Matrix3<f64>>,
    g_point: Vec<Vector3<f64>>,
    /// Per observation with a variable pose: `W = J_poseᵀ J_point`.
    w_pose: Vec<Matrix6x3>,
    /// Per intrinsics entry (point × camera group): `W = Σ J_intrᵀ J_point`.
    w_intr: Vec<MatrixIx3>,
    /// Pose blocks `U = Σ J_poseᵀJ_pose`, gradients, and the cross block with the photo's camera
    /// group `Σ J_intrᵀ J_pose`.
    u_pose: Vec<Matrix6<f64>>,
    g_pose: Vec<Vector6<f64>>,
    c_pose: Vec<MatrixIx6>,
    /// Intrinsics blocks and gradients.
    u_intr: Vec<MatrixI>,
    g_intr: Vec<VectorI>,
}

/// A solved step and the decrease the quadratic model predicts for it.
pub(super) struct Step {
    pub cameras: Vec<f64>,
    pub points: Vec<glam::DVec3>,
    pub predicted_decrease: f64,
    pub norm: f64,
}

impl NormalEquations {
    pub fn new(problem: &Problem, lins: &[Linearization]) -> Self {
        let points: Vec<(Matrix3<f64>, Vector3<f64>)> = (0..problem.num_points())
            .into_par_iter()
            .map(|p| {
                let range = problem.point_obs[p]..problem.point_obs[p + 1];
                lins[range].iter().fold((Matrix3::zeros(), Vector3::zeros()), |(v, g), l| {
                    (v + l.d_point.tr_mul(&l.d_point), g + l.d_point.tr_mul(&l.residual))
                })
            })
            .collect();
        let (v, g_point) = points.into_iter().unzip();
        let w_pose = problem
            .obs
            .par_iter()
            .zip(lins)
            .map(|(o, l)| if o.pose_block.is_some() { l.d_pose.tr_mul(&l.d_point) } else { Matrix6x3::zeros() })
            .collect();
        let w_intr = (0..problem.entry_block.len())
            .into_par_iter()
            .map(|e| {
                let p = problem.entry_point[e];
                (problem.point_obs[p]..problem.point_obs[p + 1])
                    .filter(|&o| problem.obs[o].intr_entry == Some(e))
                    .fold(MatrixIx3::zeros(), |w, o| w + lins[o].d_intrinsics.tr_mul(&lins[o].d_point))
            })
            .collect();
        let pose: Vec<_> = problem
            .pose_obs
            .par_iter()
            .map(|list| {
                list.iter().fold((Matrix6::zeros(), Vector6::zeros(), MatrixIx6::zeros()), |(u, g, c), &o| {
                    let l = &lins[o];
                    (
                        u + l.d_pose.tr_mul(&l.d_pose),
                        g + l.d_pose.tr_mul(&l.residual),
                        c + l.d_intrinsics.tr_mul(&l.d_pose),
                    )
                })
            })
            .collect();
        let mut u_pose = Vec::with_capacity(pose.len());
        let mut g_pose = Vec::with_capacity(pose.len());
        let mut c_pose = Vec::with_capacity(pose.len());
        for (u, g, c) in pose {
            u_pose.push(u);
            g_pose.push(g);
            c_pose.push(c);
        }
        let (u_intr, g_intr) = problem
            .intr_obs
            .par_iter()
            .map(|list| {
                list.iter().fold((MatrixI::zeros(), VectorI::zeros()), |(u, g), &o| {
                    let l = &lins[o];
                    (u + l.d_intrinsics.tr_mul(&l.d_intrinsics), g + l.d_intrinsics.tr_mul(&l.residual))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .unzip();
        Self { v, g_point, w_pose, w_intr, u_pose, g_pose, c_pose, u_intr, g_intr }
    }

    /// Largest gradient component (for the gradient stopping test).
    pub fn max_gradient(&self, problem: &Problem) -> f64 {
        let camera = self.g_pose.iter().flat_map(|g| g.iter()).chain(self.g_intr.iter().flat_map(|g| g.iter()));
        let masked_ok = camera.enumerate().filter(|(i, _)| !problem.masked[*i]).map(|(_, g)| g.abs());
        masked_ok.chain(self.g_point.iter().flat_map(|g| g.iter().map(|x| x.abs()))).fold(0.0, f64::max)
    }

    /// Solves `(JᵀJ + λ D) δ = −Jᵀr` with `D` the clamped diagonal of `JᵀJ`; `None` when the
    /// reduced system is not positive definite (the caller raises λ).
    pub fn solve(&self, problem: &Problem, lambda: f64) -> Option<Step> {
        let v_inv: Vec<Matrix3<f64>> =
            self.v.par_iter().map(|v| damped(v, lambda).try_inverse().unwrap_or_else(Matrix3::zeros)).collect();
        let n = problem.num_camera_params();
        let (mut s, rhs) = self.reduced_system(problem, lambda, &v_inv);
        let scale = mask_and_scale(&mut s, &problem.masked);
        let free_rhs = rhs.iter().zip(&problem.masked).map(|(r, masked)| if *masked { 0.0 } else { *r });
        let scaled_rhs = DVector::from_iterator(n, free_rhs.zip(&scale).map(|(r, k)| r * k));
        let cholesky = nalgebra::Cholesky::new(s)?;
        let cameras: Vec<f64> = cholesky.solve(&scaled_rhs).iter().zip(&scale).map(|(y, k)| y * k).collect();
        if cameras.iter().any(|c| !c.is_finite()) {
            return None;
        }
        let points = self.back_substitute(problem, &v_inv, &cameras);
        let (predicted_decrease, norm) = self.model_decrease(problem, lambda, &cameras, &points);
        let points = points.into_iter().map(|p| glam::DVec3::new(p.x, p.y, p.z)).collect();
        Some(Step { cameras, points, predicted_decrease, norm })
    }

    /// The Schur complement `S = U + λD − W V⁻¹ Wᵀ` (lower triangle) and `−g_c + W V⁻¹ g_p`.
    fn reduced_system(&self, problem: &Problem, lambda: f64, v_inv: &[Matrix3<f64>]) -> (DMatrix<f64>, Vec<f64>) {
        let n = problem.num_camera_params();
        let mut s = DMatrix::<f64>::zeros(n, n);
        if n == 0 {
            return (s, Vec::new());
        }
        let pose_columns = 6 * problem.pose_images.len();
        let (pose_part, intr_part) = s.as_mut_slice().split_at_mut(pose_columns * n);
        let pose_rhs: Vec<Vector6<f64>> = pose_part
            .par_chunks_mut(6 * n)
            .enumerate()
            .map(|(a, column)| self.pose_column(problem, lambda, v_inv, a, column))
            .collect();
        let intr_rhs: Vec<VectorI> = intr_part
            .par_chunks_mut(INTRINSICS * n)
            .enumerate()
            .map(|(c, column)| self.intr_column(problem, lambda, v_inv, c, column))
            .collect();
        let rhs = pose_rhs
            .iter()
            .flat_map(|r| r.iter().copied())
            .chain(intr_rhs.iter().flat_map(|r| r.iter().copied()))
            .collect();
        (s, rhs)
    }

    /// Column block of pose `a`: rows of pose blocks `b ≥ a` and of every intrinsics block.
    fn pose_column(
        &self,
        problem: &Problem,
        lambda: f64,
        v_inv: &[Matrix3<f64>],
        a: usize,
        column: &mut [f64],
    ) -> Vector6<f64> {
        let n = problem.num_camera_params();
        add_block(column, n, 6 * a, &damped(&self.u_pose[a], lambda));
        if let Ok(block) = problem.intr_cameras.binary_search(&problem.pose_cameras[a]) {
            add_block(column, n, problem.intr_offset(block), &self.c_pose[a]);
        }
        let mut rhs = -self.g_pose[a];
        for &o in &problem.pose_obs[a] {
            let p = problem.obs[o].point;
            let y = self.w_pose[o] * v_inv[p];
            rhs += y * self.g_point[p];
            for f in problem.point_obs[p]..problem.point_obs[p + 1] {
                if let Some(b) = problem.obs[f].pose_block.filter(|&b| b >= a) {
                    add_block(column, n, 6 * b, &(-(self.w_pose[f] * y.transpose())));
                }
            }
            for e in problem.point_entries[p]..problem.point_entries[p + 1] {
                add_block(column, n, problem.intr_offset(problem.entry_block[e]), &(-(self.w_intr[e] * y.transpose())));
            }
        }
        rhs
    }

    /// Column block of camera group `c`: rows of intrinsics blocks `≥ c`.
    fn intr_column(
        &self,
        problem: &Problem,
        lambda: f64,
        v_inv: &[Matrix3<f64>],
        c: usize,
        column: &mut [f64],
    ) -> VectorI {
        let n = problem.num_camera_params();
        add_block(column, n, problem.intr_offset(c), &damped(&self.u_intr[c], lambda));
        let mut rhs = -self.g_intr[c];
        for &e in &problem.intr_entries[c] {
            let p = problem.entry_point[e];
            let y = self.w_intr[e] * v_inv[p];
            rhs += y * self.g_point[p];
            for f in problem.point_entries[p]..problem.point_entries[p + 1] {
                if problem.entry_block[f] >= c {
                    add_block(
                        column,
                        n,
                        problem.intr_offset(problem.entry_block[f]),
                        &(-(self.w_intr[f] * y.transpose())),
                    );
                }
            }
        }
        rhs
    }

    /// `δp = V⁻¹ (−g_p − Wᵀ δc)` per point.
    fn back_substitute(&self, problem: &Problem, v_inv: &[Matrix3<f64>], cameras: &[f64]) -> Vec<Vector3<f64>> {
        (0..problem.num_points())
            .into_par_iter()
            .map(|p| {
                let mut b = -self.g_point[p];
                for o in problem.point_obs[p]..problem.point_obs[p + 1] {
                    if let Some(a) = problem.obs[o].pose_block {
                        b -= self.w_pose[o].tr_mul(&Vector6::from_column_slice(&cameras[6 * a..6 * a + 6]));
                    }
                }
                for e in problem.point_entries[p]..problem.point_entries[p + 1] {
                    let offset = problem.intr_offset(problem.entry_block[e]);
                    b -= self.w_intr[e].tr_mul(&VectorI::from_column_slice(&cameras[offset..offset + INTRINSICS]));
                }
                v_inv[p] * b
            })
            .collect()
    }

    /// `½ (λ δᵀDδ − gᵀδ)`: the decrease of the undamped quadratic model, and the step norm.
    fn model_decrease(&self, problem: &Problem, lambda: f64, cameras: &[f64], points: &[Vector3<f64>]) -> (f64, f64) {
        let mut sum = 0.0;
        let mut norm2 = 0.0;
        let mut term = |diagonal: f64, gradient: f64, step: f64| {
            sum += lambda * clamp_diagonal(diagonal) * step * step - gradient * step;
            norm2 += step * step;
        };
        for (a, (u, g)) in self.u_pose.iter().zip(&self.g_pose).enumerate() {
            for k in 0..6 {
                term(u[(k, k)], g[k], cameras[6 * a + k]);
            }
        }
        for (c, (u, g)) in self.u_intr.iter().zip(&self.g_intr).enumerate() {
            for k in 0..INTRINSICS {
                term(u[(k, k)], g[k], cameras[problem.intr_offset(c) + k]);
            }
        }
        for ((v, g), step) in self.v.iter().zip(&self.g_point).zip(points) {
            for k in 0..3 {
                term(v[(k, k)], g[k], step[k]);
            }
        }
        (0.5 * sum, norm2.sqrt())
    }
}

fn clamp_diagonal(d: f64) -> f64 {
    d.clamp(MIN_DIAGONAL, MAX_DIAGONAL)
}

/// `m + λ diag(clamp(diag m))`.
fn damped<const N: usize>(m: &SMatrix<f64, N, N>, lambda: f64) -> SMatrix<f64, N, N> {
    let mut out = *m;
    for k in 0..N {
        out[(k, k)] += lambda * clamp_diagonal(m[(k, k)]);
    }
    out
}

/// Adds `block` at rows `row..row + R` of a column-major slab of `C` columns with `n` rows.
fn add_block<const R: usize, const C: usize>(column: &mut [f64], n: usize, row: usize, block: &SMatrix<f64, R, C>) {
    for c in 0..C {
        let target = &mut column[c * n + row..c * n + row + R];
        for (t, v) in target.iter_mut().zip(block.column(c).iter()) {
            *t += v;
        }
    }
}

/// Replaces masked rows/columns by the identity (the caller zeroes their right-hand side), fills the upper triangle from the lower one and
/// applies Jacobi scaling `S ← K S K` with `K = diag(1/sqrt(S_ii))`; returns `K`.
fn mask_and_scale(s: &mut DMatrix<f64>, masked: &[bool]) -> Vec<f64> {
    let n = s.nrows();
    s.fill_upper_triangle_with_lower_triangle();
    for (i, _) in masked.iter().enumerate().filter(|(_, m)| **m) {
        s.row_mut(i).fill(0.0);
        s.column_mut(i).fill(0.0);
        s[(i, i)] = 1.0;
    }
    let scale: Vec<f64> = (0..n).map(|i| 1.0 / s[(i, i)].max(MIN_DIAGONAL).sqrt()).collect();
    for (j, mut column) in s.column_iter_mut().enumerate() {
        for (i, value) in column.iter_mut().enumerate() {
            *value *= scale[i] * scale[j];
        }
    }
    scale
}

#[cfg(test)]
mod tests {
    use glam::{DMat3, DVec2, DVec3};

    use super::*;
    use crate::ba::problem::State;
    use crate::ba::{BaOptions, RobustLoss};
    use kiln_vision::model::{ImageState, Observation, RadialCamera, Reconstruction, RigidCv};

    /// Five photos in two camera groups around 12 points, measurements off by a few pixels.
    fn small_reconstruction() -> Reconstruction {
        let cameras = vec![
            RadialCamera { k1: -0.05, k2: 0.01, ..RadialCamera::pinhole(640, 480, 500.0) },
            RadialCamera { k1: 0.02, ..RadialCamera::pinhole(640, 480, 620.0) },
        ];
        let images = (0..5)
            .map(|i| {
                let angle = 0.3 * i as f64;
                let rotation = DMat3::from_rotation_y(-angle);
                let center = DVec3::new(4.0 * angle.sin(), 0.1 * i as f64, -4.0 * angle.cos());
                ImageState {
                    camera: i % 2,
                    camera_from_world: Some(RigidCv { rotation, translation: -(rotation * center) }),
                    keypoints: Vec::new(),
                    point_of_keypoint: Vec::new(),
                }
            })
            .collect();
        let mut rec = Reconstruction::new(cameras, images);
        for k in 0..12 {
            let position = DVec3::new((k % 4) as f64 * 0.4 - 0.6, (k / 4) as f64 * 0.5 - 0.5, (k % 3) as f64 * 0.3);
            let track = (0..5)
                .filter(|i| (k + i) % 4 != 0)
                .map(|i| {
                    let image = &mut rec.images[i];
                    let pixel = rec.cameras[image.camera]
                        .project(image.camera_from_world.unwrap_or(RigidCv::IDENTITY).transform_point(position))
                        .unwrap_or_default();
                    let observation = Observation { image: i, keypoint: image.keypoints.len() as u32 };
                    image
                        .keypoints
                        .push(pixel + DVec2::new((k * 7 + i) as f64 % 5.0 - 2.0, (k * 3 + i) as f64 % 4.0 - 1.5));
                    image.point_of_keypoint.push(None);
                    observation
                })
                .collect();
            rec.add_point(position, [0; 3], track);
        }
        rec
    }

    #[test]
    fn schur_step_matches_dense_normal_equations() {
        let rec = small_reconstruction();
        let options = BaOptions {
            variable_images: None,
            refine_focal: true,
            refine_principal_point: false,
            refine_distortion: true,
            loss: RobustLoss::Cauchy { scale_px: 2.0 },
            max_iterations: 1,
        };
        let problem = Problem::new(&rec, &options);
        let (lins, _, _) = problem.linearize(&State::new(&rec, &problem), &options.loss);
        let lambda = 1e-3;
        let step = NormalEquations::new(&problem, &lins).solve(&problem, lambda).expect("positive definite");

        // Dense J over the free parameters: unmasked camera-side ones, then 3 per point.
        let free: Vec<usize> = (0..problem.num_camera_params()).filter(|&i| !problem.masked[i]).collect();
        let columns = free.len() + 3 * problem.num_points();
        let mut jacobian = DMatrix::<f64>::zeros(2 * problem.obs.len(), columns);
        let mut residuals = DVector::<f64>::zeros(2 * problem.obs.len());
        for (o, (obs, lin)) in problem.obs.iter().zip(&lins).enumerate() {
            for row in 0..2 {
                residuals[2 * o + row] = lin.residual[row];
                for (column, &parameter) in free.iter().enumerate() {
                    let pose =
                        obs.pose_block.filter(|&b| parameter / 6 == b && parameter < 6 * problem.pose_images.len());
                    let intr = obs
                        .intr_entry
                        .map(|e| problem.intr_offset(problem.entry_block[e]))
                        .filter(|&off| (off..off + INTRINSICS).contains(&parameter));
                    jacobian[(2 * o + row, column)] = match (pose, intr) {
                        (Some(b), _) => lin.d_pose[(row, parameter - 6 * b)],
                        (_, Some(off)) => lin.d_intrinsics[(row, parameter - off)],
                        _ => 0.0,
                    };
                }
                for k in 0..3 {
                    jacobian[(2 * o + row, free.len() + 3 * obs.point + k)] = lin.d_point[(row, k)];
                }
            }
        }
        let mut hessian = jacobian.tr_mul(&jacobian);
        for i in 0..columns {
            hessian[(i, i)] += lambda * clamp_diagonal(hessian[(i, i)]);
        }
        let reference = hessian.cholesky().expect("positive definite").solve(&(-jacobian.tr_mul(&residuals)));

        let mut got = free.iter().map(|&i| step.cameras[i]).collect::<Vec<_>>();
        got.extend(step.points.iter().flat_map(|p| [p.x, p.y, p.z]));
        for (i, (a, b)) in got.iter().zip(reference.iter()).enumerate() {
            assert!((a - b).abs() < 1e-7 * (1.0 + b.abs()), "parameter {i}: schur {a} vs dense {b}");
        }
        assert!(
            problem.masked.iter().zip(&step.cameras).all(|(m, s)| !m || *s == 0.0),
            "masked parameters do not move"
        );
        // Gauge: photo 0 is the anchor, one translation coordinate of another photo is masked.
        assert_eq!(problem.pose_images, vec![1, 2, 3, 4]);
        assert_eq!(problem.masked[..24].iter().filter(|m| **m).count(), 1);
    }
}
