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
        "outcome {:?}; usable {}/{}; pairs {} of {} overlap; components {:?}; loop {}; {:.1} s",
        report.outcome,
        s.usable,
        s.photos,
        s.pairs_overlapping,
        s.pairs_matched,
        s.components.iter().map(Vec::len).collect::<Vec<_>>(),
        s.loop_closed,
        s.seconds
    );
    for line in &report.advice {
        eprintln!("  - {line}");
    }
}

#[test]
fn measure_blur_on_real_photos() {
    for name in ["bunny-synth", "fox", "sceaux-castle"] {
        let Some(images) = images_of(name) else { return };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&images).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files.iter().step_by(files.len() / 5).take(5) {
            let decoded = decode_oriented(file).unwrap();
            let mut line = format!("{name} {}:", file.file_name().unwrap().to_string_lossy());
            for sigma in [0.0f32, 1.0, 2.0, 3.0] {
                let image = if sigma == 0.0 { decoded.clone() } else { decoded.blur(sigma) };
                let (analysis, _) = gray_fitting(&image, CheckOptions::default().analysis_side);
                let m = measure_image(&image, &analysis);
                line += &format!(" σ{sigma}: {:.2} ({:.5})", m.edge_blur_px.unwrap_or(-1.0), m.laplacian_variance);
            }
            eprintln!("{line}");
        }
    }
}

#[test]
fn measure_datasets() {
    for name in ["bunny-synth", "fox", "sceaux-castle"] {
        let Some(images) = images_of(name) else { return };
        let report = check(&images);
        print(&report);
        assert_ne!(report.outcome, Outcome::WillFail);
        assert!(report.photos.iter().all(|p| p.verdict != Verdict::Reject));
    }
}
