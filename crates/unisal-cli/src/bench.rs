//! `unisal bench train|infer`: training and inference images/s of one network or the dual trainer on random data
//! (the logic lives in `unisal_train::bench`; `scripts/torch_bench.py` is the PyTorch twin with the same flags).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args as ClapArgs, Subcommand};
use unisal_train::bench::{run_bench, BenchConfig, BenchMode};
use unisal_train::device::DeviceChoice;
use unisal_train::models::Arch;
use unisal_train::TrainError;

/// What to benchmark.
#[derive(Subcommand)]
pub enum Args {
    /// Train steps: forward (train mode) + cross-entropy + backward + SGD momentum update.
    Train(Opts),
    /// Inference steps: eval-mode forward.
    Infer(Opts),
}

/// Benchmark options.
#[derive(ClapArgs)]
pub struct Opts {
    /// auto, cpu, cuda, cuda:N, metal or metal:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// small, resnet18 or resnet50.
    #[arg(long, default_value = "small")]
    model: String,
    /// Input side in pixels (square, >= 32).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Images per step (with --dual: the whole mixed batch, half labeled, half unlabeled).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Two networks co-training on the mixed batch (train only).
    #[arg(long)]
    dual: bool,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Number of classes of the random labels.
    #[arg(long, default_value_t = 5)]
    classes: usize,
    /// Seed of the network initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Mixed precision: none, or bf16 (CUDA only: bf16 activations, f32 weights; like PyTorch's autocast).
    #[arg(long, default_value = "none", value_parser = ["none", "bf16"])]
    amp: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Run `unisal bench`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (mode, o) = match args {
        Args::Train(o) => (BenchMode::Train, o),
        Args::Infer(o) => (BenchMode::Infer, o),
    };
    let device: DeviceChoice = o.device.parse().map_err(|e| crate::UsageError(format!("--device: {e}")))?;
    let arch: Arch = o.model.parse().map_err(|e| crate::UsageError(format!("--model: {e}")))?;
    let cfg = BenchConfig {
        mode,
        device,
        arch,
        size: o.size,
        batch: o.batch,
        dual: o.dual,
        steps: o.steps,
        warmup: o.warmup,
        classes: o.classes,
        seed: o.seed,
        bf16: o.amp == "bf16",
    };
    let what = format!(
        "{} benchmark of {}{} at {} px, batch {} on {}",
        if mode == BenchMode::Train { "train" } else { "infer" },
        o.model,
        if o.dual { " (dual)" } else { "" },
        o.size,
        o.batch,
        o.device
    );
    let report = match run_bench(&cfg) {
        Ok(r) => r,
        // A configuration this build or machine cannot run is the caller's: exit code 2.
        Err(
            e @ (TrainError::InvalidBench(_)
            | TrainError::InvalidModel(_)
            | TrainError::InvalidDevice(_)
            | TrainError::DeviceUnavailable { .. }),
        ) => return Err(crate::UsageError(format!("{what}: {e}")).into()),
        Err(e) => return Err(anyhow::Error::new(e).context(what)),
    };
    if o.json {
        println!("{}", serde_json::to_string(&report).context("serialising the report")?);
    } else {
        println!(
            "{} {} on {}: {:.1} img/s, {:.1} ms/step (median {:.1}, host {:.1}: forward {:.1}, backward {:.1}, \
             update {:.1}), {:.0} tensors/step, peak RSS {} MB{}",
            report.model,
            if report.dual { "dual" } else { "single" },
            report.device_name,
            report.img_per_s,
            report.ms_per_step,
            report.ms_per_step_median,
            report.host_ms_per_step_median,
            report.host_phase_ms_median.forward,
            report.host_phase_ms_median.backward,
            report.host_phase_ms_median.update,
            report.tensors_per_step,
            report.peak_rss_mb.map_or("n/a".to_string(), |m| format!("{m:.0}")),
            report.device_used_mb.map_or(String::new(), |m| format!(", device memory in use {m:.0} MB")),
        );
        if !report.op_profile.is_empty() {
            let ours: f64 = report
                .op_profile
                .iter()
                .filter(|r| !unisal_train::nn::op_profile::is_part(&r.op))
                .map(|r| r.ms_per_step)
                .sum();
            println!(
                "op profile (ms a step; {}):",
                if unisal_train::nn::op_profile::host_only() {
                    "host time only: on a GPU the time to enqueue each op"
                } else if unisal_train::nn::op_profile::by_events() {
                    "on a GPU its time by timing events, the step at its normal pace"
                } else {
                    "on a GPU synchronised, so the step above is slower than unprofiled"
                }
            );
            for r in &report.op_profile {
                let indent = if unisal_train::nn::op_profile::is_part(&r.op) { "    " } else { "" };
                println!(
                    "  {:<32} {:>9.2} ms  {:>6} calls",
                    format!("{indent}{}", r.op),
                    r.ms_per_step,
                    r.calls
                );
            }
            println!("  {:<32} {:>9.2} ms", "everything else", report.ms_per_step - ours);
        }
    }
    Ok(ExitCode::SUCCESS)
}
