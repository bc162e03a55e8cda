//! The capture check's report ([`CheckReport`]): per-photo findings and measures, figures for the
//! set, the predicted outcome and advice. `kiln check --json` prints it; a job writes it to
//! `check/check-report.json`.

use std::path::{Path, PathBuf};

/// How bad one finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Good,
    /// Usable, but quality may suffer.
    Warn,
    /// Left out of a job unless the user insists (`--keep-all`).
    Reject,
}

/// What the check predicts for the whole set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Expect a complete model.
    Good,
    /// A model is likely, with gaps or lower quality (the advice says where).
    Risky,
    /// This set cannot work; a job refuses to start.
    WillFail,
}

/// What a [`Finding`] is about: a stable code for programs (the message is for people).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum CheckCode {
    /// The file could not be read or decoded.
    Unreadable,
    /// No focal length in EXIF: it will be estimated.
    NoExifFocal,
    /// Blurred (defocus or motion).
    Blur,
    /// An exact copy of another photo.
    Duplicate,
    /// Shares no features with any other photo.
    Isolated,
    /// Too few pixels for detail (a warning, or a rejection when far too few).
    LowResolution,
    /// Almost the same view as another photo (a burst).
    NearDuplicate,
    /// Too little texture to match.
    NoTexture,
    /// Taken with another camera than most of the set.
    OtherCamera,
    /// Burnt-out highlights over much of the frame.
    Overexposed,
    /// Overlaps only photos outside the largest group.
    SeparateGroup,
    /// Too dark.
    Underexposed,
}

impl CheckCode {
    /// The code as it appears in JSON.
    pub fn name(self) -> &'static str {
        match self {
            CheckCode::Unreadable => "unreadable",
            CheckCode::NoExifFocal => "no_exif_focal",
            CheckCode::Blur => "blur",
            CheckCode::Duplicate => "duplicate",
            CheckCode::Isolated => "isolated",
            CheckCode::LowResolution => "low_resolution",
            CheckCode::NearDuplicate => "near_duplicate",
            CheckCode::NoTexture => "no_texture",
            CheckCode::OtherCamera => "other_camera",
            CheckCode::Overexposed => "overexposed",
            CheckCode::SeparateGroup => "separate_group",
            CheckCode::Underexposed => "underexposed",
        }
    }
}

/// One finding about one photo, in words the user acts on.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
// In TypeScript `CheckFinding`: one namespace holds it and the verdict's `Finding`.
#[cfg_attr(feature = "ts", ts(rename = "CheckFinding"))]
pub struct Finding {
    pub verdict: Verdict,
    pub code: CheckCode,
    pub message: String,
}

/// The check of one photo.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PhotoCheck {
    pub path: PathBuf,
    /// The worst verdict of its findings ([`Verdict::Good`] without findings).
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    /// What was measured (absent when the photo could not be read).
    #[serde(default)]
    pub measures: Option<PhotoMeasures>,
}

/// The figures behind a photo's findings.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PhotoMeasures {
    /// Size as displayed (EXIF orientation applied).
    pub width: u32,
    pub height: u32,
    /// The camera group's key (camera, lens, focal length, size).
    pub camera: String,
    /// Whether EXIF gives the focal length.
    pub focal_from_exif: bool,
    /// EXIF orientation, 1–8.
    pub orientation: u16,
    /// Pixel statistics of the photo (sharpness, exposure).
    pub image: ImageMeasures,
    /// Sharpness over the set's median sharpness (1 = a typical photo of this set).
    pub relative_sharpness: f64,
    /// Photos that share verified matches with this one in the quick match pass.
    pub overlapping_photos: usize,
}

/// Figures about the set as a whole.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SetSummary {
    /// Photo files found (readable or not).
    pub photos: usize,
    /// Photos a job would use (not rejected).
    pub usable: usize,
    /// Files that are not photos (by extension), ignored.
    pub ignored_files: Vec<PathBuf>,
    /// Camera groups (camera, lens, focal length, size), with their photo counts.
    pub cameras: Vec<(String, usize)>,
    /// Photo pairs matched in the quick pass, and those verified as overlapping.
    pub pairs_matched: usize,
    pub pairs_overlapping: usize,
    /// Groups of photos linked by overlap (names), largest first; photos with no overlap are not
    /// listed here.
    pub components: Vec<Vec<String>>,
    /// Whether the largest group's photos go all the way around the object: its widest
    /// [`SetSummary::largest_gap_deg`] (or the whole [`SetSummary::largest_gap_range_deg`]) is
    /// small enough or, when neither tells, its overlap graph closes a loop.
    pub loop_closed: bool,
    /// The widest range of directions around the object (degrees of azimuth) that no photo of
    /// the largest group looks from, when the quick pass's rotations tell.
    #[serde(default)]
    pub largest_gap_deg: Option<f64>,
    /// Without [`SetSummary::largest_gap_deg`] because a focal length is guessed: the narrowest
    /// and widest value it takes over the plausible focal lengths.
    #[serde(default)]
    pub largest_gap_range_deg: Option<(f64, f64)>,
    /// Why [`SetSummary::largest_gap_deg`] is not given (e.g. the focal length could not be
    /// determined), when it is not.
    #[serde(default)]
    pub coverage_unknown: Option<String>,
    /// The focal length of each camera group (same order as [`SetSummary::cameras`]) and where it
    /// comes from.
    #[serde(default)]
    pub focal_lengths: Vec<FocalEstimate>,
    /// Wall-clock seconds the check took.
    pub seconds: f64,
}

/// Where a camera group's focal length comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum FocalSource {
    /// The photos' EXIF (35 mm equivalent, or focal length and sensor resolution).
    Exif,
    /// Estimated from the quick pass's verified pairs (no EXIF focal length).
    SelfCalibrated,
    /// No EXIF and the pairs do not determine it: the prior, 1.2 × the longer side.
    Guessed,
}

/// The focal length of one camera group.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct FocalEstimate {
    /// The camera group's key.
    pub camera: String,
    /// Focal length in the photos' pixels (as displayed).
    pub focal_px: f64,
    /// The prior it started from (EXIF, or 1.2 × the longer side).
    pub prior_px: f64,
    pub source: FocalSource,
}

/// The check of a photo set: `kiln check --json` prints this.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CheckReport {
    pub input: PathBuf,
    pub photos: Vec<PhotoCheck>,
    pub outcome: Outcome,
    #[serde(default)]
    pub summary: SetSummary,
    /// Advice for the set, most important first ("12 photos are blurred: …").
    pub advice: Vec<String>,
}

impl CheckReport {
    /// Whether a job may start on this set.
    pub fn can_proceed(&self) -> bool {
        self.outcome != Outcome::WillFail
    }

    /// The photos a job uses: all but the rejected ones, or all with `keep_all`.
    pub fn usable_photos(&self, keep_all: bool) -> Vec<&Path> {
        self.photos.iter().filter(|p| keep_all || p.verdict != Verdict::Reject).map(|p| p.path.as_path()).collect()
    }
}

/// The figures of one photo.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ImageMeasures {
    /// Estimated Gaussian σ of the photo's sharpest edges, in analysis-image pixels: about 0.5–1
    /// for a sharp photo, growing with defocus or motion blur. `None` when the photo shows no
    /// edges at all (a blank or fully clipped frame).
    pub edge_blur_px: Option<f64>,
    /// Variance of the 4-neighbour Laplacian of the analysis image (grey in [0, 1]): the classic
    /// blur measure, reported for reference (it depends on the content as much as on focus).
    pub laplacian_variance: f64,
    /// Mean grey level in [0, 1].
    pub mean_luminance: f64,
    /// Fraction of pixels at or above the capture check's clipped-white level (burnt-out highlights).
    pub clipped_highlights: f64,
    /// Fraction of pixels at or below its crushed-black level (crushed shadows).
    pub clipped_shadows: f64,
    /// Grey level below which 95 % of the pixels lie (how bright the bright parts get).
    pub bright_level: f64,
    /// 63-bit DCT perceptual hash (low frequencies of a 32×32 thumbnail above their median).
    pub perceptual_hash: u64,
    /// Hash of the decoded pixels: equal for photos with identical pixels.
    #[serde(skip)]
    pub pixel_hash: u64,
}
