//! Robust losses of bundle adjustment: `ρ(s)` of a squared residual norm `s` (pixels²) and the
//! weight `ρ'(s)` of iteratively reweighted least squares.
//!
//! With Cauchy `ρ'' < 0` and with Huber `ρ'' = 0`, so Triggs' second-order correction (as Ceres
//! applies it) reduces exactly to scaling each residual and its Jacobian by `sqrt(ρ'(s))`; that is
//! what [`RobustLoss::weight`] feeds.

use crate::ba::RobustLoss;

impl RobustLoss {
    /// `ρ(s)` for a squared residual norm `s`; the cost is `½ Σ ρ(s)`.
    pub fn rho(&self, s: f64) -> f64 {
        match *self {
            RobustLoss::Trivial => s,
            RobustLoss::Cauchy { scale_px } => {
                let c2 = scale_px * scale_px;
                c2 * (s / c2).ln_1p()
            }
            RobustLoss::Huber { scale_px } => {
                if s <= scale_px * scale_px {
                    s
                } else {
                    2.0 * scale_px * s.sqrt() - scale_px * scale_px
                }
            }
        }
    }

    /// `ρ'(s)`: the weight of a residual in the Gauss–Newton normal equations.
    pub fn weight(&self, s: f64) -> f64 {
        match *self {
            RobustLoss::Trivial => 1.0,
            RobustLoss::Cauchy { scale_px } => 1.0 / (1.0 + s / (scale_px * scale_px)),
            RobustLoss::Huber { scale_px } => {
                if s <= scale_px * scale_px {
                    1.0
                } else {
                    scale_px / s.sqrt()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_is_the_derivative_of_rho() {
        let losses = [RobustLoss::Trivial, RobustLoss::Cauchy { scale_px: 2.0 }, RobustLoss::Huber { scale_px: 1.5 }];
        for loss in losses {
            for s in [0.01, 0.5, 1.0, 3.9, 25.0, 400.0] {
                let h = 1e-6 * s;
                let numeric = (loss.rho(s + h) - loss.rho(s - h)) / (2.0 * h);
                assert!((numeric - loss.weight(s)).abs() < 1e-6, "{loss:?} at {s}: {numeric} vs {}", loss.weight(s));
            }
        }
    }

    #[test]
    fn robust_losses_grow_slower_than_squares() {
        let s = 50.0 * 50.0;
        assert!(RobustLoss::Cauchy { scale_px: 1.0 }.rho(s) < 20.0);
        assert!(RobustLoss::Huber { scale_px: 1.0 }.rho(s) < 100.0);
        assert_eq!(RobustLoss::Trivial.rho(s), s);
        // Near zero every loss is the square.
        assert!((RobustLoss::Cauchy { scale_px: 4.0 }.rho(1e-4) - 1e-4).abs() < 1e-9);
    }
}
