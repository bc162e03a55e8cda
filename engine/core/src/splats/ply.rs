//! The standard 3DGS PLY layout (INRIA, gsplat, Brush): read and write, on the shared PLY
//! container reader of [`crate::ply`] (whose [`VertexReader`] point clouds use too).
//!
//! The layout is one `vertex` element with the properties
//! `x y z nx ny nz f_dc_0..2 f_rest_0..N opacity scale_0..2 rot_0..3`, all `float`, stored
//! activation-free exactly like [`Splats`]. `f_rest` is **channel-major**: with `n = (degree+1)²−1`
//! higher-order coefficients per channel, `f_rest_{c·n + k−1}` is coefficient `k` of channel `c`
//! (all of red, then green, then blue), whereas [`Splats::sh`] is `[coefficient][channel]`.
//!
//! Reading accepts what other tools write: `ascii`, `binary_little_endian` and
//! `binary_big_endian`; properties in any order and of any scalar type; missing normals; extra
//! properties and elements (skipped); and 0, 9, 24 or 45 `f_rest` properties, which set
//! [`Splats::sh_degree`]. Writing always produces binary little-endian `float` properties, with
//! zero normals, `f_rest` for the splats' active degree, atomically.

use std::io::Write;
use std::path::Path;

use crate::atomic_file::write_atomically;
use crate::splats::{MAX_SH_DEGREE, SH_COEFFS, ShCoeffs, Splats};

pub use crate::ply::PlyError;
pub(crate) use crate::ply::VertexReader;

/// Names of the properties every splat needs, in the order [`read_splats`] asks for them.
const REQUIRED: [&str; 14] = [
    "x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2",
    "rot_3",
];

/// Reads splats in the 3DGS PLY layout.
pub fn read_splats(path: &Path) -> Result<Splats, PlyError> {
    let mut reader = VertexReader::open(path)?;
    let (sh_degree, rest_names) = splat_layout(&reader, path)?;
    let wanted: Vec<&str> = REQUIRED.iter().copied().chain(rest_names.iter().map(String::as_str)).collect();
    reader.select(&wanted);
    let mut splats = Splats { sh_degree, ..Default::default() };
    let capacity = reader.capacity_hint();
    splats.means.reserve(capacity);
    splats.log_scales.reserve(capacity);
    splats.rotations.reserve(capacity);
    splats.opacity_logits.reserve(capacity);
    splats.sh.reserve(capacity);
    let mut row = vec![0.0f64; wanted.len()];
    for _ in 0..reader.len() {
        reader.read_row(&mut row)?;
        let v = |i: usize| row[i] as f32;
        let sh = sh_from_row([v(3), v(4), v(5)], &row[REQUIRED.len()..]);
        splats.push([v(0), v(1), v(2)], [v(7), v(8), v(9)], [v(10), v(11), v(12), v(13)], v(6), sh);
    }
    Ok(splats)
}

/// Checks the required properties and returns the SH degree implied by the `f_rest_*` count,
/// with their names in order.
fn splat_layout(reader: &VertexReader, path: &Path) -> Result<(u32, Vec<String>), PlyError> {
    let layout_err = |problem: String| PlyError::Layout { path: path.to_path_buf(), problem };
    if let Some(missing) = REQUIRED.iter().find(|name| reader.scalar_type(name).is_none()) {
        return Err(layout_err(format!("no scalar vertex property '{missing}': not a 3DGS splat file")));
    }
    let rest_count = reader.property_names().filter(|n| n.starts_with("f_rest_")).count();
    let rest_names: Vec<String> = (0..rest_count).map(|i| format!("f_rest_{i}")).collect();
    if let Some(missing) = rest_names.iter().find(|name| reader.scalar_type(name).is_none()) {
        return Err(layout_err(format!("{rest_count} f_rest_* properties but no '{missing}'")));
    }
    let sh_degree =
        (0..=MAX_SH_DEGREE).find(|d| 3 * ((d + 1) * (d + 1) - 1) as usize == rest_count).ok_or_else(|| {
            layout_err(format!("{rest_count} f_rest_* properties; expected 0, 9, 24 or 45 (SH degree 0 to 3)"))
        })?;
    Ok((sh_degree, rest_names))
}

/// `[coefficient][channel]` SH from the DC term and the channel-major `f_rest` values.
fn sh_from_row(dc: [f32; 3], rest: &[f64]) -> ShCoeffs {
    let mut sh: ShCoeffs = [[0.0; 3]; SH_COEFFS];
    sh[0] = dc;
    let per_channel = rest.len() / 3;
    for (channel, coeffs) in rest.chunks(per_channel.max(1)).enumerate().take(3) {
        for (k, value) in coeffs.iter().enumerate() {
            sh[k + 1][channel] = *value as f32;
        }
    }
    sh
}

/// Writes splats in the 3DGS PLY layout (binary little-endian), atomically.
pub fn write_splats(path: &Path, splats: &Splats) -> Result<(), PlyError> {
    let layout_err = |problem: String| PlyError::Layout { path: path.to_path_buf(), problem };
    splats.validate().map_err(|invalid| layout_err(invalid.to_string()))?;
    let n = splats.len();
    let rest_per_channel = ((splats.sh_degree + 1) * (splats.sh_degree + 1) - 1) as usize;
    write_atomically(path, |w| {
        write_header(w, n, rest_per_channel)?;
        let mut row: Vec<f32> = Vec::with_capacity(17 + 3 * rest_per_channel);
        for i in 0..n {
            let sh = &splats.sh[i];
            row.clear();
            row.extend_from_slice(&splats.means[i]);
            row.extend_from_slice(&[0.0; 3]);
            row.extend_from_slice(&sh[0]);
            for channel in 0..3 {
                row.extend(sh[1..=rest_per_channel].iter().map(|coeff| coeff[channel]));
            }
            row.push(splats.opacity_logits[i]);
            row.extend_from_slice(&splats.log_scales[i]);
            row.extend_from_slice(&splats.rotations[i]);
            for value in &row {
                w.write_all(&value.to_le_bytes())?;
            }
        }
        Ok(())
    })
    .map_err(|source| PlyError::Io { path: path.to_path_buf(), source })
}

fn write_header(w: &mut impl Write, n: usize, rest_per_channel: usize) -> std::io::Result<()> {
    writeln!(w, "ply\nformat binary_little_endian 1.0\nelement vertex {n}")?;
    for name in ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] {
        writeln!(w, "property float {name}")?;
    }
    for i in 0..3 * rest_per_channel {
        writeln!(w, "property float f_rest_{i}")?;
    }
    for name in ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"] {
        writeln!(w, "property float {name}")?;
    }
    writeln!(w, "end_header")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-ply-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn sample(sh_degree: u32) -> Splats {
        let mut splats = Splats { sh_degree, ..Default::default() };
        for i in 0..5 {
            let f = i as f32;
            let mut sh = [[0.0; 3]; SH_COEFFS];
            let used = ((sh_degree + 1) * (sh_degree + 1)) as usize;
            for (k, coeff) in sh.iter_mut().enumerate().take(used) {
                *coeff = [f + k as f32 * 0.01, -f - k as f32 * 0.02, 0.5 * f + k as f32];
            }
            splats.push([f, 2.0 * f, -f], [-1.0, -2.0 + f, 0.1], [1.0, 0.1 * f, 0.2, -0.3], 0.25 * f - 1.0, sh);
        }
        splats
    }

    #[test]
    fn ply_round_trips_every_degree() {
        for degree in 0..=MAX_SH_DEGREE {
            let path = temp_file(&format!("round_trip_{degree}.ply"));
            let splats = sample(degree);
            write_splats(&path, &splats).unwrap();
            assert_eq!(read_splats(&path).unwrap(), splats, "degree {degree}");
        }
    }

    #[test]
    fn ply_rest_is_channel_major_on_disk() {
        let path = temp_file("channel_major.ply");
        let mut splats = Splats { sh_degree: 1, ..Default::default() };
        let mut sh = [[0.0; 3]; SH_COEFFS];
        sh[2][1] = 7.0; // coefficient 2 (second f_rest) of green
        splats.push([0.0; 3], [0.0; 3], [1.0, 0.0, 0.0, 0.0], 0.0, sh);
        write_splats(&path, &splats).unwrap();
        let mut reader = VertexReader::open(&path).unwrap();
        // Green's block starts at f_rest_3 for degree 1; its second coefficient is f_rest_4.
        reader.select(&["f_rest_4", "f_rest_1"]);
        let mut row = [0.0; 2];
        reader.read_row(&mut row).unwrap();
        assert_eq!(row, [7.0, 0.0]);
    }

    /// Our own (INRIA-layout, with normals) file re-encoded as big-endian and as ASCII reads
    /// back the same splats, for every SH degree.
    #[test]
    fn inria_layout_reads_in_every_encoding() {
        for degree in 0..=MAX_SH_DEGREE {
            let path = temp_file(&format!("inria_{degree}.ply"));
            let splats = sample(degree);
            write_splats(&path, &splats).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let end = bytes.windows(11).position(|w| w == b"end_header\n").unwrap() + 11;
            let header = std::str::from_utf8(&bytes[..end]).unwrap();
            assert!(header.contains("property float nx"));
            let values: Vec<f32> =
                bytes[end..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            let big: Vec<u8> = header
                .replace("binary_little_endian", "binary_big_endian")
                .into_bytes()
                .into_iter()
                .chain(values.iter().flat_map(|v| v.to_be_bytes()))
                .collect();
            let ascii: String = header.replace("binary_little_endian", "ascii")
                + &values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(" ");
            for (name, encoded) in [("big", big), ("ascii", ascii.into_bytes())] {
                let other = temp_file(&format!("inria_{degree}_{name}.ply"));
                std::fs::write(&other, encoded).unwrap();
                assert_eq!(read_splats(&other).unwrap(), splats, "degree {degree}, {name}");
            }
        }
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let path = temp_file("not_splats.ply");
        std::fs::write(&path, "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n").unwrap();
        let error = read_splats(&path).unwrap_err();
        assert!(matches!(error, PlyError::Layout { .. }));
        let message = error.to_string();
        assert!(message.contains("not_splats.ply") && message.contains("'y'"), "{message}");
    }
}
