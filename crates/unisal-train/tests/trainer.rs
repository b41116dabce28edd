//! The dual trainer through the `Learner` trait on real patches (small CNN, tiny sizes): a round runs and
//! reports progress, predictions are well-formed, cancellation and bad images leave the learner unchanged,
//! runs are reproducible under a seed, and checkpoints round-trip with verified hashes.

mod trainer_support;

use std::sync::Mutex;
use trainer_support::{class_index, class_names, load_per_class, shared_dir, MemImages, Sample};
use unisal_core::events::{CancelToken, NoProgress, Progress};
use unisal_core::learner::{
    is_cancelled, CheckpointMeta, LabeledPatch, Learner, ModelArch, TrainConfig, TrainRequest,
};
use unisal_train::checkpoint;
use unisal_train::predict::{predict_pair, PredictOptions};
use unisal_train::trainer::DualTrainer;

fn tiny_config() -> TrainConfig {
    TrainConfig {
        preset: "test".into(),
        arch: ModelArch::Small,
        resize: 40,
        crop: 32,
        batch_labeled: 6,
        batch_unlabeled: 6,
        batch_eval: 8,
        iterations: Some(6),
        lr: 0.01,
        weight_decay: 5e-4,
        device: "cpu".into(),
        workers: 2,
        prefetch: 2,
        progress_every: 2,
        validation_every: 3,
        ..TrainConfig::default()
    }
}

struct Setup {
    images: MemImages,
    labeled: Vec<Sample>,
    unlabeled: Vec<Sample>,
}

fn setup(test: &str) -> Option<Setup> {
    let dir = shared_dir("kather2016/originals-150px", test)?;
    let mut images = MemImages::default();
    let labeled = load_per_class(&dir, 2, 0, 1, 1, &mut images);
    let unlabeled = load_per_class(&dir, 1, 2, 1, 1000, &mut images);
    Some(Setup { images, labeled, unlabeled })
}

fn request(s: &Setup, config: TrainConfig) -> TrainRequest {
    let names = class_names(&s.labeled);
    TrainRequest {
        labeled: s
            .labeled
            .iter()
            .map(|x| LabeledPatch { patch_id: x.id, class_index: class_index(&names, &x.class_name) })
            .collect(),
        unlabeled: s.unlabeled.iter().map(|x| x.id).collect(),
        validation: Vec::new(),
        class_names: names,
        config,
        round: 1,
    }
}

#[test]
fn a_round_trains_reports_and_predicts() {
    let Some(s) = setup("a_round_trains_reports_and_predicts") else { return };
    let req = request(&s, tiny_config());
    let events = Mutex::new(Vec::<Progress>::new());
    let sink = |p: &Progress| events.lock().unwrap().push(p.clone());
    let mut learner = DualTrainer::new();
    let outcome = learner.train(&req, &s.images, &sink, &CancelToken::new()).unwrap();
    assert_eq!((outcome.iterations, outcome.chosen_iteration), (6, 6));
    assert!(outcome.device.starts_with("cpu"), "{}", outcome.device);
    assert_eq!(outcome.config.device, "cpu", "the recorded config names a device that parses back");
    assert!(outcome.final_losses.total.is_finite() && outcome.final_losses.supervised > 0.0);
    assert!(outcome.images_per_s > 0.0);
    let events = events.into_inner().unwrap();
    let train: Vec<&Progress> = events.iter().filter(|p| p.stage == "train").collect();
    assert_eq!(train.iter().map(|p| p.done).collect::<Vec<_>>(), vec![2, 4, 6]);
    let names: Vec<&str> = train[0].metrics.iter().map(|(k, _)| k.as_str()).collect();
    for k in ["loss", "supervised", "pseudo_a", "pseudo_b", "contrastive", "images_per_s", "eta_s"] {
        assert!(names.contains(&k), "progress lacks {k}");
    }
    // Where the iterations' time went: every part reported, none negative, and together no more than the
    // round's wall time per iteration.
    let last = train[train.len() - 1];
    let phases = ["ms_upload", "ms_forward", "ms_losses", "ms_backward", "ms_update", "ms_rest"];
    let ms: Vec<f64> = phases
        .iter()
        .map(|k| last.metrics.iter().find(|(n, _)| n == k).unwrap_or_else(|| panic!("progress lacks {k}")).1)
        .collect();
    assert!(ms.iter().all(|&v| v >= 0.0) && ms[1] > 0.0 && ms[3] > 0.0, "{ms:?}");
    let per_iteration_ms = 1000.0 * outcome.seconds / outcome.iterations as f64;
    assert!(ms.iter().sum::<f64>() <= per_iteration_ms + 1e-6, "{ms:?} against {per_iteration_ms} ms");

    let ids: Vec<i64> = s.unlabeled.iter().map(|x| x.id).collect();
    let preds = learner.predict(&ids, &s.images, &NoProgress, &CancelToken::new()).unwrap();
    assert_eq!(preds.iter().map(|p| p.patch_id).collect::<Vec<_>>(), ids);
    for p in &preds {
        assert_eq!((p.prob_a.len(), p.prob_b.len(), p.embedding.len()), (8, 8, 128));
        for probs in [&p.prob_a, &p.prob_b] {
            assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        }
        let argmax =
            |v: &[f32]| v.iter().enumerate().fold(0, |b, (i, x)| if *x > v[b] { i } else { b }) as u32;
        assert_eq!((p.pred_a, p.pred_b), (argmax(&p.prob_a), argmax(&p.prob_b)));
        assert!(p.pred < 8);
    }
}

#[test]
fn the_same_seed_gives_the_same_pair() {
    let Some(s) = setup("the_same_seed_gives_the_same_pair") else { return };
    let req = request(&s, TrainConfig { iterations: Some(3), ..tiny_config() });
    let ids: Vec<i64> = s.unlabeled.iter().map(|x| x.id).collect();
    let run = |req: &TrainRequest| {
        let mut l = DualTrainer::new();
        l.train(req, &s.images, &NoProgress, &CancelToken::new()).unwrap();
        l.predict(&ids, &s.images, &NoProgress, &CancelToken::new()).unwrap()
    };
    let first = run(&req);
    assert_eq!(first, run(&req));
    let other = TrainRequest { config: TrainConfig { seed: 9, ..req.config.clone() }, ..req.clone() };
    assert_ne!(first, run(&other));
}

#[test]
fn cancelled_and_failed_rounds_keep_the_previous_pair() {
    let Some(s) = setup("cancelled_and_failed_rounds_keep_the_previous_pair") else { return };
    let req = request(&s, TrainConfig { iterations: Some(2), ..tiny_config() });
    let ids: Vec<i64> = s.unlabeled.iter().map(|x| x.id).collect();
    let mut learner = DualTrainer::new();

    let cancel = CancelToken::new();
    cancel.cancel();
    let err = learner.train(&req, &s.images, &NoProgress, &cancel).unwrap_err();
    assert!(is_cancelled(&err), "{err}");
    let err = learner.predict(&ids, &s.images, &NoProgress, &CancelToken::new()).unwrap_err();
    assert!(err.to_string().contains("no trained networks"), "{err}");

    learner.train(&req, &s.images, &NoProgress, &CancelToken::new()).unwrap();
    let before = learner.predict(&ids, &s.images, &NoProgress, &CancelToken::new()).unwrap();

    // cancelled from the progress sink in the middle of a longer round
    let token = CancelToken::new();
    let canceller = |p: &Progress| {
        if p.stage == "train" && p.done >= 2 {
            token.cancel();
        }
    };
    let long = TrainRequest {
        config: TrainConfig { iterations: Some(50), seed: 5, ..req.config.clone() },
        ..req.clone()
    };
    let err = learner.train(&long, &s.images, &canceller, &token).unwrap_err();
    assert!(is_cancelled(&err), "{err}");

    // a corrupt image fails the round with a message naming the patch
    let mut broken = s.images.clone();
    let victim = 999_999;
    broken.0.insert(victim, b"\x89PNG\r\n\x1a\n truncated".to_vec());
    let mut with_victim = long.clone();
    with_victim.labeled.push(LabeledPatch { patch_id: victim, class_index: 0 });
    let err = learner.train(&with_victim, &broken, &NoProgress, &CancelToken::new()).unwrap_err();
    assert!(err.to_string().contains(&format!("patch {victim}")), "{err}");

    let after = learner.predict(&ids, &s.images, &NoProgress, &CancelToken::new()).unwrap();
    assert_eq!(before, after, "the pair of the last successful round is kept");
}

#[test]
fn validation_hold_out_chooses_a_checkpoint_and_checkpoints_round_trip() {
    let Some(s) = setup("validation_hold_out_chooses_a_checkpoint_and_checkpoints_round_trip") else {
        return;
    };
    let req = request(&s, TrainConfig { validation_fraction: Some(0.25), ..tiny_config() });
    let events = Mutex::new(Vec::<Progress>::new());
    let sink = |p: &Progress| events.lock().unwrap().push(p.clone());
    let mut learner = DualTrainer::new();
    let outcome = learner.train(&req, &s.images, &sink, &CancelToken::new()).unwrap();
    let acc = outcome.validation_accuracy.expect("validation accuracy");
    assert!((0.0..=1.0).contains(&acc));
    assert!([3, 6].contains(&outcome.chosen_iteration), "{}", outcome.chosen_iteration);
    let validations = events.lock().unwrap().iter().filter(|p| p.stage == "validate").count();
    assert_eq!(validations, 2);

    let dir = tempfile::tempdir().unwrap();
    let meta = CheckpointMeta { round: 1, class_names: Vec::new(), metrics: vec![("accuracy".into(), acc)] };
    let files = learner.save_checkpoint(dir.path(), &meta).unwrap();
    assert_eq!(files.iter().map(|f| f.role.as_str()).collect::<Vec<_>>(), vec!["a", "b", "card"]);
    for f in &files {
        assert_eq!(f.sha256, checkpoint::sha256_file(&f.path).unwrap());
        assert_eq!(f.sha256.len(), 64);
    }
    let (pair, card) = checkpoint::load_pair(dir.path(), &candle_core::Device::Cpu).unwrap();
    assert_eq!((card.architecture.as_str(), card.num_classes, card.round), ("small", 8, 1));
    assert_eq!(card.class_names, req.class_names);
    assert_eq!((card.input_size, card.train_crop), (40, 32));
    let ids: Vec<i64> = s.unlabeled.iter().map(|x| x.id).collect();
    let cache = unisal_train::pipeline::ImageCache::new(40, 1 << 30);
    let opts = PredictOptions { batch: 4, workers: 1, prefetch: 1 };
    let reloaded =
        predict_pair(&pair.a, &pair.b, &ids, &cache, &s.images, opts, &NoProgress, &CancelToken::new())
            .unwrap();
    let live = learner.predict(&ids, &s.images, &NoProgress, &CancelToken::new()).unwrap();
    assert_eq!(live, reloaded);

    // a tampered weights file is refused, naming the file
    let a_path = dir.path().join(checkpoint::FILE_A);
    let mut bytes = std::fs::read(&a_path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&a_path, bytes).unwrap();
    let err = checkpoint::load_pair(dir.path(), &candle_core::Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("network_a.safetensors") && err.contains("SHA-256"), "{err}");
}

#[test]
fn bad_requests_are_refused_with_the_field_named() {
    let Some(s) = setup("bad_requests_are_refused_with_the_field_named") else { return };
    let mut learner = DualTrainer::new();
    let mut req = request(&s, tiny_config());
    req.labeled[0].class_index = 99;
    let err = learner.train(&req, &s.images, &NoProgress, &CancelToken::new()).unwrap_err().to_string();
    assert!(err.contains("class index 99"), "{err}");
    let req = request(&s, TrainConfig { crop: 64, ..tiny_config() });
    let err = learner.train(&req, &s.images, &NoProgress, &CancelToken::new()).unwrap_err().to_string();
    assert!(err.contains("`crop`"), "{err}");
    let req = request(&s, TrainConfig { device: "tpu".into(), ..tiny_config() });
    let err = learner.train(&req, &s.images, &NoProgress, &CancelToken::new()).unwrap_err().to_string();
    assert!(err.contains("tpu"), "{err}");
}
