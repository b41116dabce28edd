//! SGD with momentum over many parameters in one CUDA launch (`unisal_sgd_multi_f32`, `cuda/elementwise.cu`),
//! where `optim.rs` launched one kernel per parameter: 322 a dual ResNet-50 step, each a few microseconds of host
//! time and of a GPU that a kernel over a batch norm's 64 values leaves nearly idle. A table of the parameters'
//! addresses, counts and flags goes to the device with the launch.
//!
//! The gradient may be a strided 4-d view of the weight's shape: a channels-last weight's piece of the block op's
//! packed gradient (`packed_grads.rs`), read in place rather than copied out first. The weights and momentum
//! buffers are written through the addresses of their storages' read guards, as the batch norm writes its running
//! statistics: the optimiser owns them, and the step's work is in stream order.

use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::{DType, Tensor};

use super::cuda_kernels::{address, launch_with, per_entry_config, upload_table, MAX_ENTRIES};
use super::kernel_tables::{sgd_entry, SGD_WORDS};

/// One parameter's part of a step: its weight, its momentum buffer (`None` without momentum), its gradient, and
/// whether this is its first step (the buffer then becomes the gradient, whatever it held).
pub(crate) struct Part<'a> {
    pub w: &'a Tensor,
    pub buf: Option<&'a Tensor>,
    pub g: &'a Tensor,
    pub first: bool,
}

/// Whether the weight `w` and its gradient `g` can take the one-launch step: f32 on the same CUDA device, the
/// weight contiguous, the gradient of its shape and contiguous or 4-d.
pub(crate) fn fits(w: &Tensor, g: &Tensor) -> bool {
    w.device().is_cuda()
        && w.device().same_device(g.device())
        && w.dtype() == DType::F32
        && g.dtype() == DType::F32
        && w.is_contiguous()
        && w.shape() == g.shape()
        && (g.is_contiguous() || g.rank() == 4)
}

/// One step of every part with the learning rate, momentum and weight decay given (PyTorch's arithmetic, as
/// `optim.rs`'s per-parameter kernels); every part must [`fits`], on one device.
pub(crate) fn step(
    parts: &[Part<'_>],
    (lr, momentum, weight_decay): (f64, f64, f64),
) -> candle_core::Result<()> {
    for chunk in parts.chunks(MAX_ENTRIES) {
        step_chunk(chunk, [lr as f32, momentum as f32, weight_decay as f32])?;
    }
    Ok(())
}

fn step_chunk(parts: &[Part<'_>], [lr, momentum, wd]: [f32; 3]) -> candle_core::Result<()> {
    let Some(head) = parts.first() else { return Ok(()) };
    let cuda = head.w.device().as_cuda_device()?.clone();
    let stream = cuda.cuda_stream();
    let guards: Vec<_> = parts
        .iter()
        .map(|p| (p.w.storage_and_layout(), p.buf.map(Tensor::storage_and_layout), p.g.storage_and_layout()))
        .collect();
    let mut table: Vec<u64> = Vec::with_capacity(parts.len() * SGD_WORDS);
    let mut longest = 0usize;
    // The address guards (no-ops with event tracking off, `device.rs`) live until the launch is enqueued.
    let mut held = Vec::with_capacity(parts.len() * 3);
    for (p, (w, buf, g)) in parts.iter().zip(&guards) {
        if !fits(p.w, p.g) || p.w.device().as_cuda_device()?.id() != cuda.id() {
            candle_core::bail!("sgd: a parameter of {:?} does not fit the one-launch step", p.w.shape());
        }
        let n = p.w.elem_count();
        let w_at = address(w, &stream, &mut held, "sgd")?;
        let buf_at = match buf {
            Some(b) if momentum != 0.0 => {
                if b.1.shape() != p.w.shape() || !b.1.is_contiguous() {
                    candle_core::bail!(
                        "sgd: a momentum buffer of {:?} for a weight of {:?}",
                        b.1.shape(),
                        p.w.shape()
                    );
                }
                address(b, &stream, &mut held, "sgd")?
            }
            None if momentum != 0.0 => candle_core::bail!("sgd: momentum without a buffer"),
            _ => 0,
        };
        let g_at = address(g, &stream, &mut held, "sgd")?;
        table.extend(sgd_entry([w_at, buf_at, g_at], p.w.shape(), g.1, p.first)?);
        longest = longest.max(n);
    }
    let table = upload_table(&stream, &table, "sgd")?;
    let name = "unisal_sgd_multi_f32";
    let func = cuda.get_or_load_custom_func(name, "unisal_elementwise", super::cuda_kernels::PTX)?;
    let mut b = func.builder();
    b.arg(&table);
    b.arg(&lr);
    b.arg(&momentum);
    b.arg(&wd);
    let cfg = per_entry_config(longest, parts.len());
    // SAFETY: the table holds, for each part, the addresses of a weight, a buffer (with momentum) and a gradient of
    // n values each (the gradient through its strides), alive until the kernel has run: their tensors outlive this
    // call, and candle frees memory in stream order.
    unsafe { launch_with(name, &stream, b, cfg) }?;
    drop(held);
    Ok(())
}
