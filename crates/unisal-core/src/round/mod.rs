//! The active-learning round, used by the CLI and the app alike: snapshot the labeled set, train the pair
//! through a [`Learner`], predict the whole pool, score every patch, select the query batch with a
//! strategy, write the checkpoint, and persist everything in one transaction.
//!
//! Guarantees:
//! - The labeled set is the pool's current labels (human, imported, and oracle answers to earlier queries);
//!   the hidden oracle ground truth of a simulation is never read.
//! - A round exists in the database only once it has ended: `done` with its predictions, scores, query
//!   batch and checkpoints, or `failed` / `cancelled` with its error and nothing else. Labels are never
//!   touched by a round. A crash leaves no row at all.
//! - Same pool, spec and seed, same learner behaviour: same query batch.
//!
//! The very first round of a project without labels, with [`InitialSet::Random`], trains nothing: it draws
//! the initial set uniformly at random (seeded) as its query batch (strategy `initial-random`).

mod draw;
mod images;
mod train;
pub(crate) mod types;

pub use images::PoolImages;
pub use types::{
    CheckpointRecord, InitialSet, QueryItem, RoundRecord, RoundSpec, RoundStatus, RoundTimings,
    StoredPrediction,
};

use crate::error::{CoreError, Result};
use crate::events::{CancelToken, Progress, ProgressSink};
use crate::learner::Learner;
use crate::pool::{now_ms, ClassId, PatchId, Pool};
use crate::selection::strategy_by_name;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use types::RoundRow;

/// The strategy name recorded for a round that only drew the initial random set.
pub const INITIAL_RANDOM: &str = "initial-random";

/// What a finished round reports to its caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundSummary {
    /// The round number.
    pub round: i64,
    /// The strategy that chose the batch (`initial-random` for the initial draw).
    pub strategy: String,
    /// Whether the pair was trained (false for the initial draw).
    pub trained: bool,
    /// The device training ran on.
    pub device: Option<String>,
    /// Size of the labeled set trained on.
    pub labeled: usize,
    /// Unlabeled patches the batch was chosen from.
    pub unlabeled: usize,
    /// The query batch in rank order.
    pub queries: Vec<PatchId>,
    /// How many of the batch were top-ups (UniSAL with fewer disagreements than the budget).
    pub topped_up: usize,
    /// The round's note.
    pub note: Option<String>,
    /// Stage timings.
    pub timings: RoundTimings,
    /// The round's named numbers.
    pub metrics: BTreeMap<String, f64>,
}

/// What a round knows when it starts.
pub(crate) struct Snapshot {
    pub round: i64,
    pub started_at: i64,
    pub clock: Instant,
    pub labeled: Vec<(PatchId, ClassId)>,
    pub class_ids: Vec<ClassId>,
    pub class_names: Vec<String>,
    pub all_ids: Vec<PatchId>,
    pub unlabeled: Vec<PatchId>,
}

impl Snapshot {
    fn take(pool: &Pool) -> Result<Self> {
        let clock = Instant::now();
        let classes = pool.classes()?;
        Ok(Snapshot {
            round: pool.next_round_id()?,
            started_at: now_ms(),
            clock,
            labeled: pool.labeled_set()?,
            class_ids: classes.iter().map(|c| c.id).collect(),
            class_names: classes.into_iter().map(|c| c.name).collect(),
            all_ids: pool.patch_ids()?,
            unlabeled: pool.unlabeled_ids()?,
        })
    }

    /// A round row for this snapshot with the given outcome fields.
    pub(crate) fn row(&self, spec: &RoundSpec, status: RoundStatus, strategy: &str) -> RoundRow {
        RoundRow {
            id: self.round,
            status,
            strategy: strategy.to_string(),
            budget: spec.budget,
            seed: spec.seed,
            device: None,
            config_json: None,
            labeled: self.labeled.clone(),
            class_ids: self.class_ids.clone(),
            timings: RoundTimings::default(),
            metrics: BTreeMap::new(),
            note: None,
            error: None,
            started_at: self.started_at,
        }
    }
}

/// Where round `round`'s checkpoint files go: `<project>.checkpoints/round-NNNN/` next to the project file.
pub fn checkpoint_dir(pool: &Pool, round: i64) -> PathBuf {
    let stem =
        pool.path().file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "project".into());
    pool.folder().join(format!("{stem}.checkpoints")).join(format!("round-{round:04}"))
}

fn check_spec(spec: &RoundSpec) -> Result<()> {
    if spec.budget == 0 {
        return Err(CoreError::Invalid { field: "budget", reason: "must be at least 1".into() });
    }
    if let InitialSet::Random(0) = spec.initial {
        return Err(CoreError::Invalid {
            field: "initial",
            reason: "the initial random set needs at least 1 patch".into(),
        });
    }
    spec.config.validate().map_err(|reason| CoreError::Invalid { field: "config", reason })?;
    strategy_by_name(&spec.strategy)?;
    Ok(())
}

/// Run one round on `pool` with `learner` (see the module documentation). Returns the round's summary;
/// on failure or cancellation ([`CoreError::Learner`], [`CoreError::Cancelled`]) a `failed` or `cancelled`
/// row records it and nothing else is stored. An invalid spec or an unusable pool (no labels with
/// [`InitialSet::AlreadyLabeled`], fewer than 2 classes, nothing unlabeled) is refused before anything starts.
pub fn run_round(
    pool: &mut Pool,
    learner: &mut dyn Learner,
    spec: &RoundSpec,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<RoundSummary> {
    check_spec(spec)?;
    pool.fail_interrupted_rounds()?;
    progress.report(&Progress::new("snapshot", 0, Some(1)));
    let snap = Snapshot::take(pool)?;
    if snap.unlabeled.is_empty() {
        return Err(CoreError::Invalid {
            field: "pool",
            reason: "every patch is labeled: nothing to query".into(),
        });
    }
    if snap.labeled.is_empty() {
        return match spec.initial {
            InitialSet::Random(n) => draw::initial_random(pool, spec, &snap, n, progress),
            InitialSet::AlreadyLabeled => Err(CoreError::Invalid {
                field: "labeled set",
                reason: "no patch is labeled: label some first, or start with an initial random set".into(),
            }),
        };
    }
    if snap.class_names.len() < 2 {
        return Err(CoreError::Invalid {
            field: "classes",
            reason: format!("training needs at least 2 classes, the project has {}", snap.class_names.len()),
        });
    }
    let snapshot_s = snap.clock.elapsed().as_secs_f64();
    match train::trained_round(pool, learner, spec, &snap, snapshot_s, progress, cancel) {
        Ok(summary) => Ok(summary),
        Err(err) => {
            let status = if matches!(err, CoreError::Cancelled(_)) {
                RoundStatus::Cancelled
            } else {
                RoundStatus::Failed
            };
            let mut row = snap.row(spec, status, &spec.strategy);
            row.config_json = serde_json::to_string(&spec.config).ok();
            row.error = Some(err.to_string());
            row.timings.snapshot_s = snapshot_s;
            row.timings.total_s = snap.clock.elapsed().as_secs_f64();
            // The original error matters more than a failure to record it; the round leaves no trace then.
            let _ = pool.write_round(&row, &[], &[], &[]);
            Err(err)
        }
    }
}
