//! Core-Set (Sener and Savarese 2018), k-center greedy on the averaged projections: repeatedly take the
//! patch farthest from its nearest center. The labeled patches' embeddings are the initial centers when
//! given; otherwise the first pick is a seeded uniform random patch. Ties go to the lowest patch id. Each
//! item's score is its Euclidean distance to the nearest center when it was picked (0 for a random start).

use super::distance::{sq_dist, DenseRows};
use super::rng::SeededRng;
use super::{QueryStrategy, Reason, Selection, SelectionInput};
use crate::error::Result;

/// k-center greedy on embeddings.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreSet;

impl QueryStrategy for CoreSet {
    fn name(&self) -> &str {
        "coreset"
    }

    fn select(&self, input: &SelectionInput, budget: usize, seed: u64) -> Result<Selection> {
        let n = input.len();
        let want = budget.min(n);
        let mut picks = Vec::with_capacity(want);
        if want == 0 {
            return Ok(Selection::from_picks(self.name(), input, picks));
        }
        let dim = input.embed_dim();
        let rows = DenseRows::new(input.embeddings(), dim);
        let mut nearest = vec![f32::INFINITY; n];
        let mut chosen = vec![false; n];
        let add_center = |nearest: &mut [f32], center: &[f32]| {
            for (i, d) in nearest.iter_mut().enumerate() {
                let to_center = sq_dist(rows.row(i), center);
                if to_center < *d {
                    *d = to_center;
                }
            }
        };
        for labeled in input.labeled_embeddings().chunks_exact(dim) {
            add_center(&mut nearest, labeled);
        }
        if input.labeled_count() == 0 {
            let first = SeededRng::new(seed, 0x6373).below(n);
            chosen[first] = true;
            picks.push((first, Reason::RandomStart, 0.0));
            add_center(&mut nearest, rows.row(first));
        }
        while picks.len() < want {
            let mut best: Option<usize> = None;
            for i in (0..n).filter(|&i| !chosen[i]) {
                if best.is_none_or(|b| nearest[i] > nearest[b]) {
                    best = Some(i);
                }
            }
            let Some(next) = best else { break };
            chosen[next] = true;
            picks.push((next, Reason::FarthestPoint, f64::from(nearest[next]).sqrt()));
            add_center(&mut nearest, rows.row(next));
        }
        Ok(Selection::from_picks(self.name(), input, picks))
    }
}
