//! Gaussian splats on top of [`kiln_core::splats`]: initialisation ([`init`]), the CPU reference
//! renderer ([`render`]), training ([`train`]) and the wgpu backend ([`gpu`], feature `gpu`), whose
//! kernels are held against the CPU reference.

pub mod init;
pub mod render;
pub mod train;

#[cfg(feature = "gpu")]
pub mod gpu;
