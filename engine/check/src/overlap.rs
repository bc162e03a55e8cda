//! The quick match pass of the capture check and the overlap graph it gives: which photos share
//! verified features, the graph's connected groups, and whether the photos close a loop around
//! the object.
//!
//! It reuses the SfM stage's pieces ([`kiln_vision::features::sift`], pair selection, matching and
//! two-view verification) at a small image size and a capped feature count, so it costs a small
//! fraction of pose estimation while asking the same question: which photos can be tied together.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use glam::{DMat3, DVec2, DVec3};

use kiln_vision::features::{Features, Keypoint, SiftOptions};
use kiln_vision::matching::{MatchOptions, PairSelection, match_pairs, select_pairs_with};
use kiln_vision::model::RadialCamera;
use kiln_vision::verify::{VerifyOptions, verify_pairs};

/// Settings of the quick match pass.
#[derive(Clone, Debug, PartialEq)]
pub struct QuickMatchOptions {
    /// SIFT settings; `max_image_side` is the quick pass's image size.
    pub sift: SiftOptions,
    pub pairs: PairSelection,
    pub matching: MatchOptions,
    pub verify: VerifyOptions,
}

/// Longer side of the quick pass's images. Large enough that an object filling a third of the
/// frame still gives a few hundred keypoints; small enough that SIFT takes tens of milliseconds.
const QUICK_IMAGE_SIDE: u32 = 640;

/// Keypoints per photo in the quick pass: a pair of overlapping photos shares tens of verified
/// matches out of a thousand, well above the 15 inliers verification needs.
const QUICK_MAX_FEATURES: usize = 1024;

/// Up to this many photos every pair is matched (40 photos: 780 pairs).
const QUICK_MAX_EXHAUSTIVE: usize = 40;

/// Beyond [`QUICK_MAX_EXHAUSTIVE`]: each photo with its next photos in name order (a walk around
/// the object)…
const QUICK_SEQUENTIAL_OVERLAP: usize = 6;

/// …and with its best retrieved partners (loop closures, revisits).
const QUICK_RETRIEVED_PER_PHOTO: usize = 8;

/// Largest-scale descriptors per photo compared in retrieval.
const QUICK_RETRIEVAL_DESCRIPTORS: usize = 128;

/// RANSAC iterations per pair: with ≥ 25 % inliers, 1000 iterations of the 5- and 8-point
/// solvers find the model with near certainty; pairs with fewer inliers hardly overlap.
const QUICK_MAX_ITERATIONS: usize = 1000;

impl Default for QuickMatchOptions {
    fn default() -> Self {
        Self {
            sift: SiftOptions {
                max_features: QUICK_MAX_FEATURES,
                max_image_side: QUICK_IMAGE_SIDE,
                first_octave: 0,
                ..SiftOptions::default()
            },
            pairs: PairSelection {
                max_exhaustive: QUICK_MAX_EXHAUSTIVE,
                sequential_overlap: QUICK_SEQUENTIAL_OVERLAP,
                retrieved_per_photo: QUICK_RETRIEVED_PER_PHOTO,
                retrieval_descriptors: QUICK_RETRIEVAL_DESCRIPTORS,
            },
            matching: MatchOptions::default(),
            verify: VerifyOptions { max_iterations: QUICK_MAX_ITERATIONS, ..VerifyOptions::default() },
        }
    }
}

/// Which photos overlap: an edge for every verified pair.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OverlapGraph {
    /// Verified partners of each photo.
    pub neighbours: Vec<BTreeSet<usize>>,
    /// Pairs matched.
    pub pairs_matched: usize,
    /// Per verified pair `(i, j)`, `i < j`: median displacement of its inlier matches over the
    /// image diagonal (near 0 for two shots from the same spot).
    pub flow: BTreeMap<(usize, usize), f64>,
    /// Per verified pair `(i, j)`, `i < j`, with a relative pose: the rotation
    /// `camera_j_from_camera_i` (OpenCV axes).
    pub rotations: BTreeMap<(usize, usize), DMat3>,
    /// Per verified pair `(i, j)`, `i < j`, with a fundamental matrix: what self-calibration of
    /// the focal length needs ([`super::calibrate`]).
    pub epipolar: BTreeMap<(usize, usize), EpipolarPair>,
    /// Per photo taking part: its quick-pass camera (the focal length prior, in quick-pass pixels).
    pub cameras: BTreeMap<usize, RadialCamera>,
}

/// A verified pair's epipolar geometry in quick-pass pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct EpipolarPair {
    /// `x_jᵀ F x_i = 0` for pixels `x_i` of photo `i` and `x_j` of photo `j`.
    pub fundamental: DMat3,
    /// The pair's inlier matches as pixel pairs `(x_i, x_j)`.
    pub inliers: Vec<(DVec2, DVec2)>,
}

impl OverlapGraph {
    /// Matches and verifies the pairs of `features` (keypoints in the pixels of the images the
    /// features came from; `cameras[i]` in the same pixels). `progress(done, total)` as pairs
    /// finish, matching then verification.
    pub fn build(
        features: &[Features],
        cameras: &[RadialCamera],
        options: &QuickMatchOptions,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Self {
        let pairs = select_pairs_with(features, &options.pairs);
        let total = 2 * pairs.len();
        let never = || false;
        let matches = match_pairs(features, &pairs, &options.matching, &|done, _| progress(done, total), &never)
            .unwrap_or_default();
        let offset = pairs.len();
        let verified = verify_pairs(
            features,
            cameras,
            &matches,
            &options.verify,
            &|done, _| progress(offset + done, total),
            &never,
        )
        .unwrap_or_default();
        let mut graph = Self::from_edges(features.len(), verified.iter().map(|g| (g.i, g.j)));
        graph.pairs_matched = pairs.len();
        graph.cameras = cameras.iter().copied().enumerate().collect();
        for g in &verified {
            if let Some(pose) = &g.relative_pose {
                graph.rotations.insert((g.i, g.j), pose.rotation);
            }
            let (Some(a), Some(b), Some(camera)) = (features.get(g.i), features.get(g.j), cameras.get(g.i)) else {
                continue;
            };
            if let Some(fundamental) = g.fundamental {
                let pixel = |k: &Keypoint| DVec2::new(f64::from(k.x), f64::from(k.y));
                let inliers = g
                    .inliers
                    .iter()
                    .filter_map(|&(ki, kj)| {
                        Some((pixel(a.keypoints.get(ki as usize)?), pixel(b.keypoints.get(kj as usize)?)))
                    })
                    .collect();
                graph.epipolar.insert((g.i, g.j), EpipolarPair { fundamental, inliers });
            }
            let diagonal = f64::from(camera.width).hypot(f64::from(camera.height));
            let mut moves: Vec<f64> = g
                .inliers
                .iter()
                .filter_map(|&(ki, kj)| Some((a.keypoints.get(ki as usize)?, b.keypoints.get(kj as usize)?)))
                .map(|(p, q)| f64::from(p.x - q.x).hypot(f64::from(p.y - q.y)) / diagonal)
                .collect();
            if !moves.is_empty() {
                let mid = moves.len() / 2;
                graph.flow.insert((g.i, g.j), *moves.select_nth_unstable_by(mid, f64::total_cmp).1);
            }
        }
        graph
    }

    /// A graph of `photos` nodes with the given edges (pairs naming a missing photo are ignored).
    pub fn from_edges(photos: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut neighbours = vec![BTreeSet::new(); photos];
        for (i, j) in edges {
            if i != j && i < photos && j < photos {
                neighbours[i].insert(j);
                neighbours[j].insert(i);
            }
        }
        Self { neighbours, ..Self::default() }
    }

    /// Verified pairs.
    pub fn overlapping_pairs(&self) -> usize {
        self.neighbours.iter().map(BTreeSet::len).sum::<usize>() / 2
    }

    /// Connected groups of at least two photos, largest first (ties by first photo); photos
    /// without partners are in none.
    pub fn components(&self) -> Vec<Vec<usize>> {
        components_without(&self.neighbours, &BTreeSet::new())
    }
}

/// Connected groups (≥ 2 photos) of the graph with the `removed` photos taken out, largest first.
fn components_without(neighbours: &[BTreeSet<usize>], removed: &BTreeSet<usize>) -> Vec<Vec<usize>> {
    let mut seen = vec![false; neighbours.len()];
    let mut groups = Vec::new();
    for start in 0..neighbours.len() {
        if seen[start] || removed.contains(&start) {
            continue;
        }
        seen[start] = true;
        let mut group = vec![start];
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for &next in &neighbours[node] {
                if !seen[next] && !removed.contains(&next) {
                    seen[next] = true;
                    group.push(next);
                    queue.push_back(next);
                }
            }
        }
        if group.len() >= 2 {
            group.sort_unstable();
            groups.push(group);
        }
    }
    groups.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    groups
}

/// Fewest photos that can go around an object with overlap: one every 90° at most, and four
/// views of a loop are the fewest whose neighbourhoods can leave a connected remainder.
const MIN_LOOP_PHOTOS: usize = 4;

/// Largest fraction of a group's photos that may fail the ring test of [`loop_closes`] while the
/// group still counts as a loop: a weak spot or two in a ring is still a ring, while in an open
/// chain most photos (all but those near its ends) split it.
const MAX_SPLITTING_FRACTION: f64 = 0.1;

/// Whether the photos of `component` close a loop (a ring around the object, or a denser
/// covering) rather than form an open chain.
///
/// The ring test: take a photo and every photo overlapping it out of the group. Around a closed
/// loop the remaining photos still form one group (the rest of the ring); along an open chain
/// they fall into two (the parts before and after it). A photo that overlaps (nearly) all the
/// others leaves nothing: the views span a narrow arc, no loop. The group is a loop when at most
/// [`MAX_SPLITTING_FRACTION`] of its photos fail to leave exactly one group.
pub fn loop_closes(graph: &OverlapGraph, component: &[usize]) -> bool {
    if component.len() < MIN_LOOP_PHOTOS {
        return false;
    }
    let members: BTreeSet<usize> = component.iter().copied().collect();
    let outside: BTreeSet<usize> = (0..graph.neighbours.len()).filter(|i| !members.contains(i)).collect();
    let splitting = component
        .iter()
        .filter(|&&photo| {
            let mut removed = outside.clone();
            removed.insert(photo);
            removed.extend(graph.neighbours[photo].iter().copied());
            components_without(&graph.neighbours, &removed).len() != 1
        })
        .count();
    (splitting as f64) <= MAX_SPLITTING_FRACTION * component.len() as f64
}

/// The widest range of directions around the object that no photo looks from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CoverageGap {
    /// Width of the gap in degrees of azimuth around the photos' mean up direction.
    pub degrees: f64,
    /// The photos on either side of the gap.
    pub between: (usize, usize),
}

/// A view looking steeper than this (|horizontal part| of the unit viewing direction below it,
/// about 75° down or up) says little about which side of the object it sees.
const MIN_HORIZONTAL_VIEW: f64 = 0.25;

/// The photos' image-up directions must agree this well (length of their mean unit vector) for
/// a common "up" around which azimuths are measured: upright photos agree to ~1.
const MIN_UP_AGREEMENT: f64 = 0.5;

/// The widest gap in the azimuths the photos of `component` look from.
///
/// Rotations of the verified pairs are chained along a maximum spanning tree from the first photo
/// (`camera_j_from_root = camera_j_from_camera_i · camera_i_from_root`), giving every photo's
/// viewing direction (+Z) and image-up direction (−Y) in the first camera's frame. Photos are
/// taken upright, so the mean image-up is the object's vertical (tilted a few degrees towards the
/// side photographed when the views look down on part of a ring); the viewing directions'
/// azimuths around it, sorted on the circle, leave gaps, and the widest is the side of the object
/// least covered. `None` when fewer than [`MIN_LOOP_PHOTOS`] photos get a usable azimuth or the
/// photos share no common up (cameras rolled every way).
pub fn coverage_gap(graph: &OverlapGraph, component: &[usize]) -> Option<CoverageGap> {
    let camera_from_root = chain_rotations(graph, *component.first()?);
    let root_from_camera: Vec<(usize, DMat3)> = camera_from_root.iter().map(|(&k, r)| (k, r.transpose())).collect();
    let up_sum: DVec3 = root_from_camera.iter().map(|(_, r)| *r * DVec3::NEG_Y).sum();
    if up_sum.length() < MIN_UP_AGREEMENT * root_from_camera.len() as f64 {
        return None;
    }
    let up = up_sum.normalize();
    let east = up.any_orthonormal_vector();
    let north = up.cross(east);
    let mut azimuths: Vec<(f64, usize)> = root_from_camera
        .iter()
        .filter_map(|(k, r)| {
            let view = *r * DVec3::Z;
            let horizontal = view - view.dot(up) * up;
            (horizontal.length() >= MIN_HORIZONTAL_VIEW)
                .then(|| (horizontal.dot(north).atan2(horizontal.dot(east)).to_degrees(), *k))
        })
        .collect();
    if azimuths.len() < MIN_LOOP_PHOTOS {
        return None;
    }
    azimuths.sort_by(|a, b| a.0.total_cmp(&b.0));
    let last = azimuths.len() - 1;
    let wrap =
        CoverageGap { degrees: azimuths[0].0 + 360.0 - azimuths[last].0, between: (azimuths[last].1, azimuths[0].1) };
    let widest = azimuths
        .windows(2)
        .map(|w| CoverageGap { degrees: w[1].0 - w[0].0, between: (w[0].1, w[1].1) })
        .fold(wrap, |widest, gap| if gap.degrees > widest.degrees { gap } else { widest });
    Some(widest)
}

/// `camera_k_from_root` for every photo reachable from `root` over pairs with a rotation, chained
/// along a maximum spanning tree of the pairs weighted by their inlier counts (Prim's algorithm):
/// well-matched pairs give accurate rotations (within 0.4° median on fox at ≥ 100 inliers at the
/// quick pass's size) while weakly matched ones can be off by tens of degrees, and one bad pair
/// near the root of a breadth-first tree would turn every photo beyond it.
fn chain_rotations(graph: &OverlapGraph, root: usize) -> BTreeMap<usize, DMat3> {
    let mut known = BTreeMap::from([(root, DMat3::IDENTITY)]);
    let mut frontier = BinaryHeap::new();
    let push_edges = |frontier: &mut BinaryHeap<(usize, usize, usize)>, i: usize| {
        for &j in graph.neighbours.get(i).into_iter().flatten() {
            let weight = graph.epipolar.get(&(i.min(j), i.max(j))).map_or(0, |p| p.inliers.len());
            frontier.push((weight, i, j));
        }
    };
    push_edges(&mut frontier, root);
    while let Some((_, i, j)) = frontier.pop() {
        let Some(&camera_i_from_root) = known.get(&i) else { continue };
        if known.contains_key(&j) {
            continue;
        }
        let j_from_i = match (graph.rotations.get(&(i, j)), graph.rotations.get(&(j, i))) {
            (Some(j_from_i), _) => *j_from_i,
            (None, Some(i_from_j)) => i_from_j.transpose(),
            (None, None) => continue,
        };
        known.insert(j, j_from_i * camera_i_from_root);
        push_edges(&mut frontier, j);
    }
    known
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_vision::model::RigidCv;

    /// `camera_from_world` of an upright camera at azimuth `degrees` on a horizontal ring around
    /// the origin (world +Z up), looking at the origin (OpenCV axes: +Y down).
    fn ring_camera(degrees: f64) -> DMat3 {
        let position = DVec3::new(degrees.to_radians().cos(), degrees.to_radians().sin(), 0.3);
        RigidCv::look_at(position, DVec3::ZERO, DVec3::Z).rotation
    }

    /// Cameras at `azimuths`, each verified with its next two, with exact relative rotations.
    fn posed_ring(azimuths: &[f64], closed: bool) -> OverlapGraph {
        let n = azimuths.len();
        let pairs: Vec<(usize, usize)> = (0..n)
            .flat_map(|i| [(i, i + 1), (i, i + 2)])
            .filter_map(|(i, j)| if j < n { Some((i, j)) } else { closed.then_some((j % n, i)) })
            .collect();
        let mut graph = OverlapGraph::from_edges(n, pairs.iter().copied());
        for &(i, j) in &pairs {
            let (i, j) = (i.min(j), i.max(j));
            graph.rotations.insert((i, j), ring_camera(azimuths[j]) * ring_camera(azimuths[i]).transpose());
        }
        graph
    }

    #[test]
    fn coverage_gap_finds_the_side_no_photo_looks_from() {
        let full: Vec<f64> = (0..24).map(|k| f64::from(k) * 15.0).collect();
        let gap = coverage_gap(&posed_ring(&full, true), &(0..24).collect::<Vec<_>>()).unwrap();
        assert!((gap.degrees - 15.0).abs() < 1e-6, "{gap:?}");
        // Half a ring: 0°–180°, the other half unseen. The views look 17° down, so the mean
        // image-up of half a ring tilts towards the side photographed and the azimuths stretch
        // a little (186° measured).
        let half: Vec<f64> = (0..13).map(|k| f64::from(k) * 15.0).collect();
        let gap = coverage_gap(&posed_ring(&half, false), &(0..13).collect::<Vec<_>>()).unwrap();
        assert!((gap.degrees - 180.0).abs() < 10.0, "{gap:?}");
        let (a, b) = gap.between;
        assert_eq!((a.min(b), a.max(b)), (0, 12), "the ends of the half ring");
    }

    /// `n` photos in a ring, each overlapping its `reach` nearest on either side; `closed` links
    /// the ends.
    fn ring(n: usize, reach: usize, closed: bool) -> OverlapGraph {
        let edges = (0..n)
            .flat_map(|i| (1..=reach).map(move |d| (i, i + d)))
            .filter_map(|(i, j)| if j < n { Some((i, j)) } else { closed.then_some((i, j % n)) });
        OverlapGraph::from_edges(n, edges)
    }

    #[test]
    fn closed_rings_are_loops_and_open_chains_are_not() {
        for (n, reach) in [(12, 1), (40, 3), (80, 8)] {
            let all: Vec<usize> = (0..n).collect();
            assert!(loop_closes(&ring(n, reach, true), &all), "closed ring of {n}, reach {reach}");
            assert!(!loop_closes(&ring(n, reach, false), &all), "open chain of {n}, reach {reach}");
        }
        // Every photo overlapping every other: a narrow arc of views (SIFT does not match across
        // opposite sides), not a loop.
        let full = OverlapGraph::from_edges(11, (0..11).flat_map(|i| (i + 1..11).map(move |j| (i, j))));
        assert!(!loop_closes(&full, &(0..11).collect::<Vec<_>>()));
        assert!(!loop_closes(&ring(3, 1, true), &[0, 1, 2]));
    }

    #[test]
    fn components_split_and_leave_isolated_photos_out() {
        let graph = OverlapGraph::from_edges(7, [(0, 1), (1, 2), (4, 5), (9, 1)]);
        assert_eq!(graph.components(), vec![vec![0, 1, 2], vec![4, 5]]);
        assert_eq!(graph.overlapping_pairs(), 3);
        assert!(graph.neighbours[3].is_empty() && graph.neighbours[6].is_empty());
    }
}
