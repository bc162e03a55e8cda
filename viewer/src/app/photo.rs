//! Input photos for "snap to input camera": decoded on a background thread (a 12-megapixel JPEG
//! takes a noticeable fraction of a second), shrunk to a size a GPU texture and the screen can
//! hold, and uploaded to egui. Only the photo of the camera on screen is kept.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use eframe::egui;

/// Longest side of a photo texture: beyond the pixels of any viewport, and within every GPU's
/// texture limit (WebGPU guarantees 8192).
const MAX_PHOTO_SIDE: u32 = 2048;

/// What the photo pane shows.
pub enum PhotoState {
    /// The camera has no photo, or none is requested.
    None,
    Loading,
    Ready(egui::TextureHandle),
    Failed(String),
}

/// Loads one photo at a time; a newer request makes older results be dropped on arrival.
pub struct PhotoLoader {
    /// Camera index and path of the photo wanted now.
    wanted: Option<(usize, PathBuf)>,
    state: PhotoState,
    sender: mpsc::Sender<(usize, PathBuf, Result<egui::ColorImage, String>)>,
    receiver: mpsc::Receiver<(usize, PathBuf, Result<egui::ColorImage, String>)>,
}

impl PhotoLoader {
    pub fn new() -> Self {
        let (sender, receiver) = mpsc::channel();
        Self { wanted: None, state: PhotoState::None, sender, receiver }
    }

    /// Asks for the photo of camera `index` (or none); starts decoding when it changed.
    pub fn request(&mut self, ctx: &egui::Context, index: usize, path: Option<&Path>) {
        let wanted = path.map(|p| (index, p.to_path_buf()));
        if wanted == self.wanted {
            return;
        }
        self.wanted = wanted.clone();
        let Some((index, path)) = wanted else {
            self.state = PhotoState::None;
            return;
        };
        self.state = PhotoState::Loading;
        let sender = self.sender.clone();
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let result = decode(&path);
            // The receiver is gone only when the window closed; nothing to tell then.
            let _ = sender.send((index, path, result));
            ctx.request_repaint();
        });
    }

    /// Uploads a finished decode of the wanted photo and returns what to show.
    pub fn poll(&mut self, ctx: &egui::Context) -> &PhotoState {
        while let Ok((index, path, result)) = self.receiver.try_recv() {
            if self.wanted.as_ref() != Some(&(index, path.clone())) {
                continue;
            }
            self.state = match result {
                Ok(image) => {
                    PhotoState::Ready(ctx.load_texture(format!("photo {index}"), image, egui::TextureOptions::LINEAR))
                }
                Err(problem) => {
                    tracing::warn!("{problem}");
                    PhotoState::Failed(problem)
                }
            };
        }
        &self.state
    }
}

/// The photo at `path` with its EXIF orientation applied (the pixels the cameras were solved
/// for), no larger than [`MAX_PHOTO_SIDE`], as egui pixels.
fn decode(path: &Path) -> Result<egui::ColorImage, String> {
    let image = kiln_core::photos::decode_oriented(path).map_err(|error| format!("cannot show the photo: {error}"))?;
    let image = if image.width().max(image.height()) > MAX_PHOTO_SIDE {
        image.resize(MAX_PHOTO_SIDE, MAX_PHOTO_SIDE, image::imageops::FilterType::Triangle)
    } else {
        image
    };
    let rgba = image.to_rgba8();
    let size = [rgba.width() as usize, rgba.height() as usize];
    Ok(egui::ColorImage::from_rgba_unmultiplied(size, rgba.as_raw()))
}
