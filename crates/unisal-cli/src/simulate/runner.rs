//! One simulated active-learning run (a strategy and a seed) on a copy of the template project: the initial
//! random draw, then `rounds + 1` trained rounds, each evaluated on the test set, the oracle answering every
//! query batch but the last; and the all-labels bound.

use super::output::{ResultRow, RoundDetail};
use super::setup::TestSet;
use crate::round::RoundProgress;
use anyhow::{anyhow, Context};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use unisal_core::events::{CancelToken, NoProgress, ProgressSink};
use unisal_core::learner::{LabeledPatch, Learner, TrainConfig, TrainRequest};
use unisal_core::pool::LabelSource;
use unisal_core::round::{run_round, InitialSet, PoolImages, RoundSpec};
use unisal_core::Pool;
use unisal_train::metrics::Metrics;

/// What every run shares.
pub struct RunSettings<'a> {
    pub template: &'a Path,
    pub work: &'a Path,
    pub test: &'a TestSet,
    pub classes: usize,
    pub config: &'a TrainConfig,
    pub initial: usize,
    pub budget: usize,
    pub rounds: u32,
    pub cancel: &'a CancelToken,
    /// Seconds between plain progress lines when piped.
    pub progress_every: Duration,
}

/// Test-set metrics of the learner's current pair.
pub fn evaluate(
    learner: &dyn Learner,
    test: &TestSet,
    classes: usize,
    cancel: &CancelToken,
) -> anyhow::Result<Metrics> {
    let preds = learner
        .predict(&test.ids, &test.images, &NoProgress, cancel)
        .map_err(|e| anyhow!("predicting the test set: {e}"))?;
    let pred: Vec<u32> = preds.iter().map(|p| p.pred).collect();
    Metrics::compute(&test.truth, &pred, classes).map_err(|e| anyhow!("test metrics: {e}"))
}

/// Label round `round`'s query batch from the oracle (source `oracle`).
fn answer(pool: &mut Pool, oracle: &HashMap<i64, i64>, round: i64) -> anyhow::Result<()> {
    let answers = pool
        .round_queries(round)?
        .iter()
        .map(|q| {
            oracle
                .get(&q.patch_id)
                .map(|&c| (q.patch_id, c))
                .ok_or_else(|| anyhow!("patch {} has no oracle label", q.patch_id))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    pool.set_labels_from(&answers, LabelSource::Oracle, Some(round))?;
    Ok(())
}

fn row(strategy: &str, seed: u64, round: u32, labeled: usize, m: &Metrics, seconds: f64) -> ResultRow {
    ResultRow {
        strategy: strategy.into(),
        seed,
        round,
        labeled,
        accuracy: m.accuracy,
        macro_f1: m.macro_f1,
        macro_precision: m.macro_precision,
        macro_recall: m.macro_recall,
        seconds,
    }
}

/// Run `strategy` with `seed`; `on_round` receives each evaluated round as it finishes.
pub fn run_strategy(
    s: &RunSettings<'_>,
    learner: &mut dyn Learner,
    strategy: &str,
    seed: u64,
    on_round: &mut dyn FnMut(ResultRow, RoundDetail) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let project = s.work.join(format!("{strategy}-seed{seed}.unisal"));
    std::fs::copy(s.template, &project)
        .with_context(|| format!("copying the template to {}", project.display()))?;
    let mut pool = Pool::open(&project)?;
    let oracle: HashMap<i64, i64> = pool.oracle_labels()?.into_iter().collect();
    let mut spec = RoundSpec {
        strategy: strategy.into(),
        budget: s.budget,
        config: s.config.clone(),
        seed,
        initial: InitialSet::Random(s.initial),
    };
    let draw = run_round(&mut pool, learner, &spec, &NoProgress, s.cancel)?;
    answer(&mut pool, &oracle, draw.round)?;
    spec.initial = InitialSet::AlreadyLabeled;
    for k in 0..=s.rounds {
        let clock = Instant::now();
        let progress = RoundProgress::new(&format!("[{strategy} seed {seed} round {k}] "), s.progress_every);
        let summary = run_round(&mut pool, learner, &spec, &progress as &dyn ProgressSink, s.cancel);
        progress.finish();
        let summary = summary?;
        let eval_clock = Instant::now();
        let m = evaluate(learner, s.test, s.classes, s.cancel)?;
        let eval_s = eval_clock.elapsed().as_secs_f64();
        let detail = RoundDetail {
            strategy: strategy.into(),
            seed,
            round: k,
            device: summary.device.clone(),
            train_s: summary.timings.train_s,
            predict_s: summary.timings.predict_s,
            select_s: summary.timings.select_s,
            eval_s,
            disagreements: summary.metrics.get("disagreements").copied(),
            topped_up: summary.topped_up,
            note: summary.note.clone(),
            confusion: m.confusion.clone(),
        };
        on_round(row(strategy, seed, k, summary.labeled, &m, clock.elapsed().as_secs_f64()), detail)?;
        if k < s.rounds {
            answer(&mut pool, &oracle, summary.round)?;
        }
    }
    Ok(())
}

/// The all-labels bound: the same dual training with every pool patch labeled. The unlabeled stream is the
/// same patches again (the trainer needs a non-empty one), so the schedule and losses stay those of a round.
pub fn run_full(
    s: &RunSettings<'_>,
    learner: &mut dyn Learner,
    seed: u64,
) -> anyhow::Result<(ResultRow, RoundDetail)> {
    let pool = Pool::open(s.template)?;
    let positions: HashMap<i64, u32> =
        pool.classes()?.iter().enumerate().map(|(i, c)| (c.id, i as u32)).collect();
    let labeled: Vec<LabeledPatch> = pool
        .oracle_labels()?
        .into_iter()
        .map(|(patch_id, c)| LabeledPatch { patch_id, class_index: positions[&c] })
        .collect();
    let mut config = s.config.clone();
    config.seed = seed;
    let req = TrainRequest {
        config,
        class_names: pool.classes()?.into_iter().map(|c| c.name).collect(),
        labeled,
        unlabeled: pool.patch_ids()?,
        validation: Vec::new(),
        round: 0,
    };
    let images = PoolImages::open(s.template)?;
    let clock = Instant::now();
    let progress = RoundProgress::new(&format!("[full seed {seed}] "), s.progress_every);
    let outcome =
        learner.train(&req, &images, &progress, s.cancel).map_err(|e| anyhow!("training on all labels: {e}"));
    progress.finish();
    let outcome = outcome?;
    let eval_clock = Instant::now();
    let m = evaluate(learner, s.test, s.classes, s.cancel)?;
    let detail = RoundDetail {
        strategy: "full".into(),
        seed,
        round: 0,
        device: Some(outcome.device.clone()),
        train_s: outcome.seconds,
        predict_s: 0.0,
        select_s: 0.0,
        eval_s: eval_clock.elapsed().as_secs_f64(),
        disagreements: None,
        topped_up: 0,
        note: Some("supervised bound: every pool label, same model and schedule".into()),
        confusion: m.confusion.clone(),
    };
    Ok((row("full", seed, 0, req.labeled.len(), &m, clock.elapsed().as_secs_f64()), detail))
}
