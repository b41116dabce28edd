//! One training round of the pair (UNISAL.md sections 1.2-1.4): batches of labeled + unlabeled images prepared on
//! worker threads, one forward per network over the whole mixed batch with BatchNorm in train mode, the three
//! losses, one backward, one SGD-momentum step per network, the schedule in iterations; progress events, the
//! cancel token checked every iteration, optional validation for the checkpoint choice.

use super::pair::{Pair, PairSnapshot};
use crate::error::{Result, TrainError};
use crate::loss::{dual_losses, DualOutputs, LossConfig};
use crate::metrics::Metrics;
use crate::optim::Sgd;
use crate::pipeline::{prefetch_ordered, train_batch, ImageCache, LabeledSampler, UnlabeledSampler};
use crate::predict::{predict_pair, PredictOptions};
use crate::schedule::Schedule;
use candle_core::Device;
use std::time::Instant;
use unisal_core::events::{CancelToken, NoProgress, Progress, ProgressSink};
use unisal_core::learner::{ImageSource, LabeledPatch, LossTerms, TrainConfig};

/// What the loop needs besides the config.
pub struct RoundInputs<'a> {
    pub config: &'a TrainConfig,
    pub num_classes: usize,
    pub train: &'a [LabeledPatch],
    pub unlabeled: &'a [i64],
    pub validation: &'a [LabeledPatch],
    pub device: &'a Device,
    pub cache: &'a ImageCache,
    pub images: &'a dyn ImageSource,
    pub workers: usize,
}

/// What the loop produced.
pub struct RoundResult {
    pub pair: Pair,
    pub schedule: Schedule,
    pub iterations: u64,
    pub seconds: f64,
    pub images_per_s: f64,
    pub final_losses: LossTerms,
    pub validation_accuracy: Option<f64>,
    pub chosen_iteration: u64,
}

/// The per-iteration time metrics of a training progress event, `(metric, the part it times)`, in the order the
/// parts run; the last is what the others leave of the round's time (data waits, progress, validation).
pub const PHASE_METRICS: [(&str, &str); 6] = [
    ("ms_upload", "upload"),
    ("ms_forward", "forward"),
    ("ms_losses", "losses"),
    ("ms_backward", "backward"),
    ("ms_update", "update"),
    ("ms_rest", "data and the rest"),
];

/// Host seconds spent in each part of the iterations so far. On a GPU a part is the time to enqueue its work,
/// except that the losses wait for the forward passes (they read the pseudo-labels back to the host).
#[derive(Debug, Default)]
struct PhaseClock {
    upload: f64,
    forward: f64,
    losses: f64,
    backward: f64,
    update: f64,
}

impl PhaseClock {
    /// Milliseconds an iteration of each part over `done` iterations, and of the rest of `elapsed`, as the
    /// [`PHASE_METRICS`].
    fn metrics(&self, done: u64, elapsed: f64) -> Vec<(String, f64)> {
        let parts = [self.upload, self.forward, self.losses, self.backward, self.update];
        let rest = (elapsed - parts.iter().sum::<f64>()).max(0.0);
        let per = |s: f64| 1000.0 * s / done.max(1) as f64;
        parts
            .into_iter()
            .chain([rest])
            .zip(PHASE_METRICS)
            .map(|(s, (k, _))| (k.to_string(), per(s)))
            .collect()
    }
}

struct Best {
    accuracy: f64,
    iteration: u64,
    snapshot: Option<PairSnapshot>,
}

/// Ensemble accuracy of the pair on a labeled set (evaluation view).
pub fn validation_accuracy(pair: &Pair, inp: &RoundInputs<'_>) -> Result<f64> {
    let ids: Vec<i64> = inp.validation.iter().map(|p| p.patch_id).collect();
    let opts =
        PredictOptions { batch: inp.config.batch_eval, workers: inp.workers, prefetch: inp.config.prefetch };
    let preds =
        predict_pair(&pair.a, &pair.b, &ids, inp.cache, inp.images, opts, &NoProgress, &CancelToken::new())?;
    let truth: Vec<u32> = inp.validation.iter().map(|p| p.class_index).collect();
    let pred: Vec<u32> = preds.iter().map(|p| p.pred).collect();
    Ok(Metrics::compute(&truth, &pred, inp.num_classes)?.accuracy)
}

/// Runs the whole round; returns [`TrainError::Cancelled`] as soon as `cancel` is seen.
pub fn run_round(
    inp: &RoundInputs<'_>,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<RoundResult> {
    let cfg = inp.config;
    let schedule = Schedule::new(cfg, inp.train.len())?;
    let total = schedule.total();
    let pair = Pair::initial(cfg, inp.num_classes, inp.device)?;
    let mut opt_a = Sgd::new(pair.a.trainable_vars(), cfg.lr, cfg.momentum, cfg.weight_decay);
    let mut opt_b = Sgd::new(pair.b.trainable_vars(), cfg.lr, cfg.momentum, cfg.weight_decay);
    let loss_cfg = LossConfig { tau: cfg.tau, temperature: cfg.temperature, faithful: cfg.faithful };
    let lsampler = LabeledSampler { n: inp.train.len(), batch: cfg.batch_labeled, seed: cfg.seed };
    let usampler = UnlabeledSampler { n: inp.unlabeled.len(), batch: cfg.batch_unlabeled, seed: cfg.seed };
    let labeled: Vec<(i64, u32)> = inp.train.iter().map(|p| (p.patch_id, p.class_index)).collect();
    let crop = cfg.crop as usize;
    let validate = !inp.validation.is_empty();
    let mut best = Best { accuracy: f64::NEG_INFINITY, iteration: 0, snapshot: None };
    let mut last_terms = LossTerms::default();
    let mut images = 0u64;
    let mut clock = PhaseClock::default();
    let start = Instant::now();

    let produce = |it: u64| {
        let l: Vec<(i64, u32)> = lsampler.batch(it).into_iter().map(|i| labeled[i]).collect();
        let u: Vec<i64> = usampler.batch(it).into_iter().map(|i| inp.unlabeled[i]).collect();
        train_batch(inp.cache, inp.images, &l, &u, cfg.crop, cfg.seed, it)
    };
    let mut uploader = crate::upload::Uploader::new();
    let consume = |it: u64, batch: crate::pipeline::TrainBatch| -> Result<()> {
        if cancel.is_cancelled() {
            return Err(TrainError::Cancelled);
        }
        let n = batch.len;
        let mut lap = Instant::now();
        let mut tick = |part: &mut f64| {
            let now = Instant::now();
            *part += (now - lap).as_secs_f64();
            lap = now;
        };
        let xa = uploader.tensor(batch.view_a, (n, 3, crop, crop), inp.device)?;
        let xb = uploader.tensor(batch.view_b, (n, 3, crop, crop), inp.device)?;
        tick(&mut clock.upload);
        let oa = pair.a.forward(&xa, true)?;
        let ob = pair.b.forward(&xb, true)?;
        tick(&mut clock.forward);
        let out =
            DualOutputs { logits_a: &oa.logits, logits_b: &ob.logits, proj_a: &oa.proj, proj_b: &ob.proj };
        let parts = dual_losses(out, &batch.labels, &loss_cfg)?;
        let lambda = schedule.lambda_at(it);
        let loss = parts.total(lambda, cfg.contrastive_weight)?;
        tick(&mut clock.losses);
        let grads = crate::nn::backward(&loss)?;
        tick(&mut clock.backward);
        let lr = schedule.lr_at(it);
        opt_a.set_lr(lr);
        opt_b.set_lr(lr);
        opt_a.step(&grads)?;
        opt_b.step(&grads)?;
        tick(&mut clock.update);
        images += n as u64;
        let done = it + 1;
        if done % cfg.progress_every == 0 || done == total {
            last_terms = parts.terms(lambda, cfg.contrastive_weight)?;
            if !last_terms.total.is_finite() {
                return Err(TrainError::InvalidInput(format!(
                    "training diverged at iteration {done} (loss {}): lower the learning rate",
                    last_terms.total
                )));
            }
            let counts = parts.counts()?;
            let secs = start.elapsed().as_secs_f64();
            let ips = images as f64 / secs.max(1e-9);
            let eta = secs / done as f64 * (total - done) as f64;
            let mut p = Progress::new("train", done, Some(total));
            p.message = Some(format!(
                "loss {:.4} (sup {:.4}, pseudo {:.4}/{:.4}, contrastive {:.4}), {ips:.1} img/s, ETA {eta:.0} s",
                last_terms.total, last_terms.supervised, last_terms.pseudo_a, last_terms.pseudo_b, last_terms.contrastive
            ));
            p.metrics = vec![
                ("loss".into(), last_terms.total),
                ("supervised".into(), last_terms.supervised),
                ("pseudo_a".into(), last_terms.pseudo_a),
                ("pseudo_b".into(), last_terms.pseudo_b),
                ("contrastive".into(), last_terms.contrastive),
                ("lr".into(), lr),
                ("lambda".into(), lambda),
                ("gated_for_a".into(), counts.gated_for_a as f64),
                ("gated_for_b".into(), counts.gated_for_b as f64),
                ("anchors".into(), counts.anchors as f64),
                ("images_per_s".into(), ips),
                ("eta_s".into(), eta),
            ];
            p.metrics.extend(clock.metrics(done, secs));
            progress.report(&p);
        }
        if validate && (done % cfg.validation_every == 0 || done == total) {
            let acc = validation_accuracy(&pair, inp)?;
            let mut p = Progress::new("validate", done, Some(total));
            p.metrics = vec![("validation_accuracy".into(), acc)];
            progress.report(&p);
            if acc > best.accuracy {
                best = Best { accuracy: acc, iteration: done, snapshot: Some(pair.snapshot()?) };
            }
        }
        Ok(())
    };
    prefetch_ordered(total, inp.workers, cfg.prefetch, produce, consume)?;
    let seconds = start.elapsed().as_secs_f64();
    let (validation_accuracy, chosen_iteration) = match best.snapshot {
        Some(snap) => {
            pair.restore(&snap)?;
            (Some(best.accuracy), best.iteration)
        }
        None => (None, total),
    };
    Ok(RoundResult {
        pair,
        schedule,
        iterations: total,
        seconds,
        images_per_s: images as f64 / seconds.max(1e-9),
        final_losses: last_terms,
        validation_accuracy,
        chosen_iteration,
    })
}
