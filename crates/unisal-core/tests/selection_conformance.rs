//! The conformance suite every query strategy passes: exactly `min(budget, n)` distinct patches, all from
//! the pool, ranked 0.., finite scores, same seed same result, invariant to the order of the patches.
//! Run for every strategy in `STRATEGY_NAMES` over pools of many shapes (empty, tiny, all agreeing, all
//! disagreeing, duplicates, with labeled embeddings).

mod selection_support;

use selection_support::{synthetic, Pool, Shape};
use std::collections::HashSet;
use unisal_core::selection::{all_strategies, strategy_by_name, QueryStrategy, STRATEGY_NAMES};

/// Check one strategy on one pool, budget and seed; returns the selected ids.
fn conforms(strategy: &dyn QueryStrategy, pool: &Pool, budget: usize, seed: u64) -> Vec<i64> {
    let name = strategy.name();
    let input = pool.input();
    let selection = strategy.select(&input, budget, seed).unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = budget.min(pool.len());
    let context = format!("{name}, n={}, budget={budget}, seed={seed}", pool.len());

    assert_eq!(selection.strategy, name, "{context}");
    assert_eq!(selection.items.len(), want, "{context}: count");
    let ids = selection.ids();
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "{context}: duplicates in {ids:?}");
    let pool_ids: HashSet<i64> = pool.ids.iter().copied().collect();
    assert!(unique.is_subset(&pool_ids), "{context}: ids outside the pool");
    for (rank, item) in selection.items.iter().enumerate() {
        assert_eq!(item.rank, rank, "{context}: ranks");
        assert!(item.score.is_finite(), "{context}: score {} of patch {}", item.score, item.patch_id);
        assert!(!item.reason.to_string().is_empty());
    }
    assert!(selection.topped_up <= want, "{context}: top-ups");
    for s in input.scores() {
        let values = [s.jsd, s.confidence, s.entropy, s.margin, s.conf_a, s.conf_b];
        assert!(values.iter().all(|v| v.is_finite()), "{context}: scores of patch {}", s.patch_id);
        assert!((0.0..=std::f64::consts::LN_2).contains(&s.jsd), "{context}: jsd {}", s.jsd);
    }

    let again = strategy.select(&pool.input(), budget, seed).expect("second run");
    assert_eq!(again, selection, "{context}: same seed, different result");
    for shuffle_seed in [1, 2] {
        let shuffled = strategy.select(&pool.shuffled(shuffle_seed).input(), budget, seed).expect("shuffled");
        assert_eq!(shuffled, selection, "{context}: result depends on the order of the patches");
    }
    let reversed: Vec<usize> = (0..pool.len()).rev().collect();
    let reversed = strategy.select(&pool.permuted(&reversed).input(), budget, seed).expect("reversed");
    assert_eq!(reversed, selection, "{context}: reversed order");
    ids
}

fn every_strategy(pool: &Pool, budgets: &[usize]) {
    let strategies = all_strategies();
    assert_eq!(strategies.len(), STRATEGY_NAMES.len());
    for strategy in &strategies {
        for &budget in budgets {
            for seed in [0, 17] {
                conforms(strategy.as_ref(), pool, budget, seed);
            }
        }
    }
}

#[test]
fn names_round_trip_and_unknown_names_list_the_valid_ones() {
    for name in STRATEGY_NAMES {
        assert_eq!(strategy_by_name(name).expect(name).name(), name);
    }
    assert_eq!(strategy_by_name("Least_Confidence").expect("alias").name(), "least-confidence");
    assert_eq!(strategy_by_name("core-set").expect("alias").name(), "coreset");
    let message = strategy_by_name("uncertainty").err().expect("unknown name refused").to_string();
    assert!(message.contains("\"uncertainty\""), "{message}");
    for name in STRATEGY_NAMES {
        assert!(message.contains(name), "{message} should list {name}");
    }
}

#[test]
fn mixed_pool() {
    every_strategy(&synthetic(Shape::default(), 1), &[0, 1, 7, 25, 40, 41, 199, 200, 500]);
}

#[test]
fn empty_and_tiny_pools() {
    for n in [0, 1, 2, 3] {
        every_strategy(&synthetic(Shape { n, ..Shape::default() }, n as u64), &[0, 1, 2, 5]);
    }
}

#[test]
fn all_agreeing_and_all_disagreeing() {
    every_strategy(&synthetic(Shape { n: 60, disagree: 0.0, ..Shape::default() }, 2), &[0, 5, 60, 61]);
    every_strategy(&synthetic(Shape { n: 60, disagree: 1.0, ..Shape::default() }, 3), &[0, 5, 59, 60, 61]);
}

#[test]
fn duplicate_embeddings_and_ties() {
    // Two levels per dimension over 3 dimensions: at most 8 distinct points per class, many exact ties.
    let shape = Shape { n: 80, dim: 3, levels: 2, disagree: 0.6, classes: 2, labeled: 0 };
    every_strategy(&synthetic(shape, 4), &[3, 10, 30, 47, 80]);
    // Every embedding identical.
    let shape = Shape { n: 30, dim: 4, levels: 1, disagree: 1.0, classes: 3, labeled: 0 };
    let mut pool = synthetic(shape, 5);
    pool.embeddings.iter_mut().for_each(|v| *v = 0.25);
    every_strategy(&pool, &[1, 4, 29, 30]);
}

#[test]
fn with_labeled_embeddings() {
    every_strategy(&synthetic(Shape { labeled: 12, ..Shape::default() }, 6), &[1, 9, 50]);
}

#[test]
fn the_seed_matters_for_random() {
    let pool = synthetic(Shape::default(), 7);
    let strategy = strategy_by_name("random").expect("random");
    let a = conforms(strategy.as_ref(), &pool, 20, 1);
    let b = conforms(strategy.as_ref(), &pool, 20, 2);
    assert_ne!(a, b, "random with different seeds chose the same 20 of 200");
}
