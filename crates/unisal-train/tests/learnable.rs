//! A learnable task on real patches: 200 labeled patches of `crc5/pool` (40 a class) plus 200 unlabeled ones,
//! resized to 64 px (48 px training crops) with the small CNN at width 16; the dual semi-supervised trainer must
//! reach clearly above chance (5 classes: 20%; asserted >= 45%) on 200 held-out patches of `crc5/devtest`,
//! Sized to run in about 2 minutes on an idle 2-core CPU; the time is printed, not asserted (speed is measured by
//! benchmarks, not by timed tests). Fixed seed.
//! Skips with a message when `../shared/data/crc5` is absent (that data never enters the repository).

mod trainer_support;

use std::time::Instant;
use trainer_support::{class_index, class_names, load_per_class, shared_dir, MemImages};
use unisal_core::events::{CancelToken, NoProgress, Progress};
use unisal_core::learner::{LabeledPatch, Learner, LrSchedule, ModelArch, TrainConfig, TrainRequest};
use unisal_train::metrics::Metrics;
use unisal_train::trainer::DualTrainer;

#[test]
fn small_cnn_pair_learns_crc5_above_chance() {
    let (Some(pool), Some(devtest)) =
        (shared_dir("crc5/pool", "learnable"), shared_dir("crc5/devtest", "learnable"))
    else {
        return;
    };
    let started = Instant::now();
    let mut images = MemImages::default();
    // every 5th file of each class, so the picks spread over the folder
    let labeled = load_per_class(&pool, 40, 0, 5, 1, &mut images);
    let unlabeled = load_per_class(&pool, 40, 2, 5, 10_000, &mut images);
    let test = load_per_class(&devtest, 40, 0, 3, 20_000, &mut images);
    let names = class_names(&labeled);
    assert_eq!(names.len(), 5);
    let config = TrainConfig {
        preset: "learnable-test".into(),
        arch: ModelArch::Small,
        width: Some(16),
        resize: 64,
        crop: 48,
        batch_labeled: 16,
        batch_unlabeled: 16,
        batch_eval: 50,
        iterations: Some(LEARNABLE_ITERATIONS),
        lr: 0.05,
        weight_decay: 5e-4,
        lr_schedule: LrSchedule::Cosine,
        device: "cpu".into(),
        seed: 0,
        progress_every: 20,
        ..TrainConfig::default()
    };
    let req = TrainRequest {
        labeled: labeled
            .iter()
            .map(|s| LabeledPatch { patch_id: s.id, class_index: class_index(&names, &s.class_name) })
            .collect(),
        unlabeled: unlabeled.iter().map(|s| s.id).collect(),
        validation: Vec::new(),
        class_names: names.clone(),
        config,
        round: 0,
    };
    let sink = |p: &Progress| {
        eprintln!("{} {}/{:?} {}", p.stage, p.done, p.total, p.message.clone().unwrap_or_default())
    };
    let mut learner = DualTrainer::new();
    let outcome = learner.train(&req, &images, &sink, &CancelToken::new()).unwrap();
    let ids: Vec<i64> = test.iter().map(|s| s.id).collect();
    let preds = learner.predict(&ids, &images, &NoProgress, &CancelToken::new()).unwrap();
    let truth: Vec<u32> = test.iter().map(|s| class_index(&names, &s.class_name)).collect();
    let ensemble = Metrics::compute(&truth, &preds.iter().map(|p| p.pred).collect::<Vec<_>>(), 5).unwrap();
    let net_a = Metrics::compute(&truth, &preds.iter().map(|p| p.pred_a).collect::<Vec<_>>(), 5).unwrap();
    let net_b = Metrics::compute(&truth, &preds.iter().map(|p| p.pred_b).collect::<Vec<_>>(), 5).unwrap();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "learnable: ensemble accuracy {:.3} (A {:.3}, B {:.3}), macro-F1 {:.3}, {} iterations, {:.1} img/s, \
         {secs:.1} s in all, final losses {:?}",
        ensemble.accuracy,
        net_a.accuracy,
        net_b.accuracy,
        ensemble.macro_f1,
        outcome.iterations,
        outcome.images_per_s,
        outcome.final_losses
    );
    assert!(
        ensemble.accuracy >= 0.45,
        "ensemble accuracy {:.3} is not clearly above chance (0.2)",
        ensemble.accuracy
    );
}

/// Iterations of the round (16 labeled + 16 unlabeled images each).
const LEARNABLE_ITERATIONS: u64 = 75;
