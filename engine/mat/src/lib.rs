//! The printable calibration mat (`kiln mat`): an AprilTag 36h11 marker layout around a free
//! centre where the object stands ([`layout`]), its printable sheet ([`sheet`]: PDF and PNG),
//! the markers found in photos ([`detect`]) and, with the photos' poses, the mat's frame in the
//! reconstruction ([`fit`]): metric scale and the ground plane, exactly.

pub mod detect;
pub mod fit;
pub mod layout;
pub mod sheet;

pub use detect::{DetectError, Sighting, detect_markers};
pub use fit::{MatFit, Similarity, fit_mat};
pub use layout::{LAYOUTS, Layout, Marker, Paper};
