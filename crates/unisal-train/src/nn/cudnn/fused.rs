//! The CUDA side of `nn::fused`: an eval-mode convolution with its batch norm folded into the weight and a bias,
//! then ReLU (or identity), optionally joined with a residual, as one cuDNN call:
//! `y = act(conv(x, w) + bias [+ residual])` (`cudnnConvolutionBiasActivationForward`). Without backward: it runs
//! only under `NoGrad`.
//!
//! The algorithm is the plain forward's cached choice for the same geometry (cuDNN's timed search); with an
//! identity activation cuDNN takes only `IMPLICIT_PRECOMP_GEMM`.

use std::ffi::c_void;

use candle_core::{CudaStorage, Layout, Shape, Storage, Tensor};

use super::allowed_math;
use super::conv::{descs, forward_choice, forward_workspace, Choice};
use super::ffi;
use super::handle::{
    check, input, output, ptr, ptr_mut, scale, storage, with_handle, with_workspace, Desc, ONE, ZERO,
};
use crate::nn::conv_cpu::ConvOp;
use crate::nn::cpu_util::Kernel;

/// `act(conv(x, w) + bias [+ residual])` for `op`'s geometry; `relu` or identity; `residual` of the output's
/// shape.
pub(crate) fn conv_bias_act(
    x: &Tensor,
    (w, bias): (&Tensor, &Tensor),
    op: ConvOp,
    relu: bool,
    residual: Option<&Tensor>,
) -> crate::error::Result<Tensor> {
    let residual = residual.map(Tensor::contiguous).transpose()?;
    let fused = ConvBiasAct { op, relu, residual };
    Ok(x.contiguous()?.apply_op3_no_bwd(&w.contiguous()?, &bias.contiguous()?, &fused)?)
}

/// `(x, w, bias) -> act(conv(x, w) + bias [+ residual])`.
struct ConvBiasAct {
    op: ConvOp,
    relu: bool,
    residual: Option<Tensor>,
}

impl candle_core::CustomOp3 for ConvBiasAct {
    fn name(&self) -> &'static str {
        "conv-bias-act-cudnn"
    }

    super::cuda_only_cpu_fwd!(CustomOp3);

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
        bs: &CudaStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let shape = Kernel::shape(&self.op, &[xl, wl])?;
        let out = self.op.out;
        if bl.shape().dims() != [out] {
            candle_core::bail!("fused convolution: bias {:?} for {out} output channels", bl.shape());
        }
        let what = "fused convolution";
        let (x, w, b) =
            (input::<f32>(xs, xl, what)?, input::<f32>(ws, wl, what)?, input::<f32>(bs, bl, what)?);
        let res_guard = self.residual.as_ref().map(Tensor::storage_and_layout);
        let res = match &res_guard {
            Some((guard, layout)) => {
                let Storage::Cuda(s) = &**guard else {
                    candle_core::bail!("fused convolution: the residual is not on the CUDA device")
                };
                if layout.shape() != &shape {
                    candle_core::bail!(
                        "fused convolution: residual {:?} for output {shape:?}",
                        layout.shape()
                    );
                }
                Some(input::<f32>(s, layout, what)?)
            }
            None => None,
        };
        let (d, bias_d, act) =
            (descs(&self.op, ffi::DATA_FLOAT)?, Desc::channels(out)?, Desc::activation(self.relu)?);
        with_handle(&xs.device, "conv-bias-act", |a, h, stream| {
            let choice = if self.relu {
                forward_choice(a, h, &self.op, &d)?
            } else {
                Choice {
                    algo: ffi::FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                    math: allowed_math(ffi::DATA_FLOAT),
                    ms: -1.0,
                }
            };
            let bytes = forward_workspace(a, h, (&self.op, &d), (choice, what))?;
            // Without a residual, z is y itself scaled by 0: zeroed first, so that no leftover NaN in fresh memory
            // can come through (0 * NaN).
            let mut y = match &res {
                Some(_) => output::<f32>(stream, shape.elem_count())?,
                None => stream
                    .alloc_zeros::<f32>(shape.elem_count().max(1))
                    .map_err(|e| candle_core::Error::Msg(format!("{what}: allocate: {e:?}")))?,
            };
            {
                let ((xp, _a), (wp, _b), (bp, _c)) = (ptr(&x, stream), ptr(&w, stream), ptr(&b, stream));
                let (yp, _d) = ptr_mut(&mut y, stream);
                let res_ptr = res.as_ref().map(|r| ptr(r, stream));
                let (zp, alpha2) = match &res_ptr {
                    Some((p, _)) => (*p, scale(&ONE)),
                    None => (yp as *const c_void, scale(&ZERO)),
                };
                with_workspace(stream, bytes, |wsp| {
                    check(
                        unsafe {
                            (a.cudnnConvolutionBiasActivationForward)(
                                h,
                                scale(&ONE),
                                d.x.ptr,
                                xp,
                                d.w.ptr,
                                wp,
                                d.conv.ptr,
                                choice.algo,
                                wsp,
                                bytes,
                                alpha2,
                                d.y.ptr,
                                zp,
                                bias_d.ptr,
                                bp,
                                act.ptr,
                                d.y.ptr,
                                yp,
                            )
                        },
                        what,
                    )
                })?;
            }
            Ok((storage(y, &xs.device), shape))
        })
    }
}
