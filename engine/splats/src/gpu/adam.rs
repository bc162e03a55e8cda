//! Adam on the GPU: the moments of every parameter group live in device buffers next to the
//! parameters, and one dispatch per group applies the CPU reference's update
//! (`crate::train::adam`, same constants and evaluation order) in place.

use crate::train::adam::{BETA1, BETA2, EPSILON, bias_corrections};

use crate::gpu::SH_FLOATS;
use crate::gpu::context::{GpuContext, GpuError, Kernel, workgroups_for};

/// Floats of the SH DC term at the start of each splat's SH block (one coefficient × RGB).
const SH_DC_FLOATS: u32 = 3;

/// The shader's `Step` uniform (padded to a multiple of 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct StepUniform {
    lr_low: f32,
    lr_high: f32,
    period: u32,
    split: u32,
    bias_correction1: f32,
    bias_correction2_sqrt: f32,
    count: u32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    _pad: [u32; 2],
}

/// Learning rates of one parameter group: element `i` of the flat block uses `low` when
/// `i % period < split`, else `high`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupRates {
    pub low: f32,
    pub high: f32,
    pub period: u32,
    pub split: u32,
}

impl GroupRates {
    /// One rate for the whole group.
    pub fn uniform(lr: f32) -> Self {
        Self { low: lr, high: lr, period: 1, split: 1 }
    }

    /// The SH block's rates: `dc` for each splat's first 3 floats, `rest` for the other 45.
    pub fn sh(dc: f32, rest: f32) -> Self {
        Self { low: dc, high: rest, period: SH_FLOATS as u32, split: SH_DC_FLOATS }
    }
}

/// The Adam kernel of one device.
pub struct AdamKernels {
    ctx: GpuContext,
    kernel: Kernel,
}

/// Optimiser state of one parameter group of `len` floats: first and second moments.
pub struct AdamGroup {
    len: u32,
    uniform: wgpu::Buffer,
    /// First moments, same layout as the parameters.
    pub m: wgpu::Buffer,
    /// Second moments, same layout as the parameters.
    pub v: wgpu::Buffer,
}

impl AdamGroup {
    /// Moments for one group, initialised from `m` and `v` (same length: the group's floats).
    pub fn new(ctx: &GpuContext, label: &str, m: &[f32], v: &[f32]) -> Result<Self, GpuError> {
        if m.len() != v.len() {
            return Err(GpuError::BufferSize {
                name: "adam second moments",
                got: v.len() as u64 * 4,
                expected: m.len() as u64 * 4,
            });
        }
        let len = u32::try_from(m.len()).map_err(|_| GpuError::TooLarge {
            what: "adam group floats",
            got: m.len() as u64,
            max: u32::MAX.into(),
        })?;
        ctx.check_binding_size("adam moments", u64::from(len) * 4)?;
        Ok(Self {
            len,
            uniform: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&format!("adam step {label}")),
                size: std::mem::size_of::<StepUniform>() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            m: ctx.upload(&format!("adam m {label}"), m),
            v: ctx.upload(&format!("adam v {label}"), v),
        })
    }

    /// Number of floats in the group.
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl AdamKernels {
    pub fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        Ok(Self { ctx: ctx.clone(), kernel: Kernel::new(ctx, "adam", &[include_str!("shaders/adam.wgsl")])? })
    }

    /// Writes this step's rates and bias corrections (1-based `step`) for `group` into the queue,
    /// and records its update of `params` (`group.len()` floats) from `grads` into `encoder`.
    /// The write lands before the encoder's commands as long as the encoder is submitted after
    /// this call, and before the next call for the same group: one submission per training step.
    pub fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        group: &AdamGroup,
        params: &wgpu::Buffer,
        grads: &wgpu::Buffer,
        rates: GroupRates,
        step: u32,
    ) {
        if group.is_empty() {
            return;
        }
        let (bias_correction1, bias_correction2_sqrt) = bias_corrections(step);
        let uniform = StepUniform {
            lr_low: rates.low,
            lr_high: rates.high,
            period: rates.period,
            split: rates.split,
            bias_correction1,
            bias_correction2_sqrt,
            count: group.len,
            beta1: BETA1,
            beta2: BETA2,
            epsilon: EPSILON,
            _pad: [0; 2],
        };
        let ctx = &self.ctx;
        ctx.queue.write_buffer(&group.uniform, 0, bytemuck::bytes_of(&uniform));
        let bind_group = self.kernel.bind(ctx, &[&group.uniform, grads, params, &group.m, &group.v]);
        self.kernel.dispatch(encoder, &bind_group, workgroups_for(group.len));
    }
}
