//! From measurements to verdicts: the findings of each photo, the predicted outcome of the set
//! and the advice, in words a photographer acts on.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use crate::ImageMeasures;
use crate::image_quality::hash_distance;
use crate::overlap::{CoverageGap, OverlapGraph, coverage_gap, loop_closes};
use crate::{
    CheckCode, CheckReport, Finding, FocalEstimate, FocalSource, Outcome, PhotoCheck, PhotoMeasures, SetSummary,
    Verdict,
};
use kiln_core::photos::MIN_PHOTOS;
use kiln_core::photos::PhotoSet;

/// The limits the findings are judged by.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// A photo is blurred when its edges are this many times wider than the set's median…
    pub blur_relative: f64,
    /// …and wider than this many analysis pixels (a sharp set's spread stays under it).
    pub blur_min_px: f64,
    /// A photo whose edges are wider than this (analysis pixels) is blurred whatever the set.
    pub blur_absolute_px: f64,
    /// Over-exposed: more than this fraction of the frame clipped white…
    pub overexposed_clipped: f64,
    /// Under-exposed: even the brightest 5 % of the frame stays below this grey level.
    pub underexposed_bright_level: f64,
    /// Longer side (pixels) under which a photo is rejected…
    pub min_side_reject: u32,
    /// …and under which it is warned about.
    pub min_side_warn: u32,
    /// Consecutive photos whose perceptual hashes differ in at most this many bits…
    pub near_duplicate_bits: u32,
    /// …and whose matches moved less than this fraction of the image diagonal are a burst.
    pub near_duplicate_flow: f64,
    /// The set is risky when at least this fraction of its photos is blurred or badly exposed.
    pub risky_fraction: f64,
    /// A range of directions wider than this (degrees of azimuth) without any photo: the photos
    /// do not go all the way around.
    pub max_coverage_gap_deg: f64,
}

/// Measured on the shared data sets at the 1024-pixel analysis size (engine/tests/check.rs):
/// sharp photos' edges are 0.37–1.0 px wide, at most 1.32× their set's median (bunny-synth median
/// 0.57, fox 0.85, sceaux-castle 0.48); a Gaussian blur of σ = 3 px at full resolution gives
/// 3.0 (bunny, 800 px), 2.0 (fox, 1920 px) and 1.3 px (sceaux, 2832 px), 2.4–5× the median.
const BLUR_RELATIVE: f64 = 1.8;
/// Under 1.2 analysis pixels an edge looks sharp at the size the SfM stage reads photos.
const BLUR_MIN_PX: f64 = 1.2;
/// σ = 3 px on an 800-pixel photo measures 3.0; sharp photos of any set stay under 1.
const BLUR_ABSOLUTE_PX: f64 = 2.5;
/// Half the frame burnt out leaves too little texture. Sky fills up to 33 % of sceaux-castle's
/// photos; a ×4 over-exposure of bunny-synth clips 90 %.
const OVEREXPOSED_CLIPPED: f64 = 0.5;
/// Grey 0.25 (64 of 255) at the 95th percentile: the photo has no properly lit part at all.
const UNDEREXPOSED_BRIGHT_LEVEL: f64 = 0.25;
/// Under 128 px SIFT finds only a few dozen keypoints, too few to place a photo; 200×150 views
/// (the bunny-mini fixture) still register in the SfM tests.
const MIN_SIDE_REJECT: u32 = 128;
/// Under 1000 px the model's texture is visibly soft (the trainer and texture baker read the
/// photos' pixels; 1000+ px is what a phone gives even in video mode).
const MIN_SIDE_WARN: u32 = 1000;
/// 63-bit hashes of consecutive views 5° apart differ in 10+ bits; of one scene shot twice in a
/// burst, in 0–4.
const NEAR_DUPLICATE_BITS: u32 = 6;
/// 1 % of the diagonal: a hand-held burst shakes by less; a step around the object moves more.
const NEAR_DUPLICATE_FLOW: f64 = 0.01;
/// A quarter of the photos.
const RISKY_FRACTION: f64 = 0.25;
/// A side of a box-like object spans 90° of azimuth: a wider gap leaves a side unseen. From the
/// reference poses (`reference_gap` in engine/tests/check.rs): bunny-synth's full spiral leaves
/// 17°, its half ring 207°, and fox's photos, an arc of about 96° in front of the fox, 264°.
const MAX_COVERAGE_GAP_DEG: f64 = 90.0;

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            blur_relative: BLUR_RELATIVE,
            blur_min_px: BLUR_MIN_PX,
            blur_absolute_px: BLUR_ABSOLUTE_PX,
            overexposed_clipped: OVEREXPOSED_CLIPPED,
            underexposed_bright_level: UNDEREXPOSED_BRIGHT_LEVEL,
            min_side_reject: MIN_SIDE_REJECT,
            min_side_warn: MIN_SIDE_WARN,
            near_duplicate_bits: NEAR_DUPLICATE_BITS,
            near_duplicate_flow: NEAR_DUPLICATE_FLOW,
            risky_fraction: RISKY_FRACTION,
            max_coverage_gap_deg: MAX_COVERAGE_GAP_DEG,
        }
    }
}

/// Names listed in one advice line before "and N more".
const NAMES_SHOWN: usize = 6;

/// What the check measured, for [`assess`].
pub struct Measured<'a> {
    pub listed: &'a PhotoSet,
    /// Per listed photo: its measures, or why it could not be decoded.
    pub analyses: Vec<Result<ImageMeasures, String>>,
    /// Per listed photo: the earlier photo it is an exact copy of.
    pub duplicate_of: Vec<Option<usize>>,
    /// Over the listed photos (unreadable and duplicate ones have no edges).
    pub graph: OverlapGraph,
    /// Per camera group of `listed`: its focal length and where it comes from.
    pub focal_lengths: Vec<FocalEstimate>,
    /// When a photo of the largest group has a guessed focal length: the narrowest and widest
    /// coverage gap (degrees) over the plausible focal lengths.
    pub guessed_gap_bounds: Option<(f64, f64)>,
    pub ignored_files: Vec<PathBuf>,
    pub seconds: f64,
}

/// A report for an input with no readable photo at all.
pub fn unusable_set(input: &Path, problem: String, ignored_files: Vec<PathBuf>, seconds: f64) -> CheckReport {
    CheckReport {
        input: input.to_path_buf(),
        photos: Vec::new(),
        outcome: Outcome::WillFail,
        summary: SetSummary { ignored_files, seconds, ..SetSummary::default() },
        advice: vec![format!("{problem}: at least {MIN_PHOTOS} overlapping photos of the object are needed")],
    }
}

/// The report: findings per photo, outcome and advice.
pub fn assess(measured: Measured<'_>, thresholds: &Thresholds) -> CheckReport {
    let listed = measured.listed;
    let names: Vec<&str> = listed.photos.iter().map(|p| p.name.as_str()).collect();
    let median_blur = median(measured.analyses.iter().filter_map(|a| a.as_ref().ok()?.edge_blur_px));
    let main_group = largest_group(listed);
    let components = measured.graph.components();
    let mut photos: Vec<PhotoCheck> = Vec::new();
    for (index, photo) in listed.photos.iter().enumerate() {
        let mut findings = Vec::new();
        let measures = match &measured.analyses[index] {
            Err(reason) => {
                findings.push(reject(CheckCode::Unreadable, format!("could not read the photo: {reason}")));
                None
            }
            Ok(image) => Some(image),
        };
        if let Some(&Some(original)) = measured.duplicate_of.get(index) {
            findings.push(reject(
                CheckCode::Duplicate,
                format!("identical to {}: a copy adds nothing (take each photo from a new position)", names[original]),
            ));
        }
        findings.extend(resolution_findings(photo.width, photo.height, thresholds));
        let group = listed.groups.get(photo.group);
        if group.is_some_and(|g| !g.focal_from_exif) {
            findings.push(warn(CheckCode::NoExifFocal, "no focal length in EXIF: it will be estimated".into()));
        }
        if listed.groups.len() > 1 && Some(photo.group) != main_group {
            let key = |g: Option<usize>| g.and_then(|g| listed.groups.get(g)).map_or("", |g| g.key.as_str());
            findings.push(warn(
                CheckCode::OtherCamera,
                format!(
                    "taken with other camera settings ({}) than most photos ({})",
                    key(Some(photo.group)),
                    key(main_group)
                ),
            ));
        }
        let readable_original = measures.is_some() && measured.duplicate_of[index].is_none();
        if let Some(image) = measures.filter(|_| readable_original) {
            findings.extend(image_findings(image, median_blur, thresholds));
            let previous = previous_original(&measured, index);
            findings.extend(overlap_findings(
                index,
                previous,
                &measured.graph,
                &components,
                &names,
                thresholds,
                &measured.analyses,
            ));
        }
        let measures = measures.map(|image| PhotoMeasures {
            width: photo.width,
            height: photo.height,
            camera: group.map_or_else(String::new, |g| g.key.clone()),
            focal_from_exif: group.is_some_and(|g| g.focal_from_exif),
            orientation: photo.exif.orientation,
            image: image.clone(),
            relative_sharpness: match (median_blur, image.edge_blur_px) {
                (Some(m), Some(b)) if b > 0.0 => m / b,
                _ => 0.0,
            },
            overlapping_photos: measured.graph.neighbours.get(index).map_or(0, |n| n.len()),
        });
        photos.push(photo_check(photo.path.clone(), findings, measures));
    }
    for rejected in &listed.rejected {
        let finding = reject(CheckCode::Unreadable, format!("could not read the photo: {}", rejected.reason));
        photos.push(photo_check(rejected.path.clone(), vec![finding], None));
    }
    photos.sort_by(|a, b| a.path.cmp(&b.path));
    let coverage = components.first().map(|c| coverage_of(&measured, c));
    let summary = summarise(listed, &photos, &measured, &components, coverage.as_ref(), thresholds);
    let (outcome, advice) =
        predict(listed, &photos, &summary, &measured.graph, &components, coverage.as_ref(), thresholds);
    CheckReport { input: listed.input.clone(), photos, outcome, summary, advice }
}

/// How far around the object the largest group's photos go, as far as the quick pass tells.
enum Coverage {
    /// Measured with every photo's focal length known (EXIF or self-calibrated).
    Gap(CoverageGap),
    /// Some focal lengths are guessed: the narrowest and widest gap over their plausible values.
    Bounded { narrowest: f64, widest: f64 },
    /// Not measurable, and why.
    Unknown(String),
}

/// The coverage of the photos of `component`: a measured gap, bounds on it when a photo's focal
/// length is only guessed (its rotations, hence its viewing direction, are off by as much as the
/// guess), or why neither is known.
fn coverage_of(measured: &Measured<'_>, component: &[usize]) -> Coverage {
    let guessed = component
        .iter()
        .filter_map(|&i| measured.focal_lengths.get(measured.listed.photos.get(i)?.group))
        .find(|f| f.source == FocalSource::Guessed);
    match (guessed, measured.guessed_gap_bounds) {
        (Some(_), Some((narrowest, widest))) => Coverage::Bounded { narrowest, widest },
        (Some(focal), None) => Coverage::Unknown(format!(
            "the focal length of {} is not in EXIF and the photos do not determine it, so the directions they \
             look from are uncertain",
            focal.camera
        )),
        (None, _) => coverage_gap(&measured.graph, component).map_or_else(
            || Coverage::Unknown("the quick match pass's rotations do not give the photos' viewing directions".into()),
            Coverage::Gap,
        ),
    }
}

/// Whether the photos go all the way around the object: by the coverage gap when it is known
/// (or bounded on the same side of the limit), else by the overlap graph closing a loop.
fn loop_closed(graph: &OverlapGraph, component: &[usize], coverage: &Coverage, t: &Thresholds) -> bool {
    match *coverage {
        Coverage::Gap(gap) => gap.degrees <= t.max_coverage_gap_deg,
        Coverage::Bounded { narrowest, .. } if narrowest > t.max_coverage_gap_deg => false,
        Coverage::Bounded { widest, .. } if widest <= t.max_coverage_gap_deg => true,
        Coverage::Bounded { .. } | Coverage::Unknown(_) => loop_closes(graph, component),
    }
}

fn reject(code: CheckCode, message: String) -> Finding {
    Finding { verdict: Verdict::Reject, code, message }
}

fn warn(code: CheckCode, message: String) -> Finding {
    Finding { verdict: Verdict::Warn, code, message }
}

fn photo_check(path: PathBuf, findings: Vec<Finding>, measures: Option<PhotoMeasures>) -> PhotoCheck {
    let verdict = findings.iter().map(|f| f.verdict).max().unwrap_or(Verdict::Good);
    PhotoCheck { path, verdict, findings, measures }
}

/// The median of the finite `values` (the upper one of an even count), `None` when there are none.
pub(super) fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return None;
    }
    let mid = values.len() / 2;
    Some(*values.select_nth_unstable_by(mid, f64::total_cmp).1)
}

/// The camera group most photos belong to.
fn largest_group(listed: &PhotoSet) -> Option<usize> {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for photo in &listed.photos {
        *counts.entry(photo.group).or_insert(0) += 1;
    }
    counts.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0))).map(|(group, _)| group)
}

fn resolution_findings(width: u32, height: u32, t: &Thresholds) -> Option<Finding> {
    let longer = width.max(height);
    if longer < t.min_side_reject {
        Some(reject(
            CheckCode::LowResolution,
            format!(
                "{width}×{height} is too small: under {} px on the longer side too few features can be found to place it",
                t.min_side_reject
            ),
        ))
    } else if longer < t.min_side_warn {
        Some(warn(
            CheckCode::LowResolution,
            format!("{width}×{height} is small: under {} px the model's texture will be soft", t.min_side_warn),
        ))
    } else {
        None
    }
}

fn image_findings(image: &ImageMeasures, median_blur: Option<f64>, t: &Thresholds) -> Vec<Finding> {
    let mut findings = Vec::new();
    match image.edge_blur_px {
        None => findings.push(warn(
            CheckCode::NoTexture,
            "shows no sharp detail at all (a blank, fully blurred or fully clipped frame?)".into(),
        )),
        Some(blur) => {
            let relative = median_blur.is_some_and(|m| blur > t.blur_relative * m && blur > t.blur_min_px);
            if relative || blur > t.blur_absolute_px {
                let typical = median_blur.map_or_else(String::new, |m| format!(" where this set's are {m:.1} px"));
                findings.push(warn(
                    CheckCode::Blur,
                    format!(
                        "blurred: its sharpest edges are {blur:.1} px wide{typical} (hold still, add light, or let it focus)"
                    ),
                ));
            }
        }
    }
    if image.clipped_highlights > t.overexposed_clipped {
        findings.push(warn(
            CheckCode::Overexposed,
            format!("over-exposed: {:.0} % of the frame is burnt-out white", 100.0 * image.clipped_highlights),
        ));
    }
    if image.bright_level < t.underexposed_bright_level {
        findings.push(warn(
            CheckCode::Underexposed,
            format!(
                "under-exposed: even its brightest parts are dark (mean grey {:.0} of 255)",
                255.0 * image.mean_luminance
            ),
        ));
    }
    findings
}

/// The photo before `index` in name order that was decoded and is not a copy.
fn previous_original(measured: &Measured<'_>, index: usize) -> Option<usize> {
    (0..index)
        .rev()
        .find(|&i| measured.analyses[i].is_ok() && measured.duplicate_of.get(i).is_some_and(Option::is_none))
}

fn overlap_findings(
    index: usize,
    previous: Option<usize>,
    graph: &OverlapGraph,
    components: &[Vec<usize>],
    names: &[&str],
    t: &Thresholds,
    analyses: &[Result<ImageMeasures, String>],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let partners = graph.neighbours.get(index).map_or(0, |n| n.len());
    if partners == 0 {
        findings.push(reject(
            CheckCode::Isolated,
            "shares no features with any other photo (another object, or too far from the others' viewpoints?)".into(),
        ));
    } else if let Some(group) = components.iter().skip(1).find(|c| c.contains(&index)) {
        findings.push(warn(
            CheckCode::SeparateGroup,
            format!(
                "in a separate group of {} photos that shares no features with the main group of {}",
                group.len(),
                components.first().map_or(0, Vec::len)
            ),
        ));
    }
    if let Some(previous) = previous {
        let hashes = (analyses.get(previous), analyses.get(index));
        if let (Some(Ok(a)), Some(Ok(b))) = hashes {
            let close = hash_distance(a.perceptual_hash, b.perceptual_hash) <= t.near_duplicate_bits;
            let still = graph.flow.get(&(previous, index)).is_none_or(|&flow| flow < t.near_duplicate_flow);
            if close && still {
                findings.push(warn(
                    CheckCode::NearDuplicate,
                    format!("taken from almost the same spot as {} (redundant: move between shots)", names[previous]),
                ));
            }
        }
    }
    findings
}

fn summarise(
    listed: &PhotoSet,
    photos: &[PhotoCheck],
    measured: &Measured<'_>,
    components: &[Vec<usize>],
    coverage: Option<&Coverage>,
    t: &Thresholds,
) -> SetSummary {
    let name = |i: &usize| listed.photos.get(*i).map_or_else(String::new, |p| p.name.clone());
    let cameras = listed
        .groups
        .iter()
        .enumerate()
        .map(|(g, group)| (group.key.clone(), listed.photos.iter().filter(|p| p.group == g).count()))
        .collect();
    SetSummary {
        photos: photos.len(),
        usable: photos.iter().filter(|p| p.verdict != Verdict::Reject).count(),
        ignored_files: measured.ignored_files.clone(),
        cameras,
        pairs_matched: measured.graph.pairs_matched,
        pairs_overlapping: measured.graph.overlapping_pairs(),
        components: components.iter().map(|c| c.iter().map(name).collect()).collect(),
        loop_closed: components
            .first()
            .zip(coverage)
            .is_some_and(|(c, coverage)| loop_closed(&measured.graph, c, coverage, t)),
        largest_gap_deg: match coverage {
            Some(Coverage::Gap(gap)) => Some(gap.degrees),
            _ => None,
        },
        largest_gap_range_deg: match coverage {
            Some(&Coverage::Bounded { narrowest, widest }) => Some((narrowest, widest)),
            _ => None,
        },
        coverage_unknown: match coverage {
            Some(Coverage::Unknown(reason)) => Some(reason.clone()),
            Some(&Coverage::Bounded { narrowest, widest })
                if narrowest <= t.max_coverage_gap_deg && widest > t.max_coverage_gap_deg =>
            {
                Some(format!(
                    "the focal length is not in EXIF and the photos do not determine it; over its plausible values the \
                     widest range of directions no photo looks from is {narrowest:.0}°–{widest:.0}°"
                ))
            }
            _ => None,
        },
        focal_lengths: measured.focal_lengths.clone(),
        seconds: measured.seconds,
    }
}

/// The file names of the photos with a finding of `code`.
fn with_code(photos: &[PhotoCheck], input: &Path, code: CheckCode) -> Vec<String> {
    with_finding(photos, input, |f| f.code == code)
}

/// The file names of the photos with a finding that `wanted` accepts.
fn with_finding(photos: &[PhotoCheck], input: &Path, wanted: impl Fn(&Finding) -> bool) -> Vec<String> {
    photos
        .iter()
        .filter(|p| p.findings.iter().any(&wanted))
        .map(|p| p.path.strip_prefix(input).unwrap_or(&p.path).display().to_string())
        .collect()
}

/// "1 photo" / "3 photos".
fn count_photos(n: usize) -> String {
    if n == 1 { "1 photo".into() } else { format!("{n} photos") }
}

/// "a.jpg, b.jpg and 3 more".
fn name_list(names: &[String]) -> String {
    let shown = names.iter().take(NAMES_SHOWN).cloned().collect::<Vec<_>>().join(", ");
    match names.len().saturating_sub(NAMES_SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// "1 photo is" / "3 photos are".
fn photos_are(n: usize) -> String {
    format!("{} {}", count_photos(n), if n == 1 { "is" } else { "are" })
}

fn predict(
    listed: &PhotoSet,
    photos: &[PhotoCheck],
    summary: &SetSummary,
    graph: &OverlapGraph,
    components: &[Vec<usize>],
    coverage: Option<&Coverage>,
    t: &Thresholds,
) -> (Outcome, Vec<String>) {
    let input = listed.input.as_path();
    let named = |code: CheckCode| with_code(photos, input, code);
    let mut fatal = Vec::new();
    let mut risky = Vec::new();
    let mut notes = Vec::new();
    let decoded = photos.iter().filter(|p| p.measures.is_some()).count();
    if summary.pairs_overlapping == 0 && decoded >= MIN_PHOTOS {
        fatal.push(
            "no two photos share features: they must overlap (each part of the object seen in at least two photos, \
             about 60–80 % overlap between neighbours)"
                .into(),
        );
    } else if summary.usable < MIN_PHOTOS {
        fatal.push(format!(
            "only {} usable photo(s) of {}: at least {MIN_PHOTOS} overlapping photos from different positions around the object are needed",
            summary.usable, summary.photos
        ));
    }
    for (code, why) in [
        (CheckCode::Unreadable, "could not be read (incomplete copies?)"),
        (CheckCode::Duplicate, "exact copies of another photo"),
        (
            CheckCode::Isolated,
            "they share no features with any other photo (another object, or a gap in the walk around it?)",
        ),
    ] {
        let names = named(code);
        if !names.is_empty() {
            notes.push(format!("{} will be left out, {why}: {}", count_photos(names.len()), name_list(&names)));
        }
    }
    let too_small = with_finding(photos, input, |f| f.code == CheckCode::LowResolution && f.verdict == Verdict::Reject);
    let small = with_finding(photos, input, |f| f.code == CheckCode::LowResolution && f.verdict == Verdict::Warn);
    if !too_small.is_empty() {
        notes.push(format!(
            "{} too small to use (under {} px) and will be left out: {}",
            photos_are(too_small.len()),
            t.min_side_reject,
            name_list(&too_small)
        ));
    }
    if !small.is_empty() {
        notes.push(format!(
            "{} under {} px: the model's texture will be soft; use full-resolution photos",
            photos_are(small.len()),
            t.min_side_warn
        ));
    }
    if components.len() > 1 {
        let name = |i: &usize| listed.photos.get(*i).map_or_else(String::new, |p| p.name.clone());
        let groups: Vec<String> = components
            .iter()
            .map(|c| format!("({} photos: {})", c.len(), name_list(&c.iter().map(name).collect::<Vec<_>>())))
            .collect();
        risky.push(format!(
            "the photos form {} groups that share no features: {} — take photos in between that link them, or make sure they show the same object",
            components.len(),
            groups.join("; ")
        ));
    }
    if let Some(main) = components.first().filter(|_| !summary.loop_closed) {
        let name = |i: usize| listed.photos.get(i).map_or_else(String::new, |p| p.name.clone());
        let ends = match coverage {
            Some(&Coverage::Gap(CoverageGap { degrees, between: (a, b) })) => Some(format!(
                " (no photo looks from a {degrees:.0}° wide range of directions, between {} and {})",
                name(a),
                name(b)
            )),
            Some(&Coverage::Bounded { narrowest, .. }) if narrowest > t.max_coverage_gap_deg => Some(format!(
                " (whatever the focal length, no photo looks from a range of directions at least {narrowest:.0}° wide)"
            )),
            _ => chain_ends(graph, main).map(|(a, b)| {
                format!(" (no overlap was found past {} and {}, the ends of the chain)", name(a), name(b))
            }),
        };
        risky.push(format!(
            "the photos do not go all the way around the object{}: the sides between them are missing or weakly \
             covered; keep walking around it, overlapping each photo with the last, until you are back at the first",
            ends.unwrap_or_default()
        ));
    }
    let blurred = named(CheckCode::Blur);
    let dark = named(CheckCode::Underexposed);
    let bright = named(CheckCode::Overexposed);
    let badly_taken = photos
        .iter()
        .filter(|p| {
            p.findings
                .iter()
                .any(|f| matches!(f.code, CheckCode::Blur | CheckCode::Underexposed | CheckCode::Overexposed))
        })
        .count();
    let many = summary.photos > 0 && badly_taken as f64 >= t.risky_fraction * summary.photos as f64;
    let quality = [
        (blurred, "blurred", "retake them holding still, in more light, or with a faster shutter"),
        (dark, "under-exposed", "retake them in more light or with a longer exposure"),
        (bright, "over-exposed", "retake them with less exposure or out of direct light"),
    ];
    for (names, what, fix) in quality {
        if !names.is_empty() {
            let line = format!("{} {what}: {} — {fix}", photos_are(names.len()), name_list(&names));
            if many { risky.push(line) } else { notes.push(line) }
        }
    }
    let bursts = named(CheckCode::NearDuplicate);
    if !bursts.is_empty() {
        notes.push(format!(
            "{} taken from almost the same spot as the photo before: {} (redundant; move a step between shots)",
            photos_are(bursts.len()),
            name_list(&bursts)
        ));
    }
    if listed.groups.len() > 1 {
        let cameras: Vec<String> = summary.cameras.iter().map(|(key, n)| format!("{key} ({n})")).collect();
        notes.push(format!(
            "the photos come from {} camera settings: {} — each gets its own intrinsics; one camera at one zoom is best",
            listed.groups.len(),
            cameras.join(", ")
        ));
    }
    notes.extend(focal_notes(&summary.focal_lengths));
    if let Some(reason) = &summary.coverage_unknown {
        notes.push(format!("how far around the object the photos go is judged from their overlaps only: {reason}"));
    }
    if !summary.ignored_files.is_empty() {
        let names: Vec<String> =
            summary.ignored_files.iter().map(|p| p.strip_prefix(input).unwrap_or(p).display().to_string()).collect();
        notes.push(format!("{} file(s) are not JPEG/PNG photos and are ignored: {}", names.len(), name_list(&names)));
    }
    let outcome = if !fatal.is_empty() {
        Outcome::WillFail
    } else if !risky.is_empty() {
        Outcome::Risky
    } else {
        Outcome::Good
    };
    (outcome, fatal.into_iter().chain(risky).chain(notes).collect())
}

/// What the user should know of focal lengths not read from EXIF.
fn focal_notes(focal_lengths: &[FocalEstimate]) -> Vec<String> {
    focal_lengths
        .iter()
        .filter_map(|f| match f.source {
            FocalSource::Exif => None,
            FocalSource::SelfCalibrated => Some(format!(
                "{}: no focal length in EXIF; estimated from the photos as {:.0} px (keep EXIF when copying photos)",
                f.camera, f.focal_px
            )),
            FocalSource::Guessed => Some(format!(
                "{}: no focal length in EXIF and the photos do not determine it; it will be estimated during \
                 reconstruction (keep EXIF when copying photos)",
                f.camera
            )),
        })
        .collect()
}

/// The two photos farthest apart along the group's overlap graph (the ends of an open chain):
/// the photo farthest from the first, and the photo farthest from that one.
fn chain_ends(graph: &OverlapGraph, component: &[usize]) -> Option<(usize, usize)> {
    let farthest = |start: usize| -> usize {
        let mut distance: BTreeMap<usize, usize> = BTreeMap::from([(start, 0)]);
        let mut queue = VecDeque::from([start]);
        let mut last = start;
        while let Some(node) = queue.pop_front() {
            last = node;
            for &next in graph.neighbours.get(node).into_iter().flatten() {
                if !distance.contains_key(&next) {
                    distance.insert(next, distance.get(&node).map_or(0, |d| d + 1));
                    queue.push_back(next);
                }
            }
        }
        last
    };
    let first = farthest(*component.first()?);
    let second = farthest(first);
    Some((first.min(second), first.max(second)))
}
