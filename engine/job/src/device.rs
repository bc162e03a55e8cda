//! Opening the training backend a [`Device`] asks for: the CPU reference, or the wgpu backend
//! (only in builds with the `gpu` feature).

use crate::Device;
use kiln_splats::train::backend::TrainBackend;
use kiln_splats::train::cpu::CpuBackend;

/// Why no backend could be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "the GPU device was asked for, but wgpu finds no adapter (is a Vulkan driver such as mesa-vulkan-drivers installed?)"
    )]
    NoAdapter,
    #[error("the GPU device was asked for, but this Kiln was built without GPU support")]
    NotBuilt,
    #[error("opening the GPU: {0}")]
    Gpu(String),
}

/// Opens the backend for `device`, training against `background` with SSIM weight `ssim_weight`.
/// `Auto` takes a hardware GPU when wgpu finds one, else the CPU; `Gpu` takes any adapter,
/// software ones (lavapipe) included.
pub fn open_backend(
    device: Device,
    background: [f32; 3],
    ssim_weight: f32,
) -> Result<Box<dyn TrainBackend>, BackendError> {
    match device {
        Device::Cpu => Ok(Box::new(CpuBackend::new(background, ssim_weight))),
        Device::Gpu => gpu::open(false, background, ssim_weight)?.ok_or(BackendError::NoAdapter),
        Device::Auto => Ok(gpu::open(true, background, ssim_weight)?
            .unwrap_or_else(|| Box::new(CpuBackend::new(background, ssim_weight)))),
    }
}

#[cfg(feature = "gpu")]
mod gpu {
    use super::BackendError;
    use kiln_splats::gpu::DevicePreference;
    use kiln_splats::gpu::backend::gpu_backend;
    use kiln_splats::train::backend::TrainBackend;

    pub fn open(
        hardware_only: bool,
        background: [f32; 3],
        ssim_weight: f32,
    ) -> Result<Option<Box<dyn TrainBackend>>, BackendError> {
        let preference = if hardware_only { DevicePreference::HardwareOnly } else { DevicePreference::AllowSoftware };
        let backend = gpu_backend(preference, background, ssim_weight).map_err(|e| BackendError::Gpu(e.to_string()))?;
        Ok(backend.map(|b| Box::new(b) as Box<dyn TrainBackend>))
    }
}

#[cfg(not(feature = "gpu"))]
mod gpu {
    use super::BackendError;
    use kiln_splats::train::backend::TrainBackend;

    pub fn open(
        hardware_only: bool,
        _background: [f32; 3],
        _ssim_weight: f32,
    ) -> Result<Option<Box<dyn TrainBackend>>, BackendError> {
        if hardware_only { Ok(None) } else { Err(BackendError::NotBuilt) }
    }
}
