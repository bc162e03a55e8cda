//! The capture check's driver: list the photos, decode and measure each one (in parallel, one
//! decode per photo for both the pixel statistics and the quick-pass features), find exact
//! copies, run the quick match pass, self-calibrate focal lengths missing from EXIF
//! ([`super::calibrate`]), and hand everything to [`super::advice`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::CheckError;
use crate::ImageMeasures;
use crate::advice::{Measured, Thresholds, assess, unusable_set};
use crate::calibrate::{calibrate_focals, gap_bounds};
use crate::image_quality::measure_image;
use crate::overlap::{OverlapGraph, QuickMatchOptions};
use crate::{CheckReport, FocalSource};
use kiln_core::photos::PhotoError;
use kiln_core::photos::truncated_jpeg_reason;
use kiln_core::photos::{PhotoInfo, PhotoSet, decode_oriented, folder_files, gray_fitting, list_photos};
use kiln_core::progress;
use kiln_protocol::Phase;
use kiln_vision::features::{Features, sift};
use kiln_vision::model::RadialCamera;

/// Settings of the capture check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckOptions {
    /// Longer side (pixels) of the grey image sharpness and exposure are measured on.
    pub analysis_side: u32,
    pub quick_match: QuickMatchOptions,
    pub thresholds: Thresholds,
}

/// Analysis size: big enough that a blur of a few pixels in a phone photo (1080–4000 px) stays
/// above a pixel once downscaled; fixed so that edge widths compare across cameras.
const ANALYSIS_SIDE: u32 = 1024;

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            analysis_side: ANALYSIS_SIDE,
            quick_match: QuickMatchOptions::default(),
            thresholds: Thresholds::default(),
        }
    }
}

/// Photos smaller than the quick pass's size over this are upsampled first (SIFT's first octave
/// at twice the resolution, as the SfM stage does for every photo): a 200-pixel photo gives too
/// few keypoints at its own resolution to verify overlaps.
const UPSAMPLE_BELOW_FRACTION: u32 = 2;

/// One decoded photo: its measures and its quick-pass features with their camera (both in the
/// quick pass's pixels).
struct Analysis {
    measures: ImageMeasures,
    features: Features,
    camera: RadialCamera,
}

/// Checks the photos in `input`. `progress(done, total, phase)` reports the photos measured,
/// then the pairs matched and verified. Fails only when `input` cannot be listed; a set without
/// any readable photo gives a report whose outcome is [`super::Outcome::WillFail`].
pub fn check_photos(
    input: &Path,
    options: &CheckOptions,
    progress: &mut dyn FnMut(usize, usize, Phase),
) -> Result<CheckReport, CheckError> {
    let start = Instant::now();
    progress(0, 1, Phase::ListingPhotos);
    let ignored_files = folder_files(input)?.others;
    let listed = match list_photos(input) {
        Ok(listed) => listed,
        Err(PhotoError::Unusable { problem, .. }) => {
            return Ok(unusable_set(input, problem, ignored_files, start.elapsed().as_secs_f64()));
        }
        Err(other) => return Err(other.into()),
    };
    let analyses = analyse_all(&listed, options, progress)?;
    let duplicate_of = exact_duplicates(&analyses);
    let mut graph = quick_match(&analyses, &duplicate_of, &listed, options, progress)?;
    progress(0, 1, Phase::EstimatingFocalLengths);
    let focal_lengths = calibrate_focals(&mut graph, &listed, &options.quick_match.verify);
    let guessed = |i: usize| {
        listed.photos.get(i).and_then(|p| focal_lengths.get(p.group)).is_some_and(|f| f.source == FocalSource::Guessed)
    };
    let guessed_gap_bounds = graph
        .components()
        .first()
        .filter(|c| c.iter().any(|&i| guessed(i)))
        .and_then(|c| gap_bounds(&graph, c, &guessed, &options.quick_match.verify));
    progress(1, 1, Phase::EstimatingFocalLengths);
    let measured = Measured {
        listed: &listed,
        analyses: analyses.into_iter().map(|a| a.map(|a| a.measures)).collect(),
        duplicate_of,
        graph,
        focal_lengths,
        guessed_gap_bounds,
        ignored_files,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok(assess(measured, &options.thresholds))
}

/// Decodes and measures every listed photo in parallel.
fn analyse_all(
    listed: &PhotoSet,
    options: &CheckOptions,
    progress: &mut dyn FnMut(usize, usize, Phase),
) -> Result<Vec<Result<Analysis, String>>, CheckError> {
    let total = listed.photos.len();
    progress(0, total, Phase::MeasuringPhotos);
    with_progress(progress, Phase::MeasuringPhotos, |report| {
        let done = AtomicUsize::new(0);
        listed
            .photos
            .par_iter()
            .map(|photo| {
                let groups_prior = listed.groups.get(photo.group).map(|g| g.prior);
                let result = analyse(photo, groups_prior, options);
                report(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                result
            })
            .collect()
    })
}

/// One photo's measures and quick-pass features, or why it cannot be decoded.
fn analyse(photo: &PhotoInfo, prior: Option<RadialCamera>, options: &CheckOptions) -> Result<Analysis, String> {
    if let Some(reason) = truncated_jpeg_reason(&photo.path) {
        return Err(reason);
    }
    let decoded = decode_oriented(&photo.path).map_err(|e| match e {
        PhotoError::Decode { source, .. } => format!("could not decode: {source}"),
        other => other.to_string(),
    })?;
    let (analysis, _) = gray_fitting(&decoded, options.analysis_side);
    let measures = measure_image(&decoded, &analysis);
    let (small, scale) = gray_fitting(&decoded, options.quick_match.sift.max_image_side);
    let mut sift_options = options.quick_match.sift.clone();
    if small.width.max(small.height) < sift_options.max_image_side / UPSAMPLE_BELOW_FRACTION {
        sift_options.first_octave = -1;
    }
    let (keypoints, descriptors) = sift(&small, &sift_options);
    let prior = prior.unwrap_or_else(|| {
        RadialCamera::pinhole(photo.width, photo.height, 1.2 * f64::from(photo.width.max(photo.height)))
    });
    let camera = RadialCamera::pinhole(small.width, small.height, prior.focal * scale);
    Ok(Analysis { measures, features: Features { keypoints, descriptors, colors: Vec::new() }, camera })
}

/// For each photo, the first earlier photo with identical pixels.
fn exact_duplicates(analyses: &[Result<Analysis, String>]) -> Vec<Option<usize>> {
    let mut first: HashMap<u64, usize> = HashMap::new();
    analyses
        .iter()
        .enumerate()
        .map(|(index, analysis)| {
            let hash = analysis.as_ref().ok()?.measures.pixel_hash;
            match first.get(&hash) {
                Some(&original) => Some(original),
                None => {
                    first.insert(hash, index);
                    None
                }
            }
        })
        .collect()
}

/// The overlap graph over all listed photos; unreadable photos and copies take no part.
fn quick_match(
    analyses: &[Result<Analysis, String>],
    duplicate_of: &[Option<usize>],
    listed: &PhotoSet,
    options: &CheckOptions,
    progress: &mut dyn FnMut(usize, usize, Phase),
) -> Result<OverlapGraph, CheckError> {
    let taking_part: Vec<(usize, &Analysis)> = analyses
        .iter()
        .enumerate()
        .filter(|(i, _)| duplicate_of.get(*i).is_some_and(Option::is_none))
        .filter_map(|(i, a)| Some((i, a.as_ref().ok()?)))
        .collect();
    let features: Vec<Features> = taking_part.iter().map(|(_, a)| a.features.clone()).collect();
    let cameras: Vec<RadialCamera> = taking_part.iter().map(|(_, a)| a.camera).collect();
    progress(0, 1, Phase::QuickMatching);
    let local = with_progress(progress, Phase::QuickMatching, |report| {
        OverlapGraph::build(&features, &cameras, &options.quick_match, report)
    })?;
    let index = |local: usize| taking_part.get(local).map_or(usize::MAX, |(i, _)| *i);
    let edges = local.neighbours.iter().enumerate().flat_map(|(a, ns)| ns.iter().map(move |&b| (a, b)));
    let mut graph = OverlapGraph::from_edges(listed.photos.len(), edges.map(|(a, b)| (index(a), index(b))));
    graph.pairs_matched = local.pairs_matched;
    graph.flow = local.flow.iter().map(|(&(a, b), &flow)| ((index(a), index(b)), flow)).collect();
    graph.rotations = local.rotations.iter().map(|(&(a, b), &rotation)| ((index(a), index(b)), rotation)).collect();
    graph.epipolar = local.epipolar.into_iter().map(|((a, b), pair)| ((index(a), index(b)), pair)).collect();
    graph.cameras = local.cameras.into_iter().map(|(a, camera)| (index(a), camera)).collect();
    Ok(graph)
}

/// Runs `work` on a scoped thread; the `(done, total)` it reports, from any thread, reaches
/// `progress` on this one as `phase`.
fn with_progress<T: Send>(
    progress: &mut dyn FnMut(usize, usize, Phase),
    phase: Phase,
    work: impl FnOnce(&(dyn Fn(usize, usize) + Sync)) -> T + Send,
) -> Result<T, CheckError> {
    progress::with_progress(|done, total| progress(done, total, phase), work)
        .map_err(|panicked| CheckError::Internal(format!("{}: {panicked}", phase.name())))
}
