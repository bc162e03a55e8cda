//! The input photos: listing a folder, EXIF (orientation, focal length, camera), grouping photos
//! that share intrinsics, and decoding them with the orientation applied. Photos are only read.
//!
//! Listing reads only each file's header and EXIF, never its pixels. [`decode_oriented`] is the
//! one place that turns a photo file into pixels as displayed (all eight EXIF orientations); the
//! trainer's loader calls it too, so SfM and training see the same pixels.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::camera_model::RadialCamera;
use crate::image_buf::ImageGray;

/// Errors listing and decoding photos. Each names the problem, then the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    #[error("{source}: {}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot decode image: {source}: {}", path.display())]
    Decode { path: PathBuf, source: image::ImageError },
    /// A photo Kiln cannot use (unsupported size, zero size, …).
    #[error("{problem}: {}", path.display())]
    BadPhoto { path: PathBuf, problem: String },
    /// The input as a whole holds no usable photos; `problem` says why.
    #[error("{problem}: {}", input.display())]
    Unusable { input: PathBuf, problem: String },
}

/// What EXIF says about a photo (all optional: many photos carry none).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExifSummary {
    pub make: Option<String>,
    pub model: Option<String>,
    pub lens: Option<String>,
    pub focal_length_mm: Option<f64>,
    pub focal_length_35mm: Option<f64>,
    /// EXIF orientation, 1–8 (1 = as stored).
    pub orientation: u16,
    /// Sensor pixels per millimetre along the stored image's X axis (FocalPlaneXResolution in
    /// its unit, rescaled when the stored image is smaller than the sensor's `PixelXDimension`).
    #[serde(default)]
    pub focal_plane_pixels_per_mm: Option<f64>,
}

/// One usable photo.
#[derive(Clone, Debug, PartialEq)]
pub struct PhotoInfo {
    pub path: PathBuf,
    /// Path relative to the input folder, with `/` separators (the COLMAP image name).
    pub name: String,
    /// Size as displayed (after the EXIF orientation).
    pub width: u32,
    pub height: u32,
    pub exif: ExifSummary,
    /// Index into [`PhotoSet::groups`].
    pub group: usize,
}

/// Photos that share camera, lens and image size, and so share intrinsics.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraGroup {
    /// Human-readable key, e.g. `"Apple iPhone 12 · 4.2 mm · 4032×3024"`.
    pub key: String,
    /// The starting intrinsics: EXIF focal length if known, else 1.2 × the longer side.
    pub prior: RadialCamera,
    pub focal_from_exif: bool,
}

/// A photo that could not be used, and why (in words the user acts on).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RejectedPhoto {
    pub path: PathBuf,
    pub reason: String,
}

/// The photos of one input folder.
#[derive(Clone, Debug, PartialEq)]
pub struct PhotoSet {
    pub input: PathBuf,
    pub photos: Vec<PhotoInfo>,
    pub groups: Vec<CameraGroup>,
    pub rejected: Vec<RejectedPhoto>,
}

/// Focal length as a multiple of the longer image side when EXIF says nothing usable. COLMAP's
/// default prior: a normal lens (about 53° horizontal field of view on the longer side).
const DEFAULT_FOCAL_FACTOR: f64 = 1.2;

/// Diagonal of the 36 × 24 mm frame that "35 mm equivalent focal length" refers to (CIPA DC-008
/// defines the equivalence by the diagonal field of view, which is what phones write).
const FULL_FRAME_DIAGONAL_MM: f64 = 43.266_615_305_567_87;

/// An EXIF focal length outside this range of multiples of the longer side (fields of view from
/// ~2° to ~135°) is a broken tag, not a lens; the default prior is safer.
const PLAUSIBLE_FOCAL_FACTORS: std::ops::RangeInclusive<f64> = 0.2..=30.0;

/// File extensions taken as photos (compared case-insensitively).
const PHOTO_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// The photos in `input` (recursively, sorted by relative name), their EXIF and camera groups.
/// Files whose header cannot be read are listed in [`PhotoSet::rejected`].
pub fn list_photos(input: &Path) -> Result<PhotoSet, PhotoError> {
    let files = folder_files(input)?.photos;
    let mut photos = Vec::new();
    let mut rejected = Vec::new();
    let mut groups: Vec<CameraGroup> = Vec::new();
    let mut group_of_key: BTreeMap<String, usize> = BTreeMap::new();
    for path in files {
        let (width, height, exif) = match read_header(&path) {
            Ok(header) => header,
            Err(reason) => {
                tracing::warn!("{reason}: {}", path.display());
                rejected.push(RejectedPhoto { path, reason });
                continue;
            }
        };
        let key = group_key(&exif, width, height);
        let group = *group_of_key.entry(key.clone()).or_insert_with(|| {
            let (focal, focal_from_exif) = focal_prior(&exif, width, height);
            groups.push(CameraGroup { key, prior: RadialCamera::pinhole(width, height, focal), focal_from_exif });
            groups.len() - 1
        });
        let name = relative_name(input, &path);
        photos.push(PhotoInfo { path, name, width, height, exif, group });
    }
    if photos.is_empty() {
        let problem = if rejected.is_empty() {
            "no photos found (looked for .jpg, .jpeg and .png files)".to_string()
        } else {
            format!("none of the {} photo files could be read", rejected.len())
        };
        return Err(PhotoError::Unusable { input: input.to_path_buf(), problem });
    }
    Ok(PhotoSet { input: input.to_path_buf(), photos, groups, rejected })
}

/// The files of a folder as the photo lister sees them: [`folder_files`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderFiles {
    /// Files named as photos ([`is_photo_name`]), sorted.
    pub photos: Vec<PathBuf>,
    /// Every other file, sorted: what a photo folder holds that is ignored.
    pub others: Vec<PathBuf>,
}

/// The files under `folder`, recursively, split into photos (by extension) and the rest. Hidden
/// entries (names starting with `.`) are skipped, hidden folders with everything in them.
pub fn folder_files(folder: &Path) -> Result<FolderFiles, PhotoError> {
    let mut files = FolderFiles::default();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let io_error = |source| PhotoError::Io { path: dir.clone(), source };
        for entry in std::fs::read_dir(&dir).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            if entry.file_type().map_err(io_error)?.is_dir() {
                pending.push(path);
            } else if is_photo_name(&path) {
                files.photos.push(path);
            } else {
                tracing::debug!("not a photo, ignored: {}", path.display());
                files.others.push(path);
            }
        }
    }
    files.photos.sort();
    files.others.sort();
    Ok(files)
}

/// Whether `path` has a photo extension (.jpg, .jpeg or .png, in any case).
pub fn is_photo_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PHOTO_EXTENSIONS.iter().any(|p| e.eq_ignore_ascii_case(p)))
}

/// `path` relative to `input`, with `/` separators whatever the platform's.
pub fn relative_name(input: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(input).unwrap_or(path);
    relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Oriented size and EXIF of a photo from its header, or a reason the user understands.
fn read_header(path: &Path) -> Result<(u32, u32, ExifSummary), String> {
    let (stored_width, stored_height) = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| format!("cannot open: {e}"))?
        .into_dimensions()
        .map_err(|e| format!("not a readable JPEG/PNG: {e}"))?;
    if stored_width == 0 || stored_height == 0 {
        return Err("not a readable JPEG/PNG: the image has zero size".into());
    }
    let exif = read_exif(path, stored_width);
    let (width, height) = oriented_size(stored_width, stored_height, exif.orientation);
    Ok((width, height, exif))
}

/// Width and height as displayed: orientations 5–8 turn the image by a quarter.
pub fn oriented_size(stored_width: u32, stored_height: u32, orientation: u16) -> (u32, u32) {
    if (5..=8).contains(&orientation) { (stored_height, stored_width) } else { (stored_width, stored_height) }
}

/// The EXIF of a photo; missing or unreadable EXIF gives the defaults (orientation 1).
/// `stored_width` rescales the focal-plane resolution when the photo was resized.
pub fn read_exif(path: &Path, stored_width: u32) -> ExifSummary {
    let parsed = File::open(path)
        .map_err(exif::Error::from)
        .and_then(|file| exif::Reader::new().read_from_container(&mut BufReader::new(file)));
    let exif = match parsed {
        Ok(exif) => exif,
        Err(e) => {
            tracing::debug!("no EXIF ({e}): {}", path.display());
            return ExifSummary { orientation: 1, ..ExifSummary::default() };
        }
    };
    let field = |tag| exif.get_field(tag, exif::In::PRIMARY).map(|f| &f.value);
    let text = |tag| field(tag).and_then(ascii_value);
    let number = |tag| field(tag).and_then(number_value).filter(|v| v.is_finite() && *v > 0.0);
    let orientation = field(exif::Tag::Orientation)
        .and_then(|v| v.get_uint(0))
        .and_then(|o| u16::try_from(o).ok())
        .filter(|o| (1..=8).contains(o))
        .unwrap_or(1);
    ExifSummary {
        make: text(exif::Tag::Make),
        model: text(exif::Tag::Model),
        lens: text(exif::Tag::LensModel),
        focal_length_mm: number(exif::Tag::FocalLength),
        focal_length_35mm: number(exif::Tag::FocalLengthIn35mmFilm),
        orientation,
        focal_plane_pixels_per_mm: focal_plane_pixels_per_mm(
            number(exif::Tag::FocalPlaneXResolution),
            field(exif::Tag::FocalPlaneResolutionUnit).and_then(|v| v.get_uint(0)),
            number(exif::Tag::PixelXDimension),
            stored_width,
        ),
    }
}

/// Pixels per millimetre on the sensor, in the stored image's pixels. EXIF resolution units:
/// 2 = inch (the default), 3 = centimetre, 4 = millimetre (a common extension).
fn focal_plane_pixels_per_mm(
    resolution: Option<f64>,
    unit: Option<u32>,
    sensor_width_pixels: Option<f64>,
    stored_width: u32,
) -> Option<f64> {
    let millimetres_per_unit = match unit.unwrap_or(2) {
        2 => 25.4,
        3 => 10.0,
        4 => 1.0,
        _ => return None,
    };
    let per_mm = resolution? / millimetres_per_unit;
    let resized = sensor_width_pixels.map_or(1.0, |w| f64::from(stored_width) / w);
    Some(per_mm * resized)
}

fn ascii_value(value: &exif::Value) -> Option<String> {
    let exif::Value::Ascii(parts) = value else { return None };
    let text =
        String::from_utf8_lossy(parts.first()?).trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string();
    (!text.is_empty()).then_some(text)
}

fn number_value(value: &exif::Value) -> Option<f64> {
    match value {
        exif::Value::Rational(v) => v.first().map(|r| r.to_f64()),
        exif::Value::SRational(v) => v.first().map(|r| r.to_f64()),
        exif::Value::Float(v) => v.first().map(|&f| f64::from(f)),
        exif::Value::Double(v) => v.first().copied(),
        other => other.get_uint(0).map(f64::from),
    }
}

/// Photos with equal keys share intrinsics.
fn group_key(exif: &ExifSummary, width: u32, height: u32) -> String {
    let mut parts: Vec<String> = [&exif.make, &exif.model, &exif.lens].into_iter().flatten().cloned().collect();
    if parts.is_empty() {
        parts.push("unknown camera".into());
    }
    if let Some(f) = exif.focal_length_mm {
        parts.push(format!("{f:.2} mm"));
    }
    if let Some(f) = exif.focal_length_35mm {
        parts.push(format!("{f:.0} mm (35 mm equivalent)"));
    }
    parts.push(format!("{width}×{height}"));
    parts.join(" · ")
}

/// Focal length prior in pixels of the oriented image, and whether it came from EXIF.
///
/// In order of trust:
/// 1. 35 mm equivalent `f35`: equal diagonal fields of view, so
///    `f_px = f35 × diagonal_px / 43.27 mm` (the 36 × 24 mm frame's diagonal);
/// 2. the true focal length times the sensor's pixels per millimetre (focal-plane resolution);
/// 3. `1.2 × the longer side` (COLMAP's default).
///
/// A value outside [`PLAUSIBLE_FOCAL_FACTORS`] falls through to the next.
pub fn focal_prior(exif: &ExifSummary, width: u32, height: u32) -> (f64, bool) {
    let longer = f64::from(width.max(height));
    let diagonal = f64::from(width).hypot(f64::from(height));
    let from_35mm = exif.focal_length_35mm.map(|f35| f35 * diagonal / FULL_FRAME_DIAGONAL_MM);
    let from_sensor = exif.focal_length_mm.zip(exif.focal_plane_pixels_per_mm).map(|(f, per_mm)| f * per_mm);
    [from_35mm, from_sensor]
        .into_iter()
        .flatten()
        .find(|f| PLAUSIBLE_FOCAL_FACTORS.contains(&(f / longer)))
        .map_or((DEFAULT_FOCAL_FACTOR * longer, false), |f| (f, true))
}

/// Decodes a photo and applies its EXIF orientation (all eight cases), giving pixels as
/// displayed.
pub fn decode_oriented(path: &Path) -> Result<image::DynamicImage, PhotoError> {
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|source| PhotoError::Io { path: path.to_path_buf(), source })?;
    let mut decoded = reader.decode().map_err(|source| PhotoError::Decode { path: path.to_path_buf(), source })?;
    if decoded.width() == 0 || decoded.height() == 0 {
        return Err(PhotoError::BadPhoto { path: path.to_path_buf(), problem: "image has zero size".into() });
    }
    let orientation = read_exif(path, decoded.width()).orientation;
    if let Some(orientation) = u8::try_from(orientation).ok().and_then(image::metadata::Orientation::from_exif) {
        decoded.apply_orientation(orientation);
    }
    Ok(decoded)
}

/// The photo as grey levels in [0, 1] (the image crate's luma: Rec. 709 weights on the sRGB
/// values), oriented, downscaled
/// so its longer side is at most `max_side`; with the scale `grey pixels / photo pixels` (≤ 1).
/// A point at `p` in the grey image (corner origin) is at `p / scale` in the photo.
pub fn load_gray(photo: &PhotoInfo, max_side: u32) -> Result<(ImageGray, f64), PhotoError> {
    Ok(gray_fitting(&decode_oriented(&photo.path)?, max_side))
}

/// [`load_gray`] for an already decoded image.
pub fn gray_fitting(image: &image::DynamicImage, max_side: u32) -> (ImageGray, f64) {
    let gray = image.to_luma32f();
    let longer = gray.width().max(gray.height());
    if longer <= max_side.max(1) {
        let (width, height) = gray.dimensions();
        return (ImageGray { width, height, pixels: gray.into_raw() }, 1.0);
    }
    let scale = f64::from(max_side.max(1)) / f64::from(longer);
    let side = |s: u32| ((f64::from(s) * scale).round() as u32).max(1);
    let (width, height) = (side(gray.width()), side(gray.height()));
    // Triangle filtering is centre-aligned (output centre `(i + 0.5) / s` in input pixels) and
    // widens with the scale, so it does not alias.
    let resized = image::imageops::resize(&gray, width, height, image::imageops::FilterType::Triangle);
    // The exact per-axis scales differ from `scale` by the rounding; use the horizontal one.
    (ImageGray { width, height, pixels: resized.into_raw() }, f64::from(width) / f64::from(image.width()))
}

/// Fewest photos that can give poses: two views fix a relative pose only up to scale and with no
/// check; a third view is the first that can confirm it.
pub const MIN_PHOTOS: usize = 3;

/// JPEG markers: start of image, start of scan, end of image.
const JPEG_SOI: u8 = 0xD8;
const JPEG_SOS: u8 = 0xDA;
const JPEG_EOI: u8 = 0xD9;

/// Why a photo file is cut short, when it is a JPEG whose image data never ends. The decoder
/// Kiln uses fills a truncated JPEG's missing rows with grey instead of failing, which would put
/// a half-blank photo into the reconstruction; a complete JPEG has an end-of-image marker after
/// its first scan (entropy-coded data cannot contain one, and trailers after it are allowed).
pub fn truncated_jpeg_reason(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    is_truncated_jpeg(&bytes).then(|| {
        "could not decode: the JPEG file ends before its image data does (an incomplete copy or download?)".to_string()
    })
}

fn is_truncated_jpeg(bytes: &[u8]) -> bool {
    if bytes.get(..2) != Some(&[0xFF, JPEG_SOI][..]) {
        return false;
    }
    // Walk the marker segments up to the first start of scan.
    let mut at = 2;
    loop {
        while bytes.get(at..at + 2) == Some(&[0xFF, 0xFF][..]) {
            at += 1;
        }
        let Some(&[0xFF, marker, high, low]) = bytes.get(at..at + 4) else {
            return bytes.len() < at + 4;
        };
        at += 2 + usize::from(u16::from_be_bytes([high, low]));
        if marker == JPEG_SOS {
            break;
        }
    }
    !bytes.get(at..).is_some_and(|scan| scan.windows(2).any(|w| w == [0xFF, JPEG_EOI]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_jpegs_are_told_from_complete_ones() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/bunny-mini/images/0000.jpg");
        let bytes = std::fs::read(&path).unwrap();
        assert!(!is_truncated_jpeg(&bytes));
        let mut with_trailer = bytes.clone();
        with_trailer.extend_from_slice(b"trailing data some cameras append");
        assert!(!is_truncated_jpeg(&with_trailer));
        for fraction in [0.01, 0.3, 0.9, 0.999] {
            let cut = (bytes.len() as f64 * fraction) as usize;
            assert!(is_truncated_jpeg(&bytes[..cut]), "cut at {cut} of {}", bytes.len());
        }
        assert!(!is_truncated_jpeg(b"\x89PNG not a jpeg"));
        assert!(truncated_jpeg_reason(&path).is_none());
    }

    #[test]
    fn folder_files_splits_photos_from_other_files_and_skips_hidden_entries() {
        let folder = std::env::temp_dir().join(format!("kiln-folder-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        for name in ["b.JPG", "a.png", "notes.txt", "sub/c.jpeg", "sub/d.heic", ".hidden.jpg", ".cache/e.jpg"] {
            let path = folder.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        let files = folder_files(&folder).unwrap();
        let names = |paths: &[PathBuf]| paths.iter().map(|p| relative_name(&folder, p)).collect::<Vec<_>>();
        assert_eq!(names(&files.photos), ["a.png", "b.JPG", "sub/c.jpeg"]);
        assert_eq!(names(&files.others), ["notes.txt", "sub/d.heic"]);
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[test]
    fn quarter_turn_orientations_swap_sides() {
        for orientation in 1..=8 {
            let expected = if orientation >= 5 { (30, 40) } else { (40, 30) };
            assert_eq!(oriented_size(40, 30, orientation), expected, "orientation {orientation}");
        }
    }

    #[test]
    fn focal_prior_prefers_35mm_then_sensor_then_default() {
        let exif = ExifSummary { focal_length_35mm: Some(35.0), ..ExifSummary::default() };
        let (f, from_exif) = focal_prior(&exif, 2832, 2128);
        // Same diagonal field of view as a 35 mm lens on a 36×24 mm frame.
        let half_diagonal_angle = (FULL_FRAME_DIAGONAL_MM / 2.0 / 35.0).atan();
        assert!(from_exif);
        assert!(((2832f64.hypot(2128.0) / 2.0 / f).atan() - half_diagonal_angle).abs() < 1e-12);

        let exif = ExifSummary {
            focal_length_mm: Some(4.0),
            focal_plane_pixels_per_mm: Some(500.0),
            ..ExifSummary::default()
        };
        assert_eq!(focal_prior(&exif, 4000, 3000), (2000.0, true));

        let broken = ExifSummary { focal_length_35mm: Some(0.5), ..ExifSummary::default() };
        assert_eq!(focal_prior(&broken, 800, 600), (960.0, false));
    }

    #[test]
    fn focal_plane_units_and_resizing() {
        // 2540 px/inch = 100 px/mm; the photo was stored at half the sensor width.
        let per_mm = focal_plane_pixels_per_mm(Some(2540.0), Some(2), Some(4000.0), 2000).unwrap();
        assert!((per_mm - 50.0).abs() < 1e-9);
        assert_eq!(focal_plane_pixels_per_mm(Some(100.0), Some(4), None, 10), Some(100.0));
        assert_eq!(focal_plane_pixels_per_mm(Some(100.0), Some(7), None, 10), None);
    }

    #[test]
    fn group_keys_name_camera_focal_and_size() {
        let exif = ExifSummary {
            make: Some("Apple".into()),
            model: Some("iPhone 12".into()),
            focal_length_mm: Some(4.2),
            ..ExifSummary::default()
        };
        assert_eq!(group_key(&exif, 4032, 3024), "Apple · iPhone 12 · 4.20 mm · 4032×3024");
        assert_eq!(group_key(&ExifSummary::default(), 800, 600), "unknown camera · 800×600");
    }
}
