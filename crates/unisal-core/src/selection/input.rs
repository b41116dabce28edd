//! [`SelectionInput`]: the validated, id-sorted flat arrays every strategy reads.

use super::scores::{ensemble_from_pair, PatchScores};
use crate::error::{CoreError, Result};
use crate::learner::PatchPrediction;

/// How far a probability row's sum may stray from 1.
const SUM_TOLERANCE: f64 = 1e-3;

/// What a caller has for the unlabeled pool, in any order, as flat row-major arrays.
#[derive(Debug, Clone, Default)]
pub struct SelectionInputParts {
    /// One id per patch, unique.
    pub ids: Vec<i64>,
    /// Number of classes C (at least 2).
    pub num_classes: usize,
    /// Network A's probabilities, `ids.len() * C` values, row by row.
    pub probs_a: Vec<f32>,
    /// Network B's probabilities, same layout.
    pub probs_b: Vec<f32>,
    /// The ensemble's probabilities (softmax of the averaged logits) when the learner gives them; when
    /// `None` they are derived from `probs_a` and `probs_b` exactly (see [`SelectionInput`]).
    pub ensemble_probs: Option<Vec<f32>>,
    /// Embedding dimension D (128 for the averaged projection).
    pub embed_dim: usize,
    /// The averaged projections `(zA + zB) / 2`, `ids.len() * D` values.
    pub embeddings: Vec<f32>,
    /// Embeddings of the already labeled patches (`m * D` values, possibly none); Core-Set uses them as
    /// its initial centers.
    pub labeled_embeddings: Vec<f32>,
}

/// The unlabeled pool as the strategies see it: validated, and stored sorted by patch id.
///
/// The ensemble's probabilities are the learner's when given; otherwise the softmax of the averaged
/// log-probabilities of A and B, which equals the softmax of the averaged logits (the pair's prediction
/// rule, UNISAL.md 1.5) because `ln softmax(z) = z - logsumexp(z)` differs from `z` by a per-row constant:
/// the normalised geometric mean `sqrt(pA pB) / sum`. (The arithmetic mean of pA and pB would not match the
/// pair's predicted class in general.)
#[derive(Debug, Clone)]
pub struct SelectionInput {
    ids: Vec<i64>,
    num_classes: usize,
    embed_dim: usize,
    probs_a: Vec<f32>,
    probs_b: Vec<f32>,
    ensemble: Vec<f32>,
    embeddings: Vec<f32>,
    labeled_embeddings: Vec<f32>,
    scores: Vec<PatchScores>,
}

impl SelectionInput {
    /// Validate and sort: `ids` (unique), `C` classes, A's and B's probabilities (`n * C`, rows sum to 1),
    /// and embeddings (`n * embed_dim`, finite). Errors name the field and the patch.
    pub fn new(
        ids: Vec<i64>,
        num_classes: usize,
        probs_a: Vec<f32>,
        probs_b: Vec<f32>,
        embed_dim: usize,
        embeddings: Vec<f32>,
    ) -> Result<Self> {
        Self::from_parts(SelectionInputParts {
            ids,
            num_classes,
            probs_a,
            probs_b,
            ensemble_probs: None,
            embed_dim,
            embeddings,
            labeled_embeddings: Vec::new(),
        })
    }

    /// From the learner's per-patch predictions of the unlabeled pool, plus the labeled patches'
    /// embeddings (flat, possibly empty). An empty prediction list needs `embed_dim`, taken as given.
    pub fn from_predictions(
        predictions: &[PatchPrediction],
        labeled_embeddings: Vec<f32>,
        embed_dim: usize,
    ) -> Result<Self> {
        let num_classes = predictions.first().map_or(2, |p| p.prob_a.len());
        let mut parts = SelectionInputParts {
            num_classes,
            embed_dim,
            labeled_embeddings,
            ..SelectionInputParts::default()
        };
        for p in predictions {
            if p.prob_a.len() != num_classes || p.prob_b.len() != num_classes {
                return Err(invalid(
                    if p.prob_a.len() != num_classes { "probs_a" } else { "probs_b" },
                    format!(
                        "patch {} has {} and {} class probabilities, the first patch has {num_classes}",
                        p.patch_id,
                        p.prob_a.len(),
                        p.prob_b.len()
                    ),
                ));
            }
            if p.embedding.len() != embed_dim {
                return Err(invalid(
                    "embeddings",
                    format!(
                        "patch {} has a {}-d embedding, expected {embed_dim}",
                        p.patch_id,
                        p.embedding.len()
                    ),
                ));
            }
            parts.ids.push(p.patch_id);
            parts.probs_a.extend_from_slice(&p.prob_a);
            parts.probs_b.extend_from_slice(&p.prob_b);
            parts.embeddings.extend_from_slice(&p.embedding);
        }
        Self::from_parts(parts)
    }

    /// Validate and sort all parts. Nothing is kept from a refused input.
    pub fn from_parts(parts: SelectionInputParts) -> Result<Self> {
        let SelectionInputParts {
            ids,
            num_classes,
            probs_a,
            probs_b,
            ensemble_probs,
            embed_dim,
            embeddings,
            labeled_embeddings,
        } = parts;
        if num_classes < 2 {
            return Err(invalid("num_classes", format!("must be at least 2, got {num_classes}")));
        }
        if embed_dim == 0 {
            return Err(invalid("embed_dim", "must be at least 1, got 0".to_string()));
        }
        let n = ids.len();
        check_len("probs_a", probs_a.len(), n, num_classes, "classes")?;
        check_len("probs_b", probs_b.len(), n, num_classes, "classes")?;
        check_len("embeddings", embeddings.len(), n, embed_dim, "dimensions")?;
        if let Some(ensemble) = &ensemble_probs {
            check_len("ensemble_probs", ensemble.len(), n, num_classes, "classes")?;
        }
        if labeled_embeddings.len() % embed_dim != 0 {
            return Err(invalid(
                "labeled_embeddings",
                format!("has {} values, not a multiple of embed_dim {embed_dim}", labeled_embeddings.len()),
            ));
        }

        let mut order: Vec<usize> = (0..n).collect();
        order.sort_unstable_by_key(|&i| ids[i]);
        if let Some(pair) = order.windows(2).find(|pair| ids[pair[0]] == ids[pair[1]]) {
            return Err(invalid("ids", format!("patch id {} appears more than once", ids[pair[0]])));
        }

        check_probabilities("probs_a", &probs_a, &ids, num_classes)?;
        check_probabilities("probs_b", &probs_b, &ids, num_classes)?;
        if let Some(ensemble) = &ensemble_probs {
            check_probabilities("ensemble_probs", ensemble, &ids, num_classes)?;
        }
        check_finite("embeddings", &embeddings, embed_dim, |row| format!("patch {}", ids[row]))?;
        check_finite("labeled_embeddings", &labeled_embeddings, embed_dim, |row| {
            format!("labeled row {row}")
        })?;

        let probs_a = permute_rows(&probs_a, num_classes, &order);
        let probs_b = permute_rows(&probs_b, num_classes, &order);
        let embeddings = permute_rows(&embeddings, embed_dim, &order);
        let ensemble = match ensemble_probs {
            Some(ensemble) => permute_rows(&ensemble, num_classes, &order),
            None => {
                let mut ensemble = Vec::with_capacity(n * num_classes);
                for (pa, pb) in probs_a.chunks_exact(num_classes).zip(probs_b.chunks_exact(num_classes)) {
                    ensemble_from_pair(pa, pb, &mut ensemble);
                }
                ensemble
            }
        };
        let ids: Vec<i64> = order.iter().map(|&i| ids[i]).collect();
        let scores = (0..n)
            .map(|i| {
                let row = i * num_classes..(i + 1) * num_classes;
                PatchScores::compute(ids[i], &probs_a[row.clone()], &probs_b[row.clone()], &ensemble[row])
            })
            .collect();
        Ok(SelectionInput {
            ids,
            num_classes,
            embed_dim,
            probs_a,
            probs_b,
            ensemble,
            embeddings,
            labeled_embeddings,
            scores,
        })
    }

    /// Replace the labeled patches' embeddings (flat, `m * embed_dim`), e.g. for Core-Set.
    pub fn with_labeled_embeddings(mut self, labeled_embeddings: Vec<f32>) -> Result<Self> {
        let dim = self.embed_dim;
        if labeled_embeddings.len() % dim != 0 {
            return Err(invalid(
                "labeled_embeddings",
                format!("has {} values, not a multiple of embed_dim {dim}", labeled_embeddings.len()),
            ));
        }
        check_finite("labeled_embeddings", &labeled_embeddings, dim, |row| format!("labeled row {row}"))?;
        self.labeled_embeddings = labeled_embeddings;
        Ok(self)
    }

    /// Number of patches.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// Whether there are no patches.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// Patch ids, ascending; index `i` of every other accessor refers to `ids()[i]`.
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }
    /// Number of classes C.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }
    /// Embedding dimension D.
    pub fn embed_dim(&self) -> usize {
        self.embed_dim
    }
    /// Network A's probabilities of patch `i`.
    pub fn probs_a(&self, i: usize) -> &[f32] {
        &self.probs_a[i * self.num_classes..(i + 1) * self.num_classes]
    }
    /// Network B's probabilities of patch `i`.
    pub fn probs_b(&self, i: usize) -> &[f32] {
        &self.probs_b[i * self.num_classes..(i + 1) * self.num_classes]
    }
    /// The ensemble's probabilities of patch `i`.
    pub fn ensemble(&self, i: usize) -> &[f32] {
        &self.ensemble[i * self.num_classes..(i + 1) * self.num_classes]
    }
    /// The embedding of patch `i`.
    pub fn embedding(&self, i: usize) -> &[f32] {
        &self.embeddings[i * self.embed_dim..(i + 1) * self.embed_dim]
    }
    /// All embeddings, `len() * embed_dim()` values in id order.
    pub fn embeddings(&self) -> &[f32] {
        &self.embeddings
    }
    /// The labeled patches' embeddings, flat.
    pub fn labeled_embeddings(&self) -> &[f32] {
        &self.labeled_embeddings
    }
    /// Number of labeled embeddings.
    pub fn labeled_count(&self) -> usize {
        self.labeled_embeddings.len() / self.embed_dim
    }
    /// The scores of every patch, in id order (to store with the round for the UI).
    pub fn scores(&self) -> &[PatchScores] {
        &self.scores
    }
}

fn invalid(field: &'static str, reason: String) -> CoreError {
    CoreError::Invalid { field, reason }
}

fn check_len(field: &'static str, len: usize, n: usize, width: usize, what: &str) -> Result<()> {
    if n.checked_mul(width) == Some(len) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("has {len} values, expected {n} patches x {width} {what} = {}", n * width),
        ))
    }
}

fn check_finite(
    field: &'static str,
    values: &[f32],
    width: usize,
    name_row: impl Fn(usize) -> String,
) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(at) => Err(invalid(
            field,
            format!(
                "{} has the non-finite value {} at position {}",
                name_row(at / width),
                values[at],
                at % width
            ),
        )),
    }
}

fn check_probabilities(field: &'static str, values: &[f32], ids: &[i64], width: usize) -> Result<()> {
    check_finite(field, values, width, |row| format!("patch {} (row {row})", ids[row]))?;
    for (row, (probs, id)) in values.chunks_exact(width).zip(ids).enumerate() {
        if let Some(class) = probs.iter().position(|p| !(0.0..=1.0 + SUM_TOLERANCE as f32).contains(p)) {
            return Err(invalid(
                field,
                format!(
                    "patch {id} (row {row}) has probability {} for class {class}, outside [0, 1]",
                    probs[class]
                ),
            ));
        }
        let sum: f64 = probs.iter().map(|&p| f64::from(p)).sum();
        if (sum - 1.0).abs() > SUM_TOLERANCE {
            return Err(invalid(
                field,
                format!("patch {id} (row {row}) has probabilities summing to {sum}, expected 1 (within {SUM_TOLERANCE})"),
            ));
        }
    }
    Ok(())
}

fn permute_rows(values: &[f32], width: usize, order: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(values.len());
    for &i in order {
        out.extend_from_slice(&values[i * width..(i + 1) * width]);
    }
    out
}
