//! Quality presets of `kiln mesh`: how fine the surface is extracted, how many triangles the
//! delivered mesh may have and how large its texture is.
//!
//! | preset | triangles | texture | voxels across the region |
//! |---|---|---|---|
//! | `preview` | < 25k | 1024² | 128 |
//! | `reduced` | < 50k | 2048² | 192 |
//! | `medium` | < 100k | 2048² | 256 |
//! | `full` | ≤ 250k | 4096² | 384 |
//! | `raw` | undecimated | 4096² | 384 |
//!
//! The budgets follow what the targets take: web viewers and AR Quick Look stay fluid under
//! ~100k triangles, game engines import 250k easily; `raw` keeps everything extraction made.

use std::fmt;
use std::str::FromStr;

/// A named quality level (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

    pub fn name(self) -> &'static str {
        match self {
            Preset::Preview => "preview",
            Preset::Reduced => "reduced",
            Preset::Medium => "medium",
            Preset::Full => "full",
            Preset::Raw => "raw",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        PRESETS.into_iter().find(|p| p.name() == text).ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.name()).collect();
            format!("unknown preset {text:?}: expected one of {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_budgets_grow_with_detail() {
        for preset in PRESETS {
            assert_eq!(preset.name().parse::<Preset>().unwrap(), preset);
        }
        assert!("huge".parse::<Preset>().unwrap_err().contains("preview, reduced, medium, full, raw"));
        let budgets: Vec<usize> = PRESETS.iter().map(|p| p.max_triangles().unwrap_or(usize::MAX)).collect();
        assert!(budgets.windows(2).all(|w| w[0] < w[1]));
        assert!(PRESETS.windows(2).all(|w| w[0].texture_size() <= w[1].texture_size()));
        assert!(Preset::Preview.max_triangles().unwrap() < 25_000);
    }
}
