//! A per-op time profile of our GPU ops, for finding where a training step's time goes on a lent GPU without a
//! profiler (feature `cuda`; on when `UNISAL_GPU_PROFILE=1`). Each timed op synchronises the stream before and
//! after itself and adds the wall time between to its name's total, so the totals are the ops' device time (plus
//! a launch each); what a step takes beyond their sum is everything else (candle's own kernels: gradient
//! accumulation, losses, casts). The synchronisations slow the step down: read shares, not speeds.
//! `unisal bench` prints the table after its timed steps.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use candle_core::cuda_backend::cudarc::driver::CudaStream;

/// Whether `UNISAL_GPU_PROFILE=1` asked for the profile.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("UNISAL_GPU_PROFILE").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "on"))
    })
}

fn totals() -> &'static Mutex<HashMap<&'static str, (u64, Duration)>> {
    static T: OnceLock<Mutex<HashMap<&'static str, (u64, Duration)>>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Runs `f` (which enqueues work on `stream`), timed under `name` when profiling.
pub(crate) fn timed<R>(
    name: &'static str,
    stream: &CudaStream,
    f: impl FnOnce() -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    if !enabled() {
        return f();
    }
    let sync =
        |s: &CudaStream| s.synchronize().map_err(|e| candle_core::Error::Msg(format!("{name}: sync: {e:?}")));
    sync(stream)?;
    let t0 = Instant::now();
    let out = f()?;
    sync(stream)?;
    let dt = t0.elapsed();
    if let Ok(mut m) = totals().lock() {
        let e = m.entry(name).or_insert((0, Duration::ZERO));
        e.0 += 1;
        e.1 += dt;
    }
    Ok(out)
}

/// Forgets what was timed so far (after warm-up steps).
pub fn reset() {
    if let Ok(mut m) = totals().lock() {
        m.clear();
    }
}

/// `(op, calls, seconds)`, the longest first.
pub fn report() -> Vec<(String, u64, f64)> {
    let m = totals().lock().map(|m| m.clone()).unwrap_or_default();
    let mut rows: Vec<_> = m.into_iter().map(|(k, (n, d))| (k.to_string(), n, d.as_secs_f64())).collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    rows
}
