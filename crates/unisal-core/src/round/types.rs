//! Plain data types of the round loop: what a caller asks for ([`RoundSpec`]) and what the pool stores and
//! gives back ([`RoundRecord`], [`StoredPrediction`], [`QueryItem`], [`CheckpointRecord`]).

use crate::learner::TrainConfig;
use crate::pool::{ClassId, PatchId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How the labeled set of the first round comes about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "size")]
pub enum InitialSet {
    /// When nothing is labeled yet, the round draws this many unlabeled patches uniformly at random
    /// (seeded) as its query batch, without training: the pathologist (or the oracle) labels them and the
    /// next round trains on them. When labels exist, the round trains as usual.
    Random(usize),
    /// Train on the patches already labeled (imported or labeled by hand); no labels is an error.
    AlreadyLabeled,
}

/// What one round should do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundSpec {
    /// The query strategy's name (see [`crate::selection::STRATEGY_NAMES`]).
    pub strategy: String,
    /// Patches to query (at least 1).
    pub budget: usize,
    /// The training configuration; its `seed` is replaced by [`RoundSpec::seed`].
    pub config: TrainConfig,
    /// Seed of the training and of the selection.
    pub seed: u64,
    /// What to do when nothing is labeled yet.
    pub initial: InitialSet,
}

/// The state of a stored round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoundStatus {
    /// Started and not finished: only ever seen after a crash of an older writer; the pool turns it into
    /// `Failed` with the error `interrupted` ([`crate::Pool::fail_interrupted_rounds`]).
    Running,
    /// Finished: predictions, scores, queries and checkpoints are stored.
    Done,
    /// Failed: only the row with its error is stored.
    Failed,
    /// Cancelled by the user: only the row is stored.
    Cancelled,
}

impl RoundStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RoundStatus::Running => "running",
            RoundStatus::Done => "done",
            RoundStatus::Failed => "failed",
            RoundStatus::Cancelled => "cancelled",
        }
    }

    /// Parse the stored name (an unknown one reads as `Failed`).
    pub fn parse(s: &str) -> Self {
        match s {
            "running" => RoundStatus::Running,
            "done" => RoundStatus::Done,
            "cancelled" => RoundStatus::Cancelled,
            _ => RoundStatus::Failed,
        }
    }
}

/// Wall-clock seconds of a round's stages (0 for a stage that did not run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundTimings {
    /// Reading the labeled set, the classes and the patch list.
    pub snapshot_s: f64,
    /// Training both networks.
    pub train_s: f64,
    /// Predicting every patch of the pool.
    pub predict_s: f64,
    /// Scoring and selecting the query batch.
    pub select_s: f64,
    /// Writing the checkpoint files.
    pub checkpoint_s: f64,
    /// From the start of the round to the start of the final write.
    pub total_s: f64,
}

/// One stored round (any status).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// The round number, from 1.
    pub id: i64,
    /// Its state.
    pub status: RoundStatus,
    /// The strategy (`initial-random` for a first round that only drew the initial set).
    pub strategy: Option<String>,
    /// The budget asked for.
    pub budget: Option<i64>,
    /// The seed of training and selection.
    pub seed: Option<i64>,
    /// The device training ran on (`None` when nothing was trained).
    pub device: Option<String>,
    /// The effective training configuration (`None` when nothing was trained).
    pub config: Option<TrainConfig>,
    /// The labeled set trained on, `(patch, class)` in patch order.
    pub labeled: Vec<(PatchId, ClassId)>,
    /// Stage timings.
    pub timings: RoundTimings,
    /// Named numbers: losses, images/s, candidates, mean disagreement, ...
    pub metrics: BTreeMap<String, f64>,
    /// A note, e.g. that the batch was topped up.
    pub note: Option<String>,
    /// Why it failed, for `Failed` and `Cancelled`.
    pub error: Option<String>,
    /// Unix milliseconds.
    pub started_at: i64,
    /// Unix milliseconds.
    pub finished_at: Option<i64>,
}

/// Both networks' prediction and the scores of one patch in one round, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPrediction {
    /// The patch.
    pub patch_id: PatchId,
    /// Network A's class probabilities (class index = class position).
    pub prob_a: Vec<f32>,
    /// Network B's class probabilities.
    pub prob_b: Vec<f32>,
    /// A's class index.
    pub pred_a: u32,
    /// B's class index.
    pub pred_b: u32,
    /// The pair's class index (averaged logits).
    pub pred: u32,
    /// Jensen-Shannon divergence between A and B.
    pub disagreement: f64,
    /// The ensemble's highest probability.
    pub confidence: f64,
    /// The averaged projection, when stored.
    pub embedding: Option<Vec<f32>>,
}

/// One patch of a query batch with its prediction, for the grid and `unisal queries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryItem {
    /// The patch.
    pub patch_id: PatchId,
    /// Rank in the batch, from 0.
    pub rank: i64,
    /// Why it was chosen.
    pub reason: String,
    /// The strategy's score.
    pub score: Option<f64>,
    /// The round's prediction of the patch (`None` for the initial random draw).
    pub prediction: Option<StoredPrediction>,
    /// The patch's current label, if it has been labeled since.
    pub label: Option<ClassId>,
}

/// One checkpoint file of a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The round.
    pub round_id: i64,
    /// `A`, `B` (or another role the learner wrote, upper-cased).
    pub network: String,
    /// Path relative to the project file's folder (absolute when it lies outside it).
    pub path: String,
    /// SHA-256 of the file, lower-case hex.
    pub sha256: String,
    /// The model card's path and hash as JSON, when the learner wrote one.
    pub card_json: Option<String>,
}

/// A finished round's row, ready to be written with its predictions, queries and checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RoundRow {
    pub id: i64,
    pub status: RoundStatus,
    pub strategy: String,
    pub budget: usize,
    pub seed: u64,
    pub device: Option<String>,
    pub config_json: Option<String>,
    pub labeled: Vec<(PatchId, ClassId)>,
    /// The class ids in the round's prediction index order (the classes' position order at the snapshot).
    pub class_ids: Vec<ClassId>,
    pub timings: RoundTimings,
    pub metrics: BTreeMap<String, f64>,
    pub note: Option<String>,
    pub error: Option<String>,
    pub started_at: i64,
}

/// One query row to write.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewQuery {
    pub patch_id: PatchId,
    pub rank: usize,
    pub reason: String,
    pub score: Option<f64>,
}
