//! The 3DGS PLY layout: files from an independent writer (other tools' variations), round trips,
//! and corrupt files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use kiln_core::splats::ply::{PlyError, read_splats, write_splats};
use kiln_core::splats::{SH_COEFFS, Splats};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-ply-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One property of the independent writer: name, PLY type, and the value for splat `i`.
struct Column {
    name: String,
    ty: &'static str,
    value: Box<dyn Fn(usize) -> f64>,
}

fn column(name: impl Into<String>, ty: &'static str, value: impl Fn(usize) -> f64 + 'static) -> Column {
    Column { name: name.into(), ty, value: Box::new(value) }
}

/// Degree-1 splats in an unusual layout: shuffled property order, doubles, no normals, extra
/// properties of several types, an extra element before and after `vertex`.
fn foreign_columns() -> Vec<Column> {
    let mut columns = vec![
        column("opacity", "double", |i| 0.1 * i as f64 - 0.3),
        column("confidence", "uchar", |i| (i * 7 % 256) as f64),
        column("rot_3", "float", |i| 0.4 + i as f64),
        column("z", "double", |i| -(i as f64) * 0.5),
        column("scale_2", "float", |_| -3.0),
        column("rot_0", "float", |_| 1.0),
        column("x", "float", |i| i as f64),
        column("f_dc_1", "float", |i| 0.2 * i as f64),
        column("segment", "int", |i| -(i as f64)),
        column("y", "float", |i| 2.0 * i as f64),
        column("scale_0", "float", |i| -1.0 - i as f64),
        column("rot_2", "float", |_| 0.3),
        column("f_dc_0", "float", |i| 0.1 * i as f64),
        column("scale_1", "float", |_| -2.0),
        column("rot_1", "float", |_| 0.2),
        column("f_dc_2", "float", |i| 0.3 * i as f64),
        column("weight", "short", |_| -5.0),
    ];
    // f_rest_{c·3 + k}: coefficient k+1 of channel c, value 100·c + 10·k + i.
    for index in (0..9).rev() {
        columns.push(column(format!("f_rest_{index}"), "float", move |i| {
            (100 * (index / 3) + 10 * (index % 3) + i) as f64
        }));
    }
    columns
}

const FOREIGN_COUNT: usize = 4;

fn write_foreign(path: &Path, format: &str) {
    let columns = foreign_columns();
    let mut out = Vec::new();
    out.extend_from_slice(format!("ply\nformat {format} 1.0\ncomment written by a test\n").as_bytes());
    out.extend_from_slice(b"element camera 1\nproperty float fov\nproperty list uchar int ids\n");
    out.extend_from_slice(format!("element vertex {FOREIGN_COUNT}\n").as_bytes());
    for c in &columns {
        out.extend_from_slice(format!("property {} {}\n", c.ty, c.name).as_bytes());
    }
    out.extend_from_slice(b"element face 1\nproperty list uchar int vertex_indices\nend_header\n");
    let big = format == "binary_big_endian";
    let put = |ty: &str, v: f64, out: &mut Vec<u8>| {
        if format == "ascii" {
            out.extend_from_slice(format!("{v} ").as_bytes());
            return;
        }
        let bytes: Vec<u8> = match (ty, big) {
            ("float", false) => (v as f32).to_le_bytes().to_vec(),
            ("float", true) => (v as f32).to_be_bytes().to_vec(),
            ("double", false) => v.to_le_bytes().to_vec(),
            ("double", true) => v.to_be_bytes().to_vec(),
            ("uchar", _) => vec![v as u8],
            ("short", false) => (v as i16).to_le_bytes().to_vec(),
            ("short", true) => (v as i16).to_be_bytes().to_vec(),
            ("int", false) => (v as i32).to_le_bytes().to_vec(),
            ("int", true) => (v as i32).to_be_bytes().to_vec(),
            _ => unreachable!(),
        };
        out.extend_from_slice(&bytes);
    };
    // camera element: fov, then a list of 2 ids.
    put("float", 0.9, &mut out);
    put("uchar", 2.0, &mut out);
    put("int", 5.0, &mut out);
    put("int", 6.0, &mut out);
    if format == "ascii" {
        out.push(b'\n');
    }
    for i in 0..FOREIGN_COUNT {
        for c in &columns {
            put(c.ty, (c.value)(i), &mut out);
        }
        if format == "ascii" {
            out.push(b'\n');
        }
    }
    put("uchar", 3.0, &mut out);
    for v in [0.0, 1.0, 2.0] {
        put("int", v, &mut out);
    }
    std::fs::write(path, out).unwrap();
}

fn check_foreign(splats: &Splats) {
    assert_eq!(splats.len(), FOREIGN_COUNT);
    assert_eq!(splats.sh_degree, 1);
    for i in 0..FOREIGN_COUNT {
        let f = i as f32;
        assert_eq!(splats.means[i], [f, 2.0 * f, -0.5 * f]);
        assert_eq!(splats.log_scales[i], [-1.0 - f, -2.0, -3.0]);
        assert_eq!(splats.rotations[i], [1.0, 0.2, 0.3, 0.4 + f]);
        assert!((splats.opacity_logits[i] - (0.1 * f - 0.3)).abs() < 1e-6);
        let sh = &splats.sh[i];
        for (c, dc) in [0.1f32, 0.2, 0.3].iter().enumerate() {
            assert!((sh[0][c] - dc * f).abs() < 1e-6);
        }
        for (k, coeff) in sh.iter().enumerate().take(4).skip(1) {
            for (c, value) in coeff.iter().enumerate() {
                assert_eq!(*value, (100 * c + 10 * (k - 1) + i) as f32, "coefficient {k} channel {c}");
            }
        }
        assert!(sh[4..].iter().all(|coeff| *coeff == [0.0; 3]));
    }
}

#[test]
fn ply_reads_independent_writer_in_every_format() {
    let dir = temp_dir("foreign");
    for format in ["binary_little_endian", "binary_big_endian", "ascii"] {
        let path = dir.join(format!("{format}.ply"));
        write_foreign(&path, format);
        check_foreign(&read_splats(&path).unwrap_or_else(|e| panic!("{format}: {e}")));
    }
}

#[test]
fn ply_foreign_file_round_trips_through_our_writer() {
    let dir = temp_dir("foreign_round_trip");
    let foreign = dir.join("foreign.ply");
    write_foreign(&foreign, "binary_little_endian");
    let splats = read_splats(&foreign).unwrap();
    let ours = dir.join("ours.ply");
    write_splats(&ours, &splats).unwrap();
    assert_eq!(read_splats(&ours).unwrap(), splats);
    // Standard header: 3 + 3 + 3 + 9 + 1 + 3 + 4 properties, no leftovers in the folder.
    let bytes = std::fs::read(&ours).unwrap();
    let header_end = bytes.windows(11).position(|w| w == b"end_header\n").unwrap() + 11;
    let header = String::from_utf8_lossy(&bytes[..header_end]);
    assert_eq!(header.matches("property float").count(), 26, "{header}");
    assert!(header.contains("property float nx\n") && header.contains("property float f_rest_8\n"));
    assert_eq!(bytes.len() - header_end, FOREIGN_COUNT * 26 * 4);
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

fn random_splats(n: usize, sh_degree: u32) -> Splats {
    // A small LCG: deterministic, dependency-free.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
    };
    let mut splats = Splats { sh_degree, ..Default::default() };
    let used = ((sh_degree + 1) * (sh_degree + 1)) as usize;
    for _ in 0..n {
        let mut sh = [[0.0; 3]; SH_COEFFS];
        for coeff in sh.iter_mut().take(used) {
            *coeff = [next(), next(), next()];
        }
        splats.push([next(), next(), next()], [next(), next(), next()], [next(), next(), next(), next()], next(), sh);
    }
    splats
}

#[test]
fn ply_round_trips_random_splats() {
    let dir = temp_dir("round_trip");
    for degree in 0..=3 {
        let splats = random_splats(257, degree);
        let path = dir.join(format!("degree{degree}.ply"));
        write_splats(&path, &splats).unwrap();
        // Overwriting an existing file works too (atomic rename over it).
        write_splats(&path, &splats).unwrap();
        assert_eq!(read_splats(&path).unwrap(), splats);
    }
    let empty = dir.join("empty.ply");
    write_splats(&empty, &Splats::default()).unwrap();
    assert_eq!(read_splats(&empty).unwrap(), Splats::default());
}

fn error_message(path: &Path) -> String {
    let err: PlyError = read_splats(path).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "error does not name the file: {message}");
    message
}

#[test]
fn ply_truncated_and_corrupt_files_are_clear_errors() {
    let dir = temp_dir("corrupt");
    let good = dir.join("good.ply");
    write_splats(&good, &random_splats(10, 3)).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let header_end = bytes.windows(11).position(|w| w == b"end_header\n").unwrap() + 11;
    let path = dir.join("bad.ply");

    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let message = error_message(&path);
    assert!(message.contains("truncated") && message.contains("row 9"), "{message}");

    std::fs::write(&path, &bytes[..header_end - 11]).unwrap();
    let message = error_message(&path);
    assert!(message.contains("ends before 'end_header'"), "{message}");
    std::fs::write(&path, &bytes[..header_end - 5]).unwrap();
    let message = error_message(&path);
    assert!(message.contains("PLY header line") && message.contains("unexpected line"), "{message}");

    std::fs::write(&path, b"").unwrap();
    assert!(error_message(&path).contains("not a PLY file"));

    // An absurd vertex count must fail on the data, not on allocation.
    let header =
        String::from_utf8_lossy(&bytes[..header_end]).replace("element vertex 10", "element vertex 900000000000");
    std::fs::write(&path, [header.as_bytes(), &bytes[header_end..]].concat()).unwrap();
    assert!(error_message(&path).contains("truncated"));

    let header = String::from_utf8_lossy(&bytes[..header_end]).replace("property float f_rest_44\n", "");
    std::fs::write(&path, [header.as_bytes(), &bytes[header_end..]].concat()).unwrap();
    assert!(error_message(&path).contains("44 f_rest_* properties"));

    let header =
        String::from_utf8_lossy(&bytes[..header_end]).replace("property float opacity\n", "property float alpha\n");
    std::fs::write(&path, [header.as_bytes(), &bytes[header_end..]].concat()).unwrap();
    assert!(error_message(&path).contains("'opacity'"));

    std::fs::write(&path, b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\nabc\n").unwrap();
    let message = error_message(&path);
    assert!(message.contains("no scalar vertex property 'y'"), "{message}");

    let missing = dir.join("does-not-exist.ply");
    assert!(error_message(&missing).contains("does-not-exist.ply"));
}

#[test]
fn ply_write_reports_inconsistent_splats_and_bad_folders() {
    let dir = temp_dir("write_errors");
    let mut splats = random_splats(3, 1);
    splats.opacity_logits.pop();
    let path = dir.join("x.ply");
    let message = write_splats(&path, &splats).unwrap_err().to_string();
    assert!(message.contains("opacity_logits has 2 entries but there are 3 means"), "{message}");
    assert!(!path.exists());
    let nowhere = dir.join("no/such/folder/x.ply");
    let message = write_splats(&nowhere, &random_splats(3, 1)).unwrap_err().to_string();
    assert!(message.contains("no/such/folder/x.ply"), "{message}");
}
