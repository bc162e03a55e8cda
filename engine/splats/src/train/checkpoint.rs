//! Training checkpoints: everything [`super::run_resumable`] needs to continue a run exactly where
//! it stopped (the backend's [`TrainState`] and the loop's [`LoopPosition`]), in one small
//! versioned binary file, plus the [`Fingerprint`] that tells whether a checkpoint belongs to the
//! run asking for it.
//!
//! Layout, every number little-endian:
//!
//! | field | type |
//! |---|---|
//! | magic `KILNCKPT` | 8 bytes |
//! | format version ([`VERSION`]) | u32 |
//! | fingerprint of the config, of the inputs | u64, u64 |
//! | completed steps, active SH degree of the loop, `sh_degree` of the splats | u32 ×3 |
//! | RNG state, training time so far in nanoseconds | u64 ×2 |
//! | views left in the current pass `k`, splat count `n` | u64 ×2 |
//! | the views left, in order | `k` × u32 |
//! | means, log-scales, rotations, opacity logits, SH | `n` × (3 + 3 + 4 + 1 + 48) f32 |
//! | Adam's `m`, then `v`, in the same five blocks | 2 × `n` × 59 f32 |
//! | ∑‖∂L/∂mean2d‖, visible count, max radius | `n` × (f32, u32, f32) |
//! | FNV-1a 64 checksum of every byte before it | u64 |
//!
//! A file whose magic, version, length or checksum is wrong is [`TrainError::CheckpointCorrupt`]; a
//! whole file from another run is [`TrainError::CheckpointMismatch`]. [`load_matching`] turns both
//! into a warning and a fresh start.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_core::atomic_file::write_atomically;
use kiln_core::rng::Pcg32;
use kiln_core::splats::{SH_COEFFS, SplatGrads, Splats};

use crate::train::backend::{AdamMoments, DensifyStats, TrainState};
use crate::train::config::TrainConfig;
use crate::train::{TrainError, TrainInput};

/// First bytes of every checkpoint file.
const MAGIC: [u8; 8] = *b"KILNCKPT";
/// Layout version; bump it whenever the layout changes, so that older files are ignored (the
/// run restarts) instead of misread.
pub const VERSION: u32 = 1;
/// Bytes before the view order: magic, version, 2 fingerprints, 3 u32, 2 u64, 2 counts.
const HEADER_BYTES: u64 = 8 + 4 + 2 * 8 + 3 * 4 + 2 * 8 + 2 * 8;
/// Bytes of the trailing checksum.
const CHECKSUM_BYTES: u64 = 8;
/// f32 per splat in one parameter-shaped block: mean 3, log-scale 3, rotation 4, opacity 1, SH 48.
const PARAM_FLOATS: u64 = 3 + 3 + 4 + 1 + SH_COEFFS as u64 * 3;
/// Bytes per splat: parameters, Adam `m` and `v`, and three 4-byte statistics.
const SPLAT_BYTES: u64 = 3 * PARAM_FLOATS * 4 + 3 * 4;
/// Values converted to bytes at a time while writing: large enough to amortise the calls, small
/// enough to stay in cache.
const WRITE_CHUNK: usize = 16 * 1024;
/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bit: a small, well-known hash, used both as the file checksum (it catches torn and
/// bit-flipped files; it is no defence against deliberate tampering) and for fingerprints.
#[derive(Clone, Copy, Debug)]
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Self(FNV_OFFSET)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ byte as u64).wrapping_mul(FNV_PRIME);
        }
    }

    fn words(&mut self, words: impl IntoIterator<Item = u32>) {
        for word in words {
            self.update(&word.to_le_bytes());
        }
    }
}

/// Identifies a run: a checkpoint is only resumed by a run with the same fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// Hash of every [`TrainConfig`] field (its `Debug` text, which prints each float exactly).
    pub config: u64,
    /// Hash of the train and test views: their counts, image sizes and cameras.
    pub input: u64,
}

impl Fingerprint {
    pub fn of(config: &TrainConfig, input: &TrainInput) -> Self {
        let mut config_hash = Fnv1a::new();
        config_hash.update(format!("{config:?}").as_bytes());
        let mut input_hash = Fnv1a::new();
        for (cameras, images) in [(input.train_cameras, input.train_images), (input.test_cameras, input.test_images)] {
            input_hash.update(&(cameras.len() as u64).to_le_bytes());
            input_hash.update(&(images.len() as u64).to_le_bytes());
            for image in images {
                input_hash.words([image.width, image.height]);
            }
            for camera in cameras {
                let k = &camera.intrinsics;
                let pose = &camera.world_from_camera;
                let floats = [k.fx, k.fy, k.cx, k.cy]
                    .into_iter()
                    .chain(pose.rotation.to_cols_array())
                    .chain(pose.translation.to_array());
                input_hash.words([k.width, k.height]);
                input_hash.words(floats.map(f32::to_bits));
            }
        }
        Self { config: config_hash.0, input: input_hash.0 }
    }
}

/// Where the training loop stands between two steps; with the backend's [`TrainState`] this is
/// the whole run.
#[derive(Clone, Debug)]
pub struct LoopPosition {
    /// Completed optimisation steps.
    pub step: u32,
    /// The generator behind view orders and densification.
    pub rng: Pcg32,
    /// Views still to visit in the current pass, taken from the back.
    pub order: Vec<usize>,
    /// SH degree the loop last set on the splats.
    pub sh_degree: u32,
    /// Training time so far, over every session of the run.
    pub elapsed: Duration,
}

impl LoopPosition {
    /// Before step 1 of a run seeded with `seed`.
    pub fn start(seed: u64) -> Self {
        Self {
            step: 0,
            rng: Pcg32::new(seed.wrapping_add(1)),
            order: Vec::new(),
            sh_degree: 0,
            elapsed: Duration::ZERO,
        }
    }
}

/// The content of a checkpoint file.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub fingerprint: Fingerprint,
    pub position: LoopPosition,
    pub state: TrainState,
}

/// Writes a checkpoint to `path` atomically (a crash mid-write leaves the previous one).
pub fn save(
    path: &Path,
    fingerprint: &Fingerprint,
    position: &LoopPosition,
    state: &TrainState,
) -> Result<(), TrainError> {
    write_atomically(path, |file| {
        let mut out = ChecksumWriter::new(file);
        write_header(&mut out, fingerprint, position, state)?;
        write_body(&mut out, position, state)?;
        let checksum = out.hash.0;
        out.inner.write_all(&checksum.to_le_bytes())
    })
    .map_err(|source| io_error(path, source))
}

/// Reads a checkpoint, checking its magic, version, length and checksum.
pub fn load(path: &Path) -> Result<Checkpoint, TrainError> {
    let bytes = std::fs::read(path).map_err(|source| io_error(path, source))?;
    parse(&bytes).map_err(|problem| TrainError::CheckpointCorrupt { path: path.to_path_buf(), problem })
}

/// The checkpoint at `path` if there is one from this run (`fingerprint`); `None` after a
/// warning saying why when it is unreadable, corrupt or from another run, and silently when there
/// is no file.
pub fn load_matching(path: &Path, fingerprint: &Fingerprint) -> Option<Checkpoint> {
    let result = load(path).and_then(|checkpoint| {
        let what = if checkpoint.fingerprint.config != fingerprint.config {
            "training settings"
        } else if checkpoint.fingerprint.input != fingerprint.input {
            "training views (count, image sizes or cameras)"
        } else {
            return Ok(checkpoint);
        };
        Err(TrainError::CheckpointMismatch { path: path.to_path_buf(), what })
    });
    match result {
        Ok(checkpoint) => Some(checkpoint),
        Err(TrainError::CheckpointIo { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            tracing::warn!("ignoring the checkpoint, training starts from step 0: {error}");
            None
        }
    }
}

fn io_error(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::CheckpointIo { path: PathBuf::from(path), source }
}

/// A writer that hashes everything written through it.
struct ChecksumWriter<W> {
    inner: W,
    hash: Fnv1a,
    buffer: Vec<u8>,
}

impl<W: Write> ChecksumWriter<W> {
    fn new(inner: W) -> Self {
        Self { inner, hash: Fnv1a::new(), buffer: Vec::with_capacity(WRITE_CHUNK * 4) }
    }

    fn bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash.update(bytes);
        self.inner.write_all(bytes)
    }

    /// Writes 4-byte values, converted by `to_le`.
    fn words<T: Copy>(&mut self, values: &[T], to_le: fn(T) -> [u8; 4]) -> std::io::Result<()> {
        let mut buffer = std::mem::take(&mut self.buffer);
        for chunk in values.chunks(WRITE_CHUNK) {
            buffer.clear();
            buffer.extend(chunk.iter().flat_map(|&v| to_le(v)));
            self.bytes(&buffer)?;
        }
        self.buffer = buffer;
        Ok(())
    }

    fn floats<T: bytemuck::Pod>(&mut self, values: &[T]) -> std::io::Result<()> {
        self.words(bytemuck::cast_slice::<T, f32>(values), f32::to_le_bytes)
    }
}

fn write_header<W: Write>(
    out: &mut ChecksumWriter<W>,
    fingerprint: &Fingerprint,
    position: &LoopPosition,
    state: &TrainState,
) -> std::io::Result<()> {
    out.bytes(&MAGIC)?;
    out.bytes(&VERSION.to_le_bytes())?;
    let elapsed_ns = u64::try_from(position.elapsed.as_nanos()).unwrap_or(u64::MAX);
    for value in [fingerprint.config, fingerprint.input] {
        out.bytes(&value.to_le_bytes())?;
    }
    for value in [position.step, position.sh_degree, state.splats.sh_degree] {
        out.bytes(&value.to_le_bytes())?;
    }
    for value in [position.rng.state(), elapsed_ns, position.order.len() as u64, state.splats.len() as u64] {
        out.bytes(&value.to_le_bytes())?;
    }
    Ok(())
}

fn write_body<W: Write>(
    out: &mut ChecksumWriter<W>,
    position: &LoopPosition,
    state: &TrainState,
) -> std::io::Result<()> {
    let order: Vec<u32> = position.order.iter().map(|&v| v as u32).collect();
    out.words(&order, u32::to_le_bytes)?;
    let s = &state.splats;
    out.floats(&s.means)?;
    out.floats(&s.log_scales)?;
    out.floats(&s.rotations)?;
    out.floats(&s.opacity_logits)?;
    out.floats(&s.sh)?;
    for moments in [&state.adam.m, &state.adam.v] {
        out.floats(&moments.means)?;
        out.floats(&moments.log_scales)?;
        out.floats(&moments.rotations)?;
        out.floats(&moments.opacity_logits)?;
        out.floats(&moments.sh)?;
    }
    out.floats(&state.stats.grad2d_sum)?;
    out.words(&state.stats.visible_count, u32::to_le_bytes)?;
    out.floats(&state.stats.max_radius)
}

/// Reads fields front to back from a checkpoint's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err(format!("ends {} bytes early", n - self.bytes.len()));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }

    /// `count` 4-byte values, converted by `from_le`.
    fn words<T>(&mut self, count: usize, from_le: fn([u8; 4]) -> T) -> Result<Vec<T>, String> {
        let bytes = self.take(count.checked_mul(4).ok_or("impossible array size")?)?;
        Ok(bytes.chunks_exact(4).map(|c| from_le([c[0], c[1], c[2], c[3]])).collect())
    }

    /// `count` values of `T`, each a block of f32.
    fn floats<T: bytemuck::Pod>(&mut self, count: usize) -> Result<Vec<T>, String> {
        let per_value = std::mem::size_of::<T>() / 4;
        let total = count.checked_mul(per_value).ok_or("impossible array size")?;
        let floats = self.words(total, f32::from_le_bytes)?;
        bytemuck::try_cast_slice::<f32, T>(&floats).map(<[T]>::to_vec).map_err(|e| format!("array layout: {e}"))
    }

    fn params(&mut self, n: usize) -> Result<SplatGrads, String> {
        Ok(SplatGrads {
            means: self.floats(n)?,
            log_scales: self.floats(n)?,
            rotations: self.floats(n)?,
            opacity_logits: self.floats(n)?,
            sh: self.floats(n)?,
        })
    }
}

/// Decodes a whole checkpoint file; the error says what is wrong with it.
fn parse(bytes: &[u8]) -> Result<Checkpoint, String> {
    let mut r = Reader { bytes };
    if r.take(MAGIC.len()).map_err(|_| "too short to be a checkpoint")? != MAGIC {
        return Err("not a Kiln checkpoint (wrong magic bytes)".into());
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(format!("format version {version}, this build reads version {VERSION}"));
    }
    let fingerprint = Fingerprint { config: r.u64()?, input: r.u64()? };
    let (step, sh_degree, splats_sh_degree) = (r.u32()?, r.u32()?, r.u32()?);
    let (rng_state, elapsed_ns, order_len, n) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
    check_length(bytes, order_len, n)?;
    let (body, stored) = bytes.split_at(bytes.len() - CHECKSUM_BYTES as usize);
    let mut hash = Fnv1a::new();
    hash.update(body);
    if stored != hash.0.to_le_bytes() {
        return Err("checksum mismatch (the file is damaged)".into());
    }
    // Both counts fit in memory: the file holding them does.
    let (order_len, n) = (order_len as usize, n as usize);
    let order = r.words(order_len, u32::from_le_bytes)?;
    let params = r.params(n)?;
    let m = r.params(n)?;
    let v = r.params(n)?;
    let stats = DensifyStats {
        grad2d_sum: r.words(n, f32::from_le_bytes)?,
        visible_count: r.words(n, u32::from_le_bytes)?,
        max_radius: r.words(n, f32::from_le_bytes)?,
    };
    let splats = Splats {
        means: params.means,
        log_scales: params.log_scales,
        rotations: params.rotations,
        opacity_logits: params.opacity_logits,
        sh: params.sh,
        sh_degree: splats_sh_degree,
    };
    Ok(Checkpoint {
        fingerprint,
        position: LoopPosition {
            step,
            rng: Pcg32::from_state(rng_state),
            order: order.into_iter().map(|v| v as usize).collect(),
            sh_degree,
            elapsed: Duration::from_nanos(elapsed_ns),
        },
        state: TrainState { splats, adam: AdamMoments { m, v }, stats },
    })
}

/// Checks that the file is exactly as long as its header's counts say.
fn check_length(bytes: &[u8], order_len: u64, n: u64) -> Result<(), String> {
    let expected = order_len
        .checked_mul(4)
        .zip(n.checked_mul(SPLAT_BYTES))
        .and_then(|(order, splats)| order.checked_add(splats))
        .and_then(|arrays| arrays.checked_add(HEADER_BYTES + CHECKSUM_BYTES));
    match expected {
        Some(expected) if expected == bytes.len() as u64 => Ok(()),
        Some(expected) => {
            Err(format!("{} bytes where its header announces {expected} (truncated or damaged)", bytes.len()))
        }
        None => Err(format!("impossible counts ({order_len} views, {n} splats)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testing::random;

    /// A state with every array filled with distinct values (including the awkward floats).
    fn state(n: usize) -> TrainState {
        let mut splats = random(3, n, 40, 30).splats;
        splats.opacity_logits[0] = f32::NEG_INFINITY;
        splats.means[1][2] = -0.0;
        splats.sh_degree = 2;
        let mut rng = Pcg32::new(5);
        let mut grads = || {
            let mut g = SplatGrads::zeros(n);
            for v in bytemuck::cast_slice_mut::<[[f32; 3]; SH_COEFFS], f32>(&mut g.sh) {
                *v = rng.normal();
            }
            for v in bytemuck::cast_slice_mut::<[f32; 3], f32>(&mut g.means) {
                *v = rng.normal() * 1e-30;
            }
            g.opacity_logits.iter_mut().for_each(|v| *v = rng.uniform());
            g
        };
        let adam = AdamMoments { m: grads(), v: grads() };
        let stats = DensifyStats {
            grad2d_sum: (0..n).map(|i| i as f32 * 0.125).collect(),
            visible_count: (0..n).map(|i| i as u32 * 3 + 1).collect(),
            max_radius: (0..n).map(|i| 1.0 / (i as f32 + 1.0)).collect(),
        };
        TrainState { splats, adam, stats }
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-checkpoint-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn sample() -> (Fingerprint, LoopPosition, TrainState) {
        let mut rng = Pcg32::new(9);
        rng.next_u32();
        let position = LoopPosition {
            step: 1234,
            rng,
            order: vec![4, 0, 2],
            sh_degree: 1,
            elapsed: Duration::new(75, 123_456_789),
        };
        (Fingerprint { config: 0xdead_beef, input: u64::MAX - 3 }, position, state(37))
    }

    #[test]
    fn round_trip_is_bit_exact() {
        let (fingerprint, position, state) = sample();
        let path = temp_path("round_trip.ckpt");
        save(&path, &fingerprint, &position, &state).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, HEADER_BYTES + 3 * 4 + 37 * SPLAT_BYTES + CHECKSUM_BYTES);
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.fingerprint, fingerprint);
        let p = &loaded.position;
        assert_eq!((p.step, &p.order, p.sh_degree, p.elapsed), (1234, &position.order, 1, position.elapsed));
        assert_eq!(p.rng.state(), position.rng.state());
        assert_eq!(p.rng.clone().next_u32(), position.rng.clone().next_u32());
        // Compare bit patterns: -0.0 and -inf must survive as they are.
        let bits = |s: &TrainState| {
            let mut all: Vec<u32> = Vec::new();
            for g in [&s.adam.m, &s.adam.v] {
                all.extend(bytemuck::cast_slice::<[f32; 3], u32>(&g.means));
                all.extend(bytemuck::cast_slice::<[[f32; 3]; SH_COEFFS], u32>(&g.sh));
                all.extend(bytemuck::cast_slice::<f32, u32>(&g.opacity_logits));
            }
            all.extend(bytemuck::cast_slice::<[f32; 3], u32>(&s.splats.means));
            all.extend(bytemuck::cast_slice::<[f32; 4], u32>(&s.splats.rotations));
            all.extend(bytemuck::cast_slice::<f32, u32>(&s.splats.opacity_logits));
            all.extend(bytemuck::cast_slice::<f32, u32>(&s.stats.max_radius));
            all
        };
        assert_eq!(bits(&loaded.state), bits(&state));
        assert_eq!(loaded.state.splats.sh_degree, 2);
        // Everything else (NaN-free here) compares equal as values.
        let mut without_inf = loaded.state.clone();
        let mut expected = state.clone();
        without_inf.splats.opacity_logits[0] = 0.0;
        expected.splats.opacity_logits[0] = 0.0;
        assert_eq!(without_inf, expected);
    }

    #[test]
    fn damaged_files_are_reported_as_corrupt() {
        let (fingerprint, position, state) = sample();
        let path = temp_path("damaged.ckpt");
        save(&path, &fingerprint, &position, &state).unwrap();
        let good = std::fs::read(&path).unwrap();
        let problem = |bytes: &[u8]| match parse(bytes) {
            Err(problem) => problem,
            Ok(_) => panic!("a damaged file was accepted"),
        };
        assert!(problem(&good[..good.len() - 1]).contains("truncated"));
        assert!(problem(&good[..20]).contains("early"));
        assert!(problem(b"PLY\n").contains("short"));
        let mut extra = good.clone();
        extra.push(0);
        assert!(problem(&extra).contains("truncated or damaged"));
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(problem(&magic).contains("magic"));
        let mut version = good.clone();
        version[8] = 2;
        assert!(problem(&version).contains("version 2"));
        // One flipped bit anywhere after the header's counts: in the order, the splats, Adam's
        // moments, the statistics or the checksum itself.
        for index in [HEADER_BYTES as usize + 1, good.len() / 3, good.len() - 20, good.len() - 1] {
            let mut flipped = good.clone();
            flipped[index] ^= 0x01;
            assert!(problem(&flipped).contains("checksum"), "byte {index}");
        }
        // An absurd splat count is caught before any allocation.
        let mut huge = good.clone();
        let n_at = HEADER_BYTES as usize - 8;
        huge[n_at..n_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(problem(&huge).contains("impossible"));
        assert!(parse(&good).is_ok());
    }

    #[test]
    fn missing_files_are_io_errors_naming_the_path() {
        let path = temp_path("does-not-exist.ckpt");
        let error = load(&path).unwrap_err();
        assert!(
            matches!(&error, TrainError::CheckpointIo { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
        assert!(error.to_string().contains("does-not-exist.ckpt"));
        let fingerprint = Fingerprint { config: 1, input: 2 };
        assert!(load_matching(&path, &fingerprint).is_none());
    }
}
