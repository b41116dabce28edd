//! Layers written from differentiable candle ops, so that their gradients are correct in train mode on every
//! backend (CPU, CUDA, Metal) without custom kernels.
//!
//! candle 0.11.1's own `max_pool2d` has a wrong or missing backward and candle-nn's BatchNorm in the model ports is
//! eval-only, so everything a network needs is here: [`Conv2d`], [`BatchNorm2d`] (train and eval mode, torch
//! semantics), [`Linear`], [`relu`], [`global_avg_pool`] and [`max_pool2d`]. Every layer's gradient is checked
//! against central finite differences in f64 (`tests/layers_gradcheck.rs`).
//!
//! On the CPU (f32/f64) convolutions run as im2col + one matrix product, BatchNorm (train mode optionally fused
//! with the following ReLU; eval mode) as one custom op with a closed-form backward, and max pooling and the
//! residual join `relu(a + b)` as threaded custom ops (`cpu_util.rs` holds what they share); all are checked
//! against finite differences and against the composed candle ops (`tests/cpu_kernels.rs`). On a CUDA device
//! (feature `cuda`, where cuDNN is installed), convolution, BatchNorm and max pooling are cuDNN ops with cuDNN backward
//! passes (`cudnn/`). Other cases compose candle ops.
//!
//! Training crops are square: candle's stride-2 convolution backward (used off the CPU) is only correct on square
//! inputs.

mod batchnorm;
mod batchnorm_cpu;
pub mod blocks;
mod conv;
mod conv_backward;
mod conv_bn_cpu;
mod conv_cpu;
mod conv_eval_cpu;
mod conv_sample_cpu;
pub(crate) mod cpu_util;
#[cfg(feature = "cuda")]
mod cuda_bn;
#[cfg(feature = "cuda")]
pub(crate) mod cuda_kernels;
#[cfg(feature = "cuda")]
mod cuda_pack;
#[cfg(feature = "cuda")]
pub(crate) mod cuda_sgd;
#[cfg(feature = "cuda")]
mod cudnn;
#[cfg(feature = "cuda")]
pub(crate) use cudnn::handle::release_workspaces as release_cudnn_workspaces;
#[cfg(feature = "cuda")]
pub(crate) use cudnn::version as cudnn_version;
mod elementwise;
pub mod fused;
mod gemm_cpu;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod graph_mode;
mod im2col;
mod init;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
mod kernel_tables;
mod lanes_cpu;
mod linear;
mod no_grad;
pub mod op_profile;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) mod packed_grads;
mod pool;
mod pool_cpu;
mod winograd_cpu;

pub use batchnorm::{BatchNorm2d, BnImpl};
pub use conv::{Conv2d, ConvImpl};
pub use init::Init;
pub use linear::Linear;
pub use no_grad::NoGrad;
pub(crate) use no_grad::{param, param_as};
pub use packed_grads::{backward, collect};
pub use pool::{add_relu, global_avg_pool, max_pool2d, max_pool2d_composed, relu};

use candle_core::{DType, Tensor, Var};

/// Whether our GPU kernels (the element-wise ones of `cuda_kernels.rs` and, where cuDNN is installed, the cuDNN
/// layers) take `x`: f32 on a CUDA device, unless `UNISAL_GPU_KERNELS=0` turns them off (candle's composed ops then
/// run, as in a build without the features: for comparisons and as a way around a faulty kernel).
pub(crate) fn gpu_f32(x: &Tensor) -> bool {
    x.dtype() == DType::F32 && gpu_float(x)
}

/// [`gpu_f32`] for f32 or bf16 (the activations of mixed precision): what the layers' kernels take; SGD, whose
/// weights stay f32, takes only f32.
pub(crate) fn gpu_float(x: &Tensor) -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    cfg!(feature = "cuda")
        && x.device().is_cuda()
        && matches!(x.dtype(), DType::F32 | DType::BF16)
        && *ON.get_or_init(|| env_not_off("UNISAL_GPU_KERNELS"))
}

/// Whether the environment switch `name` is on: unset or anything but `0`, `false`, `off`.
pub(crate) fn env_not_off(name: &str) -> bool {
    std::env::var(name).map_or(true, |v| !matches!(v.trim(), "0" | "false" | "off"))
}

/// Whether the cuDNN layers take `x`: [`gpu_float`] and cuDNN loaded (always false without the `cuda` feature).
pub(crate) fn cudnn_usable(x: &Tensor) -> bool {
    #[cfg(feature = "cuda")]
    return cudnn::usable(x);
    #[cfg(not(feature = "cuda"))]
    {
        let _ = x;
        false
    }
}

/// Whether a variable is trained or is a buffer (BatchNorm running statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarKind {
    /// A trainable parameter, updated by the optimiser.
    Param,
    /// A non-trainable buffer, updated by the forward pass in train mode.
    Buffer,
}

/// A variable with its state-dict name (torchvision's naming, e.g. `layer1.0.bn1.running_mean`).
#[derive(Debug, Clone)]
pub struct NamedVar {
    /// Full dotted name.
    pub name: String,
    /// The variable (cheap to clone: shares storage).
    pub var: Var,
    /// Parameter or buffer.
    pub kind: VarKind,
}

/// Something that owns named variables.
pub trait HasVars {
    /// Append this module's variables, their names prefixed with `prefix` (empty for the root).
    fn visit_vars(&self, prefix: &str, out: &mut Vec<NamedVar>);
}

/// `prefix.name`, or `name` when the prefix is empty.
pub fn join_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

pub(crate) fn push_var(out: &mut Vec<NamedVar>, prefix: &str, name: &str, var: &Var, kind: VarKind) {
    out.push(NamedVar { name: join_name(prefix, name), var: var.clone(), kind });
}
