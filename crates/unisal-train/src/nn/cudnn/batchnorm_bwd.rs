//! The backward of train-mode batch normalisation on the GPU (`batchnorm.rs`): cuDNN's
//! `BatchNormalizationBackward` (or `...BackwardEx` after an `Ex` forward, `batchnorm_ex.rs`) with the batch mean
//! and inverse standard deviation saved by the forward, as one candle op without backward whose output packs `dx`,
//! `dgamma` and `dbeta`.

use candle_core::backend::BackendStorage;
use candle_core::{CudaStorage, Layout, Shape};
use std::sync::Arc;

use super::batchnorm::{dims, params_f32, Saved};
use super::batchnorm_ex::{BwdPtrs, TrainRun};
use super::handle::{
    by_elem, check, input, output, ptr, ptr_mut, scale, storage, with_handle, CudnnElem, Desc, ONE, ZERO,
};
use candle_core::cuda_backend::cudarc::driver::CudaView;

/// Where `dgamma` and `dbeta` start in the backward's packed output, and its length: each part starts at a multiple
/// of 16 elements (64 bytes), so that cuDNN never writes through a less aligned pointer.
pub(super) fn packed_layout(len: usize, c: usize) -> (usize, usize, usize) {
    let g_at = len.next_multiple_of(16);
    let b_at = g_at + c.next_multiple_of(16);
    (g_at, b_at, b_at + c)
}

/// `(x, dy, gamma) -> [dx | dgamma | dbeta]` (flat, at [`packed_layout`]'s offsets), without backward; with
/// `into`, `dx` alone, `dgamma` and `dbeta` written by cuDNN straight into the f32 tensor it names.
pub(super) struct BnBackwardCudnn {
    pub(super) eps: f64,
    pub(super) saved: Arc<Saved>,
    /// The forward's layout: channels last under the `[N, C, H, W]` shape.
    pub(super) nhwc: bool,
    pub(super) into: Option<ParamGradsInto>,
    /// The forward's output, where cuDNN's forward applied the ReLU and its backward must too (`batchnorm_ex.rs`).
    pub(super) y: Option<candle_core::Tensor>,
}

/// Where the block op wants a batch norm's parameter gradients: its packed f32 gradient `dp` (contiguous, 1-d), at
/// `gamma_at` and `gamma_at + C`. cuDNN computes them in f32 whatever the activations' type, so they land there with
/// no buffer, cast or copy of their own (under bf16 four kernels a layer fewer, and no rounding to bf16).
pub(crate) struct ParamGradsInto {
    pub(crate) dp: candle_core::Tensor,
    pub(crate) gamma_at: usize,
}

impl ParamGradsInto {
    /// The f32 views of `dgamma` and `dbeta` in `guard` (`dp`'s storage) for `c` channels.
    fn views<'a>(
        &self,
        (guard, layout): &'a (impl std::ops::Deref<Target = candle_core::Storage>, &Layout),
        c: usize,
    ) -> candle_core::Result<(CudaView<'a, f32>, CudaView<'a, f32>)> {
        let candle_core::Storage::Cuda(s) = &**guard else {
            candle_core::bail!("batch norm backward: the parameter gradients are not on the CUDA device")
        };
        let at = layout.start_offset() + self.gamma_at;
        if !layout.is_contiguous()
            || layout.shape().rank() != 1
            || self.gamma_at + 2 * c > layout.shape().elem_count()
        {
            candle_core::bail!(
                "batch norm backward: {c} channels' gradients at {} do not fit {:?}",
                self.gamma_at,
                layout.shape()
            );
        }
        let all = s.as_cuda_slice::<f32>()?;
        Ok((all.slice(at..at + c), all.slice(at + c..at + 2 * c)))
    }
}

impl candle_core::CustomOp3 for BnBackwardCudnn {
    fn name(&self) -> &'static str {
        "batch-norm-train-cudnn-backward"
    }

    super::cuda_only_cpu_fwd!(CustomOp3);

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        dys: &CudaStorage,
        dyl: &Layout,
        gs: &CudaStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        by_elem!(xs.dtype(), "batch norm backward", T => self.bwd_as::<T>((xs, xl), (dys, dyl), (gs, gl)))
    }
}

impl BnBackwardCudnn {
    /// The backward for activations of type `T`. cuDNN computes `dgamma` and `dbeta` in f32: straight into `into`
    /// where given, else straight into the packed output for f32, else into f32 buffers converted into it.
    fn bwd_as<T: CudnnElem>(
        &self,
        (xs, xl): (&CudaStorage, &Layout),
        (dys, dyl): (&CudaStorage, &Layout),
        (gs, gl): (&CudaStorage, &Layout),
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let dims = dims(xl, &[gl], true)?;
        if dyl.shape() != xl.shape() {
            candle_core::bail!("batch norm backward: gradient {:?} for input {:?}", dyl.shape(), xl.shape());
        }
        let (c, len) = (dims[1], xl.shape().elem_count());
        let mut g_copy = None;
        let (gs, gl) = params_f32(gs, gl, &mut g_copy)?;
        let what = "batch norm";
        let (x, dy, g) =
            (input::<T>(xs, xl, what)?, input::<T>(dys, dyl, what)?, input::<f32>(gs, gl, what)?);
        let (xd, pd) = (Desc::tensor4_kept(dims, T::DATA, self.nhwc)?, Desc::channels_kept(c)?);
        let into_guard = self.into.as_ref().map(|i| i.dp.storage_and_layout());
        let into = match (&self.into, &into_guard) {
            (Some(i), Some(g)) => Some(i.views(g, c)?),
            _ => None,
        };
        let y_guard = self.y.as_ref().map(|t| t.storage_and_layout());
        let y = match &y_guard {
            Some((guard, l)) => match &**guard {
                candle_core::Storage::Cuda(s) if l.shape() == xl.shape() => Some(input::<T>(s, l, what)?),
                _ => {
                    candle_core::bail!("batch norm backward: the ReLU's output does not fit {:?}", xl.shape())
                }
            },
            None => None,
        };
        let direct = T::DATA == super::ffi::DATA_FLOAT;
        with_handle(&xs.device, "batch-norm-backward", |a, h, stream| {
            // With `into`, the output's `dgamma` and `dbeta` parts are left unwritten (and unread).
            let (g_at, b_at, total) = packed_layout(len, c);
            let mut out = output::<T>(stream, total)?;
            // For bf16: cuDNN's f32 dgamma and dbeta, converted into `out` below.
            let mut temps = if direct || into.is_some() {
                None
            } else {
                Some((output::<f32>(stream, c)?, output::<f32>(stream, c)?))
            };
            {
                let (mut dx, mut rest) = out.split_at_mut(g_at);
                let (mut dg, mut db) = rest.split_at_mut(b_at - g_at);
                let (mut dx, mut dg) = (dx.slice_mut(0..len), dg.slice_mut(0..c));
                let ((xp, _a), (dyp, _b), (gp, _c)) = (ptr(&x, stream), ptr(&dy, stream), ptr(&g, stream));
                let ((mp, _d), (ip, _e)) = (ptr(&self.saved.mean, stream), ptr(&self.saved.invstd, stream));
                let (dxp, _f) = ptr_mut(&mut dx, stream);
                let ((dgp, _g), (dbp, _h)) = (ptr_mut(&mut dg, stream), ptr_mut(&mut db, stream));
                let temp_ptrs = temps.as_mut().map(|(g, b)| (ptr_mut(g, stream), ptr_mut(b, stream)));
                // Into `dp` as the module's note says: written through its read guard's addresses, as the forward
                // writes the running statistics.
                let into_ptrs = into.as_ref().map(|(g, b)| (ptr(g, stream), ptr(b, stream)));
                let (dgp, dbp) = match (&temp_ptrs, &into_ptrs) {
                    (_, Some(((g, _), (b, _)))) => (*g as *mut std::ffi::c_void, *b as *mut std::ffi::c_void),
                    (Some(((g32, _), (b32, _))), None) => (*g32, *b32),
                    (None, None) => (dgp, dbp),
                };
                let y = y.as_ref().map(|y| ptr(y, stream));
                let ptrs = BwdPtrs {
                    x: xp,
                    dy: dyp,
                    dx: dxp,
                    gamma: gp,
                    dparams: (dgp, dbp),
                    saved: (mp, ip),
                    y: y.as_ref().map(|(p, _)| *p),
                };
                let status = match &self.saved.run {
                    // The forward ran through our own kernels: so does its backward (`nn/cuda_bn.rs`).
                    TrainRun::Ours(geom) => {
                        let bf16 = T::DATA == super::ffi::DATA_BFLOAT16;
                        let data = crate::nn::cuda_bn::Data { bf16, nhwc: self.nhwc };
                        crate::nn::cuda_bn::backward(&xs.device, (*geom, data), &ptrs)?;
                        super::ffi::STATUS_SUCCESS
                    }
                    // The forward ran through the `Ex` call: so does its backward, with its reserve space.
                    TrainRun::Ex { mode, reserve, relu_fused } => {
                        let ex =
                            super::ffi::bn_ex_api().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                        let (descs, run) = ((xd.ptr, pd.ptr), (*mode, reserve.as_ref(), *relu_fused));
                        super::batchnorm_ex::backward(ex, (h, stream), run, descs, &ptrs, self.eps)?
                    }
                    TrainRun::Plain { mode } => unsafe {
                        (a.cudnnBatchNormalizationBackward)(
                            h,
                            *mode,
                            scale(&ONE),
                            scale(&ZERO),
                            scale(&ONE),
                            scale(&ZERO),
                            xd.ptr,
                            xp,
                            xd.ptr,
                            dyp,
                            xd.ptr,
                            dxp,
                            pd.ptr,
                            gp,
                            dgp,
                            dbp,
                            self.eps,
                            mp,
                            ip,
                        )
                    },
                };
                check(status, "batch norm backward")?;
            }
            if let Some((dg32, db32)) = temps {
                for (part, at) in [(dg32, g_at), (db32, b_at)] {
                    let converted = storage(part, &xs.device).to_dtype(&Layout::contiguous(c), T::DTYPE)?;
                    let src = converted.as_cuda_slice::<T>()?;
                    stream
                        .memcpy_dtod(src, &mut out.slice_mut(at..at + c))
                        .map_err(|e| candle_core::Error::Msg(format!("batch norm backward: copy: {e:?}")))?;
                }
            }
            Ok((storage(out, &xs.device), Shape::from(total)))
        })
    }
}
