//! The CPU training backend: the reference renderer's forward and backward passes, the loss of
//! [`super::loss`] and Adam of [`super::adam`], parallel over pixels and splats with rayon.

use crate::render::{RasterOutput, render, render_backward};
use kiln_core::camera::Camera;
use kiln_core::image_buf::ImageRgb;

use crate::train::TrainError;
use crate::train::adam::adam_step;
use crate::train::backend::{AdamMoments, DensifyStats, LearningRates, StepLoss, TrainBackend, TrainState};
use crate::train::densify::accumulate_stats;
use crate::train::loss::loss_with_grad;

/// Training on the CPU. The training background and SSIM weight are fixed at construction.
#[derive(Clone, Debug)]
pub struct CpuBackend {
    background: [f32; 3],
    ssim_weight: f32,
    cameras: Vec<Camera>,
    targets: Vec<ImageRgb>,
    state: TrainState,
    last_loss: Option<StepLoss>,
}

impl CpuBackend {
    pub fn new(background: [f32; 3], ssim_weight: f32) -> Self {
        Self {
            background,
            ssim_weight,
            cameras: Vec::new(),
            targets: Vec::new(),
            state: TrainState::default(),
            last_loss: None,
        }
    }
}

impl TrainBackend for CpuBackend {
    fn device_name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn set_views(&mut self, cameras: &[Camera], targets: &[ImageRgb]) -> Result<(), TrainError> {
        if cameras.is_empty() {
            return Err(TrainError::NoViews);
        }
        super::check_count(cameras, targets)?;
        for (index, (camera, target)) in cameras.iter().zip(targets).enumerate() {
            super::check_size(index, camera, target)?;
        }
        self.cameras = cameras.to_vec();
        self.targets = targets.to_vec();
        Ok(())
    }

    fn set_state(&mut self, state: &TrainState) -> Result<(), TrainError> {
        let n = state.splats.len();
        self.state = state.clone();
        if self.state.adam.len() != n {
            self.state.adam = AdamMoments::zeros(n);
        }
        if self.state.stats.grad2d_sum.len() != n {
            self.state.stats = DensifyStats::zeros(n);
        }
        Ok(())
    }

    fn state(&mut self) -> Result<TrainState, TrainError> {
        Ok(self.state.clone())
    }

    fn step(&mut self, view: usize, lr: &LearningRates, adam_step_count: u32) -> Result<(), TrainError> {
        let (camera, target) = match (self.cameras.get(view), self.targets.get(view)) {
            (Some(c), Some(t)) => (c, t),
            _ => {
                return Err(TrainError::ViewIndex { index: view, count: self.cameras.len() });
            }
        };
        let rendered = render(&self.state.splats, camera, self.background);
        let (loss, grad_image) = loss_with_grad(&rendered.output.image, target, self.ssim_weight);
        let (grads, projected_grads) =
            render_backward(&self.state.splats, camera, &rendered, self.background, &grad_image);
        let TrainState { splats, adam, stats } = &mut self.state;
        adam_step(splats, &grads, adam, lr, adam_step_count);
        accumulate_stats(stats, &rendered.projected, &projected_grads, camera.width(), camera.height());
        self.last_loss = Some(loss);
        Ok(())
    }

    fn last_loss(&mut self) -> Result<StepLoss, TrainError> {
        self.last_loss.ok_or(TrainError::NoStepYet)
    }

    fn render(&mut self, camera: &Camera, background: [f32; 3]) -> Result<RasterOutput, TrainError> {
        Ok(render(&self.state.splats, camera, background).output)
    }
}
