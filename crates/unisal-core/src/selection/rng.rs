//! The seeded random source of the strategies: ChaCha8, with uniform draws written here so that a
//! selection depends only on the ChaCha8 stream (stable across `rand` versions), not on a sampling library.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded random source; the same seed gives the same draws on every platform.
pub(crate) struct SeededRng(ChaCha8Rng);

impl SeededRng {
    /// A source for `seed`; `stream` separates independent uses of one seed (one stream per strategy).
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        SeededRng(rng)
    }

    /// A uniform draw in [0, 1) with 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n` without modulo bias (Lemire's multiply-and-reject). `n` must be > 0.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0, "below(0)");
        let n = n as u64;
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = u128::from(self.0.next_u64()) * u128::from(n);
            if (product as u64) >= threshold {
                return (product >> 64) as usize;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SeededRng;

    #[test]
    fn same_seed_same_draws_and_streams_differ() {
        let draws = |seed, stream| {
            let mut rng = SeededRng::new(seed, stream);
            (0..8).map(|_| rng.below(1000)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7, 1), draws(7, 1));
        assert_ne!(draws(7, 1), draws(7, 2));
        assert_ne!(draws(7, 1), draws(8, 1));
    }

    #[test]
    fn below_and_uniform_stay_in_range_and_cover_it() {
        let mut rng = SeededRng::new(3, 0);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            let value = rng.below(5);
            seen[value] += 1;
            let u = rng.uniform();
            assert!((0.0..1.0).contains(&u), "uniform draw {u} out of [0, 1)");
        }
        for (value, count) in seen.iter().enumerate() {
            assert!((800..1200).contains(count), "value {value} drawn {count} times of 5000");
        }
    }
}
