//! Selection benchmark: every strategy over a synthetic pool shaped like the reference's CRC100K setting
//! (100,000 patches, 9 classes, 128-d embeddings, 10% of patches where the networks disagree), budgets 180
//! and 1,000. Prints the median and minimum wall time of several runs per case.
//!
//! Run: `cargo bench -p unisal-core --bench selection` (optional arguments: patches, repeats, and a
//! comma-separated list of strategies, e.g. `-- 100000 5 unisal,random`).

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;
use unisal_core::selection::{kmeans, strategy_by_name, KMeansConfig, SelectionInput, STRATEGY_NAMES};

const CLASSES: usize = 9;
const DIM: usize = 128;

fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = uniform(rng).max(1e-300);
    let u2 = uniform(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A peaked probability vector: `peak` gets most of the mass, the rest is spread at random.
fn probabilities(rng: &mut ChaCha8Rng, peak: usize, out: &mut Vec<f32>) {
    let mut row: Vec<f64> = (0..CLASSES).map(|_| uniform(rng) * 0.3).collect();
    row[peak] += 1.0 + uniform(rng) * 2.0;
    let total: f64 = row.iter().sum();
    out.extend(row.iter().map(|v| (v / total) as f32));
}

/// A pool of `n` patches in `CLASSES` Gaussian blobs (plus 40 sub-blobs) where 10% disagree.
fn pool(n: usize, seed: u64) -> SelectionInput {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centers: Vec<f64> = (0..40 * DIM).map(|_| gaussian(&mut rng) * 3.0).collect();
    let (mut probs_a, mut probs_b) = (Vec::with_capacity(n * CLASSES), Vec::with_capacity(n * CLASSES));
    let mut embeddings = Vec::with_capacity(n * DIM);
    for i in 0..n {
        let blob = (rng.next_u64() % 40) as usize;
        let class = blob % CLASSES;
        probabilities(&mut rng, class, &mut probs_a);
        let other = if i % 10 == 0 { (class + 1) % CLASSES } else { class };
        probabilities(&mut rng, other, &mut probs_b);
        embeddings.extend((0..DIM).map(|d| (centers[blob * DIM + d] + gaussian(&mut rng)) as f32));
    }
    // A shuffled id order, as a database query might return.
    let ids: Vec<i64> = (0..n as i64).map(|i| (i * 7919) % n as i64).collect();
    SelectionInput::new(ids, CLASSES, probs_a, probs_b, DIM, embeddings).expect("valid synthetic pool")
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`, 100 ticks a second), or
/// NaN where that file is not available. Unlike wall time it hardly depends on other load on the machine.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}

/// Run `f` `repeats` times: (median wall s, min wall s, median CPU s, last result).
fn time<T>(repeats: usize, mut f: impl FnMut() -> T) -> (f64, f64, f64, T) {
    let mut walls = Vec::with_capacity(repeats);
    let mut cpus = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats {
        let (start, cpu_start) = (Instant::now(), cpu_seconds());
        last = Some(f());
        walls.push(start.elapsed().as_secs_f64());
        cpus.push(cpu_seconds() - cpu_start);
    }
    walls.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    (walls[walls.len() / 2], walls[0], cpus[cpus.len() / 2], last.expect("at least one repeat"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let repeats: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let only: Vec<&str> = args.get(2).map(|a| a.split(',').collect()).unwrap_or_default();
    let (generated, _, _, input) = time(1, || pool(n, 42));
    let disagreeing = input.scores().iter().filter(|s| !s.agree).count();
    println!("pool: {n} patches, {CLASSES} classes, {DIM}-d, {disagreeing} disagreeing; generated in {generated:.3} s");
    let (median, min, cpu, _) = time(repeats, || pool_input_again(&input));
    println!(
        "copy + SelectionInput::new (validate, sort, score): median {median:.3} s, min {min:.3} s, cpu {cpu:.2} s"
    );
    let candidates: Vec<f32> = (0..input.len())
        .filter(|&i| !input.scores()[i].agree)
        .flat_map(|i| input.embedding(i).iter().copied())
        .collect();
    for k in [180usize, 1000] {
        for max_iters in [1usize, 100] {
            let config = KMeansConfig { max_iters, ..KMeansConfig::default() };
            let (median, min, cpu, result) =
                time(repeats, || kmeans(&candidates, DIM, k, &config, 7).expect("k-means"));
            println!(
                "k-means of the candidates, K={k}, max_iters={max_iters}: median {median:.3} s, min {min:.3} s, \
                 cpu {cpu:.2} s, {} iterations, converged {}",
                result.iterations, result.converged
            );
        }
    }
    println!("{:<18} {:>7} {:>10} {:>10} {:>8}  note", "strategy", "budget", "median s", "min s", "cpu s");
    for name in STRATEGY_NAMES.iter().filter(|name| only.is_empty() || only.contains(name)) {
        let strategy = strategy_by_name(name).expect("known strategy");
        for budget in [180usize, 1000] {
            let slow = matches!(*name, "coreset" | "badge");
            let runs = if slow { repeats.min(3) } else { repeats };
            let (median, min, cpu, selection) =
                time(runs, || strategy.select(&input, budget, 7).expect("selection succeeds"));
            let note = match selection.candidates {
                Some(c) => format!("{c} candidates, {} top-ups", selection.topped_up),
                None => String::new(),
            };
            println!("{name:<18} {budget:>7} {median:>10.3} {min:>10.3} {cpu:>8.2}  {note}");
        }
    }
}

/// Rebuild an input from an existing one's arrays (times validation, sorting and scoring alone).
fn pool_input_again(input: &SelectionInput) -> SelectionInput {
    let n = input.len();
    let mut probs_a = Vec::with_capacity(n * CLASSES);
    let mut probs_b = Vec::with_capacity(n * CLASSES);
    for i in (0..n).rev() {
        probs_a.extend_from_slice(input.probs_a(i));
        probs_b.extend_from_slice(input.probs_b(i));
    }
    let mut embeddings = Vec::with_capacity(n * DIM);
    for i in (0..n).rev() {
        embeddings.extend_from_slice(input.embedding(i));
    }
    let ids = input.ids().iter().rev().copied().collect();
    SelectionInput::new(ids, CLASSES, probs_a, probs_b, DIM, embeddings).expect("valid input")
}
