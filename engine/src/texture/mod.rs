//! Texturing: a UV atlas for a mesh ([`atlas`]) and a base-colour texture baked from the input
//! photos ([`bake`]), with exposure balancing and seam dilation.

pub mod atlas;
pub mod bake;
