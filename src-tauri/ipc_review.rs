//! IPC types of the query batch, the review list, the histogram and the results screen (camelCase on the
//! wire; mirrored in `ui/src/lib/types.ts`).

use serde::{Deserialize, Serialize};
use unisal_core::pool::{
    BatchItem, CurvePoint, Histogram, LabelFilter, NetworkConfusion, QueryBatch, ReviewPage, ReviewQuery,
    ReviewRow, ReviewSort, RowPrediction, Score,
};

/// The label condition of a review query: `"any"`, `"labeled"`, `"unlabeled"` or `{"class": id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewLabelFilter {
    Any,
    Labeled,
    Unlabeled,
    Class(i64),
}

/// A review query from the UI.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewQueryIn {
    pub round: Option<i64>,
    pub sort: ReviewSort,
    pub descending: bool,
    pub label: ReviewLabelFilter,
    pub predicted: Option<i64>,
    pub disagreement_min: Option<f64>,
    pub disagreement_max: Option<f64>,
    pub networks_disagree: bool,
    pub unsure_only: bool,
    pub queried_in: Option<i64>,
}

impl From<ReviewQueryIn> for ReviewQuery {
    fn from(q: ReviewQueryIn) -> Self {
        ReviewQuery {
            round: q.round,
            sort: q.sort,
            descending: q.descending,
            label: match q.label {
                ReviewLabelFilter::Any => LabelFilter::Any,
                ReviewLabelFilter::Labeled => LabelFilter::Labeled,
                ReviewLabelFilter::Unlabeled => LabelFilter::Unlabeled,
                ReviewLabelFilter::Class(id) => LabelFilter::Class(id),
            },
            predicted: q.predicted,
            disagreement_min: q.disagreement_min,
            disagreement_max: q.disagreement_max,
            networks_disagree: q.networks_disagree,
            unsure_only: q.unsure_only,
            queried_in: q.queried_in,
        }
    }
}

/// Both networks' view of one patch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowPredictionOut {
    pub a: i64,
    pub conf_a: f64,
    pub b: i64,
    pub conf_b: f64,
    pub ensemble: i64,
    pub confidence: f64,
    pub disagreement: f64,
}

impl From<RowPrediction> for RowPredictionOut {
    fn from(p: RowPrediction) -> Self {
        RowPredictionOut {
            a: p.a,
            conf_a: p.conf_a,
            b: p.b,
            conf_b: p.conf_b,
            ensemble: p.ensemble,
            confidence: p.confidence,
            disagreement: p.disagreement,
        }
    }
}

/// One patch of the review list or a query batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewRowOut {
    pub id: i64,
    pub width: u32,
    pub height: u32,
    pub source: String,
    pub group: Option<String>,
    pub label: Option<i64>,
    pub unsure: bool,
    pub prediction: Option<RowPredictionOut>,
}

impl From<ReviewRow> for ReviewRowOut {
    fn from(r: ReviewRow) -> Self {
        ReviewRowOut {
            id: r.id,
            width: r.width,
            height: r.height,
            source: r.source_path,
            group: r.group,
            label: r.label,
            unsure: r.unsure,
            prediction: r.prediction.map(Into::into),
        }
    }
}

/// A page of the review list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewPageOut {
    pub round: Option<i64>,
    pub offset: u64,
    pub total: u64,
    pub rows: Vec<ReviewRowOut>,
}

impl From<ReviewPage> for ReviewPageOut {
    fn from(p: ReviewPage) -> Self {
        ReviewPageOut {
            round: p.round,
            offset: p.offset,
            total: p.total,
            rows: p.rows.into_iter().map(Into::into).collect(),
        }
    }
}

/// Disagreement scores of a round in bins.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistogramOut {
    pub round: i64,
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

impl From<Histogram> for HistogramOut {
    fn from(h: Histogram) -> Self {
        HistogramOut { round: h.round, edges: h.edges, counts: h.counts }
    }
}

/// One patch of a query batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemOut {
    pub rank: i64,
    pub reason: String,
    pub score: Option<f64>,
    pub row: ReviewRowOut,
}

/// The current query batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryBatchOut {
    pub round: i64,
    pub strategy: Option<String>,
    pub items: Vec<BatchItemOut>,
}

impl From<QueryBatch> for QueryBatchOut {
    fn from(b: QueryBatch) -> Self {
        let item =
            |i: BatchItem| BatchItemOut { rank: i.rank, reason: i.reason, score: i.score, row: i.row.into() };
        QueryBatchOut { round: b.round, strategy: b.strategy, items: b.items.into_iter().map(item).collect() }
    }
}

/// Accuracy and macro-F1 on `n` patches.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreOut {
    pub n: u64,
    pub accuracy: f64,
    #[serde(rename = "macroF1")]
    pub macro_f1: f64,
}

impl From<Score> for ScoreOut {
    fn from(s: Score) -> Self {
        ScoreOut { n: s.n, accuracy: s.accuracy, macro_f1: s.macro_f1 }
    }
}

/// One round on the learning curve.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CurvePointOut {
    pub round: i64,
    pub strategy: Option<String>,
    pub labeled: u64,
    pub heldout: Option<ScoreOut>,
    pub oracle: Option<ScoreOut>,
    pub train_seconds: Option<f64>,
}

impl From<CurvePoint> for CurvePointOut {
    fn from(p: CurvePoint) -> Self {
        CurvePointOut {
            round: p.round,
            strategy: p.strategy,
            labeled: p.labeled,
            heldout: p.heldout.map(Into::into),
            oracle: p.oracle.map(Into::into),
            train_seconds: p.train_seconds,
        }
    }
}

/// Network A's predicted class against network B's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfusionOut {
    pub round: i64,
    pub class_ids: Vec<i64>,
    pub counts: Vec<Vec<u64>>,
    pub agree: u64,
    pub total: u64,
}

impl From<NetworkConfusion> for NetworkConfusionOut {
    fn from(c: NetworkConfusion) -> Self {
        NetworkConfusionOut {
            round: c.round,
            class_ids: c.class_ids,
            counts: c.counts,
            agree: c.agree,
            total: c.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_queries_arrive_as_the_ui_sends_them() {
        let q: ReviewQueryIn = serde_json::from_value(serde_json::json!({
            "round": null, "sort": "disagreement", "descending": true, "label": {"class": 3},
            "predicted": 2, "disagreementMin": 0.1, "disagreementMax": 0.2, "networksDisagree": true,
            "unsureOnly": false, "queriedIn": 4
        }))
        .unwrap();
        let q: ReviewQuery = q.into();
        assert_eq!(q.sort, ReviewSort::Disagreement);
        assert_eq!(q.label, LabelFilter::Class(3));
        assert_eq!((q.predicted, q.queried_in, q.disagreement_min), (Some(2), Some(4), Some(0.1)));
        let q: ReviewQueryIn = serde_json::from_value(serde_json::json!({
            "round": 2, "sort": "id", "descending": false, "label": "unlabeled", "predicted": null,
            "disagreementMin": null, "disagreementMax": null, "networksDisagree": false, "unsureOnly": true,
            "queriedIn": null
        }))
        .unwrap();
        assert_eq!(q.label, ReviewLabelFilter::Unlabeled);
    }

    #[test]
    fn scores_use_the_ui_names() {
        let s = ScoreOut { n: 3, accuracy: 0.5, macro_f1: 0.25 };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["macroF1"], 0.25);
    }
}
