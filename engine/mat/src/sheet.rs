//! The printable sheet of a [`Layout`]: its markers, a 100 mm scale bar to check the print
//! against, a cross where the object stands, and (in the PDF) the layout's name, size and the
//! instruction to print at 100 %. [`write_pdf`] writes vector PDF with `pdf-writer`;
//! [`render_png`] rasterises the same shapes (without the text) at a given resolution, for
//! screens and for textures in synthetic renders.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};

use crate::layout::{Layout, TAG_CELLS};

/// Millimetres per inch, for dots per inch and PDF points (1/72 inch).
const MM_PER_INCH: f64 = 25.4;
/// The scale bar's length: a round 100 mm is easy to check with any ruler.
pub const SCALE_BAR_MM: f64 = 100.0;
/// The scale bar's thickness and its ticks' length and width, millimetres: visible on a print
/// without competing with the markers.
const BAR_MM: f64 = 1.5;
const TICK_MM: f64 = 4.0;
const TICK_WIDTH_MM: f64 = 0.4;
/// Grey of the centre cross (0 black, 1 white): a hint where to stand the object, too light to
/// be taken for an edge by the marker detector.
const CROSS_GREY: f64 = 0.8;
/// Half the length of the centre cross's arms, millimetres.
const CROSS_MM: f64 = 10.0;
/// Text size in the PDF, points.
const FONT_PT: f32 = 9.0;

/// A filled axis-aligned rectangle in the mat's frame (millimetres, y up), with its grey.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Shape {
    min: [f64; 2],
    max: [f64; 2],
    grey: f64,
}

impl Shape {
    fn new(x0: f64, y0: f64, x1: f64, y1: f64, grey: f64) -> Self {
        Self { min: [x0.min(x1), y0.min(y1)], max: [x0.max(x1), y0.max(y1)], grey }
    }
}

/// Where the scale bar's left end sits (its centre line), in the free centre below the object.
fn scale_bar_origin(layout: &Layout) -> [f64; 2] {
    [-0.5 * SCALE_BAR_MM, -(free_half_height(layout) - 2.0 * TICK_MM)]
}

/// Half the height of the free band between the top and bottom rows of markers (quiet zones
/// excluded).
fn free_half_height(layout: &Layout) -> f64 {
    let row = layout
        .markers
        .iter()
        .map(|m| m.centre_mm[1].abs())
        .fold(f64::INFINITY, |a, y| if y > 0.0 { a.min(y) } else { a });
    row - 0.5 * layout.marker_mm - layout.cell_mm()
}

/// Every filled shape on the sheet: the markers' black cells, the scale bar and its ticks, the
/// centre cross.
fn shapes(layout: &Layout) -> Vec<Shape> {
    let mut shapes = Vec::new();
    let cell = layout.cell_mm();
    for marker in layout.markers {
        let Some(cells) = marker.cells() else { continue };
        // The tag's top-left cell (quiet zone included), y up.
        let half = 0.5 * TAG_CELLS as f64 * cell;
        let [left, top] = [marker.centre_mm[0] - half, marker.centre_mm[1] + half];
        // One rectangle per run of black cells in a row: no seams between them in a viewer.
        for (row, line) in cells.iter().enumerate() {
            let y = top - row as f64 * cell;
            let mut col = 0;
            while col < TAG_CELLS {
                let run = line[col..].iter().take_while(|black| **black).count();
                if run > 0 {
                    let x = left + col as f64 * cell;
                    shapes.push(Shape::new(x, y, x + run as f64 * cell, y - cell, 0.0));
                }
                col += run.max(1);
            }
        }
    }
    let [x0, y0] = scale_bar_origin(layout);
    shapes.push(Shape::new(x0, y0 - 0.5 * BAR_MM, x0 + SCALE_BAR_MM, y0 + 0.5 * BAR_MM, 0.0));
    for k in 0..=10 {
        let x = x0 + f64::from(k) * SCALE_BAR_MM / 10.0;
        let length = if k % 5 == 0 { TICK_MM } else { 0.5 * TICK_MM };
        shapes.push(Shape::new(x - 0.5 * TICK_WIDTH_MM, y0, x + 0.5 * TICK_WIDTH_MM, y0 + length, 0.0));
    }
    let w = 0.5 * TICK_WIDTH_MM;
    shapes.push(Shape::new(-CROSS_MM, -w, CROSS_MM, w, CROSS_GREY));
    shapes.push(Shape::new(-w, -CROSS_MM, w, CROSS_MM, CROSS_GREY));
    shapes
}

/// The lines of text the PDF prints, ASCII (PDF's standard Helvetica has no other glyphs
/// without an embedded font).
pub fn caption(layout: &Layout) -> [String; 2] {
    let [w, h] = layout.paper.size_mm();
    [
        format!(
            "Kiln calibration mat {} - {w} x {h} mm, AprilTag 36h11 ids {}, {} mm markers",
            layout.name,
            layout.id_range().replace('\u{2013}', "-"),
            layout.marker_mm
        ),
        "Print at 100 % (actual size, not fit to page), then check: the bar measures 100 mm. Stand the object on the cross."
            .to_string(),
    ]
}

/// The sheet as a PDF document (one landscape page of the layout's paper size).
pub fn write_pdf(layout: &Layout) -> Vec<u8> {
    let [w, h] = layout.paper.size_mm();
    let pt = |mm: f64| (mm * 72.0 / MM_PER_INCH) as f32;
    let (catalog, pages, page, font, contents) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4), Ref::new(5));
    let font_name = Name(b"F1");
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(pages);
    pdf.pages(pages).kids([page]).count(1);
    let mut page_writer = pdf.page(page);
    page_writer.parent(pages).media_box(Rect::new(0.0, 0.0, pt(w), pt(h))).contents(contents);
    page_writer.resources().fonts().pair(font_name, font);
    page_writer.finish();
    pdf.type1_font(font).base_font(Name(b"Helvetica"));

    let mut content = Content::new();
    for shape in shapes(layout) {
        let [x0, y0] = [shape.min[0] + 0.5 * w, shape.min[1] + 0.5 * h];
        content.set_fill_gray(shape.grey as f32);
        content.rect(pt(x0), pt(y0), pt(shape.max[0] - shape.min[0]), pt(shape.max[1] - shape.min[1]));
        content.fill_nonzero();
    }
    content.set_fill_gray(0.0);
    let free = free_half_height(layout);
    let [_, bar_y] = scale_bar_origin(layout);
    let lines = caption(layout);
    // The name above the centre, the instruction under the scale bar.
    for (text, y) in [(&lines[0], free - 6.0), (&lines[1], bar_y - 5.0)] {
        content.begin_text();
        content.set_font(font_name, FONT_PT);
        content.next_line(pt(0.5 * w - 0.5 * SCALE_BAR_MM - 40.0), pt(0.5 * h + y));
        content.show(Str(text.as_bytes()));
        content.end_text();
    }
    pdf.stream(contents, &content.finish());
    pdf.finish()
}

/// The sheet rasterised at `dpi` dots per inch, 8-bit grey, shapes anti-aliased by their area
/// on each pixel (no text).
pub fn render_png(layout: &Layout, dpi: f64) -> image::GrayImage {
    let [w, h] = layout.paper.size_mm();
    let px_per_mm = dpi / MM_PER_INCH;
    let (width, height) = ((w * px_per_mm).round() as u32, (h * px_per_mm).round() as u32);
    // Darkness adds up: shapes that share an edge cover its pixels exactly once between them.
    let mut dark = vec![0.0f64; width as usize * height as usize];
    for shape in shapes(layout) {
        // Pixel coordinates: x right from the left edge, y down from the top edge.
        let [x0, x1] = [(shape.min[0] + 0.5 * w) * px_per_mm, (shape.max[0] + 0.5 * w) * px_per_mm];
        let [y0, y1] = [(0.5 * h - shape.max[1]) * px_per_mm, (0.5 * h - shape.min[1]) * px_per_mm];
        let columns = pixel_span(x0, x1, width);
        for py in pixel_span(y0, y1, height) {
            let cover_y = overlap(py, y0, y1);
            for px in columns.clone() {
                let cover = cover_y * overlap(px, x0, x1);
                dark[py as usize * width as usize + px as usize] += cover * (1.0 - shape.grey);
            }
        }
    }
    let pixels = dark.iter().map(|d| ((1.0 - d.clamp(0.0, 1.0)) * 255.0).round() as u8).collect();
    image::GrayImage::from_raw(width, height, pixels).unwrap_or_default()
}

/// Pixels `[a, b)` touches, clipped to `0..size`.
fn pixel_span(a: f64, b: f64, size: u32) -> std::ops::Range<u32> {
    (a.floor().max(0.0) as u32)..(b.ceil().clamp(0.0, f64::from(size)) as u32)
}

/// How much of pixel `p` (covering `[p, p + 1)`) lies in `[a, b]`.
fn overlap(p: u32, a: f64, b: f64) -> f64 {
    let p = f64::from(p);
    ((p + 1.0).min(b) - p.max(a)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Paper;

    #[test]
    fn pdf_is_one_landscape_page_with_the_caption() {
        let layout = Paper::A4.layout();
        let pdf = write_pdf(layout);
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.starts_with("%PDF-"), "{}", &text[..20]);
        assert!(text.contains("/MediaBox [0 0 841.8898 595.2756]"), "A4 landscape in points");
        assert!(text.contains("kiln-mat-a4-v1") && text.contains("Print at 100 %"));
        assert!(text.trim_end().ends_with("%%EOF"));
    }

    #[test]
    fn png_has_the_sheet_size_and_a_100_mm_bar() {
        let layout = Paper::A4.layout();
        let dpi = 2.0 * MM_PER_INCH; // 2 px per mm
        let png = render_png(layout, dpi);
        assert_eq!(png.dimensions(), (594, 420));
        // Along the bar's centre line: dark from x = -50 mm to +50 mm, light beyond.
        let [x0, y0] = scale_bar_origin(layout);
        let row = ((0.5 * 210.0 - y0) * 2.0) as u32;
        let dark: Vec<u32> = (0..594).filter(|&x| png.get_pixel(x, row)[0] < 128).collect();
        let (first, last) = (dark[0], dark[dark.len() - 1]);
        assert_eq!(((x0 + 148.5) * 2.0) as u32, first);
        assert_eq!(last + 1 - first, 200, "100 mm at 2 px/mm");
        assert!(png.get_pixel(297, 210)[0] > 150, "the centre cross is light grey");
    }
}
