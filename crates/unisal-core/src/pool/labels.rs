//! Labels: the current label of each patch plus an append-only history. Set, clear and undo each write
//! one history event and update the current label in one transaction, committed before returning.
//! Oracle labels (simulation ground truth) live apart and are never part of the training set.

use super::{now_ms, ClassId, CurrentLabel, LabelChange, LabelEvent, LabelSource, PatchId, Pool};
use crate::error::{CoreError, Result, SqlContext};
use rusqlite::{params, OptionalExtension, Transaction};

/// The id of the most recent event that can still be undone (source `human`, not an undo, not undone),
/// for one patch or for the whole pool.
const UNDOABLE: &str = "SELECT id, patch_id, previous_class FROM label_events e
     WHERE e.source = 'human' AND e.undoes IS NULL
       AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id)";

fn current(tx: &Transaction<'_>, patch_id: PatchId) -> Result<Option<ClassId>> {
    tx.query_row("SELECT class_id FROM labels WHERE patch_id = ?1", [patch_id], |r| r.get(0))
        .optional()
        .ctx("reading a label")
}

/// Record `after` as the label of `patch_id` inside `tx`: a history event plus the current-label row.
fn write_label(
    tx: &Transaction<'_>,
    patch_id: PatchId,
    after: Option<ClassId>,
    source: LabelSource,
    round: Option<i64>,
    undoes: Option<i64>,
) -> Result<LabelChange> {
    let exists: bool = tx
        .query_row("SELECT EXISTS (SELECT 1 FROM patches WHERE id = ?1)", [patch_id], |r| r.get(0))
        .ctx("checking a patch")?;
    if !exists {
        return Err(CoreError::UnknownPatch(patch_id));
    }
    if let Some(c) = after {
        let known: bool = tx
            .query_row("SELECT EXISTS (SELECT 1 FROM classes WHERE id = ?1)", [c], |r| r.get(0))
            .ctx("checking a class")?;
        if !known {
            return Err(CoreError::UnknownClassId(c));
        }
    }
    let before = current(tx, patch_id)?;
    let now = now_ms();
    tx.execute(
        "INSERT INTO label_events (patch_id, class_id, previous_class, source, round, undoes, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![patch_id, after, before, source.as_str(), round, undoes, now],
    )
    .ctx("recording a label event")?;
    let event_id = tx.last_insert_rowid();
    match after {
        Some(c) => tx
            .execute(
                "INSERT INTO labels (patch_id, class_id, source, round, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (patch_id) DO UPDATE SET class_id = ?2, source = ?3, round = ?4, updated_at = ?5",
                params![patch_id, c, source.as_str(), round, now],
            )
            .ctx("storing a label")?,
        None => tx.execute("DELETE FROM labels WHERE patch_id = ?1", [patch_id]).ctx("clearing a label")?,
    };
    Ok(LabelChange { patch_id, before, after, event_id })
}

impl Pool {
    /// Label `patch_id` with `class_id` as the pathologist; committed before returning.
    pub fn set_label(&mut self, patch_id: PatchId, class_id: ClassId) -> Result<LabelChange> {
        self.set_label_from(patch_id, Some(class_id), LabelSource::Human, None)
    }

    /// Remove the label of `patch_id` (a new history event); committed before returning.
    pub fn clear_label(&mut self, patch_id: PatchId) -> Result<LabelChange> {
        self.set_label_from(patch_id, None, LabelSource::Human, None)
    }

    /// Set (`Some`) or clear (`None`) a label with an explicit source and round (the simulation's oracle
    /// answering a query uses [`LabelSource::Oracle`]).
    pub fn set_label_from(
        &mut self,
        patch_id: PatchId,
        class_id: Option<ClassId>,
        source: LabelSource,
        round: Option<i64>,
    ) -> Result<LabelChange> {
        let tx = self.write_tx().ctx("starting a label change")?;
        let change = write_label(&tx, patch_id, class_id, source, round, None)?;
        tx.commit().ctx("committing a label")?;
        Ok(change)
    }

    /// Set many labels in one transaction (all or none), e.g. an oracle answering a whole query batch.
    pub fn set_labels_from(
        &mut self,
        labels: &[(PatchId, ClassId)],
        source: LabelSource,
        round: Option<i64>,
    ) -> Result<Vec<LabelChange>> {
        let tx = self.write_tx().ctx("starting label changes")?;
        let changes = labels
            .iter()
            .map(|&(p, c)| write_label(&tx, p, Some(c), source, round, None))
            .collect::<Result<Vec<_>>>()?;
        tx.commit().ctx("committing labels")?;
        Ok(changes)
    }

    fn undo_where(&mut self, patch: Option<PatchId>) -> Result<LabelChange> {
        let tx = self.write_tx().ctx("starting an undo")?;
        let target: Option<(i64, PatchId, Option<ClassId>)> = match patch {
            Some(p) => tx.query_row(
                &format!("{UNDOABLE} AND e.patch_id = ?1 ORDER BY e.id DESC LIMIT 1"),
                [p],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            ),
            None => tx.query_row(&format!("{UNDOABLE} ORDER BY e.id DESC LIMIT 1"), [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            }),
        }
        .optional()
        .ctx("finding the label change to undo")?;
        let Some((event, patch_id, previous)) = target else {
            return Err(CoreError::NothingToUndo(match patch {
                Some(p) => format!(" for patch {p}"),
                None => String::new(),
            }));
        };
        let change = write_label(&tx, patch_id, previous, LabelSource::Human, None, Some(event))?;
        tx.commit().ctx("committing an undo")?;
        Ok(change)
    }

    /// Undo the latest not-yet-undone human label change of `patch_id`, restoring the label it replaced
    /// (written as a new history event).
    pub fn undo_label(&mut self, patch_id: PatchId) -> Result<LabelChange> {
        self.undo_where(Some(patch_id))
    }

    /// Undo the latest not-yet-undone human label change in the whole pool (the UI's Z key).
    pub fn undo_last(&mut self) -> Result<LabelChange> {
        self.undo_where(None)
    }

    /// The current label of `patch_id`.
    pub fn label(&self, patch_id: PatchId) -> Result<Option<ClassId>> {
        self.patch(patch_id).map(|p| p.label)
    }

    /// The full label history of `patch_id`, oldest first.
    pub fn label_history(&self, patch_id: PatchId) -> Result<Vec<LabelEvent>> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT id, patch_id, class_id, previous_class, source, round, undoes, created_at
                 FROM label_events WHERE patch_id = ?1 ORDER BY id",
            )
            .ctx("reading label history")?;
        let rows = stmt
            .query_map([patch_id], |r| {
                Ok(LabelEvent {
                    id: r.get(0)?,
                    patch_id: r.get(1)?,
                    class_id: r.get(2)?,
                    previous: r.get(3)?,
                    source: LabelSource::parse(&r.get::<_, String>(4)?),
                    round: r.get(5)?,
                    undoes: r.get(6)?,
                    created_at: r.get(7)?,
                })
            })
            .ctx("reading label history")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("reading label history")
    }

    /// Every labeled patch with its class, in patch order: the training set. Oracle labels are not in it.
    pub fn labeled_set(&self) -> Result<Vec<(PatchId, ClassId)>> {
        self.pairs("SELECT patch_id, class_id FROM labels ORDER BY patch_id", "reading the labeled set")
    }

    /// Every current label with its patch's path and group and the label's source, in patch order.
    pub fn current_labels(&self) -> Result<Vec<CurrentLabel>> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT l.patch_id, p.source_path, p.grp, l.class_id, l.source, l.round, l.updated_at
                 FROM labels l JOIN patches p ON p.id = l.patch_id ORDER BY l.patch_id",
            )
            .ctx("reading the current labels")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(CurrentLabel {
                    patch_id: r.get(0)?,
                    source_path: r.get(1)?,
                    group: r.get(2)?,
                    class_id: r.get(3)?,
                    source: LabelSource::parse(&r.get::<_, String>(4)?),
                    round: r.get(5)?,
                    updated_at: r.get(6)?,
                })
            })
            .ctx("reading the current labels")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("reading the current labels")
    }

    /// Every patch without a current label, in order.
    pub fn unlabeled_ids(&self) -> Result<Vec<PatchId>> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT p.id FROM patches p WHERE NOT EXISTS (SELECT 1 FROM labels l WHERE l.patch_id = p.id) ORDER BY p.id",
            )
            .ctx("listing unlabeled patches")?;
        let rows = stmt.query_map([], |r| r.get(0)).ctx("listing unlabeled patches")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("listing unlabeled patches")
    }

    /// The hidden oracle labels (simulation only), in patch order.
    pub fn oracle_labels(&self) -> Result<Vec<(PatchId, ClassId)>> {
        self.pairs("SELECT patch_id, class_id FROM oracle_labels ORDER BY patch_id", "reading oracle labels")
    }

    fn pairs(&self, sql: &str, what: &str) -> Result<Vec<(i64, i64)>> {
        let mut stmt = self.conn().prepare_cached(sql).ctx(what)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).ctx(what)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx(what)
    }
}
