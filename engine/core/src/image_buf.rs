//! Float RGB images as the renderer and losses use them: row-major, values nominally in `[0, 1]`
//! (display-referred sRGB, as 3DGS trains), top-left origin.

/// A row-major RGB float image.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageRgb {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<[f32; 3]>,
}

impl ImageRgb {
    pub fn new(width: u32, height: u32, fill: [f32; 3]) -> Self {
        Self { width, height, pixels: vec![fill; width as usize * height as usize] }
    }

    pub fn get(&self, x: u32, y: u32) -> [f32; 3] {
        self.pixels[y as usize * self.width as usize + x as usize]
    }

    /// From an 8-bit RGB image.
    pub fn from_rgb8(img: &image::RgbImage) -> Self {
        let pixels = img.pixels().map(|p| [p[0] as f32 / 255.0, p[1] as f32 / 255.0, p[2] as f32 / 255.0]).collect();
        Self { width: img.width(), height: img.height(), pixels }
    }

    /// To an 8-bit RGB image, clamping to `[0, 1]`.
    pub fn to_rgb8(&self) -> image::RgbImage {
        let mut out = image::RgbImage::new(self.width, self.height);
        for (dst, src) in out.pixels_mut().zip(&self.pixels) {
            *dst = image::Rgb(src.map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8));
        }
        out
    }
}

/// A row-major single-channel float image (alpha, depth, a mask).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageGray {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<f32>,
}

impl ImageGray {
    pub fn new(width: u32, height: u32, fill: f32) -> Self {
        Self { width, height, pixels: vec![fill; width as usize * height as usize] }
    }

    /// The value under the centre of pixel `(x, y)` of a `width`×`height` image covering the same
    /// view (a mask at another resolution, same aspect ratio); nearest sample.
    pub fn sample_scaled(&self, x: u32, y: u32, width: u32, height: u32) -> Option<f32> {
        let sx = ((x as f32 + 0.5) * self.width as f32 / width as f32) as usize;
        let sy = ((y as f32 + 0.5) * self.height as f32 / height as f32) as usize;
        let index = sy.min((self.height as usize).saturating_sub(1)) * self.width as usize
            + sx.min((self.width as usize).saturating_sub(1));
        self.pixels.get(index).copied()
    }
}

/// The sRGB transfer function's inverse (IEC 61966-2-1): encoded `[0, 1]` → linear light.
pub fn srgb_to_linear(c: f32) -> f32 {
    if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
}

/// The sRGB transfer function: linear light `[0, 1]` → encoded.
pub fn linear_to_srgb(c: f32) -> f32 {
    if c <= 0.003_130_8 { c * 12.92 } else { 1.055 * c.powf(1.0 / 2.4) - 0.055 }
}
