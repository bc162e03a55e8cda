//! Helpers shared by the engine's job tests: the datasets folder and a small bunny-synth job.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use kiln_job::{Device, JobSettings};
use kiln_protocol::Format;
use kiln_protocol::Preset;

/// A folder of symbolic links to every 4th bunny-synth photo (20 views 18° apart: enough for
/// poses; bunny-mini's 12 small views are not).
pub fn bunny_subset(root: &Path) -> Option<PathBuf> {
    let images = kiln_testkit::dataset("bunny-synth/images")?;
    let mut names: Vec<PathBuf> = std::fs::read_dir(&images).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let subset = root.join("photos");
    std::fs::create_dir_all(&subset).unwrap();
    for path in names.iter().step_by(4) {
        std::os::unix::fs::symlink(path, subset.join(path.file_name().unwrap())).unwrap();
    }
    Some(subset)
}

/// Debug-sized settings: 400 training steps on 100-px views on the CPU (about the least that
/// gives splats a surface can be found in), GLB only.
pub fn tiny_settings() -> JobSettings {
    JobSettings {
        device: Device::Cpu,
        train_steps: Some(400),
        max_side: Some(100),
        formats: vec![Format::Glb],
        ..JobSettings::for_preset(Preset::Preview)
    }
}
