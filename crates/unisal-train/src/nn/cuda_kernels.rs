//! The element-wise CUDA kernels of `cuda/elementwise.cu` (PTX built by `build.rs`, feature `cuda`) and their
//! launch: ReLU, the residual join `relu(a + b)`, the ReLU gradient mask and the SGD passes (in place on the
//! momentum buffer and the weight), each one kernel where candle needs two to six (plus their allocations); the
//! first three also in bf16, with four (f32) or eight (bf16) values a thread. The ops that use them
//! (`elementwise.rs`, `optim.rs`) compute the same on the CPU in Rust.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaStream, CudaView, DevicePtr, DeviceRepr, LaunchArgs, LaunchConfig, PushKernelArg,
    SyncOnDrop,
};
use candle_core::cuda_backend::CudaDType;
use candle_core::{CudaDevice, CudaStorage, DType, Layout, Shape};

pub(crate) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/unisal_kernels.ptx"));
const THREADS: u32 = 256;

/// The out-of-place kernels of `cuda/elementwise.cu`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Map {
    /// `max(a, 0)`.
    Relu,
    /// `max(a + b, 0)`.
    AddRelu,
    /// `a * [b > 0]`.
    ReluMask,
    /// `b + p1 * a` (SGD's first momentum buffer; f32 only).
    SgdFirstBuffer,
}

impl Map {
    /// The kernel's name for elements of `dtype` (f32, or bf16 for all but SGD's).
    fn name(self, dtype: DType) -> candle_core::Result<&'static str> {
        Ok(match (self, dtype) {
            (Map::Relu, DType::F32) => "unisal_relu_f32",
            (Map::AddRelu, DType::F32) => "unisal_add_relu_f32",
            (Map::ReluMask, DType::F32) => "unisal_relu_mask_f32",
            (Map::SgdFirstBuffer, DType::F32) => "unisal_sgd_buffer_f32",
            (Map::Relu, DType::BF16) => "unisal_relu_bf16",
            (Map::AddRelu, DType::BF16) => "unisal_add_relu_bf16",
            (Map::ReluMask, DType::BF16) => "unisal_relu_mask_bf16",
            (k, dt) => candle_core::bail!("{k:?}: no CUDA kernel for {dt:?}"),
        })
    }

    /// Values a thread of the kernel takes: 4 for the f32 ReLU kernels and 8 for the bf16 ones (16-byte loads),
    /// else 1.
    fn per_thread(self, dtype: DType) -> usize {
        match (self, dtype) {
            (Map::Relu | Map::AddRelu | Map::ReluMask, DType::F32) => 4,
            (Map::Relu | Map::AddRelu | Map::ReluMask, DType::BF16) => 8,
            _ => 1,
        }
    }
}

/// The in-place kernels of `cuda/elementwise.cu` (f32 only).
#[derive(Debug, Clone, Copy)]
pub(crate) enum SgdKernel {
    /// SGD's momentum buffer: `buf = p0 * buf + (g + p1 * w)` (inputs `w`, `g`).
    Buffer,
    /// SGD's weight: `w -= p0 * buf` (input `buf`).
    Apply,
    /// Both in one pass: `buf = p0 * buf + (g + p1 * w); w -= p2 * buf` (target `buf`; inputs `w`, which the
    /// kernel writes too, and `g`).
    Step,
}

impl SgdKernel {
    fn name(self) -> &'static str {
        match self {
            SgdKernel::Buffer => "unisal_sgd_buffer_in_place_f32",
            SgdKernel::Apply => "unisal_sgd_apply_in_place_f32",
            SgdKernel::Step => "unisal_sgd_step_in_place_f32",
        }
    }
}

/// Runs `kernel` over 1-3 contiguous inputs of one shape and element type (f32 or bf16; a missing input slot gets
/// the first; the kernels do not read it) with the scalars `p`; returns a new buffer of that shape.
pub(crate) fn map(
    kernel: Map,
    inputs: &[(&CudaStorage, &Layout)],
    p: [f32; 3],
) -> candle_core::Result<(CudaStorage, Shape)> {
    let Some(&(first, _)) = inputs.first() else { candle_core::bail!("{kernel:?}: no input") };
    let dt = first.dtype();
    match dt {
        DType::F32 => map_as::<f32>((kernel.name(dt)?, kernel.per_thread(dt)), inputs, p),
        DType::BF16 => map_as::<half::bf16>((kernel.name(dt)?, kernel.per_thread(dt)), inputs, p),
        dt => candle_core::bail!("{kernel:?}: no CUDA kernel for {dt:?}"),
    }
}

fn map_as<T: CudaDType + DeviceRepr>(
    (name, per_thread): (&'static str, usize),
    inputs: &[(&CudaStorage, &Layout)],
    p: [f32; 3],
) -> candle_core::Result<(CudaStorage, Shape)> {
    let Some(&(first, first_l)) = inputs.first() else { candle_core::bail!("{name}: no input") };
    let shape = first_l.shape().clone();
    let n = shape.elem_count();
    let views = views::<T>(name, inputs, &shape)?;
    let dev = &first.device;
    // SAFETY: every element is written by the kernel below before anything reads it.
    let out = unsafe { dev.alloc::<T>(n.max(1)) }?;
    if n > 0 {
        let func = dev.get_or_load_custom_func(name, "unisal_elementwise", PTX)?;
        let mut b = func.builder();
        for i in 0..3 {
            b.arg(&views[i.min(views.len() - 1)]);
        }
        b.arg(&out);
        let count = n as u64;
        b.arg(&count);
        for v in &p {
            b.arg(v);
        }
        // SAFETY: the kernel's signature is the one pushed above; it reads n values of each input, writes n.
        unsafe { launch(name, dev, n.div_ceil(per_thread), b) }?;
    }
    Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), shape))
}

/// The contiguous `T` views of `inputs`, each checked to be contiguous and of `shape`.
fn views<'a, T: CudaDType>(
    name: &str,
    inputs: &[(&'a CudaStorage, &Layout)],
    shape: &Shape,
) -> candle_core::Result<Vec<CudaView<'a, T>>> {
    let n = shape.elem_count();
    inputs
        .iter()
        .map(|&(s, l)| {
            if l.shape() != shape || !l.is_contiguous() {
                candle_core::bail!(
                    "{name}: inputs must be contiguous and of shape {shape:?}, got {:?}",
                    l.shape()
                );
            }
            Ok(s.as_cuda_slice::<T>()?.slice(l.start_offset()..l.start_offset() + n))
        })
        .collect()
}

/// Launches `b` with a thread for each of `n` values, or of `n` groups of values (grid-stride loops), timed by the
/// op profile under `name`.
///
/// # Safety
/// `b` must hold the kernel's arguments, with buffers of the lengths the kernel reads and writes.
unsafe fn launch(
    name: &'static str,
    dev: &CudaDevice,
    n: usize,
    b: LaunchArgs<'_>,
) -> candle_core::Result<()> {
    let blocks = n.div_ceil(THREADS as usize).min(1 << 20) as u32;
    let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: the caller's contract.
    unsafe { launch_with(name, &dev.cuda_stream(), b, cfg) }
}

/// Launches `b` as `cfg` says on `stream`, timed by the op profile under `name`.
///
/// # Safety
/// `b` must hold the kernel's arguments, with buffers of the lengths the kernel reads and writes under `cfg`.
pub(crate) unsafe fn launch_with(
    name: &'static str,
    stream: &std::sync::Arc<CudaStream>,
    mut b: LaunchArgs<'_>,
    cfg: LaunchConfig,
) -> candle_core::Result<()> {
    super::op_profile::timed(name, stream, || {
        // SAFETY: see the function's contract.
        unsafe { b.launch(cfg) }.map_err(|e| candle_core::Error::Msg(format!("{name}: launch: {e:?}")))?;
        Ok(())
    })
}

/// Runs the in-place `kernel` on the contiguous f32 `target`, with one or two contiguous f32 inputs of its shape
/// (a missing second slot gets the first; the kernels do not read it) and the scalars `p`.
pub(crate) fn update(
    kernel: SgdKernel,
    (target, tl): (&mut CudaStorage, &Layout),
    inputs: &[(&CudaStorage, &Layout)],
    p: [f32; 3],
) -> candle_core::Result<()> {
    let name = kernel.name();
    let shape = tl.shape();
    let n = shape.elem_count();
    if !tl.is_contiguous() || inputs.is_empty() {
        candle_core::bail!("{name}: a contiguous target and at least one input expected");
    }
    let views = views::<f32>(name, inputs, shape)?;
    let dev = target.device.clone();
    let start = tl.start_offset();
    let mut t = target.as_cuda_slice_mut::<f32>()?.slice_mut(start..start + n);
    if n == 0 {
        return Ok(());
    }
    let func = dev.get_or_load_custom_func(name, "unisal_elementwise", PTX)?;
    let mut b = func.builder();
    b.arg(&views[0]);
    b.arg(&views[views.len().min(2) - 1]);
    b.arg(&mut t);
    let count = n as u64;
    b.arg(&count);
    for v in &p {
        b.arg(v);
    }
    // SAFETY: the kernel's signature is the one pushed above; it reads and writes n values of the target and reads
    // n of each input.
    unsafe { launch(name, &dev, n, b) }
}

/// Blocks a table entry at most in [`per_entry_config`] (grid-stride beyond).
const MAX_ENTRY_BLOCKS: usize = 512;

/// Table entries a launch at most (the grid's y dimension): callers launch in chunks of this many.
pub(crate) const MAX_ENTRIES: usize = 65_535;

/// The launch of a table kernel (`cuda_sgd.rs`, `cuda_pack.rs`): a row of blocks per entry (the grid's y), each row
/// enough blocks of [`THREADS`] for the longest entry's `longest` values, at most [`MAX_ENTRY_BLOCKS`].
pub(crate) fn per_entry_config(longest: usize, entries: usize) -> LaunchConfig {
    let blocks = longest.div_ceil(THREADS as usize).clamp(1, MAX_ENTRY_BLOCKS) as u32;
    LaunchConfig { grid_dim: (blocks, entries as u32, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// A table kernel's table (addresses, counts, flags as `u64` words) on the device, for one launch.
pub(crate) fn upload_table(
    stream: &std::sync::Arc<CudaStream>,
    table: &[u64],
    what: &str,
) -> candle_core::Result<CudaSlice<u64>> {
    stream.clone_htod(table).map_err(|e| candle_core::Error::Msg(format!("{what}: upload its table: {e:?}")))
}

/// The device address of the first value of a tensor's f32 CUDA storage (`(guard, layout)`, from
/// `storage_and_layout`), for a table kernel's table; its address guard is kept in `held` until the launch is
/// enqueued (a no-op with event tracking off, `device.rs`).
pub(crate) fn address<'a>(
    (s, l): &'a (candle_core::StorageRef<'_>, &Layout),
    stream: &'a CudaStream,
    held: &mut Vec<SyncOnDrop<'a>>,
    what: &str,
) -> candle_core::Result<u64> {
    let candle_core::Storage::Cuda(c) = &**s else {
        candle_core::bail!("{what}: a tensor is not on the CUDA device")
    };
    let (base, guard) = c.as_cuda_slice::<f32>()?.device_ptr(stream);
    held.push(guard);
    Ok(base + 4 * l.start_offset() as u64)
}
