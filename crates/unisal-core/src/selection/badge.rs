//! BADGE (Ash et al. 2020): k-means++ seeding over gradient embeddings. The original uses the gradient of
//! the cross-entropy with respect to the last layer's weights at the predicted label, `(p - onehot(ŷ)) ⊗ h`
//! with `h` the penultimate features. The learner here exposes the 128-d averaged projection `e`, not `h`, so
//! this implementation uses `g = (p - onehot(ŷ)) ⊗ e` with `p` the ensemble's probabilities and `ŷ` their
//! argmax. `g` is never materialised: `‖g_i - g_j‖² = ‖r_i‖²‖e_i‖² + ‖r_j‖²‖e_j‖² - 2 (r_i·r_j)(e_i·e_j)` with
//! `r = p - onehot(ŷ)`, which costs C + D operations instead of C × D.
//!
//! The first center is the largest gradient embedding (ties to the lowest id), each next one is drawn with
//! probability proportional to its squared distance to the chosen centers. Each item's score is its distance
//! to the nearest chosen center when it was drawn (the norm of its gradient embedding for the first).

use super::distance::{dot, PointSet};
use super::rng::SeededRng;
use super::seeding::kmeans_pp;
use super::{QueryStrategy, Reason, Selection, SelectionInput};
use crate::error::Result;

/// BADGE with gradient embeddings built on the averaged projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Badge;

/// The implicit gradient embeddings of all patches.
struct GradientEmbeddings<'a> {
    input: &'a SelectionInput,
    residual: Vec<f32>,
    residual_norm2: Vec<f64>,
    embedding_norm2: Vec<f64>,
}

impl<'a> GradientEmbeddings<'a> {
    fn new(input: &'a SelectionInput) -> Self {
        let classes = input.num_classes();
        let mut residual = Vec::with_capacity(input.len() * classes);
        for (i, score) in input.scores().iter().enumerate() {
            let start = residual.len();
            residual.extend_from_slice(input.ensemble(i));
            residual[start + score.pred as usize] -= 1.0;
        }
        let residual_norm2 =
            residual.chunks_exact(classes).map(|r| f64::from(dot(r, r))).collect::<Vec<f64>>();
        let embedding_norm2 = (0..input.len())
            .map(|i| f64::from(dot(input.embedding(i), input.embedding(i))))
            .collect::<Vec<f64>>();
        GradientEmbeddings { input, residual, residual_norm2, embedding_norm2 }
    }

    fn residual(&self, i: usize) -> &[f32] {
        let classes = self.input.num_classes();
        &self.residual[i * classes..(i + 1) * classes]
    }

    fn norm2(&self, i: usize) -> f64 {
        self.residual_norm2[i] * self.embedding_norm2[i]
    }
}

impl PointSet for GradientEmbeddings<'_> {
    fn len(&self) -> usize {
        self.input.len()
    }

    fn dist2(&self, i: usize, j: usize) -> f32 {
        let cross = f64::from(dot(self.residual(i), self.residual(j)))
            * f64::from(dot(self.input.embedding(i), self.input.embedding(j)));
        (self.norm2(i) + self.norm2(j) - 2.0 * cross).max(0.0) as f32
    }
}

impl QueryStrategy for Badge {
    fn name(&self) -> &str {
        "badge"
    }

    fn select(&self, input: &SelectionInput, budget: usize, seed: u64) -> Result<Selection> {
        let want = budget.min(input.len());
        if want == 0 {
            return Ok(Selection::from_picks(self.name(), input, Vec::new()));
        }
        let gradients = GradientEmbeddings::new(input);
        let first =
            (0..input.len())
                .fold(0, |best, i| if gradients.norm2(i) > gradients.norm2(best) { i } else { best });
        let mut rng = SeededRng::new(seed, 0x6267);
        let seeding = kmeans_pp(&gradients, want, first, &mut rng, false);
        let picks = seeding
            .centers
            .iter()
            .zip(&seeding.drawn_d2)
            .enumerate()
            .map(|(rank, (&i, &d2))| {
                if rank == 0 {
                    (i, Reason::LargestGradient, gradients.norm2(i).sqrt())
                } else {
                    (i, Reason::GradientSeeding, f64::from(d2).sqrt())
                }
            })
            .collect();
        Ok(Selection::from_picks(self.name(), input, picks))
    }
}
