//! `--device cpu|gpu|auto`: which training backend runs (opened by the engine's
//! [`kiln_job::device::open_backend`]).

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

impl From<Device> for kiln_job::Device {
    fn from(device: Device) -> Self {
        match device {
            Device::Cpu => Self::Cpu,
            Device::Gpu => Self::Gpu,
            Device::Auto => Self::Auto,
        }
    }
}
