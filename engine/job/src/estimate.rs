//! A job's expected wall-clock time before it starts, for the app's draft pane and `--where
//! auto`: a per-stage model in the photo count and the preset's training work.
//!
//! The figures were measured with `kiln reconstruct --preset preview --device cpu` on the 2-core
//! CI machine (fox: 50 photos, sceaux-castle: 11 photos; `report.json` stage seconds) and are
//! scaled by the number of CPU threads, assuming the stages use them all. Training on a GPU has
//! no measured figure yet, so a GPU job is given the CPU's estimate: an upper bound.

use crate::JobSettings;

/// Threads the measured figures ran on.
const MEASURED_THREADS: f64 = 2.0;
/// Capture check per photo (fox 12.1 s / 50, sceaux 4.6 s / 11).
const CHECK_S_PER_PHOTO: f64 = 0.3;
/// Structure from motion: features per photo plus matching per photo pair (the fit of fox
/// 197 s and sceaux 25 s to `a·n + b·n(n−1)/2`).
const POSES_S_PER_PHOTO: f64 = 1.84;
const POSES_S_PER_PAIR: f64 = 0.086;
/// One training step at a 256-pixel longer side: the fox's 281 s for 1,500 steps (sceaux-castle
/// took 420 s: a façade grows more splats than an object); a step's cost grows with the pixels
/// rendered.
const TRAIN_S_PER_STEP_AT_256: f64 = 0.19;
/// Mesh, texture and verdict: a fixed part plus renders per photo (fox 48 s, sceaux 22 s).
const MESH_S_FIXED: f64 = 14.7;
const MESH_S_PER_PHOTO: f64 = 0.67;

/// Expected seconds for `photos` photos with `settings` on this machine's CPU threads (an upper
/// bound on a GPU: see the module docs).
pub fn local_seconds(photos: usize, settings: &JobSettings) -> f64 {
    let threads = std::thread::available_parallelism().map_or(MEASURED_THREADS, |n| n.get() as f64);
    let n = photos as f64;
    let resolved = settings.resolved();
    let side = f64::from(resolved.max_side) / 256.0;
    let check = CHECK_S_PER_PHOTO * n;
    let poses = POSES_S_PER_PHOTO * n + POSES_S_PER_PAIR * n * (n - 1.0).max(0.0) / 2.0;
    let train = TRAIN_S_PER_STEP_AT_256 * side * side * f64::from(resolved.train_steps);
    let mesh = MESH_S_FIXED + MESH_S_PER_PHOTO * n;
    (check + poses + train + mesh) * MEASURED_THREADS / threads.max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_protocol::Preset;

    #[test]
    fn more_photos_and_heavier_presets_take_longer() {
        let preview = JobSettings::for_preset(Preset::Preview);
        let medium = JobSettings::for_preset(Preset::Medium);
        assert!(local_seconds(50, &preview) < local_seconds(100, &preview));
        assert!(local_seconds(50, &preview) < local_seconds(50, &medium));
        assert!(local_seconds(0, &preview) > 0.0, "training and meshing cost time even for no photos");
    }

    #[test]
    fn the_fox_preview_estimate_is_its_measured_time_on_two_threads() {
        // fox, preview, 2-core machine: 12 + 197 + 281 + 48 = 538 s measured.
        let seconds = local_seconds(50, &JobSettings::for_preset(Preset::Preview));
        let threads = std::thread::available_parallelism().map_or(2.0, |n| n.get() as f64);
        let on_two = seconds * threads / 2.0;
        assert!((on_two - 538.0).abs() < 0.1 * 538.0, "{on_two:.0} s");
    }
}
