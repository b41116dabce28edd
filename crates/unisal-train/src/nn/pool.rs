//! ReLU, the residual join `relu(a + b)`, global average pooling and max pooling.
//!
//! On the CPU (f32/f64) max pooling and the residual join are threaded custom ops (`pool_cpu.rs`,
//! `elementwise.rs`); on CUDA in f32 (feature `cuda`) ReLU and the join are our kernels and max pooling cuDNN's
//! (where it is installed); elsewhere, and in [`max_pool2d_composed`], they are differentiable candle ops.
//! candle 0.11.1's `max_pool2d` backward is wrong (1/(k*k) too small) and missing when kernel != stride, so
//! [`max_pool2d`] is built from padding (with the dtype's lowest value), strided views (narrow + reshape) and the
//! element-wise `maximum`, separably: first over the k columns of each window, then over its k rows. Its gradient
//! goes to the maximum of each window (ties share it), on every backend.

use candle_core::{DType, Tensor};

use super::cpu_util::cpu_float;
use super::elementwise::{AddRelu, Relu};
use super::pool_cpu::MaxPool;
use crate::error::{Result, TrainError};

/// max(x, 0); on CUDA in f32 one kernel each way (candle's ReLU backward is four).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if super::gpu_float(x) {
        return Ok(x.contiguous()?.apply_op1(Relu)?);
    }
    Ok(x.relu()?)
}

/// `max(a + b, 0)`, the join of a residual block (same shapes).
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let ours = cpu_float(a) || super::gpu_float(a);
    if ours && a.dtype() == b.dtype() && a.shape() == b.shape() {
        return Ok(a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)?);
    }
    Ok((a + b)?.relu()?)
}

/// Mean over H and W: `[N, C, H, W]` -> `[N, C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean((2, 3))?)
}

/// Max pooling with a `kernel` x `kernel` window, `stride` and symmetric zero-cost `padding` (padded cells never
/// win), torch's output size `floor((H + 2p - k) / s) + 1`. On the CPU in f32/f64 one custom op; on CUDA in f32
/// (feature `cuda`) one cuDNN op where cuDNN is installed.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    check_pool(x, kernel, stride, padding)?;
    if cpu_float(x) || super::cudnn_usable(x) {
        let (_, _, h, w) = x.dims4()?;
        let op = MaxPool { h, w, k: kernel, stride, pad: padding, nhwc: false };
        return Ok(x.contiguous()?.apply_op1(op)?);
    }
    max_pool2d_composed(x, kernel, stride, padding)
}

/// [`max_pool2d`] from candle ops on every device (padding, strided views, element-wise maxima).
pub fn max_pool2d_composed(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    check_pool(x, kernel, stride, padding)?;
    let cols = pool_dim(x, 3, kernel, stride, padding)?;
    pool_dim(&cols, 2, kernel, stride, padding)
}

fn check_pool(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<()> {
    let (_, _, h, w) = x.dims4()?;
    check_pool_dims((h, w), kernel, stride, padding)
}

/// [`max_pool2d`]'s check of its window on an `h x w` input (also the block op's stem's, `nn/blocks.rs`).
pub(crate) fn check_pool_dims(
    (h, w): (usize, usize),
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<()> {
    if kernel == 0
        || stride == 0
        || padding * 2 > kernel
        || h + 2 * padding < kernel
        || w + 2 * padding < kernel
    {
        return Err(TrainError::InvalidModel(format!(
            "max_pool2d: kernel {kernel}, stride {stride}, padding {padding} do not fit an input of {h}x{w}"
        )));
    }
    Ok(())
}

/// Max over windows along one dimension.
fn pool_dim(x: &Tensor, dim: usize, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let size = x.dim(dim)?;
    let out = (size + 2 * padding - kernel) / stride + 1;
    // Padded length: room for the torch padding and for every strided view of `out * stride` cells.
    let padded = (size + 2 * padding).max(kernel - 1 + stride * out);
    let xp = pad_lowest(x, dim, padding, padded - size - padding)?;
    let mut acc: Option<Tensor> = None;
    for offset in 0..kernel {
        let view = strided(&xp, dim, offset, out, stride)?;
        acc = Some(match acc {
            None => view,
            Some(a) => a.maximum(&view)?,
        });
    }
    acc.ok_or_else(|| TrainError::InvalidModel("max_pool2d: empty kernel".into()))
}

/// Elements `start, start + step, ..., start + (count - 1) * step` of `dim` (needs `start + count * step <= len`).
pub(crate) fn strided(x: &Tensor, dim: usize, start: usize, count: usize, step: usize) -> Result<Tensor> {
    if step == 1 {
        return Ok(x.narrow(dim, start, count)?);
    }
    let mut shape = x.dims().to_vec();
    let y = x.narrow(dim, start, count * step)?.contiguous()?;
    shape[dim] = count;
    shape.insert(dim + 1, step);
    Ok(y.reshape(shape)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)?)
}

/// Pad `dim` with the lowest finite value of the dtype (so padded cells never win a max).
fn pad_lowest(x: &Tensor, dim: usize, left: usize, right: usize) -> Result<Tensor> {
    if left == 0 && right == 0 {
        return Ok(x.clone());
    }
    let lowest = match x.dtype() {
        DType::F64 => f64::MIN,
        DType::F16 => -65504.0,
        DType::BF16 | DType::F32 => f64::from(f32::MIN),
        other => return Err(TrainError::InvalidModel(format!("max_pool2d: unsupported dtype {other:?}"))),
    };
    let mut parts = Vec::with_capacity(3);
    let mut shape = x.dims().to_vec();
    if left > 0 {
        shape[dim] = left;
        parts.push(Tensor::zeros(shape.clone(), x.dtype(), x.device())?.affine(1.0, lowest)?);
    }
    parts.push(x.clone());
    if right > 0 {
        shape[dim] = right;
        parts.push(Tensor::zeros(shape, x.dtype(), x.device())?.affine(1.0, lowest)?);
    }
    Ok(Tensor::cat(&parts, dim)?)
}
