//! Rounds, per-round predictions and scores, query batches and checkpoints: written in one transaction
//! when a round ends (done, failed or cancelled), read back by the CLI and the app.
//!
//! A round row is only ever written finished, so a crash mid-round leaves no row at all. A `running` row
//! (which only an older or foreign writer could leave) is turned into `failed` / `interrupted` by
//! [`Pool::fail_interrupted_rounds`], which the round loop calls before every round.

use super::{now_ms, ClassId, PatchId, Pool};
use crate::error::{CoreError, Result, SqlContext};
use crate::round::types::{NewQuery, RoundRow};
use crate::round::{CheckpointRecord, QueryItem, RoundRecord, RoundStatus, StoredPrediction};
use rusqlite::{params, OptionalExtension, Row};

const ROUND_COLUMNS: &str =
    "id, status, strategy, budget, seed, device, config_json, labeled_json, timings_json, \
     metrics_json, note, error, started_at, finished_at";

const PREDICTION_COLUMNS: &str =
    "patch_id, prob_a, prob_b, pred_a, pred_b, pred, disagreement, confidence, embedding";

/// f32 values as little-endian bytes.
fn f32_blob(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian bytes back to f32 values; `what` names the column in the error.
fn blob_f32(bytes: &[u8], what: &str) -> rusqlite::Result<Vec<f32>> {
    if bytes.len() % 4 != 0 {
        return Err(rusqlite::Error::InvalidColumnType(0, what.to_string(), rusqlite::types::Type::Blob));
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// A JSON column, or an SQLite conversion error naming it.
fn json_column<T: serde::de::DeserializeOwned>(
    text: Option<String>,
    name: &str,
) -> rusqlite::Result<Option<T>> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("{name}: {e}").into(),
            )
        })
    })
    .transpose()
}

fn row_to_round(r: &Row<'_>) -> rusqlite::Result<RoundRecord> {
    Ok(RoundRecord {
        id: r.get(0)?,
        status: RoundStatus::parse(&r.get::<_, String>(1)?),
        strategy: r.get(2)?,
        budget: r.get(3)?,
        seed: r.get(4)?,
        device: r.get(5)?,
        config: json_column(r.get(6)?, "config_json")?,
        labeled: json_column(r.get(7)?, "labeled_json")?.unwrap_or_default(),
        timings: json_column(r.get(8)?, "timings_json")?.unwrap_or_default(),
        metrics: json_column(r.get(9)?, "metrics_json")?.unwrap_or_default(),
        note: r.get(10)?,
        error: r.get(11)?,
        started_at: r.get(12)?,
        finished_at: r.get(13)?,
    })
}

/// A prediction row starting at column `at`.
fn row_to_prediction(r: &Row<'_>, at: usize) -> rusqlite::Result<StoredPrediction> {
    let embedding: Option<Vec<u8>> = r.get(at + 8)?;
    Ok(StoredPrediction {
        patch_id: r.get(at)?,
        prob_a: blob_f32(&r.get::<_, Vec<u8>>(at + 1)?, "prob_a")?,
        prob_b: blob_f32(&r.get::<_, Vec<u8>>(at + 2)?, "prob_b")?,
        pred_a: r.get(at + 3)?,
        pred_b: r.get(at + 4)?,
        pred: r.get(at + 5)?,
        disagreement: r.get(at + 6)?,
        confidence: r.get(at + 7)?,
        embedding: embedding.map(|b| blob_f32(&b, "embedding")).transpose()?,
    })
}

fn to_json<T: serde::Serialize>(value: &T, what: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| CoreError::Invalid { field: what, reason: e.to_string() })
}

impl Pool {
    /// Turn every `running` round (left by a crash of an older writer) into `failed` with the error
    /// `interrupted`; returns how many there were. Nothing else is touched.
    pub fn fail_interrupted_rounds(&self) -> Result<usize> {
        self.conn()
            .execute(
                "UPDATE rounds SET status = 'failed', error = 'interrupted', finished_at = ?1 WHERE status = 'running'",
                [now_ms()],
            )
            .ctx("marking interrupted rounds")
    }

    /// The number the next round will get (one more than the highest so far, from 1).
    pub fn next_round_id(&self) -> Result<i64> {
        self.conn()
            .query_row("SELECT coalesce(max(id), 0) + 1 FROM rounds", [], |r| r.get(0))
            .ctx("numbering the next round")
    }

    /// Write a finished round with everything it produced, in one transaction (all or nothing).
    pub(crate) fn write_round(
        &mut self,
        row: &RoundRow,
        predictions: &[StoredPrediction],
        queries: &[NewQuery],
        checkpoints: &[CheckpointRecord],
    ) -> Result<()> {
        let labeled = to_json(&row.labeled, "labeled set")?;
        let timings = to_json(&row.timings, "timings")?;
        let metrics = to_json(&row.metrics, "metrics")?;
        let class_ids = to_json(&row.class_ids, "class ids")?;
        let tx = self.write_tx().ctx("starting to store a round")?;
        tx.execute(
            &format!("INSERT INTO rounds ({ROUND_COLUMNS}, class_ids_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
            params![
                row.id,
                row.status.as_str(),
                row.strategy,
                row.budget as i64,
                row.seed as i64,
                row.device,
                row.config_json,
                labeled,
                timings,
                metrics,
                row.note,
                row.error,
                row.started_at,
                now_ms(),
                class_ids
            ],
        )
        .ctx("storing a round")?;
        {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO predictions (round_id, {PREDICTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ))
                .ctx("storing predictions")?;
            for p in predictions {
                stmt.execute(params![
                    row.id,
                    p.patch_id,
                    f32_blob(&p.prob_a),
                    f32_blob(&p.prob_b),
                    p.pred_a,
                    p.pred_b,
                    p.pred,
                    p.disagreement,
                    p.confidence,
                    p.embedding.as_deref().map(f32_blob)
                ])
                .ctx("storing predictions")?;
            }
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO queries (round_id, patch_id, rank, reason, score) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .ctx("storing the query batch")?;
            for q in queries {
                stmt.execute(params![row.id, q.patch_id, q.rank as i64, q.reason, q.score])
                    .ctx("storing the query batch")?;
            }
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO checkpoints (round_id, network, path, sha256, card_json) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .ctx("storing checkpoints")?;
            for c in checkpoints {
                stmt.execute(params![row.id, c.network, c.path, c.sha256, c.card_json])
                    .ctx("storing checkpoints")?;
            }
        }
        tx.commit().ctx("committing a round")
    }

    /// Every round, oldest first.
    pub fn rounds(&self) -> Result<Vec<RoundRecord>> {
        let mut stmt = self
            .conn()
            .prepare_cached(&format!("SELECT {ROUND_COLUMNS} FROM rounds ORDER BY id"))
            .ctx("listing rounds")?;
        let rows = stmt.query_map([], row_to_round).ctx("listing rounds")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("listing rounds")
    }

    /// Round `id`.
    pub fn round(&self, id: i64) -> Result<RoundRecord> {
        self.conn()
            .prepare_cached(&format!("SELECT {ROUND_COLUMNS} FROM rounds WHERE id = ?1"))
            .ctx("reading a round")?
            .query_row([id], row_to_round)
            .optional()
            .ctx("reading a round")?
            .ok_or(CoreError::UnknownRound(id))
    }

    /// The class ids of round `round` in its prediction index order: index `i` of its `pred`, `pred_a`,
    /// `pred_b` and probability vectors is class `result[i]`. A round written before this was recorded
    /// (schema version 1) maps index `i` to the `i`-th class of the current position order.
    pub fn round_class_ids(&self, round: i64) -> Result<Vec<ClassId>> {
        let stored: Option<String> = self
            .conn()
            .prepare_cached("SELECT class_ids_json FROM rounds WHERE id = ?1")
            .ctx("reading a round's classes")?
            .query_row([round], |r| r.get(0))
            .optional()
            .ctx("reading a round's classes")?
            .ok_or(CoreError::UnknownRound(round))?;
        match stored {
            Some(text) => serde_json::from_str(&text).map_err(|e| CoreError::Invalid {
                field: "class_ids_json",
                reason: format!("round {round}: {e}"),
            }),
            None => Ok(self.classes()?.into_iter().map(|c| c.id).collect()),
        }
    }

    /// The latest round with status `done`, if any: its query batch is the current one.
    pub fn latest_done_round(&self) -> Result<Option<i64>> {
        self.conn()
            .query_row("SELECT max(id) FROM rounds WHERE status = 'done'", [], |r| r.get(0))
            .ctx("finding the latest round")
    }

    /// Every stored prediction of round `id`, in patch order (empty for a round that trained nothing).
    pub fn round_predictions(&self, id: i64) -> Result<Vec<StoredPrediction>> {
        self.round(id)?;
        let mut stmt = self
            .conn()
            .prepare_cached(&format!(
                "SELECT {PREDICTION_COLUMNS} FROM predictions WHERE round_id = ?1 ORDER BY patch_id"
            ))
            .ctx("reading predictions")?;
        let rows = stmt.query_map([id], |r| row_to_prediction(r, 0)).ctx("reading predictions")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("reading predictions")
    }

    /// The prediction of one patch in round `id`, if stored.
    pub fn round_prediction(&self, id: i64, patch_id: PatchId) -> Result<Option<StoredPrediction>> {
        self.conn()
            .prepare_cached(&format!(
                "SELECT {PREDICTION_COLUMNS} FROM predictions WHERE round_id = ?1 AND patch_id = ?2"
            ))
            .ctx("reading a prediction")?
            .query_row([id, patch_id], |r| row_to_prediction(r, 0))
            .optional()
            .ctx("reading a prediction")
    }

    /// The query batch of round `id` in rank order, each with its prediction and current label.
    pub fn round_queries(&self, id: i64) -> Result<Vec<QueryItem>> {
        self.round(id)?;
        let columns = PREDICTION_COLUMNS.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ");
        let mut stmt = self
            .conn()
            .prepare_cached(&format!(
                "SELECT q.patch_id, q.rank, q.reason, q.score, l.class_id, {columns}
                 FROM queries q
                 LEFT JOIN predictions p ON p.round_id = q.round_id AND p.patch_id = q.patch_id
                 LEFT JOIN labels l ON l.patch_id = q.patch_id
                 WHERE q.round_id = ?1 ORDER BY q.rank"
            ))
            .ctx("reading the query batch")?;
        let rows = stmt
            .query_map([id], |r| {
                let has_prediction = r.get::<_, Option<i64>>(5)?.is_some();
                Ok(QueryItem {
                    patch_id: r.get(0)?,
                    rank: r.get(1)?,
                    reason: r.get(2)?,
                    score: r.get(3)?,
                    label: r.get(4)?,
                    prediction: if has_prediction { Some(row_to_prediction(r, 5)?) } else { None },
                })
            })
            .ctx("reading the query batch")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("reading the query batch")
    }

    /// The checkpoint files of round `id`.
    pub fn round_checkpoints(&self, id: i64) -> Result<Vec<CheckpointRecord>> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT round_id, network, path, sha256, card_json FROM checkpoints WHERE round_id = ?1 ORDER BY network",
            )
            .ctx("reading checkpoints")?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(CheckpointRecord {
                    round_id: r.get(0)?,
                    network: r.get(1)?,
                    path: r.get(2)?,
                    sha256: r.get(3)?,
                    card_json: r.get(4)?,
                })
            })
            .ctx("reading checkpoints")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("reading checkpoints")
    }

    /// How many prediction, query and checkpoint rows round `id` has (all 0 for a failed round).
    pub fn round_row_counts(&self, id: i64) -> Result<(u64, u64, u64)> {
        self.conn()
            .query_row(
                "SELECT (SELECT count(*) FROM predictions WHERE round_id = ?1),
                        (SELECT count(*) FROM queries WHERE round_id = ?1),
                        (SELECT count(*) FROM checkpoints WHERE round_id = ?1)",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .ctx("counting a round's rows")
    }
}
