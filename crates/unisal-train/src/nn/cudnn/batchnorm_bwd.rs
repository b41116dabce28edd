//! The backward of train-mode batch normalisation on the GPU (`batchnorm.rs`): cuDNN's
//! `BatchNormalizationBackward` with the batch mean and inverse standard deviation saved by the forward, as one
//! candle op without backward whose output packs `dx`, `dgamma` and `dbeta`.

use candle_core::backend::BackendStorage;
use candle_core::{CudaStorage, Layout, Shape};
use std::sync::Arc;

use super::batchnorm::{dims, params_f32, Saved};
use super::handle::{
    by_elem, check, input, output, ptr, ptr_mut, scale, storage, with_handle, CudnnElem, Desc, ONE, ZERO,
};

/// Where `dgamma` and `dbeta` start in the backward's packed output, and its length: each part starts at a multiple
/// of 16 elements (64 bytes), so that cuDNN never writes through a less aligned pointer.
pub(super) fn packed_layout(len: usize, c: usize) -> (usize, usize, usize) {
    let g_at = len.next_multiple_of(16);
    let b_at = g_at + c.next_multiple_of(16);
    (g_at, b_at, b_at + c)
}

/// `(x, dy, gamma) -> [dx | dgamma | dbeta]` (flat, at [`packed_layout`]'s offsets), without backward.
pub(super) struct BnBackwardCudnn {
    pub(super) eps: f64,
    pub(super) saved: Arc<Saved>,
    /// The forward's layout: channels last under the `[N, C, H, W]` shape.
    pub(super) nhwc: bool,
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
    /// The backward for activations of type `T`. cuDNN computes `dgamma` and `dbeta` in f32: straight into the
    /// packed output for f32, else into f32 buffers converted into it.
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
        let (xd, pd) = (Desc::tensor4(dims, T::DATA, self.nhwc)?, Desc::channels(c)?);
        let direct = T::DATA == super::ffi::DATA_FLOAT;
        with_handle(&xs.device, "batch-norm-backward", |a, h, stream| {
            let (g_at, b_at, total) = packed_layout(len, c);
            let mut out = output::<T>(stream, total)?;
            // For bf16: cuDNN's f32 dgamma and dbeta, converted into `out` below.
            let mut temps =
                if direct { None } else { Some((output::<f32>(stream, c)?, output::<f32>(stream, c)?)) };
            {
                let (mut dx, mut rest) = out.split_at_mut(g_at);
                let (mut dg, mut db) = rest.split_at_mut(b_at - g_at);
                let (mut dx, mut dg) = (dx.slice_mut(0..len), dg.slice_mut(0..c));
                let ((xp, _a), (dyp, _b), (gp, _c)) = (ptr(&x, stream), ptr(&dy, stream), ptr(&g, stream));
                let ((mp, _d), (ip, _e)) = (ptr(&self.saved.mean, stream), ptr(&self.saved.invstd, stream));
                let (dxp, _f) = ptr_mut(&mut dx, stream);
                let ((dgp, _g), (dbp, _h)) = (ptr_mut(&mut dg, stream), ptr_mut(&mut db, stream));
                let temp_ptrs = temps.as_mut().map(|(g, b)| (ptr_mut(g, stream), ptr_mut(b, stream)));
                let (dgp, dbp) = match &temp_ptrs {
                    Some(((g32, _), (b32, _))) => (*g32, *b32),
                    None => (dgp, dbp),
                };
                check(
                    unsafe {
                        (a.cudnnBatchNormalizationBackward)(
                            h,
                            self.saved.mode,
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
                    "batch norm backward",
                )?;
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
