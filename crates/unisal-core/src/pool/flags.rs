//! Unsure / second-look flags on patches (the grid's U key): a row in `flags` exists while a patch is
//! flagged. Each change is committed before returning; flags never touch labels.

use super::{now_ms, PatchId, Pool};
use crate::error::{CoreError, Result, SqlContext};
use rusqlite::OptionalExtension;

impl Pool {
    /// Flag (`true`) or unflag (`false`) `patch` as unsure; returns the new state. Setting the state it
    /// already has changes nothing. An unknown patch id is [`CoreError::UnknownPatch`].
    pub fn set_unsure(&mut self, patch: PatchId, unsure: bool) -> Result<bool> {
        let tx = self.write_tx().ctx("starting an unsure flag change")?;
        let exists: bool = tx
            .query_row("SELECT EXISTS (SELECT 1 FROM patches WHERE id = ?1)", [patch], |r| r.get(0))
            .ctx("checking a patch")?;
        if !exists {
            return Err(CoreError::UnknownPatch(patch));
        }
        if unsure {
            tx.execute(
                "INSERT INTO flags (patch_id, unsure, created_at) VALUES (?1, 1, ?2)
                 ON CONFLICT (patch_id) DO UPDATE SET unsure = 1",
                rusqlite::params![patch, now_ms()],
            )
            .ctx("flagging a patch as unsure")?;
        } else {
            tx.execute("DELETE FROM flags WHERE patch_id = ?1", [patch]).ctx("clearing an unsure flag")?;
        }
        tx.commit().ctx("committing an unsure flag")?;
        Ok(unsure)
    }

    /// Whether `patch` is flagged as unsure. An unknown patch id is [`CoreError::UnknownPatch`].
    pub fn is_unsure(&self, patch: PatchId) -> Result<bool> {
        let state: Option<bool> = self
            .conn()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM flags f WHERE f.patch_id = p.id AND f.unsure = 1)
                 FROM patches p WHERE p.id = ?1",
            )
            .ctx("reading an unsure flag")?
            .query_row([patch], |r| r.get(0))
            .optional()
            .ctx("reading an unsure flag")?;
        state.ok_or(CoreError::UnknownPatch(patch))
    }

    /// Every patch flagged as unsure, in id order.
    pub fn unsure_ids(&self) -> Result<Vec<PatchId>> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT patch_id FROM flags WHERE unsure = 1 ORDER BY patch_id")
            .ctx("listing unsure patches")?;
        let rows = stmt.query_map([], |r| r.get(0)).ctx("listing unsure patches")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("listing unsure patches")
    }
}
