//! The CUDA side of the max-pooling op (`pool_cpu.rs`'s `MaxPool` and `MaxPoolBackward`): cuDNN's pooling forward
//! and backward (padded cells never win), with the ops' own shape checks. Composed from candle ops a 3x3 stride-2
//! pool is about 30 graph nodes of padding, strided views and maxima.

use candle_core::{CudaStorage, Layout, Shape};

use super::handle::{check, input, output, ptr, ptr_mut, scale, storage, with_handle, Desc, ONE, ZERO};
use crate::nn::cpu_util::Kernel;
use crate::nn::pool_cpu::{MaxPool, MaxPoolBackward};

/// The input, output and pooling descriptors of `op` on an input of layout `x` (already checked).
fn descs(op: &MaxPool, x: &Layout, out: &Shape) -> candle_core::Result<(Desc, Desc, Desc)> {
    let dims4 = |s: &Shape| -> candle_core::Result<[usize; 4]> {
        let (n, c, h, w) = s.dims4()?;
        Ok([n, c, h, w])
    };
    Ok((Desc::nchw(dims4(x.shape())?)?, Desc::nchw(dims4(out)?)?, Desc::max_pool(op.k, op.stride, op.pad)?))
}

/// The CUDA forward of [`MaxPool`].
pub(crate) fn forward(
    op: &MaxPool,
    xs: &CudaStorage,
    xl: &Layout,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let shape = Kernel::shape(op, &[xl])?;
    let x = input(xs, xl, "max pool")?;
    let (xd, yd, pool) = descs(op, xl, &shape)?;
    with_handle(&xs.device, "max-pool-forward", |a, h, stream| {
        let mut y = output(stream, shape.elem_count())?;
        {
            let ((xp, _a), (yp, _b)) = (ptr(&x, stream), ptr_mut(&mut y, stream));
            let (one, zero) = (scale(&ONE), scale(&ZERO));
            check(
                unsafe { (a.cudnnPoolingForward)(h, pool.ptr, one, xd.ptr, xp, zero, yd.ptr, yp) },
                "max pool forward",
            )?;
        }
        Ok((storage(y, &xs.device), shape))
    })
}

/// The CUDA forward of [`MaxPoolBackward`]: `dx` from `(x, y, dy)`.
pub(crate) fn backward(
    op: &MaxPoolBackward,
    (xs, xl): (&CudaStorage, &Layout),
    (ys, yl): (&CudaStorage, &Layout),
    (dys, dyl): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let shape = Kernel::shape(op, &[xl, yl, dyl])?;
    let (x, y, dy) = (input(xs, xl, "max pool")?, input(ys, yl, "max pool")?, input(dys, dyl, "max pool")?);
    let (xd, yd, pool) = descs(&op.0, xl, yl.shape())?;
    with_handle(&xs.device, "max-pool-backward", |a, h, stream| {
        let mut dx = output(stream, shape.elem_count())?;
        {
            let ((xp, _a), (yp, _b), (dyp, _c)) = (ptr(&x, stream), ptr(&y, stream), ptr(&dy, stream));
            let (dxp, _d) = ptr_mut(&mut dx, stream);
            let (one, zero) = (scale(&ONE), scale(&ZERO));
            let (xd, yd) = (xd.ptr, yd.ptr);
            check(
                unsafe { (a.cudnnPoolingBackward)(h, pool.ptr, one, yd, yp, yd, dyp, xd, xp, zero, xd, dxp) },
                "max pool backward",
            )?;
        }
        Ok((storage(dx, &xs.device), shape))
    })
}
