//! The app's state: the open project and its background jobs (an import, a training round). Opening or
//! closing a project waits until no job runs; an import and a round never run at the same time.

use crate::error::{AppError, AppResult};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use unisal_core::events::CancelToken;
use unisal_core::Pool;

use crate::ipc_train::RoundProgressInfo;

/// State shared by every command and the patch protocol.
#[derive(Debug, Default)]
pub struct AppState {
    project: Mutex<Option<(Pool, u64)>>,
    opened: AtomicU64,
    import: Mutex<Option<CancelToken>>,
    training: Mutex<Option<TrainingJob>>,
    startup: Mutex<Option<Startup>>,
}

/// The running training round: its cancel token and its latest progress (for a window opened mid-round).
#[derive(Debug)]
struct TrainingJob {
    cancel: CancelToken,
    progress: Option<RoundProgressInfo>,
}

/// What to open when the window first asks (from the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// `--demo`: the demo project.
    Demo,
    /// A project file given as the argument.
    Project(PathBuf),
}

impl AppState {
    /// State that opens `startup` when the UI first asks for it.
    pub fn with_startup(startup: Option<Startup>) -> Self {
        AppState { startup: Mutex::new(startup), ..Default::default() }
    }

    /// The startup request, once: later calls (a reloaded window) get None.
    pub fn take_startup(&self) -> Option<Startup> {
        lock(&self.startup).take()
    }

    /// Makes `pool` the open project, closing the previous one. Returns its image key: a number new
    /// for every opening, part of every image address, so the webview never shows a cached image of
    /// another project that had the same patch id.
    pub fn set_project(&self, pool: Pool) -> u64 {
        let key = self.opened.fetch_add(1, Ordering::SeqCst) + 1;
        *lock(&self.project) = Some((pool, key));
        key
    }

    /// Closes the open project, if any.
    pub fn close_project(&self) {
        *lock(&self.project) = None;
    }

    /// Runs `f` on the open project's pool.
    pub fn with_pool<T>(&self, f: impl FnOnce(&mut Pool) -> AppResult<T>) -> AppResult<T> {
        self.with_keyed_pool(|pool, _| f(pool))
    }

    /// Runs `f` on the open project's pool and its image key.
    pub fn with_keyed_pool<T>(&self, f: impl FnOnce(&mut Pool, u64) -> AppResult<T>) -> AppResult<T> {
        let mut guard = lock(&self.project);
        let (pool, key) = guard.as_mut().ok_or(AppError::NoProject)?;
        f(pool, *key)
    }

    /// The open project's file.
    pub fn project_path(&self) -> AppResult<PathBuf> {
        self.with_pool(|p| Ok(p.path().to_path_buf()))
    }

    /// Whether `path` is the open project.
    pub fn is_open(&self, path: &Path) -> bool {
        lock(&self.project).as_ref().is_some_and(|(p, _)| p.path() == path)
    }

    /// The running job, in words, or `None` when idle.
    pub fn busy(&self) -> Option<&'static str> {
        if self.import_running() {
            Some("an import")
        } else if self.training_running() {
            Some("a training round")
        } else {
            None
        }
    }

    /// Refuses with [`AppError::Busy`] while a job runs.
    pub fn check_idle(&self) -> AppResult<()> {
        match self.busy() {
            Some(job) => Err(AppError::Busy(job)),
            None => Ok(()),
        }
    }

    /// Registers a new import job; refuses when a job is running.
    pub fn begin_import(&self) -> AppResult<CancelToken> {
        let mut job = lock(&self.import);
        if job.is_some() {
            return Err(AppError::Busy("an import"));
        }
        if self.training_running() {
            return Err(AppError::Busy("a training round"));
        }
        let token = CancelToken::new();
        *job = Some(token.clone());
        Ok(token)
    }

    /// Marks the import job as finished.
    pub fn end_import(&self) {
        *lock(&self.import) = None;
    }

    /// Whether an import is running.
    pub fn import_running(&self) -> bool {
        lock(&self.import).is_some()
    }

    /// Asks the running import to stop; false when none runs.
    pub fn cancel_import(&self) -> bool {
        match lock(&self.import).as_ref() {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

impl AppState {
    /// Registers a new training round; refuses when a job is running.
    pub fn begin_training(&self) -> AppResult<CancelToken> {
        let mut job = lock(&self.training);
        if job.is_some() {
            return Err(AppError::Busy("a training round"));
        }
        if self.import_running() {
            return Err(AppError::Busy("an import"));
        }
        let cancel = CancelToken::new();
        *job = Some(TrainingJob { cancel: cancel.clone(), progress: None });
        Ok(cancel)
    }

    /// Records the running round's latest progress.
    pub fn set_training_progress(&self, progress: RoundProgressInfo) {
        if let Some(job) = lock(&self.training).as_mut() {
            job.progress = Some(progress);
        }
    }

    /// The running round's latest progress (`None` when no round runs or none reported yet).
    pub fn training_progress(&self) -> Option<RoundProgressInfo> {
        lock(&self.training).as_ref().and_then(|j| j.progress.clone())
    }

    /// Marks the training round as finished.
    pub fn end_training(&self) {
        *lock(&self.training) = None;
    }

    /// Whether a training round runs.
    pub fn training_running(&self) -> bool {
        lock(&self.training).is_some()
    }

    /// Asks the running round to stop at its next iteration; false when none runs.
    pub fn cancel_training(&self) -> bool {
        match lock(&self.training).as_ref() {
            Some(job) => {
                job.cancel.cancel();
                true
            }
            None => false,
        }
    }
}

/// Locks a mutex, recovering from a panic in another holder (the data is a connection or a token,
/// both still valid after a panic elsewhere).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_import_at_a_time_and_cancel_reaches_the_job() {
        let state = AppState::default();
        assert!(!state.cancel_import());
        let token = state.begin_import().unwrap();
        assert!(matches!(state.begin_import(), Err(AppError::Busy(_))));
        assert!(matches!(state.begin_training(), Err(AppError::Busy("an import"))));
        assert!(state.cancel_import());
        assert!(token.is_cancelled());
        state.end_import();
        assert!(!state.import_running());
        assert!(state.begin_import().is_ok());
    }

    #[test]
    fn one_round_at_a_time_and_never_beside_an_import() {
        let state = AppState::default();
        assert!(!state.cancel_training());
        let token = state.begin_training().unwrap();
        assert_eq!(state.busy(), Some("a training round"));
        assert!(matches!(state.check_idle(), Err(AppError::Busy("a training round"))));
        assert!(matches!(state.begin_training(), Err(AppError::Busy(_))));
        assert!(matches!(state.begin_import(), Err(AppError::Busy("a training round"))));
        assert!(state.training_progress().is_none());
        state.cancel_training();
        assert!(token.is_cancelled());
        state.end_training();
        assert!(state.check_idle().is_ok());
    }

    #[test]
    fn startup_is_handed_out_once() {
        let state = AppState::with_startup(Some(Startup::Demo));
        assert_eq!(state.take_startup(), Some(Startup::Demo));
        assert_eq!(state.take_startup(), None);
    }

    #[test]
    fn commands_without_a_project_say_so() {
        let state = AppState::default();
        assert!(matches!(state.project_path(), Err(AppError::NoProject)));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.unisal");
        let first = state.set_project(Pool::create(&path).unwrap());
        assert!(state.is_open(&path));
        let second = state.set_project(Pool::open(&path).unwrap());
        assert_ne!(first, second, "every opening gets a new image key");
        assert_eq!(state.with_keyed_pool(|_, k| Ok(k)).unwrap(), second);
        assert_eq!(state.project_path().unwrap(), path);
        state.close_project();
        assert!(!state.is_open(&path));
    }
}
