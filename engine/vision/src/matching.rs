//! Descriptor matching: which photo pairs to match, and brute-force nearest neighbours with
//! Lowe's ratio test and a mutual-best (cross) check.
//!
//! Descriptors are unit vectors, so `|a − b|² = 2 − 2 a·b`: all similarities of a pair come from
//! one matrix product `A Bᵀ` (`matrixmultiply::sgemm`), computed tile by tile so memory stays
//! bounded (a few MiB per thread for 8k × 8k features). While each tile is hot in cache, one
//! branch-free pass keeps the best and second-best similarity of every row and every column, so
//! both matching directions cost a single product.
//!
//! Pair selection: every pair up to [`MAX_EXHAUSTIVE_PHOTOS`] photos; beyond, sequential
//! neighbours (capture order) plus retrieval: each photo's largest-scale descriptors matched
//! against every other photo's, keeping the photos with the most such matches (loop closures).

use rayon::prelude::*;

use crate::features::{DESCRIPTOR_LEN, Features};

/// Settings of [`match_features`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatchOptions {
    /// Lowe's ratio: best distance over second-best distance must be below this.
    pub max_ratio: f32,
    /// Keep only mutual best matches (the ratio test applied in both directions).
    pub cross_check: bool,
    /// Largest Euclidean distance between matched (unit) descriptors.
    pub max_distance: f32,
}

/// COLMAP's `max_ratio`.
const DEFAULT_MAX_RATIO: f32 = 0.8;
/// COLMAP's `max_distance` is 0.7 rad between unit descriptors: 2 sin(0.35) ≈ 0.686 as a chord;
/// random 128-D unit vectors lie ~1.41 apart, so this rejects only clear non-matches.
const DEFAULT_MAX_DISTANCE: f32 = 0.7;

impl Default for MatchOptions {
    fn default() -> Self {
        Self { max_ratio: DEFAULT_MAX_RATIO, cross_check: true, max_distance: DEFAULT_MAX_DISTANCE }
    }
}

/// Rows of `A` per product tile: 256 × 1024 similarities (1 MiB) stay in L2 between the product
/// and the scan, and the packing of `B` is amortised over 256 rows.
const TILE_ROWS: usize = 256;
/// Columns of `B` per product tile (see [`TILE_ROWS`]).
const TILE_COLUMNS: usize = 1024;
/// Lanes of the row-wise top-2 scan: eight independent running maxima vectorise.
const LANES: usize = 8;

/// Best and second-best similarity (dot product) and the index of the best.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Top2 {
    best: f32,
    second: f32,
    index: u32,
}

impl Top2 {
    const EMPTY: Self = Self { best: f32::NEG_INFINITY, second: f32::NEG_INFINITY, index: u32::MAX };

    fn merge(self, other: Self) -> Self {
        if other.best > self.best {
            Self { best: other.best, second: self.best.max(other.second), index: other.index }
        } else {
            Self { best: self.best, second: self.second.max(other.best), index: self.index }
        }
    }

    /// Whether the best neighbour passes the distance and ratio tests
    /// (`d² = 2 − 2 s`; `d₁ < ratio · d₂`).
    fn passes(&self, options: &MatchOptions) -> bool {
        if self.index == u32::MAX {
            return false;
        }
        let d1_sq = (2.0 - 2.0 * self.best).max(0.0);
        let d2_sq = (2.0 - 2.0 * self.second).max(0.0);
        d1_sq <= options.max_distance * options.max_distance && d1_sq < options.max_ratio * options.max_ratio * d2_sq
    }
}

/// Matches keypoints of `a` to keypoints of `b`: pairs `(index in a, index in b)`, sorted by the
/// index in `a`.
pub fn match_features(a: &Features, b: &Features, options: &MatchOptions) -> Vec<(u32, u32)> {
    let (rows, columns) = nearest_neighbours(a, b);
    rows.iter()
        .enumerate()
        .filter(|(_, top)| top.passes(options))
        .filter(|(r, top)| {
            !options.cross_check || {
                let back = &columns[top.index as usize];
                back.index as usize == *r && back.passes(options)
            }
        })
        .map(|(r, top)| (r as u32, top.index))
        .collect()
}

/// For every row of `a` its top-2 among `b`, and for every row of `b` its top-2 among `a`.
fn nearest_neighbours(a: &Features, b: &Features) -> (Vec<Top2>, Vec<Top2>) {
    let (na, nb) = (descriptor_count(a), descriptor_count(b));
    let mut rows = vec![Top2::EMPTY; na];
    let mut column_best = vec![f32::NEG_INFINITY; nb];
    let mut column_second = vec![f32::NEG_INFINITY; nb];
    let mut column_index = vec![u32::MAX; nb];
    let mut tile = vec![0.0f32; TILE_ROWS * TILE_COLUMNS];
    for row_start in (0..na).step_by(TILE_ROWS) {
        let m = TILE_ROWS.min(na - row_start);
        for column_start in (0..nb).step_by(TILE_COLUMNS) {
            let n = TILE_COLUMNS.min(nb - column_start);
            similarity_tile(a, b, row_start, m, column_start, n, &mut tile);
            for (r, similarities) in tile.chunks_exact(n).take(m).enumerate() {
                let row = row_start + r;
                rows[row] = rows[row].merge(row_top2(similarities, column_start));
                update_columns(
                    similarities,
                    row as u32,
                    &mut column_best[column_start..column_start + n],
                    &mut column_second[column_start..column_start + n],
                    &mut column_index[column_start..column_start + n],
                );
            }
        }
    }
    let columns =
        (0..nb).map(|c| Top2 { best: column_best[c], second: column_second[c], index: column_index[c] }).collect();
    (rows, columns)
}

/// Descriptors actually present (a truncated descriptor buffer never reads out of bounds).
fn descriptor_count(features: &Features) -> usize {
    features.keypoints.len().min(features.descriptors.len() / DESCRIPTOR_LEN)
}

/// `tile[r * n + c] = a[row_start + r] · b[column_start + c]` for an `m × n` tile.
fn similarity_tile(
    a: &Features,
    b: &Features,
    row_start: usize,
    m: usize,
    column_start: usize,
    n: usize,
    tile: &mut [f32],
) {
    let a_block = &a.descriptors[row_start * DESCRIPTOR_LEN..(row_start + m) * DESCRIPTOR_LEN];
    let b_block = &b.descriptors[column_start * DESCRIPTOR_LEN..(column_start + n) * DESCRIPTOR_LEN];
    let c_block = &mut tile[..m * n];
    // SAFETY: `a_block` holds m rows of DESCRIPTOR_LEN floats (row stride DESCRIPTOR_LEN),
    // `b_block` holds n such rows read as a DESCRIPTOR_LEN × n matrix (row stride 1, column
    // stride DESCRIPTOR_LEN) and `c_block` has m × n floats (row stride n); the slices are
    // exactly that long, so every access of the m × k × n product is in bounds, and `c_block`
    // does not alias the inputs.
    #[allow(unsafe_code, reason = "the one GEMM call; bounds argued above")]
    unsafe {
        matrixmultiply::sgemm(
            m,
            DESCRIPTOR_LEN,
            n,
            1.0,
            a_block.as_ptr(),
            DESCRIPTOR_LEN as isize,
            1,
            b_block.as_ptr(),
            1,
            DESCRIPTOR_LEN as isize,
            0.0,
            c_block.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Top-2 of one row of similarities (column indices offset by `column_start`), with
/// [`LANES`] independent branch-free running top-2s merged at the end.
fn row_top2(similarities: &[f32], column_start: usize) -> Top2 {
    let mut best = [f32::NEG_INFINITY; LANES];
    let mut second = [f32::NEG_INFINITY; LANES];
    let mut index = [0u32; LANES];
    let chunks = similarities.chunks_exact(LANES);
    let tail = chunks.remainder();
    for (chunk_number, chunk) in chunks.enumerate() {
        let base = (chunk_number * LANES) as u32;
        for lane in 0..LANES {
            let v = chunk[lane];
            let better = v > best[lane];
            second[lane] = second[lane].max(best[lane].min(v));
            index[lane] = if better { base + lane as u32 } else { index[lane] };
            best[lane] = best[lane].max(v);
        }
    }
    let mut top = Top2::EMPTY;
    for lane in 0..LANES {
        if best[lane] > f32::NEG_INFINITY {
            top = top.merge(Top2 { best: best[lane], second: second[lane], index: index[lane] + column_start as u32 });
        }
    }
    let tail_start = similarities.len() - tail.len();
    for (k, &v) in tail.iter().enumerate() {
        let single = Top2 { best: v, second: f32::NEG_INFINITY, index: (column_start + tail_start + k) as u32 };
        top = top.merge(single);
    }
    top
}

/// Folds one row of similarities into the per-column running top-2 (branch-free, vectorises).
fn update_columns(similarities: &[f32], row: u32, best: &mut [f32], second: &mut [f32], index: &mut [u32]) {
    for (((&v, b), s), i) in similarities.iter().zip(best.iter_mut()).zip(second.iter_mut()).zip(index.iter_mut()) {
        let better = v > *b;
        *s = s.max(b.min(v));
        *i = if better { row } else { *i };
        *b = b.max(v);
    }
}

/// How photo pairs are chosen for matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairStrategy {
    /// Every pair.
    Exhaustive,
    /// Each photo with the next `overlap` photos in capture order.
    Sequential { overlap: usize },
    /// Each photo with the `per_photo` photos sharing the most matches among the `descriptors`
    /// largest-scale descriptors of both.
    Retrieval { per_photo: usize, descriptors: usize },
}

/// Up to this many photos every pair is matched (80 photos: 3160 pairs).
pub const MAX_EXHAUSTIVE_PHOTOS: usize = 150;
/// Sequential neighbours per photo beyond the exhaustive limit: consecutive shots of a walk
/// around an object overlap this far.
const SEQUENTIAL_OVERLAP: usize = 10;
/// Retrieved partners per photo beyond the exhaustive limit (loop closures, revisits).
const RETRIEVED_PER_PHOTO: usize = 20;
/// Descriptors per photo used for retrieval: the largest-scale ones, which repeat best across
/// viewpoints; 256 keeps the all-against-all product at ~17 MFLOP per pair.
const RETRIEVAL_DESCRIPTORS: usize = 256;
/// Retrieval candidates need at least this many subset matches to count as overlapping.
const MIN_RETRIEVAL_MATCHES: usize = 3;

/// Settings of [`select_pairs_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairSelection {
    pub max_exhaustive: usize,
    pub sequential_overlap: usize,
    pub retrieved_per_photo: usize,
    pub retrieval_descriptors: usize,
}

impl Default for PairSelection {
    fn default() -> Self {
        Self {
            max_exhaustive: MAX_EXHAUSTIVE_PHOTOS,
            sequential_overlap: SEQUENTIAL_OVERLAP,
            retrieved_per_photo: RETRIEVED_PER_PHOTO,
            retrieval_descriptors: RETRIEVAL_DESCRIPTORS,
        }
    }
}

/// The pairs `(i, j)`, `i < j`, to match for `features.len()` photos: exhaustive up to
/// `max_exhaustive` photos, else sequential neighbours plus retrieval. Sorted, no duplicates.
pub fn select_pairs(features: &[Features], max_exhaustive: usize) -> Vec<(usize, usize)> {
    select_pairs_with(features, &PairSelection { max_exhaustive, ..PairSelection::default() })
}

/// [`select_pairs`] with every setting explicit.
pub fn select_pairs_with(features: &[Features], selection: &PairSelection) -> Vec<(usize, usize)> {
    if features.len() <= selection.max_exhaustive {
        return pairs_for(PairStrategy::Exhaustive, features);
    }
    let mut pairs = pairs_for(PairStrategy::Sequential { overlap: selection.sequential_overlap }, features);
    let retrieval = PairStrategy::Retrieval {
        per_photo: selection.retrieved_per_photo,
        descriptors: selection.retrieval_descriptors,
    };
    pairs.extend(pairs_for(retrieval, features));
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// The pairs `(i, j)`, `i < j`, one strategy gives. Sorted, no duplicates.
pub fn pairs_for(strategy: PairStrategy, features: &[Features]) -> Vec<(usize, usize)> {
    let n = features.len();
    let mut pairs: Vec<(usize, usize)> = match strategy {
        PairStrategy::Exhaustive => (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).collect(),
        PairStrategy::Sequential { overlap } => {
            (0..n).flat_map(|i| (i + 1..n.min(i + 1 + overlap)).map(move |j| (i, j))).collect()
        }
        PairStrategy::Retrieval { per_photo, descriptors } => retrieval_pairs(features, per_photo, descriptors),
    };
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// Each photo's `per_photo` best partners by the number of mutual ratio-test matches among the
/// `descriptors` largest-scale descriptors of both photos (each pair scored once).
fn retrieval_pairs(features: &[Features], per_photo: usize, descriptors: usize) -> Vec<(usize, usize)> {
    let n = features.len();
    let subsets: Vec<Features> = features.iter().map(|f| strongest_subset(f, descriptors)).collect();
    let options = MatchOptions::default();
    let scored: Vec<(usize, usize, usize)> = (0..n)
        .into_par_iter()
        .flat_map_iter(|i| {
            let subsets = &subsets;
            (i + 1..n).map(move |j| (match_features(&subsets[i], &subsets[j], &options).len(), i, j))
        })
        .filter(|&(count, _, _)| count >= MIN_RETRIEVAL_MATCHES)
        .collect();
    let mut partners: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    for &(count, i, j) in &scored {
        partners[i].push((count, j));
        partners[j].push((count, i));
    }
    partners
        .into_iter()
        .enumerate()
        .flat_map(|(i, mut candidates)| {
            candidates.sort_unstable_by(|a, b| b.cmp(a));
            candidates.into_iter().take(per_photo).map(move |(_, j)| (i.min(j), i.max(j)))
        })
        .collect()
}

/// The `count` keypoints of largest scale (ties by index), with their descriptors.
fn strongest_subset(features: &Features, count: usize) -> Features {
    let mut order: Vec<usize> = (0..descriptor_count(features)).collect();
    order.sort_by(|&x, &y| features.keypoints[y].scale.total_cmp(&features.keypoints[x].scale).then(x.cmp(&y)));
    order.truncate(count);
    Features {
        keypoints: order.iter().map(|&k| features.keypoints[k]).collect(),
        descriptors: order.iter().flat_map(|&k| features.descriptor(k).iter().copied()).collect(),
        colors: Vec::new(),
    }
}

/// The matches of photos `(i, j)` as `(keypoint in i, keypoint in j)`.
pub type PairMatches = ((usize, usize), Vec<(u32, u32)>);

/// Matches every pair in parallel; `progress(done, total)` is called as pairs finish. The result
/// keeps the order of `pairs`; pairs naming a missing photo get no matches. `should_stop()` is
/// checked before each pair: once it is true, pairs not yet started are skipped and the result is
/// `None`.
pub fn match_pairs(
    features: &[Features],
    pairs: &[(usize, usize)],
    options: &MatchOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Option<Vec<PairMatches>> {
    let done = std::sync::atomic::AtomicUsize::new(0);
    pairs
        .par_iter()
        .map(|&(i, j)| {
            if should_stop() {
                return None;
            }
            let matches = match (features.get(i), features.get(j)) {
                (Some(a), Some(b)) => match_features(a, b, options),
                _ => Vec::new(),
            };
            progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, pairs.len());
            Some(((i, j), matches))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Keypoint;
    use kiln_core::rng::Pcg32;

    fn unit(rng: &mut Pcg32) -> Vec<f32> {
        let v: Vec<f32> = (0..DESCRIPTOR_LEN).map(|_| rng.normal()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    fn perturbed(v: &[f32], sigma: f32, rng: &mut Pcg32) -> Vec<f32> {
        let w: Vec<f32> = v.iter().map(|x| x + sigma * rng.normal()).collect();
        let norm = w.iter().map(|x| x * x).sum::<f32>().sqrt();
        w.into_iter().map(|x| x / norm).collect()
    }

    fn features(descriptors: Vec<Vec<f32>>, scales: impl Fn(usize) -> f32) -> Features {
        Features {
            keypoints: (0..descriptors.len())
                .map(|k| Keypoint { x: k as f32, y: 0.0, scale: scales(k), orientation: 0.0 })
                .collect(),
            descriptors: descriptors.into_iter().flatten().collect(),
            colors: Vec::new(),
        }
    }

    /// O(n·m) reference with the same tests as [`match_features`].
    fn naive(a: &Features, b: &Features, options: &MatchOptions) -> Vec<(u32, u32)> {
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        let top = |query: &[f32], pool: &Features| {
            let mut t = Top2::EMPTY;
            for k in 0..pool.len() {
                t = t.merge(Top2 { best: dot(query, pool.descriptor(k)), second: f32::NEG_INFINITY, index: k as u32 });
            }
            t
        };
        (0..a.len())
            .filter_map(|r| {
                let forward = top(a.descriptor(r), b);
                if !forward.passes(options) {
                    return None;
                }
                let back = top(b.descriptor(forward.index as usize), a);
                (!options.cross_check || (back.index as usize == r && back.passes(options)))
                    .then_some((r as u32, forward.index))
            })
            .collect()
    }

    #[test]
    fn gemm_path_equals_naive_reference() {
        let mut rng = Pcg32::new(2);
        // Sizes straddle the tile sizes; half of b are noisy copies of a so many matches pass.
        let a: Vec<Vec<f32>> = (0..600).map(|_| unit(&mut rng)).collect();
        let mut b: Vec<Vec<f32>> = a.iter().step_by(2).map(|v| perturbed(v, 0.03, &mut rng)).collect();
        b.extend((0..1100).map(|_| unit(&mut rng)));
        rng.shuffle(&mut b);
        let (a, b) = (features(a, |_| 1.0), features(b, |_| 1.0));
        for options in [
            MatchOptions::default(),
            MatchOptions { cross_check: false, ..MatchOptions::default() },
            MatchOptions { max_ratio: 0.95, max_distance: 2.0, ..MatchOptions::default() },
        ] {
            let fast = match_features(&a, &b, &options);
            assert_eq!(fast, naive(&a, &b, &options));
            assert!(fast.len() >= 250, "{}", fast.len());
        }
    }

    #[test]
    fn recovers_known_correspondences_and_rejects_ambiguous() {
        let mut rng = Pcg32::new(5);
        let base: Vec<Vec<f32>> = (0..300).map(|_| unit(&mut rng)).collect();
        let mut b = Vec::new();
        let mut truth = Vec::new();
        for (k, v) in base.iter().enumerate() {
            if k % 3 == 0 {
                continue; // no counterpart
            }
            truth.push((k as u32, b.len() as u32));
            b.push(perturbed(v, 0.02, &mut rng));
            if k % 3 == 1 {
                // An ambiguous twin: two near-identical candidates fail the ratio test.
                let twin = perturbed(&b[b.len() - 1], 0.005, &mut rng);
                b.push(twin);
                truth.pop();
            }
        }
        b.extend((0..500).map(|_| unit(&mut rng)));
        let (a, b) = (features(base, |_| 1.0), features(b, |_| 1.0));
        let matches = match_features(&a, &b, &MatchOptions::default());
        assert_eq!(matches, truth);
        assert_eq!(matches.len(), 100);
    }

    #[test]
    fn empty_and_single_feature_sets() {
        let mut rng = Pcg32::new(1);
        let v = unit(&mut rng);
        let one = features(vec![v.clone()], |_| 1.0);
        assert!(match_features(&Features::default(), &one, &MatchOptions::default()).is_empty());
        // A single candidate has no second best: the ratio test passes on distance alone.
        let copy = features(vec![v], |_| 1.0);
        assert_eq!(match_features(&one, &copy, &MatchOptions::default()), vec![(0, 0)]);
    }

    #[test]
    fn large_collections_use_sequential_and_retrieval_pairs() {
        let mut rng = Pcg32::new(9);
        let n = 160;
        // A walk: photo k sees landmarks 40k .. 40k + 80 (overlap with k ± 1), plus its own
        // noise; photo 150 revisits photo 10's landmarks (a loop closure).
        let landmarks: Vec<Vec<f32>> = (0..40 * n + 80).map(|_| unit(&mut rng)).collect();
        let photos: Vec<Features> = (0..n)
            .map(|k| {
                let seen = if k == 150 { 400..480 } else { 40 * k..40 * k + 80 };
                let mut d: Vec<Vec<f32>> = seen.map(|l| perturbed(&landmarks[l], 0.02, &mut rng)).collect();
                d.extend((0..120).map(|_| unit(&mut rng)));
                // Scales cycle, so the retrieval subset holds a mix of landmarks and noise.
                features(d, |k| 1.0 + (k % 7) as f32)
            })
            .collect();
        let selection = PairSelection { retrieval_descriptors: 100, ..PairSelection::default() };
        let pairs = select_pairs_with(&photos, &selection);
        assert!(pairs.windows(2).all(|w| w[0] < w[1]));
        assert!(pairs.iter().all(|&(i, j)| i < j && j < n));
        assert!(pairs.contains(&(10, 150)), "loop closure found");
        assert!(pairs.contains(&(3, 4)) && pairs.contains(&(3, 13)), "sequential neighbours");
        assert!(pairs.len() < n * (n - 1) / 4, "{} pairs", pairs.len());
        assert_eq!(select_pairs(&photos[..20], MAX_EXHAUSTIVE_PHOTOS).len(), 190);
        let matched =
            match_pairs(&photos, &[(10, 150), (10, 11), (10, 100)], &MatchOptions::default(), &|_, _| {}, &|| false)
                .unwrap();
        assert!(matched[0].1.len() >= 60 && matched[1].1.len() >= 30, "{} {}", matched[0].1.len(), matched[1].1.len());
        assert!(matched[2].1.is_empty());
    }
}
