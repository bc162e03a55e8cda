//! Feature tracks: the connected components of the verified inlier matches (union–find over
//! every photo keypoint). A track may never hold two keypoints of the same photo: matches are
//! joined pair by pair, most inliers first, and a match that would make a track inconsistent
//! (some match in its chain is wrong) is rejected instead of poisoning the whole track.

use kiln_vision::features::Features;
use kiln_vision::model::Observation;
use kiln_vision::verify::TwoViewGeometry;

/// Marks a keypoint that belongs to no track in the flat keypoint-to-track table.
const NO_TRACK: u32 = u32::MAX;

/// Every consistent track (two or more photos) and the keypoint-to-track lookup.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tracks {
    /// Observations of each track, sorted by photo.
    pub tracks: Vec<Vec<Observation>>,
    /// Matches rejected because they would put two keypoints of one photo into a track.
    pub inconsistent: usize,
    /// Matches ignored because they named a photo or keypoint that does not exist.
    pub invalid_matches: usize,
    /// Index of photo `i`'s first keypoint in `track_of`.
    offsets: Vec<usize>,
    track_of: Vec<u32>,
}

impl Tracks {
    /// Builds the tracks of `pairs`' inlier matches over photos with `features`.
    pub fn build(features: &[Features], pairs: &[TwoViewGeometry]) -> Self {
        let mut offsets = Vec::with_capacity(features.len() + 1);
        let mut image_of_node = Vec::new();
        for (image, f) in features.iter().enumerate() {
            offsets.push(image_of_node.len());
            image_of_node.extend(std::iter::repeat_n(image as u32, f.len()));
        }
        offsets.push(image_of_node.len());
        let total = image_of_node.len();
        let mut forest = UnionFind::new(&image_of_node);
        let mut invalid_matches = 0;
        let mut inconsistent = 0;
        let mut order: Vec<&TwoViewGeometry> = pairs.iter().collect();
        order.sort_by_key(|p| std::cmp::Reverse(p.inliers.len()));
        for pair in order {
            let valid_pair = pair.i != pair.j && pair.i < features.len() && pair.j < features.len();
            for &(a, b) in &pair.inliers {
                let in_range =
                    valid_pair && (a as usize) < features[pair.i].len() && (b as usize) < features[pair.j].len();
                if !in_range {
                    invalid_matches += 1;
                } else if !forest.union(offsets[pair.i] + a as usize, offsets[pair.j] + b as usize) {
                    inconsistent += 1;
                }
            }
        }
        let mut tracks =
            Self { offsets, track_of: vec![NO_TRACK; total], invalid_matches, inconsistent, ..Self::default() };
        tracks.collect_components(&mut forest);
        tracks
    }

    fn collect_components(&mut self, forest: &mut UnionFind) {
        let mut members: std::collections::BTreeMap<usize, Vec<Observation>> = std::collections::BTreeMap::new();
        for image in 0..self.offsets.len() - 1 {
            for node in self.offsets[image]..self.offsets[image + 1] {
                let root = forest.find(node);
                if forest.images[root].len() >= 2 {
                    let keypoint = (node - self.offsets[image]) as u32;
                    members.entry(root).or_default().push(Observation { image, keypoint });
                }
            }
        }
        for (_, track) in members {
            let id = self.tracks.len() as u32;
            for o in &track {
                self.track_of[self.offsets[o.image] + o.keypoint as usize] = id;
            }
            self.tracks.push(track);
        }
    }

    /// The track of keypoint `keypoint` of photo `image`, if it is in one.
    pub fn track_of(&self, image: usize, keypoint: u32) -> Option<usize> {
        let start = *self.offsets.get(image)?;
        let end = *self.offsets.get(image + 1)?;
        let node = start + keypoint as usize;
        if node >= end {
            return None;
        }
        let track = self.track_of[node];
        (track != NO_TRACK).then_some(track as usize)
    }

    /// Keypoints of `image` that are in a track, with their track.
    pub fn of_image(&self, image: usize) -> impl Iterator<Item = (u32, usize)> + '_ {
        let (start, end) = match (self.offsets.get(image), self.offsets.get(image + 1)) {
            (Some(&s), Some(&e)) => (s, e),
            _ => (0, 0),
        };
        (start..end)
            .filter(|&n| self.track_of[n] != NO_TRACK)
            .map(move |n| ((n - start) as u32, self.track_of[n] as usize))
    }
}

/// Disjoint sets with union by size and path halving; each root knows its photos (sorted), so
/// that a union that would repeat a photo is refused.
struct UnionFind {
    parent: Vec<usize>,
    images: Vec<Vec<u32>>,
}

impl UnionFind {
    fn new(image_of_node: &[u32]) -> Self {
        Self { parent: (0..image_of_node.len()).collect(), images: image_of_node.iter().map(|&i| vec![i]).collect() }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// Joins the sets of `a` and `b`; false (and nothing joined) when they share a photo.
    fn union(&mut self, a: usize, b: usize) -> bool {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return true;
        }
        if self.images[a].len() < self.images[b].len() {
            std::mem::swap(&mut a, &mut b);
        }
        let small = std::mem::take(&mut self.images[b]);
        if small.iter().any(|i| self.images[a].binary_search(i).is_ok()) {
            self.images[b] = small;
            return false;
        }
        let big = &mut self.images[a];
        big.extend(small);
        big.sort_unstable();
        self.parent[b] = a;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_vision::features::Keypoint;
    use kiln_vision::verify::TwoViewConfig;

    fn features(n: usize) -> Features {
        let keypoint = Keypoint { x: 0.0, y: 0.0, scale: 1.0, orientation: 0.0 };
        Features { keypoints: vec![keypoint; n], descriptors: Vec::new(), colors: vec![[0; 3]; n] }
    }

    fn pair(i: usize, j: usize, inliers: Vec<(u32, u32)>) -> TwoViewGeometry {
        TwoViewGeometry {
            i,
            j,
            config: TwoViewConfig::Calibrated,
            inliers,
            relative_pose: None,
            essential: None,
            fundamental: None,
            homography: None,
            median_triangulation_angle_deg: 0.0,
        }
    }

    #[test]
    fn chains_join_and_inconsistent_matches_are_refused() {
        let f = vec![features(4), features(4), features(4)];
        let pairs = vec![
            pair(0, 1, vec![(0, 0), (1, 1), (2, 2)]),
            pair(1, 2, vec![(0, 3), (1, 1)]),
            // 0:3 – 2:2 is fine; 0:2 – 2:2 would join {0:2, 1:2} with {0:3, 2:2}: photo 0 twice.
            pair(0, 2, vec![(3, 2), (2, 2)]),
            pair(0, 1, vec![(9, 0)]),
        ];
        let tracks = Tracks::build(&f, &pairs);
        assert_eq!(tracks.invalid_matches, 1);
        assert_eq!(tracks.inconsistent, 1);
        assert_eq!(tracks.tracks.len(), 4);
        let t = tracks.track_of(0, 0).unwrap();
        let expected = [(0, 0), (1, 0), (2, 3)].map(|(image, keypoint)| Observation { image, keypoint });
        assert_eq!(tracks.tracks[t], expected);
        assert_eq!(tracks.track_of(2, 3), Some(t));
        assert_ne!(tracks.track_of(0, 2), tracks.track_of(2, 2), "refused union");
        assert_eq!(tracks.track_of(0, 3), tracks.track_of(2, 2));
        assert_eq!(tracks.track_of(5, 0), None);
        assert_eq!(tracks.of_image(1).count(), 3);
        for track in &tracks.tracks {
            assert!(track.windows(2).all(|w| w[0].image < w[1].image), "one keypoint per photo: {track:?}");
        }
    }
}
