//! Tests of the histogram, the query batch, the network confusion, unsure flags and rounds stored without
//! their class order, on the review tests' pool.

use super::tests::{fixture, patch, probs, round_row, PREDICTIONS};
use super::*;
use crate::round::types::NewQuery;
use crate::round::{RoundStatus, StoredPrediction};

#[test]
fn latest_predicted_round_skips_the_initial_draw_and_failed_rounds() {
    let (_d, mut pool) = fixture();
    assert_eq!(pool.latest_predicted_round().unwrap(), Some(2));
    let mut failed = round_row(3, RoundStatus::Failed, "unisal", vec![3, 1, 2]);
    failed.error = Some("out of memory".into());
    pool.write_round(&failed, &[], &[], &[]).unwrap();
    assert_eq!(pool.latest_predicted_round().unwrap(), Some(2));
    assert_eq!(pool.query_batch(None).unwrap().unwrap().round, 2);
}

#[test]
fn histogram_counts_sum_to_the_predictions_between_min_and_max() {
    let (_d, pool) = fixture();
    let h = pool.disagreement_histogram(2, 4).unwrap();
    assert_eq!(h.round, 2);
    assert_eq!(h.edges, [0.0, 0.2, 0.4, 0.6000000000000001, 0.8]);
    // [0, .2): 5, 9, 1, 3, 8; [.2, .4): 7, 10; [.4, .6): 2, 4; [.6, .8]: 6.
    assert_eq!(h.counts, [5, 2, 2, 1]);
    for bins in [1, 3, 7, 50] {
        let h = pool.disagreement_histogram(2, bins).unwrap();
        assert_eq!((h.edges.len(), h.counts.len()), (bins + 1, bins));
        assert_eq!(h.counts.iter().sum::<u64>(), PREDICTIONS.len() as u64);
        assert_eq!((h.edges[0], h.edges[bins]), (0.0, 0.8));
        assert!(h.edges.windows(2).all(|w| w[0] <= w[1]));
    }
    // The initial draw has no predictions: empty bins.
    let empty = pool.disagreement_histogram(1, 3).unwrap();
    assert_eq!((empty.edges, empty.counts), (vec![0.0; 4], vec![0; 3]));
    assert!(matches!(pool.disagreement_histogram(5, 3), Err(CoreError::UnknownRound(5))));
    let err = pool.disagreement_histogram(2, 0).unwrap_err();
    assert!(err.to_string().contains("bins"), "{err}");
}

#[test]
fn query_batch_lists_the_newest_batch_in_rank_order_with_current_labels() {
    let (_d, mut pool) = fixture();
    pool.set_label(10, 2).unwrap();
    pool.set_unsure(4, true).unwrap();
    let batch = pool.query_batch(None).unwrap().unwrap();
    assert_eq!((batch.round, batch.strategy.as_deref()), (2, Some("unisal")));
    let items: Vec<(i64, i64, Option<i64>, bool)> =
        batch.items.iter().map(|it| (it.rank, it.row.id, it.row.label, it.row.unsure)).collect();
    assert_eq!(items, [(0, 6, None, false), (1, 10, Some(2), false), (2, 4, None, true)]);
    assert_eq!((batch.items[1].reason.as_str(), batch.items[1].score), ("dus-cs", Some(1.0)));
    // Patch 6: A says index 2 (class 2), B index 0 (class 3), the ensemble index 2.
    let p = batch.items[0].row.prediction.as_ref().unwrap();
    assert_eq!((p.a, p.b, p.ensemble, p.disagreement), (2, 3, 2, 0.8));
    // A label given now shows at once in the batch.
    pool.clear_label(10).unwrap();
    assert_eq!(pool.query_batch(None).unwrap().unwrap().items[1].row.label, None);

    let first = pool.query_batch(Some(1)).unwrap().unwrap();
    assert_eq!((first.strategy.as_deref(), first.items.len()), (Some("initial-random"), 1));
    assert!(first.items[0].row.prediction.is_none());
    assert!(matches!(pool.query_batch(Some(8)), Err(CoreError::UnknownRound(8))));

    let dir = tempfile::tempdir().unwrap();
    let mut empty = Pool::create(dir.path().join("empty.unisal")).unwrap();
    assert_eq!(empty.query_batch(None).unwrap(), None);
    empty.insert_patches(&[patch(1)]).unwrap();
    let q = [NewQuery { patch_id: 1, rank: 0, reason: "r".into(), score: None }];
    let mut cancelled = round_row(1, RoundStatus::Cancelled, "unisal", vec![]);
    cancelled.error = Some("cancelled".into());
    empty.write_round(&cancelled, &[], &q, &[]).unwrap();
    assert_eq!(empty.query_batch(None).unwrap(), None, "only done rounds have a current batch");
}

#[test]
fn network_confusion_counts_pairs_of_predicted_classes() {
    let (_d, pool) = fixture();
    let c = pool.network_confusion(2).unwrap();
    assert_eq!(c.class_ids, [3, 1, 2]);
    assert_eq!(c.counts, [[2, 1, 0], [1, 2, 1], [1, 0, 2]]);
    assert_eq!((c.agree, c.total), (6, 10));
    let none = pool.network_confusion(1).unwrap();
    assert_eq!((none.agree, none.total), (0, 0));
    assert_eq!(none.counts, vec![vec![0; 3]; 3]);
    assert!(matches!(pool.network_confusion(4), Err(CoreError::UnknownRound(4))));
}

#[test]
fn unsure_flags_round_trip_and_reject_unknown_patches() {
    let (_d, mut pool) = fixture();
    assert!(!pool.is_unsure(5).unwrap());
    assert!(pool.set_unsure(5, true).unwrap());
    assert!(pool.set_unsure(5, true).unwrap(), "setting it again keeps it");
    assert!(pool.is_unsure(5).unwrap());
    assert_eq!(pool.unsure_ids().unwrap(), [3, 5, 12]);
    let row = pool.review_page(&ReviewQuery { unsure_only: true, ..ReviewQuery::default() }, 0, 10).unwrap();
    assert_eq!(row.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 5, 12]);
    assert!(!pool.set_unsure(5, false).unwrap());
    assert!(!pool.is_unsure(5).unwrap());
    assert!(!pool.set_unsure(5, false).unwrap());
    assert_eq!(pool.label(5).unwrap(), Some(3), "flags never touch labels");
    assert!(matches!(pool.set_unsure(99, true), Err(CoreError::UnknownPatch(99))));
    assert!(matches!(pool.is_unsure(99), Err(CoreError::UnknownPatch(99))));
    // The flag survives reopening the file.
    pool.set_unsure(7, true).unwrap();
    let path = pool.path().to_path_buf();
    drop(pool);
    assert!(Pool::open(&path).unwrap().is_unsure(7).unwrap());
}

#[test]
fn rounds_without_stored_class_ids_map_indexes_to_the_current_class_order() {
    let (_d, mut pool) = fixture();
    assert_eq!(pool.round_class_ids(2).unwrap(), [3, 1, 2]);
    // Reordering classes does not change a round that recorded its order.
    pool.move_class(2, 0).unwrap();
    assert_eq!(pool.round_class_ids(2).unwrap(), [3, 1, 2]);
    let p1 =
        |pool: &Pool| pool.review_page(&ReviewQuery::default(), 0, 1).unwrap().rows[0].prediction.clone();
    assert_eq!(p1(&pool).unwrap().ensemble, 3);
    // A round written by schema version 1 has no class order: the current one (b, c, a) applies.
    pool.conn().execute("UPDATE rounds SET class_ids_json = NULL WHERE id = 2", []).unwrap();
    assert_eq!(pool.round_class_ids(2).unwrap(), [2, 3, 1]);
    assert_eq!(p1(&pool).unwrap().ensemble, 2);
    assert_eq!(pool.network_confusion(2).unwrap().class_ids, [2, 3, 1]);
    let q = ReviewQuery { predicted: Some(2), ..ReviewQuery::default() };
    assert_eq!(pool.review_page(&q, 0, 20).unwrap().total, 3, "index 0: patches 1, 4, 7");
    assert!(matches!(pool.round_class_ids(9), Err(CoreError::UnknownRound(9))));
    // An index beyond the round's classes is reported, not mapped to a wrong class.
    let bad = StoredPrediction {
        patch_id: 11,
        prob_a: probs(0, 0.9),
        prob_b: probs(0, 0.9),
        pred_a: 5,
        pred_b: 0,
        pred: 0,
        disagreement: 0.0,
        confidence: 0.9,
        embedding: None,
    };
    pool.write_round(&round_row(3, RoundStatus::Done, "random", vec![3, 1, 2]), &[bad], &[], &[]).unwrap();
    let err = pool.review_page(&ReviewQuery { round: Some(3), ..ReviewQuery::default() }, 10, 1).unwrap_err();
    assert!(err.to_string().contains("class index 5"), "{err}");
}
