//! `poses-report.json`: what the pose estimation did with each photo, in words a photographer acts
//! on, plus the figures an expert checks (intrinsics per camera group, track statistics,
//! reprojection error, match-graph components, time per phase), and the short summary the CLI
//! prints.

use std::collections::BTreeMap;
use std::fmt;

use crate::Phase;
use kiln_core::photos::PhotoSet;
use kiln_vision::model::{RadialCamera, Reconstruction};

/// Longest track length with its own histogram bin; longer tracks share the last bin, so the
/// report stays short on large sets while the informative short lengths stay separate.
const HISTOGRAM_MAX_LENGTH: usize = 20;

/// How many left-out photos the human summary names before summarising the rest.
const SUMMARY_NAMES_SHOWN: usize = 10;

/// The whole report.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PosesReport {
    /// The input folder.
    pub input: String,
    /// Photos with a pose.
    pub registered: usize,
    /// Every photo found in the input, including those that could not be used.
    pub total: usize,
    /// Every photo, in input order.
    pub photos: Vec<PhotoReport>,
    pub camera_groups: Vec<CameraGroupReport>,
    pub tracks: TrackStats,
    /// Mean reprojection error over every observation of every 3D point, in pixels.
    pub mean_reprojection_error_px: f64,
    /// Observations (photo keypoints that see a 3D point) in the model.
    pub observations: usize,
    /// Photo pairs whose matches passed geometric verification.
    pub verified_pairs: usize,
    /// Groups of photos (by name) that matched each other but not the other groups, largest
    /// first; empty when the match graph is connected.
    pub components: Vec<Vec<String>>,
    /// Plain sentences about the input as a whole (the match graph split, EXIF orientation, …).
    pub notes: Vec<String>,
    /// Wall-clock seconds per phase, in the order they ran.
    pub phase_seconds: Vec<PhaseTime>,
    pub total_seconds: f64,
}

/// One photo's fate.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PhotoReport {
    /// Path relative to the input folder (the COLMAP image name).
    pub name: String,
    pub registered: bool,
    /// Why the photo has no pose, in words the user acts on; `None` when registered.
    pub dropped_reason: Option<String>,
    /// Mean reprojection error of this photo's observations in pixels (registered photos).
    pub mean_reprojection_error_px: Option<f64>,
    /// Keypoints of this photo that see a 3D point.
    pub observations: usize,
    /// Index into [`PosesReport::camera_groups`]; `None` for photos that could not be read.
    pub camera_group: Option<usize>,
}

/// One camera group: the EXIF prior and the intrinsics bundle adjustment settled on.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CameraGroupReport {
    pub key: String,
    pub photos: usize,
    pub registered: usize,
    pub prior: RadialCamera,
    pub focal_from_exif: bool,
    /// `None` when no photo of the group was registered.
    pub refined: Option<RadialCamera>,
}

/// Track lengths (photos per 3D point).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrackStats {
    /// Number of 3D points.
    pub points: usize,
    pub mean_length: f64,
    pub median_length: f64,
    /// `(length, points)` for each length present, ascending; the last bin holds every track of
    /// [`HISTOGRAM_MAX_LENGTH`] photos or more.
    pub histogram: Vec<LengthCount>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LengthCount {
    pub length: usize,
    pub points: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PhaseTime {
    pub phase: Phase,
    pub seconds: f64,
}

/// What the pipeline knows about one input photo when the report is built.
#[derive(Clone, Debug, PartialEq)]
pub enum PhotoFate {
    /// Given to the mapper as photo `index` of the [`PhotoSet`]; `dropped` says why it has no
    /// pose when it has none.
    Used { index: usize, dropped: Option<String> },
    /// Never given to the mapper (unreadable, a duplicate, no texture), and why.
    Rejected { reason: String },
}

/// Everything [`PosesReport::build`] needs.
pub struct ReportInputs<'a> {
    /// The photos given to the mapper, indexed like `reconstruction.images`.
    pub photos: &'a PhotoSet,
    pub reconstruction: &'a Reconstruction,
    /// Every input photo by name, in input order, with its fate.
    pub fates: Vec<(String, PhotoFate)>,
    pub verified_pairs: usize,
    /// Components of the match graph as indices into `photos.photos`, largest first.
    pub components: Vec<Vec<usize>>,
    pub notes: Vec<String>,
    pub phase_seconds: Vec<PhaseTime>,
}

impl PosesReport {
    pub fn build(inputs: ReportInputs<'_>) -> Self {
        let rec = inputs.reconstruction;
        let per_image = per_image_errors(rec);
        let photos: Vec<PhotoReport> =
            inputs.fates.iter().map(|(name, fate)| photo_report(name, fate, inputs.photos, rec, &per_image)).collect();
        let (mean_error, observations) = rec.mean_reprojection_error();
        let mut notes = inputs.notes;
        let components: Vec<Vec<String>> = if inputs.components.len() > 1 {
            notes.push(split_sentence(&inputs.components));
            inputs.components.iter().map(|c| c.iter().map(|&i| photo_name(inputs.photos, i)).collect()).collect()
        } else {
            Vec::new()
        };
        let total_seconds = inputs.phase_seconds.iter().map(|p| p.seconds).sum();
        Self {
            input: inputs.photos.input.display().to_string(),
            registered: photos.iter().filter(|p| p.registered).count(),
            total: photos.len(),
            camera_groups: camera_groups(inputs.photos, rec),
            tracks: TrackStats::of(rec),
            mean_reprojection_error_px: mean_error,
            observations,
            verified_pairs: inputs.verified_pairs,
            components,
            notes,
            phase_seconds: inputs.phase_seconds,
            total_seconds,
            photos,
        }
    }

    /// Adds (or extends) the time of `phase`, and the total.
    pub fn add_phase_time(&mut self, phase: Phase, seconds: f64) {
        match self.phase_seconds.iter_mut().find(|p| p.phase == phase) {
            Some(entry) => entry.seconds += seconds,
            None => self.phase_seconds.push(PhaseTime { phase, seconds }),
        }
        self.total_seconds += seconds;
    }

    /// The photos without a pose, with why.
    pub fn left_out(&self) -> impl Iterator<Item = &PhotoReport> {
        self.photos.iter().filter(|p| !p.registered)
    }
}

fn photo_name(photos: &PhotoSet, index: usize) -> String {
    photos.photos.get(index).map_or_else(|| format!("#{index}"), |p| p.name.clone())
}

/// "The photos split into 2 groups …" with each group's size and first names.
fn split_sentence(components: &[Vec<usize>]) -> String {
    let sizes: Vec<String> = components.iter().map(|c| c.len().to_string()).collect();
    format!(
        "The photos split into {} groups that share no matches (of {} photos); the model holds \
         one group only. Photos of different objects, or gaps in the capture, cause this: add \
         photos that bridge the groups, or process each group on its own.",
        components.len(),
        sizes.join(", ")
    )
}

/// Per image: (sum of reprojection errors, observations).
fn per_image_errors(rec: &Reconstruction) -> BTreeMap<usize, (f64, usize)> {
    let mut errors = BTreeMap::new();
    for point in rec.points.values() {
        for &observation in &point.track {
            if let Some(error) = rec.reprojection_error(observation, point.position) {
                let entry = errors.entry(observation.image).or_insert((0.0, 0));
                entry.0 += error;
                entry.1 += 1;
            }
        }
    }
    errors
}

fn photo_report(
    name: &str,
    fate: &PhotoFate,
    photos: &PhotoSet,
    rec: &Reconstruction,
    per_image: &BTreeMap<usize, (f64, usize)>,
) -> PhotoReport {
    match fate {
        PhotoFate::Used { index, dropped } => {
            let registered = rec.is_registered(*index);
            let (sum, count) = per_image.get(index).copied().unwrap_or((0.0, 0));
            let dropped_reason = match (registered, dropped) {
                (true, _) => None,
                (false, Some(reason)) => Some(reason.clone()),
                (false, None) => Some("no pose could be estimated for this photo".into()),
            };
            PhotoReport {
                name: name.to_string(),
                registered,
                dropped_reason,
                mean_reprojection_error_px: (registered && count > 0).then(|| sum / count as f64),
                observations: count,
                camera_group: photos.photos.get(*index).map(|p| p.group),
            }
        }
        PhotoFate::Rejected { reason } => PhotoReport {
            name: name.to_string(),
            registered: false,
            dropped_reason: Some(reason.clone()),
            mean_reprojection_error_px: None,
            observations: 0,
            camera_group: None,
        },
    }
}

fn camera_groups(photos: &PhotoSet, rec: &Reconstruction) -> Vec<CameraGroupReport> {
    photos
        .groups
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let members: Vec<usize> =
                photos.photos.iter().enumerate().filter(|(_, p)| p.group == g).map(|(i, _)| i).collect();
            let registered: Vec<usize> = members.iter().copied().filter(|&i| rec.is_registered(i)).collect();
            let refined = registered
                .first()
                .and_then(|&i| rec.images.get(i))
                .and_then(|image| rec.cameras.get(image.camera))
                .copied();
            CameraGroupReport {
                key: group.key.clone(),
                photos: members.len(),
                registered: registered.len(),
                prior: group.prior,
                focal_from_exif: group.focal_from_exif,
                refined,
            }
        })
        .collect()
}

impl TrackStats {
    pub fn of(rec: &Reconstruction) -> Self {
        let mut lengths: Vec<usize> = rec.points.values().map(|p| p.track.len()).collect();
        if lengths.is_empty() {
            return Self::default();
        }
        lengths.sort_unstable();
        let n = lengths.len();
        let median =
            if n % 2 == 1 { lengths[n / 2] as f64 } else { (lengths[n / 2 - 1] + lengths[n / 2]) as f64 / 2.0 };
        let mut bins: BTreeMap<usize, usize> = BTreeMap::new();
        for &length in &lengths {
            *bins.entry(length.min(HISTOGRAM_MAX_LENGTH)).or_insert(0) += 1;
        }
        Self {
            points: n,
            mean_length: lengths.iter().sum::<usize>() as f64 / n as f64,
            median_length: median,
            histogram: bins.into_iter().map(|(length, points)| LengthCount { length, points }).collect(),
        }
    }
}

impl fmt::Display for PosesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "registered {} of {} photos · {} points (mean track {:.1} photos) · reprojection error {:.2} px · {} verified pairs",
            self.registered,
            self.total,
            self.tracks.points,
            self.tracks.mean_length,
            self.mean_reprojection_error_px,
            self.verified_pairs
        )?;
        let left_out: Vec<&PhotoReport> = self.left_out().collect();
        if !left_out.is_empty() {
            writeln!(f, "left out {} photo(s):", left_out.len())?;
            for photo in left_out.iter().take(SUMMARY_NAMES_SHOWN) {
                let reason = photo.dropped_reason.as_deref().unwrap_or("no pose");
                writeln!(f, "  {}: {reason}", photo.name)?;
            }
            if left_out.len() > SUMMARY_NAMES_SHOWN {
                writeln!(f, "  … and {} more (see poses-report.json)", left_out.len() - SUMMARY_NAMES_SHOWN)?;
            }
        }
        for group in &self.camera_groups {
            let focal = group.refined.map_or_else(|| "not refined".to_string(), |c| format!("f {:.1} px", c.focal));
            let source = if group.focal_from_exif { "EXIF" } else { "guessed" };
            writeln!(
                f,
                "camera {}: {}/{} photos registered · {focal} (prior {:.1} px, {source})",
                group.key, group.registered, group.photos, group.prior.focal
            )?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        let phases: Vec<String> =
            self.phase_seconds.iter().map(|p| format!("{} {:.1} s", p.phase.name(), p.seconds)).collect();
        write!(f, "time: {} · total {:.1} s", phases.join(", "), self.total_seconds)
    }
}

#[cfg(test)]
mod tests {
    use glam::{DVec2, DVec3};

    use super::*;
    use kiln_vision::model::{ImageState, Observation, RigidCv};

    fn image(registered: bool, keypoints: usize) -> ImageState {
        ImageState {
            camera: 0,
            camera_from_world: registered.then_some(RigidCv::IDENTITY),
            keypoints: vec![DVec2::new(60.0, 50.0); keypoints],
            point_of_keypoint: vec![None; keypoints],
        }
    }

    #[test]
    fn track_statistics_count_median_and_histogram() {
        let mut rec =
            Reconstruction::new(vec![RadialCamera::pinhole(100, 100, 100.0)], (0..4).map(|_| image(true, 4)).collect());
        let obs = |image, keypoint| Observation { image, keypoint };
        rec.add_point(DVec3::Z, [0; 3], vec![obs(0, 0), obs(1, 0)]);
        rec.add_point(DVec3::Z, [0; 3], vec![obs(0, 1), obs(1, 1), obs(2, 1)]);
        rec.add_point(DVec3::Z, [0; 3], vec![obs(0, 2), obs(1, 2), obs(2, 2), obs(3, 2)]);
        rec.add_point(DVec3::Z, [0; 3], vec![obs(0, 3), obs(1, 3), obs(2, 3), obs(3, 3)]);
        let stats = TrackStats::of(&rec);
        assert_eq!(stats.points, 4);
        assert!((stats.mean_length - 13.0 / 4.0).abs() < 1e-12);
        assert!((stats.median_length - 3.5).abs() < 1e-12);
        let histogram: Vec<(usize, usize)> = stats.histogram.iter().map(|b| (b.length, b.points)).collect();
        assert_eq!(histogram, vec![(2, 1), (3, 1), (4, 2)]);
    }

    #[test]
    fn report_names_dropped_photos_errors_and_the_split() {
        use kiln_core::photos::{CameraGroup, PhotoInfo};
        let info = |name: &str| PhotoInfo {
            path: name.into(),
            name: name.into(),
            width: 100,
            height: 100,
            exif: Default::default(),
            group: 0,
        };
        let photos = PhotoSet {
            input: "in".into(),
            photos: vec![info("a.jpg"), info("b.jpg"), info("c.jpg")],
            groups: vec![CameraGroup {
                key: "cam".into(),
                prior: RadialCamera::pinhole(100, 100, 120.0),
                focal_from_exif: false,
            }],
            rejected: Vec::new(),
        };
        let mut rec = Reconstruction::new(
            vec![RadialCamera::pinhole(100, 100, 100.0)],
            vec![image(true, 1), image(true, 1), image(false, 1)],
        );
        // Seen at (60, 50) in both photos; projects to (50 + 100·0.1, 50) = (60, 50): error 0 in
        // photo a, and photo b's keypoint is moved 3 px to give a known error.
        rec.images[1].keypoints[0] = DVec2::new(63.0, 50.0);
        rec.add_point(
            DVec3::new(0.1, 0.0, 1.0),
            [9; 3],
            vec![Observation { image: 0, keypoint: 0 }, Observation { image: 1, keypoint: 0 }],
        );
        let report = PosesReport::build(ReportInputs {
            photos: &photos,
            reconstruction: &rec,
            fates: vec![
                ("a.jpg".into(), PhotoFate::Used { index: 0, dropped: None }),
                ("b.jpg".into(), PhotoFate::Used { index: 1, dropped: None }),
                ("c.jpg".into(), PhotoFate::Used { index: 2, dropped: Some("too few matches".into()) }),
                ("d.jpg".into(), PhotoFate::Rejected { reason: "could not decode: truncated".into() }),
            ],
            verified_pairs: 1,
            components: vec![vec![0, 1], vec![2]],
            notes: Vec::new(),
            phase_seconds: vec![PhaseTime { phase: Phase::Features, seconds: 1.5 }],
        });
        assert_eq!((report.registered, report.total), (2, 4));
        assert!((report.photos[1].mean_reprojection_error_px.unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(report.photos[0].mean_reprojection_error_px, Some(0.0));
        assert!((report.mean_reprojection_error_px - 1.5).abs() < 1e-9);
        assert_eq!(report.photos[2].dropped_reason.as_deref(), Some("too few matches"));
        assert_eq!(report.photos[3].camera_group, None);
        assert_eq!(report.components, vec![vec!["a.jpg".to_string(), "b.jpg".into()], vec!["c.jpg".into()]]);
        assert!(report.notes.iter().any(|n| n.contains("split into 2 groups")));
        assert_eq!(report.camera_groups[0].registered, 2);
        let text = report.to_string();
        assert!(text.contains("registered 2 of 4"), "{text}");
        assert!(text.contains("d.jpg: could not decode"), "{text}");
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<PosesReport>(&json).unwrap(), report);
    }
}
