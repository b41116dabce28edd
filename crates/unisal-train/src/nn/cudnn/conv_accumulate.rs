//! `target += conv_backward_data(w, dy)` in place: cuDNN's backward-data pass with beta 1, for the block op
//! (`block.rs`) to add the main path's input gradient straight into the shortcut's, instead of a third buffer and
//! an add over the block's input (three passes of its size). On unless `UNISAL_BLOCK_ACCUMULATE=0`: written in
//! session 14, first run on an H200 in session 18 (dual ResNet-50 with graph plans 540 against 527 img/s).

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::{CudaStorage, Layout};

use super::conv::{backward_data_choice, descs, run_backward_data};
use super::handle::{by_elem, input, ptr, ptr_mut, with_handle, CudnnElem, ONE};
use crate::nn::conv_cpu::ConvOp;

/// Whether the block op accumulates in place (`UNISAL_BLOCK_ACCUMULATE`, on unless `0`, `false`, `off`; the default
/// since session 18).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| crate::nn::env_not_off("UNISAL_BLOCK_ACCUMULATE"))
}

/// The in-place op: `(target [N, C, H, W], w, dy)`, `target` being the gradient of the convolution's input.
pub(crate) struct ConvDataAccumulate {
    pub conv: ConvOp,
}

impl candle_core::InplaceOp3 for ConvDataAccumulate {
    fn name(&self) -> &'static str {
        "conv-backward-data-accumulate"
    }

    super::cuda_only_cpu_fwd!(InplaceOp3);

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
        let choice = backward_data_choice(a, h, op, &d)?;
        let mut dx = target.slice_mut(at..at + n);
        let ((wp, _gw), (dyp, _gdy)) = (ptr(&w, stream), ptr(&dy, stream));
        let (dxp, _gdx) = ptr_mut(&mut dx, stream);
        run_backward_data((a, h, stream), (op, &d, choice), (wp, dyp, dxp), &ONE)
    })
}
