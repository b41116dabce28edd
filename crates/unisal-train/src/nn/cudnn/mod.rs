//! GPU layers through cuDNN (loaded at run time by `ffi.rs`; feature `cuda`): convolution (forward, backward-data, backward-filter), batch norm
//! (train mode: forward with the running statistics, backward; eval mode) and max pooling (forward, backward), each one
//! candle custom op whose backward is another op, so that a layer is one node of the autograd graph and its
//! gradient one or two cuDNN calls instead of candle's composed passes. In training a convolution and the batch norm
//! after it are one node (`conv_bn.rs`); in prediction one cuDNN call with the ReLU and residual (`fused.rs`).
//!
//! The layers take these ops for f32 tensors on a CUDA device (`super::gpu_f32`; `UNISAL_GPU_KERNELS=0` in the
//! environment turns them off). Convolutions use strict fp32 math unless `UNISAL_TF32=1` allows tensor-core TF32
//! (PyTorch's `cudnn.allow_tf32`).
//! `tests/layers_gradcheck_device.rs` checks every layer on the GPU against the f64 CPU reference.

/// `cpu_fwd` of a CUDA-only `CustomOp2`, `CustomOp3` or `InplaceOp3`, written inside the impl as
/// `cuda_only_cpu_fwd!(CustomOp3)`: an error naming the op.
macro_rules! cuda_only_cpu_fwd {
    (@fn $t:ident; $($s:ident $l:ident),+) => {
        #[allow(clippy::too_many_arguments)]
        fn cpu_fwd(
            &self,
            $($s: &candle_core::CpuStorage, $l: &candle_core::Layout),+
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            $(let _ = ($s, $l);)+
            candle_core::bail!("{} runs on CUDA devices only", <Self as candle_core::$t>::name(self))
        }
    };
    (CustomOp2) => { $crate::nn::cudnn::cuda_only_cpu_fwd!(@fn CustomOp2; s1 l1, s2 l2); };
    (CustomOp3) => { $crate::nn::cudnn::cuda_only_cpu_fwd!(@fn CustomOp3; s1 l1, s2 l2, s3 l3); };
    (InplaceOp3) => {
        fn cpu_fwd(
            &self,
            s1: &mut candle_core::CpuStorage,
            l1: &candle_core::Layout,
            s2: &candle_core::CpuStorage,
            l2: &candle_core::Layout,
            s3: &candle_core::CpuStorage,
            l3: &candle_core::Layout,
        ) -> candle_core::Result<()> {
            let _ = (s1, l1, s2, l2, s3, l3);
            candle_core::bail!("{} runs on CUDA devices only", <Self as candle_core::InplaceOp3>::name(self))
        }
    };
}
pub(crate) use cuda_only_cpu_fwd;

mod batchnorm;
mod batchnorm_bwd;
mod batchnorm_ex;
mod block;
mod block_layer;
mod conv;
mod conv_accumulate;
mod conv_bn;
mod conv_choice;
mod ffi;
mod fused;
mod graph;
pub(crate) mod handle;
mod pool;

use std::sync::OnceLock;

use candle_core::Tensor;

pub(crate) use batchnorm::{eval as batch_norm_eval, train as batch_norm_train};
pub(crate) use batchnorm_ex::{BwdPtrs, FwdPtrs};
pub(crate) use block::{train as block_train, Block, BlocksCudnn};
pub(crate) use block_layer::{BlockLayer, Stem};
pub(crate) use conv::{backward as conv_backward, forward as conv_forward};
pub(crate) use conv_bn::train as conv_bn_train;
pub(crate) use fused::conv_bias_act;
pub(crate) use pool::{backward as pool_backward, forward as pool_forward};

/// Whether the cuDNN layers take `x` (see [`super::gpu_float`]) and cuDNN could be loaded and create a handle on
/// the device (a library that loads but cannot run, e.g. without its engine sublibraries or for an unsupported
/// driver, would otherwise fail every layer). Where it cannot, the layers use candle's ops, and the first such
/// call says so once on stderr.
pub(crate) fn usable(x: &Tensor) -> bool {
    if !super::gpu_float(x) {
        return false;
    }
    static SAID: std::sync::Once = std::sync::Once::new();
    let say = |why: &dyn std::fmt::Display| {
        SAID.call_once(|| {
            eprintln!("unisal: {why}; convolution, batch norm and pooling use candle's slower GPU ops");
        })
    };
    if let Err(why) = ffi::api() {
        say(&why);
        return false;
    }
    static RUNS: OnceLock<Result<(), String>> = OnceLock::new();
    let runs = RUNS.get_or_init(|| match x.device() {
        candle_core::Device::Cuda(dev) => {
            handle::with_handle(dev, "cudnn-probe", |_, _, _| Ok(())).map_err(|e| e.to_string())
        }
        _ => Ok(()),
    });
    match runs {
        Ok(()) => true,
        Err(why) => {
            say(&format!("cuDNN is installed but cannot run on this device ({why})"));
            false
        }
    }
}

/// "cuDNN 9.x.y" when cuDNN could be loaded (for the device's description).
pub(crate) fn version() -> Option<String> {
    let a = ffi::api().ok()?;
    // SAFETY: no arguments.
    let v = unsafe { (a.cudnnGetVersion)() };
    Some(format!("cuDNN {}.{}.{}", v / 10_000, v / 100 % 100, v % 100))
}

/// The math type a convolution on data of cuDNN's type `data` may use: tensor cores for bf16, cuDNN's default
/// (TF32 allowed) for f32 with `UNISAL_TF32=1`, FMA kernels only (strict fp32) otherwise.
pub(crate) fn allowed_math(data: std::ffi::c_int) -> std::ffi::c_int {
    match (data == ffi::DATA_BFLOAT16, tf32_allowed()) {
        (true, _) => ffi::TENSOR_OP_MATH,
        (false, true) => ffi::DEFAULT_MATH,
        (false, false) => ffi::FMA_MATH,
    }
}

/// Whether convolutions may use TF32 tensor cores (`UNISAL_TF32=1`); strict fp32 otherwise.
pub(crate) fn tf32_allowed() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("UNISAL_TF32").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "on")))
}

/// Whether the convolutions keep what they can between calls (`UNISAL_CUDNN_REUSE`, anything but `0`, `false`,
/// `off`): their descriptors, workspace sizes and one workspace buffer. Off, each call makes them anew, as before
/// session 12, for a comparison on the GPU.
pub(crate) fn reuse() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| crate::nn::env_not_off("UNISAL_CUDNN_REUSE"))
}
