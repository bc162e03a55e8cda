//! Adapter and device selection, and the small buffer/pipeline/dispatch helpers every GPU module
//! shares (uploads, readbacks, compute kernels bound by position, dispatches split over 2D grids).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wgpu::util::DeviceExt;

/// Which adapters [`GpuContext::new`] may pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevicePreference {
    /// A hardware GPU (discrete first, then integrated, then virtual); fails with
    /// [`GpuError::NoAdapter`] when the machine has none. What training uses by default: a
    /// software rasteriser would be slower than the CPU reference backend.
    HardwareOnly,
    /// A hardware GPU if there is one, else a software adapter such as Mesa's lavapipe. What tests
    /// and CI use.
    AllowSoftware,
}

/// Optional device features the kernels use when the adapter has them (each has a portable
/// fallback; tests switch them off to exercise it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionalFeatures {
    /// Native `atomic<f32>` add (`SHADER_FLOAT32_ATOMIC`); else a compare-exchange loop.
    pub float_atomics: bool,
    /// Subgroup operations (`SUBGROUP`): the backward rasteriser sums a subgroup's gradients before
    /// one atomic add per value; else every pixel adds its own.
    pub subgroups: bool,
}

impl OptionalFeatures {
    /// Everything the adapter offers.
    pub const ALL: Self = Self { float_atomics: true, subgroups: true };
}

/// Errors of the GPU backend.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no wgpu adapter found ({preference:?}; adapters seen: {seen})")]
    NoAdapter { preference: DevicePreference, seen: String },
    #[error("adapter {adapter}: limit {limit} is {have}, the GPU backend needs {need}")]
    Limit { adapter: String, limit: &'static str, have: u64, need: u64 },
    #[error("requesting a device from {adapter}: {source}")]
    RequestDevice { adapter: String, source: wgpu::RequestDeviceError },
    #[error("wgpu validation error in {stage}: {message}")]
    Validation { stage: &'static str, message: String },
    #[error("reading back buffer {label}: {message}")]
    Readback { label: String, message: String },
    #[error("buffer {name}: {got} bytes, expected {expected}")]
    BufferSize { name: &'static str, got: u64, expected: u64 },
    /// Splats that fail [`Splats::validate`](kiln_core::splats::Splats::validate).
    #[error(transparent)]
    InvalidSplats(#[from] kiln_core::splats::SplatsError),
    #[error("{what} is {got}, larger than this device can hold ({max})")]
    TooLarge { what: &'static str, got: u64, max: u64 },
}

/// Threads per workgroup for every 1D kernel (and the 16×16 tile kernels): a multiple of every
/// vendor's SIMD width, and the tile size squared.
pub const WORKGROUP_SIZE: u32 = 256;

/// Smallest buffer created: wgpu rejects empty bindings and bindings smaller than one element of
/// the shader's array (the largest, a projected splat, is 44 bytes), so empty scenes bind these.
pub const MIN_BUFFER_BYTES: u64 = 64;

/// Storage buffers the widest kernel (project backward) binds at once. WebGPU's default is 8; every
/// Vulkan, Metal and DX12 desktop driver offers at least 16.
const STORAGE_BUFFERS_NEEDED: u32 = 16;

/// A wgpu device and queue, with what was chosen and why. Cheap to clone (handles are shared).
#[derive(Clone, Debug)]
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_info: wgpu::AdapterInfo,
    /// Whether the device has native `atomic<f32>` add (`SHADER_FLOAT32_ATOMIC`). Without it, the
    /// backward rasteriser emulates float atomics with a compare-exchange loop.
    pub float_atomics: bool,
    /// Whether subgroup operations are enabled (`SUBGROUP`).
    pub subgroups: bool,
    /// Largest workgroup count per dispatch dimension; longer 1D dispatches are split over a 2D
    /// grid. The device limit by default; tests lower it (before creating kernels) to exercise
    /// the split on small inputs.
    pub max_workgroups_per_dimension: u32,
    /// Buffer maps done by [`GpuContext::read_range`] on this device (shared by clones), so that
    /// tests can assert that a training step reads nothing back.
    readbacks: Arc<AtomicU64>,
}

impl GpuContext {
    /// Picks an adapter by `preference` and opens a device with every optional feature the
    /// adapter has.
    pub fn new(preference: DevicePreference) -> Result<Self, GpuError> {
        Self::with_options(preference, OptionalFeatures::ALL)
    }

    /// As [`GpuContext::new`], using at most the optional features in `wanted` (tests exercise
    /// the fallbacks on one adapter).
    pub fn with_options(preference: DevicePreference, wanted: OptionalFeatures) -> Result<Self, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let seen = adapters
            .iter()
            .map(|a| format!("{} ({:?}, {:?})", a.get_info().name, a.get_info().device_type, a.get_info().backend))
            .collect::<Vec<_>>()
            .join(", ");
        let adapter = adapters
            .into_iter()
            .filter(|a| adapter_rank(a.get_info().device_type, preference).is_some())
            .max_by_key(|a| adapter_rank(a.get_info().device_type, preference))
            .ok_or(GpuError::NoAdapter { preference, seen })?;
        let adapter_info = adapter.get_info();
        let limits = required_limits(&adapter)?;
        let float_atomics = wanted.float_atomics && adapter.features().contains(wgpu::Features::SHADER_FLOAT32_ATOMIC);
        let subgroups = wanted.subgroups && adapter.features().contains(wgpu::Features::SUBGROUP);
        let mut required_features = wgpu::Features::empty();
        required_features.set(wgpu::Features::SHADER_FLOAT32_ATOMIC, float_atomics);
        required_features.set(wgpu::Features::SUBGROUP, subgroups);
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("kiln"),
            required_features,
            required_limits: limits,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&descriptor))
            .map_err(|source| GpuError::RequestDevice { adapter: adapter_info.name.clone(), source })?;
        // Errors outside an explicit error scope would otherwise panic inside wgpu.
        device.on_uncaptured_error(Arc::new(|error| tracing::error!("uncaptured wgpu error: {error}")));
        tracing::info!(
            adapter = %adapter_info.name,
            backend = ?adapter_info.backend,
            device_type = ?adapter_info.device_type,
            float_atomics,
            subgroups,
            "GPU device opened"
        );
        let max_workgroups_per_dimension = device.limits().max_compute_workgroups_per_dimension;
        Ok(Self {
            device,
            queue,
            adapter_info,
            float_atomics,
            subgroups,
            max_workgroups_per_dimension,
            readbacks: Arc::default(),
        })
    }

    /// Wraps a device someone else opened (the viewer's window: eframe opens it), using the
    /// optional features that device was opened with. Its limits must cover the kernels it runs.
    pub fn from_device(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        let features = device.features();
        Self {
            device: device.clone(),
            queue: queue.clone(),
            adapter_info: device.adapter_info(),
            float_atomics: features.contains(wgpu::Features::SHADER_FLOAT32_ATOMIC),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            max_workgroups_per_dimension: device.limits().max_compute_workgroups_per_dimension,
            readbacks: Arc::default(),
        }
    }

    /// Buffer readbacks (maps) done so far on this device, by this context and its clones.
    pub fn readback_count(&self) -> u64 {
        self.readbacks.load(Ordering::Relaxed)
    }

    /// Adapter name and backend, for logs and `TrainBackend::device_name`.
    pub fn name(&self) -> String {
        format!("{} ({:?})", self.adapter_info.name, self.adapter_info.backend)
    }

    /// A storage buffer holding `data`, zero-padded to at least [`MIN_BUFFER_BYTES`].
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let padded;
        let contents = if (bytes.len() as u64) < MIN_BUFFER_BYTES || !bytes.len().is_multiple_of(4) {
            let mut v = bytes.to_vec();
            v.resize((bytes.len() as u64).max(MIN_BUFFER_BYTES).next_multiple_of(4) as usize, 0);
            padded = v;
            &padded[..]
        } else {
            bytes
        };
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: STORAGE_USAGE,
        })
    }

    /// A zero-filled storage buffer of `bytes` bytes (rounded up to 4, at least
    /// [`MIN_BUFFER_BYTES`]).
    pub fn zeroed(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(MIN_BUFFER_BYTES).next_multiple_of(4),
            usage: STORAGE_USAGE,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer holding `value`.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    /// Copies the first `count` elements of `buffer` back to the host (blocks until the GPU is done).
    pub fn read<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, count: usize) -> Result<Vec<T>, GpuError> {
        self.read_range(buffer, 0, count)
    }

    /// Copies elements `start..start + count` of `buffer` back to the host (blocks until the GPU
    /// is done). `start · size_of::<T>()` must be a multiple of 4.
    pub fn read_range<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        start: usize,
        count: usize,
    ) -> Result<Vec<T>, GpuError> {
        let label = format!("{buffer:?}");
        let offset = (start * size_of::<T>()) as u64;
        let bytes = (count * size_of::<T>()) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        if offset + bytes > buffer.size() || !offset.is_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT) {
            return Err(GpuError::Readback {
                label,
                message: format!("bytes {offset}..{} asked, buffer has {}", offset + bytes, buffer.size()),
            });
        }
        let padded = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback staging"),
            size: padded,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, padded);
        self.queue.submit([encoder.finish()]);
        self.readbacks.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            // The receiver outlives this callback: it is dropped only after recv() below.
            let _ = sender.send(result);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback { label: label.clone(), message: e.to_string() })?;
        receiver
            .recv()
            .map_err(|e| GpuError::Readback { label: label.clone(), message: e.to_string() })?
            .map_err(|e| GpuError::Readback { label: label.clone(), message: e.to_string() })?;
        let view = staging
            .get_mapped_range(..bytes)
            .map_err(|e| GpuError::Readback { label: label.clone(), message: e.to_string() })?;
        let values = bytemuck::pod_collect_to_vec(&view);
        drop(view);
        staging.unmap();
        Ok(values)
    }

    /// Runs `f` inside a validation error scope and turns a captured error into [`GpuError`].
    pub fn checked<R>(&self, stage: &'static str, f: impl FnOnce() -> R) -> Result<R, GpuError> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let result = f();
        match pollster::block_on(scope.pop()) {
            Some(error) => Err(GpuError::Validation { stage, message: error.to_string() }),
            None => Ok(result),
        }
    }

    /// Fails with [`GpuError::TooLarge`] when a buffer of `bytes` cannot be bound on this device.
    pub fn check_binding_size(&self, what: &'static str, bytes: u64) -> Result<(), GpuError> {
        let max = self.device.limits().max_storage_buffer_binding_size;
        if bytes > max {
            return Err(GpuError::TooLarge { what, got: bytes, max });
        }
        Ok(())
    }
}

/// Usage of every storage buffer: bound to kernels, copied in and out (uploads, readbacks, ping-pong).
const STORAGE_USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

/// Higher is better; `None` means not allowed by `preference`.
fn adapter_rank(device_type: wgpu::DeviceType, preference: DevicePreference) -> Option<u8> {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => Some(4),
        wgpu::DeviceType::IntegratedGpu => Some(3),
        wgpu::DeviceType::VirtualGpu => Some(2),
        wgpu::DeviceType::Other => Some(1),
        wgpu::DeviceType::Cpu => (preference == DevicePreference::AllowSoftware).then_some(0),
    }
}

/// WebGPU's defaults, raised to what the kernels need and buffers as large as the adapter allows.
fn required_limits(adapter: &wgpu::Adapter) -> Result<wgpu::Limits, GpuError> {
    let have = adapter.limits();
    if have.max_storage_buffers_per_shader_stage < STORAGE_BUFFERS_NEEDED {
        return Err(GpuError::Limit {
            adapter: adapter.get_info().name,
            limit: "max_storage_buffers_per_shader_stage",
            have: have.max_storage_buffers_per_shader_stage.into(),
            need: STORAGE_BUFFERS_NEEDED.into(),
        });
    }
    Ok(wgpu::Limits {
        max_storage_buffers_per_shader_stage: STORAGE_BUFFERS_NEEDED,
        max_storage_buffer_binding_size: have.max_storage_buffer_binding_size,
        max_buffer_size: have.max_buffer_size,
        ..wgpu::Limits::default()
    })
}

/// A compute pipeline whose bind group 0 holds bindings `0..n` in order.
#[derive(Debug)]
pub struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    label: &'static str,
    /// The context's `max_workgroups_per_dimension` when the kernel was created.
    max_workgroups_per_dimension: u32,
}

impl Kernel {
    /// Compiles the shared prelude followed by `sources` (concatenated), entry point `main`.
    pub fn new(ctx: &GpuContext, label: &'static str, sources: &[&str]) -> Result<Self, GpuError> {
        let constants = render_constants();
        let full_source =
            [constants.as_str(), PRELUDE].into_iter().chain(sources.iter().copied()).collect::<Vec<_>>().join("\n");
        ctx.checked(label, || {
            let module = ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(full_source.into()),
            });
            let pipeline = ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            let layout = pipeline.get_bind_group_layout(0);
            Self { pipeline, layout, label, max_workgroups_per_dimension: ctx.max_workgroups_per_dimension }
        })
    }

    /// Binds `buffers` to bindings `0, 1, …` in order.
    pub fn bind(&self, ctx: &GpuContext, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let entries: Vec<_> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
            .collect();
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.label),
            layout: &self.layout,
            entries: &entries,
        })
    }

    /// Records one dispatch of `workgroups` workgroups (split over a 2D grid when needed; kernels
    /// recover the linear index with the prelude's `linear_workgroup`).
    pub fn dispatch(&self, encoder: &mut wgpu::CommandEncoder, bind_group: &wgpu::BindGroup, workgroups: u32) {
        if workgroups == 0 {
            return;
        }
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(self.label), timestamp_writes: None });
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        let [x, y] = grid_for(workgroups, self.max_workgroups_per_dimension);
        pass.dispatch_workgroups(x, y, 1);
    }
}

/// A 2D grid with at least `workgroups` cells and `x` at most `max_x`. Kernels must ignore the
/// excess cells of the last row.
pub fn grid_for(workgroups: u32, max_x: u32) -> [u32; 2] {
    let x = workgroups.min(max_x.max(1));
    [x, workgroups.div_ceil(x.max(1))]
}

/// Workgroups of [`WORKGROUP_SIZE`] threads needed for `n` items.
pub fn workgroups_for(n: u32) -> u32 {
    n.div_ceil(WORKGROUP_SIZE)
}

/// The renderer's constants ([`crate::render`]) as WGSL, so that kernels and the CPU reference
/// cannot drift apart.
fn render_constants() -> String {
    use crate::render::{LOW_PASS, MAX_ALPHA, MIN_ALPHA, MIN_TRANSMITTANCE, NEAR_PLANE, TILE_SIZE};
    format!(
        "const NEAR_PLANE: f32 = {NEAR_PLANE:?};\nconst LOW_PASS: f32 = {LOW_PASS:?};\n\
         const MAX_ALPHA: f32 = {MAX_ALPHA:?};\nconst MIN_ALPHA: f32 = {MIN_ALPHA:?};\n\
         const MIN_TRANSMITTANCE: f32 = {MIN_TRANSMITTANCE:?};\nconst TILE_SIZE: u32 = {TILE_SIZE}u;\n\
         const WG: u32 = {WORKGROUP_SIZE}u;\nconst SH_C0: f32 = {:?};\n",
        kiln_core::splats::SH_C0
    )
}

/// Shared WGSL: the projected-splat layouts and grid indexing.
const PRELUDE: &str = include_str!("shaders/prelude.wgsl");

/// WGSL defining `GradAtomic` and `add_grad(index, value)` on the kernel's `projected_grads`
/// buffer: native `atomic<f32>` adds, or a compare-exchange loop on the bit pattern.
pub fn atomic_add_source(ctx: &GpuContext) -> &'static str {
    if ctx.float_atomics { include_str!("shaders/atomic_native.wgsl") } else { include_str!("shaders/atomic_cas.wgsl") }
}

/// WGSL defining `accumulate_grads(splat, contributes, …)` for the backward rasteriser: a
/// subgroup sum and one atomic add per value, or one atomic add per contributing pixel.
pub fn accumulate_source(ctx: &GpuContext) -> &'static str {
    if ctx.subgroups {
        include_str!("shaders/accumulate_subgroup.wgsl")
    } else {
        include_str!("shaders/accumulate_thread.wgsl")
    }
}
