//! GPU prefix sums and the stable LSD radix sort of `(tile id, depth)` keys that bins splats
//! into tiles. Public so that tests can hold them against plain CPU sorts.

use crate::gpu::context::{GpuContext, GpuError, Kernel, WORKGROUP_SIZE};

/// Elements one workgroup scans: 256 threads × 4 items (`SCAN_ITEMS` in `scan_blocks.wgsl`).
pub const SCAN_BLOCK: u32 = WORKGROUP_SIZE * 4;
/// Keys one workgroup histograms and scatters per pass: 256 threads × 16 rounds (`RADIX_ITEMS`
/// in the radix shaders); large enough to keep the per-block histogram array small.
pub const RADIX_BLOCK: u32 = WORKGROUP_SIZE * 16;
/// Bits per radix digit: 256 buckets, one per thread of a workgroup.
const RADIX_BITS: u32 = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ScanParams {
    n: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RadixParams {
    n: u32,
    shift: u32,
    use_hi: u32,
    num_blocks: u32,
    count_index: u32,
    _pad: [u32; 3],
}

/// How many keys a sort covers: at most `capacity` (the size of the key buffers, which sizes the
/// dispatches), and exactly `count[index]` when that is smaller. The count is read on the device,
/// so that a sort can follow the kernel that computes it without a readback.
#[derive(Clone, Copy, Debug)]
pub struct SortLength<'a> {
    pub capacity: u32,
    pub count: &'a wgpu::Buffer,
    pub index: u32,
}

/// In-place exclusive prefix sum of `u32`s (multi-level: block scans, recursive scan of the block
/// totals, add back).
#[derive(Debug)]
pub struct Scanner {
    scan_blocks: Kernel,
    scan_add: Kernel,
}

impl Scanner {
    pub fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        Ok(Self {
            scan_blocks: Kernel::new(ctx, "scan_blocks", &[include_str!("shaders/scan_blocks.wgsl")])?,
            scan_add: Kernel::new(ctx, "scan_add", &[include_str!("shaders/scan_add.wgsl")])?,
        })
    }

    /// Records an exclusive scan of the first `n` elements of `data`.
    pub fn encode(&self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, data: &wgpu::Buffer, n: u32) {
        if n == 0 {
            return;
        }
        let blocks = n.div_ceil(SCAN_BLOCK);
        let block_sums = ctx.zeroed("scan block sums", u64::from(blocks) * 4);
        let params = ctx.uniform("scan params", &ScanParams { n, _pad: [0; 3] });
        let bind_group = self.scan_blocks.bind(ctx, &[&params, data, &block_sums]);
        self.scan_blocks.dispatch(encoder, &bind_group, blocks);
        if blocks > 1 {
            self.encode(ctx, encoder, &block_sums, blocks);
            let bind_group = self.scan_add.bind(ctx, &[&params, data, &block_sums]);
            self.scan_add.dispatch(encoder, &bind_group, blocks);
        }
    }
}

/// Keys and values after [`RadixSorter::encode`].
#[derive(Debug)]
pub struct SortedKeys {
    pub keys_hi: wgpu::Buffer,
    pub keys_lo: wgpu::Buffer,
    pub values: wgpu::Buffer,
}

/// Stable LSD radix sort of 64-bit keys split into `keys_hi`/`keys_lo` `u32` words, carrying a
/// `u32` value: 8-bit digits, per-block histograms, one scan, a stable scatter per pass.
#[derive(Debug)]
pub struct RadixSorter {
    scanner: Scanner,
    histogram: Kernel,
    scatter: Kernel,
}

impl RadixSorter {
    pub fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        Ok(Self {
            scanner: Scanner::new(ctx)?,
            histogram: Kernel::new(ctx, "radix_histogram", &[include_str!("shaders/radix_histogram.wgsl")])?,
            scatter: Kernel::new(ctx, "radix_scatter", &[include_str!("shaders/radix_scatter.wgsl")])?,
        })
    }

    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }

    /// Records a sort of the first `n` entries (a length known on the host) by `(keys_hi, keys_lo)` where only the low
    /// `hi_bits` bits of `keys_hi` and the low `lo_bits` bits of `keys_lo` may be set (bits above,
    /// within the last 8-bit digit, would take part; beyond it they are ignored). Equal keys keep
    /// their input order. The input buffers are reused as ping-pong storage; the result is in the
    /// returned buffers.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        input: SortedKeys,
        n: u32,
        lo_bits: u32,
        hi_bits: u32,
    ) -> SortedKeys {
        let count = ctx.upload("sort count", &[n]);
        self.encode_counted(ctx, encoder, input, SortLength { capacity: n, count: &count, index: 0 }, lo_bits, hi_bits)
    }

    /// As [`RadixSorter::encode`], for a length held on the device (see [`SortLength`]).
    pub fn encode_counted(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        input: SortedKeys,
        length: SortLength<'_>,
        lo_bits: u32,
        hi_bits: u32,
    ) -> SortedKeys {
        let n = length.capacity;
        let lo_passes = lo_bits.div_ceil(RADIX_BITS);
        let hi_passes = hi_bits.div_ceil(RADIX_BITS);
        if n == 0 || lo_passes + hi_passes == 0 {
            return input;
        }
        let bytes = u64::from(n) * 4;
        let mut src = input;
        let mut dst = SortedKeys {
            keys_hi: ctx.zeroed("sort keys_hi", bytes),
            keys_lo: ctx.zeroed("sort keys_lo", bytes),
            values: ctx.zeroed("sort values", bytes),
        };
        let num_blocks = n.div_ceil(RADIX_BLOCK);
        let hist = ctx.zeroed("radix histogram", u64::from(num_blocks) * 256 * 4);
        let passes = (0..lo_passes).map(|p| (p * RADIX_BITS, 0)).chain((0..hi_passes).map(|p| (p * RADIX_BITS, 1)));
        for (shift, use_hi) in passes {
            let params = ctx.uniform(
                "radix params",
                &RadixParams { n, shift, use_hi, num_blocks, count_index: length.index, _pad: [0; 3] },
            );
            let bind_group = self.histogram.bind(ctx, &[&params, &src.keys_hi, &src.keys_lo, &hist, length.count]);
            self.histogram.dispatch(encoder, &bind_group, num_blocks);
            self.scanner.encode(ctx, encoder, &hist, num_blocks * 256);
            let bind_group = self.scatter.bind(
                ctx,
                &[
                    &params,
                    &src.keys_hi,
                    &src.keys_lo,
                    &src.values,
                    &hist,
                    &dst.keys_hi,
                    &dst.keys_lo,
                    &dst.values,
                    length.count,
                ],
            );
            self.scatter.dispatch(encoder, &bind_group, num_blocks);
            std::mem::swap(&mut src, &mut dst);
        }
        src
    }
}

/// Bits needed to hold every value below `count` (0 for `count <= 1`).
pub fn bits_for(count: u32) -> u32 {
    u32::BITS - count.saturating_sub(1).leading_zeros()
}
