//! The CUDA side of the convolution ops (`conv_cpu.rs`'s `ConvOp`, `conv_backward.rs`'s `ConvBackwardOp`): cuDNN's
//! forward, and a backward of cuDNN's backward-data and backward-filter (candle 0.11.1 uses cuDNN for the forward
//! only; its backward is a naive `conv_transpose2d` and a convolution per weight gradient, and fails for stride 2
//! on non-square inputs). With `ConvOp::nhwc` the activations are channels last and the weights `[O, k, k, C]`
//! (the block op's, `block.rs`).
//!
//! The algorithms are chosen once per geometry, pass and thread (`conv_choice.rs`). On the H200 cuDNN's
//! heuristics' fp32 choices made ResNet-18's convolutions about twice as slow as PyTorch's (session 6); its timed
//! search is the default.
//! The descriptors, the workspace sizes and one workspace buffer (`handle::with_workspace`) are kept between
//! calls (`UNISAL_CUDNN_REUSE=0` makes them anew): on the H200 a convolution cost its thread 214 µs (forward) and
//! 359 µs (backward) of host time a call, against PyTorch's 113 and 133 (session 12). The backward returns
//! `[dx | dW]` in one buffer, or only `dW` where nothing needs `dx` (the images into the first layer). The backward
//! is not itself differentiable.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::rc::Rc;
use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::CudaStream;
use candle_core::{CudaStorage, Layout, Shape};

pub(super) use super::conv_choice::Choice;
use super::conv_choice::{cached, key, workspace_bytes};
use super::ffi::{self, Api, Ptr};
use super::graph::{self, Pass};
use super::handle::{
    by_elem, check, input, kept, output, ptr, ptr_mut, scale, storage, with_handle, with_workspace,
    CudnnElem, Desc, ONE, ZERO,
};
use crate::nn::conv_backward::{dw_offset, ConvBackwardOp};
use crate::nn::conv_cpu::ConvOp;
use crate::nn::cpu_util::Kernel;

/// The four descriptors of one convolution.
pub(super) struct Descs {
    pub x: Desc,
    pub w: Desc,
    pub conv: Desc,
    pub y: Desc,
    /// cuDNN's data type of the tensors (the convolution accumulates in f32).
    pub data: c_int,
}

thread_local! {
    // The descriptors of each geometry and data type, made once: they never change, but for the convolution's math
    // type, which each pass sets before its calls (`workspace_bytes`).
    static DESCS: RefCell<HashMap<[usize; 10], Rc<Descs>>> = RefCell::new(HashMap::new());
}

/// The descriptors of `op` on data of cuDNN's type `data` (this thread's, made on first use).
pub(super) fn descs(op: &ConvOp, data: c_int) -> candle_core::Result<Rc<Descs>> {
    let (g, out) = (op.g, op.out);
    let key = [g.n, g.c, g.h, g.w, g.k, g.stride, g.pad, out, data as usize, op.nhwc as usize];
    kept(&DESCS, key, || {
        Ok(Descs {
            x: Desc::tensor4([g.n, g.c, g.h, g.w], data, op.nhwc)?,
            w: Desc::filter_in([out, g.c, g.k, g.k], data, op.nhwc)?,
            conv: Desc::conv(g.pad, g.stride)?,
            y: Desc::tensor4([g.n, out, g.ho(), g.wo()], data, op.nhwc)?,
            data,
        })
    })
}

/// The forward pass's algorithm for `op` (cached; see [`cached`]).
pub(super) fn forward_choice(a: &Api, h: Ptr, op: &ConvOp, d: &Descs) -> candle_core::Result<Choice> {
    let what = "convolution forward";
    let queries = (a.cudnnGetConvolutionForwardAlgorithm_v7, a.cudnnFindConvolutionForwardAlgorithm);
    cached(a, h, (key(op, 0, d.data), what, d.data), [d.x.ptr, d.w.ptr, d.conv.ptr, d.y.ptr], queries)
}

/// The forward's workspace for `choice`: see [`workspace_bytes`].
pub(super) fn forward_workspace(
    a: &Api,
    h: Ptr,
    (op, d): (&ConvOp, &Descs),
    (choice, what): (Choice, &str),
) -> candle_core::Result<usize> {
    workspace_bytes(a, d, (key(op, 0, d.data), choice, what), |bytes| unsafe {
        (a.cudnnGetConvolutionForwardWorkspaceSize)(
            h,
            d.x.ptr,
            d.w.ptr,
            d.conv.ptr,
            d.y.ptr,
            choice.algo,
            bytes,
        )
    })
}

/// cuDNN's convolution forward, backward-data and backward-filter calls, which share one signature: `(handle,
/// alpha, in 1, in 2, convolution, algorithm, workspace, its bytes, beta, out)`, each input and the output a
/// descriptor and an address.
pub(super) type ConvCall = unsafe extern "C" fn(
    Ptr,
    *const c_void,
    Ptr,
    *const c_void,
    Ptr,
    *const c_void,
    Ptr,
    c_int,
    *mut c_void,
    usize,
    *const c_void,
    Ptr,
    *mut c_void,
) -> ffi::Status;

/// `out = call(in 1, in 2)` (beta 0) with the convolution descriptor, the pass's algorithm and a kept workspace of
/// `bytes` (`with_workspace`), enqueued on `stream`.
fn run_pass(
    call: ConvCall,
    (h, stream): (Ptr, &Arc<CudaStream>),
    ins: [(Ptr, *const c_void); 2],
    (conv, algo, bytes): (Ptr, c_int, usize),
    out: (Ptr, *mut c_void),
    what: &str,
) -> candle_core::Result<()> {
    run_pass_beta(call, (h, stream), ins, (conv, algo, bytes), (out.0, out.1, &ZERO), what)
}

/// [`run_pass`] with `out = call(in 1, in 2) + beta * out`.
pub(super) fn run_pass_beta(
    call: ConvCall,
    (h, stream): (Ptr, &Arc<CudaStream>),
    ins: [(Ptr, *const c_void); 2],
    (conv, algo, bytes): (Ptr, c_int, usize),
    (out_d, out_p, beta): (Ptr, *mut c_void, &f32),
    what: &str,
) -> candle_core::Result<()> {
    let (one, beta) = (scale(&ONE), scale(beta));
    let [(d1, p1), (d2, p2)] = ins;
    with_workspace(stream, bytes, |wsp| {
        // SAFETY: the descriptors describe the buffers behind the addresses, which live until the call is enqueued
        // (cuDNN's work then runs in stream order before any later use or free).
        check(unsafe { call(h, one, d1, p1, d2, p2, conv, algo, wsp, bytes, beta, out_d, out_p) }, what)
    })
}

/// Runs a pass through an execution plan of cuDNN's graph API where `UNISAL_CUDNN_GRAPH` asks for it (`graph.rs`:
/// always with `1`; with `auto` where its best plan timed faster than the legacy choice, whose time `legacy_ms`
/// gives: the legacy timed search runs only where that is asked) and it has one; `false` otherwise, nothing
/// enqueued.
fn by_graph(
    (h, stream): (Ptr, &Arc<CudaStream>),
    (op, pass, data): (&ConvOp, Pass, std::ffi::c_int),
    legacy_ms: impl FnOnce() -> candle_core::Result<f32>,
    ptrs: [*mut c_void; 3],
) -> candle_core::Result<bool> {
    let mode = graph::mode();
    if mode == graph::Mode::Off {
        return Ok(false);
    }
    match ffi::graph_api() {
        Ok(g) => graph::run(g, (h, stream), (op, pass, data), ptrs, (mode, legacy_ms)),
        Err(why) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!("unisal: cuDNN's graph API is not usable ({why}); using the legacy calls")
            });
            Ok(false)
        }
    }
}

/// The CUDA forward of [`ConvOp`]: `y = conv(x, w)` through cuDNN, in f32 or bf16 (accumulating in f32).
pub(crate) fn forward(
    op: &ConvOp,
    xs: &CudaStorage,
    xl: &Layout,
    ws: &CudaStorage,
    wl: &Layout,
) -> candle_core::Result<(CudaStorage, Shape)> {
    by_elem!(xs.dtype(), "convolution", T => forward_as::<T>(op, (xs, xl), (ws, wl)))
}

fn forward_as<T: CudnnElem>(
    op: &ConvOp,
    (xs, xl): (&CudaStorage, &Layout),
    (ws, wl): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let shape = Kernel::shape(op, &[xl, wl])?;
    let (x, w) = (input::<T>(xs, xl, "conv2d")?, input::<T>(ws, wl, "conv2d")?);
    let d = descs(op, T::DATA)?;
    with_handle(&xs.device, "conv-forward", |a, h, stream| {
        let what = "convolution forward";
        let mut y = output::<T>(stream, shape.elem_count())?;
        {
            let ((xp, _gx), (wp, _gw)) = (ptr(&x, stream), ptr(&w, stream));
            let (yp, _gy) = ptr_mut(&mut y, stream);
            let legacy = || forward_choice(a, h, op, &d);
            let ptrs = [xp as _, wp as _, yp];
            if !by_graph((h, stream), (op, Pass::Forward, d.data), || Ok(legacy()?.ms), ptrs)? {
                let choice = legacy()?;
                let bytes = forward_workspace(a, h, (op, &d), (choice, what))?;
                let ins = [(d.x.ptr, xp), (d.w.ptr, wp)];
                let call = a.cudnnConvolutionForward;
                run_pass(call, (h, stream), ins, (d.conv.ptr, choice.algo, bytes), (d.y.ptr, yp), what)?;
            }
        }
        Ok((storage(y, &xs.device), shape))
    })
}

/// The CUDA forward of [`ConvBackwardOp`]: `[dx | dW]` (only `dW` without `need_dx`) through cuDNN's
/// backward-data and backward-filter passes.
pub(crate) fn backward(
    op: &ConvBackwardOp,
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    dy: (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    by_elem!(x.0.dtype(), "convolution backward", T => backward_as::<T>(op, x, w, dy))
}

fn backward_as<T: CudnnElem>(
    op: &ConvBackwardOp,
    (xs, xl): (&CudaStorage, &Layout),
    (ws, wl): (&CudaStorage, &Layout),
    (dys, dyl): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let shape = Kernel::shape(op, &[xl, wl, dyl])?;
    let what = "conv2d";
    let (x, w, dy) = (input::<T>(xs, xl, what)?, input::<T>(ws, wl, what)?, input::<T>(dys, dyl, what)?);
    let c = &op.conv;
    let (x_len, w_len) = (if op.need_dx { xl.shape().elem_count() } else { 0 }, wl.shape().elem_count());
    let dw_at = dw_offset(x_len);
    let d = descs(c, T::DATA)?;
    with_handle(&xs.device, "conv-backward", |a, h, stream| {
        let mut out = output::<T>(stream, dw_at + w_len)?;
        let (dyp, _gdy) = ptr(&dy, stream);
        let (dx_d, dw_d, dc, dy_d) = (d.x.ptr, d.w.ptr, d.conv.ptr, d.y.ptr);
        {
            let what = "convolution backward filter";
            let mut dw = out.slice_mut(dw_at..dw_at + w_len);
            let (xp, _gx) = ptr(&x, stream);
            let (dwp, _gdw) = ptr_mut(&mut dw, stream);
            let queries = (
                a.cudnnGetConvolutionBackwardFilterAlgorithm_v7,
                a.cudnnFindConvolutionBackwardFilterAlgorithm,
            );
            let k = key(c, 2, d.data);
            let legacy = || cached(a, h, (k, what, d.data), [dx_d, dy_d, dc, dw_d], queries);
            let ptrs = [xp as _, dwp, dyp as _];
            if !by_graph((h, stream), (c, Pass::BackwardFilter, d.data), || Ok(legacy()?.ms), ptrs)? {
                let choice = legacy()?;
                let bytes = workspace_bytes(a, &d, (k, choice, what), |bytes| unsafe {
                    (a.cudnnGetConvolutionBackwardFilterWorkspaceSize)(
                        h,
                        dx_d,
                        dy_d,
                        dc,
                        dw_d,
                        choice.algo,
                        bytes,
                    )
                })?;
                let call = a.cudnnConvolutionBackwardFilter;
                let ins = [(dx_d, xp), (dy_d, dyp)];
                run_pass(call, (h, stream), ins, (dc, choice.algo, bytes), (dw_d, dwp), what)?;
            }
        }
        if op.need_dx {
            let mut dx = out.slice_mut(0..x_len);
            let (wp, _gw) = ptr(&w, stream);
            let (dxp, _gdx) = ptr_mut(&mut dx, stream);
            let legacy = || backward_data_choice(a, h, c, &d);
            let ptrs = [dxp, wp as _, dyp as _];
            if !by_graph((h, stream), (c, Pass::BackwardData, d.data), || Ok(legacy()?.ms), ptrs)? {
                run_backward_data((a, h, stream), (c, &d, legacy()?), (wp, dyp, dxp), &ZERO)?;
            }
        }
        Ok((storage(out, &xs.device), shape))
    })
}

/// The backward-data pass's algorithm for `c` (cached; see `conv_choice::cached`).
pub(super) fn backward_data_choice(a: &Api, h: Ptr, c: &ConvOp, d: &Descs) -> candle_core::Result<Choice> {
    let what = "convolution backward data";
    let queries =
        (a.cudnnGetConvolutionBackwardDataAlgorithm_v7, a.cudnnFindConvolutionBackwardDataAlgorithm);
    cached(a, h, (key(c, 1, d.data), what, d.data), [d.w.ptr, d.y.ptr, d.conv.ptr, d.x.ptr], queries)
}

/// `dx = conv_backward_data(w, dy) + beta * dx` with the legacy algorithm `choice`, enqueued on `stream`.
pub(super) fn run_backward_data(
    (a, h, stream): (&Api, Ptr, &Arc<CudaStream>),
    (c, d, choice): (&ConvOp, &Descs, Choice),
    (wp, dyp, dxp): (*const c_void, *const c_void, *mut c_void),
    beta: &f32,
) -> candle_core::Result<()> {
    let what = "convolution backward data";
    let (dx_d, dw_d, dc, dy_d) = (d.x.ptr, d.w.ptr, d.conv.ptr, d.y.ptr);
    let bytes = workspace_bytes(a, d, (key(c, 1, d.data), choice, what), |bytes| unsafe {
        (a.cudnnGetConvolutionBackwardDataWorkspaceSize)(h, dw_d, dy_d, dc, dx_d, choice.algo, bytes)
    })?;
    let (call, ins) = (a.cudnnConvolutionBackwardData, [(dw_d, wp), (dy_d, dyp)]);
    run_pass_beta(call, (h, stream), ins, (dc, choice.algo, bytes), (dx_d, dxp, beta), what)
}
