//! Hand-computed checks of the selection module: k-means on well-separated clusters, UniSAL's candidate
//! handling and top-up order, the uncertainty rankings, Core-Set and BADGE on tiny pools, and the input
//! validation messages.

use unisal_core::learner::PatchPrediction;
use unisal_core::selection::{
    kmeans, strategy_by_name, Badge, CoreSet, Entropy, KMeansAlgorithm, KMeansConfig, LeastConfidence,
    Margin, QueryStrategy, Reason, SelectionInput, SelectionInputParts, UniSal,
};
use unisal_core::CoreError;

const ALGORITHMS: [KMeansAlgorithm; 3] =
    [KMeansAlgorithm::Elkan, KMeansAlgorithm::Hamerly, KMeansAlgorithm::Auto];

/// Blobs of `per` points around far-apart centers in `dim` dimensions; returns points and their blob.
fn blobs(centers: usize, per: usize, dim: usize) -> (Vec<f32>, Vec<usize>) {
    let mut points = Vec::new();
    let mut blob = Vec::new();
    for c in 0..centers {
        for p in 0..per {
            for d in 0..dim {
                let jitter = ((p * 31 + d * 17) % 11) as f32 / 11.0 - 0.5;
                points.push(if d == c % dim { 100.0 * (c / dim + 1) as f32 } else { 0.0 } + jitter);
            }
            blob.push(c);
        }
    }
    (points, blob)
}

#[test]
fn kmeans_finds_well_separated_clusters_and_assigns_to_nearest() {
    let (points, blob) = blobs(5, 30, 8);
    for (seed, algorithm) in (0..12).zip(ALGORITHMS.iter().cycle()) {
        let config = KMeansConfig { algorithm: *algorithm, ..KMeansConfig::default() };
        let result = kmeans(&points, 8, 5, &config, seed).expect("k-means");
        assert!(result.converged, "seed {seed}: not converged after {} iterations", result.iterations);
        assert_eq!(result.sizes.iter().sum::<usize>(), 150);
        assert!(result.sizes.iter().all(|&s| s == 30), "seed {seed}: sizes {:?}", result.sizes);
        for i in 0..150 {
            let same = (0..150)
                .filter(|&j| blob[j] == blob[i])
                .all(|j| result.assignment[j] == result.assignment[i]);
            assert!(same, "seed {seed}: blob {} split", blob[i]);
        }
        let mut picked: Vec<usize> = result.representatives(&points).iter().map(|&(i, _)| blob[i]).collect();
        picked.sort_unstable();
        assert_eq!(picked, vec![0, 1, 2, 3, 4], "seed {seed}: one representative per blob");
    }
}

#[test]
fn kmeans_assignment_is_the_nearest_centroid() {
    let points: Vec<f32> = (0..4000).map(|i| ((i * 7919) % 1009) as f32 / 100.0).collect();
    let mut results = Vec::new();
    for algorithm in ALGORITHMS {
        let config = KMeansConfig { algorithm, ..KMeansConfig::default() };
        let result = kmeans(&points, 8, 23, &config, 3).expect("k-means");
        for (i, point) in points.chunks_exact(8).enumerate() {
            let dist =
                |j: usize| point.iter().zip(result.centroid(j)).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
            let nearest = (0..23).map(dist).fold(f32::INFINITY, f32::min);
            assert!(dist(result.assignment[i]) <= nearest * (1.0 + 1e-5) + 1e-6, "{algorithm:?}: point {i}");
        }
        results.push(result);
    }
    // Elkan and Hamerly accelerate the same Lloyd iterations.
    assert_eq!(results[0].assignment, results[1].assignment);
    assert_eq!(results[0].iterations, results[1].iterations);
}

#[test]
fn kmeans_refuses_bad_arguments_and_handles_duplicates() {
    let config = KMeansConfig::default();
    let points = [1.0f32; 12];
    assert!(matches!(kmeans(&points, 3, 0, &config, 0), Err(CoreError::Invalid { field: "k", .. })));
    assert!(matches!(kmeans(&points, 3, 5, &config, 0), Err(CoreError::Invalid { field: "k", .. })));
    assert!(matches!(kmeans(&points, 5, 1, &config, 0), Err(CoreError::Invalid { field: "dim", .. })));
    let bad = KMeansConfig { max_iters: 0, ..KMeansConfig::default() };
    assert!(matches!(kmeans(&points, 3, 1, &bad, 0), Err(CoreError::Invalid { field: "kmeans", .. })));
    let mut nan = points;
    nan[4] = f32::NAN;
    let message = kmeans(&nan, 3, 2, &config, 0).expect_err("NaN refused").to_string();
    assert!(message.contains("point 1"), "{message}");
    // Four identical points, K = 4: four distinct representatives all the same.
    for algorithm in ALGORITHMS {
        let config = KMeansConfig { algorithm, ..KMeansConfig::default() };
        let result = kmeans(&points, 3, 4, &config, 0).expect("duplicates");
        let mut reps: Vec<usize> = result.representatives(&points).iter().map(|&(i, _)| i).collect();
        reps.sort_unstable();
        assert_eq!(reps, vec![0, 1, 2, 3]);
    }
}

/// One patch: id, pA, pB, embedding.
type Row = (i64, [f32; 3], [f32; 3], [f32; 2]);

/// A pool from rows.
fn pool(rows: &[Row]) -> SelectionInput {
    SelectionInput::new(
        rows.iter().map(|r| r.0).collect(),
        3,
        rows.iter().flat_map(|r| r.1).collect(),
        rows.iter().flat_map(|r| r.2).collect(),
        2,
        rows.iter().flat_map(|r| r.3).collect(),
    )
    .expect("valid pool")
}

const AGREE_HIGH_JSD: ([f32; 3], [f32; 3]) = ([0.5, 0.45, 0.05], [0.5, 0.05, 0.45]);
const DISAGREE_LOW_JSD: ([f32; 3], [f32; 3]) = ([0.36, 0.34, 0.3], [0.34, 0.36, 0.3]);

#[test]
fn unisal_ignores_agreeing_patches_when_enough_candidates_and_picks_one_per_cluster() {
    let (pa, pb) = DISAGREE_LOW_JSD;
    let (aa, ab) = AGREE_HIGH_JSD;
    let mut rows = Vec::new();
    // Three tight groups of disagreeing patches, far apart; agreeing patches with far higher JSD.
    for (group, center) in [[0.0f32, 0.0], [50.0, 0.0], [0.0, 50.0]].iter().enumerate() {
        for k in 0..4 {
            let id = (group * 10 + k) as i64;
            rows.push((id, pa, pb, [center[0] + k as f32 * 0.1, center[1]]));
        }
    }
    for id in 100..110 {
        rows.push((id, aa, ab, [25.0, 25.0]));
    }
    let input = pool(&rows);
    for seed in 0..5 {
        let selection = UniSal::default().select(&input, 3, seed).expect("unisal");
        assert_eq!((selection.candidates, selection.topped_up), (Some(12), 0));
        let mut groups: Vec<i64> = selection.ids().iter().map(|id| id / 10).collect();
        groups.sort_unstable();
        assert_eq!(groups, vec![0, 1, 2], "seed {seed}: {:?}", selection.ids());
        for item in &selection.items {
            assert!(matches!(item.reason, Reason::DisagreeCluster { size: 4, .. }), "{:?}", item.reason);
            // Nearest to the centroid (offsets 0, .1, .2, .3: centroid .15) is offset .1 or .2 → id % 10 in 1..=2.
            assert!(matches!(item.patch_id % 10, 1 | 2), "seed {seed}: {} is not central", item.patch_id);
        }
    }
}

#[test]
fn unisal_tops_up_by_descending_jsd_then_id() {
    let (pa, pb) = DISAGREE_LOW_JSD;
    let rows = [
        (5, pa, pb, [0.0, 0.0]),
        (3, [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [1.0, 0.0]),
        // Agreeing: ids 40 and 41 tie on the highest JSD, then 30, then 20 (lowest), 10 (zero).
        (41, [0.5, 0.45, 0.05], [0.5, 0.05, 0.45], [0.0, 1.0]),
        (20, [0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.0, 2.0]),
        (40, [0.5, 0.45, 0.05], [0.5, 0.05, 0.45], [0.0, 3.0]),
        (10, [0.8, 0.1, 0.1], [0.8, 0.1, 0.1], [0.0, 4.0]),
        (30, [0.6, 0.3, 0.1], [0.6, 0.1, 0.3], [0.0, 5.0]),
    ];
    let selection = UniSal::default().select(&pool(&rows), 6, 0).expect("unisal");
    // Candidates first by JSD: id 3 (0.2/0.7 vs 0.6/0.3) is far above id 5.
    assert_eq!(selection.ids(), vec![3, 5, 40, 41, 30, 20]);
    assert_eq!((selection.candidates, selection.topped_up), (Some(2), 4));
    let reasons: Vec<String> = selection.items.iter().map(|i| i.reason.to_string()).collect();
    assert_eq!(reasons[0], "disagree: all candidates taken");
    assert_eq!(reasons[2..], vec!["top-up: highest JSD"; 4]);
}

#[test]
fn uncertainty_rankings_by_hand() {
    let e = [0.0f32, 0.0];
    let rows = [
        (1, [0.9, 0.05, 0.05], [0.9, 0.05, 0.05], e),   // confident
        (2, [0.4, 0.35, 0.25], [0.4, 0.35, 0.25], e),   // small margin 0.05
        (3, [0.34, 0.33, 0.33], [0.34, 0.33, 0.33], e), // near uniform
        (4, [0.5, 0.5, 0.0], [0.5, 0.5, 0.0], e),       // zero margin, lower entropy
    ];
    let input = pool(&rows);
    let ids = |s: &dyn QueryStrategy| s.select(&input, 4, 0).expect("select").ids();
    assert_eq!(ids(&Entropy), vec![3, 2, 4, 1]);
    assert_eq!(ids(&LeastConfidence), vec![3, 2, 4, 1]);
    assert_eq!(ids(&Margin), vec![4, 3, 2, 1]);
    let entropy = Entropy.select(&input, 1, 0).expect("entropy");
    let expected = -(0.34f64 * 0.34f64.ln() + 2.0 * 0.33 * 0.33f64.ln());
    assert!((entropy.items[0].score - expected).abs() < 1e-5, "{} vs {expected}", entropy.items[0].score);
}

#[test]
fn coreset_is_k_center_greedy() {
    let p = [0.8f32, 0.1, 0.1];
    let rows: Vec<_> =
        [1.0f32, 2.0, 10.0, 11.0].iter().enumerate().map(|(i, &x)| (i as i64, p, p, [x, 0.0])).collect();
    let input = pool(&rows).with_labeled_embeddings(vec![0.0, 0.0]).expect("labeled");
    let selection = CoreSet.select(&input, 3, 0).expect("coreset");
    // From the labeled 0: farthest is 11 (id 3). Then distances 1, 2, 1 → x = 2 (id 1). Then 1, 1 → tie, id 0.
    assert_eq!(selection.ids(), vec![3, 1, 0]);
    let scores: Vec<f64> = selection.items.iter().map(|i| i.score).collect();
    assert_eq!(scores, vec![11.0, 2.0, 1.0]);
    // Without labeled embeddings the first pick is a seeded random start.
    let selection = CoreSet.select(&pool(&rows), 2, 4).expect("coreset");
    assert_eq!(selection.items[0].reason, Reason::RandomStart);
}

#[test]
fn badge_starts_from_the_largest_gradient_embedding() {
    let rows = [
        (7, [0.9f32, 0.05, 0.05], [0.9, 0.05, 0.05], [1.0f32, 0.0]),
        (8, [0.4, 0.35, 0.25], [0.4, 0.35, 0.25], [3.0, 0.0]),
        (9, [0.4, 0.35, 0.25], [0.4, 0.35, 0.25], [0.0, 1.0]),
    ];
    let selection = Badge.select(&pool(&rows), 2, 0).expect("badge");
    assert_eq!(selection.items[0].patch_id, 8);
    assert_eq!(selection.items[0].reason, Reason::LargestGradient);
    // r = p - onehot(0) = (-0.6, 0.35, 0.25): |r|^2 = 0.545; |g| = sqrt(0.545) * 3.
    assert!((selection.items[0].score - 0.545f64.sqrt() * 3.0).abs() < 1e-4, "{}", selection.items[0].score);
}

#[test]
fn bad_input_is_refused_with_the_field_and_patch_named() {
    let ok = || (vec![4i64, 9], vec![0.5f32, 0.5, 0.9, 0.1], vec![0.5f32, 0.5, 0.2, 0.8], vec![0.0f32, 1.0]);
    let message = |r: Result<SelectionInput, CoreError>| r.expect_err("refused").to_string();

    let (ids, a, b, e) = ok();
    assert!(SelectionInput::new(ids, 2, a, b, 1, e).is_ok());
    let (ids, mut a, b, e) = ok();
    a.pop();
    let m = message(SelectionInput::new(ids, 2, a, b, 1, e));
    assert!(m.contains("probs_a") && m.contains("expected 2 patches x 2 classes = 4"), "{m}");
    let (ids, a, b, mut e) = ok();
    e[1] = f32::NAN;
    let m = message(SelectionInput::new(ids, 2, a, b, 1, e));
    assert!(m.contains("embeddings") && m.contains("patch 9") && m.contains("NaN"), "{m}");
    let (ids, a, mut b, e) = ok();
    b[3] = 0.5;
    let m = message(SelectionInput::new(ids, 2, a, b, 1, e));
    assert!(m.contains("probs_b") && m.contains("patch 9") && m.contains("summing to 0.7"), "{m}");
    let (ids, mut a, b, e) = ok();
    a[0] = -0.5;
    a[1] = 1.5;
    let m = message(SelectionInput::new(ids, 2, a, b, 1, e));
    assert!(m.contains("probs_a") && m.contains("patch 4") && m.contains("outside [0, 1]"), "{m}");
    let (_, a, b, e) = ok();
    let m = message(SelectionInput::new(vec![3, 3], 2, a, b, 1, e));
    assert!(m.contains("ids") && m.contains("patch id 3 appears more than once"), "{m}");
    let m = message(SelectionInput::new(vec![1], 1, vec![1.0], vec![1.0], 1, vec![0.0]));
    assert!(m.contains("num_classes"), "{m}");
    let (ids, a, b, e) = ok();
    let input = SelectionInput::new(ids, 2, a, b, 1, e).expect("valid");
    let m = message(input.clone().with_labeled_embeddings(vec![f32::INFINITY]));
    assert!(m.contains("labeled_embeddings") && m.contains("labeled row 0"), "{m}");
    assert!(strategy_by_name("unisal").expect("unisal").select(&input, 2, 0).is_ok());
}

#[test]
fn from_predictions_matches_flat_arrays_and_names_ragged_patches() {
    let prediction = |patch_id: i64, prob_a: Vec<f32>, prob_b: Vec<f32>, embedding: Vec<f32>| {
        PatchPrediction { patch_id, pred_a: 0, pred_b: 0, pred: 0, prob_a, prob_b, embedding }
    };
    let predictions = vec![
        prediction(12, vec![0.3, 0.7], vec![0.6, 0.4], vec![1.0, 2.0]),
        prediction(5, vec![0.9, 0.1], vec![0.8, 0.2], vec![3.0, 4.0]),
    ];
    let input = SelectionInput::from_predictions(&predictions, vec![0.0, 0.0], 2).expect("valid");
    assert_eq!(input.ids(), &[5, 12]);
    assert_eq!(input.embedding(1), &[1.0, 2.0]);
    assert_eq!(input.labeled_count(), 1);
    let flat = SelectionInput::new(
        vec![12, 5],
        2,
        vec![0.3, 0.7, 0.9, 0.1],
        vec![0.6, 0.4, 0.8, 0.2],
        2,
        vec![1.0, 2.0, 3.0, 4.0],
    )
    .expect("valid");
    assert_eq!(input.scores(), flat.scores());
    // Patch 12 disagrees (B says class 0, A class 1): the ensemble is the normalised geometric mean.
    let s = input.scores()[1];
    assert!(!s.agree);
    let (g0, g1) = ((0.3f64 * 0.6).sqrt(), (0.7f64 * 0.4).sqrt());
    assert!((s.confidence - g1 / (g0 + g1)).abs() < 1e-6, "{}", s.confidence);

    let mut ragged = predictions.clone();
    ragged[1].embedding.push(5.0);
    let m = SelectionInput::from_predictions(&ragged, Vec::new(), 2).expect_err("ragged").to_string();
    assert!(m.contains("patch 5") && m.contains("3-d embedding"), "{m}");
    ragged[1].prob_b.push(0.0);
    let m = SelectionInput::from_predictions(&ragged, Vec::new(), 2).expect_err("ragged").to_string();
    assert!(m.contains("patch 5") && m.contains("class probabilities"), "{m}");
}

#[test]
fn coreset_matches_a_brute_force_k_center_greedy() {
    // 300 points in 6-d on a coarse grid of 4 blobs, 7 labeled points; compared with the textbook loop.
    let (n, dim) = (300usize, 6usize);
    let value = |i: usize, d: usize| ((i * 7919 + d * 104_729) % 97) as f32 / 97.0 + ((i % 4) * 3) as f32;
    let embeddings: Vec<f32> = (0..n).flat_map(|i| (0..dim).map(move |d| value(i, d))).collect();
    let labeled: Vec<f32> = (0..7 * dim).map(|v| ((v * 31) % 53) as f32 / 10.0).collect();
    let p = [0.8f32, 0.1, 0.1];
    let input =
        SelectionInput::new((0..n as i64).collect(), 3, p.repeat(n), p.repeat(n), dim, embeddings.clone())
            .expect("valid")
            .with_labeled_embeddings(labeled.clone())
            .expect("labeled");
    let sq = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
    let mut nearest: Vec<f32> = embeddings
        .chunks_exact(dim)
        .map(|x| labeled.chunks_exact(dim).map(|c| sq(x, c)).fold(f32::INFINITY, f32::min))
        .collect();
    let mut expected = Vec::new();
    for _ in 0..40 {
        let next = (0..n).fold(0, |best, i| if nearest[i] > nearest[best] { i } else { best });
        expected.push(next as i64);
        let center = embeddings[next * dim..(next + 1) * dim].to_vec();
        for (i, x) in embeddings.chunks_exact(dim).enumerate() {
            nearest[i] = nearest[i].min(sq(x, &center));
        }
    }
    assert_eq!(CoreSet.select(&input, 40, 0).expect("coreset").ids(), expected);
}

#[test]
fn given_ensemble_probabilities_are_validated_and_used() {
    let parts = SelectionInputParts {
        ids: vec![1, 2],
        num_classes: 2,
        probs_a: vec![0.9, 0.1, 0.6, 0.4],
        probs_b: vec![0.9, 0.1, 0.6, 0.4],
        ensemble_probs: Some(vec![0.5, 0.5, 0.99, 0.01]),
        embed_dim: 1,
        embeddings: vec![0.0, 1.0],
        labeled_embeddings: Vec::new(),
    };
    // From A and B alone patch 2 is the uncertain one; the learner's ensemble says patch 1.
    let input = SelectionInput::from_parts(parts.clone()).expect("valid");
    assert_eq!(Entropy.select(&input, 1, 0).expect("entropy").ids(), vec![1]);
    assert!((input.scores()[0].confidence - 0.5).abs() < 1e-6);
    let derived = SelectionInput::from_parts(SelectionInputParts { ensemble_probs: None, ..parts.clone() });
    assert_eq!(Entropy.select(&derived.expect("valid"), 1, 0).expect("entropy").ids(), vec![2]);
    let bad = SelectionInputParts { ensemble_probs: Some(vec![0.5, 0.5, 0.9]), ..parts };
    let m = SelectionInput::from_parts(bad).expect_err("ragged ensemble").to_string();
    assert!(m.contains("ensemble_probs") && m.contains("expected 2 patches x 2 classes = 4"), "{m}");
}
