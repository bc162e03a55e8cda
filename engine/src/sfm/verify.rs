//! Geometric verification of matched photo pairs: robust two-view geometry (essential,
//! fundamental or homography) and the inlier matches it explains.

use glam::DMat3;

use super::model::RigidCv;

/// Which model explains a pair best (COLMAP's two-view configurations, simplified).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TwoViewConfig {
    /// Essential matrix with a general (non-planar) scene: a usable relative pose.
    Calibrated,
    /// Only a fundamental matrix fits (intrinsics priors are off).
    Uncalibrated,
    /// A homography explains the inliers: planar scene or pure rotation (weak for initialisation).
    Planar,
}

/// The verified geometry of photos `i < j`.
#[derive(Clone, Debug, PartialEq)]
pub struct TwoViewGeometry {
    pub i: usize,
    pub j: usize,
    pub config: TwoViewConfig,
    /// Inlier matches as `(keypoint in i, keypoint in j)`.
    pub inliers: Vec<(u32, u32)>,
    /// `camera_j_from_camera_i` with unit-length translation, when `config` is `Calibrated`
    /// (or a homography decomposition gave one).
    pub relative_pose: Option<RigidCv>,
    pub essential: Option<DMat3>,
    pub fundamental: Option<DMat3>,
    pub homography: Option<DMat3>,
    /// Median triangulation angle of the inliers in degrees (0 when no pose).
    pub median_triangulation_angle_deg: f64,
}
