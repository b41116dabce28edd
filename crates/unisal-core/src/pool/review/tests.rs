//! Tests of the review list on a real pool file: each sort key in both directions with ties, each filter,
//! paging, against hand-worked orders and against a brute-force model of the list.

use super::*;
use crate::pool::{ImportLabel, NewPatch};
use crate::round::types::{NewQuery, RoundRow};
use crate::round::{RoundStatus, RoundTimings, StoredPrediction};
use std::collections::BTreeMap;

/// Round 2's predictions: (patch, pred_a, pred_b, pred, disagreement, confidence). Patches 11 and 12 came
/// after the round and have none.
pub(super) const PREDICTIONS: &[(i64, u32, u32, u32, f64, f64)] = &[
    (1, 0, 0, 0, 0.10, 0.90),
    (2, 1, 2, 1, 0.50, 0.60),
    (3, 2, 2, 2, 0.10, 0.70),
    (4, 0, 1, 0, 0.50, 0.60),
    (5, 1, 1, 1, 0.00, 0.95),
    (6, 2, 0, 2, 0.80, 0.40),
    (7, 0, 0, 0, 0.20, 0.70),
    (8, 1, 1, 1, 0.10, 0.85),
    (9, 2, 2, 2, 0.00, 0.99),
    (10, 1, 0, 1, 0.30, 0.50),
];

/// Current labels (patch, class id): classes are a = 1, b = 2, c = 3 in position order c, a, b.
pub(super) const LABELS: &[(i64, i64)] = &[(2, 1), (5, 3), (7, 2), (11, 3)];
/// Round 2's query batch (patch, rank).
pub(super) const QUERIES: &[(i64, usize)] = &[(6, 0), (10, 1), (4, 2)];
/// Patches flagged unsure.
pub(super) const UNSURE: &[i64] = &[3, 12];

/// A fake patch (the pool stores bytes; it does not decode them).
pub(super) fn patch(n: u32) -> NewPatch {
    NewPatch {
        sha256: format!("{:064x}", n as u64 + 1),
        width: 100 + n,
        height: 50,
        source_path: format!("dir/p{n}.png"),
        group: (n % 2 == 0).then(|| "even".to_string()),
        format: "png".into(),
        source_format: "png".into(),
        note: None,
        image: vec![n as u8; 4],
        thumbnail_format: "png".into(),
        thumbnail: vec![n as u8; 2],
        label: None,
    }
}

/// A round row as the round loop writes it.
pub(super) fn round_row(id: i64, status: RoundStatus, strategy: &str, class_ids: Vec<ClassId>) -> RoundRow {
    RoundRow {
        id,
        status,
        strategy: strategy.into(),
        budget: 3,
        seed: 1,
        device: None,
        config_json: None,
        labeled: Vec::new(),
        class_ids,
        timings: RoundTimings::default(),
        metrics: BTreeMap::new(),
        note: None,
        error: None,
        started_at: 0,
    }
}

/// Probabilities where class `k` has `p` and the other two share the rest.
pub(super) fn probs(k: u32, p: f32) -> Vec<f32> {
    (0..3).map(|i| if i == k { p } else { (1.0 - p) / 2.0 }).collect()
}

/// The pool of the tests: 12 patches, classes c, a, b (ids 3, 1, 2), round 1 an initial draw of patch 1
/// without predictions, round 2 with [`PREDICTIONS`] and [`QUERIES`], then [`LABELS`] and [`UNSURE`].
pub(super) fn fixture() -> (tempfile::TempDir, Pool) {
    let dir = tempfile::tempdir().unwrap();
    let mut pool = Pool::create(dir.path().join("review.unisal")).unwrap();
    pool.ensure_classes(&["a".into(), "b".into(), "c".into()]).unwrap();
    pool.move_class(3, 0).unwrap();
    let batch: Vec<NewPatch> = (1..=10).map(patch).collect();
    pool.insert_patches(&batch).unwrap();
    let first = [NewQuery { patch_id: 1, rank: 0, reason: "initial random set".into(), score: Some(0.5) }];
    pool.write_round(&round_row(1, RoundStatus::Done, "initial-random", vec![3, 1, 2]), &[], &first, &[])
        .unwrap();
    let preds: Vec<StoredPrediction> = PREDICTIONS
        .iter()
        .map(|&(patch_id, pred_a, pred_b, pred, disagreement, confidence)| StoredPrediction {
            patch_id,
            prob_a: probs(pred_a, 0.5 + patch_id as f32 / 100.0),
            prob_b: probs(pred_b, 0.4 + patch_id as f32 / 100.0),
            pred_a,
            pred_b,
            pred,
            disagreement,
            confidence,
            embedding: None,
        })
        .collect();
    let queries: Vec<NewQuery> = QUERIES
        .iter()
        .map(|&(patch_id, rank)| NewQuery {
            patch_id,
            rank,
            reason: "dus-cs".into(),
            score: Some(rank as f64),
        })
        .collect();
    pool.write_round(&round_row(2, RoundStatus::Done, "unisal", vec![3, 1, 2]), &preds, &queries, &[])
        .unwrap();
    pool.insert_patches(&[patch(11), patch(12)]).unwrap();
    for &(p, c) in LABELS {
        pool.set_label(p, c).unwrap();
    }
    for &p in UNSURE {
        pool.set_unsure(p, true).unwrap();
    }
    (dir, pool)
}

fn ids(pool: &Pool, q: &ReviewQuery) -> Vec<i64> {
    let page = pool.review_page(q, 0, 1000).unwrap();
    assert_eq!(page.total as usize, page.rows.len(), "{q:?}");
    page.rows.iter().map(|r| r.id).collect()
}

fn sorted(sort: ReviewSort, descending: bool) -> ReviewQuery {
    ReviewQuery { sort, descending, ..ReviewQuery::default() }
}

#[test]
fn each_sort_key_in_both_directions_breaks_ties_by_id_and_puts_missing_keys_last() {
    let (_d, pool) = fixture();
    let cases: &[(ReviewSort, &[i64])] = &[
        (ReviewSort::Id, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
        (ReviewSort::Disagreement, &[5, 9, 1, 3, 8, 7, 10, 2, 4, 6, 11, 12]),
        (ReviewSort::Confidence, &[6, 10, 2, 4, 3, 7, 8, 1, 5, 9, 11, 12]),
        (ReviewSort::Predicted, &[1, 4, 7, 2, 5, 8, 10, 3, 6, 9, 11, 12]),
        // Class c (position 0) first: 5, 11; then a: 2; then b: 7; then the unlabeled.
        (ReviewSort::Label, &[5, 11, 2, 7, 1, 3, 4, 6, 8, 9, 10, 12]),
    ];
    for &(sort, ascending) in cases {
        assert_eq!(ids(&pool, &sorted(sort, false)), ascending, "{sort:?} ascending");
        // Descending reverses the keyed rows (ties included); rows without the key stay last.
        let keyed = match sort {
            ReviewSort::Id => 12,
            ReviewSort::Label => 4,
            _ => 10,
        };
        let mut expected: Vec<i64> = ascending[..keyed].iter().rev().copied().collect();
        expected.extend(ascending[keyed..].iter().rev());
        assert_eq!(ids(&pool, &sorted(sort, true)), expected, "{sort:?} descending");
    }
}

#[test]
fn rows_carry_label_flag_and_prediction_with_class_ids() {
    let (_d, pool) = fixture();
    let page = pool.review_page(&ReviewQuery::default(), 1, 2).unwrap();
    assert_eq!((page.round, page.offset, page.total), (Some(2), 1, 12));
    let row = &page.rows[0];
    assert_eq!((row.id, row.width, row.height, row.source_path.as_str()), (2, 102, 50, "dir/p2.png"));
    assert_eq!((row.group.as_deref(), row.label, row.unsure), (Some("even"), Some(1), false));
    let p = row.prediction.as_ref().unwrap();
    // Indexes 1, 2, 1 of the round's class order [3, 1, 2].
    assert_eq!((p.a, p.b, p.ensemble), (1, 2, 1));
    assert!((p.conf_a - 0.52).abs() < 1e-6 && (p.conf_b - 0.42).abs() < 1e-6, "{p:?}");
    assert_eq!((p.confidence, p.disagreement), (0.60, 0.50));
    assert!(page.rows[1].unsure && page.rows[1].id == 3);
    let last = pool.review_page(&ReviewQuery::default(), 10, 5).unwrap();
    assert_eq!(
        last.rows.iter().map(|r| (r.id, r.label, r.prediction.is_none())).collect::<Vec<_>>(),
        [(11, Some(3), true), (12, None, true)]
    );
    assert!(pool.review_page(&ReviewQuery::default(), 12, 5).unwrap().rows.is_empty());
}

#[test]
fn each_filter_selects_the_right_patches() {
    let (_d, pool) = fixture();
    let by_d = |f: &dyn Fn(&mut ReviewQuery)| {
        let mut q = sorted(ReviewSort::Disagreement, false);
        f(&mut q);
        ids(&pool, &q)
    };
    assert_eq!(by_d(&|q| q.label = LabelFilter::Unlabeled), [9, 1, 3, 8, 10, 4, 6, 12]);
    assert_eq!(by_d(&|q| q.label = LabelFilter::Labeled), [5, 7, 2, 11]);
    assert_eq!(by_d(&|q| q.label = LabelFilter::Class(3)), [5, 11]);
    assert_eq!(by_d(&|q| q.predicted = Some(1)), [5, 8, 10, 2]);
    assert_eq!(by_d(&|q| q.predicted = Some(3)), [1, 7, 4]);
    assert_eq!(by_d(&|q| q.predicted = Some(99)), Vec::<i64>::new());
    assert_eq!(by_d(&|q| q.disagreement_min = Some(0.1)), [1, 3, 8, 7, 10, 2, 4, 6]);
    assert_eq!(by_d(&|q| q.disagreement_max = Some(0.1)), [5, 9, 1, 3, 8]);
    assert_eq!(
        by_d(&|q| {
            q.disagreement_min = Some(0.1);
            q.disagreement_max = Some(0.3);
        }),
        [1, 3, 8, 7, 10]
    );
    assert_eq!(by_d(&|q| q.networks_disagree = true), [10, 2, 4, 6]);
    assert_eq!(by_d(&|q| q.unsure_only = true), [3, 12]);
    assert_eq!(by_d(&|q| q.queried_in = Some(2)), [10, 4, 6]);
    assert_eq!(by_d(&|q| q.queried_in = Some(1)), [1]);
    assert_eq!(
        by_d(&|q| {
            q.label = LabelFilter::Unlabeled;
            q.predicted = Some(1);
            q.networks_disagree = true;
        }),
        [10]
    );
    let bad = ReviewQuery { queried_in: Some(9), ..ReviewQuery::default() };
    assert!(matches!(pool.review_page(&bad, 0, 10), Err(CoreError::UnknownRound(9))));
    let bad = ReviewQuery { round: Some(7), ..ReviewQuery::default() };
    assert!(matches!(pool.review_page(&bad, 0, 10), Err(CoreError::UnknownRound(7))));
    let bad = ReviewQuery { disagreement_min: Some(f64::NAN), ..ReviewQuery::default() };
    let err = pool.review_page(&bad, 0, 10).unwrap_err();
    assert!(err.to_string().contains("disagreement_min"), "{err}");
}

/// The list as a brute-force model computes it from the fixture's constants.
fn model(q: &ReviewQuery) -> Vec<i64> {
    let pred = |id: i64| PREDICTIONS.iter().find(|p| p.0 == id);
    let label = |id: i64| LABELS.iter().find(|l| l.0 == id).map(|l| l.1);
    let class_ids = [3, 1, 2];
    let position = |c: i64| class_ids.iter().position(|&x| x == c).unwrap() as f64;
    let keep = |id: i64| {
        let p = pred(id);
        let label_ok = match q.label {
            LabelFilter::Any => true,
            LabelFilter::Labeled => label(id).is_some(),
            LabelFilter::Unlabeled => label(id).is_none(),
            LabelFilter::Class(c) => label(id) == Some(c),
        };
        let pred_ok = q.predicted.is_none_or(|c| p.is_some_and(|p| class_ids[p.3 as usize] == c))
            && q.disagreement_min.is_none_or(|m| p.is_some_and(|p| p.4 >= m))
            && q.disagreement_max.is_none_or(|m| p.is_some_and(|p| p.4 <= m))
            && (!q.networks_disagree || p.is_some_and(|p| p.1 != p.2));
        let queried = q.queried_in.is_none_or(|r| match r {
            1 => id == 1,
            _ => QUERIES.iter().any(|x| x.0 == id),
        });
        label_ok && pred_ok && queried && (!q.unsure_only || UNSURE.contains(&id))
    };
    let key = |id: i64| -> Option<f64> {
        match q.sort {
            ReviewSort::Id => Some(0.0),
            ReviewSort::Disagreement => pred(id).map(|p| p.4),
            ReviewSort::Confidence => pred(id).map(|p| p.5),
            ReviewSort::Predicted => pred(id).map(|p| p.3 as f64),
            ReviewSort::Label => label(id).map(position),
        }
    };
    let dir = |o: std::cmp::Ordering| if q.descending { o.reverse() } else { o };
    let mut keyed: Vec<(f64, i64)> =
        (1..=12).filter(|&i| keep(i)).filter_map(|i| key(i).map(|k| (k, i))).collect();
    keyed.sort_by(|a, b| dir(a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))));
    let mut rest: Vec<i64> = (1..=12).filter(|&i| keep(i) && key(i).is_none()).collect();
    rest.sort_by(|a, b| dir(a.cmp(b)));
    keyed.into_iter().map(|k| k.1).chain(rest).collect()
}

#[test]
fn every_sort_and_filter_combination_matches_the_model_and_pages_stably() {
    let (_d, pool) = fixture();
    let sorts = [
        ReviewSort::Id,
        ReviewSort::Disagreement,
        ReviewSort::Confidence,
        ReviewSort::Predicted,
        ReviewSort::Label,
    ];
    let labels = [LabelFilter::Any, LabelFilter::Labeled, LabelFilter::Unlabeled, LabelFilter::Class(1)];
    let mut checked = 0;
    for sort in sorts {
        for descending in [false, true] {
            for label in labels {
                for variant in 0..7 {
                    let mut q = ReviewQuery { sort, descending, label, ..ReviewQuery::default() };
                    match variant {
                        1 => q.predicted = Some(2),
                        2 => q.disagreement_min = Some(0.1),
                        3 => q.disagreement_max = Some(0.2),
                        4 => q.networks_disagree = true,
                        5 => q.unsure_only = true,
                        6 => q.queried_in = Some(2),
                        _ => {}
                    }
                    let expected = model(&q);
                    assert_eq!(ids(&pool, &q), expected, "{q:?}");
                    for size in [1, 3, 5] {
                        let mut paged = Vec::new();
                        let mut offset = 0;
                        loop {
                            let page = pool.review_page(&q, offset, size).unwrap();
                            assert_eq!(page.total as usize, expected.len(), "{q:?}");
                            assert!(page.rows.len() as u64 <= size);
                            if page.rows.is_empty() {
                                break;
                            }
                            offset += page.rows.len() as u64;
                            paged.extend(page.rows.iter().map(|r| r.id));
                        }
                        assert_eq!(paged, expected, "{q:?} in pages of {size}");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 5 * 2 * 4 * 7);
}

#[test]
fn without_a_predicted_round_rows_have_no_prediction_and_sorts_fall_back_to_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut pool = Pool::create(dir.path().join("fresh.unisal")).unwrap();
    pool.ensure_classes(&["x".into(), "y".into()]).unwrap();
    let mut labeled = patch(3);
    labeled.label = Some(ImportLabel::Real(2));
    pool.insert_patches(&[patch(1), patch(2), labeled]).unwrap();
    assert_eq!(pool.latest_predicted_round().unwrap(), None);
    let page = pool.review_page(&sorted(ReviewSort::Disagreement, true), 0, 10).unwrap();
    assert_eq!(page.round, None);
    assert_eq!(page.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 2, 1]);
    assert!(page.rows.iter().all(|r| r.prediction.is_none()));
    assert_eq!(page.rows[0].label, Some(2));
    assert_eq!(ids(&pool, &sorted(ReviewSort::Confidence, false)), [1, 2, 3]);
    assert_eq!(ids(&pool, &sorted(ReviewSort::Label, false)), [3, 1, 2]);
    let q = ReviewQuery { predicted: Some(1), ..ReviewQuery::default() };
    assert_eq!(pool.review_page(&q, 0, 10).unwrap().total, 0);
}

#[test]
fn review_types_serialize_as_the_ui_expects() {
    assert_eq!(serde_json::to_string(&ReviewSort::Disagreement).unwrap(), "\"disagreement\"");
    let q: ReviewQuery = serde_json::from_str(r#"{"sort":"label","descending":true}"#).unwrap();
    assert_eq!(q, ReviewQuery { sort: ReviewSort::Label, descending: true, ..ReviewQuery::default() });
    let back: ReviewQuery = serde_json::from_str(&serde_json::to_string(&q).unwrap()).unwrap();
    assert_eq!(back, q);
}
