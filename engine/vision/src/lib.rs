//! The multiple-view vision the capture check and structure from motion share: SIFT features
//! ([`features`]), descriptor matching ([`matching`]), two-view geometry by robust estimation
//! ([`verify`], with the minimal solvers in [`geometry`]) and camera models ([`model`]).
//!
//! Conventions: `f64` geometry, OpenCV camera axes, pixel coordinates of the photo as displayed.

pub mod features;
pub mod geometry;
pub mod matching;
pub mod model;
pub mod verify;
