//! Multiple-view geometry for structure from motion, all in `f64` and OpenCV camera axes:
//! robust estimation machinery, minimal and least-squares solvers for two-view models, relative
//! pose recovery, triangulation and absolute pose.

pub mod essential;
pub mod fundamental;
pub mod homography;
pub mod linalg;
pub mod pnp;
pub mod pose;
pub mod ransac;
pub mod triangulate;
