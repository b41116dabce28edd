//! The import job: a folder imported into the open project on a background thread, with progress
//! events (`import-progress`: count, total, rate, ETA), cancellation, and the per-file report at the end
//! (`import-finished`). The job has its own connection to the project file; the grid stays usable.

use crate::error::{AppError, AppResult};
use crate::eta::{estimate, Throttle};
use crate::ipc::{self, ImportFinished, ImportProgress, LabelsMode};
use crate::state::AppState;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tauri::{AppHandle, Emitter, Manager, State};
use unisal_core::events::{CancelToken, Progress};
use unisal_core::Pool;
use unisal_data::{ImportOptions, LabelMode};

/// Event carrying [`ImportProgress`].
pub const PROGRESS_EVENT: &str = "import-progress";
/// Event carrying [`ImportFinished`].
pub const FINISHED_EVENT: &str = "import-finished";

/// Starts importing `folder` into the open project; returns at once. One import at a time.
#[tauri::command]
pub async fn start_import(
    app: AppHandle,
    state: State<'_, AppState>,
    folder: String,
    labels: LabelsMode,
) -> AppResult<()> {
    let folder = parse_folder(&folder)?;
    let project = state.project_path()?;
    let cancel = state.begin_import()?;
    let job_app = app.clone();
    let spawned = std::thread::Builder::new().name("import".into()).spawn(move || {
        let started = Instant::now();
        let emit = |event: ImportProgress| {
            // A window that is gone cannot be told; the import goes on.
            let _ = job_app.emit(PROGRESS_EVENT, event);
        };
        let result = run_import(&project, &folder, labels, &cancel, emit);
        job_app.state::<AppState>().end_import();
        let finished = match result {
            Ok(report) => ImportFinished { report: Some(to_ipc(report, started.elapsed())), error: None },
            Err(e) => ImportFinished { report: None, error: serde_json::to_value(&e).ok() },
        };
        if let Err(e) = job_app.emit(FINISHED_EVENT, finished) {
            eprintln!("could not send the end of the import to the window: {e}");
        }
    });
    if let Err(source) = spawned {
        state.end_import();
        return Err(AppError::Io { action: "starting the import thread for", path: PathBuf::new(), source });
    }
    Ok(())
}

/// Asks the running import to stop after its current batch; false when none runs.
#[tauri::command]
pub async fn cancel_import(state: State<'_, AppState>) -> AppResult<bool> {
    Ok(state.cancel_import())
}

/// Imports `folder` into the project file `project` over a connection of its own, passing throttled
/// progress events to `emit`.
pub fn run_import(
    project: &Path,
    folder: &Path,
    labels: LabelsMode,
    cancel: &CancelToken,
    emit: impl Fn(ImportProgress) + Send + Sync,
) -> AppResult<unisal_data::ImportReport> {
    let mut pool = Pool::open(project)?;
    let options = ImportOptions { labels: label_mode(labels), ..ImportOptions::default() };
    let reporter = Reporter::new(Duration::from_millis(100));
    let sink = |p: &Progress| {
        if let Some(event) = reporter.event(p, Instant::now()) {
            emit(event);
        }
    };
    Ok(unisal_data::import(&mut pool, &[folder.to_path_buf()], &options, &sink, cancel)?)
}

/// The importer's label mode for the UI's choice.
pub fn label_mode(labels: LabelsMode) -> LabelMode {
    match labels {
        LabelsMode::Folders => LabelMode::Folders,
        LabelsMode::None => LabelMode::None,
    }
}

/// Turns the importer's progress into throttled UI events with a rate and an ETA.
#[derive(Debug)]
pub struct Reporter {
    inner: Mutex<(Throttle, Option<Instant>)>,
}

impl Reporter {
    /// A reporter sending at most one event per `interval` (and always the last).
    pub fn new(interval: Duration) -> Self {
        Reporter { inner: Mutex::new((Throttle::new(interval), None)) }
    }

    /// The event to send for `p` at `now`, if it is due.
    pub fn event(&self, p: &Progress, now: Instant) -> Option<ImportProgress> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (throttle, first) = &mut *guard;
        let counting = p.total.is_some();
        let started = match (counting, *first) {
            (true, None) => {
                *first = Some(now);
                now
            }
            (_, Some(t)) => t,
            (false, None) => now,
        };
        let last = p.total.is_some_and(|t| p.done >= t);
        if !throttle.ready(now, last) {
            return None;
        }
        let (per_second, eta_seconds) =
            if counting { estimate(p.done, p.total, now.duration_since(started)) } else { (None, None) };
        Some(ImportProgress {
            done: p.done,
            total: p.total,
            eta_seconds,
            per_second,
            current: p.message.clone(),
        })
    }
}

/// The IPC form of an import report.
pub fn to_ipc(report: unisal_data::ImportReport, elapsed: Duration) -> ipc::ImportReport {
    ipc::ImportReport {
        imported: report.imported,
        duplicates: report.duplicates,
        failed: report
            .failed
            .into_iter()
            .map(|f| ipc::ImportFailure { path: f.path, reason: f.reason })
            .collect(),
        cancelled: report.cancelled,
        skipped: report.skipped,
        notes: report.notes,
        seconds: elapsed.as_secs_f64(),
    }
}

/// Checks the folder typed by the user: non-empty, absolute, an existing folder.
pub fn parse_folder(input: &str) -> AppResult<PathBuf> {
    let path = crate::commands::absolute_path(input, "import folder")?;
    if !path.is_dir() {
        let what = if path.exists() { "is not a folder" } else { "does not exist" };
        return Err(AppError::Invalid {
            field: "import folder",
            reason: format!("{} {what}", path.display()),
        });
    }
    Ok(path)
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
