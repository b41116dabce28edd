//! Failed, cancelled and interrupted rounds leave only a record of the failure: no predictions, no
//! queries, no checkpoints, labels untouched. And the top-up note when DUS finds too few disagreements.

mod round_support;

use round_support::{make_pool, FailAt, FakeLearner, Labels};
use unisal_core::events::{CancelToken, NoProgress};
use unisal_core::learner::TrainConfig;
use unisal_core::round::{run_round, InitialSet, RoundSpec, RoundStatus};
use unisal_core::{CoreError, Pool};

fn spec(budget: usize) -> RoundSpec {
    RoundSpec {
        strategy: "unisal".into(),
        budget,
        config: TrainConfig::preset("cpu-small").unwrap(),
        seed: 9,
        initial: InitialSet::AlreadyLabeled,
    }
}

/// Label history length of every patch: a round must not add events.
fn history_len(pool: &Pool) -> usize {
    pool.patch_ids().unwrap().iter().map(|&id| pool.label_history(id).unwrap().len()).sum()
}

#[test]
fn a_failing_learner_leaves_only_a_failed_round() {
    for (fail_at, stage) in [
        (FailAt::Train, "training"),
        (FailAt::Predict, "predicting the pool"),
        (FailAt::Checkpoint, "saving the checkpoint"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let Some(mut pool) = make_pool(dir.path(), "p", 24, Labels::FirstImported(8)) else { return };
        let labels = pool.labeled_set().unwrap();
        let history = history_len(&pool);
        let mut learner = FakeLearner::new(2);
        learner.fail_at = fail_at;
        let err = run_round(&mut pool, &mut learner, &spec(4), &NoProgress, &CancelToken::new()).unwrap_err();
        match &err {
            CoreError::Learner { round, stage: s, message } => {
                assert_eq!((*round, *s), (1, stage));
                assert!(message.contains("fake"), "{message}");
            }
            other => panic!("expected a learner error, got {other}"),
        }
        let rec = pool.round(1).unwrap();
        assert_eq!(rec.status, RoundStatus::Failed);
        assert!(rec.error.as_deref().unwrap().contains("fake"), "{:?}", rec.error);
        assert_eq!(rec.labeled, labels, "the failed round records the set it tried");
        assert_eq!(pool.round_row_counts(1).unwrap(), (0, 0, 0));
        assert_eq!(pool.latest_done_round().unwrap(), None);
        assert_eq!(pool.labeled_set().unwrap(), labels);
        assert_eq!(history_len(&pool), history);
        assert!(pool.check_integrity().unwrap().is_empty());

        // The next round works and takes the next number.
        learner.fail_at = FailAt::Nowhere;
        let ok = run_round(&mut pool, &mut learner, &spec(4), &NoProgress, &CancelToken::new()).unwrap();
        assert_eq!(ok.round, 2);
        assert_eq!(pool.round_row_counts(2).unwrap(), (24, 4, 2));
    }
}

#[test]
fn cancelling_leaves_only_a_cancelled_round() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut pool) = make_pool(dir.path(), "p", 20, Labels::FirstImported(6)) else { return };
    let labels = pool.labeled_set().unwrap();
    let cancel = CancelToken::new();
    let mut learner = FakeLearner::new(2);
    learner.cancel_during_train = Some(cancel.clone());
    let err = run_round(&mut pool, &mut learner, &spec(4), &NoProgress, &cancel).unwrap_err();
    assert!(matches!(err, CoreError::Cancelled(_)), "{err}");
    let rec = pool.round(1).unwrap();
    assert_eq!(rec.status, RoundStatus::Cancelled);
    assert!(rec.error.as_deref().unwrap().starts_with("cancelled"));
    assert_eq!(pool.round_row_counts(1).unwrap(), (0, 0, 0));
    assert_eq!(pool.labeled_set().unwrap(), labels);
    assert!(!pool.folder().join("p.checkpoints").exists(), "no checkpoint written");

    // Cancelled before it starts training: same outcome.
    let mut learner = FakeLearner::new(2);
    let err = run_round(&mut pool, &mut learner, &spec(4), &NoProgress, &cancel).unwrap_err();
    assert!(matches!(err, CoreError::Cancelled(_)), "{err}");
    assert!(learner.last_request.lock().unwrap().is_none(), "training never started");
    assert_eq!(pool.round(2).unwrap().status, RoundStatus::Cancelled);
    assert_eq!(pool.round_row_counts(2).unwrap(), (0, 0, 0));
}

#[test]
fn a_stale_running_round_becomes_failed_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pool) = make_pool(dir.path(), "p", 16, Labels::FirstImported(6)) else { return };
    let path = pool.path().to_path_buf();
    drop(pool);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO rounds (id, status, strategy, started_at) VALUES (1, 'running', 'unisal', 0)",
        [],
    )
    .unwrap();
    drop(conn);
    let mut pool = Pool::open(&path).unwrap();
    assert_eq!(pool.round(1).unwrap().status, RoundStatus::Running);
    let summary =
        run_round(&mut pool, &mut FakeLearner::new(2), &spec(3), &NoProgress, &CancelToken::new()).unwrap();
    assert_eq!(summary.round, 2);
    let stale = pool.round(1).unwrap();
    assert_eq!((stale.status, stale.error.as_deref()), (RoundStatus::Failed, Some("interrupted")));
    assert_eq!(pool.fail_interrupted_rounds().unwrap(), 0);
}

#[test]
fn too_few_disagreements_are_topped_up_and_noted() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut pool) = make_pool(dir.path(), "p", 40, Labels::FirstImported(8)) else { return };
    // No disagreement at all: every query is a top-up.
    let summary =
        run_round(&mut pool, &mut FakeLearner::new(0), &spec(6), &NoProgress, &CancelToken::new()).unwrap();
    assert_eq!((summary.queries.len(), summary.topped_up), (6, 6));
    let rec = pool.round(1).unwrap();
    assert!(
        rec.note.as_deref().unwrap().starts_with("top-up: only 0 unlabeled patches disagree"),
        "{:?}",
        rec.note
    );
    assert_eq!((rec.metrics["topped_up"], rec.metrics["candidates"]), (6.0, 0.0));
    assert!(pool.round_queries(1).unwrap().iter().all(|q| q.reason.starts_with("top-up")));

    // Plenty of disagreement with a small budget: no note.
    let summary =
        run_round(&mut pool, &mut FakeLearner::new(1), &spec(2), &NoProgress, &CancelToken::new()).unwrap();
    assert_eq!(summary.topped_up, 0);
    assert_eq!(pool.round(2).unwrap().note, None);
}
