//! Review and labeling benchmark on real project files in a temporary folder:
//! - the review list's first page (100 rows + total) for each sort key in both directions, a deep page, a
//!   filtered page, the disagreement histogram, the query batch and the network confusion, over a pool of
//!   100,000 patches with one round of predictions written by the round loop (a fake learner: the pool
//!   stores bytes and never decodes them, so tiny fake images are enough);
//! - label commit latency: 500 `set_label` calls on a 4,000-patch pool, each committed before it returns;
//! - opening a 4,000-patch project, its status and its first grid page of 100.
//!
//! Run: `cargo bench -p unisal-core --bench review` (optional arguments: patches of the large pool, runs
//! per case, e.g. `-- 100000 7`).

use std::path::Path;
use std::time::Instant;
use unisal_core::events::{CancelToken, NoProgress, ProgressSink};
use unisal_core::learner::{
    CheckpointFile, CheckpointMeta, ImageSource, Learner, LearnerError, PatchPrediction, TrainConfig,
    TrainOutcome, TrainRequest,
};
use unisal_core::pool::{ImportLabel, LabelFilter, NewPatch, PatchFilter, ReviewQuery, ReviewSort};
use unisal_core::round::{run_round, InitialSet, RoundSpec};
use unisal_core::Pool;

const CLASSES: usize = 9;
const PAGE: u64 = 100;

/// A 64-bit mix (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A learner that trains nothing and predicts a hash of the patch id: peaked probabilities, A and B
/// disagreeing on about one patch in ten, 128-d embeddings like the real pair's.
struct HashLearner;

impl HashLearner {
    fn probs(h: u64, peak: usize) -> Vec<f32> {
        let mut p: Vec<f32> = (0..CLASSES).map(|c| (mix(h ^ c as u64) % 300) as f32 / 1000.0).collect();
        p[peak] += 1.0 + (h % 2000) as f32 / 1000.0;
        let sum: f32 = p.iter().sum();
        p.iter().map(|v| v / sum).collect()
    }
}

impl Learner for HashLearner {
    fn train(
        &mut self,
        req: &TrainRequest,
        _images: &dyn ImageSource,
        _progress: &dyn ProgressSink,
        _cancel: &CancelToken,
    ) -> Result<TrainOutcome, LearnerError> {
        Ok(TrainOutcome::untrained(req.config.clone(), "fake"))
    }

    fn predict(
        &self,
        ids: &[i64],
        _images: &dyn ImageSource,
        _progress: &dyn ProgressSink,
        _cancel: &CancelToken,
    ) -> Result<Vec<PatchPrediction>, LearnerError> {
        Ok(ids
            .iter()
            .map(|&id| {
                let h = mix(id as u64);
                let a = (h % CLASSES as u64) as usize;
                let b = if (h >> 20) % 10 == 0 {
                    (a + 1 + (h >> 30) as usize % (CLASSES - 1)) % CLASSES
                } else {
                    a
                };
                let (prob_a, prob_b) = (Self::probs(h, a), Self::probs(mix(h), b));
                PatchPrediction {
                    patch_id: id,
                    pred: if (h >> 40) % 2 == 0 { a as u32 } else { b as u32 },
                    pred_a: a as u32,
                    pred_b: b as u32,
                    prob_a,
                    prob_b,
                    embedding: (0..128).map(|d| (mix(h ^ d) % 1000) as f32 / 500.0 - 1.0).collect(),
                }
            })
            .collect())
    }

    fn save_checkpoint(
        &self,
        _dir: &Path,
        _meta: &CheckpointMeta,
    ) -> Result<Vec<CheckpointFile>, LearnerError> {
        Ok(Vec::new())
    }
}

/// A project at `path` with `n` patches (images of `image_bytes` bytes), 9 classes, every `label_every`-th
/// patch labeled at import, and one trained round (random strategy, budget 100).
fn build(path: &Path, n: usize, image_bytes: usize, label_every: usize) -> Pool {
    let mut pool = Pool::create(path).expect("creating the pool");
    let names: Vec<String> = (0..CLASSES).map(|c| format!("class{c}")).collect();
    let classes = pool.ensure_classes(&names).expect("classes");
    for start in (0..n).step_by(5_000) {
        let batch: Vec<NewPatch> = (start..(start + 5_000).min(n))
            .map(|i| {
                let mut image = vec![(i % 251) as u8; image_bytes];
                image[..8].copy_from_slice(&(i as u64).to_le_bytes());
                NewPatch {
                    sha256: format!("{:064x}", i + 1),
                    width: 224,
                    height: 224,
                    source_path: format!("slide{}/patch{i:06}.png", i / 1000),
                    group: Some(format!("slide{}", i / 1000)),
                    format: "png".into(),
                    source_format: "png".into(),
                    note: None,
                    thumbnail: image[..image_bytes.min(4096)].to_vec(),
                    image,
                    thumbnail_format: "png".into(),
                    label: (i % label_every == 0).then(|| ImportLabel::Real(classes[i % CLASSES].id)),
                }
            })
            .collect();
        pool.insert_patches(&batch).expect("inserting patches");
    }
    let spec = RoundSpec {
        strategy: "random".into(),
        budget: 100,
        config: TrainConfig::preset("cpu-small").expect("preset"),
        seed: 1,
        initial: InitialSet::AlreadyLabeled,
    };
    run_round(&mut pool, &mut HashLearner, &spec, &NoProgress, &CancelToken::new()).expect("round");
    pool
}

/// Milliseconds of each of `runs` calls of `f`, and the last result.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Vec<f64>, T) {
    let mut ms = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        last = Some(f());
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    (ms, last.expect("at least one run"))
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn row(case: &str, ms: &[f64], note: &str) {
    println!("{case:<52} {:>9.2} {:>9.2}  {note}", quantile(ms, 0.5), ms[ms.len() - 1]);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(7).max(1);
    let dir = tempfile::tempdir().expect("temporary folder");

    let start = Instant::now();
    let big = build(&dir.path().join("big.unisal"), n, 64, 50);
    let round = big.latest_predicted_round().expect("round").expect("a predicted round");
    let size = std::fs::metadata(big.path()).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    println!(
        "large pool: {n} patches, {CLASSES} classes, {} labeled, round {round} with {} predictions; \
         {size:.0} MB; built in {:.1} s; {runs} runs a case",
        big.status().expect("status").labeled,
        big.round_row_counts(round).expect("counts").0,
        start.elapsed().as_secs_f64()
    );
    println!("{:<52} {:>9} {:>9}  note", "case", "median ms", "max ms");
    let sorts = [
        ("id", ReviewSort::Id),
        ("disagreement", ReviewSort::Disagreement),
        ("confidence", ReviewSort::Confidence),
        ("predicted", ReviewSort::Predicted),
        ("label", ReviewSort::Label),
    ];
    for (name, sort) in sorts {
        for descending in [false, true] {
            let q = ReviewQuery { sort, descending, ..ReviewQuery::default() };
            let (ms, page) = time(runs, || big.review_page(&q, 0, PAGE).expect("review page"));
            let dir = if descending { "desc" } else { "asc" };
            row(
                &format!("review page 1, sort {name} {dir}"),
                &ms,
                &format!("{} rows of {}", page.rows.len(), page.total),
            );
        }
    }
    let deep = ReviewQuery { sort: ReviewSort::Disagreement, descending: true, ..ReviewQuery::default() };
    let (ms, page) = time(runs, || big.review_page(&deep, n as u64 / 2, PAGE).expect("deep page"));
    row("review page at offset n/2, sort disagreement desc", &ms, &format!("{} rows", page.rows.len()));
    let class = big.classes().expect("classes")[3].id;
    let filtered = ReviewQuery {
        sort: ReviewSort::Disagreement,
        descending: true,
        label: LabelFilter::Unlabeled,
        predicted: Some(class),
        ..ReviewQuery::default()
    };
    let (ms, page) = time(runs, || big.review_page(&filtered, 0, PAGE).expect("filtered page"));
    row(
        "review page 1, unlabeled + predicted class, disagr. desc",
        &ms,
        &format!("{} rows of {}", page.rows.len(), page.total),
    );
    let disagree =
        ReviewQuery { sort: ReviewSort::Confidence, networks_disagree: true, ..ReviewQuery::default() };
    let (ms, page) = time(runs, || big.review_page(&disagree, 0, PAGE).expect("disagree page"));
    row(
        "review page 1, networks disagree, confidence asc",
        &ms,
        &format!("{} rows of {}", page.rows.len(), page.total),
    );
    let (ms, h) = time(runs, || big.disagreement_histogram(round, 50).expect("histogram"));
    row("disagreement histogram, 50 bins", &ms, &format!("{} scores", h.counts.iter().sum::<u64>()));
    let (ms, batch) = time(runs, || big.query_batch(None).expect("batch").expect("a batch"));
    row("query batch (newest round)", &ms, &format!("{} items", batch.items.len()));
    let (ms, c) = time(runs, || big.network_confusion(round).expect("confusion"));
    row("network confusion", &ms, &format!("{} of {} agree", c.agree, c.total));
    drop(big);

    let small_path = dir.path().join("small.unisal");
    let start = Instant::now();
    let mut small = build(&small_path, 4_000, 24_000, 1_000_000);
    println!(
        "small pool: 4000 patches (24 kB images, 4 kB thumbnails), {:.0} MB, built in {:.1} s",
        std::fs::metadata(&small_path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    let ids: Vec<i64> = small.unlabeled_ids().expect("ids").into_iter().take(500).collect();
    let classes: Vec<i64> = small.classes().expect("classes").iter().map(|c| c.id).collect();
    let mut latencies: Vec<f64> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let start = Instant::now();
            small.set_label(id, classes[i % classes.len()]).expect("set_label");
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "label commit, {} set_label calls (each committed): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    drop(small);
    let (ms, page) = time(runs, || {
        let pool = Pool::open(&small_path).expect("open");
        let status = pool.status().expect("status");
        let page = pool.page_patches(0, PAGE, &PatchFilter::default()).expect("page");
        (status.patches, page.len())
    });
    row(
        "open 4000-patch pool + status + page_patches(100)",
        &ms,
        &format!("{} of {} patches", page.1, page.0),
    );
    let (ms, items) = time(runs, || {
        let pool = Pool::open(&small_path).expect("open");
        pool.status().expect("status");
        pool.query_batch(None).expect("batch").map_or(0, |b| b.items.len())
    });
    row("open 4000-patch pool + status + query_batch", &ms, &format!("{items} items"));
}
