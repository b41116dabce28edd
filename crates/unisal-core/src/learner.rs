//! The `Learner` trait the round loop calls to train the dual networks and predict the pool, and its plain
//! data types: the full effective training configuration (with the method's reference values and named presets),
//! the request, the outcome and the per-patch prediction.
//!
//! This module knows no tensors and decodes no images: a learner receives encoded image bytes through an
//! [`ImageSource`] (the pool implements it), so the round loop can be tested with a fake learner.

use crate::events::{CancelToken, ProgressSink};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

mod config;

pub use config::{LrSchedule, ModelArch, TrainConfig, PRESETS};

/// The error type of every [`Learner`] and [`ImageSource`] call. It stays a boxed error so that this crate
/// does not depend on the training crate's errors; a cancelled job returns [`Cancelled`] (see [`is_cancelled`]).
pub type LearnerError = Box<dyn std::error::Error + Send + Sync>;

/// The error a learner returns when its [`CancelToken`] was cancelled; nothing was persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cancelled")
    }
}

impl std::error::Error for Cancelled {}

/// Whether a learner error means "cancelled by the user" rather than a failure.
pub fn is_cancelled(err: &LearnerError) -> bool {
    err.downcast_ref::<Cancelled>().is_some()
}

/// Gives a patch's encoded image bytes (PNG/JPEG/TIFF as stored) by patch id.
pub trait ImageSource: Send + Sync {
    /// The encoded bytes of patch `patch_id`; an error names the patch.
    fn image_bytes(&self, patch_id: i64) -> Result<Vec<u8>, LearnerError>;
}

/// A labeled patch: its id and the index of its class in [`TrainRequest::class_names`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabeledPatch {
    pub patch_id: i64,
    pub class_index: u32,
}

/// Everything one training round needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRequest {
    /// The effective configuration.
    pub config: TrainConfig,
    /// Class names, in class-index order (the number of classes is their count).
    pub class_names: Vec<String>,
    /// The labeled set of this round.
    pub labeled: Vec<LabeledPatch>,
    /// The unlabeled patches used by the semi-supervised losses.
    pub unlabeled: Vec<i64>,
    /// An explicit validation set for checkpoint choice (benchmarks); overrides `validation_fraction` when not empty.
    pub validation: Vec<LabeledPatch>,
    /// The round number (recorded in checkpoints).
    pub round: u32,
}

/// The resolved iteration schedule of a round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResolvedSchedule {
    /// Iterations of one labeled epoch.
    pub iterations_per_epoch: u64,
    /// Iterations of the round.
    pub total_iterations: u64,
    /// First iteration at which lambda is non-zero.
    pub lambda_step_iteration: u64,
    /// First iteration of the decayed learning rate (step schedule only).
    pub lr_step_iteration: Option<u64>,
}

/// The loss terms of one iteration (or their mean over a window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LossTerms {
    pub total: f64,
    pub supervised: f64,
    pub pseudo_a: f64,
    pub pseudo_b: f64,
    pub contrastive: f64,
}

/// What a finished training round reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    /// The configuration actually used (device resolved, e.g. `cuda:0`).
    pub config: TrainConfig,
    /// The device the round ran on, for display and the round record (e.g. `cpu (2 threads)`, `CUDA 0 (NVIDIA H200)`).
    pub device: String,
    pub schedule: ResolvedSchedule,
    /// Iterations run.
    pub iterations: u64,
    /// Wall-clock seconds of the training loop.
    pub seconds: f64,
    /// Training images per second (both networks' views counted once per image).
    pub images_per_s: f64,
    /// Mean loss terms over the last iterations of the round.
    pub final_losses: LossTerms,
    /// Validation accuracy of the kept checkpoint, when a validation set was used.
    pub validation_accuracy: Option<f64>,
    /// Iteration of the kept checkpoint (the last one without validation).
    pub chosen_iteration: u64,
}

impl TrainOutcome {
    /// The outcome of a learner that trains nothing (the fakes of tests and benchmarks): one iteration of one
    /// epoch, no time, zero losses, the last checkpoint.
    pub fn untrained(config: TrainConfig, device: &str) -> Self {
        Self {
            config,
            device: device.into(),
            schedule: ResolvedSchedule {
                iterations_per_epoch: 1,
                total_iterations: 1,
                lambda_step_iteration: 1,
                lr_step_iteration: None,
            },
            iterations: 1,
            seconds: 0.0,
            images_per_s: 0.0,
            final_losses: LossTerms::default(),
            validation_accuracy: None,
            chosen_iteration: 1,
        }
    }
}

/// Both networks' prediction for one patch (evaluation view, no augmentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchPrediction {
    pub patch_id: i64,
    /// Network A's class probabilities.
    pub prob_a: Vec<f32>,
    /// Network B's class probabilities.
    pub prob_b: Vec<f32>,
    pub pred_a: u32,
    pub pred_b: u32,
    /// The ensemble's class: argmax of the averaged logits.
    pub pred: u32,
    /// The averaged 128-d projection (zA + zB) / 2.
    pub embedding: Vec<f32>,
}

/// What goes into a checkpoint's card besides what the learner knows itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub round: u32,
    pub class_names: Vec<String>,
    /// Named metrics of the round (accuracy, macro_f1, ...).
    pub metrics: Vec<(String, f64)>,
}

/// One file a checkpoint wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointFile {
    /// `a`, `b` or `card`.
    pub role: String,
    pub path: PathBuf,
    /// SHA-256 of the file, lower-case hex.
    pub sha256: String,
    pub bytes: u64,
}

/// Trains the UniSAL pair and predicts with it. Implemented by the candle trainer, and by fakes in tests.
pub trait Learner {
    /// Trains both networks from their initial weights (no warm start). On cancellation returns [`Cancelled`]
    /// and keeps the previously trained pair, if any.
    fn train(
        &mut self,
        req: &TrainRequest,
        images: &dyn ImageSource,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<TrainOutcome, LearnerError>;

    /// Predicts `ids` with the trained pair, in the order given.
    fn predict(
        &self,
        ids: &[i64],
        images: &dyn ImageSource,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<Vec<PatchPrediction>, LearnerError>;

    /// Writes both networks (safetensors) and a JSON card into `dir`; returns the files with their hashes.
    fn save_checkpoint(&self, dir: &Path, meta: &CheckpointMeta)
        -> Result<Vec<CheckpointFile>, LearnerError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelled_is_recognised() {
        let e: LearnerError = Box::new(Cancelled);
        assert!(is_cancelled(&e));
        let other: LearnerError = "disk full".into();
        assert!(!is_cancelled(&other));
    }
}
