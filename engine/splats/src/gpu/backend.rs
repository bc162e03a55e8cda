//! The GPU training backend: [`GpuBackend`] implements [`TrainBackend`] with the parameters,
//! Adam moments, densification statistics and target images all resident on the device. A step is
//! render forward → loss forward/backward → render backward → Adam → statistics, with no
//! readback at all, except in the first step after each [`TrainBackend::set_state`], which renders
//! through the exact [`GpuRenderer::forward`] to size the intersection capacity (the module doc of
//! [`super`]: later overflows are detected and the capacity grown at the syncs, `last_loss` and
//! `state`, which read back anyway). [`TrainBackend::state`] and
//! [`TrainBackend::set_state`] move everything through [`TrainState`] for the CPU-side
//! densification every few hundred steps.

use crate::render::RasterOutput;
use crate::train::backend::{AdamMoments, DensifyStats, LearningRates, StepLoss, TrainBackend, TrainState};
use crate::train::{TrainError, check_size};
use kiln_core::camera::Camera;
use kiln_core::image_buf::ImageRgb;
use kiln_core::splats::{ShCoeffs, SplatGrads, Splats};

use crate::gpu::adam::{AdamGroup, AdamKernels, GroupRates};
use crate::gpu::context::{Kernel, workgroups_for};
use crate::gpu::loss::{LossBuffers, LossKernels};
use crate::gpu::{DevicePreference, GpuContext, GpuError, GpuRenderer, GpuSplatGrads, GpuSplats};

impl From<GpuError> for TrainError {
    fn from(error: GpuError) -> Self {
        TrainError::Gpu(error.to_string())
    }
}

/// Opens a GPU training backend on an adapter allowed by `preference`, or `Ok(None)` when there
/// is no such adapter (the caller falls back to the CPU when the device was left to choice, or
/// reports the absence when a GPU was asked for). Other failures (device creation, shader
/// compilation) are errors.
pub fn gpu_backend(
    preference: DevicePreference,
    background: [f32; 3],
    ssim_weight: f32,
) -> Result<Option<GpuBackend>, GpuError> {
    let ctx = match GpuContext::new(preference) {
        Ok(ctx) => ctx,
        Err(GpuError::NoAdapter { preference, seen }) => {
            tracing::info!(?preference, adapters = %seen, "no suitable wgpu adapter");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    GpuBackend::new(&ctx, background, ssim_weight).map(Some)
}

/// One training view on the device.
struct GpuView {
    camera: Camera,
    /// Interleaved RGB f32, the layout of [`ImageRgb::pixels`].
    target: wgpu::Buffer,
}

/// Adam moments of the five parameter groups.
struct Moments {
    means: AdamGroup,
    log_scales: AdamGroup,
    rotations: AdamGroup,
    opacity_logits: AdamGroup,
    sh: AdamGroup,
}

/// [`DensifyStats`] on the device.
struct Stats {
    grad2d_sum: wgpu::Buffer,
    visible_count: wgpu::Buffer,
    max_radius: wgpu::Buffer,
}

/// Everything [`TrainState`] holds, on the device.
struct DeviceState {
    splats: GpuSplats,
    moments: Moments,
    stats: Stats,
}

/// Training on a wgpu device. The training background and SSIM weight are fixed at construction.
pub struct GpuBackend {
    ctx: GpuContext,
    renderer: GpuRenderer,
    loss: LossKernels,
    adam: AdamKernels,
    stats_kernel: Kernel,
    background: [f32; 3],
    ssim_weight: f32,
    views: Vec<GpuView>,
    /// One set per distinct image size among the views.
    loss_buffers: Vec<LossBuffers>,
    /// Index into `loss_buffers` of the last step's loss.
    last_loss: Option<usize>,
    state: Option<DeviceState>,
    /// Whether the next step renders through the exact (reading back) forward, to size the
    /// renderer's intersection capacity for a new state.
    calibrate: bool,
}

impl GpuBackend {
    /// Compiles every training kernel on `ctx`.
    pub fn new(ctx: &GpuContext, background: [f32; 3], ssim_weight: f32) -> Result<Self, GpuError> {
        Ok(Self {
            ctx: ctx.clone(),
            renderer: GpuRenderer::new(ctx)?,
            loss: LossKernels::new(ctx)?,
            adam: AdamKernels::new(ctx)?,
            stats_kernel: Kernel::new(ctx, "densify stats", &[include_str!("shaders/train_densify_stats.wgsl")])?,
            background,
            ssim_weight,
            views: Vec::new(),
            loss_buffers: Vec::new(),
            last_loss: None,
            state: None,
            calibrate: true,
        })
    }

    /// The renderer, whose intersection capacity tests inspect and force.
    pub fn renderer(&self) -> &GpuRenderer {
        &self.renderer
    }

    fn device_state(&self) -> Result<&DeviceState, TrainError> {
        self.state.as_ref().ok_or_else(|| TrainError::Gpu("no training state: set_state was never called".into()))
    }

    /// Records the Adam update of every parameter group and the statistics accumulation.
    fn encode_update(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        grads: &GpuSplatGrads,
        lr: &LearningRates,
        step: u32,
    ) -> Result<(), TrainError> {
        let state = self.device_state()?;
        let (p, m) = (&state.splats, &state.moments);
        let groups = [
            (&m.means, &p.means, &grads.means, GroupRates::uniform(lr.means)),
            (&m.log_scales, &p.log_scales, &grads.log_scales, GroupRates::uniform(lr.log_scales)),
            (&m.rotations, &p.rotations, &grads.rotations, GroupRates::uniform(lr.rotations)),
            (&m.opacity_logits, &p.opacity_logits, &grads.opacity_logits, GroupRates::uniform(lr.opacity_logits)),
            (&m.sh, &p.sh, &grads.sh, GroupRates::sh(lr.sh_dc, lr.sh_rest)),
        ];
        for (group, params, group_grads, rates) in groups {
            self.adam.encode(encoder, group, params, group_grads, rates, step);
        }
        let s = &state.stats;
        let bind_group =
            self.stats_kernel.bind(&self.ctx, &[&grads.densify, &s.grad2d_sum, &s.visible_count, &s.max_radius]);
        self.stats_kernel.dispatch(encoder, &bind_group, workgroups_for(p.len));
        Ok(())
    }

    /// The loss buffers for `width × height`, created on first use.
    fn loss_buffers_index(&mut self, width: u32, height: u32) -> Result<usize, GpuError> {
        if let Some(i) = self.loss_buffers.iter().position(|b| (b.width(), b.height()) == (width, height)) {
            return Ok(i);
        }
        self.loss_buffers.push(LossBuffers::new(&self.ctx, width, height, self.ssim_weight)?);
        Ok(self.loss_buffers.len() - 1)
    }

    /// Submits one training step: render, loss, render backward, Adam, statistics.
    fn run_step(&mut self, view: usize, lr: &LearningRates, adam_step: u32) -> Result<(), TrainError> {
        let count = self.views.len();
        let (camera, width, height) = match self.views.get(view) {
            Some(v) => (v.camera, v.camera.width(), v.camera.height()),
            None => return Err(TrainError::ViewIndex { index: view, count }),
        };
        let loss_index = self.loss_buffers_index(width, height)?;
        let state = self.device_state()?;
        let frame = if self.calibrate {
            self.renderer.forward(&state.splats, &camera, self.background)?
        } else {
            self.renderer.forward_resident(&state.splats, &camera, self.background)?
        };
        let loss_buffers = &self.loss_buffers[loss_index];
        let mut encoder = self.encoder("train loss");
        self.loss.encode(&mut encoder, loss_buffers, &frame.image, &self.views[view].target);
        self.ctx.queue.submit([encoder.finish()]);
        let grads = self.renderer.backward(&state.splats, &frame, &loss_buffers.grad_image)?;
        let mut encoder = self.encoder("train update");
        self.encode_update(&mut encoder, &grads, lr, adam_step)?;
        self.ctx.queue.submit([encoder.finish()]);
        self.last_loss = Some(loss_index);
        self.calibrate = false;
        Ok(())
    }

    fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }
}

impl TrainBackend for GpuBackend {
    fn device_name(&self) -> String {
        self.ctx.name()
    }

    fn set_views(&mut self, cameras: &[Camera], targets: &[ImageRgb]) -> Result<(), TrainError> {
        if cameras.is_empty() || cameras.len() != targets.len() {
            return Err(TrainError::NoViews);
        }
        for (index, (camera, target)) in cameras.iter().zip(targets).enumerate() {
            check_size(index, camera, target)?;
            self.ctx.check_binding_size("target image", target.pixels.len() as u64 * 12)?;
        }
        self.views = cameras
            .iter()
            .zip(targets)
            .map(|(camera, target)| GpuView {
                camera: *camera,
                target: self.ctx.upload("target image", &target.pixels),
            })
            .collect();
        for camera in cameras {
            self.loss_buffers_index(camera.width(), camera.height())?;
        }
        Ok(())
    }

    fn set_state(&mut self, state: &TrainState) -> Result<(), TrainError> {
        let n = state.splats.len();
        let zeros;
        let adam = if state.adam.len() == n {
            &state.adam
        } else {
            zeros = AdamMoments::zeros(n);
            &zeros
        };
        let zero_stats;
        let stats = if state.stats.grad2d_sum.len() == n
            && state.stats.visible_count.len() == n
            && state.stats.max_radius.len() == n
        {
            &state.stats
        } else {
            zero_stats = DensifyStats::zeros(n);
            &zero_stats
        };
        let ctx = &self.ctx;
        let group = |label: &str, m: &[f32], v: &[f32]| AdamGroup::new(ctx, label, m, v);
        let (m, v) = (&adam.m, &adam.v);
        let moments = Moments {
            means: group("means", flat(&m.means), flat(&v.means))?,
            log_scales: group("log_scales", flat(&m.log_scales), flat(&v.log_scales))?,
            rotations: group("rotations", flat(&m.rotations), flat(&v.rotations))?,
            opacity_logits: group("opacity_logits", &m.opacity_logits, &v.opacity_logits)?,
            sh: group("sh", flat(&m.sh), flat(&v.sh))?,
        };
        self.state = Some(DeviceState {
            splats: GpuSplats::upload(ctx, &state.splats)?,
            moments,
            stats: Stats {
                grad2d_sum: ctx.upload("grad2d_sum", &stats.grad2d_sum),
                visible_count: ctx.upload("visible_count", &stats.visible_count),
                max_radius: ctx.upload("max_radius", &stats.max_radius),
            },
        });
        self.calibrate = true;
        Ok(())
    }

    fn state(&mut self) -> Result<TrainState, TrainError> {
        self.renderer.sync_intersections()?;
        let ctx = &self.ctx;
        let state = self.device_state()?;
        let n = state.splats.len as usize;
        let splats: Splats = state.splats.download(ctx)?;
        let read_grads = |pick: fn(&AdamGroup) -> &wgpu::Buffer| -> Result<SplatGrads, GpuError> {
            let m = &state.moments;
            Ok(SplatGrads {
                means: ctx.read(pick(&m.means), n)?,
                log_scales: ctx.read(pick(&m.log_scales), n)?,
                rotations: ctx.read(pick(&m.rotations), n)?,
                opacity_logits: ctx.read(pick(&m.opacity_logits), n)?,
                sh: ctx.read::<ShCoeffs>(pick(&m.sh), n)?,
            })
        };
        let adam = AdamMoments { m: read_grads(|g| &g.m)?, v: read_grads(|g| &g.v)? };
        let s = &state.stats;
        let stats = DensifyStats {
            grad2d_sum: ctx.read(&s.grad2d_sum, n)?,
            visible_count: ctx.read(&s.visible_count, n)?,
            max_radius: ctx.read(&s.max_radius, n)?,
        };
        Ok(TrainState { splats, adam, stats })
    }

    fn step(&mut self, view: usize, lr: &LearningRates, adam_step: u32) -> Result<(), TrainError> {
        // Validation errors would otherwise only be logged, and training would go on with zeros.
        let ctx = self.ctx.clone();
        ctx.checked("training step", || self.run_step(view, lr, adam_step))?
    }

    fn last_loss(&mut self) -> Result<StepLoss, TrainError> {
        let index = self.last_loss.ok_or(TrainError::NoStepYet)?;
        self.renderer.sync_intersections()?;
        let values: Vec<f32> = self.ctx.read(&self.loss_buffers[index].loss, 3)?;
        match values[..] {
            [total, l1, ssim] => Ok(StepLoss { total, l1, ssim }),
            _ => Err(TrainError::Gpu(format!("loss readback returned {} values, expected 3", values.len()))),
        }
    }

    fn render(&mut self, camera: &Camera, background: [f32; 3]) -> Result<RasterOutput, TrainError> {
        let state = self.device_state()?;
        let frame =
            self.ctx.checked("evaluation render", || self.renderer.forward(&state.splats, camera, background))??;
        Ok(frame.read_output(&self.ctx)?)
    }
}

/// A parameter block as flat floats.
fn flat<T: bytemuck::Pod>(values: &[T]) -> &[f32] {
    bytemuck::cast_slice(values)
}
