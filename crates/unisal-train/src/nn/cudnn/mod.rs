//! GPU layers through cuDNN (feature `cudnn`): convolution (forward, backward-data, backward-filter), batch norm
//! in train mode (forward with the running statistics, backward) and max pooling (forward, backward), each one
//! candle custom op whose backward is another op, so that a layer is one node of the autograd graph and its
//! gradient one or two cuDNN calls instead of candle's composed passes.
//!
//! The layers take these ops for contiguous-able f32 tensors on a CUDA device; `UNISAL_CUDNN=0` in the environment
//! turns them off (the composed candle ops then run, as in a build without the feature). Convolutions use strict
//! fp32 math unless `UNISAL_TF32=1` allows tensor-core TF32 (PyTorch's `cudnn.allow_tf32`).
//! `tests/layers_gradcheck_device.rs` checks every layer on the GPU against the f64 CPU reference.

mod batchnorm;
mod conv;
mod handle;
mod pool;

use std::sync::OnceLock;

use candle_core::{DType, Tensor};

pub(crate) use batchnorm::train as batch_norm_train;
pub(crate) use conv::ConvCudnn;
pub(crate) use pool::MaxPoolCudnn;

fn env_flag(name: &str) -> Option<bool> {
    std::env::var(name).ok().map(|v| !matches!(v.trim(), "0" | "false" | "off" | ""))
}

/// Whether the cuDNN layers take `x`: f32 on a CUDA device, and not turned off by `UNISAL_CUDNN=0`.
pub(crate) fn usable(x: &Tensor) -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    x.device().is_cuda()
        && x.dtype() == DType::F32
        && *ON.get_or_init(|| env_flag("UNISAL_CUDNN").unwrap_or(true))
}

/// Whether convolutions may use TF32 tensor cores (`UNISAL_TF32=1`); strict fp32 otherwise.
pub(crate) fn tf32_allowed() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| env_flag("UNISAL_TF32").unwrap_or(false))
}
