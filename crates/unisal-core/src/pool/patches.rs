//! Patches: batched insert (one transaction a batch), listing, thumbnails, image bytes, status counts.

use super::{
    now_ms, EncodedImage, ImportLabel, InsertOutcome, LabelFilter, NewPatch, PatchFilter, PatchId,
    PatchSummary, Pool, PoolStatus,
};
use crate::error::{CoreError, Result, SqlContext};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension};
use std::collections::HashSet;

fn check_patch(p: &NewPatch) -> Result<()> {
    if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CoreError::Invalid {
            field: "sha256",
            reason: format!("{:?} is not 64 hex digits", p.sha256),
        });
    }
    if p.width == 0 || p.height == 0 {
        return Err(CoreError::Invalid {
            field: "size",
            reason: format!("{}x{} for {}", p.width, p.height, p.source_path),
        });
    }
    if p.image.is_empty() || p.thumbnail.is_empty() {
        return Err(CoreError::Invalid {
            field: "image",
            reason: format!("no image bytes for {}", p.source_path),
        });
    }
    for (field, f) in [("format", &p.format), ("thumbnail format", &p.thumbnail_format)] {
        if f != "png" && f != "jpeg" {
            return Err(CoreError::Invalid { field, reason: format!("{f:?} is not png or jpeg") });
        }
    }
    Ok(())
}

/// SQL condition and parameters of a filter (patch table alias `p`, labels alias `l`).
fn filter_sql(filter: &PatchFilter) -> (String, Vec<Value>) {
    let mut conds = Vec::new();
    let mut values = Vec::new();
    match filter.label {
        LabelFilter::Any => {}
        LabelFilter::Labeled => conds.push("l.class_id IS NOT NULL".to_string()),
        LabelFilter::Unlabeled => conds.push("l.class_id IS NULL".to_string()),
        LabelFilter::Class(c) => {
            conds.push(format!("l.class_id = ?{}", values.len() + 1));
            values.push(Value::Integer(c));
        }
    }
    if let Some(g) = &filter.group {
        conds.push(format!("p.grp = ?{}", values.len() + 1));
        values.push(Value::Text(g.clone()));
    }
    let sql = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    (sql, values)
}

impl Pool {
    /// Insert a batch of patches in one transaction: each is stored with its image, thumbnail and label,
    /// or recognised as a duplicate (same SHA-256, in the pool or earlier in the batch) and left alone.
    /// Either the whole batch lands or none of it.
    pub fn insert_patches(&mut self, batch: &[NewPatch]) -> Result<Vec<InsertOutcome>> {
        for p in batch {
            check_patch(p)?;
        }
        let now = now_ms();
        let tx = self.write_tx().ctx("starting an import batch")?;
        let mut out = Vec::with_capacity(batch.len());
        {
            let mut find =
                tx.prepare_cached("SELECT id FROM patches WHERE sha256 = ?1").ctx("checking duplicates")?;
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO patches (sha256, width, height, source_path, grp, format, source_format, note, imported_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .ctx("inserting a patch")?;
            let mut img = tx
                .prepare_cached("INSERT INTO images (patch_id, data) VALUES (?1, ?2)")
                .ctx("storing an image")?;
            let mut thumb = tx
                .prepare_cached("INSERT INTO thumbnails (patch_id, format, data) VALUES (?1, ?2, ?3)")
                .ctx("storing a thumbnail")?;
            let mut label = tx
                .prepare_cached("INSERT INTO labels (patch_id, class_id, source, round, updated_at) VALUES (?1, ?2, 'imported', NULL, ?3)")
                .ctx("storing a label")?;
            let mut event = tx
                .prepare_cached(
                    "INSERT INTO label_events (patch_id, class_id, previous_class, source, round, undoes, created_at)
                     VALUES (?1, ?2, NULL, 'imported', NULL, NULL, ?3)",
                )
                .ctx("storing a label event")?;
            let mut oracle = tx
                .prepare_cached("INSERT INTO oracle_labels (patch_id, class_id) VALUES (?1, ?2)")
                .ctx("storing an oracle label")?;
            for p in batch {
                let sha = p.sha256.to_ascii_lowercase();
                if let Some(id) =
                    find.query_row([&sha], |r| r.get::<_, i64>(0)).optional().ctx("checking duplicates")?
                {
                    out.push(InsertOutcome::Duplicate(id));
                    continue;
                }
                ins.execute(params![
                    sha,
                    p.width,
                    p.height,
                    p.source_path,
                    p.group,
                    p.format,
                    p.source_format,
                    p.note,
                    now
                ])
                .ctx("inserting a patch")?;
                let id = tx.last_insert_rowid();
                img.execute(params![id, p.image]).ctx("storing an image")?;
                thumb.execute(params![id, p.thumbnail_format, p.thumbnail]).ctx("storing a thumbnail")?;
                match p.label {
                    Some(ImportLabel::Real(c)) => {
                        label.execute(params![id, c, now]).ctx("storing a label")?;
                        event.execute(params![id, c, now]).ctx("storing a label event")?;
                    }
                    Some(ImportLabel::Oracle(c)) => {
                        oracle.execute(params![id, c]).ctx("storing an oracle label")?;
                    }
                    None => {}
                }
                out.push(InsertOutcome::Inserted(id));
            }
        }
        tx.commit().ctx("committing an import batch")?;
        Ok(out)
    }

    /// The content hashes (lowercase hex SHA-256) of every patch, for skipping duplicates before decoding.
    pub fn known_hashes(&self) -> Result<HashSet<String>> {
        let mut stmt = self.conn().prepare("SELECT sha256 FROM patches").ctx("reading hashes")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).ctx("reading hashes")?;
        rows.collect::<rusqlite::Result<HashSet<_>>>().ctx("reading hashes")
    }

    /// Up to `limit` patches matching `filter`, in id order, skipping the first `offset`.
    pub fn page_patches(&self, offset: u64, limit: u64, filter: &PatchFilter) -> Result<Vec<PatchSummary>> {
        let (cond, mut values) = filter_sql(filter);
        let sql = format!(
            // The inner query skips `offset` rows touching as little as it can (SQLite drops the unused
            // join without a label filter); only the page's rows are then joined for their details.
            "SELECT p.id, p.width, p.height, p.source_path, p.grp, l.class_id
             FROM (SELECT p.id AS pid FROM patches p LEFT JOIN labels l ON l.patch_id = p.id {cond}
                   ORDER BY p.id LIMIT ?{} OFFSET ?{}) page
             JOIN patches p ON p.id = page.pid LEFT JOIN labels l ON l.patch_id = p.id
             ORDER BY p.id",
            values.len() + 1,
            values.len() + 2
        );
        values.push(Value::Integer(limit.min(i64::MAX as u64) as i64));
        values.push(Value::Integer(offset.min(i64::MAX as u64) as i64));
        let mut stmt = self.conn().prepare_cached(&sql).ctx("listing patches")?;
        let rows = stmt
            .query_map(params_from_iter(values), |r| {
                Ok(PatchSummary {
                    id: r.get(0)?,
                    width: r.get(1)?,
                    height: r.get(2)?,
                    source_path: r.get(3)?,
                    group: r.get(4)?,
                    label: r.get(5)?,
                })
            })
            .ctx("listing patches")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("listing patches")
    }

    /// Number of patches matching `filter`.
    pub fn count_patches(&self, filter: &PatchFilter) -> Result<u64> {
        let (cond, values) = filter_sql(filter);
        let sql = format!("SELECT count(*) FROM patches p LEFT JOIN labels l ON l.patch_id = p.id {cond}");
        let n: i64 =
            self.conn().query_row(&sql, params_from_iter(values), |r| r.get(0)).ctx("counting patches")?;
        Ok(n as u64)
    }

    /// One patch's summary.
    pub fn patch(&self, id: PatchId) -> Result<PatchSummary> {
        self.conn()
            .query_row(
                "SELECT p.id, p.width, p.height, p.source_path, p.grp, l.class_id
                 FROM patches p LEFT JOIN labels l ON l.patch_id = p.id WHERE p.id = ?1",
                [id],
                |r| {
                    Ok(PatchSummary {
                        id: r.get(0)?,
                        width: r.get(1)?,
                        height: r.get(2)?,
                        source_path: r.get(3)?,
                        group: r.get(4)?,
                        label: r.get(5)?,
                    })
                },
            )
            .optional()
            .ctx("reading a patch")?
            .ok_or(CoreError::UnknownPatch(id))
    }

    /// Every patch id, in order.
    pub fn patch_ids(&self) -> Result<Vec<PatchId>> {
        let mut stmt =
            self.conn().prepare_cached("SELECT id FROM patches ORDER BY id").ctx("listing patch ids")?;
        let rows = stmt.query_map([], |r| r.get(0)).ctx("listing patch ids")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("listing patch ids")
    }

    /// The thumbnail of patch `id`.
    pub fn thumbnail(&self, id: PatchId) -> Result<EncodedImage> {
        self.conn()
            .prepare_cached("SELECT format, data FROM thumbnails WHERE patch_id = ?1")
            .ctx("reading a thumbnail")?
            .query_row([id], |r| Ok(EncodedImage { format: r.get(0)?, data: r.get(1)? }))
            .optional()
            .ctx("reading a thumbnail")?
            .ok_or(CoreError::UnknownPatch(id))
    }

    /// The stored full-resolution image of patch `id` (PNG or JPEG bytes).
    pub fn image(&self, id: PatchId) -> Result<EncodedImage> {
        self.conn()
            .prepare_cached(
                "SELECT p.format, i.data FROM patches p JOIN images i ON i.patch_id = p.id WHERE p.id = ?1",
            )
            .ctx("reading an image")?
            .query_row([id], |r| Ok(EncodedImage { format: r.get(0)?, data: r.get(1)? }))
            .optional()
            .ctx("reading an image")?
            .ok_or(CoreError::UnknownPatch(id))
    }

    /// The stored encoded bytes of patch `id` (what a learner decodes).
    pub fn image_bytes(&self, id: PatchId) -> Result<Vec<u8>> {
        Ok(self.image(id)?.data)
    }

    /// Counts per class, labeled, unlabeled, oracle-labeled and finished rounds.
    pub fn status(&self) -> Result<PoolStatus> {
        let conn = self.conn();
        let count = |sql: &str| -> Result<u64> {
            let n: i64 = conn.query_row(sql, [], |r| r.get(0)).ctx("counting for status")?;
            Ok(n as u64)
        };
        let patches = count("SELECT count(*) FROM patches")?;
        let labeled = count("SELECT count(*) FROM labels")?;
        let oracle_labeled = count("SELECT count(*) FROM oracle_labels")?;
        let rounds = count("SELECT count(*) FROM rounds WHERE status = 'done'")?;
        let mut per_class = std::collections::HashMap::new();
        {
            let mut stmt = conn
                .prepare_cached("SELECT class_id, count(*) FROM labels GROUP BY class_id")
                .ctx("counting labels")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .ctx("counting labels")?;
            for row in rows {
                let (c, n) = row.ctx("counting labels")?;
                per_class.insert(c, n as u64);
            }
        }
        let classes = self.classes()?.into_iter().map(|c| {
            let n = per_class.get(&c.id).copied().unwrap_or(0);
            (c, n)
        });
        Ok(PoolStatus {
            patches,
            labeled,
            unlabeled: patches - labeled,
            oracle_labeled,
            classes: classes.collect(),
            rounds,
        })
    }
}
