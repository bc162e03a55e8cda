//! The pose-estimation pipeline: a folder of photos in, a [`PosesResult`] out, written by
//! [`write_outputs`] (layout and conventions in [`outputs`]).
//!
//! Phases: list the photos → SIFT features in parallel → screening (photos that cannot be
//! decoded, that show no texture or that are identical copies of another photo are set aside with
//! a reason) → pair selection and matching → geometric verification → incremental mapping with
//! bundle adjustment. Photos set aside never stop the run; the run stops with
//! [`SfmError::Unusable`] only when the input as a whole cannot give poses, saying why.
//! The input folder is only read.
//!
//! The caller's `should_stop` is checked per photo in feature extraction, per pair in matching and
//! verification, per registration and bundle adjustment in the mapper, and between phases; once it
//! is true the run ends with [`SfmError::Cancelled`] (nothing is written: outputs come from
//! [`write_outputs`], after the run).

pub mod outputs;
mod screen;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::mapper::{DropReason, MapperOptions, MapperResult, reconstruct};
use crate::report::{PhaseTime, PosesReport, ReportInputs};
use crate::{Phase, PhaseProgress, SfmError};
use kiln_core::photos::{PhotoSet, list_photos};
use kiln_core::progress;
use kiln_vision::features::{Features, SiftOptions, extract_features};
use kiln_vision::matching::{MAX_EXHAUSTIVE_PHOTOS, MatchOptions, match_pairs, select_pairs};
use kiln_vision::model::{RadialCamera, Reconstruction};
use kiln_vision::verify::{TwoViewGeometry, VerifyOptions, verify_pairs};

pub use kiln_core::photos::{MIN_PHOTOS, truncated_jpeg_reason};
pub use outputs::write_outputs;

/// Settings of every phase.
#[derive(Clone, Debug)]
pub struct PosesOptions {
    pub sift: SiftOptions,
    pub matching: MatchOptions,
    /// Up to this many photos every pair is matched; beyond, neighbours and retrieved pairs.
    pub max_exhaustive_photos: usize,
    pub verify: VerifyOptions,
    pub mapper: MapperOptions,
    /// Photos with fewer keypoints are set aside as showing no texture.
    pub min_features: usize,
    /// When given, only these photos of the input folder are used (e.g. those a capture check
    /// kept); every other file in the folder is ignored. Paths are compared after resolving
    /// symbolic links.
    pub only: Option<Vec<PathBuf>>,
}

/// Default for [`PosesOptions::min_features`]: below COLMAP's 15-inlier minimum for a verified
/// pair plus margin no photo can register, and a plain or smooth image gives at most a handful of
/// detections on JPEG noise.
pub const DEFAULT_MIN_FEATURES: usize = 24;

impl Default for PosesOptions {
    fn default() -> Self {
        Self {
            sift: SiftOptions::default(),
            matching: MatchOptions::default(),
            max_exhaustive_photos: MAX_EXHAUSTIVE_PHOTOS,
            verify: VerifyOptions::default(),
            mapper: MapperOptions::default(),
            min_features: DEFAULT_MIN_FEATURES,
            only: None,
        }
    }
}

/// What [`estimate_poses`] found.
#[derive(Clone, Debug)]
pub struct PosesResult {
    /// The photos given to the mapper (decodable, textured, distinct), indexed like
    /// `reconstruction.images`; [`PhotoSet::rejected`] lists every other input photo and why.
    pub photos: PhotoSet,
    pub reconstruction: Reconstruction,
    pub report: PosesReport,
}

/// Estimates camera poses, intrinsics and a sparse point cloud for the photos in `input`. Stops
/// with [`SfmError::Cancelled`] soon after `should_stop()` turns true (see the module docs).
pub fn estimate_poses(
    input: &Path,
    options: &PosesOptions,
    progress: &mut dyn FnMut(&PhaseProgress),
    should_stop: &(dyn Fn() -> bool + Sync),
) -> Result<PosesResult, SfmError> {
    let stop = Stop(should_stop);
    let mut clock = PhaseClock::new(progress);
    clock.report(Phase::Photos, 0, 1, "listing".into());
    let listed = keep_only(list_photos(input)?, options.only.as_deref());
    require_min_photos(input, listed.photos.len())?;
    clock.report(Phase::Photos, 1, 1, format!("{} photos", listed.photos.len()));

    stop.check()?;
    let features = extract_all(&listed, &options.sift, &mut clock, stop)?;
    let screened = screen::screen(listed, features, options.min_features);
    screened.require_enough(input)?;
    let notes = screened.notes();

    let geometries = match_and_verify(&screened.photos, &screened.features, options, &mut clock, stop)?;
    stop.check()?;
    let mapped = map(&screened.photos, &screened.features, &geometries, options, &mut clock, stop)?;
    let phase_seconds = clock.finish();

    let reasons: BTreeMap<usize, String> =
        mapped.dropped.iter().map(|(image, reason)| (*image, drop_words(reason, &mapped.components))).collect();
    let fates = screened.fates(&mapped.reconstruction, &geometries, &reasons);
    let components = screen::components(screened.photos.photos.len(), &geometries);
    let report = PosesReport::build(ReportInputs {
        photos: &screened.photos,
        reconstruction: &mapped.reconstruction,
        fates,
        verified_pairs: geometries.len(),
        components,
        notes,
        phase_seconds,
    });
    if report.registered == 0 {
        return Err(SfmError::Unusable { input: input.to_path_buf(), problem: no_model_problem(&report) });
    }
    Ok(PosesResult { photos: screened.photos, reconstruction: mapped.reconstruction, report })
}

/// The photos of `set` that `only` names (all of them without `only`), with the camera groups
/// they use renumbered.
fn keep_only(mut set: PhotoSet, only: Option<&[PathBuf]>) -> PhotoSet {
    let Some(only) = only else { return set };
    let resolved = |path: &Path| std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let wanted: HashSet<PathBuf> = only.iter().map(|p| resolved(p)).collect();
    set.photos.retain(|photo| wanted.contains(&resolved(&photo.path)));
    set.rejected.retain(|photo| wanted.contains(&resolved(&photo.path)));
    let mut renumbered: BTreeMap<usize, usize> = BTreeMap::new();
    let mut groups = Vec::new();
    for photo in &mut set.photos {
        let Some(group) = set.groups.get(photo.group) else { continue };
        photo.group = *renumbered.entry(photo.group).or_insert_with(|| {
            groups.push(group.clone());
            groups.len() - 1
        });
    }
    set.groups = groups;
    set
}

fn require_min_photos(input: &Path, found: usize) -> Result<(), SfmError> {
    if found >= MIN_PHOTOS {
        return Ok(());
    }
    Err(SfmError::Unusable {
        input: input.to_path_buf(),
        problem: format!(
            "found {found} readable photo(s); at least {MIN_PHOTOS} are needed, taken from different \
             positions around the object with overlapping views"
        ),
    })
}

/// Why no photo got a pose, from the report's per-photo reasons.
fn no_model_problem(report: &PosesReport) -> String {
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for photo in report.left_out() {
        *reasons.entry(photo.dropped_reason.as_deref().unwrap_or("no pose")).or_insert(0) += 1;
    }
    let reasons: Vec<String> = reasons.into_iter().map(|(reason, n)| format!("{n} × {reason}")).collect();
    format!("no camera poses could be estimated from the {} photos: {}", report.total, reasons.join("; "))
}

/// A mapper's reason in words the photographer acts on.
fn drop_words(reason: &DropReason, components: &[Vec<usize>]) -> String {
    match reason {
        DropReason::NoVerifiedPairs => screen::TOO_FEW_MATCHES.to_string(),
        DropReason::TooFewMatches { best_inliers } => format!(
            "too few matches with any other photo: at most {best_inliers} (blurred, no texture, or little overlap?)"
        ),
        DropReason::SeparateModel { component } => format!(
            "in a separate group of {} photos that shares no matches with the model (a different object or scene?)",
            components.get(*component).map_or(0, Vec::len)
        ),
        DropReason::OnlyMatchedOtherModel { .. } => screen::ONLY_MATCHED_OUTSIDE.to_string(),
        DropReason::RegistrationFailed { candidates, inliers } => format!(
            "overlaps the model, but its pose could not be estimated reliably ({inliers} of {candidates} \
             matches to 3D points agree)"
        ),
    }
}

/// The caller's stop request, checked between units of work.
#[derive(Clone, Copy)]
struct Stop<'a>(&'a (dyn Fn() -> bool + Sync));

impl Stop<'_> {
    /// [`SfmError::Cancelled`] once a stop was requested.
    fn check(self) -> Result<(), SfmError> {
        if (self.0)() { Err(SfmError::Cancelled) } else { Ok(()) }
    }
}

/// Features of every listed photo, in parallel; a photo that cannot be decoded gives `Err` with
/// the reason, any other failure stops the run. Photos not yet started when a stop is requested
/// are skipped and the result is [`SfmError::Cancelled`].
fn extract_all(
    photos: &PhotoSet,
    options: &SiftOptions,
    clock: &mut PhaseClock<'_>,
    stop: Stop<'_>,
) -> Result<Vec<Result<Features, String>>, SfmError> {
    let total = photos.photos.len();
    clock.report(Phase::Features, 0, total, format!("{total} photos"));
    let results = with_progress(clock, Phase::Features, |report| {
        let done = AtomicUsize::new(0);
        photos
            .photos
            .par_iter()
            .map(|photo| {
                stop.check()?;
                let result = match truncated_jpeg_reason(&photo.path) {
                    Some(reason) => Err(SfmError::BadPhoto { path: photo.path.clone(), problem: reason }),
                    None => extract_features(photo, options).map_err(SfmError::from),
                };
                report(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                result
            })
            .collect::<Vec<_>>()
    })?;
    stop.check()?;
    results.into_iter().map(screen::decode_failure_as_rejection).collect()
}

/// Selects, matches and verifies photo pairs.
fn match_and_verify(
    photos: &PhotoSet,
    features: &[Features],
    options: &PosesOptions,
    clock: &mut PhaseClock<'_>,
    stop: Stop<'_>,
) -> Result<Vec<TwoViewGeometry>, SfmError> {
    let cameras: Vec<RadialCamera> = photos
        .photos
        .iter()
        .map(|p| photos.groups.get(p.group).map(|g| g.prior))
        .collect::<Option<_>>()
        .ok_or_else(|| SfmError::Internal("a photo names a camera group that does not exist".into()))?;
    let pairs = select_pairs(features, options.max_exhaustive_photos);
    stop.check()?;
    clock.report(Phase::Matching, 0, pairs.len(), format!("{} pairs", pairs.len()));
    let matches = with_progress(clock, Phase::Matching, |report| {
        match_pairs(features, &pairs, &options.matching, report, stop.0)
    })?
    .ok_or(SfmError::Cancelled)?;
    stop.check()?;
    clock.report(Phase::Verification, 0, matches.len(), format!("{} matched pairs", matches.len()));
    let verified = with_progress(clock, Phase::Verification, |report| {
        verify_pairs(features, &cameras, &matches, &options.verify, report, stop.0)
    })?
    .ok_or(SfmError::Cancelled)?;
    clock.report(Phase::Verification, matches.len(), matches.len(), format!("{} verified pairs", verified.len()));
    Ok(verified)
}

fn map(
    photos: &PhotoSet,
    features: &[Features],
    geometries: &[TwoViewGeometry],
    options: &PosesOptions,
    clock: &mut PhaseClock<'_>,
    stop: Stop<'_>,
) -> Result<MapperResult, SfmError> {
    reconstruct(photos, features, geometries, &options.mapper, &mut |p: &PhaseProgress| clock.forward(p), stop.0)
}

/// Runs `work` on a scoped thread; the `(done, total)` it reports, from any thread, reaches
/// `clock` on this one as progress of `phase`.
fn with_progress<T: Send>(
    clock: &mut PhaseClock<'_>,
    phase: Phase,
    work: impl FnOnce(&(dyn Fn(usize, usize) + Sync)) -> T + Send,
) -> Result<T, SfmError> {
    progress::with_progress(|done, total| clock.report(phase, done, total, String::new()), work)
        .map_err(|panicked| SfmError::Internal(format!("{} phase: {panicked}", phase.name())))
}

/// Forwards progress and measures wall-clock time per phase: the time between a phase's first
/// event and the next phase's first event is that phase's (phases may alternate, e.g. mapping and
/// bundle adjustment; their times add up).
struct PhaseClock<'a> {
    progress: &'a mut dyn FnMut(&PhaseProgress),
    current: Option<(Phase, Instant)>,
    times: Vec<PhaseTime>,
}

impl<'a> PhaseClock<'a> {
    fn new(progress: &'a mut dyn FnMut(&PhaseProgress)) -> Self {
        Self { progress, current: None, times: Vec::new() }
    }

    fn report(&mut self, phase: Phase, done: usize, total: usize, message: String) {
        self.forward(&PhaseProgress { phase, done, total, message });
    }

    fn forward(&mut self, event: &PhaseProgress) {
        if self.current.is_none_or(|(phase, _)| phase != event.phase) {
            self.close();
            self.current = Some((event.phase, Instant::now()));
        }
        (self.progress)(event);
    }

    fn close(&mut self) {
        let Some((phase, start)) = self.current.take() else { return };
        let seconds = start.elapsed().as_secs_f64();
        match self.times.iter_mut().find(|t| t.phase == phase) {
            Some(time) => time.seconds += seconds,
            None => self.times.push(PhaseTime { phase, seconds }),
        }
    }

    fn finish(mut self) -> Vec<PhaseTime> {
        self.close();
        self.times
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn fixture_images() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/bunny-mini/images")
    }

    /// The largest `done` of the feature-extraction events: how many photos were extracted.
    fn extracted(events: &[PhaseProgress]) -> usize {
        events.iter().filter(|e| e.phase == Phase::Features).map(|e| e.done).max().unwrap_or(0)
    }

    #[test]
    fn a_stop_requested_before_the_run_extracts_no_features() {
        let mut events = Vec::new();
        let result =
            estimate_poses(&fixture_images(), &PosesOptions::default(), &mut |p| events.push(p.clone()), &|| true);
        assert!(matches!(result, Err(SfmError::Cancelled)), "{:?}", result.err());
        assert_eq!(extracted(&events), 0, "{events:?}");
        assert!(events.iter().all(|e| matches!(e.phase, Phase::Photos | Phase::Features)), "{events:?}");
    }

    #[test]
    fn a_stop_during_extraction_skips_the_remaining_photos() {
        // The first two checks say "go on", every later one "stop": at most two photos start.
        let checks = AtomicUsize::new(0);
        let should_stop = || checks.fetch_add(1, Ordering::SeqCst) >= 2;
        let mut events = Vec::new();
        let result =
            estimate_poses(&fixture_images(), &PosesOptions::default(), &mut |p| events.push(p.clone()), &should_stop);
        assert!(matches!(result, Err(SfmError::Cancelled)), "{:?}", result.err());
        let photos = std::fs::read_dir(fixture_images()).unwrap().count();
        assert!(extracted(&events) <= 2 && photos > 2, "{} of {photos} photos extracted", extracted(&events));
        assert!(events.iter().all(|e| matches!(e.phase, Phase::Photos | Phase::Features)), "{events:?}");
    }

    #[test]
    fn a_stop_during_matching_ends_the_run_before_verification() {
        let stop = AtomicBool::new(false);
        let mut phases = Vec::new();
        let mut progress = |p: &PhaseProgress| {
            if p.phase == Phase::Matching {
                stop.store(true, Ordering::SeqCst);
            }
            phases.push(p.phase);
        };
        let result =
            estimate_poses(&fixture_images(), &PosesOptions::default(), &mut progress, &|| stop.load(Ordering::SeqCst));
        assert!(matches!(result, Err(SfmError::Cancelled)), "{:?}", result.err());
        assert!(phases.contains(&Phase::Matching), "{phases:?}");
        assert!(
            !phases.iter().any(|p| matches!(p, Phase::Verification | Phase::Reconstruction | Phase::BundleAdjustment)),
            "{phases:?}"
        );
    }
}
