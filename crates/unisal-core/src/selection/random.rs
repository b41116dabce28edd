//! Random: a seeded uniform random subset. Every patch, in id order, draws a key in [0, 1); the `budget`
//! smallest keys win (ties by id), in ascending key order. Each item's score is its key.

use super::rng::SeededRng;
use super::{QueryStrategy, Reason, Selection, SelectionInput};
use crate::error::Result;

/// Uniform random queries, the classic baseline.
#[derive(Debug, Clone, Copy, Default)]
pub struct Random;

impl QueryStrategy for Random {
    fn name(&self) -> &str {
        "random"
    }

    fn select(&self, input: &SelectionInput, budget: usize, seed: u64) -> Result<Selection> {
        let mut rng = SeededRng::new(seed, 0x7261);
        let keys: Vec<f64> = (0..input.len()).map(|_| rng.uniform()).collect();
        let mut order: Vec<usize> = (0..input.len()).collect();
        let want = budget.min(order.len());
        let by_key = |a: &usize, b: &usize| keys[*a].total_cmp(&keys[*b]).then(a.cmp(b));
        if want < order.len() && want > 0 {
            order.select_nth_unstable_by(want - 1, by_key);
        }
        order.truncate(want);
        order.sort_by(by_key);
        let picks = order.into_iter().map(|i| (i, Reason::Random, keys[i])).collect();
        Ok(Selection::from_picks(self.name(), input, picks))
    }
}
