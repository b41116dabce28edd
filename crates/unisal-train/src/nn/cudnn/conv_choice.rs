//! How the convolution op (`conv.rs`) chooses cuDNN's algorithm for each pass: once per geometry, pass, data type
//! and thread, by cuDNN's timed search (`cudnnFindConvolution*Algorithm`, what PyTorch does with
//! `cudnn.benchmark = True`) or by its heuristics (`cudnnGetConvolution*Algorithm_v7`) with `UNISAL_CUDNN_FIND=0` or
//! where the search fails; the first of cuDNN's ranking that fits the workspace limit and keeps to the allowed
//! math. `UNISAL_CUDNN_LOG=1` writes each choice with cuDNN's ranking and timings to stderr.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::OnceLock;

use super::conv::Descs;
use super::ffi::{self, AlgoPerf, Api, Ptr};
use super::handle::check;
use super::{allowed_math, tf32_allowed};
use crate::nn::conv_cpu::ConvOp;

/// Cache key of an algorithm choice: see [`key`].
pub(super) type ChoiceKey = [usize; 12];

/// Cache key of an algorithm choice: the geometry, the pass, the data type, whether TF32 was allowed and whether
/// the data is channels last.
pub(super) fn key(op: &ConvOp, pass: u8, data: c_int) -> ChoiceKey {
    let g = op.g;
    let t = [pass as usize, data as usize, tf32_allowed() as usize, op.nhwc as usize];
    [g.n, g.c, g.h, g.w, g.k, g.stride, g.pad, op.out, t[0], t[1], t[2], t[3]]
}

/// Whether tensor-core math may run: always for bf16 data, for f32 only with TF32 allowed.
fn tensor_ops(data: c_int) -> bool {
    data == ffi::DATA_BFLOAT16 || tf32_allowed()
}

/// An algorithm choice of one pass: cuDNN's algorithm number and its math type (its workspace: `workspace_bytes`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Choice {
    pub algo: c_int,
    pub math: c_int,
    /// cuDNN's time of it, ms, where its timed search ran (else negative: the heuristics' choice, not timed).
    pub ms: f32,
}

/// A pass's key (see [`key`]), its algorithm and math type.
type WorkspaceKey = (ChoiceKey, c_int, c_int);

thread_local! {
    static CHOICES: RefCell<HashMap<ChoiceKey, Choice>> = RefCell::new(HashMap::new());
    // The workspace of each (pass key, algorithm, math type), asked of cuDNN once: the question costs host time at
    // every call (cuDNN 9 works out the algorithm's engine to answer it).
    static WORKSPACE_BYTES: RefCell<HashMap<WorkspaceKey, usize>> = RefCell::new(HashMap::new());
}

/// The most workspace one convolution may take: 2 GiB, or `UNISAL_CUDNN_WORKSPACE_MB` (PyTorch's timed search
/// allows as much as the device has free, and takes FFT algorithms for some of ResNet-50's layers).
pub(super) fn max_workspace() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    let mb = || std::env::var("UNISAL_CUDNN_WORKSPACE_MB").ok()?.trim().parse::<usize>().ok();
    *MAX.get_or_init(|| mb().map_or(2 << 30, |mb| mb << 20))
}

/// The first of cuDNN's ranked results that ran, fits [`max_workspace`] and keeps to the allowed math (for data of
/// type `data`).
fn choose(what: &str, results: &[AlgoPerf], data: c_int) -> candle_core::Result<Choice> {
    let tensor = tensor_ops(data);
    results
        .iter()
        .find(|p| {
            p.status == ffi::STATUS_SUCCESS
                && p.memory <= max_workspace()
                && (tensor
                    || !matches!(p.math_type, ffi::TENSOR_OP_MATH | ffi::TENSOR_OP_MATH_ALLOW_CONVERSION))
        })
        // In strict fp32 the descriptor keeps FMA math: cuDNN's default math would allow TF32 on Ampere and later.
        .map(|p| Choice { algo: p.algo, math: if tensor { p.math_type } else { ffi::FMA_MATH }, ms: p.time })
        .ok_or_else(|| candle_core::Error::Msg(format!("cuDNN {what}: no usable algorithm")))
}

/// One pass's algorithm question, `(handle, in, filter or in, convolution, out, wanted, count, results)`:
/// cuDNN's heuristics (`cudnnGetConvolution*Algorithm_v7`) and its timed search (`cudnnFindConvolution*Algorithm`)
/// have this one signature.
pub(super) type Query =
    unsafe extern "C" fn(Ptr, Ptr, Ptr, Ptr, Ptr, c_int, *mut c_int, *mut AlgoPerf) -> ffi::Status;

/// Whether algorithms are chosen by timing them (cuDNN's `Find`, PyTorch's `cudnn.benchmark = True`): the default.
/// `UNISAL_CUDNN_FIND=0` takes the heuristics' choice instead: no timing runs, the same choice in every run.
fn find_allowed() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("UNISAL_CUDNN_FIND").map_or(true, |v| v.trim() != "0"))
}

/// Whether each algorithm choice is written to stderr with cuDNN's ranking (`UNISAL_CUDNN_LOG=1`): for comparing
/// the choices and their timed costs with PyTorch's (`scripts/torch_conv_layers.py`).
pub(super) fn log_choices() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("UNISAL_CUDNN_LOG").is_ok_and(|v| v.trim() == "1"))
}

/// One line of the choice log: `cudnn-choice <pass> n c h w k stride pad out dtype tf32 nchw|nhwc -> algo math ms |
/// algo:ms:MiB ...` (a time of -1 where cuDNN did not time it: its heuristics).
fn choice_line(what: &str, key: ChoiceKey, results: &[AlgoPerf], choice: Option<&Choice>) -> String {
    let pass = what.trim_start_matches("convolution ").replace(' ', "-");
    let geometry = key[..8].iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
    let chosen = choice.map_or("none".to_string(), |c| format!("{} {} {:.4}", c.algo, c.math, c.ms));
    let ranked: Vec<String> = results
        .iter()
        .filter(|p| p.status == ffi::STATUS_SUCCESS)
        .map(|p| format!("{}:{:.4}:{}:{}", p.algo, p.time, p.memory >> 20, p.math_type))
        .collect();
    let layout = if key[11] == 1 { "nhwc" } else { "nchw" };
    let ranked = ranked.join(" ");
    format!("cudnn-choice {pass} {geometry} {} {} {layout} -> {chosen} | {ranked}", key[9], key[10])
}

/// The cached choice for `key`, else cuDNN's answer to `find` (timed) or `get` (heuristics) for the descriptors
/// `d` = (in, filter or in, convolution, out) in the order the pass's calls take them. A failed timed search falls
/// back to the heuristics and says so once.
pub(super) fn cached(
    a: &Api,
    h: Ptr,
    (key, what, data): (ChoiceKey, &str, c_int),
    d: [Ptr; 4],
    (get, find): (Query, Query),
) -> candle_core::Result<Choice> {
    if let Some(c) = CHOICES.with(|m| m.borrow().get(&key).copied()) {
        return Ok(c);
    }
    // Ask for what may run; the descriptor may still hold another pass's math type.
    check(unsafe { (a.cudnnSetConvolutionMathType)(d[2], allowed_math(data)) }, what)?;
    let ask = |query: Query| -> candle_core::Result<Choice> {
        const N: usize = 10;
        let mut results = [AlgoPerf::default(); N];
        let mut count: c_int = 0;
        let status =
            unsafe { query(h, d[0], d[1], d[2], d[3], N as c_int, &mut count, results.as_mut_ptr()) };
        check(status, what)?;
        let results = &results[..count.clamp(0, N as c_int) as usize];
        let choice = choose(what, results, data);
        if log_choices() {
            eprintln!("{}", choice_line(what, key, results, choice.as_ref().ok()));
        }
        choice
    };
    let choice = if find_allowed() {
        ask(find).or_else(|e| {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!("unisal: cuDNN's timed algorithm search failed ({e}); using its heuristics")
            });
            ask(get)
        })?
    } else {
        ask(get)?
    };
    CHOICES.with(|m| m.borrow_mut().insert(key, choice));
    Ok(choice)
}

/// Sets the convolution descriptor's math type for `choice` (the pass's calls follow) and returns the workspace its
/// algorithm needs for the pass `key`, asked of cuDNN (`size`) the first time only.
pub(super) fn workspace_bytes(
    a: &Api,
    d: &Descs,
    (key, choice, what): (ChoiceKey, Choice, &str),
    size: impl FnOnce(*mut usize) -> ffi::Status,
) -> candle_core::Result<usize> {
    check(unsafe { (a.cudnnSetConvolutionMathType)(d.conv.ptr, choice.math) }, what)?;
    let k = (key, choice.algo, choice.math);
    let reuse = super::reuse();
    if let Some(bytes) = WORKSPACE_BYTES.with(|m| m.borrow().get(&k).copied()).filter(|_| reuse) {
        return Ok(bytes);
    }
    let mut bytes = 0;
    check(size(&mut bytes), what)?;
    if reuse {
        WORKSPACE_BYTES.with(|m| m.borrow_mut().insert(k, bytes));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perf(algo: c_int, status: ffi::Status, memory: usize, math_type: c_int) -> AlgoPerf {
        AlgoPerf { algo, status, memory, math_type, ..AlgoPerf::default() }
    }

    #[test]
    fn the_first_algorithm_that_ran_fits_and_keeps_fp32_is_chosen() {
        // UNISAL_TF32 is not set in tests: tensor-core math is refused and the descriptor keeps FMA math.
        let ranked = [
            perf(6, 3000, 0, ffi::FMA_MATH),                      // did not run
            perf(5, ffi::STATUS_SUCCESS, 0, ffi::TENSOR_OP_MATH), // TF32
            perf(4, ffi::STATUS_SUCCESS, max_workspace() + 1, ffi::DEFAULT_MATH), // too much workspace
            perf(1, ffi::STATUS_SUCCESS, 1 << 20, ffi::DEFAULT_MATH),
            perf(0, ffi::STATUS_SUCCESS, 0, ffi::FMA_MATH),
        ];
        let c = choose("test", &ranked, ffi::DATA_FLOAT).unwrap();
        assert_eq!((c.algo, c.math), (1, ffi::FMA_MATH));
        // bf16 takes tensor cores: the first that ran.
        let c = choose("test", &ranked, ffi::DATA_BFLOAT16).unwrap();
        assert_eq!((c.algo, c.math), (5, ffi::TENSOR_OP_MATH));
        let err = choose("test", &ranked[..3], ffi::DATA_FLOAT).unwrap_err().to_string();
        assert!(err.contains("no usable algorithm"), "{err}");
    }
}
