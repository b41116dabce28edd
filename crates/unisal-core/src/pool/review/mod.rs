//! The review list, the query batch, the disagreement histogram and the confusion between the two networks.
//!
//! [`Pool::review_page`] lists the whole pool with a round's predictions, sorted and filtered in SQL on the
//! prediction indexes (`(round_id, disagreement)`, `(round_id, confidence)`, `(round_id, pred)`), so a page
//! of 100 over 100,000 patches costs about as much as the rows it skips plus its count. Paging is stable:
//! ties are broken by patch id (in the sort's direction), and rows that lack the sort key (no prediction
//! in the round, or no label for the label sort) come after all rows that have it, in id order in the
//! sort's direction.
//!
//! Prediction indexes map to class ids through [`Pool::round_class_ids`].

mod rows;
mod sql;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_batch;

use super::{ClassId, LabelFilter, PatchId, Pool};
use crate::error::{CoreError, Result, SqlContext};
use rows::RowLoader;
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};

/// The sort key of the review list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewSort {
    /// Patch id.
    #[default]
    Id,
    /// Jensen-Shannon divergence between networks A and B.
    Disagreement,
    /// The ensemble's highest probability.
    Confidence,
    /// The ensemble's predicted class, in the round's class order (class position when it ran).
    Predicted,
    /// The current label, in class position order.
    Label,
}

/// What [`Pool::review_page`] lists and in which order. The default lists every patch by id with the
/// latest predicted round's predictions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReviewQuery {
    /// Whose predictions; `None` = [`Pool::latest_predicted_round`].
    pub round: Option<i64>,
    /// The sort key.
    pub sort: ReviewSort,
    /// Reverse the order (ties by patch id are reversed too; rows without the key stay last).
    pub descending: bool,
    /// Label condition.
    pub label: LabelFilter,
    /// Only patches the ensemble predicts as this class.
    pub predicted: Option<ClassId>,
    /// Only disagreement at least this (inclusive).
    pub disagreement_min: Option<f64>,
    /// Only disagreement at most this (inclusive).
    pub disagreement_max: Option<f64>,
    /// Only patches where networks A and B predict different classes.
    pub networks_disagree: bool,
    /// Only patches flagged unsure.
    pub unsure_only: bool,
    /// Only patches in this round's query batch.
    pub queried_in: Option<i64>,
}

impl ReviewQuery {
    /// Whether a filter needs a prediction (rows without one can then never match).
    fn filters_on_prediction(&self) -> bool {
        self.predicted.is_some()
            || self.disagreement_min.is_some()
            || self.disagreement_max.is_some()
            || self.networks_disagree
    }
}

/// Both networks' prediction of one patch in one round, with class ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowPrediction {
    /// Network A's class.
    pub a: ClassId,
    /// A's probability of its class.
    pub conf_a: f64,
    /// Network B's class.
    pub b: ClassId,
    /// B's probability of its class.
    pub conf_b: f64,
    /// The ensemble's class.
    pub ensemble: ClassId,
    /// The ensemble's highest probability.
    pub confidence: f64,
    /// Jensen-Shannon divergence between A and B.
    pub disagreement: f64,
}

/// One patch of the review list or the query batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewRow {
    /// Patch id.
    pub id: PatchId,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Original path (information only).
    pub source_path: String,
    /// Group, when known.
    pub group: Option<String>,
    /// Current label.
    pub label: Option<ClassId>,
    /// Flagged unsure.
    pub unsure: bool,
    /// The round's prediction, when the round predicted this patch.
    pub prediction: Option<RowPrediction>,
}

/// One page of the review list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewPage {
    /// Whose predictions the rows carry (`None`: no round has predictions).
    pub round: Option<i64>,
    /// The offset asked for.
    pub offset: u64,
    /// Rows matching the filters, over all pages.
    pub total: u64,
    /// The page.
    pub rows: Vec<ReviewRow>,
}

/// Disagreement scores of one round in equal-width bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// The round.
    pub round: i64,
    /// `bins + 1` edges from the smallest to the largest score. Bin `i` holds `edges[i] <= d < edges[i+1]`,
    /// the last bin also `d == edges[bins]`. All 0 when the round has no predictions.
    pub edges: Vec<f64>,
    /// Patches per bin.
    pub counts: Vec<u64>,
}

/// A round's query batch with each patch's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryBatch {
    /// The round that chose it.
    pub round: i64,
    /// Its strategy.
    pub strategy: Option<String>,
    /// The batch in rank order.
    pub items: Vec<BatchItem>,
}

/// One patch of a query batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    /// Rank in the batch, from 0.
    pub rank: i64,
    /// Why it was chosen.
    pub reason: String,
    /// The strategy's score.
    pub score: Option<f64>,
    /// The patch with its current label and the batch round's prediction.
    pub row: ReviewRow,
}

/// How often network A predicted class `a` while B predicted `b`, over a round's predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkConfusion {
    /// The round.
    pub round: i64,
    /// The classes, in the round's index order (rows and columns of `counts`).
    pub class_ids: Vec<ClassId>,
    /// `counts[a][b]`: patches A predicted as `class_ids[a]` and B as `class_ids[b]`.
    pub counts: Vec<Vec<u64>>,
    /// Patches where A and B agree (the diagonal).
    pub agree: u64,
    /// Predictions of the round.
    pub total: u64,
}

/// Most bins a histogram may have.
const MAX_BINS: usize = 10_000;

impl Pool {
    /// The newest `done` round that has predictions (the initial random draw has none).
    pub fn latest_predicted_round(&self) -> Result<Option<i64>> {
        self.conn()
            .query_row(
                "SELECT max(r.id) FROM rounds r
                 WHERE r.status = 'done' AND EXISTS (SELECT 1 FROM predictions p WHERE p.round_id = r.id)",
                [],
                |r| r.get(0),
            )
            .ctx("finding the latest round with predictions")
    }

    /// Up to `limit` rows of the review list from `offset` (see the module documentation for the order),
    /// with the number of rows matching the filters. Without any predicted round the rows carry no
    /// prediction and prediction sorts fall back to id order.
    pub fn review_page(&self, q: &ReviewQuery, offset: u64, limit: u64) -> Result<ReviewPage> {
        let round = match q.round {
            Some(r) => {
                self.require_round(r)?;
                Some(r)
            }
            None => self.latest_predicted_round()?,
        };
        if let Some(r) = q.queried_in {
            self.require_round(r)?;
        }
        for (field, v) in [("disagreement_min", q.disagreement_min), ("disagreement_max", q.disagreement_max)]
        {
            if v.is_some_and(|v| !v.is_finite()) {
                return Err(CoreError::Invalid { field, reason: format!("{} is not a number", v.unwrap()) });
            }
        }
        let loader = RowLoader::new(self, round)?;
        let predicted_index = q.predicted.map(|c| loader.index_of(c));
        let (ids, total) = sql::page_ids(self.conn(), q, round, predicted_index, offset, limit)?;
        let rows = ids.into_iter().map(|id| loader.load(id)).collect::<Result<Vec<_>>>()?;
        Ok(ReviewPage { round, offset, total, rows })
    }

    /// The disagreement scores of round `round` in `bins` equal-width bins from the smallest to the largest.
    pub fn disagreement_histogram(&self, round: i64, bins: usize) -> Result<Histogram> {
        if bins == 0 || bins > MAX_BINS {
            return Err(CoreError::Invalid {
                field: "bins",
                reason: format!("{bins} is not in 1..={MAX_BINS}"),
            });
        }
        self.require_round(round)?;
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT disagreement FROM predictions WHERE round_id = ?1 ORDER BY disagreement")
            .ctx("reading disagreement scores")?;
        let scores = stmt
            .query_map([round], |r| r.get::<_, f64>(0))
            .ctx("reading disagreement scores")?
            .collect::<rusqlite::Result<Vec<f64>>>()
            .ctx("reading disagreement scores")?;
        let (lo, hi) = match (scores.first(), scores.last()) {
            (Some(&lo), Some(&hi)) => (lo, hi),
            _ => return Ok(Histogram { round, edges: vec![0.0; bins + 1], counts: vec![0; bins] }),
        };
        let mut edges: Vec<f64> = (0..=bins).map(|i| lo + (hi - lo) * i as f64 / bins as f64).collect();
        edges[bins] = hi;
        let mut counts = vec![0u64; bins];
        for d in scores {
            // The first inner edge above d; scores equal to the top edge land in the last bin.
            let bin = edges[1..bins].partition_point(|&e| e <= d);
            counts[bin] += 1;
        }
        Ok(Histogram { round, edges, counts })
    }

    /// Round `round`'s query batch in rank order (`None`: the newest `done` round that has one; `Ok(None)`
    /// when there is none), each patch with its current label, unsure flag and that round's prediction.
    pub fn query_batch(&self, round: Option<i64>) -> Result<Option<QueryBatch>> {
        let round = match round {
            Some(r) => r,
            None => {
                let newest: Option<i64> = self
                    .conn()
                    .query_row(
                        "SELECT max(r.id) FROM rounds r WHERE r.status = 'done'
                         AND EXISTS (SELECT 1 FROM queries q WHERE q.round_id = r.id)",
                        [],
                        |r| r.get(0),
                    )
                    .ctx("finding the current query batch")?;
                match newest {
                    Some(r) => r,
                    None => return Ok(None),
                }
            }
        };
        let strategy = self.round(round)?.strategy;
        let loader = RowLoader::new(self, Some(round))?;
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT patch_id, rank, reason, score FROM queries WHERE round_id = ?1 ORDER BY rank",
            )
            .ctx("reading the query batch")?;
        let entries = stmt
            .query_map([round], |r| {
                Ok((r.get::<_, PatchId>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get(3)?))
            })
            .ctx("reading the query batch")?
            .collect::<rusqlite::Result<Vec<(PatchId, i64, String, Option<f64>)>>>()
            .ctx("reading the query batch")?;
        let items = entries
            .into_iter()
            .map(|(id, rank, reason, score)| Ok(BatchItem { rank, reason, score, row: loader.load(id)? }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(QueryBatch { round, strategy, items }))
    }

    /// How networks A and B's predicted classes pair up over round `round`'s predictions.
    pub fn network_confusion(&self, round: i64) -> Result<NetworkConfusion> {
        let class_ids = self.round_class_ids(round)?;
        let n = class_ids.len();
        let mut counts = vec![vec![0u64; n]; n];
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT pred_a, pred_b, count(*) FROM predictions WHERE round_id = ?1 GROUP BY pred_a, pred_b")
            .ctx("counting the networks' predictions")?;
        let cells = stmt
            .query_map([round], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
            .ctx("counting the networks' predictions")?;
        let (mut agree, mut total) = (0, 0);
        for cell in cells {
            let (a, b, k) = cell.ctx("counting the networks' predictions")?;
            let in_range = |i: i64| usize::try_from(i).ok().filter(|&i| i < n);
            let (Some(a), Some(b)) = (in_range(a), in_range(b)) else {
                return Err(CoreError::Invalid {
                    field: "predictions",
                    reason: format!("round {round} predicts class index {} but has {n} classes", a.max(b)),
                });
            };
            counts[a][b] += k as u64;
            total += k as u64;
            if a == b {
                agree += k as u64;
            }
        }
        Ok(NetworkConfusion { round, class_ids, counts, agree, total })
    }

    /// [`CoreError::UnknownRound`] unless round `round` exists.
    fn require_round(&self, round: i64) -> Result<()> {
        self.conn()
            .prepare_cached("SELECT 1 FROM rounds WHERE id = ?1")
            .ctx("reading a round")?
            .query_row([round], |_| Ok(()))
            .optional()
            .ctx("reading a round")?
            .ok_or(CoreError::UnknownRound(round))
    }
}
