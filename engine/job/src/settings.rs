//! What a [`JobSettings`] means in numbers: per-preset defaults ([`JobSettings::for_preset`]) and
//! the values every stage runs with once overrides and presets are resolved ([`Resolved`]).
//!
//! | preset | training steps | image side | splat cap | SIFT features | SIFT side |
//! |---|---|---|---|---|---|
//! | `preview` | 1 500 | 256 px | 60 000 | 4 096 | 1 024 px |
//! | `reduced` | 3 000 | 400 px | 100 000 | 6 000 | 1 600 px |
//! | `medium` | 7 000 | 800 px | 200 000 | 8 192 | 1 600 px |
//! | `full`, `raw` | 30 000 | 1 600 px | 500 000 | 8 192 | 1 600 px |
//!
//! `preview` is sized for a 2-core CPU without a GPU (a few minutes for ~20–80 photos); `medium`
//! and `full` assume a GPU (7 000 steps is 3DGS's first evaluation point, 30 000 its full run).

use std::fmt;
use std::str::FromStr;

use crate::mesh_stage::Format;
use crate::{Device, JobSettings, Stage};
use kiln_mesh::preset::Preset;
use kiln_sfm::pipeline::PosesOptions;

/// Formats a job exports unless told otherwise: what web, AR Quick Look and game engines take.
pub const DEFAULT_FORMATS: [Format; 2] = [Format::Glb, Format::Usdz];

/// Settings once the preset is applied and overrides taken: what the stages actually use, and
/// what `manifest.json` records beside the settings given.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Resolved {
    pub train_steps: u32,
    pub max_side: u32,
    pub max_splats: usize,
    pub sift_max_features: usize,
    pub sift_max_image_side: u32,
    /// `None`: undecimated (`raw`).
    pub max_triangles: Option<usize>,
    pub texture_size: u32,
}

impl JobSettings {
    /// The preset's defaults (see the module docs): GLB and USDZ, automatic device, rejected
    /// photos left out, seed 0, every stage.
    pub fn for_preset(preset: Preset) -> Self {
        Self {
            preset,
            formats: DEFAULT_FORMATS.to_vec(),
            device: Device::Auto,
            keep_all: false,
            train_steps: None,
            max_side: None,
            checkpoint_every: checkpoint_every(preset),
            max_triangles: None,
            texture_size: None,
            seed: 0,
            size_mm: None,
            until: Stage::Export,
        }
    }

    /// The values the stages use (preset defaults where no override is set).
    pub fn resolved(&self) -> Resolved {
        let (steps, side, splats, features, sift_side) = match self.preset {
            Preset::Preview => (1_500, 256, 60_000, 4_096, 1_024),
            Preset::Reduced => (3_000, 400, 100_000, 6_000, 1_600),
            Preset::Medium => (7_000, 800, 200_000, 8_192, 1_600),
            Preset::Full | Preset::Raw => (30_000, 1_600, 500_000, 8_192, 1_600),
        };
        Resolved {
            train_steps: self.train_steps.unwrap_or(steps),
            max_side: self.max_side.unwrap_or(side),
            max_splats: splats,
            sift_max_features: features,
            sift_max_image_side: sift_side,
            max_triangles: self.max_triangles.or(self.preset.max_triangles()),
            texture_size: self.texture_size.unwrap_or(self.preset.texture_size()),
        }
    }

    /// Whether the job runs `stage` at all (stages after [`JobSettings::until`] do not).
    pub fn runs(&self, stage: Stage) -> bool {
        stage <= self.until
    }
}

impl Resolved {
    /// The pose-estimation options these settings give.
    pub fn poses_options(&self) -> PosesOptions {
        let mut options = PosesOptions::default();
        options.sift.max_features = self.sift_max_features;
        options.sift.max_image_side = self.sift_max_image_side;
        options
    }
}

/// Steps between training checkpoints: about every half minute of CPU training at the preset's
/// size, so a crash loses little while writing the state (tens of MB) stays a small cost.
fn checkpoint_every(preset: Preset) -> u32 {
    match preset {
        Preset::Preview => 250,
        Preset::Reduced => 500,
        Preset::Medium | Preset::Full | Preset::Raw => 1_000,
    }
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
            Device::Auto => "auto",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Device {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Device::Cpu, Device::Gpu, Device::Auto]
            .into_iter()
            .find(|d| d.name() == text.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("unknown device {text:?}: expected cpu, gpu or auto"))
    }
}

impl Stage {
    pub fn name(self) -> &'static str {
        self.dir_name()
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Stage {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|s| s.name() == text.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("unknown stage {text:?}: expected check, poses, train, mesh or export"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_mesh::preset::PRESETS;

    #[test]
    fn presets_grow_and_overrides_win() {
        let resolved: Vec<Resolved> = PRESETS.iter().map(|&p| JobSettings::for_preset(p).resolved()).collect();
        assert!(resolved.windows(2).all(|w| w[0].train_steps <= w[1].train_steps && w[0].max_side <= w[1].max_side));
        let mut settings = JobSettings::for_preset(Preset::Preview);
        settings.train_steps = Some(123);
        settings.max_side = Some(77);
        settings.max_triangles = Some(999);
        let r = settings.resolved();
        assert_eq!((r.train_steps, r.max_side, r.max_triangles), (123, 77, Some(999)));
        assert_eq!(r.texture_size, Preset::Preview.texture_size());
        assert_eq!(r.poses_options().sift.max_features, 4_096);
    }

    #[test]
    fn names_parse_back() {
        for device in [Device::Cpu, Device::Gpu, Device::Auto] {
            assert_eq!(device.to_string().parse::<Device>().unwrap(), device);
        }
        for stage in Stage::ALL {
            assert_eq!(stage.to_string().parse::<Stage>().unwrap(), stage);
        }
        assert!("tpu".parse::<Device>().unwrap_err().contains("cpu, gpu or auto"));
        assert!("bake".parse::<Stage>().is_err());
        let settings = JobSettings::for_preset(Preset::Medium);
        assert!(settings.runs(Stage::Export) && settings.runs(Stage::Check));
        let poses_only = JobSettings { until: Stage::Poses, ..settings };
        assert!(poses_only.runs(Stage::Poses) && !poses_only.runs(Stage::Train));
    }
}
