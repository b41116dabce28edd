//! Train-mode batch norm's forward as cuDNN runs it (`train_forward`: mode, call, fallbacks), and its calls through
//! `BatchNormalizationForwardTrainingEx` / `BatchNormalizationBackwardEx`, with a workspace and the reserve space the
//! forward leaves for its backward. These are the calls PyTorch makes; the plain ones take neither buffer.
//!
//! Why: on an H200 in session 18 the block op channels last in bf16 spent 225 ms a dual ResNet-50 step in the plain
//! persistent forward and 346 ms in its backward (424 calls each, 0.5-0.8 ms a call), against 17 and 25 ms for the
//! same batch norms NCHW, while its convolutions took half their NCHW time: cuDNN's fast persistent kernels for
//! channels-last data want the `Ex` calls' buffers.
//!
//! `UNISAL_BN_EX`: unset, the `Ex` calls for the persistent mode (channels last by default, `batchnorm.rs`'s
//! `train_mode`); `1`, for every train-mode batch norm; `0`, never. `UNISAL_BN_FUSED_RELU=1` (opt-in) asks the `Ex`
//! calls for the layer's ReLU too (`CUDNN_BATCHNORM_OPS_BN_ACTIVATION`, which cuDNN documents for channels-last
//! data in the persistent mode): no ReLU kernel after the forward, no mask before the backward. Where cuDNN lacks
//! them or refuses one for some data, the next simpler call runs and a line says so once. None of this has run on
//! a GPU yet.

use std::ffi::{c_int, c_void};
use std::sync::{Arc, OnceLock};

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream};

use super::ffi::{self, Api, BnExApi, Ptr, Status};
use super::handle::{check, kept, ptr, ptr_mut, scale, with_workspace, Desc, ONE, ZERO};

/// Whether `UNISAL_BN_EX` asks for the `Ex` calls in `mode`: unset, the persistent mode only.
fn wanted(mode: c_int, setting: Option<&str>) -> bool {
    match setting.map(str::trim) {
        Some("1" | "on" | "true") => true,
        Some("0" | "off" | "false") => false,
        _ => mode == ffi::BATCHNORM_SPATIAL_PERSISTENT,
    }
}

/// The `Ex` entry points where this process takes them for a batch norm in `mode`, else `None` (the plain calls).
pub(super) fn api_for(mode: c_int) -> Option<&'static BnExApi> {
    static SETTING: OnceLock<Option<String>> = OnceLock::new();
    let setting = SETTING.get_or_init(|| std::env::var("UNISAL_BN_EX").ok());
    if !wanted(mode, setting.as_deref()) {
        return None;
    }
    match ffi::bn_ex_api() {
        Ok(a) => Some(a),
        Err(why) => {
            say_once(&format!("cuDNN's Ex batch norm calls are not usable ({why})"));
            None
        }
    }
}

/// One line on stderr, the first time only, where the `Ex` path gives way to the plain calls.
pub(super) fn say_once(why: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| eprintln!("unisal: {why}; batch norm through cuDNN's plain calls instead"));
}

/// Whether `UNISAL_BN_FUSED_RELU=1` asks for the ReLU inside the `Ex` calls.
fn fused_relu_wanted() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("UNISAL_BN_FUSED_RELU").is_ok_and(|v| v.trim() == "1"))
}

/// This thread's ReLU activation descriptor, for the fused calls.
fn relu_desc() -> candle_core::Result<std::rc::Rc<Desc>> {
    type Kept = std::collections::HashMap<(), std::rc::Rc<Desc>>;
    thread_local! {
        static KEPT: std::cell::RefCell<Kept> = std::cell::RefCell::new(Kept::new());
    }
    kept(&KEPT, (), || Desc::activation(true))
}

/// Which call ran a train-mode forward, which its backward must take too.
pub(crate) enum TrainRun {
    /// cuDNN's plain call in `mode`.
    Plain { mode: c_int },
    /// cuDNN's `Ex` call in `mode`, with the reserve space it left for the backward and whether it applied the ReLU.
    Ex { mode: c_int, reserve: Option<CudaSlice<u8>>, relu_fused: bool },
    /// Our own kernels (`nn/cuda_bn.rs`) over this geometry.
    Ours(crate::nn::cuda_bn::Geom),
}

impl TrainRun {
    /// Whether the forward applied the layer's ReLU itself.
    pub(super) fn relu_fused(&self) -> bool {
        matches!(self, Self::Ex { relu_fused: true, .. })
    }
}

/// The train-mode forward over `x` (descriptor `xd`, parameters `pd`) in `nhwc` layout, with the ReLU where `relu`
/// and the fused calls run it (else the caller applies it): the `Ex` call with the ReLU, else without, where they
/// are wanted; else, or where cuDNN refuses them, the plain call; the persistent mode refused, `SPATIAL`.
pub(super) fn train_forward(
    (a, h, stream): (&Api, Ptr, &Arc<CudaStream>),
    (nhwc, relu): (bool, bool),
    (xd, pd): (Ptr, Ptr),
    p: &FwdPtrs,
    (momentum, eps): (f64, f64),
) -> candle_core::Result<TrainRun> {
    let mut mode = super::batchnorm::train_mode(nhwc);
    if let Some(ex) = api_for(mode) {
        // With the ReLU first where asked, then without (`act`: its descriptor, held through the call).
        let fused = (relu && fused_relu_wanted()).then(relu_desc).transpose()?;
        for act in fused.into_iter().map(Some).chain([None]) {
            let ops = if act.is_some() { ffi::BATCHNORM_OPS_BN_ACTIVATION } else { ffi::BATCHNORM_OPS_BN };
            let act_ptr = act.as_ref().map_or(std::ptr::null_mut(), |d| d.ptr);
            let (status, reserve) =
                forward(ex, (h, stream), (mode, ops, act_ptr), (xd, pd), p, (momentum, eps))?;
            if status == ffi::STATUS_SUCCESS {
                return Ok(TrainRun::Ex { mode, reserve, relu_fused: act.is_some() });
            }
            let why = check(status, "Ex batch norm forward").err().map(|e| e.to_string()).unwrap_or_default();
            match act {
                Some(_) => say_once_fused(&why),
                None => say_once(&why),
            }
        }
    }
    let (one, zero, ((rm, rv), (mean, invstd))) = (scale(&ONE), scale(&ZERO), (p.running, p.saved));
    let call = |mode| unsafe {
        (a.cudnnBatchNormalizationForwardTraining)(
            h, mode, one, zero, xd, p.x, xd, p.y, pd, p.gamma, p.beta, momentum, rm, rv, eps, mean, invstd,
        )
    };
    let mut status = call(mode);
    if status != ffi::STATUS_SUCCESS && mode != ffi::BATCHNORM_SPATIAL {
        // Where cuDNN refuses the persistent kernels for this data, the plain ones.
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            if let Err(why) = check(status, "persistent batch norm") {
                eprintln!("unisal: {why}; batch norm in cuDNN's SPATIAL mode instead");
            }
        });
        mode = ffi::BATCHNORM_SPATIAL;
        status = call(mode);
    }
    check(status, "batch norm forward")?;
    Ok(TrainRun::Plain { mode })
}

/// [`say_once`] for the fused ReLU.
fn say_once_fused(why: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| eprintln!("unisal: {why}; the ReLU after cuDNN's batch norm instead of inside it"));
}

/// The device addresses of a forward: input, output, gamma, beta (f32), the running mean and variance (updated in
/// place), and the saved batch mean and inverse standard deviation (written); for cuDNN's calls and our kernels
/// (`nn/cuda_bn.rs`) alike.
pub(crate) struct FwdPtrs {
    pub(crate) x: *const c_void,
    pub(crate) y: *mut c_void,
    pub(crate) gamma: *const c_void,
    pub(crate) beta: *const c_void,
    pub(crate) running: (*mut c_void, *mut c_void),
    pub(crate) saved: (*mut c_void, *mut c_void),
}

/// The forward in `mode` with the operations `ops` (and activation `act`, or null) over `x` described by `xd`
/// (parameters by `pd`) with `momentum` and `eps`: cuDNN's status (not success: nothing was written, the caller
/// falls back) and the reserve space for the backward.
fn forward(
    ex: &BnExApi,
    (h, stream): (Ptr, &Arc<CudaStream>),
    (mode, ops, act): (c_int, c_int, Ptr),
    (xd, pd): (Ptr, Ptr),
    p: &FwdPtrs,
    (momentum, eps): (f64, f64),
) -> candle_core::Result<(Status, Option<CudaSlice<u8>>)> {
    let null = std::ptr::null_mut();
    let (mut ws, mut rs) = (0usize, 0usize);
    // SAFETY: size queries on live descriptors (z's as x's, as PyTorch asks).
    let status = unsafe {
        (ex.cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize)(
            h, mode, ops, xd, xd, xd, pd, act, &mut ws,
        )
    };
    if status != ffi::STATUS_SUCCESS {
        return Ok((status, None));
    }
    // SAFETY: as above.
    let status =
        unsafe { (ex.cudnnGetBatchNormalizationTrainingExReserveSpaceSize)(h, mode, ops, act, xd, &mut rs) };
    if status != ffi::STATUS_SUCCESS {
        return Ok((status, None));
    }
    let mut reserve = match rs {
        0 => None,
        // SAFETY: written by the forward below before its backward reads it.
        n => Some(unsafe { stream.alloc::<u8>(n) }.map_err(|e| {
            candle_core::Error::Msg(format!("batch norm: allocate a reserve space of {n} bytes: {e:?}"))
        })?),
    };
    let status = with_workspace(stream, ws, |wp| {
        let (rp, _guard) = match reserve.as_mut() {
            Some(r) => {
                let (p, g) = ptr_mut(r, stream);
                (p, Some(g))
            }
            None => (null, None),
        };
        let ((rm, rv), (mean, invstd)) = (p.running, p.saved);
        // SAFETY: the addresses are the caller's live buffers of the sizes the descriptors say, the workspace and
        // reserve of the sizes cuDNN asked for, all on this handle's stream.
        Ok(unsafe {
            (ex.cudnnBatchNormalizationForwardTrainingEx)(
                h,
                mode,
                ops,
                scale(&ONE),
                scale(&ZERO),
                xd,
                p.x,
                null,
                null,
                xd,
                p.y,
                pd,
                p.gamma,
                p.beta,
                momentum,
                rm,
                rv,
                eps,
                mean,
                invstd,
                act,
                wp,
                ws,
                rp,
                rs,
            )
        })
    })?;
    Ok((status, reserve))
}

/// The device addresses of a backward: the forward's input, the output's gradient, the input's gradient (written),
/// gamma (f32), its and beta's gradients (f32, written), the forward's saved mean and inverse standard deviation,
/// and, where the forward applied the ReLU, its output.
pub(crate) struct BwdPtrs {
    pub(crate) x: *const c_void,
    pub(crate) dy: *const c_void,
    pub(crate) dx: *mut c_void,
    pub(crate) gamma: *const c_void,
    pub(crate) dparams: (*mut c_void, *mut c_void),
    pub(crate) saved: (*const c_void, *const c_void),
    pub(crate) y: Option<*const c_void>,
}

/// The backward of a forward through the `Ex` call in `mode`, with the reserve space it left and, where it applied
/// the ReLU (`relu_fused`), the ReLU too: cuDNN's status.
pub(super) fn backward(
    ex: &BnExApi,
    (h, stream): (Ptr, &Arc<CudaStream>),
    (mode, reserve, relu_fused): (c_int, Option<&CudaSlice<u8>>, bool),
    (xd, pd): (Ptr, Ptr),
    p: &BwdPtrs,
    eps: f64,
) -> candle_core::Result<Status> {
    let null = std::ptr::null_mut();
    // Held to the end: without UNISAL_CUDNN_REUSE the descriptor lives only as long as this.
    let relu = relu_fused.then(relu_desc).transpose()?;
    let (ops, act, y) = match (&relu, p.y) {
        (Some(d), Some(y)) => (ffi::BATCHNORM_OPS_BN_ACTIVATION, d.ptr, y),
        (None, _) => (ffi::BATCHNORM_OPS_BN, null, null as *const c_void),
        (Some(_), None) => candle_core::bail!("batch norm backward: the fused ReLU's output is missing"),
    };
    let y_desc = if y.is_null() { null } else { xd };
    let mut ws = 0usize;
    // SAFETY: a size query on live descriptors (y's as x's, no dz, as PyTorch asks).
    let status = unsafe {
        (ex.cudnnGetBatchNormalizationBackwardExWorkspaceSize)(
            h, mode, ops, xd, xd, xd, null, xd, pd, act, &mut ws,
        )
    };
    if status != ffi::STATUS_SUCCESS {
        return Ok(status);
    }
    let (rp, rs, _guard) = match reserve {
        Some(r) => {
            let (p, g) = ptr(r, stream);
            (p as *mut c_void, r.len(), Some(g))
        }
        None => (null, 0, None),
    };
    with_workspace(stream, ws, |wp| {
        let ((dg, db), (mean, invstd)) = (p.dparams, p.saved);
        // SAFETY: as in `forward`; the reserve space is the one the forward wrote, read here.
        Ok(unsafe {
            (ex.cudnnBatchNormalizationBackwardEx)(
                h,
                mode,
                ops,
                scale(&ONE),
                scale(&ZERO),
                scale(&ONE),
                scale(&ZERO),
                xd,
                p.x,
                y_desc,
                y,
                xd,
                p.dy,
                null,
                null,
                xd,
                p.dx,
                pd,
                p.gamma,
                null,
                dg,
                db,
                eps,
                mean,
                invstd,
                act,
                wp,
                ws,
                rp,
                rs,
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_takes_the_ex_calls_for_the_persistent_mode_unless_told() {
        let (plain, persistent) = (ffi::BATCHNORM_SPATIAL, ffi::BATCHNORM_SPATIAL_PERSISTENT);
        assert!(wanted(persistent, None) && !wanted(plain, None));
        assert!(wanted(plain, Some(" 1")) && wanted(persistent, Some("on")));
        assert!(!wanted(persistent, Some("0")) && !wanted(plain, Some("off")));
        assert!(wanted(persistent, Some("maybe")) && !wanted(plain, Some("maybe")));
    }
}
