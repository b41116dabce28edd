//! Max pooling on the GPU as one candle custom op: cuDNN's pooling forward and backward (padded cells never win).
//! Composed from candle ops a 3x3 stride-2 pool is about 30 graph nodes of padding, strided views and maxima.
//! The backward is not itself differentiable.

use candle_core::{CudaStorage, Layout, Shape, Tensor};

use super::handle::{check, input, output, ptr, ptr_mut, scale, storage, with_handle, Desc, ONE, ZERO};

/// `x [N, C, H, W] -> [N, C, Ho, Wo]`, torch's output size `floor((H + 2p - k) / s) + 1`; f32, on CUDA.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaxPoolCudnn {
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl MaxPoolCudnn {
    /// Input and output `[N, C, H, W]`.
    fn dims(&self, x: &Layout) -> candle_core::Result<([usize; 4], [usize; 4])> {
        let [n, c, h, w] = *x.shape().dims() else {
            candle_core::bail!("max pool: expected [N, C, H, W], got {:?}", x.shape())
        };
        let out = |s: usize| (s + 2 * self.pad - self.k) / self.stride + 1;
        Ok(([n, c, h, w], [n, c, out(h), out(w)]))
    }
}

impl candle_core::CustomOp1 for MaxPoolCudnn {
    fn name(&self) -> &'static str {
        "max-pool-cudnn"
    }

    super::cuda_only_cpu_fwd!(CustomOp1);

    fn cuda_fwd(&self, xs: &CudaStorage, xl: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let (id, od) = self.dims(xl)?;
        let x = input(xs, xl, "max pool")?;
        let (xd, yd, pool) =
            (Desc::nchw(id)?, Desc::nchw(od)?, Desc::max_pool(self.k, self.stride, self.pad)?);
        with_handle(&xs.device, "max-pool-forward", |a, h, stream| {
            let mut y = output(stream, od.iter().product())?;
            {
                let ((xp, _a), (yp, _b)) = (ptr(&x, stream), ptr_mut(&mut y, stream));
                check(
                    unsafe {
                        (a.cudnnPoolingForward)(
                            h,
                            pool.ptr,
                            scale(&ONE),
                            xd.ptr,
                            xp,
                            scale(&ZERO),
                            yd.ptr,
                            yp,
                        )
                    },
                    "max pool forward",
                )?;
            }
            Ok((storage(y, &xs.device), Shape::from(od.to_vec())))
        })
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let op = MaxPoolBackwardCudnn(*self);
        Ok(Some(x.detach().contiguous()?.apply_op3_no_bwd(
            &res.detach().contiguous()?,
            &grad.contiguous()?,
            &op,
        )?))
    }
}

/// `(x, y, dy) -> dx`: each window's gradient to its maximum.
struct MaxPoolBackwardCudnn(MaxPoolCudnn);

impl candle_core::CustomOp3 for MaxPoolBackwardCudnn {
    fn name(&self) -> &'static str {
        "max-pool-cudnn-backward"
    }

    super::cuda_only_cpu_fwd!(CustomOp3);

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ys: &CudaStorage,
        yl: &Layout,
        dys: &CudaStorage,
        dyl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (id, od) = self.0.dims(xl)?;
        if yl.shape().dims() != od || dyl.shape().dims() != od {
            candle_core::bail!(
                "max pool backward: output {:?} / gradient {:?} for input {:?}",
                yl.shape(),
                dyl.shape(),
                xl.shape()
            );
        }
        let (x, y, dy) =
            (input(xs, xl, "max pool")?, input(ys, yl, "max pool")?, input(dys, dyl, "max pool")?);
        let p = self.0;
        let (xd, yd, pool) = (Desc::nchw(id)?, Desc::nchw(od)?, Desc::max_pool(p.k, p.stride, p.pad)?);
        with_handle(&xs.device, "max-pool-backward", |a, h, stream| {
            let mut dx = output(stream, xl.shape().elem_count())?;
            {
                let ((xp, _a), (yp, _b), (dyp, _c)) = (ptr(&x, stream), ptr(&y, stream), ptr(&dy, stream));
                let (dxp, _d) = ptr_mut(&mut dx, stream);
                check(
                    unsafe {
                        (a.cudnnPoolingBackward)(
                            h,
                            pool.ptr,
                            scale(&ONE),
                            yd.ptr,
                            yp,
                            yd.ptr,
                            dyp,
                            xd.ptr,
                            xp,
                            scale(&ZERO),
                            xd.ptr,
                            dxp,
                        )
                    },
                    "max pool backward",
                )?;
            }
            Ok((storage(dx, &xs.device), xl.shape().clone()))
        })
    }
}
