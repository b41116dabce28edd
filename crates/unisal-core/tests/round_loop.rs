//! The round loop on real SQLite project files holding real Kather 2016 patches, with a fake learner:
//! the initial random draw, a trained round's persisted rows, reproducibility, and the labeled set used.

mod round_support;

use round_support::{make_pool, FakeLearner, Labels};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use unisal_core::events::{CancelToken, NoProgress};
use unisal_core::learner::TrainConfig;
use unisal_core::pool::LabelSource;
use unisal_core::round::{checkpoint_dir, run_round, InitialSet, RoundSpec, RoundStatus, INITIAL_RANDOM};
use unisal_core::{CoreError, Pool};

fn spec(strategy: &str, budget: usize, seed: u64, initial: InitialSet) -> RoundSpec {
    RoundSpec {
        strategy: strategy.into(),
        budget,
        config: TrainConfig::preset("cpu-small").unwrap(),
        seed,
        initial,
    }
}

/// Answer round `round`'s queries from the oracle, as a simulation does.
fn answer(pool: &mut Pool, round: i64) {
    let oracle: std::collections::HashMap<i64, i64> = pool.oracle_labels().unwrap().into_iter().collect();
    let answers: Vec<(i64, i64)> =
        pool.round_queries(round).unwrap().iter().map(|q| (q.patch_id, oracle[&q.patch_id])).collect();
    pool.set_labels_from(&answers, LabelSource::Oracle, Some(round)).unwrap();
}

#[test]
fn initial_draw_then_a_trained_round_persists_everything() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut pool) = make_pool(dir.path(), "p", 48, Labels::Oracle) else { return };
    let mut learner = FakeLearner::new(3);
    let cancel = CancelToken::new();

    let first = run_round(
        &mut pool,
        &mut learner,
        &spec("unisal", 8, 5, InitialSet::Random(12)),
        &NoProgress,
        &cancel,
    )
    .unwrap();
    assert_eq!((first.round, first.trained, first.queries.len()), (1, false, 12));
    assert_eq!(first.strategy, INITIAL_RANDOM);
    let rec = pool.round(1).unwrap();
    assert_eq!(rec.status, RoundStatus::Done);
    assert_eq!(rec.strategy.as_deref(), Some(INITIAL_RANDOM));
    assert!(rec.note.as_deref().unwrap().contains("initial random set of 12"));
    assert_eq!(pool.round_row_counts(1).unwrap(), (0, 12, 0));
    assert!(pool.labeled_set().unwrap().is_empty(), "a round never labels");

    answer(&mut pool, 1);
    let labeled_before = pool.labeled_set().unwrap();
    assert_eq!(labeled_before.len(), 12);
    let summary = run_round(
        &mut pool,
        &mut learner,
        &spec("unisal", 8, 5, InitialSet::Random(12)),
        &NoProgress,
        &cancel,
    )
    .unwrap();
    assert_eq!((summary.round, summary.trained, summary.labeled, summary.unlabeled), (2, true, 12, 36));
    assert_eq!(pool.labeled_set().unwrap(), labeled_before, "labels untouched by a round");

    let rec = pool.round(2).unwrap();
    assert_eq!(rec.status, RoundStatus::Done);
    assert_eq!((rec.strategy.as_deref(), rec.budget, rec.seed), (Some("unisal"), Some(8), Some(5)));
    assert_eq!(rec.device.as_deref(), Some("fake"));
    let config = rec.config.expect("effective config stored");
    assert_eq!((config.seed, config.device.as_str(), config.preset.as_str()), (5, "fake", "cpu-small"));
    assert_eq!(rec.labeled, labeled_before);
    assert_eq!(rec.metrics["labeled"], 12.0);
    assert_eq!(rec.metrics["loss_total"], 1.5);
    assert!(rec.metrics.contains_key("disagreements") && rec.error.is_none() && rec.finished_at.is_some());

    // Predictions for every patch, labeled ones included; scores are finite and match the probabilities.
    let preds = pool.round_predictions(2).unwrap();
    let classes = pool.classes().unwrap().len();
    assert_eq!(preds.len(), 48);
    for p in &preds {
        assert_eq!((p.prob_a.len(), p.prob_b.len()), (classes, classes));
        assert!(p.disagreement.is_finite() && p.disagreement >= 0.0);
        assert!(p.confidence > 0.0 && p.confidence <= 1.0);
        assert_eq!(p.embedding.as_ref().map(Vec::len), Some(128));
        if p.prob_a == p.prob_b {
            assert!(p.disagreement.abs() < 1e-9, "identical distributions have JSD 0");
        }
    }

    // The batch: 8 distinct unlabeled patches, ranks 0..8, with a reason, a score and the prediction.
    let queries = pool.round_queries(2).unwrap();
    let labeled_ids: HashSet<i64> = labeled_before.iter().map(|p| p.0).collect();
    assert_eq!(queries.len(), 8);
    assert_eq!(queries.iter().map(|q| q.rank).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    assert_eq!(queries.iter().map(|q| q.patch_id).collect::<HashSet<_>>().len(), 8);
    assert_eq!(queries.iter().map(|q| q.patch_id).collect::<Vec<_>>(), summary.queries);
    for q in &queries {
        assert!(!labeled_ids.contains(&q.patch_id), "queried an already labeled patch");
        assert!(!q.reason.is_empty() && q.score.is_some_and(f64::is_finite));
        assert!(q.prediction.is_some() && q.label.is_none());
    }
    assert_eq!(pool.latest_done_round().unwrap(), Some(2));

    // Checkpoints: A and B with the hash of the file on disk, the card's path and hash alongside.
    let ckpts = pool.round_checkpoints(2).unwrap();
    assert_eq!(ckpts.iter().map(|c| c.network.as_str()).collect::<Vec<_>>(), ["A", "B"]);
    for c in &ckpts {
        let bytes = std::fs::read(pool.folder().join(&c.path)).unwrap();
        assert_eq!(c.sha256, hex::encode(Sha256::digest(&bytes)));
        assert!(c.card_json.as_deref().unwrap().contains("sha256"));
        assert!(pool.folder().join(&c.path).starts_with(checkpoint_dir(&pool, 2)));
    }
}

#[test]
fn same_seed_same_batch_and_the_initial_draw_is_seeded() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pool) = make_pool(dir.path(), "base", 60, Labels::Oracle) else { return };
    drop(pool);
    let copy = |name: &str| {
        let path = dir.path().join(format!("{name}.unisal"));
        std::fs::copy(dir.path().join("base.unisal"), &path).unwrap();
        Pool::open(path).unwrap()
    };
    let run = |pool: &mut Pool, strategy: &str, seed: u64| {
        let mut learner = FakeLearner::new(4);
        let s = spec(strategy, 10, seed, InitialSet::Random(15));
        let first = run_round(pool, &mut learner, &s, &NoProgress, &CancelToken::new()).unwrap();
        answer(pool, first.round);
        let second = run_round(pool, &mut learner, &s, &NoProgress, &CancelToken::new()).unwrap();
        (first.queries, second.queries)
    };
    for strategy in ["unisal", "random", "entropy", "coreset"] {
        let (a1, a2) = run(&mut copy(&format!("{strategy}-a")), strategy, 11);
        let (b1, b2) = run(&mut copy(&format!("{strategy}-b")), strategy, 11);
        assert_eq!(a1, b1, "{strategy}: initial draw");
        assert_eq!(a2, b2, "{strategy}: query batch");
        assert_eq!(a2.len(), 10);
    }
    // The initial draw depends on the seed only, not on the strategy.
    let (u1, _) = run(&mut copy("u"), "unisal", 3);
    let (r1, _) = run(&mut copy("r"), "random", 3);
    let (other, _) = run(&mut copy("o"), "random", 4);
    assert_eq!(u1, r1);
    assert_ne!(u1, other, "another seed draws another initial set");
}

#[test]
fn imported_labels_train_and_oracle_labels_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut pool) = make_pool(dir.path(), "p", 30, Labels::FirstImported(10)) else { return };
    assert_eq!(pool.oracle_labels().unwrap().len(), 20);
    let mut learner = FakeLearner::new(2);
    let s = spec("entropy", 5, 1, InitialSet::AlreadyLabeled);
    let summary = run_round(&mut pool, &mut learner, &s, &NoProgress, &CancelToken::new()).unwrap();
    assert_eq!((summary.labeled, summary.unlabeled, summary.queries.len()), (10, 20, 5));
    let req = learner.last_request.lock().unwrap().clone().unwrap();
    let imported: Vec<i64> = pool.labeled_set().unwrap().iter().map(|p| p.0).collect();
    assert_eq!(req.labeled.iter().map(|p| p.patch_id).collect::<Vec<_>>(), imported);
    assert_eq!(req.unlabeled.len(), 20);
    assert_eq!(req.class_names, pool.classes().unwrap().into_iter().map(|c| c.name).collect::<Vec<_>>());
    assert_eq!((req.config.seed, req.round), (1, 1));
}

#[test]
fn nothing_labeled_with_already_labeled_is_refused_without_a_trace() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut pool) = make_pool(dir.path(), "p", 10, Labels::Oracle) else { return };
    let mut learner = FakeLearner::new(2);
    let err = run_round(
        &mut pool,
        &mut learner,
        &spec("unisal", 5, 0, InitialSet::AlreadyLabeled),
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap_err();
    assert!(matches!(err, CoreError::Invalid { field: "labeled set", .. }), "{err}");
    let err = run_round(
        &mut pool,
        &mut learner,
        &spec("nope", 5, 0, InitialSet::Random(3)),
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown strategy"), "{err}");
    let err = run_round(
        &mut pool,
        &mut learner,
        &spec("unisal", 0, 0, InitialSet::Random(3)),
        &NoProgress,
        &CancelToken::new(),
    )
    .unwrap_err();
    assert!(matches!(err, CoreError::Invalid { field: "budget", .. }), "{err}");
    assert!(pool.rounds().unwrap().is_empty());
}
