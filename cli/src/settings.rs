//! The settings flags every job command shares, turned into the protocol's [`SettingsOverrides`]
//! (the form `kiln.toml`, CSV columns and the API take too).

use anyhow::Result;
use kiln_protocol::{Device, Format, Preset, SettingsOverrides, Stage};

/// The job settings flags of `kiln reconstruct`, `kiln batch` and `kiln watch`. For a batch or a
/// watched folder they are every item's settings, which an input folder's `kiln.toml` and a CSV
/// row's columns override for their item. What no flag sets is the preset's default.
#[derive(clap::Args)]
pub struct SettingsArgs {
    /// Quality preset: preview, reduced, medium (the default), full or raw.
    #[arg(long)]
    pub preset: Option<Preset>,
    /// Comma-separated export formats: glb, usdz, obj, ply (glb,usdz by default).
    #[arg(long, value_delimiter = ',')]
    pub formats: Option<Vec<Format>>,
    /// Training device: cpu, gpu or auto (the default).
    #[arg(long)]
    pub device: Option<Device>,
    /// Use the photos the capture check rejects too.
    #[arg(long)]
    pub keep_all: bool,
    /// Training steps, instead of the preset's.
    #[arg(long)]
    pub steps: Option<u32>,
    /// Longer image side for training and baking, pixels, instead of the preset's.
    #[arg(long)]
    pub max_side: Option<u32>,
    /// Steps between training checkpoints, instead of the preset's.
    #[arg(long)]
    pub checkpoint_every: Option<u32>,
    /// The object's longest side in millimetres: exports in true size.
    #[arg(long, value_name = "N")]
    pub size_mm: Option<f64>,
    /// Last stage to run: check, poses, train, mesh or export (the default).
    #[arg(long)]
    pub until: Option<Stage>,
}

impl SettingsArgs {
    /// The flags as the protocol's overrides (only the flags given are set), checked.
    pub fn overrides(&self) -> Result<SettingsOverrides> {
        let overrides = SettingsOverrides {
            preset: self.preset,
            formats: self.formats.clone(),
            device: self.device,
            keep_all: self.keep_all.then_some(true),
            train_steps: self.steps,
            max_side: self.max_side,
            checkpoint_every: self.checkpoint_every,
            size_mm: self.size_mm,
            until: self.until,
            ..SettingsOverrides::default()
        };
        overrides.validate().map_err(anyhow::Error::msg)?;
        Ok(overrides)
    }
}
