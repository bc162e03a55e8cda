//! Quality presets: one table of every number a preset sets, for every stage.
//!
//! | preset | training steps | image side | splat cap | SIFT features | SIFT side | triangles | texture | voxels across |
//! |---|---|---|---|---|---|---|---|---|
//! | `preview` | 1 500 | 256 px | 60 000 | 4 096 | 1 024 px | < 25k | 1024² | 128 |
//! | `reduced` | 3 000 | 400 px | 100 000 | 6 000 | 1 600 px | < 50k | 2048² | 192 |
//! | `medium` | 7 000 | 800 px | 200 000 | 8 192 | 1 600 px | < 100k | 2048² | 256 |
//! | `full` | 30 000 | 1 600 px | 500 000 | 8 192 | 1 600 px | ≤ 250k | 4096² | 384 |
//! | `raw` | 30 000 | 1 600 px | 500 000 | 8 192 | 1 600 px | undecimated | 4096² | 384 |
//!
//! `preview` is sized for a 2-core CPU without a GPU (a few minutes for ~20–80 photos); `medium`
//! and `full` assume a GPU (7 000 steps is 3DGS's first evaluation point, 30 000 its full run).
//! The triangle budgets follow what the targets take: web viewers and AR Quick Look stay fluid
//! under ~100k triangles, game engines import 250k easily; `raw` keeps everything extraction made.

/// A named quality level (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Preview,
    Reduced,
    #[default]
    Medium,
    Full,
    Raw,
}

/// Every preset, in order of increasing detail.
pub const PRESETS: [Preset; 5] = [Preset::Preview, Preset::Reduced, Preset::Medium, Preset::Full, Preset::Raw];

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Preview => "preview",
            Preset::Reduced => "reduced",
            Preset::Medium => "medium",
            Preset::Full => "full",
            Preset::Raw => "raw",
        }
    }

    /// Training steps.
    pub fn train_steps(self) -> u32 {
        match self {
            Preset::Preview => 1_500,
            Preset::Reduced => 3_000,
            Preset::Medium => 7_000,
            Preset::Full | Preset::Raw => 30_000,
        }
    }

    /// Longer image side for training and baking, pixels.
    pub fn max_side(self) -> u32 {
        match self {
            Preset::Preview => 256,
            Preset::Reduced => 400,
            Preset::Medium => 800,
            Preset::Full | Preset::Raw => 1_600,
        }
    }

    /// Most splats training may grow to.
    pub fn max_splats(self) -> usize {
        match self {
            Preset::Preview => 60_000,
            Preset::Reduced => 100_000,
            Preset::Medium => 200_000,
            Preset::Full | Preset::Raw => 500_000,
        }
    }

    /// Most SIFT features per photo for pose estimation.
    pub fn sift_max_features(self) -> usize {
        match self {
            Preset::Preview => 4_096,
            Preset::Reduced => 6_000,
            Preset::Medium | Preset::Full | Preset::Raw => 8_192,
        }
    }

    /// Longer side photos are reduced to for SIFT, pixels.
    pub fn sift_max_image_side(self) -> u32 {
        match self {
            Preset::Preview => 1_024,
            Preset::Reduced | Preset::Medium | Preset::Full | Preset::Raw => 1_600,
        }
    }

    /// Steps between training checkpoints: about every half minute of CPU training at the
    /// preset's size, so a crash loses little while writing the state (tens of MB) stays cheap.
    pub fn checkpoint_every(self) -> u32 {
        match self {
            Preset::Preview => 250,
            Preset::Reduced => 500,
            Preset::Medium | Preset::Full | Preset::Raw => 1_000,
        }
    }

    /// Triangle budget of the delivered mesh; `None` keeps the extracted mesh undecimated.
    pub fn max_triangles(self) -> Option<usize> {
        match self {
            Preset::Preview => Some(24_000),
            Preset::Reduced => Some(49_000),
            Preset::Medium => Some(99_000),
            Preset::Full => Some(250_000),
            Preset::Raw => None,
        }
    }

    /// Side of the square base-colour texture, texels.
    pub fn texture_size(self) -> u32 {
        match self {
            Preset::Preview => 1024,
            Preset::Reduced | Preset::Medium => 2048,
            Preset::Full | Preset::Raw => 4096,
        }
    }

    /// TSDF voxels across the longest side of the extraction region: the voxel size relative to
    /// the object. Finer than the triangle budget needs, so decimation, not the voxels, decides
    /// which detail is dropped.
    pub fn voxels_across(self) -> f32 {
        match self {
            Preset::Preview => 128.0,
            Preset::Reduced => 192.0,
            Preset::Medium => 256.0,
            Preset::Full | Preset::Raw => 384.0,
        }
    }
}

named_enum!(Preset, PRESETS, "preset");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_every_figure_grows_with_detail() {
        for preset in PRESETS {
            assert_eq!(preset.name().parse::<Preset>(), Ok(preset));
        }
        assert!("huge".parse::<Preset>().is_err_and(|e| e.contains("preview, reduced, medium, full, raw")));
        let budgets: Vec<usize> = PRESETS.iter().map(|p| p.max_triangles().unwrap_or(usize::MAX)).collect();
        assert!(budgets.windows(2).all(|w| w[0] < w[1]));
        assert!(PRESETS.windows(2).all(|w| {
            let [a, b] = [w[0], w[1]];
            a.texture_size() <= b.texture_size()
                && a.train_steps() <= b.train_steps()
                && a.max_side() <= b.max_side()
                && a.max_splats() <= b.max_splats()
                && a.voxels_across() <= b.voxels_across()
        }));
        assert!(Preset::Preview.max_triangles().is_some_and(|t| t < 25_000));
    }
}
