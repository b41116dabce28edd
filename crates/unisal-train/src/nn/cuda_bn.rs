//! Train-mode batch norm through our own kernels (`cuda/batchnorm.cu`, PTX built by `build.rs`) instead of cuDNN's,
//! for NCHW or channels-last activations in f32 or bf16: `UNISAL_BN_KERNELS=1` (opt-in; not yet run on a GPU). The cuDNN op
//! (`nn/cudnn/batchnorm.rs`) calls [`forward`] and, for a forward that ran here, [`backward`], with the device
//! addresses it holds, so that everything around the kernels (the op, the saved statistics, the block op's packed
//! gradient, the ReLU) stays as it is.
//!
//! Why: on an H200 (session 18) cuDNN's batch norms took 41.6 ms of a 92.8 ms bf16 dual ResNet-50 step, about eight
//! times what moving their bytes takes, and PyTorch runs bf16 batch norm through its own kernels, not cuDNN's.
//!
//! A channel's sums are split into `P` shares, one a thread ([`Geom::shares`]: about 64K threads in all, each at
//! least 32 values), merged in f64 by one thread a channel; no kernel divides in its loop. The kernels' arithmetic is
//! checked on the CPU by `tests/cuda_kernels_on_cpu.rs`.

use std::sync::{Arc, OnceLock};

use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use candle_core::CudaDevice;

use super::cuda_kernels::launch_with;
use super::cudnn::{BwdPtrs, FwdPtrs};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/unisal_bn.ptx"));
const THREADS: u32 = 256;
/// The most blocks of the grid-stride kernels (normalize, dx).
const MAX_BLOCKS: u64 = 8192;

/// Whether `UNISAL_BN_KERNELS=1` asks for these kernels.
pub(crate) fn wanted() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("UNISAL_BN_KERNELS").is_ok_and(|v| v.trim() == "1"))
}

/// A batch norm's geometry as the kernels take it: `C` channels of `S = H * W` values in `N` samples, `M = N * S`
/// values a channel, `P` shares a channel, `total` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geom {
    c: u32,
    s: u32,
    m: u32,
    p: u32,
    total: u32,
}

impl Geom {
    /// The geometry of `[N, C, H, W]`, or `None` where its values overflow the kernels' 32-bit counts (2^31 values
    /// in all, with room for a grid-stride step past the end) or a channel has one value (no variance): the caller
    /// then takes cuDNN's batch norm.
    pub(crate) fn new([n, c, h, w]: [usize; 4]) -> Option<Self> {
        let (s, m, total) = (h * w, n * h * w, n * c * h * w);
        if c == 0 || m < 2 || total >= 1 << 31 {
            return None;
        }
        let t = |v: usize| v as u32;
        Some(Self { c: t(c), s: t(s), m: t(m), p: Self::shares(c, m), total: t(total) })
    }

    /// Shares a channel: about 64K threads in all, each with at least 32 values, at most 1,024 a channel (the merge
    /// is one thread's loop).
    fn shares(c: usize, m: usize) -> u32 {
        (65_536 / c).clamp(1, 1024).min((m / 32).max(1)) as u32
    }

    fn blocks(threads: u64) -> LaunchConfig {
        let blocks = threads.div_ceil(THREADS as u64).clamp(1, MAX_BLOCKS) as u32;
        LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
    }
}

/// The kernels' names for f32 or (`bf16`) bf16 activations, NCHW or (`nhwc`) channels last.
fn names(bf16: bool, nhwc: bool) -> [&'static str; 5] {
    match (bf16, nhwc) {
        (false, false) => [
            "unisal_bn_partials_f32",
            "unisal_bn_finalize_f32",
            "unisal_bn_normalize_f32",
            "unisal_bn_bwd_partials_f32",
            "unisal_bn_dx_f32",
        ],
        (true, false) => [
            "unisal_bn_partials_bf16",
            "unisal_bn_finalize_bf16",
            "unisal_bn_normalize_bf16",
            "unisal_bn_bwd_partials_bf16",
            "unisal_bn_dx_bf16",
        ],
        (false, true) => [
            "unisal_bn_partials_f32_nhwc",
            "unisal_bn_finalize_f32_nhwc",
            "unisal_bn_normalize_f32_nhwc",
            "unisal_bn_bwd_partials_f32_nhwc",
            "unisal_bn_dx_f32_nhwc",
        ],
        (true, true) => [
            "unisal_bn_partials_bf16_nhwc",
            "unisal_bn_finalize_bf16_nhwc",
            "unisal_bn_normalize_bf16_nhwc",
            "unisal_bn_bwd_partials_bf16_nhwc",
            "unisal_bn_dx_bf16_nhwc",
        ],
    }
}

/// The activations' type and layout: bf16 (else f32), channels last (else NCHW).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Data {
    pub(crate) bf16: bool,
    pub(crate) nhwc: bool,
}

/// A scratch buffer of `n` f32 on `stream` and its address.
fn scratch(stream: &Arc<CudaStream>, n: usize) -> candle_core::Result<(CudaSlice<f32>, u64)> {
    // SAFETY: every value is written by the partials kernel before the merge reads it.
    let buf = unsafe { stream.alloc::<f32>(n.max(1)) }
        .map_err(|e| candle_core::Error::Msg(format!("batch norm kernels: allocate: {e:?}")))?;
    let p = {
        let (p, _guard) = buf.device_ptr(stream);
        p
    };
    Ok((buf, p))
}

/// The forward on `dev`'s stream over the addresses `p` (the cuDNN op's): statistics, running statistics, `y`.
pub(crate) fn forward(
    dev: &CudaDevice,
    (g, data): (Geom, Data),
    p: &FwdPtrs,
    (eps, momentum): (f32, f32),
) -> candle_core::Result<()> {
    let stream = dev.cuda_stream();
    // The kernels' pointer arguments as the launch pushes them.
    let (x, y, gamma, beta) = (p.x as u64, p.y as u64, p.gamma as u64, p.beta as u64);
    let ((rm, rv), (mean, invstd)) =
        ((p.running.0 as u64, p.running.1 as u64), (p.saved.0 as u64, p.saved.1 as u64));
    let [partials, finalize, normalize, _, _] = names(data.bf16, data.nhwc);
    let (buf, parts) = scratch(&stream, (g.c * g.p * 2) as usize)?;
    let func = dev.get_or_load_custom_func(partials, "unisal_bn", PTX)?;
    let mut b = func.builder();
    b.arg(&x).arg(&parts).arg(&g.c).arg(&g.s).arg(&g.m).arg(&g.p);
    // SAFETY: `x` holds N * C * S values of the kernel's type, `parts` C * P * 2 f32; the grid covers C * P threads.
    unsafe { launch_with(partials, &stream, b, Geom::blocks(g.c as u64 * g.p as u64)) }?;
    let func = dev.get_or_load_custom_func(finalize, "unisal_bn", PTX)?;
    let mut b = func.builder();
    b.arg(&x).arg(&parts).arg(&mean).arg(&invstd).arg(&rm).arg(&rv);
    b.arg(&g.c).arg(&g.s).arg(&g.m).arg(&g.p).arg(&eps).arg(&momentum);
    // SAFETY: the statistics are C f32 each; one thread a channel.
    unsafe { launch_with(finalize, &stream, b, Geom::blocks(g.c as u64)) }?;
    let func = dev.get_or_load_custom_func(normalize, "unisal_bn", PTX)?;
    let mut b = func.builder();
    b.arg(&x).arg(&y).arg(&mean).arg(&invstd).arg(&gamma).arg(&beta).arg(&g.c).arg(&g.s).arg(&g.total);
    // SAFETY: `x` and `y` hold `total` values; grid-stride.
    unsafe { launch_with(normalize, &stream, b, Geom::blocks(g.total as u64)) }?;
    drop(buf);
    Ok(())
}

/// The backward on `dev`'s stream over the addresses `p` (the cuDNN op's; no fused ReLU here): `dgamma`, `dbeta`,
/// then `dx`.
pub(crate) fn backward(dev: &CudaDevice, (g, data): (Geom, Data), p: &BwdPtrs) -> candle_core::Result<()> {
    let stream = dev.cuda_stream();
    let [_, _, _, partials, dx_kernel] = names(data.bf16, data.nhwc);
    let (buf, parts) = scratch(&stream, (g.c * g.p * 2) as usize)?;
    let (x, dy, dx, gamma) = (p.x as u64, p.dy as u64, p.dx as u64, p.gamma as u64);
    let ((mean, invstd), (dgamma, dbeta)) =
        ((p.saved.0 as u64, p.saved.1 as u64), (p.dparams.0 as u64, p.dparams.1 as u64));
    let func = dev.get_or_load_custom_func(partials, "unisal_bn", PTX)?;
    let mut b = func.builder();
    b.arg(&x).arg(&dy).arg(&mean).arg(&invstd).arg(&parts).arg(&g.c).arg(&g.s).arg(&g.m).arg(&g.p);
    // SAFETY: as in `forward`.
    unsafe { launch_with(partials, &stream, b, Geom::blocks(g.c as u64 * g.p as u64)) }?;
    let name = "unisal_bn_bwd_finalize";
    let func = dev.get_or_load_custom_func(name, "unisal_bn", PTX)?;
    let mut b = func.builder();
    b.arg(&parts).arg(&dgamma).arg(&dbeta).arg(&g.c).arg(&g.p);
    // SAFETY: `dgamma` and `dbeta` are C f32 each; one thread a channel.
    unsafe { launch_with(name, &stream, b, Geom::blocks(g.c as u64)) }?;
    let func = dev.get_or_load_custom_func(dx_kernel, "unisal_bn", PTX)?;
    let mut b = func.builder();
    b.arg(&x).arg(&dy).arg(&dx).arg(&mean).arg(&invstd).arg(&gamma).arg(&dgamma).arg(&dbeta);
    b.arg(&g.c).arg(&g.s).arg(&g.m).arg(&g.total);
    // SAFETY: `x`, `dy` and `dx` hold `total` values; grid-stride.
    unsafe { launch_with(dx_kernel, &stream, b, Geom::blocks(g.total as u64)) }?;
    drop(buf);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_keep_the_threads_busy_and_each_share_worth_its_merge() {
        // ResNet-50's first batch norm at batch 128: 64 channels of 128 * 112 * 112 values.
        let g = Geom::new([128, 64, 112, 112]).unwrap();
        assert_eq!((g.p, g.m, g.total), (1024, 1_605_632, 102_760_448));
        // Its last: 2,048 channels of 128 * 7 * 7; 32 shares of 196 values.
        assert_eq!(Geom::new([128, 2048, 7, 7]).unwrap().p, 32);
        // Few values a channel: one share.
        assert_eq!(Geom::new([2, 8, 3, 3]).unwrap().p, 1);
        assert!(Geom::new([1, 4, 1, 1]).is_none(), "one value a channel has no variance");
        assert!(Geom::new([256, 128, 256, 256]).is_none(), "2^31 values");
    }
}
