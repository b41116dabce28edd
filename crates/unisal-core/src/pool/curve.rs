//! The learning curve: one point per finished round that predicted the pool, with the size of the labeled
//! set it trained on and its ensemble's scores on labels it did not train on.
//!
//! Two kinds of truth are scored, each only on patches outside the round's labeled set (so a point never
//! scores a network on its own training data):
//! - held-out: the patch's current label, when a person gave it (source `human` or `imported`). Labels given
//!   after the round (the pathologist labelling its query batch) count, which is what makes the curve grow
//!   during real use; oracle answers of a simulation do not count here.
//! - oracle: the hidden ground truth of a simulation (`oracle_labels`), never used for training.
//!
//! Scores are accuracy and macro-F1 (see [`Score::from_pairs`]). Each round costs one existence check and
//! one SQL statement that reads only the predicted class index of labeled patches (by primary key); the
//! scoring itself runs in Rust, so 100,000 patches take milliseconds per round.

use super::{ClassId, PatchId, Pool};
use crate::error::{CoreError, Result, SqlContext};
use crate::round::RoundStatus;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// Accuracy and macro-F1 of a round's ensemble predictions on a set of `n` labeled patches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Patches scored (at least 1).
    pub n: u64,
    /// Fraction predicted correctly, in [0, 1].
    pub accuracy: f64,
    /// Macro-averaged F1, in [0, 1] (see [`Score::from_pairs`]).
    pub macro_f1: f64,
}

/// One point of the learning curve: a finished round that predicted the pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The round number.
    pub round: i64,
    /// The round's query strategy.
    pub strategy: Option<String>,
    /// Size of the labeled set the round trained on.
    pub labeled: u64,
    /// Scores on the current human or imported labels of patches outside the round's labeled set;
    /// `None` when there are none.
    pub heldout: Option<Score>,
    /// Scores on the hidden oracle labels (simulation) of patches outside the labeled set; `None` when
    /// there are none.
    pub oracle: Option<Score>,
    /// Wall-clock seconds spent training both networks; `None` when the round recorded no training time.
    pub train_seconds: Option<f64>,
}

impl Score {
    /// Scores `(truth, predicted)` class pairs; `None` for no pairs.
    ///
    /// Macro-F1 is the unweighted mean of the per-class F1 = 2·TP / (2·TP + FP + FN), taken over the
    /// classes that occur in the truth or in the predictions of these pairs (classes absent from both
    /// would be 0/0 and are left out). A class that is only predicted, never true, has F1 0; so does a
    /// true class never predicted.
    pub fn from_pairs(pairs: &[(ClassId, ClassId)]) -> Option<Score> {
        if pairs.is_empty() {
            return None;
        }
        // Per class: (true positives, false positives, false negatives).
        let mut counts: BTreeMap<ClassId, (u64, u64, u64)> = BTreeMap::new();
        let mut correct = 0u64;
        for &(truth, pred) in pairs {
            if truth == pred {
                correct += 1;
                counts.entry(truth).or_default().0 += 1;
            } else {
                counts.entry(pred).or_default().1 += 1;
                counts.entry(truth).or_default().2 += 1;
            }
        }
        let f1_sum: f64 =
            counts.values().map(|&(tp, fp, fn_)| (2 * tp) as f64 / (2 * tp + fp + fn_) as f64).sum();
        let n = pairs.len() as u64;
        Some(Score { n, accuracy: correct as f64 / n as f64, macro_f1: f1_sum / counts.len() as f64 })
    }
}

/// One scored row: the patch, its truth and the round's predicted class index.
struct Scored {
    oracle: bool,
    patch: PatchId,
    truth: ClassId,
    pred: i64,
}

impl Pool {
    /// The learning curve, oldest round first: one [`CurvePoint`] per `done` round with stored predictions
    /// (the initial random draw and failed or cancelled rounds have none and are skipped).
    pub fn learning_curve(&self) -> Result<Vec<CurvePoint>> {
        let mut points = Vec::new();
        for round in self.rounds()? {
            if round.status != RoundStatus::Done || !self.has_predictions(round.id)? {
                continue;
            }
            let class_ids = self.round_class_ids(round.id)?;
            let trained_on: HashSet<PatchId> = round.labeled.iter().map(|&(p, _)| p).collect();
            let mut heldout = Vec::new();
            let mut oracle = Vec::new();
            for row in self.scored_rows(round.id)? {
                if trained_on.contains(&row.patch) {
                    continue;
                }
                let pred =
                    usize::try_from(row.pred).ok().and_then(|i| class_ids.get(i)).copied().ok_or_else(
                        || CoreError::Invalid {
                            field: "predictions",
                            reason: format!(
                                "round {} predicts class index {} for patch {}, but it has {} classes",
                                round.id,
                                row.pred,
                                row.patch,
                                class_ids.len()
                            ),
                        },
                    )?;
                if row.oracle { &mut oracle } else { &mut heldout }.push((row.truth, pred));
            }
            let train_s = round.timings.train_s;
            points.push(CurvePoint {
                round: round.id,
                strategy: round.strategy,
                labeled: round.labeled.len() as u64,
                heldout: Score::from_pairs(&heldout),
                oracle: Score::from_pairs(&oracle),
                train_seconds: (train_s > 0.0).then_some(train_s),
            });
        }
        Ok(points)
    }

    /// Whether round `round` stored any prediction (a primary-key seek).
    fn has_predictions(&self, round: i64) -> Result<bool> {
        self.conn()
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM predictions WHERE round_id = ?1)")
            .ctx("checking a round's predictions")?
            .query_row([round], |r| r.get(0))
            .ctx("checking a round's predictions")
    }

    /// The human/imported labels and the oracle labels of patches predicted in `round`, each with the
    /// round's ensemble class index: one statement, both halves driven by primary-key lookups.
    fn scored_rows(&self, round: i64) -> Result<Vec<Scored>> {
        let what = "reading labels and predictions for the learning curve";
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT 0, l.patch_id, l.class_id, p.pred FROM labels l
                   JOIN predictions p ON p.round_id = ?1 AND p.patch_id = l.patch_id
                  WHERE l.source IN ('human', 'imported')
                 UNION ALL
                 SELECT 1, o.patch_id, o.class_id, p.pred FROM oracle_labels o
                   JOIN predictions p ON p.round_id = ?1 AND p.patch_id = o.patch_id",
            )
            .ctx(what)?;
        let rows = stmt
            .query_map([round], |r| {
                Ok(Scored {
                    oracle: r.get::<_, i64>(0)? == 1,
                    patch: r.get(1)?,
                    truth: r.get(2)?,
                    pred: r.get(3)?,
                })
            })
            .ctx(what)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx(what)
    }
}

#[cfg(test)]
mod tests {
    use super::Score;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn no_pairs_no_score() {
        assert_eq!(Score::from_pairs(&[]), None);
    }

    #[test]
    fn all_correct_scores_one() {
        let s = Score::from_pairs(&[(1, 1), (2, 2), (2, 2)]).unwrap();
        assert_eq!(s, Score { n: 3, accuracy: 1.0, macro_f1: 1.0 });
    }

    #[test]
    fn hand_computed_three_classes() {
        // truth→pred: 1→1, 1→1, 1→2, 2→2, 3→1.
        // class 1: TP 2, FP 1 (3→1), FN 1 (1→2): F1 = 4/6
        // class 2: TP 1, FP 1 (1→2), FN 0: F1 = 2/3
        // class 3: TP 0, FN 1: F1 = 0
        let s = Score::from_pairs(&[(1, 1), (1, 1), (1, 2), (2, 2), (3, 1)]).unwrap();
        assert_eq!(s.n, 5);
        assert!(close(s.accuracy, 3.0 / 5.0), "{s:?}");
        assert!(close(s.macro_f1, (4.0 / 6.0 + 2.0 / 3.0 + 0.0) / 3.0), "{s:?}");
    }

    #[test]
    fn a_class_only_predicted_counts_with_f1_zero() {
        // truth is always 1; predicted 1 once and 7 once. class 1: TP 1, FN 1 → 2/3; class 7: FP 1 → 0.
        let s = Score::from_pairs(&[(1, 1), (1, 7)]).unwrap();
        assert!(close(s.accuracy, 0.5));
        assert!(close(s.macro_f1, (2.0 / 3.0) / 2.0), "{s:?}");
    }
}
