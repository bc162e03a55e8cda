//! The PLY container, as other tools write it: the header (format, elements, scalar and list
//! properties of any scalar type) and the body (`ascii`, `binary_little_endian`,
//! `binary_big_endian`), read one row at a time by [`PlyReader`], plus [`VertexReader`], which
//! picks named properties of the `vertex` element. What the elements mean is up to the layouts
//! built on it: splats and point clouds ([`crate::splats::ply`]), meshes ([`crate::mesh::ply`]).
//!
//! Errors are [`PlyError`]s naming the file and, where it applies, the header line or the element,
//! row and property.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Header lines accepted before `end_header`: real headers have a few dozen, so anything longer is
/// not a PLY file (and must not be read into memory line by line).
const MAX_HEADER_LINES: usize = 4096;

/// Errors reading or writing PLY files. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PlyError {
    #[error("{source}: {}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("PLY header line {line}: {problem}: {}", path.display())]
    Header { path: PathBuf, line: usize, problem: String },
    /// A well-formed file without what the layout needs (an element, a property).
    #[error("{problem}: {}", path.display())]
    Layout { path: PathBuf, problem: String },
    #[error("PLY element '{element}' row {row}: {problem}: {}", path.display())]
    Body { path: PathBuf, element: String, row: usize, problem: String },
}

/// A PLY scalar type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
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
    /// The type named `name` in a header (both the classic and the sized spellings).
    pub fn parse(name: &str) -> Option<Self> {
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

    /// Bytes in a binary body.
    pub fn size(self) -> usize {
        match self {
            Self::I8 | Self::U8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    pub fn is_integer(self) -> bool {
        !matches!(self, Self::F32 | Self::F64)
    }

    /// The largest value of an unsigned integer type (what "full intensity" means for colours),
    /// `None` for other types.
    pub fn unsigned_max(self) -> Option<f64> {
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

/// What one property holds per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertyKind {
    Scalar(Scalar),
    /// A count of type `count`, then that many items of type `item` (a face's vertex indices).
    List {
        count: Scalar,
        item: Scalar,
    },
}

impl PropertyKind {
    /// The scalar type, `None` for a list.
    pub fn scalar(self) -> Option<Scalar> {
        match self {
            Self::Scalar(ty) => Some(ty),
            Self::List { .. } => None,
        }
    }

    /// Fewest bytes the property takes in a binary row (an empty list: its count).
    fn min_binary_size(self) -> usize {
        match self {
            Self::Scalar(ty) => ty.size(),
            Self::List { count, .. } => count.size(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    pub name: String,
    pub kind: PropertyKind,
}

/// An element of the header: a name, a row count and the properties of each row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub count: usize,
    pub properties: Vec<Property>,
}

impl Element {
    /// Index of the scalar (not list) property `name`.
    pub fn scalar_index(&self, name: &str) -> Option<usize> {
        self.properties.iter().position(|p| p.name == name && p.kind.scalar().is_some())
    }

    /// Index of the first list property whose name is one of `names`.
    pub fn list_index(&self, names: &[&str]) -> Option<usize> {
        self.properties
            .iter()
            .position(|p| names.contains(&p.name.as_str()) && matches!(p.kind, PropertyKind::List { .. }))
    }
}

/// How the body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Ascii,
    BinaryLittleEndian,
    BinaryBigEndian,
}

/// Where row values come from.
enum Body {
    /// Streamed, so that a large binary file is never held in memory twice.
    Binary { reader: BufReader<File>, big_endian: bool },
    /// The rest of an ASCII file and the read position in it.
    Ascii { text: String, pos: usize },
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

    /// One property: a scalar's value or a list's count; a list's items go to `items` when given.
    fn property(&mut self, kind: PropertyKind, mut items: Option<&mut Vec<f64>>) -> Result<f64, String> {
        match kind {
            PropertyKind::Scalar(ty) => self.scalar(ty),
            PropertyKind::List { count, item } => {
                let n = self.scalar(count)?;
                if n.is_nan() || n < 0.0 {
                    return Err(format!("negative list length {n}"));
                }
                for _ in 0..n as usize {
                    let value = self.scalar(item)?;
                    if let Some(items) = items.as_deref_mut() {
                        items.push(value);
                    }
                }
                Ok(n)
            }
        }
    }
}

/// Reads a PLY file: the header at [`PlyReader::open`], then the rows of its elements in file
/// order ([`PlyReader::start_element`], [`PlyReader::read_row`]).
pub struct PlyReader {
    path: PathBuf,
    format: Format,
    elements: Vec<Element>,
    body: Body,
    file_len: u64,
    /// The element whose rows [`Self::read_row`] returns.
    current: usize,
    /// Rows of the current element already read.
    row: usize,
}

impl PlyReader {
    /// Opens `path` and parses its header.
    pub fn open(path: &Path) -> Result<Self, PlyError> {
        let io_err = |source| PlyError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        let mut reader = BufReader::new(file);
        let (format, elements) = parse_header(&mut reader, path)?;
        let body = match format {
            Format::Ascii => {
                let mut bytes = Vec::new();
                reader.read_to_end(&mut bytes).map_err(io_err)?;
                Body::Ascii { text: String::from_utf8_lossy(&bytes).into_owned(), pos: 0 }
            }
            Format::BinaryLittleEndian | Format::BinaryBigEndian => {
                Body::Binary { reader, big_endian: format == Format::BinaryBigEndian }
            }
        };
        Ok(Self { path: path.to_path_buf(), format, elements, body, file_len, current: 0, row: 0 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header's elements, in file order.
    pub fn elements(&self) -> &[Element] {
        &self.elements
    }

    /// Index of the element `name`, or a [`PlyError::Layout`] saying it is missing.
    pub fn element_index(&self, name: &str) -> Result<usize, PlyError> {
        self.elements
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| self.layout_error(format!("no '{name}' element")))
    }

    /// A [`PlyError::Layout`] about this file.
    pub fn layout_error(&self, problem: String) -> PlyError {
        PlyError::Layout { path: self.path.clone(), problem }
    }

    /// Moves to the first row of element `index`, skipping the rest of the current element and
    /// every element in between. Elements are read once, in file order.
    pub fn start_element(&mut self, index: usize) -> Result<(), PlyError> {
        if index >= self.elements.len() || index < self.current || (index == self.current && self.row > 0) {
            return Err(self.layout_error(format!(
                "element {index} cannot be read from here (elements are read once, in file order)"
            )));
        }
        while self.current < index {
            while self.row < self.elements[self.current].count {
                self.read_row(&mut [], None)?;
            }
            self.current += 1;
            self.row = 0;
        }
        Ok(())
    }

    /// Reads the next row of the current element (the first element until
    /// [`Self::start_element`] chooses another): `values[i]` receives property `i` (a list's
    /// length) as far as `values` reaches; the items of list property `list.0` are appended to
    /// `list.1`.
    pub fn read_row(&mut self, values: &mut [f64], mut list: Option<(usize, &mut Vec<f64>)>) -> Result<(), PlyError> {
        let Some(element) = self.elements.get(self.current) else {
            return Err(self.layout_error("the file has no elements".into()));
        };
        let body_error = |problem: String| PlyError::Body {
            path: self.path.clone(),
            element: element.name.clone(),
            row: self.row,
            problem,
        };
        if self.row >= element.count {
            return Err(body_error(format!("more rows asked for than the {} the header announces", element.count)));
        }
        for (i, property) in element.properties.iter().enumerate() {
            let items = match &mut list {
                Some((index, items)) if *index == i => Some(&mut **items),
                _ => None,
            };
            let value = self.body.property(property.kind, items).map_err(|problem| {
                body_error(format!("property '{}': {problem} (header announces {} rows)", property.name, element.count))
            })?;
            if let Some(slot) = values.get_mut(i) {
                *slot = value;
            }
        }
        self.row += 1;
        Ok(())
    }

    /// A safe initial capacity for the rows of element `index`: its announced count, bounded by
    /// what the file size allows (a corrupt count must not allocate gigabytes).
    pub fn capacity_hint(&self, index: usize) -> usize {
        let Some(element) = self.elements.get(index) else { return 0 };
        let min_row_bytes = match self.format {
            // A digit and a separator per value.
            Format::Ascii => 2 * element.properties.len(),
            _ => element.properties.iter().map(|p| p.kind.min_binary_size()).sum(),
        };
        element.count.min(usize::try_from(self.file_len).unwrap_or(usize::MAX) / min_row_bytes.max(1))
    }
}

/// Reads the rows of a PLY file's `vertex` element, one at a time, keeping only the properties the
/// caller selected. Other elements before `vertex` are skipped; those after it are never read.
pub struct VertexReader {
    ply: PlyReader,
    vertex: usize,
    /// Per property, the index in the selection it fills.
    slots: Vec<Option<usize>>,
    /// One row's values, in property order.
    row: Vec<f64>,
}

impl VertexReader {
    pub fn open(path: &Path) -> Result<Self, PlyError> {
        let mut ply = PlyReader::open(path)?;
        let vertex = ply.element_index("vertex")?;
        ply.start_element(vertex)?;
        let n = ply.elements[vertex].properties.len();
        Ok(Self { ply, vertex, slots: vec![None; n], row: vec![0.0; n] })
    }

    fn element(&self) -> &Element {
        &self.ply.elements[self.vertex]
    }

    /// Number of vertices the header announces.
    pub fn len(&self) -> usize {
        self.element().count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// See [`PlyReader::capacity_hint`].
    pub fn capacity_hint(&self) -> usize {
        self.ply.capacity_hint(self.vertex)
    }

    pub fn property_names(&self) -> impl Iterator<Item = &str> {
        self.element().properties.iter().map(|p| p.name.as_str())
    }

    /// The scalar type of property `name`, if it exists and is not a list.
    pub fn scalar_type(&self, name: &str) -> Option<Scalar> {
        self.element().properties.iter().find(|p| p.name == name).and_then(|p| p.kind.scalar())
    }

    /// Chooses which properties [`Self::read_row`] returns, in this order. Absent names read as NaN.
    pub fn select(&mut self, wanted: &[&str]) {
        self.slots = self.element().properties.iter().map(|p| wanted.iter().position(|w| *w == p.name)).collect();
    }

    /// Reads the next row into `out` (one value per selected name).
    pub fn read_row(&mut self, out: &mut [f64]) -> Result<(), PlyError> {
        self.ply.read_row(&mut self.row, None)?;
        out.fill(f64::NAN);
        for (value, slot) in self.row.iter().zip(&self.slots) {
            if let Some(target) = slot.and_then(|s| out.get_mut(s)) {
                *target = *value;
            }
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-ply-container-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// The same two-element file in each format: 2 `point`s (`double x`, `uchar flag`), then
    /// 2 `poly`s (`list uchar int corners`, `short tag`).
    fn encode(format: &str) -> Vec<u8> {
        let mut out = format!(
            "ply\nformat {format} 1.0\ncomment test\nelement point 2\nproperty double x\nproperty uchar flag\n\
             element poly 2\nproperty list uchar int corners\nproperty short tag\nend_header\n"
        )
        .into_bytes();
        if format == "ascii" {
            out.extend_from_slice(b"-1.5 7\n2.25 255\n3 0 1 -2 -7\n0 12\n");
            return out;
        }
        let big = format == "binary_big_endian";
        let mut put = |le: Vec<u8>| out.extend(if big { le.into_iter().rev().collect() } else { le });
        for (x, flag) in [(-1.5f64, 7u8), (2.25, 255)] {
            put(x.to_le_bytes().to_vec());
            put(vec![flag]);
        }
        put(vec![3]);
        for corner in [0i32, 1, -2] {
            put(corner.to_le_bytes().to_vec());
        }
        put((-7i16).to_le_bytes().to_vec());
        put(vec![0]);
        put(12i16.to_le_bytes().to_vec());
        out
    }

    #[test]
    fn every_format_reads_scalars_and_lists_alike() {
        for format in ["ascii", "binary_little_endian", "binary_big_endian"] {
            let path = temp_file(&format!("{format}.ply"), &encode(format));
            let mut ply = PlyReader::open(&path).unwrap();
            assert_eq!(ply.elements().len(), 2);
            assert_eq!(ply.elements()[1].list_index(&["corners"]), Some(0));
            assert_eq!(ply.elements()[1].scalar_index("corners"), None);
            let mut row = [0.0; 2];
            ply.read_row(&mut row, None).unwrap();
            assert_eq!(row, [-1.5, 7.0], "{format}");
            ply.read_row(&mut row, None).unwrap();
            assert_eq!(row, [2.25, 255.0], "{format}");
            ply.start_element(1).unwrap();
            let mut corners = Vec::new();
            ply.read_row(&mut row, Some((0, &mut corners))).unwrap();
            assert_eq!((row, corners.as_slice()), ([3.0, -7.0], [0.0, 1.0, -2.0].as_slice()), "{format}");
            corners.clear();
            ply.read_row(&mut row, Some((0, &mut corners))).unwrap();
            assert_eq!((row, corners.len()), ([0.0, 12.0], 0), "{format}");
            let error = ply.read_row(&mut row, None).unwrap_err().to_string();
            assert!(error.contains("more rows"), "{error}");
        }
    }

    #[test]
    fn start_element_skips_unread_rows_and_refuses_to_go_back() {
        let path = temp_file("skip.ply", &encode("binary_big_endian"));
        let mut ply = PlyReader::open(&path).unwrap();
        let mut row = [0.0; 1];
        ply.read_row(&mut row, None).unwrap();
        ply.start_element(1).unwrap();
        let mut corners = Vec::new();
        ply.read_row(&mut [], Some((0, &mut corners))).unwrap();
        assert_eq!(corners, [0.0, 1.0, -2.0]);
        assert!(matches!(ply.start_element(0), Err(PlyError::Layout { .. })));
        assert!(matches!(ply.start_element(1), Err(PlyError::Layout { .. })));
        assert!(matches!(ply.start_element(2), Err(PlyError::Layout { .. })));
    }

    #[test]
    fn vertex_reader_selects_named_properties_after_other_elements() {
        let text = "ply\nformat ascii 1.0\nelement camera 1\nproperty list uchar float k\n\
            element vertex 2\nproperty float y\nproperty uchar red\nproperty float x\nend_header\n\
            2 0.5 0.25\n1 200 3\n4 100 5\n";
        let path = temp_file("vertex.ply", text.as_bytes());
        let mut reader = VertexReader::open(&path).unwrap();
        assert_eq!((reader.len(), reader.scalar_type("red")), (2, Some(Scalar::U8)));
        assert_eq!(reader.property_names().collect::<Vec<_>>(), ["y", "red", "x"]);
        reader.select(&["x", "y", "z"]);
        let mut row = [0.0; 3];
        reader.read_row(&mut row).unwrap();
        assert_eq!(row[..2], [3.0, 1.0]);
        assert!(row[2].is_nan());
        // A count far beyond the file is bounded by its size; reading past the end is an error.
        let text = text.replace("element vertex 2", "element vertex 2000000000");
        let path = temp_file("huge.ply", text.as_bytes());
        let mut reader = VertexReader::open(&path).unwrap();
        assert!(reader.capacity_hint() < 100);
        reader.read_row(&mut row).unwrap();
        reader.read_row(&mut row).unwrap();
        let error = reader.read_row(&mut row).unwrap_err().to_string();
        assert!(error.contains("huge.ply") && error.contains("truncated") && error.contains("row 2"), "{error}");
    }

    #[test]
    fn header_errors_name_the_line() {
        let cases: [(&[u8], &str); 5] = [
            (b"", "empty file"),
            (b"PK\x03\x04", "not a PLY file"),
            (b"ply\nformat binary_middle_endian 1.0\nend_header\n", "line 2: unknown format"),
            (b"ply\nformat ascii 1.0\nproperty float x\nend_header\n", "line 3: property before any element"),
            (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty half x\n", "line 4: unknown property type 'half'"),
        ];
        for (i, (bytes, expected)) in cases.into_iter().enumerate() {
            let path = temp_file(&format!("bad_header_{i}.ply"), bytes);
            let error = PlyReader::open(&path).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains(expected) && error.contains(&format!("bad_header_{i}.ply")), "{error}");
        }
    }
}
