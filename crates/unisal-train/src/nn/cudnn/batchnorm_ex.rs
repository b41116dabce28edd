//! Train-mode batch norm through cuDNN's `BatchNormalizationForwardTrainingEx` / `BatchNormalizationBackwardEx`
//! (`CUDNN_BATCHNORM_OPS_BN`: no fused addition or activation), with a workspace and the reserve space the forward
//! leaves for its backward. These are the calls PyTorch makes; the plain ones (`batchnorm.rs`) take neither buffer.
//!
//! Why: on an H200 in session 18 the block op channels last in bf16 spent 225 ms a dual ResNet-50 step in the plain
//! persistent forward and 346 ms in its backward (424 calls each, 0.5-0.8 ms a call), against 17 and 25 ms for the
//! same batch norms NCHW, while its convolutions took half their NCHW time: cuDNN's fast persistent kernels for
//! channels-last data want the `Ex` calls' buffers.
//!
//! `UNISAL_BN_EX`: unset, the `Ex` calls for the persistent mode (channels last by default, `batchnorm.rs`'s
//! `train_mode`); `1`, for every train-mode batch norm; `0`, never. Where cuDNN lacks them or refuses one for some
//! data, the plain call runs instead and a line says so once.

use std::ffi::{c_int, c_void};
use std::sync::{Arc, OnceLock};

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream};

use super::ffi::{self, BnExApi, Ptr, Status};
use super::handle::{ptr, ptr_mut, scale, with_workspace, ONE, ZERO};

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

/// The device addresses of a forward: input, output, gamma, beta (f32), the running mean and variance (updated in
/// place), and the saved batch mean and inverse standard deviation (written).
pub(super) struct FwdPtrs {
    pub(super) x: *const c_void,
    pub(super) y: *mut c_void,
    pub(super) gamma: *const c_void,
    pub(super) beta: *const c_void,
    pub(super) running: (*mut c_void, *mut c_void),
    pub(super) saved: (*mut c_void, *mut c_void),
}

/// The forward in `mode` over `x` described by `xd` (parameters by `pd`) with `momentum` and `eps`: cuDNN's status
/// (not success: nothing was written, the caller falls back) and the reserve space for the backward.
pub(super) fn forward(
    ex: &BnExApi,
    (h, stream): (Ptr, &Arc<CudaStream>),
    mode: c_int,
    (xd, pd): (Ptr, Ptr),
    p: &FwdPtrs,
    (momentum, eps): (f64, f64),
) -> candle_core::Result<(Status, Option<CudaSlice<u8>>)> {
    let (ops, null) = (ffi::BATCHNORM_OPS_BN, std::ptr::null_mut());
    let (mut ws, mut rs) = (0usize, 0usize);
    // SAFETY: size queries on live descriptors (z's as x's, as PyTorch asks; no activation for OPS_BN).
    let status = unsafe {
        (ex.cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize)(
            h, mode, ops, xd, xd, xd, pd, null, &mut ws,
        )
    };
    if status != ffi::STATUS_SUCCESS {
        return Ok((status, None));
    }
    // SAFETY: as above.
    let status =
        unsafe { (ex.cudnnGetBatchNormalizationTrainingExReserveSpaceSize)(h, mode, ops, null, xd, &mut rs) };
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
                null,
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
/// gamma (f32), its and beta's gradients (f32, written) and the forward's saved mean and inverse standard deviation.
pub(super) struct BwdPtrs {
    pub(super) x: *const c_void,
    pub(super) dy: *const c_void,
    pub(super) dx: *mut c_void,
    pub(super) gamma: *const c_void,
    pub(super) dparams: (*mut c_void, *mut c_void),
    pub(super) saved: (*const c_void, *const c_void),
}

/// The backward of a forward through [`forward`] in `mode`, with its reserve space: cuDNN's status.
pub(super) fn backward(
    ex: &BnExApi,
    (h, stream): (Ptr, &Arc<CudaStream>),
    mode: c_int,
    (xd, pd): (Ptr, Ptr),
    p: &BwdPtrs,
    (eps, reserve): (f64, Option<&CudaSlice<u8>>),
) -> candle_core::Result<Status> {
    let (ops, null) = (ffi::BATCHNORM_OPS_BN, std::ptr::null_mut());
    let mut ws = 0usize;
    // SAFETY: a size query on live descriptors (y's as x's, no dz or activation for OPS_BN, as PyTorch asks).
    let status = unsafe {
        (ex.cudnnGetBatchNormalizationBackwardExWorkspaceSize)(
            h, mode, ops, xd, xd, xd, null, xd, pd, null, &mut ws,
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
                null,
                null,
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
                null,
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
