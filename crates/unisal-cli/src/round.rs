//! `unisal round PROJECT`: one active-learning round (train the pair, predict the pool, select the query
//! batch) with the candle trainer; plus the training options and the round progress display that
//! `unisal simulate` shares.

use crate::UsageError;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use unisal_core::events::{Progress, ProgressSink};
use unisal_core::learner::{ModelArch, TrainConfig, PRESETS};
use unisal_core::round::{run_round, InitialSet, RoundSpec, RoundSummary};
use unisal_core::CoreError;
use unisal_train::trainer::{DualTrainer, PHASE_METRICS};

/// The training options shared by `round` and `simulate`.
#[derive(clap::Args, Clone, Debug)]
pub struct TrainOpts {
    /// Starting configuration: cpu-small (small CNN at 64 px), gpu-sim (UNISAL.md section 5) or reference.
    #[arg(long, default_value = "cpu-small")]
    pub preset: String,
    /// Backbone: small, resnet18 or resnet50 (default: the preset's).
    #[arg(long)]
    pub model: Option<String>,
    /// Training crop side in pixels; images are resized to 9/8 of it (64 -> 72) and evaluated uncropped.
    #[arg(long)]
    pub size: Option<u32>,
    /// Training iterations per round (default: the preset's).
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Labeled (and unlabeled) images per iteration (default: the preset's).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Learning rate (default: the preset's).
    #[arg(long)]
    pub lr: Option<f64>,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Mixed precision: none, or bf16 (with --device cuda: bf16 activations, f32 weights).
    #[arg(long, default_value = "none", value_parser = ["none", "bf16"])]
    pub amp: String,
    /// Local safetensors file with backbone weights (torchvision/timm names).
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
}

impl TrainOpts {
    /// The effective training configuration, validated; a bad value is a usage error naming it.
    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        let mut c = TrainConfig::preset(&self.preset).ok_or_else(|| {
            UsageError(format!("unknown preset {:?}; valid presets: {}", self.preset, PRESETS.join(", ")))
        })?;
        if let Some(model) = &self.model {
            c.arch = ModelArch::parse(model).ok_or_else(|| {
                UsageError(format!("unknown model {model:?}; valid: small, resnet18, resnet50"))
            })?;
        }
        if let Some(size) = self.size {
            if size < 16 {
                return Err(UsageError(format!("--size {size}: must be at least 16")).into());
            }
            c.set_input_size(size);
        }
        if self.iterations.is_some() {
            c.iterations = self.iterations;
        }
        if let Some(b) = self.batch {
            c.batch_labeled = b;
            c.batch_unlabeled = b;
        }
        if let Some(lr) = self.lr {
            c.lr = lr;
        }
        c.device = self.device.clone();
        c.bf16 = self.amp == "bf16";
        c.pretrained = self.pretrained.clone();
        c.validate().map_err(UsageError)?;
        Ok(c)
    }
}

/// Arguments of `unisal round`.
#[derive(clap::Args)]
pub struct Args {
    /// The project file.
    project: PathBuf,
    /// Query strategy: unisal, random, entropy, least-confidence, margin, coreset or badge.
    #[arg(long, default_value = "unisal")]
    strategy: String,
    /// Patches to query.
    #[arg(long, default_value_t = 40)]
    budget: usize,
    /// Initial random set drawn (without training) when nothing is labeled yet; 0 refuses to start unlabeled.
    #[arg(long, default_value_t = 40)]
    initial: usize,
    #[command(flatten)]
    train: TrainOpts,
    /// Seed of the training and of the selection.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object (the round's summary).
    #[arg(long)]
    json: bool,
}

/// Shows a round's progress on stderr: a bar with stage, iteration, losses and ETA on a terminal; a plain
/// line every few seconds (and at each stage's end) when piped.
pub struct RoundProgress {
    bar: Option<ProgressBar>,
    every: Duration,
    last: Mutex<Option<(Instant, String)>>,
    prefix: String,
}

impl RoundProgress {
    /// A display on stderr; plain lines at most every `every` when stderr is not a terminal.
    pub fn new(prefix: &str, every: Duration) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{prefix} {msg:.bold} [{bar:30}] {pos}/{len} ETA {eta} {wide_msg}",
            )
            .or_else(|_| ProgressStyle::with_template("{msg} {pos}/{len}"))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar.set_prefix(prefix.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { bar, every, last: Mutex::new(None), prefix: prefix.to_string() }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// At the end of training, where the iterations' time went (the trainer's [`PHASE_METRICS`]), as one line.
fn phase_line(p: &Progress) -> Option<String> {
    if p.stage != "train" || p.total != Some(p.done) {
        return None;
    }
    let get = |k: &str| p.metrics.iter().find(|(name, _)| name == k).map(|&(_, v)| v);
    let parts = PHASE_METRICS
        .iter()
        .map(|&(k, part)| get(k).map(|v| format!("{part} {v:.1}")))
        .collect::<Option<Vec<String>>>()?;
    Some(format!("train: ms an iteration (host): {}", parts.join(", ")))
}

impl ProgressSink for RoundProgress {
    fn report(&self, p: &Progress) {
        let detail = p.message.clone().unwrap_or_default();
        let phases = phase_line(p);
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} {detail}", p.stage));
            if let Some(total) = p.total {
                bar.set_length(total);
            }
            bar.set_position(p.done);
            if let Some(line) = phases {
                bar.println(format!("{}{line}", self.prefix));
            }
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let stage_end = p.total == Some(p.done);
        let due = match &*last {
            None => true,
            Some((t, stage)) => *stage != p.stage || stage_end || t.elapsed() >= self.every,
        };
        if due {
            let count = p.total.map_or(format!("{}", p.done), |t| format!("{}/{t}", p.done));
            eprintln!("{}{} {count} {detail}", self.prefix, p.stage);
            *last = Some((Instant::now(), p.stage.clone()));
        }
        if let Some(line) = phases {
            eprintln!("{}{line}", self.prefix);
        }
    }
}

fn print_summary(s: &RoundSummary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(s)?);
        return Ok(());
    }
    if s.trained {
        println!(
            "round {}: trained on {} labels on {} in {:.1} s; {} queries chosen by {} from {} unlabeled",
            s.round,
            s.labeled,
            s.device.as_deref().unwrap_or("?"),
            s.timings.train_s,
            s.queries.len(),
            s.strategy,
            s.unlabeled
        );
    } else {
        println!(
            "round {}: drew the initial random set of {} patches (nothing trained)",
            s.round,
            s.queries.len()
        );
    }
    if let Some(note) = &s.note {
        println!("note: {note}");
    }
    println!(
        "label them (`unisal label`, or the app), then run the next round; `unisal queries` lists the batch"
    );
    Ok(())
}

/// Run `unisal round`: exit 0 when the round is stored, 1 when it failed (recorded as failed), 130 when
/// cancelled with Ctrl-C (recorded as cancelled), 2 for a usage error.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.train.config()?;
    let mut pool = crate::open_project(&args.project)?;
    let spec = RoundSpec {
        strategy: args.strategy,
        budget: args.budget,
        config,
        seed: args.seed,
        initial: if args.initial == 0 {
            InitialSet::AlreadyLabeled
        } else {
            InitialSet::Random(args.initial)
        },
    };
    let cancel = crate::progress::cancel_on_ctrl_c();
    let progress = RoundProgress::new("", Duration::from_secs(5));
    let mut learner = DualTrainer::new();
    let result = run_round(&mut pool, &mut learner, &spec, &progress, &cancel);
    progress.finish();
    match result {
        Ok(summary) => {
            print_summary(&summary, args.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(CoreError::Cancelled(why)) => {
            eprintln!("cancelled{why}; the labels are untouched and the round is recorded as cancelled");
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(e).with_context(|| format!("running a round on {}", args.project.display())),
    }
}
