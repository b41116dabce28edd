//! `target += conv_backward_data(w, dy)` in place: cuDNN's backward-data pass with beta 1, for the block op
//! (`block.rs`) to add the main path's input gradient straight into the shortcut's, instead of a third buffer and
//! an add over the block's input (three passes of its size). On with `UNISAL_BLOCK_ACCUMULATE=1`: written in
//! session 14 after its last GPU run, not yet run on a GPU.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::{CudaStorage, Layout};

use super::conv::{descs, run_pass_beta};
use super::conv_choice::{cached, key, workspace_bytes};
use super::handle::{by_elem, input, ptr, ptr_mut, with_handle, CudnnElem, ONE};
use crate::nn::conv_cpu::ConvOp;

/// Whether the block op accumulates in place (`UNISAL_BLOCK_ACCUMULATE=1`).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("UNISAL_BLOCK_ACCUMULATE").is_ok_and(|v| v.trim() == "1"))
}

/// The in-place op: `(target [N, C, H, W], w, dy)`, `target` being the gradient of the convolution's input.
pub(crate) struct ConvDataAccumulate {
    pub conv: ConvOp,
}

impl candle_core::InplaceOp3 for ConvDataAccumulate {
    fn name(&self) -> &'static str {
        "conv-backward-data-accumulate"
    }

    fn cpu_fwd(
        &self,
        _: &mut candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<()> {
        candle_core::bail!("{} runs on CUDA devices only", self.name())
    }

    fn cuda_fwd(
        &self,
        ts: &mut CudaStorage,
        tl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
        dys: &CudaStorage,
        dyl: &Layout,
    ) -> candle_core::Result<()> {
        by_elem!(ts.dtype(), "convolution backward data", T => accumulate_as::<T>(&self.conv, (ts, tl), (ws, wl), (dys, dyl)))
    }
}

fn accumulate_as<T: CudnnElem>(
    op: &ConvOp,
    (ts, tl): (&mut CudaStorage, &Layout),
    (ws, wl): (&CudaStorage, &Layout),
    (dys, dyl): (&CudaStorage, &Layout),
) -> candle_core::Result<()> {
    let g = op.g;
    let n = g.n * g.c * g.h * g.w;
    if !tl.is_contiguous() || tl.shape().elem_count() != n {
        candle_core::bail!("convolution backward data: a contiguous target of {n} values expected");
    }
    let what = "convolution backward data";
    let (w, dy) = (input::<T>(ws, wl, what)?, input::<T>(dys, dyl, what)?);
    let d = descs(op, T::DATA)?;
    let dev = ts.device.clone();
    let at = tl.start_offset();
    let target = ts.as_cuda_slice_mut::<T>()?;
    with_handle(&dev, "conv-backward", |a, h, stream| {
        let queries =
            (a.cudnnGetConvolutionBackwardDataAlgorithm_v7, a.cudnnFindConvolutionBackwardDataAlgorithm);
        let (dx_d, dw_d, dc, dy_d) = (d.x.ptr, d.w.ptr, d.conv.ptr, d.y.ptr);
        let k = key(op, 1, d.data);
        let choice = cached(a, h, (k, what, d.data), [dw_d, dy_d, dc, dx_d], queries)?;
        let bytes = workspace_bytes(a, &d, (k, choice, what), |bytes| unsafe {
            (a.cudnnGetConvolutionBackwardDataWorkspaceSize)(h, dw_d, dy_d, dc, dx_d, choice.algo, bytes)
        })?;
        let mut dx = target.slice_mut(at..at + n);
        let ((wp, _gw), (dyp, _gdy)) = (ptr(&w, stream), ptr(&dy, stream));
        let (dxp, _gdx) = ptr_mut(&mut dx, stream);
        let call = a.cudnnConvolutionBackwardData;
        let ins = [(dw_d, wp), (dy_d, dyp)];
        run_pass_beta(call, (h, stream), ins, (dc, choice.algo, bytes), (dx_d, dxp, &ONE), what)
    })
}
