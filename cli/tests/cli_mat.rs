//! `kiln mat`: the printable calibration mat as a PDF and a PNG.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::kiln;

#[test]
fn writes_the_mat_as_pdf_and_png() {
    let dir = std::env::temp_dir().join(format!("kiln-mat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (pdf, png) = (dir.join("mat.pdf"), dir.join("mat.png"));
    let output = kiln()
        .args(["mat", "--paper", "letter", "--dpi", "50", "--out"])
        .arg(&pdf)
        .arg("--png")
        .arg(&png)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("kiln-mat-letter-v1") && stderr.contains("100 %"), "{stderr}");
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF-") && String::from_utf8_lossy(&bytes).contains("kiln-mat-letter-v1"));
    // Letter, landscape, at 50 dpi: 11 × 8.5 inches.
    let image = image::open(&png).unwrap();
    assert_eq!((image.width(), image.height()), (550, 425));
    let refused = kiln().args(["mat", "--paper", "b5", "--out"]).arg(&pdf).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "clap refuses an unknown paper");
    std::fs::remove_dir_all(&dir).unwrap();
}
