//! A per-op time profile of our custom ops, for finding where a training step's time goes without a profiler (on
//! when `UNISAL_OP_PROFILE=1`, `=host` or `=events`; `UNISAL_GPU_PROFILE` is the same switch). Each timed op adds its wall time to
//! its name's total, so what a step takes beyond their sum is everything else (candle's own ops: gradient
//! accumulation, losses, casts, the graph walk).
//!
//! - CPU: every op of `cpu_util::dispatch` (the kernels run synchronously, so no wait is needed; the cost is two
//!   clock reads a call).
//! - CUDA (feature `cuda`): [`timed`] synchronises the stream before and after the op, so the totals are the ops'
//!   device time (plus a launch each). The synchronisations slow the step down: read shares, not speeds. With
//!   `=host` it does not synchronise: the totals are then the host's time to enqueue each op (descriptors,
//!   allocations, launches), the step runs at its normal pace, and what the step's host time has beyond their
//!   sum is candle's own ops and graph walk.
//! - CUDA, `=events`: a timing event is recorded on the stream before and after each op, and nothing waits: the
//!   totals are the ops' GPU time at the step's normal pace (exact where the step is GPU-bound, the queue never
//!   empty), and the row `between our ops` is the GPU time from each op's end to the next op's start (candle's own
//!   kernels, and idle time where the host fell behind), not counting the gaps across a step's end
//!   ([`step_boundary`]). The events are read (waited for) in [`report`], on the thread that ran the ops.
//!
//! A name with a colon (`conv2d: product`) is a part of the op before the colon, timed inside it: it counts in
//! that op's total, not again. `unisal bench` prints the table after its timed steps.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What the environment asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    /// Device time: synchronised around each op on a GPU.
    Synced,
    /// Host time only: no synchronisation.
    Host,
    /// GPU time from timing events, no synchronisation.
    Events,
}

fn mode() -> Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    *MODE.get_or_init(|| {
        parse_mode(&["UNISAL_OP_PROFILE", "UNISAL_GPU_PROFILE"].map(|k| std::env::var(k).unwrap_or_default()))
    })
}

/// The mode the switches' values ask for: `host`, then `events`, win over `1`/`true`/`on`; anything else is off.
fn parse_mode(values: &[String]) -> Mode {
    if values.iter().any(|v| v.trim() == "host") {
        Mode::Host
    } else if values.iter().any(|v| v.trim() == "events") {
        Mode::Events
    } else if values.iter().any(|v| matches!(v.trim(), "1" | "true" | "on")) {
        Mode::Synced
    } else {
        Mode::Off
    }
}

/// Whether `UNISAL_OP_PROFILE` (or `UNISAL_GPU_PROFILE`) is `1` or `host`.
pub fn enabled() -> bool {
    mode() != Mode::Off
}

/// Whether the profile times the host's work only (`=host`: GPU ops are not waited for).
pub fn host_only() -> bool {
    mode() == Mode::Host
}

/// Whether the profile times GPU work by events (`=events`: the step runs at its normal pace).
pub fn by_events() -> bool {
    mode() == Mode::Events
}

fn totals() -> &'static Mutex<HashMap<&'static str, (u64, Duration)>> {
    static T: OnceLock<Mutex<HashMap<&'static str, (u64, Duration)>>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(HashMap::new()))
}

fn add(name: &'static str, dt: Duration) {
    if let Ok(mut m) = totals().lock() {
        let e = m.entry(name).or_insert((0, Duration::ZERO));
        e.0 += 1;
        e.1 += dt;
    }
}

/// Runs `f` (a CPU kernel, done when it returns), timed under `name` when profiling.
pub(crate) fn timed_cpu<R>(name: &'static str, f: impl FnOnce() -> R) -> R {
    if !enabled() {
        return f();
    }
    let t0 = Instant::now();
    let out = f();
    add(name, t0.elapsed());
    out
}

/// Runs `f` (which enqueues work on `stream`), timed under `name` when profiling.
#[cfg(feature = "cuda")]
pub(crate) fn timed<R>(
    name: &'static str,
    stream: &candle_core::cuda_backend::cudarc::driver::CudaStream,
    f: impl FnOnce() -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    if !enabled() {
        return f();
    }
    if host_only() {
        let t0 = Instant::now();
        let out = f()?;
        add(name, t0.elapsed());
        return Ok(out);
    }
    if by_events() {
        return events::timed(name, stream, f);
    }
    let sync = |s: &candle_core::cuda_backend::cudarc::driver::CudaStream| {
        s.synchronize().map_err(|e| candle_core::Error::Msg(format!("{name}: sync: {e:?}")))
    };
    sync(stream)?;
    let t0 = Instant::now();
    let out = f()?;
    sync(stream)?;
    add(name, t0.elapsed());
    Ok(out)
}

/// Whether a profile row is a part of another op's row (its name has a colon), already counted there.
pub fn is_part(name: &str) -> bool {
    name.contains(':')
}

/// Forgets what was timed so far (after warm-up steps).
pub fn reset() {
    #[cfg(feature = "cuda")]
    events::drain();
    if let Ok(mut m) = totals().lock() {
        m.clear();
    }
}

/// Marks the end of a step (the device was synchronised): the GPU's idle time until the next op is not counted in
/// the `between our ops` row of the `=events` profile.
pub fn step_boundary() {
    #[cfg(feature = "cuda")]
    events::boundary();
}

/// `(op, calls, seconds)`, the longest first.
pub fn report() -> Vec<(String, u64, f64)> {
    #[cfg(feature = "cuda")]
    events::drain();
    let m = totals().lock().map(|m| m.clone()).unwrap_or_default();
    let mut rows: Vec<_> = m.into_iter().map(|(k, (n, d))| (k.to_string(), n, d.as_secs_f64())).collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    rows
}

/// The `=events` profile: timing events around each op, read back later.
#[cfg(feature = "cuda")]
mod events {
    use std::cell::RefCell;
    use std::time::Duration;

    use candle_core::cuda_backend::cudarc::driver::sys::CUevent_flags;
    use candle_core::cuda_backend::cudarc::driver::{CudaEvent, CudaStream};

    /// The row of the GPU time between one op's end and the next op's start.
    pub(super) const BETWEEN: &str = "between our ops";
    /// Pending events are read once this many are held (the oldest are long done by then).
    const READ_AT: usize = 8192;

    struct Pending {
        name: &'static str,
        start: CudaEvent,
        end: CudaEvent,
        /// Whether the gap from the previous op's end counts (no step boundary between them).
        gap: bool,
        /// Whether its own time was read already.
        read: bool,
    }

    thread_local! {
        static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
        static AFTER_BOUNDARY: RefCell<bool> = const { RefCell::new(true) };
    }

    fn err(name: &str, e: impl std::fmt::Debug) -> candle_core::Error {
        candle_core::Error::Msg(format!("{name}: timing event: {e:?}"))
    }

    pub(super) fn timed<R>(
        name: &'static str,
        stream: &CudaStream,
        f: impl FnOnce() -> candle_core::Result<R>,
    ) -> candle_core::Result<R> {
        let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
        let start = stream.record_event(flags).map_err(|e| err(name, e))?;
        let out = f()?;
        let end = stream.record_event(flags).map_err(|e| err(name, e))?;
        let gap = !AFTER_BOUNDARY.with(|b| b.replace(false));
        let full = PENDING.with(|p| {
            let mut p = p.borrow_mut();
            p.push(Pending { name, start, end, gap, read: false });
            p.len() >= READ_AT
        });
        if full {
            read(READ_AT / 2);
        }
        Ok(out)
    }

    pub(super) fn boundary() {
        AFTER_BOUNDARY.with(|b| *b.borrow_mut() = true);
    }

    /// Reads all pending events into the totals.
    pub(super) fn drain() {
        read(usize::MAX);
    }

    /// Reads the oldest `n` pending events (waiting for them) into the totals. Where some stay pending, the last one
    /// read is kept (marked read) as the start of the next one's gap.
    fn read(n: usize) {
        let ms = |a: &CudaEvent, b: &CudaEvent| {
            a.elapsed_ms(b).ok().map(|t| Duration::from_secs_f64(f64::from(t.max(0.0)) / 1e3))
        };
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            let n = n.min(p.len());
            for i in 0..n {
                let e = &p[i];
                if !e.read {
                    if let Some(d) = ms(&e.start, &e.end) {
                        super::add(e.name, d);
                    }
                }
                if i > 0 && e.gap {
                    if let Some(d) = ms(&p[i - 1].end, &e.start) {
                        super::add(BETWEEN, d);
                    }
                }
            }
            let keep_from = if n < p.len() { n.saturating_sub(1) } else { n };
            p.drain(..keep_from);
            if let Some(first) = p.first_mut().filter(|_| keep_from < n) {
                first.read = true;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_values_map_to_modes() {
        let m = |v: &[&str]| parse_mode(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(m(&["", ""]), Mode::Off);
        assert_eq!(m(&["0", "off"]), Mode::Off);
        assert_eq!(m(&["1", ""]), Mode::Synced);
        assert_eq!(m(&["", " on "]), Mode::Synced);
        assert_eq!(m(&[" host", ""]), Mode::Host);
        assert_eq!(m(&["1", "host"]), Mode::Host);
        assert_eq!(m(&["events", ""]), Mode::Events);
        assert_eq!(m(&["1", " events"]), Mode::Events);
        assert_eq!(m(&["events", "host"]), Mode::Host);
    }
}
