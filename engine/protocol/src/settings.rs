//! A job's settings ([`JobSettings`]), the values its stages run with once the preset is applied
//! ([`Resolved`]), and [`SettingsOverrides`]: the one all-optional form that command-line flags,
//! a folder's `kiln.toml`, a batch CSV's columns, API JSON and the app's IPC all deserialize, so
//! every front end accepts the same names with the same meaning.

use crate::preset::Preset;

/// The stages of a job, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Check,
    Poses,
    Train,
    Mesh,
    Export,
}

impl Stage {
    pub const ALL: [Stage; 5] = [Stage::Check, Stage::Poses, Stage::Train, Stage::Mesh, Stage::Export];

    /// The stage's name, which is also its subfolder in the job folder.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Check => "check",
            Stage::Poses => "poses",
            Stage::Train => "train",
            Stage::Mesh => "mesh",
            Stage::Export => "export",
        }
    }
}

/// Which compute device trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// The plain-Rust CPU reference backend.
    Cpu,
    /// The wgpu backend on any adapter, software ones (lavapipe) included.
    Gpu,
    /// A hardware GPU if wgpu finds one, else the CPU.
    #[default]
    Auto,
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

/// A file format a job exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// glTF binary: the web, Android, game engines.
    Glb,
    /// Apple's AR Quick Look.
    Usdz,
    Obj,
    /// The training splats (3DGS PLY), copied unchanged.
    Ply,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Glb, Format::Usdz, Format::Obj, Format::Ply];

    pub fn name(self) -> &'static str {
        match self {
            Format::Glb => "glb",
            Format::Usdz => "usdz",
            Format::Obj => "obj",
            Format::Ply => "ply",
        }
    }
}

/// Formats a job exports unless told otherwise: what web, AR Quick Look and game engines take.
pub const DEFAULT_FORMATS: [Format; 2] = [Format::Glb, Format::Usdz];

/// Every setting of a job. Recorded in `manifest.json`; a stage's output is reused only when the
/// settings it depends on are unchanged.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct JobSettings {
    pub preset: Preset,
    pub formats: Vec<Format>,
    pub device: Device,
    /// Keep photos the capture check rejects (by default they are left out of the job).
    pub keep_all: bool,
    /// Training steps; `None`: the preset's.
    pub train_steps: Option<u32>,
    /// Longer image side for training and baking; `None`: the preset's.
    pub max_side: Option<u32>,
    /// Training writes a checkpoint every this many steps.
    pub checkpoint_every: u32,
    pub max_triangles: Option<usize>,
    pub texture_size: Option<u32>,
    pub seed: u64,
    /// The object's longest side in millimetres, when the user knows it: the export's metric
    /// scale (photos alone fix none).
    #[serde(default)]
    pub size_mm: Option<f64>,
    /// The last stage to run (`Export` for a full job; `Poses` for cameras only).
    pub until: Stage,
}

/// Settings once the preset is applied and overrides taken: what the stages actually use, and
/// what `manifest.json` records beside the settings given.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
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
    /// The preset's defaults: GLB and USDZ, automatic device, rejected photos left out, seed 0,
    /// every stage.
    pub fn for_preset(preset: Preset) -> Self {
        Self {
            preset,
            formats: DEFAULT_FORMATS.to_vec(),
            device: Device::Auto,
            keep_all: false,
            train_steps: None,
            max_side: None,
            checkpoint_every: preset.checkpoint_every(),
            max_triangles: None,
            texture_size: None,
            seed: 0,
            size_mm: None,
            until: Stage::Export,
        }
    }

    /// The values the stages use (preset defaults where no override is set).
    pub fn resolved(&self) -> Resolved {
        let preset = self.preset;
        Resolved {
            train_steps: self.train_steps.unwrap_or(preset.train_steps()),
            max_side: self.max_side.unwrap_or(preset.max_side()),
            max_splats: preset.max_splats(),
            sift_max_features: preset.sift_max_features(),
            sift_max_image_side: preset.sift_max_image_side(),
            max_triangles: self.max_triangles.or(preset.max_triangles()),
            texture_size: self.texture_size.unwrap_or(preset.texture_size()),
        }
    }

    /// Whether the job runs `stage` at all (stages after [`JobSettings::until`] do not).
    pub fn runs(&self, stage: Stage) -> bool {
        stage <= self.until
    }
}

impl Default for JobSettings {
    fn default() -> Self {
        Self::for_preset(Preset::default())
    }
}

/// Settings given in part: each field set overrides, each `None` leaves what is below it. Every
/// front end deserializes this one type (unknown names are an error, so a typo is not ignored),
/// layers it ([`SettingsOverrides::over`]: flags over `kiln.toml` over a CSV row, say) and turns
/// it into [`JobSettings`] ([`SettingsOverrides::settings`]).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
// Every field is left out when `None`. ts-rs reads `default` on fields only, so it is told here.
#[cfg_attr(feature = "ts", ts(optional_fields))]
pub struct SettingsOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<Format>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_all: Option<bool>,
    /// `steps` is accepted too: the command-line flag's name and early `kiln.toml` files'.
    #[serde(skip_serializing_if = "Option::is_none", alias = "steps")]
    pub train_steps: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_side: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_triangles: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub texture_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_mm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Stage>,
}

/// Every setting of `settings` as set overrides, so that [`SettingsOverrides::settings`] gives
/// the same settings back: how a job queued here is sent to run elsewhere (the hosted service).
impl From<&JobSettings> for SettingsOverrides {
    fn from(settings: &JobSettings) -> SettingsOverrides {
        SettingsOverrides {
            preset: Some(settings.preset),
            formats: Some(settings.formats.clone()),
            device: Some(settings.device),
            keep_all: Some(settings.keep_all),
            train_steps: settings.train_steps,
            max_side: settings.max_side,
            checkpoint_every: Some(settings.checkpoint_every),
            max_triangles: settings.max_triangles,
            texture_size: settings.texture_size,
            seed: Some(settings.seed),
            size_mm: settings.size_mm,
            until: Some(settings.until),
        }
    }
}

impl SettingsOverrides {
    /// These overrides layered over `lower`: a field set here wins, else `lower`'s.
    pub fn over(&self, lower: &SettingsOverrides) -> SettingsOverrides {
        SettingsOverrides {
            preset: self.preset.or(lower.preset),
            formats: self.formats.clone().or_else(|| lower.formats.clone()),
            device: self.device.or(lower.device),
            keep_all: self.keep_all.or(lower.keep_all),
            train_steps: self.train_steps.or(lower.train_steps),
            max_side: self.max_side.or(lower.max_side),
            checkpoint_every: self.checkpoint_every.or(lower.checkpoint_every),
            max_triangles: self.max_triangles.or(lower.max_triangles),
            texture_size: self.texture_size.or(lower.texture_size),
            seed: self.seed.or(lower.seed),
            size_mm: self.size_mm.or(lower.size_mm),
            until: self.until.or(lower.until),
        }
    }

    /// The settings: the preset's defaults (`medium` when none is set), each set field over them.
    pub fn settings(&self) -> JobSettings {
        let defaults = JobSettings::for_preset(self.preset.unwrap_or_default());
        JobSettings {
            preset: defaults.preset,
            formats: self.formats.clone().unwrap_or(defaults.formats),
            device: self.device.unwrap_or(defaults.device),
            keep_all: self.keep_all.unwrap_or(defaults.keep_all),
            train_steps: self.train_steps.or(defaults.train_steps),
            max_side: self.max_side.or(defaults.max_side),
            checkpoint_every: self.checkpoint_every.unwrap_or(defaults.checkpoint_every),
            max_triangles: self.max_triangles.or(defaults.max_triangles),
            texture_size: self.texture_size.or(defaults.texture_size),
            seed: self.seed.unwrap_or(defaults.seed),
            size_mm: self.size_mm.or(defaults.size_mm),
            until: self.until.unwrap_or(defaults.until),
        }
    }

    /// What is wrong with the values set, in words for the user (the first problem found).
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("train_steps", self.train_steps.map(u64::from)),
            ("max_side", self.max_side.map(u64::from)),
            ("checkpoint_every", self.checkpoint_every.map(u64::from)),
            ("max_triangles", self.max_triangles.map(|t| t as u64)),
            ("texture_size", self.texture_size.map(u64::from)),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == Some(0)) {
            return Err(format!("{name} must be positive"));
        }
        if self.size_mm.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
            return Err("size_mm must be a positive number of millimetres".into());
        }
        if self.formats.as_ref().is_some_and(Vec::is_empty) {
            return Err("formats must name at least one format".into());
        }
        Ok(())
    }
}

named_enum!(Stage, Stage::ALL, "stage");
named_enum!(Device, [Device::Cpu, Device::Gpu, Device::Auto], "device");
named_enum!(Format, Format::ALL, "format");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset::PRESETS;

    #[test]
    fn presets_grow_and_overrides_win() {
        let resolved: Vec<Resolved> = PRESETS.iter().map(|&p| JobSettings::for_preset(p).resolved()).collect();
        assert!(resolved.windows(2).all(|w| w[0].train_steps <= w[1].train_steps && w[0].max_side <= w[1].max_side));
        let overrides = SettingsOverrides {
            preset: Some(Preset::Preview),
            train_steps: Some(123),
            max_side: Some(77),
            max_triangles: Some(999),
            ..SettingsOverrides::default()
        };
        let r = overrides.settings().resolved();
        assert_eq!((r.train_steps, r.max_side, r.max_triangles), (123, 77, Some(999)));
        assert_eq!(r.texture_size, Preset::Preview.texture_size());
        assert_eq!(r.sift_max_features, 4_096);
    }

    #[test]
    fn names_parse_back() {
        for device in [Device::Cpu, Device::Gpu, Device::Auto] {
            assert_eq!(device.to_string().parse::<Device>(), Ok(device));
        }
        for stage in Stage::ALL {
            assert_eq!(stage.to_string().parse::<Stage>(), Ok(stage));
        }
        for format in Format::ALL {
            assert_eq!(format!(" {} ", format.name().to_uppercase()).parse::<Format>(), Ok(format));
        }
        assert!("tpu".parse::<Device>().is_err_and(|e| e.contains("cpu, gpu, auto")));
        assert!("bake".parse::<Stage>().is_err());
        let settings = JobSettings::for_preset(Preset::Medium);
        assert!(settings.runs(Stage::Export) && settings.runs(Stage::Check));
        let poses_only = JobSettings { until: Stage::Poses, ..settings };
        assert!(poses_only.runs(Stage::Poses) && !poses_only.runs(Stage::Train));
    }

    #[test]
    fn settings_as_overrides_give_the_same_settings_back() {
        let settings = JobSettings {
            formats: vec![Format::Usdz],
            device: Device::Cpu,
            keep_all: true,
            train_steps: Some(321),
            max_side: Some(400),
            checkpoint_every: 50,
            max_triangles: Some(9_000),
            texture_size: Some(512),
            seed: 11,
            size_mm: Some(80.0),
            until: Stage::Mesh,
            ..JobSettings::for_preset(Preset::Full)
        };
        assert_eq!(SettingsOverrides::from(&settings).settings(), settings);
        let preview = JobSettings::for_preset(Preset::Preview);
        assert_eq!(SettingsOverrides::from(&preview).settings(), preview);
    }

    #[test]
    fn overrides_layer_and_reject_unknown_names() {
        let file: SettingsOverrides =
            serde_json::from_str(r#"{"preset": "full", "formats": ["glb"], "seed": 7}"#).unwrap();
        let flags = SettingsOverrides { seed: Some(9), device: Some(Device::Cpu), ..SettingsOverrides::default() };
        let settings = flags.over(&file).settings();
        assert_eq!(settings.preset, Preset::Full);
        assert_eq!(settings.formats, vec![Format::Glb]);
        assert_eq!((settings.seed, settings.device), (9, Device::Cpu));
        assert_eq!(settings.checkpoint_every, Preset::Full.checkpoint_every());
        let old_name: SettingsOverrides = serde_json::from_str(r#"{"steps": 500}"#).unwrap();
        assert_eq!(old_name.train_steps, Some(500));
        let typo = serde_json::from_str::<SettingsOverrides>(r#"{"presets": "full"}"#);
        assert!(typo.is_err_and(|e| e.to_string().contains("unknown field `presets`")));
        assert!(SettingsOverrides { max_side: Some(0), ..SettingsOverrides::default() }.validate().is_err());
        assert!(SettingsOverrides { size_mm: Some(f64::NAN), ..SettingsOverrides::default() }.validate().is_err());
        assert_eq!(SettingsOverrides::default().validate(), Ok(()));
        assert_eq!(SettingsOverrides::default().settings(), JobSettings::default());
    }
}
