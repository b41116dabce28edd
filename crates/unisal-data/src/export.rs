//! Exports from a project: the current labels as CSV, one round's predictions as CSV, and one round's
//! model (both networks' safetensors files and the JSON model card) copied into a folder.
//!
//! Every file is written under a temporary name in its destination folder and renamed into place, so a
//! reader never sees half a file and a failed export leaves nothing behind. Checkpoint files are copied only
//! when their SHA-256 equals the one the database recorded when the round wrote them.

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use unisal_core::pool::{ClassId, PatchFilter, PatchId, PatchSummary};
use unisal_core::round::RoundStatus;
use unisal_core::Pool;

/// What [`export_predictions_csv`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedPredictions {
    /// The round whose predictions were written.
    pub round: i64,
    /// Data rows written (one per predicted patch).
    pub rows: usize,
    /// The CSV file.
    pub path: PathBuf,
}

/// `path` plus `.partial`, in the same folder (so the final rename never crosses file systems).
fn partial_name(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| DataError::Invalid {
        field: "output file",
        reason: format!("{} does not name a file", path.display()),
    })?;
    let mut tmp = name.to_os_string();
    tmp.push(".partial");
    Ok(path.with_file_name(tmp))
}

/// Write `out` atomically: `fill` writes into a temporary file next to it, which is then renamed. On any
/// error the temporary file is removed and the error names `out`.
fn write_atomic(out: &Path, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<()> {
    if out.is_dir() {
        return Err(DataError::Invalid {
            field: "output file",
            reason: format!("{} is a folder, not a file", out.display()),
        });
    }
    let tmp = partial_name(out)?;
    let written = (|| {
        let mut w = BufWriter::new(File::create(&tmp)?);
        fill(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, out)
    })();
    written.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        DataError::Write { path: out.to_path_buf(), source }
    })
}

/// Class id to name, for every class of the project.
fn class_names(pool: &Pool) -> Result<HashMap<ClassId, String>> {
    Ok(pool.classes()?.into_iter().map(|c| (c.id, c.name)).collect())
}

/// Write the current labels of `pool` to `out` as CSV: `patch_id,source_path,group,label,source`, one row
/// per labeled patch in patch order (label = class name). Returns the number of rows.
pub fn export_labels_csv(pool: &Pool, out: &Path) -> Result<usize> {
    let names = class_names(pool)?;
    let rows = pool.current_labels()?;
    write_atomic(out, |w| {
        let mut csv = csv::Writer::from_writer(w);
        csv.write_record(["patch_id", "source_path", "group", "label", "source"])?;
        for r in &rows {
            let label = names.get(&r.class_id).map(String::as_str).unwrap_or_default();
            let id = r.patch_id.to_string();
            let group = r.group.as_deref().unwrap_or("");
            csv.write_record([id.as_str(), &r.source_path, group, label, r.source.as_str()])?;
        }
        csv.flush()
    })?;
    Ok(rows.len())
}

/// The round to export predictions of: `round` after checking it has predictions, or the newest round
/// that has some.
fn predicted_round(pool: &Pool, round: Option<i64>) -> Result<i64> {
    let Some(round) = round else {
        return pool.latest_predicted_round()?.ok_or_else(|| DataError::Invalid {
            field: "round",
            reason: "the project has no round with predictions yet: run a training round first".into(),
        });
    };
    let record = pool.round(round)?;
    if pool.round_row_counts(round)?.0 == 0 {
        let what = match (record.status, record.strategy.as_deref()) {
            (RoundStatus::Done, Some(unisal_core::round::INITIAL_RANDOM)) => {
                "it only drew the initial random set"
            }
            (RoundStatus::Done, _) => "it stored none",
            _ => "it did not finish",
        };
        return Err(DataError::Invalid {
            field: "round",
            reason: format!("round {round} has no predictions ({what})"),
        });
    }
    Ok(round)
}

/// Write round `round`'s predictions (newest round with predictions when `None`) to `out` as CSV, one row
/// per predicted patch in patch order:
/// `patch_id,source_path,group,label,predicted,confidence,pred_a,conf_a,pred_b,conf_b,disagreement`, then
/// `a:<class>` for each class (network A's probabilities) and `b:<class>` (network B's), classes in the
/// round's index order. `label` is the current label (empty when none), `predicted` the ensemble's class;
/// every class is written by name. `conf_a` is A's probability of its own predicted class, likewise B.
pub fn export_predictions_csv(pool: &Pool, round: Option<i64>, out: &Path) -> Result<ExportedPredictions> {
    let round = predicted_round(pool, round)?;
    let names = class_names(pool)?;
    let classes: Vec<&str> = pool
        .round_class_ids(round)?
        .iter()
        .map(|id| names.get(id).map(String::as_str).ok_or(unisal_core::CoreError::UnknownClassId(*id)))
        .collect::<std::result::Result<_, _>>()?;
    let patches: HashMap<PatchId, PatchSummary> =
        pool.page_patches(0, u64::MAX, &PatchFilter::default())?.into_iter().map(|p| (p.id, p)).collect();
    let predictions = pool.round_predictions(round)?;
    let class_at = |index: u32, patch: PatchId| -> Result<&str> {
        classes.get(index as usize).copied().ok_or_else(|| DataError::Invalid {
            field: "predictions",
            reason: format!(
                "round {round} predicts class index {index} for patch {patch}, but it has {} classes",
                classes.len()
            ),
        })
    };
    // Resolve every name before writing, so that bad data fails before any file is touched.
    let mut rows = Vec::with_capacity(predictions.len());
    for p in &predictions {
        let patch = patches.get(&p.patch_id).ok_or(unisal_core::CoreError::UnknownPatch(p.patch_id))?;
        let label = patch.label.and_then(|id| names.get(&id)).map(String::as_str).unwrap_or("");
        let names =
            [class_at(p.pred, p.patch_id)?, class_at(p.pred_a, p.patch_id)?, class_at(p.pred_b, p.patch_id)?];
        if p.prob_a.len() != classes.len() || p.prob_b.len() != classes.len() {
            return Err(DataError::Invalid {
                field: "predictions",
                reason: format!(
                    "round {round}, patch {}: probabilities do not match its {} classes",
                    p.patch_id,
                    classes.len()
                ),
            });
        }
        rows.push((p, patch, label, names));
    }
    write_atomic(out, |w| {
        let mut csv = csv::Writer::from_writer(w);
        let mut header: Vec<String> = [
            "patch_id",
            "source_path",
            "group",
            "label",
            "predicted",
            "confidence",
            "pred_a",
            "conf_a",
            "pred_b",
            "conf_b",
            "disagreement",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        header.extend(classes.iter().map(|c| format!("a:{c}")));
        header.extend(classes.iter().map(|c| format!("b:{c}")));
        csv.write_record(&header)?;
        for (p, patch, label, [ensemble, a, b]) in &rows {
            let mut record = vec![
                p.patch_id.to_string(),
                patch.source_path.clone(),
                patch.group.clone().unwrap_or_default(),
                label.to_string(),
                ensemble.to_string(),
                p.confidence.to_string(),
                a.to_string(),
                p.prob_a[p.pred_a as usize].to_string(),
                b.to_string(),
                p.prob_b[p.pred_b as usize].to_string(),
                p.disagreement.to_string(),
            ];
            record.extend(p.prob_a.iter().chain(&p.prob_b).map(f32::to_string));
            csv.write_record(&record)?;
        }
        csv.flush()
    })?;
    Ok(ExportedPredictions { round, rows: rows.len(), path: out.to_path_buf() })
}

/// One file of a round's model: where it is and the SHA-256 the database recorded for it.
struct ModelFile {
    source: PathBuf,
    sha256: String,
}

/// The card's path and hash as stored in `checkpoints.card_json`.
#[derive(Deserialize)]
struct CardRef {
    path: String,
    sha256: String,
}

/// SHA-256 of a file, read in chunks; while reading, each chunk also goes to `copy` when given.
fn hash_file(path: &Path, mut copy: Option<&mut dyn Write>) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some(w) = copy.as_mut() {
            w.write_all(&buf[..n])?;
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Check `file` against its recorded hash; a mismatch is [`DataError::Checksum`] naming it.
fn verify(file: &ModelFile, found: String) -> Result<()> {
    if found != file.sha256 {
        return Err(DataError::Checksum { path: file.source.clone(), expected: file.sha256.clone(), found });
    }
    Ok(())
}

/// The files of round `round`'s model (A, B, then the card when recorded), with their recorded hashes.
fn model_files(pool: &Pool, round: i64) -> Result<Vec<ModelFile>> {
    let resolve = |p: &str| pool.folder().join(p);
    let mut files: Vec<ModelFile> = Vec::new();
    let mut cards: Vec<ModelFile> = Vec::new();
    for c in pool.round_checkpoints(round)? {
        files.push(ModelFile { source: resolve(&c.path), sha256: c.sha256 });
        if let Some(json) = c.card_json {
            let card: CardRef = serde_json::from_str(&json).map_err(|e| DataError::Invalid {
                field: "checkpoint card",
                reason: format!("round {round}, network {}: {e}", c.network),
            })?;
            if !cards.iter().any(|f| f.source == resolve(&card.path)) {
                cards.push(ModelFile { source: resolve(&card.path), sha256: card.sha256 });
            }
        }
    }
    files.extend(cards);
    Ok(files)
}

/// The round to export the model of: `round` after checking it has checkpoint files, or the newest `done`
/// round that has some.
fn model_round(pool: &Pool, round: Option<i64>) -> Result<i64> {
    if let Some(round) = round {
        pool.round(round)?;
        if pool.round_row_counts(round)?.2 == 0 {
            return Err(DataError::Invalid {
                field: "round",
                reason: format!("round {round} has no model: it trained nothing or did not finish"),
            });
        }
        return Ok(round);
    }
    for r in pool.rounds()?.iter().rev() {
        if r.status == RoundStatus::Done && pool.round_row_counts(r.id)?.2 > 0 {
            return Ok(r.id);
        }
    }
    Err(DataError::Invalid {
        field: "round",
        reason: "the project has no round with a saved model yet: run a training round first".into(),
    })
}

/// Copy round `round`'s model (newest round with one when `None`) into `out_dir` (created if needed):
/// both networks' safetensors files and the JSON model card, under their own file names. Every file's
/// SHA-256 is checked against the database before anything is written, and again while copying; a file
/// that differs is refused with [`DataError::Checksum`] naming it. Returns the written paths (A, B, card).
pub fn export_model(pool: &Pool, round: Option<i64>, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let round = model_round(pool, round)?;
    let files = model_files(pool, round)?;
    let mut targets = Vec::with_capacity(files.len());
    for f in &files {
        let found =
            hash_file(&f.source, None).map_err(|source| DataError::Io { path: f.source.clone(), source })?;
        verify(f, found)?;
        let name = f.source.file_name().ok_or_else(|| DataError::Invalid {
            field: "checkpoint path",
            reason: format!("{} does not name a file", f.source.display()),
        })?;
        let target = out_dir.join(name);
        if targets.contains(&target) {
            return Err(DataError::Invalid {
                field: "checkpoint path",
                reason: format!("round {round} has two files named {}", name.to_string_lossy()),
            });
        }
        targets.push(target);
    }
    fs::create_dir_all(out_dir).map_err(|source| DataError::Write { path: out_dir.to_path_buf(), source })?;
    for (i, (f, target)) in files.iter().zip(&targets).enumerate() {
        let mut found = None;
        let copied = write_atomic(target, |w| {
            found = Some(hash_file(&f.source, Some(w))?);
            Ok(())
        })
        .and_then(|()| verify(f, found.unwrap_or_default()));
        if let Err(e) = copied {
            // A file that failed or changed between the check and the copy: take back this export's copies,
            // so the folder never holds a model with a missing or unverified part.
            for done in &targets[..=i] {
                let _ = fs::remove_file(done);
            }
            return Err(e);
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_nothing_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.csv");
        let err = write_atomic(&out, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(matches!(&err, DataError::Write { path, .. } if path == &out), "{err}");
        assert!(err.to_string().contains("x.csv") && err.to_string().contains("disk full"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "no file, no temporary left");
        write_atomic(&out, |w| w.write_all(b"whole")).unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"whole");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_folder_is_not_an_output_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(dir.path(), |w| w.write_all(b"x")).unwrap_err();
        assert!(err.to_string().contains("is a folder"), "{err}");
    }
}
