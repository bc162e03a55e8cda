//! The standard 3DGS PLY layout (INRIA, gsplat, Brush): read and write, plus the small generic
//! PLY `vertex` reader that point clouds share.
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

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::atomic_file::write_atomically;
use crate::splats::{MAX_SH_DEGREE, SH_COEFFS, ShCoeffs, Splats};

/// Header lines accepted before `end_header`: real headers have a few dozen, so anything longer is
/// not a PLY file (and must not be read into memory line by line).
const MAX_HEADER_LINES: usize = 4096;

/// Names of the properties every splat needs, in the order [`read_splats`] asks for them.
const REQUIRED: [&str; 14] = [
    "x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2",
    "rot_3",
];

/// Errors reading or writing PLY files. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PlyError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: PLY header line {line}: {problem}", path.display())]
    Header { path: PathBuf, line: usize, problem: String },
    #[error("{}: {problem}", path.display())]
    Layout { path: PathBuf, problem: String },
    #[error("{}: element '{element}' row {row}: {problem}", path.display())]
    Body { path: PathBuf, element: String, row: usize, problem: String },
}

/// A PLY scalar type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scalar {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl Scalar {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "char" | "int8" => Self::I8,
            "uchar" | "uint8" => Self::U8,
            "short" | "int16" => Self::I16,
            "ushort" | "uint16" => Self::U16,
            "int" | "int32" => Self::I32,
            "uint" | "uint32" => Self::U32,
            "float" | "float32" => Self::F32,
            "double" | "float64" => Self::F64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Self::I8 | Self::U8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    /// The largest value of an unsigned integer type (what "full intensity" means for colours),
    /// `None` for other types.
    pub(crate) fn unsigned_max(self) -> Option<f64> {
        match self {
            Self::U8 => Some(u8::MAX as f64),
            Self::U16 => Some(u16::MAX as f64),
            Self::U32 => Some(u32::MAX as f64),
            _ => None,
        }
    }

    /// Decodes the first [`Self::size`] bytes of `b`.
    fn decode(self, b: &[u8; 8], big_endian: bool) -> f64 {
        macro_rules! num {
            ($t:ty, $n:literal) => {{
                let mut bytes = [0u8; $n];
                bytes.copy_from_slice(&b[..$n]);
                if big_endian { <$t>::from_be_bytes(bytes) as f64 } else { <$t>::from_le_bytes(bytes) as f64 }
            }};
        }
        match self {
            Self::I8 => num!(i8, 1),
            Self::U8 => num!(u8, 1),
            Self::I16 => num!(i16, 2),
            Self::U16 => num!(u16, 2),
            Self::I32 => num!(i32, 4),
            Self::U32 => num!(u32, 4),
            Self::F32 => num!(f32, 4),
            Self::F64 => num!(f64, 8),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PropertyKind {
    Scalar(Scalar),
    List { count: Scalar, item: Scalar },
}

#[derive(Clone, Debug)]
struct Property {
    name: String,
    kind: PropertyKind,
}

#[derive(Clone, Debug)]
struct Element {
    name: String,
    count: usize,
    properties: Vec<Property>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Ascii,
    BinaryLittleEndian,
    BinaryBigEndian,
}

/// Where row values come from.
enum Body {
    Binary {
        reader: BufReader<File>,
        big_endian: bool,
    },
    /// The rest of an ASCII file and the read position in it.
    Ascii {
        text: String,
        pos: usize,
    },
}

impl Body {
    /// The next scalar, or a description of why there is none.
    fn scalar(&mut self, ty: Scalar) -> Result<f64, String> {
        match self {
            Self::Binary { reader, big_endian } => {
                let mut buf = [0u8; 8];
                reader.read_exact(&mut buf[..ty.size()]).map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => "file is truncated".to_string(),
                    _ => e.to_string(),
                })?;
                Ok(ty.decode(&buf, *big_endian))
            }
            Self::Ascii { text, pos } => {
                let rest = &text[*pos..];
                let start = rest.len() - rest.trim_start().len();
                let token = rest[start..].split_ascii_whitespace().next().ok_or("file is truncated")?;
                *pos += start + token.len();
                token.parse::<f64>().map_err(|_| format!("'{token}' is not a number"))
            }
        }
    }

    fn property(&mut self, kind: PropertyKind) -> Result<f64, String> {
        match kind {
            PropertyKind::Scalar(ty) => self.scalar(ty),
            PropertyKind::List { count, item } => {
                let n = self.scalar(count)?;
                for _ in 0..n as usize {
                    self.scalar(item)?;
                }
                Ok(n)
            }
        }
    }
}

/// Reads the rows of a PLY file's `vertex` element, one at a time, keeping only the properties the
/// caller selected. Other elements before `vertex` are skipped; those after it are never read.
pub(crate) struct VertexReader {
    path: PathBuf,
    body: Body,
    properties: Vec<Property>,
    count: usize,
    /// Per property, the index in the selection it fills.
    slots: Vec<Option<usize>>,
    row: usize,
    capacity_hint: usize,
}

impl VertexReader {
    pub(crate) fn open(path: &Path) -> Result<Self, PlyError> {
        let io_err = |source| PlyError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        let mut reader = BufReader::new(file);
        let (format, elements) = parse_header(&mut reader, path)?;
        let vertex_index = elements
            .iter()
            .position(|e| e.name == "vertex")
            .ok_or_else(|| PlyError::Layout { path: path.to_path_buf(), problem: "no 'vertex' element".into() })?;
        let mut body = match format {
            Format::Ascii => {
                let mut text = String::new();
                reader.read_to_string(&mut text).map_err(io_err)?;
                Body::Ascii { text, pos: 0 }
            }
            Format::BinaryLittleEndian | Format::BinaryBigEndian => {
                Body::Binary { reader, big_endian: format == Format::BinaryBigEndian }
            }
        };
        for element in &elements[..vertex_index] {
            skip_element(&mut body, element, path)?;
        }
        let vertex = &elements[vertex_index];
        let min_row_bytes = match format {
            // A digit and a separator per value.
            Format::Ascii => 2 * vertex.properties.len(),
            _ => vertex.properties.iter().map(|p| min_binary_size(p.kind)).sum(),
        };
        let capacity_hint = vertex.count.min((file_len as usize) / min_row_bytes.max(1));
        Ok(Self {
            path: path.to_path_buf(),
            body,
            properties: vertex.properties.clone(),
            count: vertex.count,
            slots: vec![None; vertex.properties.len()],
            row: 0,
            capacity_hint,
        })
    }

    /// Number of vertices the header announces.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// A safe initial capacity for per-row storage: the announced count, bounded by what the file
    /// size allows (a corrupt count must not allocate gigabytes).
    pub(crate) fn capacity_hint(&self) -> usize {
        self.capacity_hint
    }

    pub(crate) fn property_names(&self) -> impl Iterator<Item = &str> {
        self.properties.iter().map(|p| p.name.as_str())
    }

    /// The scalar type of property `name`, if it exists and is not a list.
    pub(crate) fn scalar_type(&self, name: &str) -> Option<Scalar> {
        self.properties.iter().find(|p| p.name == name).and_then(|p| match p.kind {
            PropertyKind::Scalar(ty) => Some(ty),
            PropertyKind::List { .. } => None,
        })
    }

    /// Chooses which properties [`Self::read_row`] returns, in this order. Absent names read as NaN.
    pub(crate) fn select(&mut self, wanted: &[&str]) {
        self.slots = self.properties.iter().map(|p| wanted.iter().position(|w| *w == p.name)).collect();
    }

    /// Reads the next row into `out` (one value per selected name).
    pub(crate) fn read_row(&mut self, out: &mut [f64]) -> Result<(), PlyError> {
        out.fill(f64::NAN);
        for (property, slot) in self.properties.iter().zip(&self.slots) {
            let value = self.body.property(property.kind).map_err(|problem| PlyError::Body {
                path: self.path.clone(),
                element: "vertex".into(),
                row: self.row,
                problem: format!("property '{}': {problem} (header announces {} rows)", property.name, self.count),
            })?;
            if let Some(slot) = slot.and_then(|s| out.get_mut(s)) {
                *slot = value;
            }
        }
        self.row += 1;
        Ok(())
    }
}

fn min_binary_size(kind: PropertyKind) -> usize {
    match kind {
        PropertyKind::Scalar(ty) => ty.size(),
        PropertyKind::List { count, .. } => count.size(),
    }
}

fn skip_element(body: &mut Body, element: &Element, path: &Path) -> Result<(), PlyError> {
    for row in 0..element.count {
        for property in &element.properties {
            body.property(property.kind).map_err(|problem| PlyError::Body {
                path: path.to_path_buf(),
                element: element.name.clone(),
                row,
                problem,
            })?;
        }
    }
    Ok(())
}

fn parse_header(reader: &mut impl BufRead, path: &Path) -> Result<(Format, Vec<Element>), PlyError> {
    let header_err = |line: usize, problem: String| PlyError::Header { path: path.to_path_buf(), line, problem };
    let mut format = None;
    let mut elements: Vec<Element> = Vec::new();
    let mut raw = Vec::new();
    for line_number in 1..=MAX_HEADER_LINES {
        raw.clear();
        let n =
            reader.read_until(b'\n', &mut raw).map_err(|source| PlyError::Io { path: path.to_path_buf(), source })?;
        if n == 0 && line_number == 1 {
            return Err(header_err(1, "empty file, not a PLY file".into()));
        }
        if n == 0 {
            return Err(header_err(line_number, "file ends before 'end_header'".into()));
        }
        let line = String::from_utf8_lossy(&raw);
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        if line_number == 1 {
            if words != ["ply"] {
                return Err(header_err(1, "not a PLY file (first line is not 'ply')".into()));
            }
            continue;
        }
        match words.as_slice() {
            ["end_header"] => {
                let format = format.ok_or_else(|| header_err(line_number, "no 'format' line".into()))?;
                return Ok((format, elements));
            }
            ["format", name, _version] => {
                format = Some(match *name {
                    "ascii" => Format::Ascii,
                    "binary_little_endian" => Format::BinaryLittleEndian,
                    "binary_big_endian" => Format::BinaryBigEndian,
                    other => return Err(header_err(line_number, format!("unknown format '{other}'"))),
                });
            }
            ["comment", ..] | ["obj_info", ..] | [] => {}
            ["element", name, count] => {
                let count =
                    count.parse().map_err(|_| header_err(line_number, format!("bad element count '{count}'")))?;
                elements.push(Element { name: name.to_string(), count, properties: Vec::new() });
            }
            ["property", rest @ ..] => {
                let property = parse_property(rest).map_err(|problem| header_err(line_number, problem))?;
                let element =
                    elements.last_mut().ok_or_else(|| header_err(line_number, "property before any element".into()))?;
                element.properties.push(property);
            }
            _ => return Err(header_err(line_number, format!("unexpected line '{}'", line.trim()))),
        }
    }
    Err(header_err(MAX_HEADER_LINES, "header too long".into()))
}

fn parse_property(words: &[&str]) -> Result<Property, String> {
    let scalar = |name: &str| Scalar::parse(name).ok_or_else(|| format!("unknown property type '{name}'"));
    match words {
        ["list", count, item, name] => Ok(Property {
            name: name.to_string(),
            kind: PropertyKind::List { count: scalar(count)?, item: scalar(item)? },
        }),
        [ty, name] => Ok(Property { name: name.to_string(), kind: PropertyKind::Scalar(scalar(ty)?) }),
        _ => Err(format!("malformed property line 'property {}'", words.join(" "))),
    }
}

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
    let n = splats.len();
    let lengths = [splats.log_scales.len(), splats.rotations.len(), splats.opacity_logits.len(), splats.sh.len()];
    if lengths.iter().any(|&len| len != n) {
        return Err(layout_err(format!("inconsistent splat arrays: {n} means but {lengths:?} other parameters")));
    }
    if splats.sh_degree > MAX_SH_DEGREE {
        return Err(layout_err(format!("SH degree {} is above the maximum {MAX_SH_DEGREE}", splats.sh_degree)));
    }
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

    fn temp_file(name: &str) -> PathBuf {
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
}
