//! Texturing: a UV atlas for a mesh ([`atlas`]) and a base-colour texture baked from the input
//! photos ([`bake`]), with exposure balancing and seam dilation, and a tangent-space normal map
//! carrying a dense mesh's detail onto its decimated version ([`normal_map`]); [`view`] renders
//! a textured mesh from a camera to check it against photos.

pub mod atlas;
pub mod bake;
mod error;
pub mod normal_map;
pub mod view;

pub use error::TextureError;

/// Smallest texture side accepted: below it the gutters between charts leave no room for charts.
pub const MIN_TEXTURE_SIZE: u32 = 64;
/// Largest texture side accepted (16k): beyond it a texel map no longer fits comfortably in memory.
pub const MAX_TEXTURE_SIZE: u32 = 16384;
