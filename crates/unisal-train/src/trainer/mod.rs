//! [`DualTrainer`]: the candle implementation of `unisal_core::learner::Learner`.
//!
//! Every `train` call re-creates A and B from the initial weights (no warm start) and runs one round
//! ([`round::run_round`]). The trained pair replaces the previous one only when the round succeeds: a
//! cancelled or failed round leaves the learner as it was and persists nothing. Without a validation set the
//! last iteration's pair is kept; with one (explicit, or `validation_fraction` of the labeled set held out,
//! seeded) the pair with the best ensemble validation accuracy is kept.
//!
//! Decoded images (resized to the config's `resize`) are cached by patch id across rounds and predictions, up to
//! a byte budget: a patch id must always name the same image bytes, as the pool guarantees (content-hashed
//! patches are never edited in place).

mod pair;
mod round;

pub use pair::{arch_of, Pair, PairSnapshot};
pub use round::{run_round, validation_accuracy, RoundInputs, RoundResult, PHASE_METRICS};

use crate::checkpoint::{self, CardInputs};
use crate::device::{device_name, DeviceChoice};
use crate::error::{Result, TrainError};
use crate::pipeline::{worker_count, ImageCache, DEFAULT_CACHE_BYTES};
use crate::predict::{predict_pair, PredictOptions};
use candle_core::{Device, DeviceLocation};
use rand::seq::SliceRandom;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use unisal_core::events::{CancelToken, ProgressSink};
use unisal_core::learner::{
    self, CheckpointFile, CheckpointMeta, ImageSource, LabeledPatch, Learner, LearnerError, PatchPrediction,
    TrainConfig, TrainOutcome, TrainRequest,
};

/// The trained state kept between `train` and `predict` / `save_checkpoint`.
#[derive(Debug)]
struct Trained {
    pair: Pair,
    config: TrainConfig,
    class_names: Vec<String>,
    device: Device,
}

/// The UniSAL dual-network trainer on candle (CPU, CUDA or Metal).
#[derive(Debug)]
pub struct DualTrainer {
    cache_bytes: usize,
    cache: Option<Arc<ImageCache>>,
    trained: Option<Trained>,
}

impl Default for DualTrainer {
    fn default() -> Self {
        Self::new()
    }
}

impl DualTrainer {
    /// A trainer with the default decoded-image cache budget.
    pub fn new() -> Self {
        Self::with_cache_bytes(DEFAULT_CACHE_BYTES)
    }

    /// A trainer whose decoded-image cache holds at most `bytes` bytes of pixels.
    pub fn with_cache_bytes(bytes: usize) -> Self {
        Self { cache_bytes: bytes, cache: None, trained: None }
    }

    /// The trained pair, if a round has succeeded.
    pub fn pair(&self) -> Option<&Pair> {
        self.trained.as_ref().map(|t| &t.pair)
    }

    fn cache_for(&mut self, side: u32) -> Arc<ImageCache> {
        match &self.cache {
            Some(c) if c.side() == side => Arc::clone(c),
            _ => {
                let c = Arc::new(ImageCache::new(side, self.cache_bytes));
                self.cache = Some(Arc::clone(&c));
                c
            }
        }
    }

    /// One training round; the typed-error form of [`Learner::train`].
    pub fn train_round(
        &mut self,
        req: &TrainRequest,
        images: &dyn ImageSource,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<TrainOutcome> {
        let cfg = &req.config;
        cfg.validate().map_err(TrainError::InvalidInput)?;
        let num_classes = req.class_names.len();
        if num_classes < 2 {
            return Err(TrainError::InvalidInput(format!("need at least 2 classes, got {num_classes}")));
        }
        for p in req.labeled.iter().chain(&req.validation) {
            if p.class_index as usize >= num_classes {
                return Err(TrainError::InvalidInput(format!(
                    "patch {} has class index {} but there are {num_classes} classes",
                    p.patch_id, p.class_index
                )));
            }
        }
        let (train, validation) = split_validation(req)?;
        let device = DeviceChoice::from_str(&cfg.device)?.resolve()?;
        let dev_name = device_name(&device);
        let cache = self.cache_for(cfg.resize);
        let inputs = RoundInputs {
            config: cfg,
            num_classes,
            train: &train,
            unlabeled: &req.unlabeled,
            validation: &validation,
            device: &device,
            cache: &cache,
            images,
            workers: worker_count(cfg.workers),
        };
        let result = run_round(&inputs, progress, cancel).map_err(|e| out_of_memory(e, &dev_name));
        crate::memory::release_memory();
        crate::device::release_device_memory(&device);
        let result = result?;
        let mut effective = cfg.clone();
        effective.device = device_choice(&device);
        let outcome = TrainOutcome {
            config: effective.clone(),
            device: dev_name,
            schedule: result.schedule.resolved,
            iterations: result.iterations,
            seconds: result.seconds,
            images_per_s: result.images_per_s,
            final_losses: result.final_losses,
            validation_accuracy: result.validation_accuracy,
            chosen_iteration: result.chosen_iteration,
        };
        self.trained = Some(Trained {
            pair: result.pair,
            config: effective,
            class_names: req.class_names.clone(),
            device,
        });
        Ok(outcome)
    }

    /// Predicts `ids` with the trained pair; the typed-error form of [`Learner::predict`].
    pub fn predict_ids(
        &self,
        ids: &[i64],
        images: &dyn ImageSource,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<Vec<PatchPrediction>> {
        let t = self.trained.as_ref().ok_or(TrainError::NotTrained)?;
        let cache = match &self.cache {
            Some(c) if c.side() == t.config.resize => Arc::clone(c),
            _ => Arc::new(ImageCache::new(t.config.resize, self.cache_bytes)),
        };
        let opts = PredictOptions {
            batch: t.config.batch_eval,
            workers: worker_count(t.config.workers),
            prefetch: t.config.prefetch,
        };
        predict_pair(&t.pair.a, &t.pair.b, ids, &cache, images, opts, progress, cancel)
            .map_err(|e| out_of_memory(e, &device_name(&t.device)))
    }

    /// Writes the trained pair and its card into `dir`; the typed-error form of [`Learner::save_checkpoint`].
    pub fn save(&self, dir: &Path, meta: &CheckpointMeta) -> Result<Vec<CheckpointFile>> {
        let t = self.trained.as_ref().ok_or(TrainError::NotTrained)?;
        let names = if meta.class_names.is_empty() { &t.class_names } else { &meta.class_names };
        let card =
            CardInputs { config: &t.config, class_names: names, round: meta.round, metrics: &meta.metrics };
        checkpoint::save_pair(&t.pair, dir, &card)
    }
}

/// The training and validation sets of a request: the explicit validation set, or a seeded hold-out of
/// `validation_fraction` of the labeled set (at least one image each side), or none.
pub fn split_validation(req: &TrainRequest) -> Result<(Vec<LabeledPatch>, Vec<LabeledPatch>)> {
    if req.labeled.is_empty() {
        return Err(TrainError::InvalidInput("the labeled set is empty: label some patches first".into()));
    }
    if !req.validation.is_empty() {
        return Ok((req.labeled.clone(), req.validation.clone()));
    }
    let Some(fraction) = req.config.validation_fraction else { return Ok((req.labeled.clone(), Vec::new())) };
    let n = req.labeled.len();
    if n < 2 {
        return Err(TrainError::InvalidInput(format!(
            "validation_fraction needs at least 2 labeled patches, got {n}"
        )));
    }
    let held = ((n as f64 * fraction).round() as usize).clamp(1, n - 1);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut crate::augment::sample_rng(req.config.seed, 3, 0, 0));
    let mut is_val = vec![false; n];
    for &i in &order[..held] {
        is_val[i] = true;
    }
    let (val, train): (Vec<_>, Vec<_>) = req.labeled.iter().zip(is_val).partition(|(_, v)| *v);
    Ok((train.into_iter().map(|(p, _)| *p).collect(), val.into_iter().map(|(p, _)| *p).collect()))
}

/// The device as a choice string that parses back to the same device (`cpu`, `cuda:0`, `metal:0`), so that the
/// effective config recorded with a round can be re-run.
pub fn device_choice(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Turns a device out-of-memory failure into [`TrainError::OutOfMemory`] with advice.
fn out_of_memory(e: TrainError, device: &str) -> TrainError {
    let text = e.to_string();
    if text.to_ascii_lowercase().contains("out of memory") {
        TrainError::OutOfMemory { device: device.to_string(), details: text }
    } else {
        e
    }
}

fn boxed(e: TrainError) -> LearnerError {
    match e {
        TrainError::Cancelled => Box::new(learner::Cancelled),
        other => Box::new(other),
    }
}

impl Learner for DualTrainer {
    fn train(
        &mut self,
        req: &TrainRequest,
        images: &dyn ImageSource,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> std::result::Result<TrainOutcome, LearnerError> {
        self.train_round(req, images, progress, cancel).map_err(boxed)
    }

    fn predict(
        &self,
        ids: &[i64],
        images: &dyn ImageSource,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> std::result::Result<Vec<PatchPrediction>, LearnerError> {
        self.predict_ids(ids, images, progress, cancel).map_err(boxed)
    }

    fn save_checkpoint(
        &self,
        dir: &Path,
        meta: &CheckpointMeta,
    ) -> std::result::Result<Vec<CheckpointFile>, LearnerError> {
        self.save(dir, meta).map_err(boxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(n: usize, fraction: Option<f64>) -> TrainRequest {
        TrainRequest {
            config: TrainConfig { validation_fraction: fraction, ..TrainConfig::default() },
            class_names: vec!["x".into(), "y".into()],
            labeled: (0..n as i64)
                .map(|i| LabeledPatch { patch_id: i, class_index: (i % 2) as u32 })
                .collect(),
            unlabeled: Vec::new(),
            validation: Vec::new(),
            round: 0,
        }
    }

    #[test]
    fn validation_split_is_seeded_and_disjoint() {
        let (t, v) = split_validation(&req(10, Some(0.2))).unwrap();
        assert_eq!((t.len(), v.len()), (8, 2));
        assert!(v.iter().all(|p| !t.contains(p)));
        assert_eq!(split_validation(&req(10, Some(0.2))).unwrap().1, v);
        let (t, v) = split_validation(&req(10, None)).unwrap();
        assert_eq!((t.len(), v.len()), (10, 0));
        assert!(split_validation(&req(1, Some(0.5))).is_err());
        assert!(split_validation(&req(0, None)).is_err());
    }

    #[test]
    fn out_of_memory_gets_advice_and_cancel_maps_to_core() {
        let e = out_of_memory(
            TrainError::InvalidInput("CUDA_ERROR_OUT_OF_MEMORY: out of memory".into()),
            "cuda:0",
        );
        assert!(e.to_string().contains("smaller batch"), "{e}");
        assert!(learner::is_cancelled(&boxed(TrainError::Cancelled)));
        assert!(!learner::is_cancelled(&boxed(TrainError::NotTrained)));
    }
}
