//! Property tests (proptest) of the query strategies over random pool sizes, class counts, embedding
//! dimensions, duplicate-heavy embeddings, budgets, seeds and permutations of the input order.

mod selection_support;

use proptest::prelude::*;
use selection_support::{synthetic, Shape};
use std::collections::HashSet;
use unisal_core::selection::{
    all_strategies, jensen_shannon, kmeans, KMeansAlgorithm, KMeansConfig, QueryStrategy, Reason, UniSal,
    STRATEGY_NAMES,
};

fn shapes() -> impl Strategy<Value = Shape> {
    (0usize..60, 2usize..7, 1usize..12, 0.0f64..=1.0, 1u64..6, 0usize..5).prop_map(
        |(n, classes, dim, disagree, levels, labeled)| Shape { n, classes, dim, disagree, levels, labeled },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_strategy_conforms(
        shape in shapes(),
        pool_seed in any::<u64>(),
        budget in 0usize..70,
        seed in any::<u64>(),
        shuffle in any::<u64>(),
    ) {
        let pool = synthetic(shape, pool_seed);
        let input = pool.input();
        let shuffled = pool.shuffled(shuffle).input();
        let want = budget.min(pool.len());
        let ids: HashSet<i64> = pool.ids.iter().copied().collect();
        for strategy in all_strategies() {
            let selection = strategy.select(&input, budget, seed).unwrap();
            prop_assert!(STRATEGY_NAMES.contains(&selection.strategy.as_str()));
            prop_assert_eq!(selection.items.len(), want);
            let chosen: HashSet<i64> = selection.ids().into_iter().collect();
            prop_assert_eq!(chosen.len(), want, "{} chose a patch twice", strategy.name());
            prop_assert!(chosen.is_subset(&ids));
            prop_assert!(selection.items.iter().all(|item| item.score.is_finite()));
            prop_assert!(selection.items.iter().enumerate().all(|(rank, item)| item.rank == rank));
            let from_shuffled = strategy.select(&shuffled, budget, seed).unwrap();
            prop_assert_eq!(&from_shuffled, &selection, "{} depends on input order", strategy.name());
        }
    }

    #[test]
    fn unisal_prefers_disagreement_and_tops_up_only_when_short(
        shape in shapes(),
        pool_seed in any::<u64>(),
        budget in 0usize..70,
        seed in any::<u64>(),
    ) {
        let input = synthetic(shape, pool_seed).input();
        let scores = input.scores();
        let disagreeing: HashSet<i64> = scores.iter().filter(|s| !s.agree).map(|s| s.patch_id).collect();
        let want = budget.min(input.len());
        let selection = UniSal::default().select(&input, budget, seed).unwrap();
        prop_assert_eq!(selection.candidates, Some(disagreeing.len()));
        prop_assert_eq!(selection.topped_up, want.saturating_sub(disagreeing.len()));
        let taken = want - selection.topped_up;
        for (rank, item) in selection.items.iter().enumerate() {
            let is_candidate = disagreeing.contains(&item.patch_id);
            prop_assert_eq!(is_candidate, rank < taken, "rank {} reason {}", rank, &item.reason);
            prop_assert_eq!(matches!(item.reason, Reason::TopUpJsd), rank >= taken);
        }
        // Ranked by descending JSD within each part.
        for pair in selection.items[..taken].windows(2).chain(selection.items[taken..].windows(2)) {
            prop_assert!(pair[0].score >= pair[1].score);
        }
    }

    #[test]
    fn jsd_is_bounded_symmetric_and_zero_on_itself(
        raw in (2usize..8).prop_flat_map(|c| (prop::collection::vec(0.0f32..1.0, c), prop::collection::vec(0.0f32..1.0, c))),
    ) {
        let (mut p, mut q) = raw;
        p[0] += 0.01;
        q[0] += 0.01;
        let pq = jensen_shannon(&p, &q);
        prop_assert!((0.0..=std::f64::consts::LN_2).contains(&pq));
        prop_assert!((pq - jensen_shannon(&q, &p)).abs() < 1e-12);
        prop_assert!(jensen_shannon(&p, &p) < 1e-12);
    }

    #[test]
    fn kmeans_assigns_to_the_nearest_centroid_and_represents_every_cluster(
        (dim, points) in (1usize..6).prop_flat_map(|dim| (Just(dim), prop::collection::vec(0u8..4, dim..dim * 40))),
        k_fraction in 0.0f64..1.0,
        seed in any::<u64>(),
        elkan in any::<bool>(),
    ) {
        let n = points.len() / dim;
        let points: Vec<f32> = points[..n * dim].iter().map(|&v| f32::from(v) * 0.5).collect();
        let k = 1 + ((n - 1) as f64 * k_fraction) as usize;
        let algorithm = if elkan { KMeansAlgorithm::Elkan } else { KMeansAlgorithm::Hamerly };
        let config = KMeansConfig { algorithm, ..KMeansConfig::default() };
        let result = kmeans(&points, dim, k, &config, seed).unwrap();
        prop_assert_eq!(result.sizes.iter().sum::<usize>(), n);
        for (i, point) in points.chunks_exact(dim).enumerate() {
            let dist = |j: usize| point.iter().zip(result.centroid(j)).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
            let nearest = (0..k).map(dist).fold(f32::INFINITY, f32::min);
            prop_assert!(dist(result.assignment[i]) <= nearest + 1e-4, "point {} of {}", i, n);
        }
        let reps = result.representatives(&points);
        prop_assert_eq!(reps.len(), k);
        let distinct: HashSet<usize> = reps.iter().map(|&(i, _)| i).collect();
        prop_assert_eq!(distinct.len(), k);
        let clusters: HashSet<usize> = reps.iter().map(|&(_, j)| j).collect();
        prop_assert_eq!(clusters.len(), k);
        let again = kmeans(&points, dim, k, &config, seed).unwrap();
        prop_assert_eq!(again, result);
    }
}
