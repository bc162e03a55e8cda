//! The small seeded random generator every random choice in Kiln draws from (sampling, RANSAC,
//! view orders), so a run is reproducible across platforms.

/// A PCG-XSH-RR 32-bit generator (O'Neill 2014): tiny, deterministic across platforms, good
/// enough for sampling initial points, split offsets and view orders.
#[derive(Clone, Debug)]
pub struct Pcg32 {
    state: u64,
}

/// PCG's 64-bit LCG multiplier.
const PCG_MULTIPLIER: u64 = 6_364_136_223_846_793_005;
/// PCG's default stream increment (must be odd).
const PCG_INCREMENT: u64 = 1_442_695_040_888_963_407;

impl Pcg32 {
    pub fn new(seed: u64) -> Self {
        let mut rng = Self { state: seed.wrapping_add(PCG_INCREMENT) };
        rng.next_u32();
        rng
    }

    /// The generator's whole state, for checkpoints; [`Pcg32::from_state`] restores it.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// The generator that continues exactly where the one whose [`Pcg32::state`] this was stood.
    pub fn from_state(state: u64) -> Self {
        Self { state }
    }

    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(PCG_MULTIPLIER).wrapping_add(PCG_INCREMENT);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        xorshifted.rotate_right((old >> 59) as u32)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }

    /// Uniform integer in `[0, n)` (`n > 0`; returns 0 for `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u32() as u64 * n as u64) >> 32) as usize
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}
