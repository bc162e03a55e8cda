//! Generic robust estimation: LO-RANSAC with MSAC scoring (Lebeda et al. 2012, Torr & Zisserman
//! 2000). Any model with a minimal solver and a per-datum squared residual plugs in through
//! [`Estimator`]; the two-view solvers (E, F, H) and PnP use it.
//!
//! Each iteration draws [`Estimator::SAMPLE_SIZE`] distinct data, fits every minimal model and
//! scores it with the truncated quadratic cost `Σ min(r², t²)`. Whenever a sample beats the best
//! so far, a local optimisation re-fits the model on its inliers with
//! [`Estimator::fit_nonminimal`] until the cost stops dropping. The number of iterations adapts
//! to the best inlier ratio `w`: `N = log(1 − confidence) / log(1 − w^s)`, clamped to
//! `[min_iterations, max_iterations]`. Sampling is seeded, so results are reproducible.

use kiln_core::rng::Pcg32;

/// A model family for [`lo_ransac`]: a minimal solver, an optional least-squares fit on many
/// data, and a squared residual per datum (data are addressed by index `0..num_data()`).
pub trait Estimator {
    type Model: Clone;
    /// Number of data a minimal sample holds.
    const SAMPLE_SIZE: usize;

    /// Number of data (matches, correspondences) to choose from.
    fn num_data(&self) -> usize;

    /// Every model consistent with the minimal sample (`sample.len() == SAMPLE_SIZE`); empty
    /// when the sample is degenerate.
    fn fit_minimal(&self, sample: &[usize]) -> Vec<Self::Model>;

    /// A least-squares fit on `inliers` (more than `SAMPLE_SIZE` of them), used by the local
    /// optimisation; `None` when it cannot fit (too few or degenerate data).
    fn fit_nonminimal(&self, inliers: &[usize]) -> Option<Self::Model>;

    /// Squared residual of datum `index` under `model`, in the unit of
    /// [`RansacOptions::max_error`] squared.
    fn residual_sq(&self, model: &Self::Model, index: usize) -> f64;
}

/// Settings of [`lo_ransac`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RansacOptions {
    /// Inlier threshold on the residual (`residual_sq <= max_error²`), in the estimator's unit.
    pub max_error: f64,
    /// Probability that at least one all-inlier sample was drawn when sampling stops.
    pub confidence: f64,
    pub min_iterations: usize,
    pub max_iterations: usize,
    /// Maximum re-fits in one local optimisation (0 turns local optimisation off).
    pub local_optimization_steps: usize,
    /// Seed of the sampler: the same data and seed give the same result.
    pub seed: u64,
}

/// COLMAP's default RANSAC confidence: enough samples that missing the best model is rare.
const DEFAULT_CONFIDENCE: f64 = 0.9999;
/// A floor so that a lucky early sample with a high inlier ratio is still challenged.
const DEFAULT_MIN_ITERATIONS: usize = 30;
/// COLMAP's default cap: at ~90 % outliers the 5-point solver would need more, but such pairs are
/// rejected anyway.
const DEFAULT_MAX_ITERATIONS: usize = 10_000;
/// Local optimisation converges in a handful of re-fits (Lebeda et al. use 10 at most).
const DEFAULT_LOCAL_STEPS: usize = 10;
/// Arbitrary fixed seed: reproducible runs.
const DEFAULT_SEED: u64 = 0x5EED_0FC0_FFEE;

impl Default for RansacOptions {
    fn default() -> Self {
        Self {
            max_error: 1.0,
            confidence: DEFAULT_CONFIDENCE,
            min_iterations: DEFAULT_MIN_ITERATIONS,
            max_iterations: DEFAULT_MAX_ITERATIONS,
            local_optimization_steps: DEFAULT_LOCAL_STEPS,
            seed: DEFAULT_SEED,
        }
    }
}

/// The best model found, its inliers (sorted indices) and how it was found.
#[derive(Clone, Debug, PartialEq)]
pub struct RansacResult<M> {
    pub model: M,
    pub inliers: Vec<usize>,
    /// MSAC cost `Σ min(r², t²)` of `model` over all data (lower is better).
    pub cost: f64,
    pub iterations: usize,
}

impl<M> RansacResult<M> {
    pub fn inlier_ratio(&self, num_data: usize) -> f64 {
        if num_data == 0 { 0.0 } else { self.inliers.len() as f64 / num_data as f64 }
    }
}

/// Iterations needed to draw one all-inlier sample of `sample_size` with probability
/// `confidence` when a fraction `inlier_ratio` of the data are inliers.
pub fn required_iterations(inlier_ratio: f64, sample_size: usize, confidence: f64) -> f64 {
    let all_inliers = inlier_ratio.clamp(0.0, 1.0).powi(sample_size as i32);
    if all_inliers >= 1.0 {
        return 0.0;
    }
    if all_inliers <= f64::MIN_POSITIVE {
        return f64::INFINITY;
    }
    (1.0 - confidence).max(f64::MIN_POSITIVE).ln() / (-all_inliers).ln_1p()
}

/// Robustly fits `estimator`'s model. `None` when there are fewer data than a minimal sample or
/// no sample produced a model with at least `SAMPLE_SIZE` inliers.
pub fn lo_ransac<E: Estimator>(estimator: &E, options: &RansacOptions) -> Option<RansacResult<E::Model>> {
    let n = estimator.num_data();
    let s = E::SAMPLE_SIZE;
    if n < s || s == 0 {
        return None;
    }
    let threshold_sq = options.max_error * options.max_error;
    let mut rng = Pcg32::new(options.seed);
    let mut sample = vec![0usize; s];
    let mut best: Option<(E::Model, f64, usize)> = None;
    let mut max_iterations = options.max_iterations.max(options.min_iterations);
    let mut iteration = 0;
    while iteration < max_iterations {
        iteration += 1;
        draw_sample(&mut rng, n, &mut sample);
        for model in estimator.fit_minimal(&sample) {
            let best_cost = best.as_ref().map_or(f64::INFINITY, |b| b.1);
            let Some((cost, inliers)) = score(estimator, &model, threshold_sq, best_cost) else { continue };
            if inliers < s {
                continue;
            }
            let (model, cost, inliers) = local_optimization(estimator, model, cost, inliers, threshold_sq, options);
            best = Some((model, cost, inliers));
            let needed = required_iterations(inliers as f64 / n as f64, s, options.confidence);
            max_iterations = clamp_iterations(needed, options);
        }
    }
    let (model, cost, _) = best?;
    let inliers = inlier_indices(estimator, &model, threshold_sq);
    Some(RansacResult { model, inliers, cost, iterations: iteration })
}

/// Indices of the data whose squared residual is within `threshold_sq`.
pub fn inlier_indices<E: Estimator>(estimator: &E, model: &E::Model, threshold_sq: f64) -> Vec<usize> {
    (0..estimator.num_data()).filter(|&i| estimator.residual_sq(model, i) <= threshold_sq).collect()
}

fn clamp_iterations(needed: f64, options: &RansacOptions) -> usize {
    let cap = options.max_iterations.max(options.min_iterations);
    if needed.is_finite() { (needed.ceil() as usize).clamp(options.min_iterations, cap) } else { cap }
}

/// `sample.len()` distinct indices below `n` (rejection; samples are tiny).
fn draw_sample(rng: &mut Pcg32, n: usize, sample: &mut [usize]) {
    for k in 0..sample.len() {
        loop {
            let candidate = rng.below(n);
            if !sample[..k].contains(&candidate) {
                sample[k] = candidate;
                break;
            }
        }
    }
}

/// MSAC cost and inlier count of `model`, or `None` as soon as the cost exceeds `bound`.
fn score<E: Estimator>(estimator: &E, model: &E::Model, threshold_sq: f64, bound: f64) -> Option<(f64, usize)> {
    let mut cost = 0.0;
    let mut inliers = 0;
    for i in 0..estimator.num_data() {
        let r = estimator.residual_sq(model, i);
        if r <= threshold_sq {
            cost += r;
            inliers += 1;
        } else {
            cost += threshold_sq;
        }
        if cost >= bound {
            return None;
        }
    }
    Some((cost, inliers))
}

/// Re-fits on the inliers while the MSAC cost keeps dropping.
fn local_optimization<E: Estimator>(
    estimator: &E,
    mut model: E::Model,
    mut cost: f64,
    mut inliers: usize,
    threshold_sq: f64,
    options: &RansacOptions,
) -> (E::Model, f64, usize) {
    for _ in 0..options.local_optimization_steps {
        let support = inlier_indices(estimator, &model, threshold_sq);
        if support.len() <= E::SAMPLE_SIZE {
            break;
        }
        let Some(refit) = estimator.fit_nonminimal(&support) else { break };
        match score(estimator, &refit, threshold_sq, cost) {
            Some((refit_cost, refit_inliers)) => {
                model = refit;
                cost = refit_cost;
                inliers = refit_inliers;
            }
            None => break,
        }
    }
    (model, cost, inliers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2D line `y = a x + b` through points.
    struct LineFit {
        points: Vec<(f64, f64)>,
    }

    impl Estimator for LineFit {
        type Model = (f64, f64);
        const SAMPLE_SIZE: usize = 2;
        fn num_data(&self) -> usize {
            self.points.len()
        }
        fn fit_minimal(&self, sample: &[usize]) -> Vec<(f64, f64)> {
            let (p, q) = (self.points[sample[0]], self.points[sample[1]]);
            if (q.0 - p.0).abs() < 1e-12 {
                return vec![];
            }
            let a = (q.1 - p.1) / (q.0 - p.0);
            vec![(a, p.1 - a * p.0)]
        }
        fn fit_nonminimal(&self, inliers: &[usize]) -> Option<(f64, f64)> {
            let n = inliers.len() as f64;
            let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
            for &i in inliers {
                let (x, y) = self.points[i];
                sx += x;
                sy += y;
                sxx += x * x;
                sxy += x * y;
            }
            let det = n * sxx - sx * sx;
            (det.abs() > 1e-12).then(|| {
                let a = (n * sxy - sx * sy) / det;
                (a, (sy - a * sx) / n)
            })
        }
        fn residual_sq(&self, model: &(f64, f64), index: usize) -> f64 {
            let (x, y) = self.points[index];
            (y - model.0 * x - model.1).powi(2)
        }
    }

    fn noisy_line(outlier_fraction: f64, seed: u64) -> (LineFit, Vec<bool>) {
        let mut rng = Pcg32::new(seed);
        let mut points = Vec::new();
        let mut is_inlier = Vec::new();
        for _ in 0..400 {
            let x = f64::from(rng.uniform()) * 10.0;
            if f64::from(rng.uniform()) < outlier_fraction {
                points.push((x, f64::from(rng.uniform()) * 40.0 - 20.0));
                is_inlier.push(false);
            } else {
                points.push((x, 1.5 * x - 2.0 + 0.05 * f64::from(rng.normal())));
                is_inlier.push(true);
            }
        }
        (LineFit { points }, is_inlier)
    }

    #[test]
    fn finds_line_among_outliers() {
        let (fit, is_inlier) = noisy_line(0.6, 7);
        let options = RansacOptions { max_error: 0.2, ..RansacOptions::default() };
        let result = lo_ransac(&fit, &options).expect("a line");
        assert!((result.model.0 - 1.5).abs() < 0.01 && (result.model.1 + 2.0).abs() < 0.05, "{:?}", result.model);
        let true_found = result.inliers.iter().filter(|&&i| is_inlier[i]).count();
        let true_total = is_inlier.iter().filter(|&&b| b).count();
        assert!(true_found as f64 > 0.97 * true_total as f64, "{true_found} of {true_total}");
        let wrong = result.inliers.len() - true_found;
        assert!(wrong < 10, "{wrong} outliers accepted");
        assert!(result.iterations < options.max_iterations, "adaptive stopping");
    }

    #[test]
    fn same_seed_same_result() {
        let (fit, _) = noisy_line(0.5, 3);
        let options = RansacOptions { max_error: 0.2, local_optimization_steps: 0, ..RansacOptions::default() };
        assert_eq!(lo_ransac(&fit, &options), lo_ransac(&fit, &options));
    }

    #[test]
    fn too_few_data_gives_none() {
        let fit = LineFit { points: vec![(0.0, 0.0)] };
        assert!(lo_ransac(&fit, &RansacOptions::default()).is_none());
    }

    #[test]
    fn iteration_count_formula() {
        // 50 % inliers, 5-point samples, 0.9999: log(1e-4) / log(1 - 1/32) ≈ 290.1.
        let n = required_iterations(0.5, 5, 0.9999);
        assert!((n - 290.1).abs() < 0.2, "{n}");
        assert_eq!(required_iterations(1.0, 5, 0.9999), 0.0);
        assert!(required_iterations(0.0, 5, 0.9999).is_infinite());
    }
}
