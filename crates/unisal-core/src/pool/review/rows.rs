//! Reading one [`ReviewRow`]: the patch, its current label and unsure flag, and one round's prediction with
//! its class indexes mapped to class ids.

use super::{ReviewRow, RowPrediction};
use crate::error::{CoreError, Result, SqlContext};
use crate::pool::{ClassId, PatchId, Pool};
use rusqlite::OptionalExtension;

/// The round id bound when no round has predictions: rounds are numbered from 1, so nothing matches.
pub(super) const NO_ROUND: i64 = 0;

const ROW_SQL: &str = "SELECT p.id, p.width, p.height, p.source_path, p.grp, l.class_id,
        EXISTS (SELECT 1 FROM flags f WHERE f.patch_id = p.id AND f.unsure = 1),
        pr.prob_a, pr.prob_b, pr.pred_a, pr.pred_b, pr.pred, pr.confidence, pr.disagreement
    FROM patches p
    LEFT JOIN labels l ON l.patch_id = p.id
    LEFT JOIN predictions pr ON pr.round_id = ?1 AND pr.patch_id = p.id
    WHERE p.id = ?2";

/// A prediction as stored, before its class indexes are mapped.
struct RawPrediction {
    prob_a: Vec<u8>,
    prob_b: Vec<u8>,
    pred_a: i64,
    pred_b: i64,
    pred: i64,
    confidence: f64,
    disagreement: f64,
}

/// Loads rows with one round's predictions.
pub(super) struct RowLoader<'a> {
    pool: &'a Pool,
    round: Option<i64>,
    class_ids: Vec<ClassId>,
}

impl<'a> RowLoader<'a> {
    /// A loader for `round`'s predictions (`None`: rows without predictions).
    pub(super) fn new(pool: &'a Pool, round: Option<i64>) -> Result<Self> {
        let class_ids = match round {
            Some(r) => pool.round_class_ids(r)?,
            None => Vec::new(),
        };
        Ok(RowLoader { pool, round, class_ids })
    }

    /// The prediction index of class `class` in the round, if the round knows it.
    pub(super) fn index_of(&self, class: ClassId) -> Option<i64> {
        self.class_ids.iter().position(|&c| c == class).map(|i| i as i64)
    }

    fn class_at(&self, index: i64) -> Result<ClassId> {
        usize::try_from(index).ok().and_then(|i| self.class_ids.get(i).copied()).ok_or_else(|| {
            CoreError::Invalid {
                field: "predictions",
                reason: format!(
                    "round {} predicts class index {index} but has {} classes",
                    self.round.unwrap_or(NO_ROUND),
                    self.class_ids.len()
                ),
            }
        })
    }

    /// The row of patch `id`; [`CoreError::UnknownPatch`] when there is none.
    pub(super) fn load(&self, id: PatchId) -> Result<ReviewRow> {
        let found = self
            .pool
            .conn()
            .prepare_cached(ROW_SQL)
            .ctx("reading a review row")?
            .query_row([self.round.unwrap_or(NO_ROUND), id], |r| {
                let raw = match r.get::<_, Option<Vec<u8>>>(7)? {
                    Some(prob_a) => Some(RawPrediction {
                        prob_a,
                        prob_b: r.get(8)?,
                        pred_a: r.get(9)?,
                        pred_b: r.get(10)?,
                        pred: r.get(11)?,
                        confidence: r.get(12)?,
                        disagreement: r.get(13)?,
                    }),
                    None => None,
                };
                let row = ReviewRow {
                    id: r.get(0)?,
                    width: r.get(1)?,
                    height: r.get(2)?,
                    source_path: r.get(3)?,
                    group: r.get(4)?,
                    label: r.get(5)?,
                    unsure: r.get(6)?,
                    prediction: None,
                };
                Ok((row, raw))
            })
            .optional()
            .ctx("reading a review row")?;
        let (mut row, raw) = found.ok_or(CoreError::UnknownPatch(id))?;
        if let Some(raw) = raw {
            row.prediction = Some(RowPrediction {
                a: self.class_at(raw.pred_a)?,
                conf_a: probability(&raw.prob_a, raw.pred_a, id, "prob_a")?,
                b: self.class_at(raw.pred_b)?,
                conf_b: probability(&raw.prob_b, raw.pred_b, id, "prob_b")?,
                ensemble: self.class_at(raw.pred)?,
                confidence: raw.confidence,
                disagreement: raw.disagreement,
            });
        }
        Ok(row)
    }
}

/// Entry `index` of a little-endian f32 blob.
fn probability(blob: &[u8], index: i64, patch: PatchId, field: &'static str) -> Result<f64> {
    let at = usize::try_from(index).ok().map(|i| i * 4);
    match at.and_then(|at| blob.get(at..at + 4)) {
        Some(b) => Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        None => Err(CoreError::Invalid {
            field,
            reason: format!("patch {patch}: no probability for class index {index} ({} bytes)", blob.len()),
        }),
    }
}
