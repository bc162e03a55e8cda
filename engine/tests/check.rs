//! The capture check on the shared data sets and on defects made from their photos: blurred,
//! badly exposed, copied, truncated and unrelated photos, too few photos, half a ring.

use std::path::{Path, PathBuf};

use kiln_engine::check::{CheckOptions, CheckReport, Outcome, Verdict, check_photos, measure_image};
use kiln_engine::sfm::photos::{decode_oriented, gray_fitting};

fn shared_dataset(name: &str) -> Option<PathBuf> {
    let root = std::env::var_os("KILN_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets"));
    let dir = root.join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: dataset {name} not found at {} (set KILN_DATASETS)", dir.display());
        None
    }
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
            photo.findings.iter().map(|f| f.code.as_str()).collect::<Vec<_>>(),
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

fn photo<'a>(report: &'a CheckReport, name: &str) -> &'a kiln_engine::check::PhotoCheck {
    report.photos.iter().find(|p| p.path.file_name().unwrap() == name).unwrap_or_else(|| panic!("{name} not in the report"))
}

fn codes(report: &CheckReport, name: &str) -> Vec<String> {
    photo(report, name).findings.iter().map(|f| f.code.clone()).collect()
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
        assert!(!p.findings.iter().any(|f| f.code == "blur" || f.code.ends_with("exposed")), "{name}: {p:?}");
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
    assert!(report.photos.iter().all(|p| p.findings.iter().any(|f| f.code == "no_exif_focal")));
}

#[test]
fn fox_passes() {
    let Some(report) = check_dataset("fox") else { return };
    assert_eq!(report.summary.usable, 50);
    // Frames 0001–0007 come from one spot (their cameras in transforms.json lie within 3° of
    // each other around the fox): redundant.
    assert!(has(&report, "0004.jpg", "near_duplicate"), "{:?}", codes(&report, "0004.jpg"));
    // Not asserted: the coverage. The fox's reference poses go around it with a widest gap of
    // 56°, but the quick pass's chained rotations (focal length from the 1.2 × side prior) put
    // it at 189°, so the check wrongly says the photos do not go all the way around (known).
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
        assert!(!p.findings.iter().any(|f| f.code == "near_duplicate"), "{p:?}");
        let flagged = p.findings.iter().any(|f| ["blur", "overexposed", "underexposed"].contains(&f.code.as_str()));
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
    let mut taken = 0;
    for frame in transforms["frames"].as_array().unwrap() {
        let azimuth = frame["azimuth_deg"].as_f64().unwrap().rem_euclid(360.0);
        if azimuth < 180.0 {
            let file = frame["file_path"].as_str().unwrap();
            std::fs::copy(dataset.join(file), dir.join(Path::new(file).file_name().unwrap())).unwrap();
            taken += 1;
        }
    }
    assert!(taken > 20, "{taken} photos in the half-turn");
    let report = check(&dir);
    print(&report);
    assert!(!report.summary.loop_closed);
    // The true gap is 180°; the chained rotations measure 97° (rotations are under-estimated
    // with the focal-length prior), still over the 90° limit.
    assert!(report.summary.largest_gap_deg.is_some_and(|gap| gap > 90.0), "{:?}", report.summary.largest_gap_deg);
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
    use kiln_engine::sfm::pipeline::{PosesOptions, estimate_poses};
    for name in ["bunny-synth", "fox"] {
        let Some(images) = images_of(name) else { return };
        let start = std::time::Instant::now();
        let report = check_photos(&images, &CheckOptions::default(), &mut |_, _, _| {}).unwrap();
        let check_seconds = start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        let poses = estimate_poses(&images, &PosesOptions::default(), &mut |_| {}).unwrap();
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
