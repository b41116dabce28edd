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

/// The backbone of both networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelArch {
    /// A small CNN for CPU-only machines and tests.
    Small,
    /// ResNet-18 (torchvision layout).
    Resnet18,
    /// ResNet-50 (torchvision layout), the reference's backbone.
    Resnet50,
}

impl ModelArch {
    /// The name used in configs and on the command line: `small`, `resnet18`, `resnet50`.
    pub fn name(self) -> &'static str {
        match self {
            ModelArch::Small => "small",
            ModelArch::Resnet18 => "resnet18",
            ModelArch::Resnet50 => "resnet50",
        }
    }
}

/// How the learning rate changes over the iterations of a round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum LrSchedule {
    /// Multiply the learning rate by `factor` from the iteration equivalent of epoch `at_epoch` (reference: x0.1 at 150).
    Step { at_epoch: f64, factor: f64 },
    /// Cosine decay from `lr` to 0 over the round's iterations (the GPU simulation of UNISAL.md section 5).
    Cosine,
    /// A constant learning rate.
    Constant,
}

/// The full effective training configuration of one round; recorded with the round so it can be reproduced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// The preset this config started from (informational).
    pub preset: String,
    /// Backbone of both networks.
    pub arch: ModelArch,
    /// Shorter side of every image after resizing (reference 256); the evaluation view is this, uncropped.
    pub resize: u32,
    /// Side of the random square training crop (reference 224).
    pub crop: u32,
    /// Labeled images per iteration (reference 64).
    pub batch_labeled: usize,
    /// Unlabeled images per iteration (reference 64).
    pub batch_unlabeled: usize,
    /// Images per forward pass when predicting.
    pub batch_eval: usize,
    /// Round length in epochs of the labeled set (reference 201); an epoch is max(1, floor(N_labeled / batch_labeled))
    /// iterations. Ignored when `iterations` is set.
    pub epochs: f64,
    /// An explicit iteration count per round; epoch-based milestones then scale to it (epoch e -> e / epochs of it).
    pub iterations: Option<u64>,
    /// Initial learning rate (reference 1e-3).
    pub lr: f64,
    /// SGD momentum (reference 0.9), no Nesterov.
    pub momentum: f64,
    /// Weight decay on all parameters (reference 8e-4).
    pub weight_decay: f64,
    /// Learning-rate schedule (reference: x0.1 at epoch 150).
    pub lr_schedule: LrSchedule,
    /// Confidence gate of the pseudo-labels (reference 0.7).
    pub tau: f64,
    /// Temperature of the contrastive loss (reference 0.15).
    pub temperature: f64,
    /// Weight of the cross pseudo-supervision after the step (reference 0.5; 0 before).
    pub lambda: f64,
    /// Epoch at which lambda steps from 0 to `lambda` (reference 15).
    pub lambda_step_epoch: f64,
    /// Weight of the class-wise contrastive loss (reference 0.1).
    pub contrastive_weight: f64,
    /// Reproduce the reference's contrastive quirks (negatives only j > i, last image unused).
    pub faithful: bool,
    /// Seed of everything random in the round (head init: seed and seed+1, sampling, augmentation).
    pub seed: u64,
    /// `auto`, `cpu`, `cuda`, `cuda:N` or `metal`.
    pub device: String,
    /// Local safetensors file with backbone weights (torchvision/timm names); `None` = random init.
    pub pretrained: Option<PathBuf>,
    /// Fraction of the labeled set held out to choose the checkpoint; `None` = keep the last iteration.
    pub validation_fraction: Option<f64>,
    /// Evaluate on the validation set every this many iterations (only with a validation set).
    pub validation_every: u64,
    /// Decoding/augmentation worker threads (0 = number of cores).
    pub workers: usize,
    /// Batches prepared ahead of the device.
    pub prefetch: usize,
    /// Report progress every this many iterations.
    pub progress_every: u64,
}

impl Default for TrainConfig {
    /// The method's reference values (UNISAL.md section 1).
    fn default() -> Self {
        Self {
            preset: "reference".into(),
            arch: ModelArch::Resnet50,
            resize: 256,
            crop: 224,
            batch_labeled: 64,
            batch_unlabeled: 64,
            batch_eval: 128,
            epochs: 201.0,
            iterations: None,
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 8e-4,
            lr_schedule: LrSchedule::Step { at_epoch: 150.0, factor: 0.1 },
            tau: 0.7,
            temperature: 0.15,
            lambda: 0.5,
            lambda_step_epoch: 15.0,
            contrastive_weight: 0.1,
            faithful: false,
            seed: 0,
            device: "auto".into(),
            pretrained: None,
            validation_fraction: None,
            validation_every: 50,
            workers: 0,
            prefetch: 3,
            progress_every: 5,
        }
    }
}

/// The names [`TrainConfig::preset`] accepts.
pub const PRESETS: [&str; 3] = ["reference", "gpu-sim", "cpu-small"];

impl TrainConfig {
    /// A named preset: `reference` (UNISAL.md section 1), `gpu-sim` (section 5: ResNet-18 from scratch, 150 px
    /// pool, 128 crop, 400 iterations, lr 0.03 cosine, wd 5e-4) or `cpu-small` (small CNN at 64 px for 2-core CPUs).
    pub fn preset(name: &str) -> Option<Self> {
        let reference = Self::default();
        match name {
            "reference" => Some(reference),
            "gpu-sim" => Some(Self {
                preset: name.into(),
                arch: ModelArch::Resnet18,
                resize: 150,
                crop: 128,
                iterations: Some(400),
                lr: 0.03,
                weight_decay: 5e-4,
                lr_schedule: LrSchedule::Cosine,
                ..reference
            }),
            "cpu-small" => Some(Self {
                preset: name.into(),
                arch: ModelArch::Small,
                resize: 72,
                crop: 64,
                batch_labeled: 16,
                batch_unlabeled: 16,
                batch_eval: 64,
                iterations: Some(300),
                lr: 0.03,
                weight_decay: 5e-4,
                lr_schedule: LrSchedule::Cosine,
                ..reference
            }),
            _ => None,
        }
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("batch_labeled", self.batch_labeled as f64),
            ("batch_unlabeled", self.batch_unlabeled as f64),
            ("batch_eval", self.batch_eval as f64),
            ("resize", self.resize as f64),
            ("crop", self.crop as f64),
            ("epochs", self.epochs),
            ("lr", self.lr),
            ("temperature", self.temperature),
            ("prefetch", self.prefetch as f64),
            ("progress_every", self.progress_every as f64),
            ("validation_every", self.validation_every as f64),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("training config: `{name}` must be a positive number, got {v}"));
            }
        }
        let non_negative = [
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
            ("lambda", self.lambda),
            ("lambda_step_epoch", self.lambda_step_epoch),
            ("contrastive_weight", self.contrastive_weight),
        ];
        for (name, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("training config: `{name}` must be >= 0, got {v}"));
            }
        }
        if self.crop > self.resize {
            return Err(format!(
                "training config: `crop` ({}) must not exceed `resize` ({})",
                self.crop, self.resize
            ));
        }
        if !(self.tau > 0.0 && self.tau < 1.0) {
            return Err(format!("training config: `tau` must be in (0, 1), got {}", self.tau));
        }
        if self.iterations == Some(0) {
            return Err("training config: `iterations` must be at least 1".into());
        }
        if let Some(f) = self.validation_fraction {
            if !(f > 0.0 && f < 1.0) {
                return Err(format!("training config: `validation_fraction` must be in (0, 1), got {f}"));
            }
        }
        if let LrSchedule::Step { at_epoch, factor } = self.lr_schedule {
            if !(at_epoch >= 0.0 && factor.is_finite() && factor >= 0.0) {
                return Err(format!("training config: `lr_schedule` step needs at_epoch >= 0 and factor >= 0, got {at_epoch}, {factor}"));
            }
        }
        Ok(())
    }
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
    /// The device the round ran on.
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
    fn reference_defaults_match_the_method() {
        let c = TrainConfig::default();
        assert_eq!((c.resize, c.crop, c.batch_labeled, c.batch_unlabeled), (256, 224, 64, 64));
        assert_eq!((c.lr, c.momentum, c.weight_decay), (1e-3, 0.9, 8e-4));
        assert_eq!((c.tau, c.temperature, c.lambda, c.lambda_step_epoch), (0.7, 0.15, 0.5, 15.0));
        assert_eq!(c.contrastive_weight, 0.1);
        assert_eq!(c.lr_schedule, LrSchedule::Step { at_epoch: 150.0, factor: 0.1 });
        assert!(c.validate().is_ok());
    }

    #[test]
    fn presets_validate_and_roundtrip_through_json() {
        for name in PRESETS {
            let c = TrainConfig::preset(name).unwrap();
            c.validate().unwrap();
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), c);
        }
        assert!(TrainConfig::preset("nope").is_none());
        let partial: TrainConfig = serde_json::from_str(r#"{"arch":"small","lr":0.5}"#).unwrap();
        assert_eq!((partial.arch, partial.lr, partial.crop), (ModelArch::Small, 0.5, 224));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = TrainConfig { crop: 300, ..TrainConfig::default() };
        assert!(bad.validate().unwrap_err().contains("`crop`"));
        let bad = TrainConfig { tau: 1.5, ..TrainConfig::default() };
        assert!(bad.validate().unwrap_err().contains("`tau`"));
        let bad = TrainConfig { batch_labeled: 0, ..TrainConfig::default() };
        assert!(bad.validate().unwrap_err().contains("`batch_labeled`"));
        let bad = TrainConfig { validation_fraction: Some(1.0), ..TrainConfig::default() };
        assert!(bad.validate().unwrap_err().contains("`validation_fraction`"));
    }

    #[test]
    fn cancelled_is_recognised() {
        let e: LearnerError = Box::new(Cancelled);
        assert!(is_cancelled(&e));
        let other: LearnerError = "disk full".into();
        assert!(!is_cancelled(&other));
    }
}
