//! Deterministic benchmark corpora (shared by the benchmark and the `gen_corpus` example).

/// SplitMix64: tiny, seedable, good enough to spread benchmark data.
pub struct Rng(u64);

impl Rng {
    /// A generator with a fixed seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    pub fn upto(&mut self, max: u64) -> u64 {
        self.next_u64() % (max + 1)
    }
}

/// The semver corpus of issue 4: 70% `X.Y.Z`, 10% `vX.Y.Z-rc.N`, 10% `main-<7 hex>-<unix time>`, 10% `X.Y`.
pub fn semver_corpus(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let kind = rng.upto(9);
            let (x, y, z) = (rng.upto(20), rng.upto(50), rng.upto(200));
            match kind {
                0..=6 => format!("{x}.{y}.{z}"),
                7 => format!("v{x}.{y}.{z}-rc.{}", rng.upto(20)),
                8 => format!(
                    "main-{:07x}-{}",
                    rng.next_u64() & 0xfff_ffff,
                    1_600_000_000 + rng.upto(200_000_000)
                ),
                _ => format!("{x}.{y}"),
            }
        })
        .collect()
}

/// Numeric tags: build numbers, unix times and a few decimals.
pub fn numeric_corpus(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| match rng.upto(3) {
            0 => rng.upto(100_000).to_string(),
            1 => (1_600_000_000 + rng.upto(200_000_000)).to_string(),
            2 => format!("{}.{}", rng.upto(1000), rng.upto(99)),
            _ => format!("{}e3", rng.upto(1_000_000)),
        })
        .collect()
}
