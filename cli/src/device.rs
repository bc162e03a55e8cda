//! `--device cpu|gpu|auto`: which training backend runs.

use anyhow::Result;
use kiln_engine::train::backend::TrainBackend;
use kiln_engine::train::cpu::CpuBackend;

/// The compute device a command asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// The plain-Rust CPU reference backend.
    Cpu,
    /// The wgpu backend on any adapter, software ones (lavapipe) included.
    Gpu,
    /// A hardware GPU if wgpu finds one, else the CPU.
    Auto,
}

/// Opens the backend for `device`, training against `background` with SSIM weight `ssim_weight`.
pub fn open_backend(device: Device, background: [f32; 3], ssim_weight: f32) -> Result<Box<dyn TrainBackend>> {
    match device {
        Device::Cpu => Ok(Box::new(CpuBackend::new(background, ssim_weight))),
        Device::Gpu => gpu::open(false, background, ssim_weight)?
            .ok_or_else(|| anyhow::anyhow!("--device gpu: no wgpu adapter found (is a Vulkan driver such as mesa-vulkan-drivers installed?)")),
        Device::Auto => Ok(gpu::open(true, background, ssim_weight)?
            .unwrap_or_else(|| Box::new(CpuBackend::new(background, ssim_weight)))),
    }
}

#[cfg(feature = "gpu")]
mod gpu {
    use anyhow::Result;
    use kiln_engine::gpu::DevicePreference;
    use kiln_engine::gpu::backend::gpu_backend;
    use kiln_engine::train::backend::TrainBackend;

    pub fn open(hardware_only: bool, background: [f32; 3], ssim_weight: f32) -> Result<Option<Box<dyn TrainBackend>>> {
        let preference = if hardware_only { DevicePreference::HardwareOnly } else { DevicePreference::AllowSoftware };
        let backend = gpu_backend(preference, background, ssim_weight)?;
        Ok(backend.map(|b| Box::new(b) as Box<dyn TrainBackend>))
    }
}

#[cfg(not(feature = "gpu"))]
mod gpu {
    use anyhow::Result;
    use kiln_engine::train::backend::TrainBackend;

    pub fn open(hardware_only: bool, _background: [f32; 3], _ssim_weight: f32) -> Result<Option<Box<dyn TrainBackend>>> {
        if hardware_only {
            return Ok(None);
        }
        anyhow::bail!("this kiln was built without the `gpu` feature")
    }
}
