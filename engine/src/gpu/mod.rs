//! The wgpu compute backend.
