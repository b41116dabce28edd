//! Synthetic pools for the selection tests: a seeded generator of probabilities and embeddings with a
//! chosen share of disagreeing patches, duplicates on demand, and helpers to permute a pool's order.

#![allow(dead_code)]

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use unisal_core::selection::{SelectionInput, SelectionInputParts};

/// A pool as a caller would hold it, in the caller's order.
#[derive(Debug, Clone)]
pub struct Pool {
    pub ids: Vec<i64>,
    pub classes: usize,
    pub dim: usize,
    pub probs_a: Vec<f32>,
    pub probs_b: Vec<f32>,
    pub embeddings: Vec<f32>,
    pub labeled: Vec<f32>,
}

impl Pool {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The validated input.
    pub fn input(&self) -> SelectionInput {
        SelectionInput::from_parts(SelectionInputParts {
            ids: self.ids.clone(),
            num_classes: self.classes,
            probs_a: self.probs_a.clone(),
            probs_b: self.probs_b.clone(),
            ensemble_probs: None,
            embed_dim: self.dim,
            embeddings: self.embeddings.clone(),
            labeled_embeddings: self.labeled.clone(),
        })
        .expect("synthetic pool is valid")
    }

    /// The same patches listed in the order `order` (a permutation of 0..n).
    pub fn permuted(&self, order: &[usize]) -> Pool {
        let rows = |values: &[f32], width: usize| -> Vec<f32> {
            order.iter().flat_map(|&i| values[i * width..(i + 1) * width].iter().copied()).collect()
        };
        Pool {
            ids: order.iter().map(|&i| self.ids[i]).collect(),
            probs_a: rows(&self.probs_a, self.classes),
            probs_b: rows(&self.probs_b, self.classes),
            embeddings: rows(&self.embeddings, self.dim),
            ..self.clone()
        }
    }

    /// A seeded random permutation of this pool's order.
    pub fn shuffled(&self, seed: u64) -> Pool {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..self.len()).collect();
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        self.permuted(&order)
    }
}

/// Settings of [`synthetic`].
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub n: usize,
    pub classes: usize,
    pub dim: usize,
    /// Share of patches where A and B predict different classes.
    pub disagree: f64,
    /// Embedding values are drawn from this many distinct levels (small = many duplicates and ties).
    pub levels: u64,
    /// Labeled embeddings to add.
    pub labeled: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape { n: 200, classes: 5, dim: 16, disagree: 0.2, levels: 1000, labeled: 0 }
    }
}

fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A probability row peaked at `peak`.
fn row(rng: &mut ChaCha8Rng, classes: usize, peak: usize, out: &mut Vec<f32>) {
    let mut values: Vec<f64> = (0..classes).map(|_| uniform(rng) * 0.5).collect();
    values[peak] += 1.0 + uniform(rng);
    let total: f64 = values.iter().sum();
    out.extend(values.iter().map(|v| (v / total) as f32));
}

/// A seeded synthetic pool; ids are spread out and listed in a scrambled order.
pub fn synthetic(shape: Shape, seed: u64) -> Pool {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let Shape { n, classes, dim, disagree, levels, labeled } = shape;
    let mut pool = Pool {
        ids: (0..n as i64).map(|i| (i * 37 + 11) % (n as i64 * 41 + 1) - 5).collect(),
        classes,
        dim,
        probs_a: Vec::new(),
        probs_b: Vec::new(),
        embeddings: Vec::new(),
        labeled: Vec::new(),
    };
    for _ in 0..n {
        let class = (rng.next_u64() % classes as u64) as usize;
        row(&mut rng, classes, class, &mut pool.probs_a);
        let other = if uniform(&mut rng) < disagree { (class + 1) % classes } else { class };
        row(&mut rng, classes, other, &mut pool.probs_b);
        for _ in 0..dim {
            pool.embeddings
                .push((rng.next_u64() % levels.max(1)) as f32 / levels.max(1) as f32 + class as f32);
        }
    }
    pool.labeled = (0..labeled * dim).map(|_| uniform(&mut rng) as f32 * classes as f32).collect();
    pool
}
