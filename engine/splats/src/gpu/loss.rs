//! The training loss on the GPU: `L = (1 − λ)·L1 + λ·(1 − SSIM)` (3DGS: λ = 0.2) between a
//! rendered image and its target, reduced to three numbers in a device buffer, and `∂L/∂image`
//! for the render backward pass. Nothing is read back per step. The maths (`shaders/loss_*.wgsl`,
//! derived in `loss_common.wgsl`) matches the CPU reference `crate::train::loss` and
//! `crate::train::ssim`, whose constants it uses.

use crate::train::ssim;

use crate::gpu::context::{GpuContext, GpuError, Kernel, workgroups_for};

/// Taps of SSIM's window the shaders are written for (`LOSS_RADIUS = 5` in `loss_common.wgsl`).
const SHADER_WINDOW: usize = 11;
const _: () = assert!(ssim::WINDOW == SHADER_WINDOW, "loss_common.wgsl hard-codes an 11-tap window");
/// Forward intermediates per pixel and channel: μx, μy, E[x²], E[y²], E[xy].
const BLUR_PLANES: u64 = 5;
/// Backward intermediates per pixel and channel: ∂L/∂μx, ∂L/∂E[x²], ∂L/∂E[xy].
const PARTIAL_PLANES: u64 = 3;
/// Bytes of one f32.
const F32_BYTES: u64 = 4;

/// The shader's `Dims` uniform.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    width: u32,
    height: u32,
    num_partials: u32,
    inv_count: f32,
    l1_weight: f32,
    ssim_weight: f32,
    c1: f32,
    c2: f32,
    window: [[f32; 4]; 3],
}

/// The loss kernels of one device (shared by every image size).
pub struct LossKernels {
    ctx: GpuContext,
    blur_inputs: Kernel,
    ssim_map: Kernel,
    reduce: Kernel,
    blur_partials: Kernel,
    grad: Kernel,
}

/// Device buffers of the loss for one image size.
pub struct LossBuffers {
    width: u32,
    height: u32,
    num_partials: u32,
    dims: wgpu::Buffer,
    blur: wgpu::Buffer,
    partial_grads: wgpu::Buffer,
    partial_sums: wgpu::Buffer,
    /// `[total, l1, ssim, 0]` of the last [`LossKernels::encode`].
    pub loss: wgpu::Buffer,
    /// `∂L/∂image`, interleaved RGB f32 like [`kiln_core::image_buf::ImageRgb`].
    pub grad_image: wgpu::Buffer,
}

impl LossBuffers {
    /// Buffers for `width × height` images and `L = (1 − ssim_weight)·L1 + ssim_weight·(1 − SSIM)`.
    pub fn new(ctx: &GpuContext, width: u32, height: u32, ssim_weight: f32) -> Result<Self, GpuError> {
        let n = u64::from(width) * u64::from(height);
        let pixels = u32::try_from(n).map_err(|_| GpuError::TooLarge {
            what: "loss image pixels",
            got: n,
            max: u32::MAX.into(),
        })?;
        ctx.check_binding_size("loss blur planes", BLUR_PLANES * 3 * n * F32_BYTES)?;
        let num_partials = workgroups_for(pixels);
        // The CPU reference's f64 window, rounded once.
        let mut packed = [[0.0f32; 4]; 3];
        for (i, w) in ssim::kernel().iter().enumerate() {
            packed[i / 4][i % 4] = *w as f32;
        }
        let dims = Dims {
            width,
            height,
            num_partials,
            inv_count: 1.0 / (3 * n).max(1) as f32,
            l1_weight: 1.0 - ssim_weight,
            ssim_weight,
            c1: ssim::C1 as f32,
            c2: ssim::C2 as f32,
            window: packed,
        };
        Ok(Self {
            width,
            height,
            num_partials,
            dims: ctx.uniform("loss dims", &dims),
            blur: ctx.zeroed("loss blur", BLUR_PLANES * 3 * n * F32_BYTES),
            partial_grads: ctx.zeroed("loss partial grads", PARTIAL_PLANES * 3 * n * F32_BYTES),
            partial_sums: ctx.zeroed("loss partial sums", 2 * u64::from(num_partials) * F32_BYTES),
            loss: ctx.zeroed("loss value", 4 * F32_BYTES),
            grad_image: ctx.zeroed("loss grad image", 3 * n * F32_BYTES),
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }
}

impl LossKernels {
    pub fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        let compile = |label: &'static str, source: &str| Kernel::new(ctx, label, &[COMMON, source]);
        Ok(Self {
            ctx: ctx.clone(),
            blur_inputs: compile("loss blur inputs", include_str!("shaders/loss_blur_inputs.wgsl"))?,
            ssim_map: compile("loss ssim map", include_str!("shaders/loss_ssim_map.wgsl"))?,
            reduce: compile("loss reduce", include_str!("shaders/loss_reduce.wgsl"))?,
            blur_partials: compile("loss blur partials", include_str!("shaders/loss_blur_partials.wgsl"))?,
            grad: compile("loss grad", include_str!("shaders/loss_grad.wgsl"))?,
        })
    }

    /// Records the loss forward and backward passes: once they run, `buffers.loss` holds
    /// `[total, l1, ssim, 0]` and `buffers.grad_image` holds `∂total/∂rendered`. `rendered` and
    /// `target` are interleaved RGB f32 images of `buffers`' size.
    pub fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        buffers: &LossBuffers,
        rendered: &wgpu::Buffer,
        target: &wgpu::Buffer,
    ) {
        let (ctx, b) = (&self.ctx, buffers);
        let groups = b.num_partials;
        let bind = |kernel: &Kernel, resources: &[&wgpu::Buffer]| kernel.bind(ctx, resources);
        let blur_inputs = bind(&self.blur_inputs, &[&b.dims, rendered, target, &b.blur]);
        let ssim_map = bind(&self.ssim_map, &[&b.dims, rendered, target, &b.blur, &b.partial_grads, &b.partial_sums]);
        let reduce = bind(&self.reduce, &[&b.dims, &b.partial_sums, &b.loss]);
        let blur_partials = bind(&self.blur_partials, &[&b.dims, &b.partial_grads, &b.blur]);
        let grad = bind(&self.grad, &[&b.dims, rendered, target, &b.blur, &b.grad_image]);
        self.blur_inputs.dispatch(encoder, &blur_inputs, groups);
        self.ssim_map.dispatch(encoder, &ssim_map, groups);
        self.reduce.dispatch(encoder, &reduce, 1);
        self.blur_partials.dispatch(encoder, &blur_partials, groups);
        self.grad.dispatch(encoder, &grad, groups);
    }
}

/// Declarations shared by the loss kernels (prepended to each).
const COMMON: &str = include_str!("shaders/loss_common.wgsl");
