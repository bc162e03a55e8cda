//! `kiln reconstruct --where local|cloud|auto`: where a job runs, and for `auto` why.
//!
//! `auto` asks the engine's own device probe the question `--device auto` asks before training
//! (`GpuContext::new(DevicePreference::HardwareOnly)`: a discrete, integrated or virtual GPU;
//! software adapters such as Mesa's lavapipe, wgpu's `DeviceType::Cpu`, do not count, as they
//! train slower than the CPU reference), and then whether that GPU has enough memory
//! ([`MIN_GPU_BUFFER_BYTES`]). Yes: local. No (or a build without GPU support): the cloud.

/// Where a job runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Where {
    /// On this machine (the engine picks its device with --device).
    #[default]
    Local,
    /// On the hosted service: quote, upload, remote run, outputs downloaded into --out.
    Cloud,
    /// Locally when a hardware GPU with enough memory is present, in the cloud otherwise.
    Auto,
}

/// The smallest "largest buffer" a GPU must allow for `auto` to keep a job local. wgpu reports
/// no total video memory; the largest single buffer an adapter can allocate (`max_buffer_size`)
/// is the closest figure it exposes, and drivers derive it from the memory they have (a card or
/// integrated GPU with a few GiB allows buffers of 2 GiB or more; older or tiny GPUs much less).
/// 1 GiB keeps the splat and intersection buffers of a `medium` job on a large capture within
/// one allocation; a GPU below it would run out of memory or fall back to the slow CPU backend,
/// and the cloud is the better place.
#[cfg(feature = "gpu")]
pub const MIN_GPU_BUFFER_BYTES: u64 = 1 << 30;

/// Where `place` runs the job, and why (for `auto`; `None` for an explicit choice).
pub fn decide(place: Where) -> (Where, Option<String>) {
    match place {
        Where::Local | Where::Cloud => (place, None),
        Where::Auto => match probe() {
            Ok(gpu) => (Where::Local, Some(format!("{gpu}: running locally"))),
            Err(missing) => (Where::Cloud, Some(format!("{missing}: running in the cloud"))),
        },
    }
}

/// The hardware GPU that would train, or why there is none fit to.
#[cfg(feature = "gpu")]
fn probe() -> Result<String, String> {
    use kiln_splats::gpu::{DevicePreference, GpuContext, GpuError};
    match GpuContext::new(DevicePreference::HardwareOnly) {
        Ok(gpu) => {
            let largest = gpu.device.limits().max_buffer_size;
            let mib = |bytes: u64| bytes >> 20;
            if largest >= MIN_GPU_BUFFER_BYTES {
                Ok(format!("GPU {} found (buffers up to {} MiB)", gpu.name(), mib(largest)))
            } else {
                Err(format!(
                    "GPU {} allows buffers of only {} MiB, less than the {} MiB a job needs",
                    gpu.name(),
                    mib(largest),
                    mib(MIN_GPU_BUFFER_BYTES)
                ))
            }
        }
        Err(GpuError::NoAdapter { seen, .. }) => {
            let seen = if seen.is_empty() { "none".to_string() } else { seen };
            Err(format!("no GPU adapter found (adapters seen: {seen}; software renderers do not count)"))
        }
        Err(other) => Err(format!("the GPU cannot be used ({other})")),
    }
}

#[cfg(not(feature = "gpu"))]
fn probe() -> Result<String, String> {
    Err("this kiln was built without GPU support".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_choices_are_kept_without_a_probe() {
        assert_eq!(decide(Where::Local), (Where::Local, None));
        assert_eq!(decide(Where::Cloud), (Where::Cloud, None));
    }

    #[test]
    fn auto_always_says_why() {
        let (place, why) = decide(Where::Auto);
        let why = why.unwrap();
        assert_ne!(place, Where::Auto);
        let expected = if place == Where::Local { "running locally" } else { "running in the cloud" };
        assert!(why.ends_with(expected), "{why}");
    }
}
