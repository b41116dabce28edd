//! `unisal simulate`: the whole active-learning loop with an oracle standing in for the pathologist,
//! strategy against strategy on the same data, seeds and schedule.
//!
//! The pool (class folders or a CSV `path,label`) is imported once, its labels as hidden oracle labels;
//! every (seed, strategy) run works on a copy of that project, so round 0's initial random set is the same
//! for every strategy under one seed. Round k trains on the initial set plus k answered batches and is
//! evaluated on the test set (the learner's prediction of the test images); the oracle then answers the
//! round's batch (label source `oracle`). `--full` adds the all-labels bound with the same model and
//! schedule (rows `strategy=full`). Outputs: `OUT/results.csv`, `OUT/results.json`, `OUT/curve.svg`,
//! rewritten after every round.

mod output;
mod runner;
mod setup;

use crate::round::TrainOpts;
use crate::UsageError;
use anyhow::Context;
use output::{write_all, Report};
use runner::{run_full, run_strategy, RunSettings};
use setup::{import_oracle, TestSet, WorkDir};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use unisal_core::selection::strategy_by_name;
use unisal_train::trainer::DualTrainer;

/// Arguments of `unisal simulate`.
#[derive(clap::Args)]
pub struct Args {
    /// The pool: a folder of class folders, or a CSV `path,label` (labels used only to answer queries).
    #[arg(long)]
    pool: PathBuf,
    /// The test set, same forms.
    #[arg(long)]
    test: PathBuf,
    /// Comma-separated strategies (unisal, random, entropy, least-confidence, margin, coreset, badge).
    #[arg(long, value_delimiter = ',', default_value = "unisal,random")]
    strategies: Vec<String>,
    /// Size of the initial random set (round 0).
    #[arg(long, default_value_t = 40)]
    initial: usize,
    /// Patches queried per round.
    #[arg(long, default_value_t = 40)]
    budget: usize,
    /// Query rounds after round 0.
    #[arg(long, default_value_t = 10)]
    rounds: u32,
    /// Number of seeds (0, 1, ... N-1).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    seed_base: u64,
    #[command(flatten)]
    train: TrainOpts,
    /// Also train on every pool label (the upper bound), once per seed.
    #[arg(long)]
    full: bool,
    /// Keep the projects in this (empty or new) folder instead of a temporary one.
    #[arg(long)]
    work: Option<PathBuf>,
    /// Output folder for results.csv, results.json and curve.svg.
    #[arg(long)]
    out: PathBuf,
    /// Seconds between progress lines when stderr is not a terminal.
    #[arg(long, default_value_t = 30)]
    progress_every: u64,
}

/// Run `unisal simulate`: exit 0 when every run finished, 130 when cancelled (finished rounds are written).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let config = args.train.config()?;
    if args.strategies.is_empty() {
        return Err(UsageError("--strategies: give at least one strategy".into()).into());
    }
    for s in &args.strategies {
        strategy_by_name(s)?;
    }
    if args.initial == 0 || args.budget == 0 || args.seeds == 0 {
        return Err(UsageError("--initial, --budget and --seeds must be at least 1".into()).into());
    }
    for (flag, path) in [("--pool", &args.pool), ("--test", &args.test)] {
        if !path.exists() {
            return Err(UsageError(format!("{flag} {}: no such file or folder", path.display())).into());
        }
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let work = WorkDir::new(args.work.as_deref())?;
    let cancel = crate::progress::cancel_on_ctrl_c();

    let template_path = work.path.join("template.unisal");
    let template = import_oracle(&template_path, &args.pool, "pool", &cancel)?;
    let classes: Vec<String> = template.classes()?.into_iter().map(|c| c.name).collect();
    let pool_size = template.patch_ids()?.len();
    drop(template);
    let test_path = work.path.join("test.unisal");
    drop(import_oracle(&test_path, &args.test, "test", &cancel)?);
    let test = TestSet::load(&test_path, &classes)?;
    eprintln!(
        "simulate: pool {pool_size} patches, test {} patches, {} classes; {} x {} seed(s), {} rounds of {} after {}",
        test.ids.len(),
        classes.len(),
        args.strategies.join(","),
        args.seeds,
        args.rounds,
        args.budget,
        args.initial
    );
    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        pool: args.pool.display().to_string(),
        test: args.test.display().to_string(),
        pool_size,
        test_size: test.ids.len(),
        classes: classes.clone(),
        strategies: args.strategies.clone(),
        initial: args.initial,
        budget: args.budget,
        rounds: args.rounds,
        seeds: args.seeds,
        device: None,
        config: config.clone(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        finished: false,
        seconds: 0.0,
        rows: Vec::new(),
        details: Vec::new(),
    };
    let settings = RunSettings {
        template: &template_path,
        work: &work.path,
        test: &test,
        classes: classes.len(),
        config: &config,
        initial: args.initial,
        budget: args.budget,
        rounds: args.rounds,
        cancel: &cancel,
        progress_every: Duration::from_secs(args.progress_every.max(1)),
    };
    let mut learner = DualTrainer::new();
    let out = args.out.clone();
    let result = (|| -> anyhow::Result<()> {
        for seed in args.seed_base..args.seed_base + args.seeds {
            for strategy in &args.strategies {
                run_strategy(&settings, &mut learner, strategy, seed, &mut |row, detail| {
                    eprintln!(
                        "{} seed {} round {}: {} labels, accuracy {:.2}%, macro-F1 {:.2}%, {:.1} s",
                        row.strategy,
                        row.seed,
                        row.round,
                        row.labeled,
                        row.accuracy * 100.0,
                        row.macro_f1 * 100.0,
                        row.seconds
                    );
                    report.rows.push(row);
                    report.details.push(detail);
                    report.seconds = started.elapsed().as_secs_f64();
                    write_all(&out, &report)
                })?;
            }
            if args.full {
                let (row, detail) = run_full(&settings, &mut learner, seed)?;
                eprintln!("full seed {seed}: {} labels, accuracy {:.2}%", row.labeled, row.accuracy * 100.0);
                report.rows.push(row);
                report.details.push(detail);
                write_all(&out, &report)?;
            }
        }
        Ok(())
    })();
    report.device = report.details.iter().find_map(|d| d.device.clone());
    report.seconds = started.elapsed().as_secs_f64();
    report.finished = result.is_ok();
    write_all(&args.out, &report)?;
    match result {
        Ok(()) => {
            println!("wrote {} rows to {}", report.rows.len(), args.out.join("results.csv").display());
            Ok(ExitCode::SUCCESS)
        }
        Err(_) if cancel.is_cancelled() => {
            eprintln!("cancelled: the finished rounds are in {}", args.out.display());
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(e),
    }
}
