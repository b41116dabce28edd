//! The CUDA side of the max-pooling op (`pool_cpu.rs`'s `MaxPool` and `MaxPoolBackward`): cuDNN's pooling forward
//! and backward (padded cells never win), with the ops' own shape checks; channels last with `MaxPool::nhwc`. Composed from candle ops a 3x3 stride-2
//! pool is about 30 graph nodes of padding, strided views and maxima.

use candle_core::backend::BackendStorage;
use candle_core::{CudaStorage, Layout, Shape};

use super::handle::{
    by_elem, check, input, output, ptr, ptr_mut, scale, storage, with_handle, CudnnElem, Desc, ONE, ZERO,
};
use crate::nn::cpu_util::Kernel;
use crate::nn::pool_cpu::{MaxPool, MaxPoolBackward};

/// The input, output and pooling descriptors of `op` on an input of layout `x` (already checked), of cuDNN's data
/// type `data`.
fn descs(
    op: &MaxPool,
    x: &Layout,
    out: &Shape,
    data: std::ffi::c_int,
) -> candle_core::Result<(Desc, Desc, Desc)> {
    let dims4 = |s: &Shape| -> candle_core::Result<[usize; 4]> {
        let (n, c, h, w) = s.dims4()?;
        Ok([n, c, h, w])
    };
    let (xd, yd) =
        (Desc::tensor4(dims4(x.shape())?, data, op.nhwc)?, Desc::tensor4(dims4(out)?, data, op.nhwc)?);
    Ok((xd, yd, Desc::max_pool(op.k, op.stride, op.pad)?))
}

/// The CUDA forward of [`MaxPool`] (f32 or bf16).
pub(crate) fn forward(
    op: &MaxPool,
    xs: &CudaStorage,
    xl: &Layout,
) -> candle_core::Result<(CudaStorage, Shape)> {
    by_elem!(xs.dtype(), "max pool", T => forward_as::<T>(op, xs, xl))
}

fn forward_as<T: CudnnElem>(
    op: &MaxPool,
    xs: &CudaStorage,
    xl: &Layout,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let shape = Kernel::shape(op, &[xl])?;
    let x = input::<T>(xs, xl, "max pool")?;
    let (xd, yd, pool) = descs(op, xl, &shape, T::DATA)?;
    with_handle(&xs.device, "max-pool-forward", |a, h, stream| {
        let mut y = output::<T>(stream, shape.elem_count())?;
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

/// The CUDA forward of [`MaxPoolBackward`]: `dx` from `(x, y, dy)` (f32 or bf16).
pub(crate) fn backward(
    op: &MaxPoolBackward,
    x: (&CudaStorage, &Layout),
    y: (&CudaStorage, &Layout),
    dy: (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    by_elem!(x.0.dtype(), "max pool backward", T => backward_as::<T>(op, x, y, dy))
}

fn backward_as<T: CudnnElem>(
    op: &MaxPoolBackward,
    (xs, xl): (&CudaStorage, &Layout),
    (ys, yl): (&CudaStorage, &Layout),
    (dys, dyl): (&CudaStorage, &Layout),
) -> candle_core::Result<(CudaStorage, Shape)> {
    let shape = Kernel::shape(op, &[xl, yl, dyl])?;
    let what = "max pool";
    let (x, y, dy) = (input::<T>(xs, xl, what)?, input::<T>(ys, yl, what)?, input::<T>(dys, dyl, what)?);
    let (xd, yd, pool) = descs(&op.0, xl, yl.shape(), T::DATA)?;
    with_handle(&xs.device, "max-pool-backward", |a, h, stream| {
        let mut dx = output::<T>(stream, shape.elem_count())?;
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
