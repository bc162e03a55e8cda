//! Screening between feature extraction and matching: photos that cannot be decoded, that show
//! no texture or that are identical copies of another photo are set aside with a reason the user
//! acts on; after mapping, the words for why a photo got no pose; and the match graph's
//! components.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;

use crate::SfmError;
use crate::report::PhotoFate;
use kiln_core::photos::{PhotoInfo, PhotoSet, RejectedPhoto};
use kiln_vision::features::Features;
use kiln_vision::model::Reconstruction;
use kiln_vision::verify::TwoViewGeometry;

use kiln_core::photos::MIN_PHOTOS;

/// Why a photo without any verified pair has no pose.
pub const TOO_FEW_MATCHES: &str =
    "too few matches with any other photo (blurred, no texture, or no overlap with the others?)";

/// Why a photo whose verified pairs all lie outside the model has no pose.
pub const ONLY_MATCHED_OUTSIDE: &str = "matched only photos that are not in the model (a different object or scene?)";

/// Why a photo was set aside before matching.
#[derive(Clone, Debug, PartialEq)]
pub enum SetAside {
    /// Listing or decoding failed; the words come from the photo module or the decoder.
    Unreadable(String),
    /// Fewer keypoints than [`super::PosesOptions::min_features`].
    NoTexture { features: usize },
    /// The same pixels as the photo named.
    Duplicate { of: String },
}

impl SetAside {
    pub fn reason(&self) -> String {
        match self {
            Self::Unreadable(reason) => reason.clone(),
            Self::NoTexture { features } => {
                format!("no texture: only {features} features found (a plain, blurred or over-exposed photo?)")
            }
            Self::Duplicate { of } => {
                format!("identical to {of} (a copy gives no parallax: take each photo from a new position)")
            }
        }
    }
}

/// The photos that go on to matching, and what happened to every input photo.
pub struct Screened {
    /// Kept photos only; `rejected` holds every photo set aside.
    pub photos: PhotoSet,
    /// Features of `photos.photos`, same order.
    pub features: Vec<Features>,
    /// Every input photo by name, sorted, with `Ok(index into photos)` or why it was set aside.
    entries: Vec<(String, Result<usize, SetAside>)>,
}

/// A photo whose pixels cannot be decoded becomes a rejection with the reason; other errors
/// (Kiln's faults, I/O on a readable file) stop the run.
pub fn decode_failure_as_rejection(result: Result<Features, SfmError>) -> Result<Result<Features, String>, SfmError> {
    match result {
        Ok(features) => Ok(Ok(features)),
        Err(SfmError::Decode { source, .. }) => Ok(Err(format!("could not decode: {source}"))),
        Err(SfmError::BadPhoto { problem, .. }) => Ok(Err(problem)),
        Err(other) => Err(other),
    }
}

/// Sets aside unreadable, textureless and duplicate photos. `features[i]` belongs to
/// `listed.photos[i]`.
pub fn screen(listed: PhotoSet, features: Vec<Result<Features, String>>, min_features: usize) -> Screened {
    let PhotoSet { input, photos: listed_photos, groups, mut rejected } = listed;
    let mut entries: Vec<(String, Result<usize, SetAside>)> =
        rejected.iter().map(|r| (name_in(&input, &r.path), Err(SetAside::Unreadable(r.reason.clone())))).collect();
    let mut photos: Vec<PhotoInfo> = Vec::new();
    let mut kept_features = Vec::new();
    let mut first_with_hash: HashMap<u64, usize> = HashMap::new();
    for (photo, features) in listed_photos.into_iter().zip(features) {
        let verdict = match features {
            Err(reason) => Err(SetAside::Unreadable(reason)),
            Ok(f) if f.len() < min_features => Err(SetAside::NoTexture { features: f.len() }),
            Ok(f) => {
                let hash = features_hash(&f);
                match first_with_hash.get(&hash).filter(|&&kept| kept_features.get(kept) == Some(&f)) {
                    Some(&kept) => {
                        Err(SetAside::Duplicate { of: photos.get(kept).map_or_else(String::new, |p| p.name.clone()) })
                    }
                    None => {
                        first_with_hash.insert(hash, photos.len());
                        kept_features.push(f);
                        photos.push(photo.clone());
                        Ok(photos.len() - 1)
                    }
                }
            }
        };
        if let Err(set_aside) = &verdict {
            tracing::warn!("{}: {}", set_aside.reason(), photo.path.display());
            rejected.push(RejectedPhoto { path: photo.path.clone(), reason: set_aside.reason() });
        }
        entries.push((photo.name, verdict));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Screened { photos: PhotoSet { input, photos, groups, rejected }, features: kept_features, entries }
}

fn name_in(input: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(input).unwrap_or(path);
    relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// A hash of every keypoint and descriptor bit: photos with identical pixels give identical
/// features, and equal hashes are confirmed by comparing the features themselves.
fn features_hash(features: &Features) -> u64 {
    let mut hasher = DefaultHasher::new();
    for keypoint in &features.keypoints {
        [keypoint.x, keypoint.y, keypoint.scale, keypoint.orientation].map(f32::to_bits).hash(&mut hasher);
    }
    for value in &features.descriptors {
        value.to_bits().hash(&mut hasher);
    }
    hasher.finish()
}

impl Screened {
    /// [`SfmError::Unusable`] when fewer than [`MIN_PHOTOS`] photos are left, saying what
    /// happened to the others.
    pub fn require_enough(&self, input: &Path) -> Result<(), SfmError> {
        let kept = self.photos.photos.len();
        if kept >= MIN_PHOTOS {
            return Ok(());
        }
        let count = |wanted: fn(&SetAside) -> bool| {
            self.entries.iter().filter(|(_, v)| v.as_ref().err().is_some_and(wanted)).count()
        };
        let mut why = Vec::new();
        let duplicates = count(|s| matches!(s, SetAside::Duplicate { .. }));
        if duplicates > 0 {
            why.push(format!(
                "{duplicates} are identical copies of another photo (no parallax: the camera must move between photos)"
            ));
        }
        let textureless = count(|s| matches!(s, SetAside::NoTexture { .. }));
        if textureless > 0 {
            why.push(format!(
                "{textureless} show no texture (no features found: plain, blurred or over-exposed surfaces)"
            ));
        }
        let unreadable = count(|s| matches!(s, SetAside::Unreadable(_)));
        if unreadable > 0 {
            why.push(format!("{unreadable} could not be read or decoded"));
        }
        Err(SfmError::Unusable {
            input: input.to_path_buf(),
            problem: format!(
                "only {kept} of {} photos are usable and at least {MIN_PHOTOS} distinct, textured photos are needed: {}",
                self.entries.len(),
                why.join("; ")
            ),
        })
    }

    /// Notes for the report about the input as a whole.
    pub fn notes(&self) -> Vec<String> {
        let rotated = self.photos.photos.iter().filter(|p| p.exif.orientation > 1).count();
        if rotated == 0 {
            return Vec::new();
        }
        vec![format!(
            "{rotated} photo(s) carry an EXIF rotation: poses, intrinsics and keypoints are in the photo as \
             displayed (rotation applied), as Kiln loads it; COLMAP itself ignores EXIF rotation, so \
             its tools see those photos' stored pixels turned against the model"
        )]
    }

    /// Every input photo's fate after mapping. A kept photo without a pose gets `mapper_reason`'s
    /// words for it, else the match graph's explanation.
    pub fn fates(
        &self,
        rec: &Reconstruction,
        geometries: &[TwoViewGeometry],
        mapper_reason: &BTreeMap<usize, String>,
    ) -> Vec<(String, PhotoFate)> {
        let mut partners: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for g in geometries {
            partners.entry(g.i).or_default().insert(g.j);
            partners.entry(g.j).or_default().insert(g.i);
        }
        self.entries
            .iter()
            .map(|(name, verdict)| {
                let fate = match verdict {
                    Err(set_aside) => PhotoFate::Rejected { reason: set_aside.reason() },
                    Ok(index) if rec.is_registered(*index) => PhotoFate::Used { index: *index, dropped: None },
                    Ok(index) => {
                        let dropped = mapper_reason.get(index).cloned().unwrap_or_else(|| match partners.get(index) {
                            None => TOO_FEW_MATCHES.to_string(),
                            Some(others) if !others.iter().any(|&o| rec.is_registered(o)) => {
                                ONLY_MATCHED_OUTSIDE.to_string()
                            }
                            Some(_) => {
                                "matched photos in the model, but its pose could not be estimated reliably".to_string()
                            }
                        });
                        PhotoFate::Used { index: *index, dropped: Some(dropped) }
                    }
                };
                (name.clone(), fate)
            })
            .collect()
    }
}

/// Connected components of the verified-pair graph with at least two photos, largest first (ties
/// by first photo). A photo with no verified pair is reported on its own, not as a component.
pub fn components(photos: usize, geometries: &[TwoViewGeometry]) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..photos).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for g in geometries.iter().filter(|g| g.i < photos && g.j < photos) {
        let (a, b) = (root(&mut parent, g.i), root(&mut parent, g.j));
        parent[a.max(b)] = a.min(b);
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..photos {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let mut components: Vec<Vec<usize>> = groups.into_values().filter(|c| c.len() >= 2).collect();
    components.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    components
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::photos::CameraGroup;
    use kiln_vision::features::Keypoint;
    use kiln_vision::model::RadialCamera;
    use kiln_vision::verify::TwoViewConfig;

    fn features(n: usize, seed: f32) -> Features {
        Features {
            keypoints: (0..n).map(|i| Keypoint { x: i as f32 + seed, y: 2.0, scale: 1.5, orientation: 0.1 }).collect(),
            descriptors: vec![seed; n * kiln_vision::features::DESCRIPTOR_LEN],
            colors: vec![[0; 3]; n],
        }
    }

    fn listed(names: &[&str]) -> PhotoSet {
        let photos = names
            .iter()
            .map(|n| PhotoInfo {
                path: format!("in/{n}").into(),
                name: n.to_string(),
                width: 10,
                height: 10,
                exif: Default::default(),
                group: 0,
            })
            .collect();
        let groups =
            vec![CameraGroup { key: "c".into(), prior: RadialCamera::pinhole(10, 10, 12.0), focal_from_exif: false }];
        PhotoSet { input: "in".into(), photos, groups, rejected: Vec::new() }
    }

    fn pair(i: usize, j: usize) -> TwoViewGeometry {
        TwoViewGeometry {
            i,
            j,
            config: TwoViewConfig::Calibrated,
            inliers: Vec::new(),
            relative_pose: None,
            essential: None,
            fundamental: None,
            homography: None,
            median_triangulation_angle_deg: 5.0,
        }
    }

    #[test]
    fn duplicates_textureless_and_undecodable_photos_are_set_aside() {
        let screened = screen(
            listed(&["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]),
            vec![
                Ok(features(40, 0.0)),
                Ok(features(40, 0.0)),
                Ok(features(3, 1.0)),
                Err("could not decode: eof".into()),
                Ok(features(40, 2.0)),
            ],
            24,
        );
        let kept: Vec<&str> = screened.photos.photos.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(kept, ["a.jpg", "e.jpg"]);
        assert_eq!(screened.features.len(), 2);
        let reasons: Vec<String> = screened.photos.rejected.iter().map(|r| r.reason.clone()).collect();
        assert!(reasons[0].starts_with("identical to a.jpg"), "{reasons:?}");
        assert!(reasons[1].contains("no texture: only 3 features"), "{reasons:?}");
        assert!(reasons[2].starts_with("could not decode"), "{reasons:?}");
        let error = screened.require_enough(Path::new("in")).unwrap_err().to_string();
        assert!(error.contains("only 2 of 5 photos are usable"), "{error}");
        assert!(error.contains("1 are identical copies"), "{error}");
        assert!(error.contains("1 show no texture"), "{error}");
    }

    #[test]
    fn unregistered_photos_are_explained_from_the_match_graph() {
        let screened =
            screen(listed(&["a", "b", "c", "d", "e"]), (0..5).map(|s| Ok(features(30, s as f32))).collect(), 24);
        let rec = Reconstruction::new(
            vec![RadialCamera::pinhole(10, 10, 12.0)],
            (0..5)
                .map(|i| kiln_vision::model::ImageState {
                    camera: 0,
                    camera_from_world: (i < 2).then_some(kiln_vision::model::RigidCv::IDENTITY),
                    keypoints: Vec::new(),
                    point_of_keypoint: Vec::new(),
                })
                .collect(),
        );
        // a–b registered; c matched only d; e matched a but failed (the mapper says why); d has
        // no mapper reason and only matched c.
        let geometries = [pair(0, 1), pair(2, 3), pair(0, 4)];
        let mapper = BTreeMap::from([(4, "too few 2D–3D correspondences".to_string())]);
        let fates = screened.fates(&rec, &geometries, &mapper);
        let dropped = |i: usize| match &fates[i].1 {
            PhotoFate::Used { dropped, .. } => dropped.clone(),
            PhotoFate::Rejected { reason } => Some(reason.clone()),
        };
        assert_eq!(dropped(0), None);
        assert!(dropped(2).unwrap().contains("matched only photos that are not in the model"));
        assert_eq!(dropped(4).as_deref(), Some("too few 2D–3D correspondences"));
        assert_eq!(dropped(3).as_deref(), Some(ONLY_MATCHED_OUTSIDE));
        assert_eq!(components(5, &geometries), vec![vec![0, 1, 4], vec![2, 3]]);
        assert_eq!(components(5, &[pair(0, 1)]), vec![vec![0, 1]]);
    }
}
