//! Convolutions through cuDNN's graph (backend) API: for each geometry, pass and data type, an operation graph of the
//! one convolution, the engine configurations cuDNN's heuristics rank for it (mode A, then the fallback list), each
//! finalised into an execution plan and timed on the real buffers (CUDA events, like PyTorch's `cudnn.benchmark`
//! over its cudnn-frontend plans), the fastest kept and executed from then on.
//!
//! `UNISAL_CUDNN_GRAPH`: `0`, off (the legacy `cudnnFind*` of `conv_choice.rs`); `1`, every pass through its best
//! plan; unset or `auto`, a pass through its best plan where that timed faster than the legacy choice did in cuDNN's
//! own search. Why: the legacy calls reach one configuration per legacy algorithm. Session 14's per-layer table
//! (`scripts/torch_conv_layers.py`) found PyTorch's backward-filter twice as fast on ResNet-50's 1x1 convolutions at
//! 56x56 and 28x28 (0.70 against 1.38 ms); with `1` the dual ResNet-50 step ran at 483 img/s against 470 (H200),
//! but ResNet-18 at 2,456 against 2,809: its 3x3 convolutions' FFT and Winograd algorithms beat the plans tried
//! here. `auto` keeps the better of the two for each pass: on an H200 in session 18, dual ResNet-50 527 img/s
//! against 482 legacy, ResNet-18 3,092 against 3,060; the default since.
//!
//! In strict fp32 (no `UNISAL_TF32`) engines with tensor-core or down-converting numerics are refused. Where no plan
//! runs, the caller falls back to the legacy path. Plans and their descriptors are kept per thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::rc::Rc;
use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::sys::CUevent_flags;
use candle_core::cuda_backend::cudarc::driver::CudaStream;

use super::ffi::{self, GraphApi as Api, Ptr};
use super::handle::{check, with_workspace};
use crate::nn::conv_cpu::ConvOp;
pub(super) use crate::nn::graph_mode::{mode, Mode};

/// A convolution pass, with its operation's descriptor type and attribute names `(alpha, beta, conv, x, w, y)`
/// (for the backward passes: dx or x, w or dw, dy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Pass {
    Forward,
    BackwardData,
    BackwardFilter,
}

impl Pass {
    fn op_type(self) -> c_int {
        match self {
            Pass::Forward => 10,
            Pass::BackwardFilter => 11,
            Pass::BackwardData => 12,
        }
    }

    /// `[alpha, beta, conv, x, w, y]` attribute names of the pass's operation.
    fn attrs(self) -> [c_int; 6] {
        match self {
            Pass::Forward => [700, 701, 702, 704, 703, 705],
            Pass::BackwardData => [706, 707, 708, 710, 709, 711],
            Pass::BackwardFilter => [712, 713, 714, 716, 715, 717],
        }
    }
}

// Descriptor types, attribute names and attribute types of cuDNN 9's `cudnn_graph_v9.h`.
const CONVOLUTION_DESCRIPTOR: c_int = 1;
const ENGINE_DESCRIPTOR: c_int = 2;
const ENGINECFG_DESCRIPTOR: c_int = 3;
const ENGINEHEUR_DESCRIPTOR: c_int = 4;
const EXECUTION_PLAN_DESCRIPTOR: c_int = 5;
const OPERATIONGRAPH_DESCRIPTOR: c_int = 15;
const VARIANT_PACK_DESCRIPTOR: c_int = 16;
const TENSOR_DESCRIPTOR: c_int = 17;
const T_HANDLE: c_int = 0;
const T_DATA_TYPE: c_int = 1;
const T_INT64: c_int = 3;
const T_FLOAT: c_int = 4;
const T_VOID_PTR: c_int = 6;
const T_CONVOLUTION_MODE: c_int = 7;
const T_HEUR_MODE: c_int = 8;
const T_NUMERICAL_NOTE: c_int = 11;
const T_BACKEND_DESCRIPTOR: c_int = 15;
const HEUR_MODE_FALLBACK: c_int = 2;
const HEUR_MODE_A: c_int = 3;
/// `CUDNN_NUMERICAL_NOTE_TENSOR_CORE`, `_DOWN_CONVERT_INPUTS`, `_REDUCED_PRECISION_REDUCTION`: not strict fp32.
const NOT_FP32_NOTES: [c_int; 3] = [0, 1, 2];

/// A backend descriptor, destroyed with its owner.
struct BDesc(Ptr);

impl Drop for BDesc {
    fn drop(&mut self) {
        if let Ok(a) = ffi::graph_api() {
            // SAFETY: made by cudnnBackendCreateDescriptor, destroyed once.
            let _ = unsafe { (a.cudnnBackendDestroyDescriptor)(self.0) };
        }
    }
}

impl BDesc {
    fn new(a: &Api, kind: c_int) -> candle_core::Result<Self> {
        let mut p: Ptr = std::ptr::null_mut();
        check(unsafe { (a.cudnnBackendCreateDescriptor)(kind, &mut p) }, "graph: create a descriptor")?;
        Ok(Self(p))
    }

    fn set<T>(&self, a: &Api, (name, kind): (c_int, c_int), values: &[T]) -> candle_core::Result<&Self> {
        let status = unsafe {
            (a.cudnnBackendSetAttribute)(
                self.0,
                name,
                kind,
                values.len() as i64,
                values.as_ptr() as *const c_void,
            )
        };
        check(status, &format!("graph: set attribute {name}"))?;
        Ok(self)
    }

    fn finalize(&self, a: &Api, what: &str) -> candle_core::Result<()> {
        check(unsafe { (a.cudnnBackendFinalize)(self.0) }, what)
    }
}

/// An execution plan and every descriptor it was made from (kept alive with it), with its workspace size.
struct Plan {
    plan: BDesc,
    workspace: usize,
    /// Its time in the search, ms.
    ms: f32,
    _parts: Vec<Rc<BDesc>>,
}

/// A plan's key: the geometry `[n, c, h, w, k, stride, pad, out]`, the pass, cuDNN's data type and whether the
/// data is channels last.
type PlanKey = ([usize; 8], Pass, c_int, bool);

thread_local! {
    // The chosen plan of each key, or None where the graph API had none.
    static PLANS: RefCell<HashMap<PlanKey, Option<Rc<Plan>>>> = RefCell::new(HashMap::new());
}

/// A finalised tensor descriptor of logical dims `dims` (`[n, c, h, w]`, or a filter's `[o, c, k, k]`), stored in
/// that order or, with `nhwc`, channels last, with id `uid`.
fn tensor(
    a: &Api,
    dims: [usize; 4],
    (data, nhwc): (c_int, bool),
    uid: i64,
) -> candle_core::Result<Rc<BDesc>> {
    let d = BDesc::new(a, TENSOR_DESCRIPTOR)?;
    let dims = dims.map(|v| v as i64);
    let strides = match nhwc {
        false => [dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1],
        true => [dims[1] * dims[2] * dims[3], 1, dims[3] * dims[1], dims[1]],
    };
    d.set(a, (901, T_DATA_TYPE), &[data])?
        .set(a, (902, T_INT64), &dims)?
        .set(a, (903, T_INT64), &strides)?
        .set(a, (906, T_INT64), &[uid])?
        .set(a, (900, T_INT64), &[16i64])?;
    d.finalize(a, "graph: tensor")?;
    Ok(Rc::new(d))
}

/// The operation graph of `pass` over `op`'s convolution, and its descriptors.
fn graph(
    a: &Api,
    h: Ptr,
    op: &ConvOp,
    pass: Pass,
    data: c_int,
) -> candle_core::Result<(BDesc, Vec<Rc<BDesc>>)> {
    let g = op.g;
    let layout = (data, op.nhwc);
    let x = tensor(a, [g.n, g.c, g.h, g.w], layout, 1)?;
    let w = tensor(a, [op.out, g.c, g.k, g.k], layout, 2)?;
    let y = tensor(a, [g.n, op.out, g.ho(), g.wo()], layout, 3)?;
    let conv = Rc::new(BDesc::new(a, CONVOLUTION_DESCRIPTOR)?);
    let (s, p) = (g.stride as i64, g.pad as i64);
    conv.set(a, (100, T_DATA_TYPE), &[ffi::DATA_FLOAT])?
        .set(a, (101, T_CONVOLUTION_MODE), &[ffi::CROSS_CORRELATION])?
        .set(a, (106, T_INT64), &[2i64])?
        .set(a, (102, T_INT64), &[1i64, 1])?
        .set(a, (103, T_INT64), &[s, s])?
        .set(a, (105, T_INT64), &[p, p])?
        .set(a, (104, T_INT64), &[p, p])?;
    conv.finalize(a, "graph: convolution")?;
    let node = Rc::new(BDesc::new(a, pass.op_type())?);
    let [alpha, beta, c, xa, wa, ya] = pass.attrs();
    node.set(a, (alpha, T_FLOAT), &[1f32])?
        .set(a, (beta, T_FLOAT), &[0f32])?
        .set(a, (c, T_BACKEND_DESCRIPTOR), &[conv.0])?
        .set(a, (xa, T_BACKEND_DESCRIPTOR), &[x.0])?
        .set(a, (wa, T_BACKEND_DESCRIPTOR), &[w.0])?
        .set(a, (ya, T_BACKEND_DESCRIPTOR), &[y.0])?;
    node.finalize(a, "graph: convolution operation")?;
    let graph = BDesc::new(a, OPERATIONGRAPH_DESCRIPTOR)?;
    graph.set(a, (800, T_HANDLE), &[h])?.set(a, (801, T_BACKEND_DESCRIPTOR), &[node.0])?;
    graph.finalize(a, "graph: operation graph")?;
    Ok((graph, vec![x, w, y, conv, node]))
}

/// The engine configurations cuDNN's heuristics `mode` rank for `graph` (at most 32).
fn configs(a: &Api, graph: &BDesc, mode: c_int) -> candle_core::Result<Vec<Rc<BDesc>>> {
    let heur = BDesc::new(a, ENGINEHEUR_DESCRIPTOR)?;
    heur.set(a, (201, T_BACKEND_DESCRIPTOR), &[graph.0])?.set(a, (200, T_HEUR_MODE), &[mode])?;
    heur.finalize(a, "graph: heuristics")?;
    let cfgs =
        (0..32).map(|_| BDesc::new(a, ENGINECFG_DESCRIPTOR).map(Rc::new)).collect::<Result<Vec<_>, _>>()?;
    let mut ptrs: Vec<Ptr> = cfgs.iter().map(|c| c.0).collect();
    let mut count = 0i64;
    let status = unsafe {
        (a.cudnnBackendGetAttribute)(
            heur.0,
            202,
            T_BACKEND_DESCRIPTOR,
            ptrs.len() as i64,
            &mut count,
            ptrs.as_mut_ptr() as *mut c_void,
        )
    };
    check(status, "graph: heuristics' results")?;
    Ok(cfgs.into_iter().take(count.clamp(0, 32) as usize).collect())
}

/// Whether the engine of `cfg` keeps to the allowed numerics (strict fp32 refuses tensor cores and conversions).
fn numerics_allowed(a: &Api, cfg: &BDesc, data: c_int) -> bool {
    if data == ffi::DATA_BFLOAT16 || super::tf32_allowed() {
        return true;
    }
    let Ok(engine) = BDesc::new(a, ENGINE_DESCRIPTOR) else { return false };
    let mut n = 0i64;
    let mut engine_ptr = engine.0;
    let got = unsafe {
        (a.cudnnBackendGetAttribute)(
            cfg.0,
            300,
            T_BACKEND_DESCRIPTOR,
            1,
            &mut n,
            &mut engine_ptr as *mut Ptr as _,
        )
    };
    if got != ffi::STATUS_SUCCESS {
        return false;
    }
    let mut notes = [0 as c_int; 16];
    let got = unsafe {
        (a.cudnnBackendGetAttribute)(engine.0, 1303, T_NUMERICAL_NOTE, 16, &mut n, notes.as_mut_ptr() as _)
    };
    got == ffi::STATUS_SUCCESS && !notes[..n.clamp(0, 16) as usize].iter().any(|v| NOT_FP32_NOTES.contains(v))
}

/// Enqueues `plan` on `h`'s stream with the device addresses `ptrs` of tensors 1, 2 and 3.
fn execute(
    a: &Api,
    h: Ptr,
    stream: &Arc<CudaStream>,
    plan: &Plan,
    ptrs: [*mut c_void; 3],
) -> candle_core::Result<()> {
    with_workspace(stream, plan.workspace, |ws| {
        let pack = BDesc::new(a, VARIANT_PACK_DESCRIPTOR)?;
        pack.set(a, (1000, T_INT64), &[1i64, 2, 3])?.set(a, (1001, T_VOID_PTR), &ptrs)?.set(
            a,
            (1003, T_VOID_PTR),
            &[ws],
        )?;
        pack.finalize(a, "graph: variant pack")?;
        check(unsafe { (a.cudnnBackendExecute)(h, plan.plan.0, pack.0) }, "graph: execute")
    })
}

/// Runs `pass` of `op` on the tensors at `ptrs` (x or dx, w or dw, y or dy) with the fastest plan of the graph API
/// (chosen on first use by timing each on these buffers) where `mode` takes it over the legacy choice, whose time
/// `legacy_ms` gives (asked for only under [`Mode::Auto`] and for the choice log: it may run cuDNN's legacy timed
/// search); `false` otherwise, nothing enqueued but the search's timing runs.
pub(super) fn run(
    a: &Api,
    (h, stream): (Ptr, &Arc<CudaStream>),
    (op, pass, data): (&ConvOp, Pass, c_int),
    ptrs: [*mut c_void; 3],
    (mode, legacy_ms): (Mode, impl FnOnce() -> candle_core::Result<f32>),
) -> candle_core::Result<bool> {
    let g = op.g;
    let key = ([g.n, g.c, g.h, g.w, g.k, g.stride, g.pad, op.out], pass, data, op.nhwc);
    let cached = PLANS.with(|m| m.borrow().get(&key).cloned());
    let fresh = cached.is_none();
    let plan = match cached {
        Some(p) => p,
        None => {
            let p = choose(a, (h, stream), (op, pass, data), ptrs)?.map(Rc::new);
            PLANS.with(|m| m.borrow_mut().insert(key, p.clone()));
            p
        }
    };
    let Some(p) = plan else { return Ok(false) };
    let log = fresh && super::conv_choice::log_choices();
    let legacy_ms = if mode == Mode::Auto || log { legacy_ms()? } else { -1.0 };
    let took = mode.takes_plan(p.ms, legacy_ms);
    if log {
        let dims = key.0.map(|v| v.to_string()).join(" ");
        let layout = if op.nhwc { "nhwc" } else { "nchw" };
        eprintln!(
            "cudnn-graph {pass:?} {dims} {data} {layout} -> {:.4} ms, legacy {legacy_ms:.4} ms, plan {took}",
            p.ms
        );
    }
    if took {
        execute(a, h, stream, &p, ptrs)?;
    }
    Ok(took)
}

/// The fastest plan of the ranked configurations (mode A, then the fallback list) on these buffers, by [`time`];
/// `None` where none finalises.
fn choose(
    a: &Api,
    (h, stream): (Ptr, &Arc<CudaStream>),
    (op, pass, data): (&ConvOp, Pass, c_int),
    ptrs: [*mut c_void; 3],
) -> candle_core::Result<Option<Plan>> {
    let (graph, parts) = graph(a, h, op, pass, data)?;
    let graph = Rc::new(graph);
    let mut cfgs = configs(a, &graph, HEUR_MODE_A)?;
    cfgs.extend(configs(a, &graph, HEUR_MODE_FALLBACK).unwrap_or_default());
    let limit = super::conv_choice::max_workspace();
    let mut best: Option<Plan> = None;
    let mut tried = 0;
    for cfg in cfgs {
        if tried >= 12 {
            break;
        }
        if !numerics_allowed(a, &cfg, data) {
            continue;
        }
        let Ok(plan) = BDesc::new(a, EXECUTION_PLAN_DESCRIPTOR) else { continue };
        let built =
            plan.set(a, (400, T_HANDLE), &[h]).and_then(|p| p.set(a, (401, T_BACKEND_DESCRIPTOR), &[cfg.0]));
        if built.is_err() || plan.finalize(a, "graph: plan").is_err() {
            continue;
        }
        let mut ws = 0i64;
        let mut n = 0i64;
        let got = unsafe {
            (a.cudnnBackendGetAttribute)(plan.0, 402, T_INT64, 1, &mut n, &mut ws as *mut i64 as _)
        };
        if got != ffi::STATUS_SUCCESS || ws < 0 || ws as usize > limit {
            continue;
        }
        tried += 1;
        let mut keep = parts.clone();
        keep.extend([graph.clone(), cfg]);
        let mut candidate = Plan { plan, workspace: ws as usize, ms: 0.0, _parts: keep };
        let Ok(ms) = time(a, (h, stream), &candidate, ptrs) else { continue };
        candidate.ms = ms;
        if best.as_ref().is_none_or(|b| ms < b.ms) {
            best = Some(candidate);
        }
    }
    Ok(best)
}

/// The time of one run of `plan`, ms: the median of three spans of three runs each, enqueued back to back after a
/// warm-up run with no wait between them (CUDA events on the stream, read at the end). Timed one run at a time
/// from an idle stream, each span would also hold the host's time to enqueue the run (its variant pack), which
/// cuDNN's timing of the legacy choice, what `auto` compares with, does not.
fn time(
    a: &Api,
    (h, stream): (Ptr, &Arc<CudaStream>),
    plan: &Plan,
    ptrs: [*mut c_void; 3],
) -> candle_core::Result<f32> {
    const RUNS: usize = 3;
    let err = |e| candle_core::Error::Msg(format!("graph: timing event: {e:?}"));
    let event = || stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(err);
    execute(a, h, stream, plan, ptrs)?;
    let mut events = vec![event()?];
    for _ in 0..3 {
        for _ in 0..RUNS {
            execute(a, h, stream, plan, ptrs)?;
        }
        events.push(event()?);
    }
    let mut times = Vec::with_capacity(3);
    for pair in events.windows(2) {
        times.push(pair[0].elapsed_ms(&pair[1]).map_err(err)? / RUNS as f32);
    }
    times.sort_by(f32::total_cmp);
    Ok(times[1])
}
