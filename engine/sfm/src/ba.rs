//! Bundle adjustment: joint refinement of poses, intrinsics and points under a robust loss.
//!
//! Levenberg–Marquardt on the reprojection residuals (pixels) with analytic Jacobians
//! ([`residual`]), the points eliminated by a Schur complement and the reduced camera system
//! factorised densely ([`schur`], which also says where that stops scaling). Pose increments are
//! rotation vectors **left-multiplied in the camera frame** (`R ← exp([ω]×) R`, `t ← exp([ω]×) t + δt`).
//!
//! What varies:
//! - poses of the variable photos ([`BaOptions::variable_images`], or all registered photos);
//! - points with at least two observations in registered photos, one of them in a variable photo
//!   (points seen only by fixed photos, and shorter tracks, are left alone);
//! - intrinsics (as the options enable) of every camera group used by a variable photo, shared by
//!   all its photos; their residuals in fixed photos count too.
//!
//! Gauge (see [`problem`]): in a global BA the lowest-index registered photo keeps its pose and one
//! translation coordinate of the photo farthest from it is held, which fixes the scale; a local BA
//! with one fixed neighbour holds that coordinate only; two or more fixed photos need nothing.
//!
//! Robust losses use `sqrt(ρ')` reweighting (exact Triggs correction for Cauchy and Huber, see
//! [`loss`]). Observations whose point is behind the camera at a linearisation are skipped for
//! that iteration; a step that moves a counted observation behind its camera is rejected.

mod loss;
mod problem;
mod residual;
mod schur;

use std::collections::BTreeSet;

use crate::SfmError;
use kiln_vision::model::Reconstruction;
use problem::{Problem, State};
use schur::NormalEquations;

/// The robust loss on the reprojection residual's norm `s` (pixels).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RobustLoss {
    Trivial,
    /// `ρ(s²) = c² log(1 + s²/c²)`.
    Cauchy {
        scale_px: f64,
    },
    Huber {
        scale_px: f64,
    },
}

/// What to refine.
#[derive(Clone, Debug, PartialEq)]
pub struct BaOptions {
    /// Photos whose poses vary; `None` = every registered photo (global BA). Registered photos not
    /// listed stay fixed; points seen by a variable photo vary.
    pub variable_images: Option<BTreeSet<usize>>,
    pub refine_focal: bool,
    pub refine_principal_point: bool,
    pub refine_distortion: bool,
    pub loss: RobustLoss,
    pub max_iterations: usize,
}

/// Global BA as COLMAP's mapper runs it: focal and radial distortion refined, principal point
/// held (it is poorly constrained and correlates with rotation), a soft-L1-like robust loss at
/// one pixel, at most 50 iterations.
impl Default for BaOptions {
    fn default() -> Self {
        Self {
            variable_images: None,
            refine_focal: true,
            refine_principal_point: false,
            refine_distortion: true,
            loss: RobustLoss::Cauchy { scale_px: 1.0 },
            max_iterations: 50,
        }
    }
}

/// Cost before and after.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BaSummary {
    /// RMS of the reprojection error (pixels, no robust loss) over the observations of the
    /// problem that project, before and after.
    pub initial_rms_px: f64,
    pub final_rms_px: f64,
    /// Levenberg–Marquardt iterations, rejected steps included.
    pub iterations: usize,
    /// Observations in the problem (those of the points that take part, in registered photos).
    pub observations: usize,
}

/// Initial damping λ relative to the diagonal of `JᵀJ` (Ceres' default trust radius 1e4).
const INITIAL_LAMBDA: f64 = 1e-4;
/// Damping beyond which no step can make progress any more: stop.
const MAX_LAMBDA: f64 = 1e16;
/// Smallest damping, so that λ never underflows after many good steps.
const MIN_LAMBDA: f64 = 1e-12;
/// Minimum ratio of actual to predicted decrease for a step to be accepted (Ceres' default).
const MIN_GAIN_RATIO: f64 = 1e-3;
/// Stop when an accepted step lowers the cost by less than this fraction.
const FUNCTION_TOLERANCE: f64 = 1e-6;
/// Stop when the step is this small relative to the norm of the translations and points.
const STEP_TOLERANCE: f64 = 1e-8;
/// Stop when every gradient component is below this (pixels² per parameter unit): converged.
const GRADIENT_TOLERANCE: f64 = 1e-10;

/// Refines `reconstruction` in place. The gauge (similarity freedom) is fixed inside.
///
/// The reconstruction is written only if a step was accepted: poses of the variable photos,
/// refined intrinsics and the points of the problem; everything else is left bit for bit.
pub fn bundle_adjust(reconstruction: &mut Reconstruction, options: &BaOptions) -> Result<BaSummary, SfmError> {
    validate(options)?;
    let problem = Problem::new(reconstruction, options);
    let mut state = State::new(reconstruction, &problem);
    let initial = problem.evaluate(&state, &options.loss, None).unwrap_or_default();
    let mut summary = BaSummary {
        initial_rms_px: initial.rms(),
        final_rms_px: initial.rms(),
        iterations: 0,
        observations: problem.obs.len(),
    };
    if problem.obs.is_empty() {
        return Ok(summary);
    }
    let mut accepted_any = false;
    let mut lambda = INITIAL_LAMBDA;
    let mut lambda_growth = 2.0;
    let (mut lins, mut valid, mut current) = problem.linearize(&state, &options.loss);
    let mut normal = NormalEquations::new(&problem, &lins);
    while summary.iterations < options.max_iterations
        && lambda <= MAX_LAMBDA
        && normal.max_gradient(&problem) > GRADIENT_TOLERANCE
    {
        summary.iterations += 1;
        let outcome = normal.solve(&problem, lambda).and_then(|step| {
            let candidate = state.stepped(&problem, &step.cameras, &step.points);
            let evaluation = problem.evaluate(&candidate, &options.loss, Some(&valid))?;
            let gain = (current.cost - evaluation.cost) / step.predicted_decrease;
            (step.predicted_decrease > 0.0 && gain > MIN_GAIN_RATIO).then_some((
                candidate,
                evaluation.cost,
                gain,
                step.norm,
            ))
        });
        let Some((candidate, new_cost, gain, step_norm)) = outcome else {
            lambda *= lambda_growth;
            lambda_growth *= 2.0;
            continue;
        };
        let relative_decrease = (current.cost - new_cost) / current.cost.max(f64::MIN_POSITIVE);
        let small_step = step_norm <= STEP_TOLERANCE * (state.norm(&problem) + STEP_TOLERANCE);
        state = candidate;
        accepted_any = true;
        lambda = (lambda * (1.0_f64 / 3.0).max(1.0 - (2.0 * gain - 1.0).powi(3))).max(MIN_LAMBDA);
        lambda_growth = 2.0;
        tracing::trace!(iteration = summary.iterations, cost = new_cost, lambda, "bundle adjustment step accepted");
        if relative_decrease < FUNCTION_TOLERANCE || small_step {
            break;
        }
        (lins, valid, current) = problem.linearize(&state, &options.loss);
        normal = NormalEquations::new(&problem, &lins);
    }
    drop(lins);
    if accepted_any {
        state.write_back(&problem, reconstruction);
        summary.final_rms_px = problem.evaluate(&state, &options.loss, None).unwrap_or_default().rms();
    }
    tracing::debug!(?summary, points = problem.num_points(), poses = problem.pose_images.len(), "bundle adjustment");
    Ok(summary)
}

fn validate(options: &BaOptions) -> Result<(), SfmError> {
    let scale_ok = match options.loss {
        RobustLoss::Trivial => true,
        RobustLoss::Cauchy { scale_px } | RobustLoss::Huber { scale_px } => scale_px.is_finite() && scale_px > 0.0,
    };
    if scale_ok {
        Ok(())
    } else {
        Err(SfmError::Internal(format!("bundle adjustment: invalid robust loss {:?}", options.loss)))
    }
}
