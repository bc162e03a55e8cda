//! SfM phases 1–2 against known answers: photo listing and EXIF (crafted JPEGs), SIFT keypoint
//! localisation on synthetic blobs, and matching invariance under known image transforms.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use glam::DVec2;
use image::{DynamicImage, GrayImage, Luma};
use kiln_core::image_buf::ImageGray;
use kiln_core::photos::PhotoError;
use kiln_core::photos::{decode_oriented, gray_fitting, list_photos, read_exif};
use kiln_vision::features::{DESCRIPTOR_LEN, Keypoint, SiftOptions, extract_features, sift};

fn fixture_image() -> PathBuf {
    kiln_testkit::bunny_mini().join("images/0000.jpg")
}

/// A fresh empty folder under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-sfm-features-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// Keypoint localisation

/// A bright Gaussian blob of std `sigma` centred at `(cx, cy)` (corner-origin pixels), sampled at
/// pixel centres `i + 0.5`, on a faint horizontal ramp. The ramp gives the gradient histogram a
/// dominant direction (a perfectly round blob has none, so no orientation) and leaves the
/// difference of Gaussians unchanged (blurring a linear function gives it back).
fn blob(size: u32, cx: f32, cy: f32, sigma: f32) -> ImageGray {
    let pixels = (0..size * size)
        .map(|i| {
            let (x, y) = ((i % size) as f32 + 0.5 - cx, (i / size) as f32 + 0.5 - cy);
            0.1 + 0.8 * (-(x * x + y * y) / (2.0 * sigma * sigma)).exp() + 0.001 * (i % size) as f32
        })
        .collect();
    ImageGray { width: size, height: size, pixels }
}

fn nearest(keypoints: &[Keypoint], x: f32, y: f32) -> Option<Keypoint> {
    keypoints.iter().copied().min_by(|a, b| (a.x - x).hypot(a.y - y).total_cmp(&(b.x - x).hypot(b.y - y)))
}

#[test]
fn blobs_are_found_at_their_centre_and_scale_in_every_octave() {
    let mut worst_position = 0.0f32;
    let mut scale_ratios = Vec::new();
    for first_octave in [-1, 0] {
        // Blob sizes whose scales fall into octaves −1, 0, 1 and 2.
        for sigma in [1.4f32, 2.6, 5.0, 10.0] {
            if first_octave == 0 && sigma < 2.0 {
                continue;
            }
            for (dx, dy) in [(0.0, 0.0), (0.25, 0.5), (0.5, 0.13), (0.77, 0.38)] {
                let (cx, cy) = (80.0 + dx, 81.0 + dy);
                let options = SiftOptions { first_octave, ..SiftOptions::default() };
                let (keypoints, descriptors) = sift(&blob(160, cx, cy, sigma), &options);
                assert_eq!(descriptors.len(), keypoints.len() * DESCRIPTOR_LEN);
                let found = nearest(&keypoints, cx, cy).unwrap_or_else(|| {
                    panic!("first octave {first_octave}, σ {sigma}, centre ({cx}, {cy}): no keypoint")
                });
                let error = (found.x - cx).hypot(found.y - cy);
                worst_position = worst_position.max(error);
                assert!(
                    error < 0.05,
                    "first octave {first_octave}, σ {sigma}, centre ({cx}, {cy}): found ({}, {})",
                    found.x,
                    found.y
                );
                // The blob seen through the scale space's assumed 0.5 px camera blur.
                let expected_scale = (sigma * sigma - 0.25).sqrt();
                scale_ratios.push(found.scale / expected_scale);
                assert!(
                    (found.scale / expected_scale - 1.0).abs() < 0.1,
                    "first octave {first_octave}, σ {sigma}: scale {} vs {expected_scale}",
                    found.scale
                );
            }
        }
    }
    let (low, high) = scale_ratios.iter().fold((f32::MAX, f32::MIN), |(l, h), &r| (l.min(r), h.max(r)));
    println!("blob centres: worst error {worst_position:.4} px; scale / expected in [{low:.3}, {high:.3}]");
}

// ---------------------------------------------------------------------------------------------
// Invariance under known transforms

/// Brute-force nearest neighbours from `a` to `b` passing Lowe's ratio test: (index in a, in b).
fn ratio_matches(a: &[f32], b: &[f32], ratio: f32) -> Vec<(usize, usize)> {
    let rows_b: Vec<&[f32]> = b.chunks_exact(DESCRIPTOR_LEN).collect();
    a.chunks_exact(DESCRIPTOR_LEN)
        .enumerate()
        .filter_map(|(i, da)| {
            let (mut best, mut second, mut best_j) = (f32::MAX, f32::MAX, 0);
            for (j, db) in rows_b.iter().enumerate() {
                let dot: f32 = da.iter().zip(db.iter()).map(|(x, y)| x * y).sum();
                let distance = (2.0 - 2.0 * dot).max(0.0);
                if distance < best {
                    (second, best, best_j) = (best, distance, j);
                } else if distance < second {
                    second = distance;
                }
            }
            (best < ratio * ratio * second).then_some((i, best_j))
        })
        .collect()
}

fn to_gray(image: &GrayImage) -> ImageGray {
    ImageGray {
        width: image.width(),
        height: image.height(),
        pixels: image.pixels().map(|p| f32::from(p[0]) / 255.0).collect(),
    }
}

/// Warps `source` by `target_from_source` (corner-origin pixels), sampling bilinearly at each
/// target pixel centre.
fn warp(source: &GrayImage, target_from_source: &glam::DMat3, width: u32, height: u32) -> GrayImage {
    let source_from_target = target_from_source.inverse();
    GrayImage::from_fn(width, height, |x, y| {
        let p = source_from_target * glam::DVec3::new(f64::from(x) + 0.5, f64::from(y) + 0.5, 1.0);
        let (u, v) = (p.x / p.z - 0.5, p.y / p.z - 0.5);
        let (u0, v0) = (u.floor(), v.floor());
        let inside =
            |i: f64, j: f64| i >= 0.0 && j >= 0.0 && i < f64::from(source.width()) && j < f64::from(source.height());
        if !inside(u0, v0) || !inside(u0 + 1.0, v0 + 1.0) {
            return Luma([0]);
        }
        let at = |i: f64, j: f64| f64::from(source.get_pixel(i as u32, j as u32)[0]);
        let (fu, fv) = (u - u0, v - v0);
        let top = at(u0, v0) * (1.0 - fu) + at(u0 + 1.0, v0) * fu;
        let bottom = at(u0, v0 + 1.0) * (1.0 - fu) + at(u0 + 1.0, v0 + 1.0) * fu;
        Luma([(top * (1.0 - fv) + bottom * fv).round() as u8])
    })
}

/// Matches features of `original` and `transformed`; returns (matches, fraction within 1.5 px
/// of `map(original point)`).
fn repeatability(
    original: &GrayImage,
    transformed: &GrayImage,
    map: impl Fn(DVec2) -> DVec2,
    options: &SiftOptions,
) -> (usize, f64) {
    let (ka, da) = sift(&to_gray(original), options);
    let (kb, db) = sift(&to_gray(transformed), options);
    let matches = ratio_matches(&da, &db, 0.8);
    let correct = matches
        .iter()
        .filter(|&&(i, j)| {
            let predicted = map(DVec2::new(f64::from(ka[i].x), f64::from(ka[i].y)));
            predicted.distance(DVec2::new(f64::from(kb[j].x), f64::from(kb[j].y))) < 1.5
        })
        .count();
    (matches.len(), correct as f64 / matches.len().max(1) as f64)
}

/// A textured test image: a sceaux-castle photo at 800 px when the datasets are present, else
/// the bunny-mini fixture (far fewer features).
fn invariance_image() -> (GrayImage, usize) {
    let castle = kiln_testkit::datasets().join("sceaux-castle/images/100_7100.JPG");
    let (path, side, min_matches) = if castle.exists() { (castle, 800, 100) } else { (fixture_image(), 200, 20) };
    println!("invariance image: {}", path.display());
    let decoded = decode_oriented(&path).unwrap();
    let (gray, _) = gray_fitting(&decoded, side);
    let bytes = gray.pixels.iter().map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect();
    (GrayImage::from_raw(gray.width, gray.height, bytes).unwrap(), min_matches)
}

#[test]
fn matches_survive_rotation_scaling_and_homography() {
    let (image, min_matches) = invariance_image();
    let options = SiftOptions { max_features: 2000, ..SiftOptions::default() };
    let (width, height) = (f64::from(image.width()), f64::from(image.height()));

    // A quarter turn clockwise: corner-origin (u, v) → (height − v, u).
    let turned = image::imageops::rotate90(&image);
    let (n, inliers) = repeatability(&image, &turned, |p| DVec2::new(height - p.y, p.x), &options);
    println!("rotation 90°: {n} matches, {:.1} % within 1.5 px", 100.0 * inliers);
    assert!(n >= min_matches && inliers >= 0.8, "rotation: {n} matches, {inliers:.3} correct");

    // Half size, centre-aligned resampling: (u, v) → (u / 2, v / 2).
    let half =
        image::imageops::resize(&image, image.width() / 2, image.height() / 2, image::imageops::FilterType::Triangle);
    let (n, inliers) = repeatability(&image, &half, |p| p * 0.5, &options);
    println!("scale 0.5: {n} matches, {:.1} % within 1.5 px", 100.0 * inliers);
    assert!(n >= min_matches / 2 && inliers >= 0.8, "scaling: {n} matches, {inliers:.3} correct");

    // A homography: rotate 20° and scale 0.85 about the centre, with a mild perspective.
    let centre = glam::DMat3::from_translation(glam::DVec2::new(width / 2.0, height / 2.0));
    let similarity = glam::DMat3::from_scale_angle_translation(DVec2::splat(0.85), 20f64.to_radians(), DVec2::ZERO);
    let mut perspective = glam::DMat3::IDENTITY;
    perspective.x_axis.z = 1.5e-4 * 800.0 / width;
    let homography = centre * perspective * similarity * centre.inverse();
    let warped = warp(&image, &homography, image.width(), image.height());
    let map = |p: DVec2| {
        let q = homography * p.extend(1.0);
        DVec2::new(q.x / q.z, q.y / q.z)
    };
    let (n, inliers) = repeatability(&image, &warped, map, &options);
    println!("homography: {n} matches, {:.1} % within 1.5 px", 100.0 * inliers);
    assert!(n >= min_matches && inliers >= 0.8, "homography: {n} matches, {inliers:.3} correct");
}

// ---------------------------------------------------------------------------------------------
// Photos and EXIF

/// A 32×24 grey JPEG of 8×8 blocks with distinct levels, so block positions survive JPEG.
fn block_image() -> GrayImage {
    GrayImage::from_fn(32, 24, |x, y| Luma([(20 + 18 * ((x / 8) + 4 * (y / 8))) as u8]))
}

/// JPEG bytes of `image` with an APP1 EXIF segment holding `fields`.
fn jpeg_with_exif(image: &GrayImage, fields: &[exif::Field]) -> Vec<u8> {
    let mut jpeg = Vec::new();
    DynamicImage::ImageLuma8(image.clone()).write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
    let mut writer = exif::experimental::Writer::new();
    for field in fields {
        writer.push_field(field);
    }
    let mut tiff = Cursor::new(Vec::new());
    writer.write(&mut tiff, false).unwrap();
    let tiff = tiff.into_inner();
    let mut segment = vec![0xFF, 0xE1];
    segment.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    segment.extend_from_slice(b"Exif\0\0");
    segment.extend_from_slice(&tiff);
    // After the SOI marker.
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&segment);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn field(tag: exif::Tag, value: exif::Value) -> exif::Field {
    exif::Field { tag, ifd_num: exif::In::PRIMARY, value }
}

/// Where stored pixel `(x, y)` of a `w × h` image is displayed under each EXIF orientation
/// (written from the EXIF definitions, independently of the code under test).
fn displayed(orientation: u16, x: u32, y: u32, w: u32, h: u32) -> (u32, u32) {
    match orientation {
        1 => (x, y),
        2 => (w - 1 - x, y),
        3 => (w - 1 - x, h - 1 - y),
        4 => (x, h - 1 - y),
        5 => (y, x),
        6 => (h - 1 - y, x),
        7 => (h - 1 - y, w - 1 - x),
        8 => (y, w - 1 - x),
        _ => unreachable!(),
    }
}

#[test]
fn exif_orientation_and_focal_give_oriented_pixels_and_prior() {
    let dir = scratch("exif");
    let stored = block_image();
    for orientation in 1..=8u16 {
        let fields = [
            field(exif::Tag::Orientation, exif::Value::Short(vec![orientation])),
            field(exif::Tag::Make, exif::Value::Ascii(vec![b"Kiln".to_vec()])),
            field(exif::Tag::Model, exif::Value::Ascii(vec![b"Test Cam".to_vec()])),
            field(exif::Tag::FocalLength, exif::Value::Rational(vec![exif::Rational { num: 42, denom: 10 }])),
            field(exif::Tag::FocalLengthIn35mmFilm, exif::Value::Short(vec![28])),
        ];
        let path = dir.join(format!("o{orientation}.jpg"));
        std::fs::write(&path, jpeg_with_exif(&stored, &fields)).unwrap();

        let exif = read_exif(&path, 32);
        assert_eq!(exif.orientation, orientation);
        assert_eq!(exif.make.as_deref(), Some("Kiln"));
        assert_eq!(exif.focal_length_mm, Some(4.2));
        assert_eq!(exif.focal_length_35mm, Some(28.0));

        let decoded = decode_oriented(&path).unwrap().to_luma8();
        let expected_size = if orientation >= 5 { (24, 32) } else { (32, 24) };
        assert_eq!(decoded.dimensions(), expected_size, "orientation {orientation}");
        for (x, y) in [(4, 4), (28, 4), (12, 20), (20, 12)] {
            let (dx, dy) = displayed(orientation, x, y, 32, 24);
            let (want, got) = (stored.get_pixel(x, y)[0], decoded.get_pixel(dx, dy)[0]);
            assert!(
                want.abs_diff(got) <= 4,
                "orientation {orientation}: stored ({x},{y}) = {want}, displayed ({dx},{dy}) = {got}"
            );
        }
    }

    let set = list_photos(&dir).unwrap();
    assert_eq!(set.photos.len(), 8);
    assert!(set.rejected.is_empty());
    let six = set.photos.iter().find(|p| p.name == "o6.jpg").unwrap();
    assert_eq!((six.width, six.height), (24, 32));
    // Two groups: the upright 32×24 ones and the quarter-turned 24×32 ones.
    assert_eq!(set.groups.len(), 2);
    let group = &set.groups[six.group];
    assert!(group.focal_from_exif);
    assert_eq!((group.prior.width, group.prior.height), (24, 32));
    // 28 mm equivalent: the diagonal field of view of a 28 mm lens on a 36 × 24 mm frame.
    let expected = 28.0 * 40.0 / 36f64.hypot(24.0);
    assert!((group.prior.focal - expected).abs() < 1e-9, "{} vs {expected}", group.prior.focal);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn listing_finds_photos_recursively_and_rejects_unreadable_ones() {
    let dir = scratch("listing");
    let jpeg = std::fs::read(fixture_image()).unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join(".hidden")).unwrap();
    std::fs::write(dir.join("b.JPG"), &jpeg).unwrap();
    std::fs::write(dir.join("sub/a.jpeg"), &jpeg).unwrap();
    std::fs::write(dir.join(".hidden/c.jpg"), &jpeg).unwrap();
    std::fs::write(dir.join(".d.jpg"), &jpeg).unwrap();
    std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
    std::fs::write(dir.join("garbage.png"), b"this is not a png").unwrap();
    // Cut inside the header segments: the size cannot be read.
    let cut_header = dir.join("cut_header.jpg");
    std::fs::write(&cut_header, &jpeg[..40]).unwrap();
    // Cut inside the image data: the header is intact.
    let truncated = dir.join("truncated.jpg");
    std::fs::write(&truncated, &jpeg[..jpeg.len() / 3]).unwrap();

    let set = list_photos(&dir).unwrap();
    let names: Vec<&str> = set.photos.iter().map(|p| p.name.as_str()).collect();
    let rejected: Vec<&Path> = set.rejected.iter().map(|r| r.path.as_path()).collect();
    assert!(rejected.contains(&dir.join("garbage.png").as_path()), "{rejected:?}");
    assert!(set.rejected.iter().all(|r| r.reason.contains("not a readable JPEG/PNG")));
    assert!(names.starts_with(&["b.JPG", "sub/a.jpeg"]), "{names:?}");
    assert!(set.groups.iter().all(|g| !g.focal_from_exif && (g.prior.focal - 240.0).abs() < 1e-9));
    assert!(rejected.contains(&cut_header.as_path()), "{rejected:?}");
    // The image crate's JPEG decoder fills a truncated scan with grey instead of failing, so this
    // one is listed; the pipeline's screening (`truncated_jpeg_reason`) sets it aside. Extraction
    // must not panic on it either way.
    let photo = set.photos.iter().find(|p| p.name == "truncated.jpg").expect("header is intact");
    match extract_features(photo, &SiftOptions::default()) {
        Ok(_) => {}
        Err(PhotoError::Decode { path, .. }) => assert_eq!(path, truncated),
        Err(other) => panic!("truncated JPEG gave {other:?}"),
    }

    let empty = scratch("empty");
    assert!(matches!(list_photos(&empty), Err(PhotoError::Unusable { .. })));
    assert!(matches!(list_photos(&dir.join("missing")), Err(PhotoError::Io { .. })));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn extract_features_gives_consistent_features_on_a_photo() {
    let photo_set = list_photos(fixture_image().parent().unwrap()).unwrap();
    let photo = &photo_set.photos[0];
    let features = extract_features(photo, &SiftOptions::default()).unwrap();
    println!("{}: {} keypoints", photo.name, features.len());
    assert!(features.len() > 50);
    assert_eq!(features.colors.len(), features.len());
    assert_eq!(features.descriptors.len(), features.len() * DESCRIPTOR_LEN);
    for (i, k) in features.keypoints.iter().enumerate() {
        assert!(k.x >= 0.0 && k.y >= 0.0 && k.x <= photo.width as f32 && k.y <= photo.height as f32);
        let norm: f32 = features.descriptor(i).iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
    // Downscaling before extraction keeps coordinates in the full-resolution frame.
    let small = extract_features(photo, &SiftOptions { max_image_side: 100, ..SiftOptions::default() }).unwrap();
    let strongest = small.keypoints[0];
    let closest = nearest(&features.keypoints, strongest.x, strongest.y).unwrap();
    assert!((closest.x - strongest.x).hypot(closest.y - strongest.y) < 1.0, "{strongest:?} vs {closest:?}");
}

#[test]
fn dataset_photos_exif_report() {
    let root = kiln_testkit::datasets();
    for name in ["fox", "sceaux-castle"] {
        let images = root.join(name).join("images");
        if !images.exists() {
            println!("SKIPPED: {} absent", images.display());
            continue;
        }
        let set = list_photos(&images).unwrap();
        let photo = &set.photos[0];
        println!(
            "{name}: {} photos, {} rejected, first {} {}×{} exif {:?}",
            set.photos.len(),
            set.rejected.len(),
            photo.name,
            photo.width,
            photo.height,
            photo.exif
        );
        for group in &set.groups {
            println!("  group {}: focal {:.1} (from EXIF: {})", group.key, group.prior.focal, group.focal_from_exif);
        }
        assert!(set.rejected.is_empty());
        if name == "sceaux-castle" {
            // K.txt: f = 2905.88 px. The 35 mm equivalent (35 mm) prior must be within 5 %.
            let group = &set.groups[0];
            assert!(group.focal_from_exif && (group.prior.focal / 2905.88 - 1.0).abs() < 0.05, "{}", group.prior.focal);
        }
    }
}
