//! Core-Set (Sener and Savarese 2018), k-center greedy on the averaged projections: repeatedly take the
//! patch farthest from its nearest center. The labeled patches' embeddings are the initial centers when
//! given; otherwise the first pick is a seeded uniform random patch. Ties go to the lowest patch id. Each
//! item's score is its Euclidean distance to the nearest center when it was picked (0 for a random start).
//!
//! Adding a center skips, by the triangle inequality, every point whose nearest center `a` satisfies
//! `d(new, a) >= 2 d(x, a)` (the new center cannot be nearer), so only points near the new center pay for
//! a distance.

use super::distance::{sq_dist, DenseRows};
use super::rng::SeededRng;
use super::{QueryStrategy, Reason, Selection, SelectionInput};
use crate::error::Result;

/// k-center greedy on embeddings.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreSet;

/// The centers so far and each point's nearest one.
struct Centers<'a> {
    rows: DenseRows<'a>,
    dim: usize,
    /// Center vectors, flat.
    centers: Vec<f32>,
    /// Each point's nearest center (index into `centers`), `u32::MAX` before the first center.
    nearest: Vec<u32>,
    /// Each point's squared distance to it (compared when picking, so that no two distances merge in a sqrt).
    d2: Vec<f32>,
    /// Each point's distance (not squared) to it, for the pruning test.
    dist: Vec<f32>,
    /// Scratch: distances from the new center to every center.
    between: Vec<f32>,
}

impl<'a> Centers<'a> {
    fn new(rows: DenseRows<'a>, n: usize, dim: usize) -> Self {
        Centers {
            rows,
            dim,
            centers: Vec::new(),
            nearest: vec![u32::MAX; n],
            d2: vec![f32::INFINITY; n],
            dist: vec![f32::INFINITY; n],
            between: Vec::new(),
        }
    }

    fn add(&mut self, center: &[f32]) {
        let dim = self.dim;
        self.between.clear();
        self.between.extend(self.centers.chunks_exact(dim).map(|c| sq_dist(c, center).sqrt()));
        let position = (self.centers.len() / dim) as u32;
        self.centers.extend_from_slice(center);
        for (i, nearest) in self.nearest.iter_mut().enumerate() {
            if *nearest != u32::MAX && self.between[*nearest as usize] >= 2.0 * self.dist[i] {
                continue;
            }
            let d2 = sq_dist(self.rows.row(i), center);
            if d2 < self.d2[i] {
                self.d2[i] = d2;
                self.dist[i] = d2.sqrt();
                *nearest = position;
            }
        }
    }
}

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
        let mut centers = Centers::new(DenseRows::new(input.embeddings(), dim), n, dim);
        let mut chosen = vec![false; n];
        for labeled in input.labeled_embeddings().chunks_exact(dim) {
            centers.add(labeled);
        }
        if input.labeled_count() == 0 {
            let first = SeededRng::new(seed, 0x6373).below(n);
            chosen[first] = true;
            picks.push((first, Reason::RandomStart, 0.0));
            centers.add(rows.row(first));
        }
        while picks.len() < want {
            let mut best: Option<usize> = None;
            for i in (0..n).filter(|&i| !chosen[i]) {
                if best.is_none_or(|b| centers.d2[i] > centers.d2[b]) {
                    best = Some(i);
                }
            }
            let Some(next) = best else { break };
            chosen[next] = true;
            picks.push((next, Reason::FarthestPoint, f64::from(centers.dist[next])));
            centers.add(rows.row(next));
        }
        Ok(Selection::from_picks(self.name(), input, picks))
    }
}
