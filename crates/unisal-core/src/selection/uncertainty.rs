//! Uncertainty baselines on the ensemble's probabilities: highest entropy, lowest confidence (max
//! probability), smallest margin between the two most probable classes. Deterministic (the seed is not
//! used); ties by patch id. Each item's score is the metric's value (entropy in nats; confidence; margin).

use super::scores::PatchScores;
use super::{QueryStrategy, Reason, Selection, SelectionInput};
use crate::error::Result;

/// Rank by `key` (larger = more wanted) and keep the first `budget`.
fn rank_by(
    name: &str,
    metric: &str,
    input: &SelectionInput,
    budget: usize,
    key: impl Fn(&PatchScores) -> f64,
    score: impl Fn(&PatchScores) -> f64,
) -> Selection {
    let scores = input.scores();
    let keys: Vec<f64> = scores.iter().map(&key).collect();
    let mut order: Vec<usize> = (0..input.len()).collect();
    let want = budget.min(order.len());
    let by_key = |a: &usize, b: &usize| keys[*b].total_cmp(&keys[*a]).then(a.cmp(b));
    if want < order.len() && want > 0 {
        order.select_nth_unstable_by(want - 1, by_key);
    }
    order.truncate(want);
    order.sort_by(by_key);
    let picks = order
        .into_iter()
        .map(|i| (i, Reason::Uncertainty { metric: metric.to_string() }, score(&scores[i])))
        .collect();
    Selection::from_picks(name, input, picks)
}

/// Highest entropy of the ensemble's probabilities.
#[derive(Debug, Clone, Copy, Default)]
pub struct Entropy;

impl QueryStrategy for Entropy {
    fn name(&self) -> &str {
        "entropy"
    }
    fn select(&self, input: &SelectionInput, budget: usize, _seed: u64) -> Result<Selection> {
        Ok(rank_by(self.name(), "entropy", input, budget, |s| s.entropy, |s| s.entropy))
    }
}

/// Lowest ensemble confidence (probability of the predicted class).
#[derive(Debug, Clone, Copy, Default)]
pub struct LeastConfidence;

impl QueryStrategy for LeastConfidence {
    fn name(&self) -> &str {
        "least-confidence"
    }
    fn select(&self, input: &SelectionInput, budget: usize, _seed: u64) -> Result<Selection> {
        Ok(rank_by(self.name(), "least confidence", input, budget, |s| -s.confidence, |s| s.confidence))
    }
}

/// Smallest margin between the ensemble's two most probable classes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Margin;

impl QueryStrategy for Margin {
    fn name(&self) -> &str {
        "margin"
    }
    fn select(&self, input: &SelectionInput, budget: usize, _seed: u64) -> Result<Selection> {
        Ok(rank_by(self.name(), "margin", input, budget, |s| -s.margin, |s| s.margin))
    }
}
