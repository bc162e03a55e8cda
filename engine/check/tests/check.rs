//! The capture check on the shared data sets and on defects made from their photos: blurred,
//! badly exposed, copied, truncated and unrelated photos, too few photos, half a ring.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use glam::{DMat3, DVec3};
use kiln_check::{
    CheckCode, CheckOptions, CheckReport, FocalSource, Outcome, Thresholds, Verdict, check_photos, measure_image,
};
use kiln_core::photos::{decode_oriented, gray_fitting};
use serde_json::Value;

fn shared_dataset(name: &str) -> Option<PathBuf> {
    kiln_testkit::dataset(name)
}

fn images_of(name: &str) -> Option<PathBuf> {
    let dataset = shared_dataset(name)?;
    let images = dataset.join("images");
    Some(if images.is_dir() { images } else { dataset })
}

fn check(input: &Path) -> CheckReport {
    let start = std::time::Instant::now();
    let report = check_photos(input, &CheckOptions::default(), &mut |_, _, _| {}).unwrap();
    eprintln!("{}: checked in {:.1} s", input.display(), start.elapsed().as_secs_f64());
    report
}

fn print(report: &CheckReport) {
    for photo in &report.photos {
        let m = photo.measures.as_ref();
        eprintln!(
            "{:>16} {:?} blur {:?} rel {:.2} lapvar {:.5} mean {:.2} hi {:.3} lo {:.3} p95 {:.2} partners {} {:?}",
            photo.path.file_name().unwrap().to_string_lossy(),
            photo.verdict,
            m.and_then(|m| m.image.edge_blur_px),
            m.map_or(0.0, |m| m.relative_sharpness),
            m.map_or(0.0, |m| m.image.laplacian_variance),
            m.map_or(0.0, |m| m.image.mean_luminance),
            m.map_or(0.0, |m| m.image.clipped_highlights),
            m.map_or(0.0, |m| m.image.clipped_shadows),
            m.map_or(0.0, |m| m.image.bright_level),
            m.map_or(0, |m| m.overlapping_photos),
            photo.findings.iter().map(|f| f.code.name()).collect::<Vec<_>>(),
        );
    }
    let s = &report.summary;
    eprintln!(
        "outcome {:?}; usable {}/{}; pairs {} of {} overlap; components {:?}; loop {} (gap {:?}°); {:.1} s",
        report.outcome,
        s.usable,
        s.photos,
        s.pairs_overlapping,
        s.pairs_matched,
        s.components.iter().map(Vec::len).collect::<Vec<_>>(),
        s.loop_closed,
        s.largest_gap_deg,
        s.seconds
    );
    for line in &report.advice {
        eprintln!("  - {line}");
    }
}

/// Sorted photo files of a folder.
fn photos_in(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// A fresh, empty folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-check-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn photo<'a>(report: &'a CheckReport, name: &str) -> &'a kiln_check::PhotoCheck {
    report
        .photos
        .iter()
        .find(|p| p.path.file_name().unwrap() == name)
        .unwrap_or_else(|| panic!("{name} not in the report"))
}

fn codes(report: &CheckReport, name: &str) -> Vec<String> {
    photo(report, name).findings.iter().map(|f| f.code.name().to_string()).collect()
}

fn has(report: &CheckReport, name: &str, code: &str) -> bool {
    codes(report, name).iter().any(|c| c == code)
}

/// The edge-blur measure on sharp photos and on copies blurred by a Gaussian of known σ (full
/// resolution): sharp photos measure under 1 px at the analysis size, and σ = 3 at least doubles
/// the measure on every data set (it shrinks with the downscale: 800 px → ×1, 1920 px → ×0.53,
/// 2832 px → ×0.36).
#[test]
fn edge_blur_grows_with_a_known_blur() {
    for name in ["bunny-synth", "fox", "sceaux-castle"] {
        let Some(images) = images_of(name) else { return };
        let files = photos_in(&images);
        for file in files.iter().step_by(files.len() / 4).take(4) {
            let decoded = decode_oriented(file).unwrap();
            let measure = |sigma: f32| {
                let image = if sigma == 0.0 { decoded.clone() } else { decoded.blur(sigma) };
                let (analysis, _) = gray_fitting(&image, CheckOptions::default().analysis_side);
                measure_image(&image, &analysis).edge_blur_px.unwrap()
            };
            let (sharp, one, three) = (measure(0.0), measure(1.0), measure(3.0));
            eprintln!("{name} {}: σ0 {sharp:.2}, σ1 {one:.2}, σ3 {three:.2}", file.display());
            assert!(sharp < 1.0, "{}: sharp photo measures {sharp}", file.display());
            assert!(sharp < one && one < three, "{}: not monotonic", file.display());
            assert!(three > 2.0 * sharp, "{}: σ 3 gives {three}, sharp {sharp}", file.display());
        }
    }
}

/// A data set's reference cameras: its transforms.json (fox: `transforms_present.json`, the
/// frames whose photos exist).
fn reference_transforms(dataset: &Path) -> Value {
    let present = dataset.join("transforms_present.json");
    let path = if present.is_file() { present } else { dataset.join("transforms.json") };
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Views closer to vertical than this (length of the horizontal part of the unit viewing
/// direction) have no azimuth: the check's `MIN_HORIZONTAL_VIEW`.
const MIN_HORIZONTAL_VIEW: f64 = 0.25;

/// The widest azimuth gap (degrees) of reference cameras, by the check's definition: the mean
/// camera up is the vertical; each viewing direction's azimuth around it; sorted on the circle,
/// the widest gap. `frames` are transforms.json frames: camera-to-world, OpenGL camera axes
/// (looks along −Z, +Y up), rows of a 4×4 matrix.
fn reference_gap(frames: &[&Value]) -> f64 {
    let world_from_camera = |frame: &Value| {
        let m = &frame["transform_matrix"];
        let at = |r: usize, c: usize| m[r][c].as_f64().unwrap();
        let column = |c: usize| DVec3::new(at(0, c), at(1, c), at(2, c));
        DMat3::from_cols(column(0), column(1), column(2))
    };
    let up = frames.iter().map(|f| world_from_camera(f) * DVec3::Y).sum::<DVec3>().normalize();
    let east = up.any_orthonormal_vector();
    let north = up.cross(east);
    let mut azimuths: Vec<f64> = frames
        .iter()
        .map(|f| world_from_camera(f) * DVec3::NEG_Z)
        .map(|view| view - view.dot(up) * up)
        .filter(|horizontal| horizontal.length() >= MIN_HORIZONTAL_VIEW)
        .map(|h| h.dot(north).atan2(h.dot(east)).to_degrees())
        .collect();
    azimuths.sort_by(f64::total_cmp);
    let wrap = azimuths[0] + 360.0 - azimuths[azimuths.len() - 1];
    azimuths.windows(2).map(|w| w[1] - w[0]).fold(wrap, f64::max)
}

/// How far the check's coverage may be from the reference poses' (degrees): fox measures 268°
/// against 264°.
const GAP_TOLERANCE_DEG: f64 = 15.0;

/// The check's coverage agrees with the reference gap `truth`: its measured gap within
/// [`GAP_TOLERANCE_DEG`], or (focal length guessed) its range over the plausible focal lengths
/// reaching it within the tolerance; and it says the photos go around exactly when they do.
fn assert_coverage_matches(report: &CheckReport, truth: f64) {
    let s = &report.summary;
    eprintln!(
        "reference gap {truth:.1}°; check: {:?} range {:?} ({:?})",
        s.largest_gap_deg, s.largest_gap_range_deg, s.coverage_unknown
    );
    match (s.largest_gap_deg, s.largest_gap_range_deg) {
        (Some(gap), _) => assert!((gap - truth).abs() <= GAP_TOLERANCE_DEG, "gap {gap:.1}°, reference {truth:.1}°"),
        (None, Some((narrowest, widest))) => assert!(
            narrowest - GAP_TOLERANCE_DEG <= truth && truth <= widest + GAP_TOLERANCE_DEG,
            "gap {narrowest:.1}–{widest:.1}°, reference {truth:.1}°"
        ),
        (None, None) => panic!("no coverage estimate: {:?}", s.coverage_unknown),
    }
    assert_eq!(s.loop_closed, truth <= Thresholds::default().max_coverage_gap_deg, "reference gap {truth:.1}°");
}

/// The set's one camera group: its focal length is self-calibrated within 5 % of the reference
/// `fl_x`, or left a guess (never a wrong "calibrated" value).
fn assert_focal_matches(report: &CheckReport, reference: &Value) {
    let truth = reference["fl_x"].as_f64().unwrap();
    let focal = &report.summary.focal_lengths[0];
    eprintln!("focal length {:.0} px ({:?}), reference {truth:.0} px", focal.focal_px, focal.source);
    assert_ne!(focal.source, FocalSource::Exif);
    if focal.source == FocalSource::SelfCalibrated {
        assert!((focal.focal_px / truth - 1.0).abs() < 0.05, "{focal:?}, reference {truth}");
    }
}

/// Check one data set, print it, and the figures every real data set must meet.
fn check_dataset(name: &str) -> Option<CheckReport> {
    let images = images_of(name)?;
    let report = check(&images);
    print(&report);
    assert_ne!(report.outcome, Outcome::WillFail, "{name}");
    assert_eq!(report.summary.photos, photos_in(&images).len());
    assert_eq!(report.summary.components.len(), 1, "{name}: one group of overlapping photos");
    for p in &report.photos {
        assert_ne!(p.verdict, Verdict::Reject, "{name}: {p:?}");
        assert!(
            !p.findings
                .iter()
                .any(|f| matches!(f.code, CheckCode::Blur | CheckCode::Overexposed | CheckCode::Underexposed)),
            "{name}: {p:?}"
        );
    }
    Some(report)
}

#[test]
fn bunny_synth_passes_and_closes_its_loop() {
    let Some(report) = check_dataset("bunny-synth") else { return };
    assert_eq!(report.summary.usable, 80);
    assert!(report.summary.loop_closed, "bunny-synth's cameras go around the object");
    assert_eq!(report.outcome, Outcome::Good, "{:?}", report.advice);
    // Blender renders carry no EXIF: the focal length will be estimated.
    assert!(report.photos.iter().all(|p| p.findings.iter().any(|f| f.code == CheckCode::NoExifFocal)));
    let reference = reference_transforms(&shared_dataset("bunny-synth").unwrap());
    assert_focal_matches(&report, &reference);
    let frames: Vec<&Value> = reference["frames"].as_array().unwrap().iter().collect();
    assert_coverage_matches(&report, reference_gap(&frames));
}

#[test]
fn fox_passes() {
    let Some(report) = check_dataset("fox") else { return };
    assert_eq!(report.summary.usable, 50);
    // Frames 0001–0007 come from one spot (their cameras in transforms.json lie within 3° of
    // each other around the fox): redundant.
    assert!(has(&report, "0004.jpg", "near_duplicate"), "{:?}", codes(&report, "0004.jpg"));
    // No EXIF: the focal length is self-calibrated (a guess of 1.2 × the longer side would
    // shrink every rotation by 40 %). The photos are an arc of about 96° in front of the fox, so
    // the check rightly says they do not go all the way around.
    let reference = reference_transforms(&shared_dataset("fox").unwrap());
    assert_focal_matches(&report, &reference);
    assert_eq!(report.summary.focal_lengths[0].source, FocalSource::SelfCalibrated);
    let frames: Vec<&Value> = reference["frames"].as_array().unwrap().iter().collect();
    assert_eq!(frames.len(), 50);
    assert_coverage_matches(&report, reference_gap(&frames));
    assert_eq!(report.outcome, Outcome::Risky);
}

#[test]
fn sceaux_castle_passes() {
    let Some(report) = check_dataset("sceaux-castle") else { return };
    assert_eq!(report.summary.usable, 11);
    // Eleven views of one façade: every pair overlaps, a narrow arc rather than a loop.
    assert_eq!(report.summary.pairs_overlapping, 55);
    assert!(!report.summary.loop_closed);
}

/// A bunny-synth subset with defects made from its own photos (and one fox photo).
#[test]
fn defects_made_from_real_photos_are_flagged() {
    let (Some(bunny), Some(fox)) = (images_of("bunny-synth"), images_of("fox")) else { return };
    let dir = temp_dir("defects");
    let files = photos_in(&bunny);
    for file in files.iter().take(40) {
        std::fs::copy(file, dir.join(file.file_name().unwrap())).unwrap();
    }
    let load = |name: &str| image::open(bunny.join(name)).unwrap();
    for name in ["0005.jpg", "0015.jpg", "0025.jpg"] {
        load(name).blur(3.0).save(dir.join(name)).unwrap();
    }
    let gain = |name: &str, factor: f32| {
        let mut rgb = load(name).to_rgb8();
        rgb.pixels_mut().flat_map(|p| p.0.iter_mut()).for_each(|v| *v = (f32::from(*v) * factor).min(255.0) as u8);
        rgb.save(dir.join(name)).unwrap();
    };
    gain("0010.jpg", 4.0);
    gain("0020.jpg", 0.2);
    std::fs::copy(bunny.join("0030.jpg"), dir.join("0030_copy.jpg")).unwrap();
    let bytes = std::fs::read(bunny.join("0035.jpg")).unwrap();
    std::fs::write(dir.join("0035_cut.jpg"), &bytes[..bytes.len() * 2 / 3]).unwrap();
    std::fs::copy(fox.join("0001.jpg"), dir.join("zz_fox.jpg")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a photo").unwrap();

    let report = check(&dir);
    print(&report);
    for name in ["0005.jpg", "0015.jpg", "0025.jpg"] {
        assert!(has(&report, name, "blur"), "{name}: {:?}", codes(&report, name));
    }
    assert!(has(&report, "0010.jpg", "overexposed"), "{:?}", codes(&report, "0010.jpg"));
    // ×4 clips 99 % of its pixels: nothing is left to match, so it is left out too.
    assert!(has(&report, "0010.jpg", "isolated"), "{:?}", codes(&report, "0010.jpg"));
    assert!(has(&report, "0020.jpg", "underexposed"), "{:?}", codes(&report, "0020.jpg"));
    assert!(has(&report, "0030_copy.jpg", "duplicate"));
    assert_eq!(photo(&report, "0030_copy.jpg").verdict, Verdict::Reject);
    assert_eq!(photo(&report, "0030.jpg").verdict, Verdict::Warn, "the original stays (only its EXIF warning)");
    assert!(has(&report, "0035_cut.jpg", "unreadable"));
    assert_eq!(photo(&report, "0035_cut.jpg").verdict, Verdict::Reject);
    assert!(has(&report, "zz_fox.jpg", "isolated"), "{:?}", codes(&report, "zz_fox.jpg"));
    assert_eq!(photo(&report, "zz_fox.jpg").verdict, Verdict::Reject);
    assert_eq!(report.summary.ignored_files, vec![dir.join("notes.txt")]);
    let defects =
        ["0005.jpg", "0015.jpg", "0025.jpg", "0010.jpg", "0020.jpg", "0030_copy.jpg", "0035_cut.jpg", "zz_fox.jpg"];
    for p in report.photos.iter().filter(|p| !defects.iter().any(|d| p.path.ends_with(d))) {
        assert_ne!(p.verdict, Verdict::Reject, "{p:?}");
        assert!(!p.findings.iter().any(|f| f.code == CheckCode::NearDuplicate), "{p:?}");
        let flagged = p
            .findings
            .iter()
            .any(|f| matches!(f.code, CheckCode::Blur | CheckCode::Overexposed | CheckCode::Underexposed));
        assert!(!flagged, "a sharp, well exposed original is flagged: {p:?}");
    }
    assert_ne!(report.outcome, Outcome::WillFail);
    let advice = report.advice.join("\n");
    assert!(advice.contains("3 photos are blurred: 0005.jpg, 0015.jpg, 0025.jpg"), "{advice}");
    assert!(advice.contains("zz_fox.jpg") && advice.contains("notes.txt"), "{advice}");
    assert_eq!(report.usable_photos(false).len(), report.photos.len() - 4);
    assert!(advice.contains("1 photo will be left out, could not be read"), "{advice}");
}

/// Bunny-synth photos whose camera azimuth lies in one half-turn: a contiguous half of the ring.
#[test]
fn half_a_ring_gets_coverage_advice() {
    let Some(dataset) = shared_dataset("bunny-synth") else { return };
    let transforms: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dataset.join("transforms.json")).unwrap()).unwrap();
    let dir = temp_dir("half-ring");
    let mut taken = Vec::new();
    for frame in transforms["frames"].as_array().unwrap() {
        let azimuth = frame["azimuth_deg"].as_f64().unwrap().rem_euclid(360.0);
        if azimuth < 180.0 {
            let file = frame["file_path"].as_str().unwrap();
            std::fs::copy(dataset.join(file), dir.join(Path::new(file).file_name().unwrap())).unwrap();
            taken.push(frame);
        }
    }
    assert!(taken.len() > 20, "{} photos in the half-turn", taken.len());
    let report = check(&dir);
    print(&report);
    assert!(!report.summary.loop_closed);
    assert_coverage_matches(&report, reference_gap(&taken));
    assert_eq!(report.outcome, Outcome::Risky);
    assert!(report.advice.iter().any(|a| a.contains("do not go all the way around")), "{:?}", report.advice);
}

#[test]
fn too_few_photos_will_fail() {
    let Some(bunny) = images_of("bunny-synth") else { return };
    let dir = temp_dir("two");
    for file in photos_in(&bunny).iter().take(2) {
        std::fs::copy(file, dir.join(file.file_name().unwrap())).unwrap();
    }
    let report = check(&dir);
    assert_eq!(report.outcome, Outcome::WillFail);
    assert!(!report.can_proceed());
    assert!(report.advice[0].contains("at least 3"), "{:?}", report.advice);

    let empty = temp_dir("empty");
    std::fs::write(empty.join("readme.md"), "no photos here").unwrap();
    let report = check(&empty);
    assert_eq!(report.outcome, Outcome::WillFail);
    assert!(report.advice[0].contains("no photos found"), "{:?}", report.advice);
    assert_eq!(report.summary.ignored_files.len(), 1);
}

/// Benchmark, not run by default (`--ignored`): the check's time against pose estimation's on
/// the same photos and machine. Prints the figures; speed is never asserted.
#[test]
#[ignore]
fn benchmark_check_against_poses() {
    use kiln_sfm::pipeline::{PosesOptions, estimate_poses};
    for name in ["bunny-synth", "fox"] {
        let Some(images) = images_of(name) else { return };
        let start = std::time::Instant::now();
        let report = check_photos(&images, &CheckOptions::default(), &mut |_, _, _| {}).unwrap();
        let check_seconds = start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        let poses = estimate_poses(&images, &PosesOptions::default(), &mut |_| {}, &|| false).unwrap();
        let poses_seconds = start.elapsed().as_secs_f64();
        println!(
            "{name}: check {check_seconds:.1} s ({:?}), poses {poses_seconds:.1} s ({} of {} registered): check / poses = {:.2}",
            report.outcome,
            poses.report.registered,
            poses.report.total,
            check_seconds / poses_seconds
        );
    }
}
