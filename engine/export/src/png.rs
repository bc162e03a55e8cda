//! PNG encoding of the baked textures, shared by the GLB, USDZ and OBJ writers.

use image::ImageEncoder;

use crate::ExportError;

/// The PNG file of an 8-bit RGB texture.
pub(crate) fn encode_png(image: &image::RgbImage, what: &'static str) -> Result<Vec<u8>, ExportError> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(image.as_raw(), image.width(), image.height(), image::ExtendedColorType::Rgb8)
        .map_err(|source| ExportError::Png { what, source })?;
    Ok(bytes)
}
