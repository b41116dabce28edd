//! The review API after real rounds of the round loop (real Kather 2016 patches, fake learner): a round
//! records its class order, and the review rows, query batch, histogram and confusion agree with the
//! stored predictions whatever happens to the class list afterwards.

mod round_support;

use round_support::{make_pool, FakeLearner, Labels};
use std::collections::HashMap;
use unisal_core::events::{CancelToken, NoProgress};
use unisal_core::learner::TrainConfig;
use unisal_core::pool::{ReviewQuery, ReviewSort};
use unisal_core::round::{run_round, InitialSet, RoundSpec};

fn spec(seed: u64) -> RoundSpec {
    RoundSpec {
        strategy: "unisal".into(),
        budget: 6,
        config: TrainConfig::preset("cpu-small").unwrap(),
        seed,
        initial: InitialSet::AlreadyLabeled,
    }
}

#[test]
fn a_trained_round_records_its_class_order_and_the_review_api_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut pool) = make_pool(dir.path(), "review", 40, Labels::FirstImported(12)) else { return };
    // Put the last class first so that position order differs from id order.
    let classes = pool.classes().unwrap();
    let last = classes.last().unwrap().id;
    pool.move_class(last, 0).unwrap();
    let order: Vec<i64> = pool.classes().unwrap().iter().map(|c| c.id).collect();
    assert_ne!(order, classes.iter().map(|c| c.id).collect::<Vec<_>>());

    let mut learner = FakeLearner::new(3);
    let summary = run_round(&mut pool, &mut learner, &spec(4), &NoProgress, &CancelToken::new()).unwrap();
    let round = summary.round;
    assert_eq!(pool.round_class_ids(round).unwrap(), order);
    assert_eq!(pool.latest_predicted_round().unwrap(), Some(round));

    // Reordering the classes afterwards changes nothing about the round's meaning.
    pool.move_class(order[0], order.len() - 1).unwrap();
    assert_eq!(pool.round_class_ids(round).unwrap(), order);

    let stored: HashMap<i64, _> =
        pool.round_predictions(round).unwrap().into_iter().map(|p| (p.patch_id, p)).collect();
    let q = ReviewQuery { sort: ReviewSort::Disagreement, descending: true, ..ReviewQuery::default() };
    let page = pool.review_page(&q, 0, 100).unwrap();
    assert_eq!((page.round, page.total, page.rows.len()), (Some(round), 40, 40));
    let mut previous = f64::INFINITY;
    for row in &page.rows {
        let p = row.prediction.as_ref().expect("every patch predicted");
        let s = &stored[&row.id];
        assert_eq!(
            (p.a, p.b, p.ensemble),
            (order[s.pred_a as usize], order[s.pred_b as usize], order[s.pred as usize])
        );
        assert_eq!((p.disagreement, p.confidence), (s.disagreement, s.confidence));
        assert_eq!(p.conf_a, s.prob_a[s.pred_a as usize] as f64);
        assert!(p.disagreement <= previous);
        previous = p.disagreement;
    }

    let batch = pool.query_batch(None).unwrap().unwrap();
    assert_eq!(batch.round, round);
    let ids: Vec<i64> = batch.items.iter().map(|i| i.row.id).collect();
    assert_eq!(ids, summary.queries);
    assert!(batch.items.iter().all(|i| i.row.label.is_none() && i.row.prediction.is_some()));

    let h = pool.disagreement_histogram(round, 10).unwrap();
    assert_eq!(h.counts.iter().sum::<u64>(), 40);
    let confusion = pool.network_confusion(round).unwrap();
    assert_eq!((confusion.class_ids.clone(), confusion.total), (order, 40));
    let agree = stored.values().filter(|p| p.pred_a == p.pred_b).count() as u64;
    assert_eq!(confusion.agree, agree);
    assert!(agree < 40, "the fake learner's networks disagree on some patches");
}
