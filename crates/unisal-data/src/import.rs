//! The import job: collect files, settle classes, decode on worker threads, write batches from one thread.
//!
//! Each batch is one transaction, so an import killed at any moment leaves a consistent pool holding the
//! batches committed so far; running the same import again skips those (same SHA-256) and completes it.
//! Nothing already in the pool is ever changed: a duplicate keeps its stored label.

use crate::decode::{prepare_patch, sha256_hex, DecodeLimits};
use crate::error::{DataError, Result};
pub use crate::sources::LabelMode;
use crate::sources::{self, describe_io, ImportItem};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use unisal_core::events::{CancelToken, Progress, ProgressSink};
use unisal_core::pool::{ImportLabel, InsertOutcome, NewPatch};
use unisal_core::Pool;

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Where labels come from.
    pub labels: LabelMode,
    /// Store labels as hidden oracle labels (simulation only) instead of training labels.
    pub oracle: bool,
    /// Decoding threads; 0 = one per core.
    pub threads: usize,
    /// Patches per transaction (a batch is also written after 250 ms).
    pub batch_size: usize,
    /// Header limits.
    pub limits: DecodeLimits,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            labels: LabelMode::Auto,
            oracle: false,
            threads: 0,
            batch_size: 256,
            limits: DecodeLimits::default(),
        }
    }
}

/// One file that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportFailure {
    /// The file (or folder, or CSV) as given or found.
    pub path: String,
    /// Why, in words.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Patches stored.
    pub imported: u64,
    /// Files skipped because a patch with the same content is in the pool (or earlier in this import).
    pub duplicates: u64,
    /// Files refused, each with its reason, sorted by path.
    pub failed: Vec<ImportFailure>,
    /// Whether the import was cancelled before it finished (what was committed stays).
    pub cancelled: bool,
    /// Files skipped because their extension is not an image's (e.g. a `labels.csv` beside the images).
    pub skipped: u64,
    /// Classes created from the labels (only when the project had none).
    pub classes_created: Vec<String>,
    /// Remarks: conversions done (16-bit, TIFF), skipped files.
    pub notes: Vec<String>,
}

/// A batch is written once it holds this many bytes of images, whatever its length.
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

enum Outcome {
    Ready(Box<NewPatch>),
    Duplicate,
    Failed(ImportFailure),
}

/// Import `paths` into `pool`. Per-file problems land in the report; an error means the pool refused a
/// write (the batches committed before it stay).
pub fn import(
    pool: &mut Pool,
    paths: &[PathBuf],
    options: &ImportOptions,
    sink: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<ImportReport> {
    if options.batch_size == 0 {
        return Err(DataError::Invalid { field: "batch size", reason: "must be at least 1".into() });
    }
    sink.report(&Progress { message: Some("listing files".into()), ..Progress::new("scan", 0, None) });
    let collected = sources::collect(paths, options.labels);
    let mut report = ImportReport {
        failed: collected.failed,
        skipped: collected.skipped.len() as u64,
        ..Default::default()
    };
    if !collected.skipped.is_empty() {
        let names: Vec<String> = collected.skipped.iter().take(3).map(|p| p.display().to_string()).collect();
        let more = if collected.skipped.len() > 3 { ", ..." } else { "" };
        report.notes.push(format!(
            "skipped {} non-image files ({}{more})",
            collected.skipped.len(),
            names.join(", ")
        ));
    }

    // Classes: created from the labels when the project has none; otherwise unknown names are failures.
    let mut items = collected.items;
    let names: BTreeSet<String> = items.iter().filter_map(|i| i.label.clone()).collect();
    if pool.class_count()? == 0 && !names.is_empty() {
        let names: Vec<String> = names.into_iter().collect();
        pool.ensure_classes(&names)?;
        report.classes_created = names;
    }
    let classes: HashMap<String, i64> = pool.classes()?.into_iter().map(|c| (c.name, c.id)).collect();
    let class_list = || {
        let mut v: Vec<&str> = classes.keys().map(String::as_str).collect();
        v.sort_unstable();
        v.join(", ")
    };
    let mut labeled = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        let label = match item.label.as_deref().map(str::trim) {
            None => None,
            Some(name) => match classes.get(name) {
                Some(&id) => {
                    Some(if options.oracle { ImportLabel::Oracle(id) } else { ImportLabel::Real(id) })
                }
                None => {
                    report.failed.push(ImportFailure {
                        path: item.path.display().to_string(),
                        reason: format!("unknown class {name:?} (the project's classes: {})", class_list()),
                    });
                    continue;
                }
            },
        };
        labeled.push((item, label));
    }

    run_pipeline(pool, labeled, options, sink, cancel, &mut report)?;
    report.failed.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}

fn process(
    item: &ImportItem,
    label: Option<ImportLabel>,
    known: &HashSet<String>,
    options: &ImportOptions,
) -> Outcome {
    let path = &item.path;
    let failed = |reason: String| Outcome::Failed(ImportFailure { path: path.display().to_string(), reason });
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return failed("is a folder, not a file".into()),
        Ok(m) if m.len() > options.limits.max_file_bytes => {
            return failed(format!(
                "file too large ({} bytes, limit {})",
                m.len(),
                options.limits.max_file_bytes
            ))
        }
        Ok(_) => {}
        Err(e) => return failed(describe_io(path, &e)),
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return failed(describe_io(path, &e)),
    };
    if !bytes.is_empty() && known.contains(&sha256_hex(&bytes)) {
        return Outcome::Duplicate;
    }
    match prepare_patch(&bytes, &options.limits) {
        Ok(p) => Outcome::Ready(Box::new(NewPatch {
            sha256: p.sha256,
            width: p.width,
            height: p.height,
            source_path: path.display().to_string(),
            group: item.group.clone(),
            format: p.format.to_string(),
            source_format: p.source_format.to_string(),
            note: p.note,
            image: p.stored,
            thumbnail_format: "jpeg".to_string(),
            thumbnail: p.thumbnail,
            label,
        })),
        Err(reason) => failed(reason),
    }
}

fn run_pipeline(
    pool: &mut Pool,
    items: Vec<(ImportItem, Option<ImportLabel>)>,
    options: &ImportOptions,
    sink: &dyn ProgressSink,
    cancel: &CancelToken,
    report: &mut ImportReport,
) -> Result<()> {
    let total = items.len() as u64;
    let known = pool.known_hashes()?;
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    }
    .min(items.len().max(1));
    let next = AtomicUsize::new(0);
    // Files decoded ahead of the one the writer waits for are capped, so memory stays bounded even when one
    // large file is slow and the other threads race ahead.
    let window = (threads * 8).max(32);
    let written = AtomicUsize::new(0);
    let stop = CancelToken::new();
    let (tx, rx) = mpsc::sync_channel::<(usize, Outcome)>(window);
    let mut notes: HashMap<String, u64> = HashMap::new();
    let mut done = 0u64;
    let mut result = Ok(());
    std::thread::scope(|scope| {
        let mut workers = Vec::new();
        for _ in 0..threads {
            let tx = tx.clone();
            let (items, next, known, stop, written) = (&items, &next, &known, &stop, &written);
            workers.push(scope.spawn(move || loop {
                if stop.is_cancelled() || cancel.is_cancelled() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((item, label)) = items.get(i) else { break };
                while i >= written.load(Ordering::Acquire) + window && !stop.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if tx.send((i, process(item, *label, known, options))).is_err() {
                    break;
                }
            }));
        }
        drop(tx);
        let mut batch: Vec<NewPatch> = Vec::with_capacity(options.batch_size);
        let mut last_flush = Instant::now();
        let mut flush = |batch: &mut Vec<NewPatch>, report: &mut ImportReport| -> Result<()> {
            if batch.is_empty() {
                return Ok(());
            }
            for outcome in pool.insert_patches(batch)? {
                match outcome {
                    InsertOutcome::Inserted(_) => report.imported += 1,
                    InsertOutcome::Duplicate(_) => report.duplicates += 1,
                }
            }
            batch.clear();
            Ok(())
        };
        // Outcomes arrive out of order; they are written in file order (patch ids follow the listing, and
        // a cancelled import has stored exactly a prefix of it).
        let mut pending: BTreeMap<usize, Outcome> = BTreeMap::new();
        let mut next_index = 0usize;
        for (index, outcome) in rx.iter() {
            pending.insert(index, outcome);
            while let Some(outcome) = pending.remove(&next_index) {
                next_index += 1;
                written.store(next_index, Ordering::Release);
                done += 1;
                match outcome {
                    Outcome::Ready(p) => {
                        if let Some(n) = &p.note {
                            *notes.entry(n.clone()).or_default() += 1;
                        }
                        batch.push(*p);
                    }
                    Outcome::Duplicate => report.duplicates += 1,
                    Outcome::Failed(f) => report.failed.push(f),
                }
            }
            let bytes: usize = batch.iter().map(|p| p.image.len() + p.thumbnail.len()).sum();
            let due = batch.len() >= options.batch_size
                || bytes >= MAX_BATCH_BYTES
                || last_flush.elapsed() > Duration::from_millis(250);
            if due {
                if let Err(e) = flush(&mut batch, report) {
                    result = Err(e);
                    stop.cancel();
                    break;
                }
                last_flush = Instant::now();
                sink.report(&Progress::new("import", done, Some(total)));
            }
            if cancel.is_cancelled() {
                report.cancelled = true;
                stop.cancel();
                break;
            }
        }
        // Stop the workers (they exit on their next send or check), then commit what is decoded.
        stop.cancel();
        drop(rx);
        if result.is_ok() {
            result = flush(&mut batch, report);
        }
        for w in workers {
            if w.join().is_err() && result.is_ok() {
                result = Err(DataError::Worker("a decoding thread panicked".into()));
            }
        }
    });
    result?;
    if cancel.is_cancelled() && done < total {
        report.cancelled = true;
    }
    sink.report(&Progress::new("import", done, Some(total)));
    let mut notes: Vec<_> = notes.into_iter().collect();
    notes.sort();
    for (note, n) in notes {
        report.notes.push(format!("{n} files: {note}"));
    }
    Ok(())
}
