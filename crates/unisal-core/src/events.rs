//! Job events and cancellation shared by every long job (import, training round, prediction, export).
//!
//! A job reports [`Progress`] through a [`ProgressSink`] and checks a [`CancelToken`] at least once per
//! unit of work (a file, an iteration). Both are cheap to clone and thread-safe.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A cooperative cancellation flag, shared between the job and whoever may cancel it.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask the job to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One progress report of a long job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// What the job is doing now, e.g. "import", "train", "predict", "select".
    pub stage: String,
    /// Units done so far in this stage.
    pub done: u64,
    /// Units in this stage, when known.
    pub total: Option<u64>,
    /// Free-form detail (current file, losses...).
    pub message: Option<String>,
    /// Named numeric values of this step (losses, images/s), empty when none.
    #[serde(default)]
    pub metrics: Vec<(String, f64)>,
}

impl Progress {
    /// A progress report with no message and no metrics.
    pub fn new(stage: impl Into<String>, done: u64, total: Option<u64>) -> Self {
        Self { stage: stage.into(), done, total, message: None, metrics: Vec::new() }
    }
}

/// Receives progress reports. Implemented for closures.
pub trait ProgressSink: Send + Sync {
    /// Called from the job's thread; must be quick.
    fn report(&self, progress: &Progress);
}

impl<F: Fn(&Progress) + Send + Sync> ProgressSink for F {
    fn report(&self, progress: &Progress) {
        self(progress)
    }
}

/// A sink that drops every report.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _progress: &Progress) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn cancel_is_seen_by_clones() {
        let t = CancelToken::new();
        let c = t.clone();
        assert!(!c.is_cancelled());
        t.cancel();
        assert!(c.is_cancelled());
    }

    #[test]
    fn closures_are_sinks() {
        let seen = Mutex::new(Vec::new());
        let sink = |p: &Progress| seen.lock().unwrap().push(p.done);
        sink.report(&Progress::new("import", 3, Some(10)));
        assert_eq!(*seen.lock().unwrap(), vec![3]);
    }
}
