//! The mat's layouts: one table ([`LAYOUTS`]) that both the printed sheet ([`crate::sheet`]) and
//! the fit to the photos ([`crate::fit`]) read, so what is printed is what is measured.
//!
//! The mat's frame: millimetres, origin at the centre of the sheet, +X to the right and +Y to the
//! top edge of the sheet as printed (landscape), +Z up out of the paper. Each marker is an
//! AprilTag 36h11 tag printed upright; its four corners are those of its black square, listed in
//! the order the detector reports them ([`Marker::corners_mm`]). Marker ids are distinct across
//! layouts, so a marker seen in a photo names its layout.

use glam::{DVec2, DVec3};

/// A sheet size and the markers printed on it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    /// Printed on the sheet and recorded in `mesh.json`, e.g. `kiln-mat-a4-v1`.
    pub name: &'static str,
    pub paper: Paper,
    /// Side of each marker's black square, millimetres.
    pub marker_mm: f64,
    pub markers: &'static [Marker],
}

/// One printed marker: its tag id and the centre of its black square in the mat's frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Marker {
    pub id: u32,
    pub centre_mm: [f64; 2],
}

/// The paper sizes the mat is printed on, landscape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paper {
    A4,
    Letter,
    A3,
}

impl Paper {
    /// Width × height in millimetres, landscape.
    pub fn size_mm(self) -> [f64; 2] {
        match self {
            Paper::A4 => [297.0, 210.0],
            Paper::Letter => [279.4, 215.9],
            Paper::A3 => [420.0, 297.0],
        }
    }

    /// The layout printed on this paper.
    pub fn layout(self) -> &'static Layout {
        match self {
            Paper::A4 => &LAYOUTS[0],
            Paper::Letter => &LAYOUTS[1],
            Paper::A3 => &LAYOUTS[2],
        }
    }
}

impl std::str::FromStr for Paper {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "a4" => Ok(Paper::A4),
            "letter" => Ok(Paper::Letter),
            "a3" => Ok(Paper::A3),
            other => Err(format!("{other:?}: expected a4, letter or a3")),
        }
    }
}

/// Twelve markers around a free centre: five along the top edge, five along the bottom, one
/// at each side. `dx` is the spacing along the rows, `row_y` the rows' height and `side_x`
/// the side markers' position; the ids are `first`..`first + 11`.
macro_rules! ring {
    ($first:expr, $dx:expr, $row_y:expr, $side_x:expr) => {
        &[
            Marker { id: $first, centre_mm: [-2.0 * $dx, $row_y] },
            Marker { id: $first + 1, centre_mm: [-$dx, $row_y] },
            Marker { id: $first + 2, centre_mm: [0.0, $row_y] },
            Marker { id: $first + 3, centre_mm: [$dx, $row_y] },
            Marker { id: $first + 4, centre_mm: [2.0 * $dx, $row_y] },
            Marker { id: $first + 5, centre_mm: [$side_x, 0.0] },
            Marker { id: $first + 6, centre_mm: [2.0 * $dx, -$row_y] },
            Marker { id: $first + 7, centre_mm: [$dx, -$row_y] },
            Marker { id: $first + 8, centre_mm: [0.0, -$row_y] },
            Marker { id: $first + 9, centre_mm: [-$dx, -$row_y] },
            Marker { id: $first + 10, centre_mm: [-2.0 * $dx, -$row_y] },
            Marker { id: $first + 11, centre_mm: [-$side_x, 0.0] },
        ]
    };
}

/// Every layout. Markers are as large as the sheet allows around a centre that holds a
/// ~20 cm object (A4: 40 mm squares, so a 400-pixel-wide photo of the whole sheet still gives
/// each tag cell about 6 pixels, above the 3 to 4 the detector needs); each keeps at least 8 mm
/// of paper to the edge, beyond the unprintable margin of common printers (about 5 mm).
pub const LAYOUTS: [Layout; 3] = [
    Layout { name: "kiln-mat-a4-v1", paper: Paper::A4, marker_mm: 40.0, markers: ring!(0, 60.0, 70.0, 120.0) },
    Layout { name: "kiln-mat-letter-v1", paper: Paper::Letter, marker_mm: 40.0, markers: ring!(12, 55.0, 73.0, 110.0) },
    Layout { name: "kiln-mat-a3-v1", paper: Paper::A3, marker_mm: 60.0, markers: ring!(24, 85.0, 105.0, 170.0) },
];

/// Cells across a tag36h11 tag: a white quiet ring, a black ring, six data cells, and the rings
/// again. The black square (whose corners are detected) is the inner 8 cells.
pub const TAG_CELLS: usize = 10;
/// Cells across the black square.
const BLACK_CELLS: usize = 8;

/// The tag36h11 codes of ids 0..36 (the three layouts' markers), from AprilTag's `tag36h11.c`.
const TAG36H11_CODES: [u64; 36] = [
    0xd7e00984b,
    0xdda664ca7,
    0xdc4a1c821,
    0xe17b470e9,
    0xef91d01b1,
    0xf429cdd73,
    0x5da29225,
    0x1106cba43,
    0x223bed79d,
    0x21f51213c,
    0x33eb19ca6,
    0x3f76eb0f8,
    0x469a97414,
    0x45dcfe0b0,
    0x4a6465f72,
    0x51801db96,
    0x5eb946b4e,
    0x68a7cc2ec,
    0x6f0ba2652,
    0x78765559d,
    0x87b83d129,
    0x86cc4a5c5,
    0x8b64df90f,
    0x9c577b611,
    0xa3810f2f5,
    0xaf4d75b83,
    0xb59a03fef,
    0xbb1096f85,
    0xd1b92fc76,
    0xd0dd509d2,
    0xe2cfda160,
    0x2ff497c63,
    0x47240671b,
    0x5047a2e55,
    0x635ca87c7,
    0x691254166,
];

/// Where tag36h11's bit `i` (most significant first) sits in the 6 × 6 data grid, as
/// `(column, row)` counted from the black ring's top-left cell (AprilTag's `bit_x`, `bit_y`).
const TAG36H11_BITS: [(u8, u8); 36] = [
    (1, 1),
    (2, 1),
    (3, 1),
    (4, 1),
    (5, 1),
    (2, 2),
    (3, 2),
    (4, 2),
    (3, 3),
    (6, 1),
    (6, 2),
    (6, 3),
    (6, 4),
    (6, 5),
    (5, 2),
    (5, 3),
    (5, 4),
    (4, 3),
    (6, 6),
    (5, 6),
    (4, 6),
    (3, 6),
    (2, 6),
    (5, 5),
    (4, 5),
    (3, 5),
    (4, 4),
    (1, 6),
    (1, 5),
    (1, 4),
    (1, 3),
    (1, 2),
    (2, 5),
    (2, 4),
    (2, 3),
    (3, 4),
];

impl Layout {
    /// The layout a marker id belongs to, with that marker.
    pub fn of_marker(id: u32) -> Option<(&'static Layout, &'static Marker)> {
        LAYOUTS.iter().find_map(|layout| layout.markers.iter().find(|m| m.id == id).map(|m| (layout, m)))
    }

    /// The ids printed on this layout, as `first–last`.
    pub fn id_range(&self) -> String {
        let ids = self.markers.iter().map(|m| m.id);
        format!("{}–{}", ids.clone().min().unwrap_or(0), ids.max().unwrap_or(0))
    }

    /// Side of one tag cell, millimetres.
    pub fn cell_mm(&self) -> f64 {
        self.marker_mm / BLACK_CELLS as f64
    }
}

impl Marker {
    /// The black square's corners in the mat's frame (z = 0), in the detector's order:
    /// bottom-left, bottom-right, top-right, top-left of the upright tag (AprilTag's ideal
    /// corners (−1, 1), (1, 1), (1, −1), (−1, −1) in its image-like tag frame, y down).
    pub fn corners_mm(&self, layout: &Layout) -> [DVec3; 4] {
        let h = 0.5 * layout.marker_mm;
        let c = DVec2::from(self.centre_mm);
        [(-h, -h), (h, -h), (h, h), (-h, h)].map(|(x, y)| DVec3::new(c.x + x, c.y + y, 0.0))
    }

    /// The tag's cells, row by row from the top as printed: `true` is black. `None` for an id
    /// outside the table.
    pub fn cells(&self) -> Option<[[bool; TAG_CELLS]; TAG_CELLS]> {
        let code = *TAG36H11_CODES.get(self.id as usize)?;
        // The black square, then its data cells whose bit is 1 turned white.
        let inside = |k: usize| (1..TAG_CELLS - 1).contains(&k);
        let mut black: [[bool; TAG_CELLS]; TAG_CELLS] =
            std::array::from_fn(|r| std::array::from_fn(|c| inside(r) && inside(c)));
        for (i, &(x, y)) in TAG36H11_BITS.iter().enumerate() {
            if code & (1u64 << (TAG36H11_BITS.len() - 1 - i)) != 0 {
                black[usize::from(y) + 1][usize::from(x) + 1] = false;
            }
        }
        Some(black)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_across_layouts_and_have_codes() {
        let mut ids: Vec<u32> = LAYOUTS.iter().flat_map(|l| l.markers.iter().map(|m| m.id)).collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "every id once");
        assert!(LAYOUTS.iter().flat_map(|l| l.markers).all(|m| m.cells().is_some()));
        let (layout, marker) = Layout::of_marker(13).unwrap();
        assert_eq!((layout.paper, marker.id), (Paper::Letter, 13));
        assert!(Layout::of_marker(99).is_none());
        assert_eq!(Paper::A4.layout().id_range(), "0–11");
    }

    #[test]
    fn markers_fit_on_the_sheet_leave_the_centre_free_and_do_not_overlap() {
        for layout in &LAYOUTS {
            let [w, h] = layout.paper.size_mm();
            // The white quiet ring (one cell) included; it may reach the unprinted margin.
            let half = 0.5 * layout.marker_mm + layout.cell_mm();
            let black = 0.5 * layout.marker_mm;
            for m in layout.markers {
                let [x, y] = m.centre_mm;
                assert!(
                    x.abs() + black <= 0.5 * w - 8.0 && y.abs() + black <= 0.5 * h - 8.0,
                    "{} {}",
                    layout.name,
                    m.id
                );
                assert!(x.abs() + half <= 0.5 * w && y.abs() + half <= 0.5 * h, "{} {}", layout.name, m.id);
                assert!(x.abs() - half >= 50.0 || y.abs() - half >= 35.0, "{} {} in the centre", layout.name, m.id);
                for n in layout.markers.iter().filter(|n| n.id != m.id) {
                    let [u, v] = n.centre_mm;
                    assert!((x - u).abs() >= 2.0 * half || (y - v).abs() >= 2.0 * half, "{} {}", m.id, n.id);
                }
            }
        }
    }

    #[test]
    fn corners_wind_counter_clockwise_from_bottom_left() {
        let layout = Paper::A4.layout();
        let corners = layout.markers[0].corners_mm(layout);
        let [x, y] = layout.markers[0].centre_mm;
        assert_eq!(corners[0], DVec3::new(x - 20.0, y - 20.0, 0.0));
        assert_eq!(corners[2], DVec3::new(x + 20.0, y + 20.0, 0.0));
        let area: f64 = (0..4).map(|k| corners[k].truncate().perp_dot(corners[(k + 1) % 4].truncate())).sum();
        assert!(area > 0.0, "counter-clockwise seen from +Z");
    }

    #[test]
    fn tag_zero_has_its_black_ring_and_white_quiet_zone() {
        let cells = Marker { id: 0, centre_mm: [0.0, 0.0] }.cells().unwrap();
        let ring = |at: usize, k: usize| [(at, k), (TAG_CELLS - 1 - at, k), (k, at), (k, TAG_CELLS - 1 - at)];
        assert!((0..TAG_CELLS).flat_map(|k| ring(0, k)).all(|(r, c)| !cells[r][c]), "quiet zone");
        assert!((1..TAG_CELLS - 1).flat_map(|k| ring(1, k)).all(|(r, c)| cells[r][c]), "black ring");
        // The code's one bits are its white data cells.
        let white_data = (2..8).flat_map(|r| (2..8).map(move |c| (r, c))).filter(|&(r, c)| !cells[r][c]).count();
        assert_eq!(white_data, 0xd7e00984b_u64.count_ones() as usize);
    }
}
