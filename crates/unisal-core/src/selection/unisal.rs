//! UniSAL's query strategy (UNISAL.md section 2): the Disagreement-aware Uncertainty Selector keeps the
//! patches whose two networks predict different classes; the Compact Selector runs k-means with K = budget
//! over their averaged projections and takes from each cluster the member nearest its centroid.
//!
//! With no more candidates than the budget, every candidate is taken, and (fewer than the budget) the batch
//! is topped up with the agreeing patches of highest Jensen-Shannon divergence, counted in
//! [`Selection::topped_up`]. Rank order: disagreeing picks first, by descending JSD, then the top-ups by
//! descending JSD; ties by patch id. Each item's score is its JSD.

use super::kmeans::{kmeans, KMeansConfig};
use super::{QueryStrategy, Reason, Selection, SelectionInput};
use crate::error::Result;

/// UniSAL: DUS + CS, with the k-means stopping rule in `kmeans`.
#[derive(Debug, Clone, Default)]
pub struct UniSal {
    /// Lloyd iterations and tolerance of the Compact Selector.
    pub kmeans: KMeansConfig,
}

impl QueryStrategy for UniSal {
    fn name(&self) -> &str {
        "unisal"
    }

    fn select(&self, input: &SelectionInput, budget: usize, seed: u64) -> Result<Selection> {
        let scores = input.scores();
        let want = budget.min(input.len());
        let candidates: Vec<usize> = (0..input.len()).filter(|&i| !scores[i].agree).collect();
        let by_jsd = |a: &usize, b: &usize| scores[*b].jsd.total_cmp(&scores[*a].jsd).then(a.cmp(b));

        let mut picks: Vec<(usize, Reason, f64)> = Vec::with_capacity(want);
        if candidates.len() > want && want > 0 {
            let dim = input.embed_dim();
            let mut points = Vec::with_capacity(candidates.len() * dim);
            for &i in &candidates {
                points.extend_from_slice(input.embedding(i));
            }
            let result = kmeans(&points, dim, want, &self.kmeans, seed)?;
            for (point, cluster) in result.representatives(&points) {
                let index = candidates[point];
                let reason = Reason::DisagreeCluster { cluster, size: result.sizes[cluster] };
                picks.push((index, reason, scores[index].jsd));
            }
            picks.sort_by(|a, b| by_jsd(&a.0, &b.0));
        } else {
            let mut taken: Vec<usize> = candidates.iter().copied().take(want).collect();
            taken.sort_by(by_jsd);
            picks.extend(taken.into_iter().map(|i| (i, Reason::DisagreeAll, scores[i].jsd)));
        }

        let topped_up = want - picks.len();
        if topped_up > 0 {
            let mut agreeing: Vec<usize> = (0..input.len()).filter(|&i| scores[i].agree).collect();
            agreeing.sort_by(by_jsd);
            picks.extend(agreeing.into_iter().take(topped_up).map(|i| (i, Reason::TopUpJsd, scores[i].jsd)));
        }
        let mut selection = Selection::from_picks(self.name(), input, picks);
        selection.candidates = Some(candidates.len());
        selection.topped_up = topped_up;
        Ok(selection)
    }
}
