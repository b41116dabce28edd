//! Training and inference throughput benchmark behind `unisal bench train|infer`.
//!
//! One train step = forward in train mode + cross-entropy on random labels + backward + SGD (momentum 0.9, weight
//! decay 5e-4, [`crate::optim::Sgd`]) over all parameters. `dual`: two networks, each runs forward on the whole
//! batch (batch/2 "labeled" + batch/2 "unlabeled", so BatchNorm sees all of it), supervised cross-entropy on the
//! labeled half of each, summed, one backward, one update of both. One infer step = eval-mode forward (logits and
//! projection) of the batch. Inputs and labels are generated once, on the device; the device is synchronised at the
//! end of every timed step, so the timings include all queued GPU work. `scripts/torch_bench.py` is the PyTorch twin.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::device::{device_name, DeviceChoice};
use crate::error::{Result, TrainError};
use crate::models::{Arch, NetConfig, Network};
use crate::optim::Sgd;

/// What to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchMode {
    /// Forward + loss + backward + SGD update.
    Train,
    /// Eval-mode forward.
    Infer,
}

/// A benchmark configuration.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Train or infer.
    pub mode: BenchMode,
    /// Where to run.
    pub device: DeviceChoice,
    /// Which backbone.
    pub arch: Arch,
    /// Input side (square).
    pub size: usize,
    /// Images per step (the whole mixed batch when `dual`).
    pub batch: usize,
    /// Two networks co-training (train mode only).
    pub dual: bool,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// Number of classes of the random labels.
    pub classes: usize,
    /// Seed of the network initialisation.
    pub seed: u64,
    /// bf16 mixed precision (CUDA only; [`crate::models::NetConfig::bf16`]).
    pub bf16: bool,
}

/// The measured result, printed as JSON by `unisal bench --json`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Always "candle".
    pub framework: &'static str,
    /// Train or infer.
    pub mode: BenchMode,
    /// The device asked for.
    pub device: String,
    /// The device used, in words.
    pub device_name: String,
    /// Backbone.
    pub model: String,
    /// Input side.
    pub size: usize,
    /// Images per step.
    pub batch: usize,
    /// Two networks.
    pub dual: bool,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps.
    pub warmup: usize,
    /// Trainable scalars over all networks.
    pub params: usize,
    /// batch * steps / time of the timed steps.
    pub img_per_s: f64,
    /// Mean milliseconds per timed step.
    pub ms_per_step: f64,
    /// Median milliseconds per timed step.
    pub ms_per_step_median: f64,
    /// Median milliseconds the host took to enqueue a step's work, before waiting for the device (on the CPU the
    /// whole step). Close to the step's time on a GPU, the step is bound by the host's work, not the kernels'.
    pub host_ms_per_step_median: f64,
    /// Median milliseconds of host time in each phase of a step: on a GPU the time to enqueue it (the kernels run
    /// behind), which tells whether the host's work is in the forward, in candle's graph walk and gradient
    /// accumulation (backward) or in the optimiser; on the CPU each phase's whole time.
    pub host_phase_ms_median: PhaseMs,
    /// Tensors created per timed step (candle's tensor-id counter; views and the optimiser's in-place updates
    /// included). On a GPU nearly each is a buffer allocation and a kernel launch: with the step's time this
    /// tells how much of it is per-op host work, and it can be counted on the CPU, where the graph is the same.
    pub tensors_per_step: f64,
    /// Peak resident memory of the process (VmHWM), MiB; `None` where /proc is absent.
    pub peak_rss_mb: Option<f64>,
    /// On CUDA: the most device memory in use (total - free over the whole device: the CUDA context, cuDNN's and
    /// candle's memory pool included), MiB, sampled at the end of every step before synchronising, when the
    /// step's buffers are freed but not yet handed back; `None` elsewhere. `scripts/torch_bench.py` reports the
    /// same measure as `device_used_mb` (its `peak_gpu_mb` is PyTorch's allocator peak, without the context).
    pub device_used_mb: Option<f64>,
    /// With `UNISAL_OP_PROFILE=1`, our custom ops' time over the timed steps, the longest first (`nn::op_profile`;
    /// on CUDA the steps were slowed by its synchronisations); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub op_profile: Vec<OpTime>,
}

/// Host milliseconds of one step's phases (inference: all in `forward`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PhaseMs {
    /// Forward passes and the loss.
    pub forward: f64,
    /// `loss.backward()`.
    pub backward: f64,
    /// The SGD update.
    pub update: f64,
}

/// One op's share of the timed steps in [`BenchReport::op_profile`].
#[derive(Debug, Clone, Serialize)]
pub struct OpTime {
    /// The op (e.g. `conv-backward`).
    pub op: String,
    /// Calls over the timed steps.
    pub calls: u64,
    /// Milliseconds per step.
    pub ms_per_step: f64,
}

/// Run a benchmark.
pub fn run_bench(cfg: &BenchConfig) -> Result<BenchReport> {
    if cfg.batch == 0 || cfg.steps == 0 {
        return Err(TrainError::InvalidBench("batch and steps must be at least 1".into()));
    }
    if cfg.dual && (cfg.mode != BenchMode::Train || cfg.batch < 4 || cfg.batch % 2 != 0) {
        return Err(TrainError::InvalidBench(
            "--dual needs train mode and an even batch of at least 4 (labeled half + unlabeled half)".into(),
        ));
    }
    if cfg.classes < 2 {
        return Err(TrainError::InvalidBench("classes must be at least 2".into()));
    }
    let device = cfg.device.resolve()?;
    let n_nets = if cfg.dual { 2 } else { 1 };
    let nets = (0..n_nets)
        .map(|i| {
            let mut nc = NetConfig::new(cfg.arch, cfg.classes, cfg.seed);
            nc.seed = cfg.seed.wrapping_add(i);
            nc.bf16 = cfg.bf16;
            Network::new(&nc, &device)
        })
        .collect::<Result<Vec<_>>>()?;
    let params = nets.iter().map(Network::num_params).sum();
    let x = Tensor::randn(0f32, 1f32, (cfg.batch, 3, cfg.size, cfg.size), &device)?;
    let y = random_labels(cfg.batch, cfg.classes, &device)?;

    let mut opt = Sgd::new(nets.iter().flat_map(Network::trainable_vars).collect(), 0.01, 0.9, 5e-4);
    let mut device_used: Option<f64> = None;
    // One step; returns the seconds until its work was enqueued and its phases' host seconds.
    let mut step = |t0: Instant| -> Result<(f64, [f64; 3])> {
        let phases = match cfg.mode {
            BenchMode::Train => train_step(&nets, &x, &y, cfg.dual, &mut opt),
            BenchMode::Infer => infer_step(&nets, &x),
        }?;
        let enqueued = t0.elapsed().as_secs_f64();
        if let Some(mb) = device_used_mb(&device) {
            device_used = Some(device_used.map_or(mb, |m: f64| m.max(mb)));
        }
        device.synchronize()?;
        crate::nn::op_profile::step_boundary();
        Ok((enqueued, phases))
    };
    // Held for the whole run, warm-up included (the cache fills there); see `htod_cache_guard`.
    let _htod_cache = crate::device::htod_cache_guard(&device);
    for _ in 0..cfg.warmup {
        step(Instant::now())?;
    }
    crate::nn::op_profile::reset();
    let mut times = Vec::with_capacity(cfg.steps);
    let mut host = Vec::with_capacity(cfg.steps);
    let mut phases: [Vec<f64>; 3] = Default::default();
    let first_id = tensor_counter()?;
    for _ in 0..cfg.steps {
        let t0 = Instant::now();
        let (enqueued, p) = step(t0)?;
        host.push(enqueued);
        for (all, v) in phases.iter_mut().zip(p) {
            all.push(1000.0 * v);
        }
        times.push(t0.elapsed().as_secs_f64());
    }
    // Minus the counter's own probes (one at each end).
    let tensors = tensor_counter()?.saturating_sub(first_id + 1);
    let total: f64 = times.iter().sum();
    Ok(BenchReport {
        framework: "candle",
        mode: cfg.mode,
        device: cfg.device.to_string(),
        device_name: device_name(&device),
        model: cfg.arch.to_string(),
        size: cfg.size,
        batch: cfg.batch,
        dual: cfg.dual,
        steps: cfg.steps,
        warmup: cfg.warmup,
        params,
        img_per_s: (cfg.batch * cfg.steps) as f64 / total,
        ms_per_step: 1000.0 * total / cfg.steps as f64,
        ms_per_step_median: 1000.0 * median(&mut times),
        host_ms_per_step_median: 1000.0 * median(&mut host),
        host_phase_ms_median: {
            let [f, b, u] = &mut phases;
            PhaseMs { forward: median(f), backward: median(b), update: median(u) }
        },
        tensors_per_step: tensors as f64 / cfg.steps as f64,
        peak_rss_mb: peak_rss_mb(),
        device_used_mb: device_used,
        op_profile: op_profile(cfg.steps),
    })
}

/// The id of a new probe tensor. candle numbers tensors from 1 in creation order, so two readings, less one,
/// count the tensors made between them (read from the id's `Debug` form, `TensorId(n)`, the only way candle
/// exposes it).
fn tensor_counter() -> Result<usize> {
    let probe = Tensor::zeros((), DType::F32, &Device::Cpu)?;
    let id = format!("{:?}", probe.id());
    id.trim_start_matches("TensorId(")
        .trim_end_matches(')')
        .parse()
        .map_err(|_| TrainError::InvalidBench(format!("unexpected tensor id form {id}")))
}

/// The median of non-empty `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One training step; the host seconds of its forward (with the loss), backward and update.
fn train_step(nets: &[Network], x: &Tensor, y: &Tensor, dual: bool, opt: &mut Sgd) -> Result<[f64; 3]> {
    let t0 = Instant::now();
    let mut loss: Option<Tensor> = None;
    for net in nets {
        let logits = net.forward(x, true)?.logits;
        let l = if dual {
            let half = x.dim(0)? / 2;
            candle_nn::loss::cross_entropy(&logits.narrow(0, 0, half)?, &y.narrow(0, 0, half)?)?
        } else {
            candle_nn::loss::cross_entropy(&logits, y)?
        };
        loss = Some(match loss {
            None => l,
            Some(acc) => (acc + l)?,
        });
    }
    let loss = loss.ok_or_else(|| TrainError::InvalidBench("no network".into()))?;
    let t1 = Instant::now();
    let grads = crate::nn::backward(&loss)?;
    let t2 = Instant::now();
    opt.step(&grads)?;
    Ok([t1 - t0, t2 - t1, t2.elapsed()].map(|d| d.as_secs_f64()))
}

/// One inference step; its host seconds as the forward phase.
fn infer_step(nets: &[Network], x: &Tensor) -> Result<[f64; 3]> {
    let t0 = Instant::now();
    let _no_grad = crate::nn::NoGrad::enter();
    for net in nets {
        net.forward(x, false)?;
    }
    Ok([t0.elapsed().as_secs_f64(), 0.0, 0.0])
}

/// Uniform labels in 0..classes, generated on the device.
fn random_labels(batch: usize, classes: usize, device: &Device) -> Result<Tensor> {
    let r = Tensor::rand(0f32, classes as f32, batch, device)?;
    Ok(r.floor()?.clamp(0f32, (classes - 1) as f32)?.to_dtype(DType::U32)?)
}

/// The op profile of the timed steps (empty unless it is on).
fn op_profile(steps: usize) -> Vec<OpTime> {
    if !crate::nn::op_profile::enabled() {
        return Vec::new();
    }
    crate::nn::op_profile::report()
        .into_iter()
        .map(|(op, calls, secs)| OpTime { op, calls, ms_per_step: 1000.0 * secs / steps as f64 })
        .collect()
}

/// Device memory in use on a CUDA device (total - free), MiB; `None` on other devices.
fn device_used_mb(device: &Device) -> Option<f64> {
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        let (free, total) = candle_core::cuda_backend::cudarc::driver::result::mem_get_info().ok()?;
        return Some(total.saturating_sub(free) as f64 / 1048576.0);
    }
    let _ = device;
    None
}

/// Peak resident set size (VmHWM of /proc/self/status) in MiB.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mode: BenchMode, dual: bool) -> BenchConfig {
        BenchConfig {
            mode,
            device: DeviceChoice::Cpu,
            arch: Arch::SmallCnn,
            size: 32,
            batch: 4,
            dual,
            steps: 2,
            warmup: 1,
            classes: 3,
            seed: 0,
            bf16: false,
        }
    }

    #[test]
    fn train_infer_and_dual_report_sane_numbers() {
        for (mode, dual) in [(BenchMode::Train, false), (BenchMode::Train, true), (BenchMode::Infer, false)] {
            let r = run_bench(&cfg(mode, dual)).unwrap();
            assert!(r.img_per_s.is_finite() && r.img_per_s > 0.0, "{r:?}");
            assert!((r.img_per_s - 4.0 * 1000.0 / r.ms_per_step).abs() < 1e-6 * r.img_per_s);
            assert!(r.peak_rss_mb.unwrap() > 1.0);
            // A small CNN's step makes dozens of tensors (other tests' tensors may count too: the counter is
            // the process's).
            assert!(r.tensors_per_step >= 10.0, "{r:?}");
            let one = Network::new(&NetConfig::new(Arch::SmallCnn, 3, 0), &Device::Cpu).unwrap().num_params();
            assert_eq!(r.params, if dual { 2 * one } else { one });
            let json = serde_json::to_value(&r).unwrap();
            assert_eq!(json["mode"], if mode == BenchMode::Train { "train" } else { "infer" });
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut c = cfg(BenchMode::Infer, true);
        assert!(matches!(run_bench(&c), Err(TrainError::InvalidBench(_))));
        c = cfg(BenchMode::Train, true);
        c.batch = 5;
        assert!(matches!(run_bench(&c), Err(TrainError::InvalidBench(_))));
        c = cfg(BenchMode::Train, false);
        c.steps = 0;
        assert!(matches!(run_bench(&c), Err(TrainError::InvalidBench(_))));
        // Mixed precision is for CUDA devices.
        c = cfg(BenchMode::Train, false);
        c.bf16 = true;
        let err = run_bench(&c).unwrap_err();
        assert!(matches!(err, TrainError::InvalidModel(_)) && err.to_string().contains("CUDA"), "{err}");
    }

    #[test]
    fn labels_are_in_range() {
        let y = random_labels(1000, 5, &Device::Cpu).unwrap().to_vec1::<u32>().unwrap();
        assert!(y.iter().all(|&v| v < 5));
        for c in 0..5 {
            assert!(y.contains(&c), "class {c} never drawn");
        }
    }
}
