//! What the CPU custom ops share: the element types (f32, f64), a dispatch from candle's storages to one generic
//! kernel, and the split of a piece of work over candle's thread count on rayon's pool (the one candle and its
//! matrix products use; starting OS threads for every call cost a few percent of a training step).
//!
//! candle 0.11.1's own CPU element-wise ops run on one thread; the ops of this module use every thread candle is
//! allowed (`RAYON_NUM_THREADS`, read through `candle_core::utils::get_num_threads`) once the work is large enough
//! to pay for starting them.

use std::cell::RefCell;
use std::ops::Range;
use std::thread::LocalKey;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Device, Layout, Shape, Tensor};

/// Below this many elements a kernel runs on the calling thread: a thread costs more than it saves.
const MIN_PARALLEL: usize = 1 << 15;

/// Elements per work item of an element-wise pass ([`map_chunks`]).
const CHUNK: usize = 1 << 14;

/// The element types of the CPU ops; arithmetic that needs range or accuracy goes through f64.
pub(crate) trait Elem: candle_core::WithDType + Default {
    /// This thread's free scratch buffers of the type (`gemm_cpu::with_scratch`).
    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>>;
    /// As f64.
    fn f(self) -> f64;
    /// From f64 (rounded for f32).
    fn of(v: f64) -> Self;
    /// Whether the value is NaN.
    fn nan(self) -> bool;
}

thread_local! {
    static F32_POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static F64_POOL: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

impl Elem for f32 {
    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>> {
        &F32_POOL
    }
    fn f(self) -> f64 {
        f64::from(self)
    }
    fn of(v: f64) -> Self {
        v as f32
    }
    fn nan(self) -> bool {
        self.is_nan()
    }
}

impl Elem for f64 {
    fn pool() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>> {
        &F64_POOL
    }
    fn f(self) -> f64 {
        self
    }
    fn of(v: f64) -> Self {
        v
    }
    fn nan(self) -> bool {
        self.is_nan()
    }
}

/// A kernel over contiguous inputs of one element type, returning its contiguous output.
pub(crate) trait Kernel {
    /// The op's name, for errors.
    const NAME: &'static str;
    /// Check the inputs' layouts (in the op's argument order) and return the output's shape.
    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape>;
    /// Compute the output from the inputs (in the op's argument order).
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>>;
}

/// Implements candle's `CustomOp1`, `CustomOp2` or `CustomOp3` for a [`Kernel`]: its name, and a CPU forward that
/// checks the layouts ([`Kernel::shape`]) and runs the kernel ([`dispatch`]). The braces hold the op's `bwd`, if
/// it has one.
macro_rules! cpu_op {
    (CustomOp1 for $ty:ty { $($bwd:tt)* }) => {
        impl candle_core::CustomOp1 for $ty {
            fn name(&self) -> &'static str {
                <$ty as $crate::nn::cpu_util::Kernel>::NAME
            }
            fn cpu_fwd(
                &self,
                s1: &candle_core::CpuStorage,
                l1: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                let shape = $crate::nn::cpu_util::Kernel::shape(self, &[l1])?;
                Ok(($crate::nn::cpu_util::dispatch(self, &[(s1, l1)])?, shape))
            }
            $($bwd)*
        }
    };
    (CustomOp2 for $ty:ty { $($bwd:tt)* }) => {
        impl candle_core::CustomOp2 for $ty {
            fn name(&self) -> &'static str {
                <$ty as $crate::nn::cpu_util::Kernel>::NAME
            }
            fn cpu_fwd(
                &self,
                s1: &candle_core::CpuStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CpuStorage,
                l2: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                let shape = $crate::nn::cpu_util::Kernel::shape(self, &[l1, l2])?;
                Ok(($crate::nn::cpu_util::dispatch(self, &[(s1, l1), (s2, l2)])?, shape))
            }
            $($bwd)*
        }
    };
    (CustomOp3 for $ty:ty { $($bwd:tt)* }) => {
        impl candle_core::CustomOp3 for $ty {
            fn name(&self) -> &'static str {
                <$ty as $crate::nn::cpu_util::Kernel>::NAME
            }
            #[allow(clippy::too_many_arguments)]
            fn cpu_fwd(
                &self,
                s1: &candle_core::CpuStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CpuStorage,
                l2: &candle_core::Layout,
                s3: &candle_core::CpuStorage,
                l3: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                let shape = $crate::nn::cpu_util::Kernel::shape(self, &[l1, l2, l3])?;
                Ok(($crate::nn::cpu_util::dispatch(self, &[(s1, l1), (s2, l2), (s3, l3)])?, shape))
            }
            $($bwd)*
        }
    };
}
pub(crate) use cpu_op;

/// `[N, C, H, W]` of a layout, or an error naming the op.
pub(crate) fn dims4(layout: &Layout, op: &str) -> candle_core::Result<(usize, usize, usize, usize)> {
    match *layout.shape().dims() {
        [n, c, h, w] => Ok((n, c, h, w)),
        _ => candle_core::bail!("{op}: expected an [N, C, H, W] input, got {:?}", layout.shape()),
    }
}

/// The contiguous part of `data` that `layout` covers.
fn slice<'a, T>(data: &'a [T], layout: &Layout, op: &str) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: every input must be contiguous (got {:?})", layout.shape()),
    }
}

/// The contiguous slices of `inputs` if every storage holds `T` (as `pick` tells), else `None`.
fn typed<'a, T: 'a>(
    inputs: &[(&'a CpuStorage, &Layout)],
    op: &str,
    pick: impl Fn(&'a CpuStorage) -> Option<&'a [T]>,
) -> Option<candle_core::Result<Vec<&'a [T]>>> {
    let mut out = Vec::with_capacity(inputs.len());
    for (storage, layout) in inputs {
        out.push(slice(pick(storage)?, layout, op));
    }
    Some(out.into_iter().collect())
}

fn f32s(s: &CpuStorage) -> Option<&[f32]> {
    match s {
        CpuStorage::F32(d) => Some(d),
        _ => None,
    }
}

fn f64s(s: &CpuStorage) -> Option<&[f64]> {
    match s {
        CpuStorage::F64(d) => Some(d),
        _ => None,
    }
}

/// Run `kernel` on `inputs` (all f32 or all f64, contiguous).
pub(crate) fn dispatch<K: Kernel>(
    kernel: &K,
    inputs: &[(&CpuStorage, &Layout)],
) -> candle_core::Result<CpuStorage> {
    use super::op_profile::timed_cpu as timed;
    if let Some(slices) = typed(inputs, K::NAME, f32s) {
        return Ok(CpuStorage::F32(timed(K::NAME, || kernel.run(&slices?))?));
    }
    if let Some(slices) = typed(inputs, K::NAME, f64s) {
        return Ok(CpuStorage::F64(timed(K::NAME, || kernel.run(&slices?))?));
    }
    let dtypes: Vec<_> = inputs.iter().map(|(s, _)| s.dtype()).collect();
    candle_core::bail!("{}: unsupported dtypes {dtypes:?} (f32 or f64, all the same)", K::NAME)
}

/// An element-wise kernel that updates its first tensor in place from others of its shape (candle's
/// `InplaceOpN<N>`; no backward).
pub(crate) trait InPlaceKernel<const N: usize> {
    /// The op's name, for errors and the op profile.
    const NAME: &'static str;
    /// Update `dst` from `srcs` (all of `dst`'s length).
    fn run<T: Elem>(&self, dst: &mut [T], srcs: [&[T]; N]);
}

/// Run `kernel` in place on `dst` (f32 or f64, contiguous, like every source and of the same shape).
pub(crate) fn dispatch_in_place<const N: usize, K: InPlaceKernel<N>>(
    kernel: &K,
    dst: &mut CpuStorage,
    dst_l: &Layout,
    srcs: [(&CpuStorage, &Layout); N],
) -> candle_core::Result<()> {
    use super::op_profile::timed_cpu as timed;
    if let Some((_, l)) = srcs.iter().find(|(_, l)| l.shape() != dst_l.shape()) {
        candle_core::bail!("{}: shapes {:?} and {:?} differ", K::NAME, dst_l.shape(), l.shape());
    }
    let Some((start, end)) = dst_l.contiguous_offsets() else {
        candle_core::bail!("{}: the updated tensor must be contiguous", K::NAME)
    };
    match dst {
        CpuStorage::F32(d) => {
            if let Some(s) = typed(&srcs, K::NAME, f32s) {
                let s: [&[f32]; N] = s?.try_into().expect("N sources");
                timed(K::NAME, || kernel.run(&mut d[start..end], s));
                return Ok(());
            }
        }
        CpuStorage::F64(d) => {
            if let Some(s) = typed(&srcs, K::NAME, f64s) {
                let s: [&[f64]; N] = s?.try_into().expect("N sources");
                timed(K::NAME, || kernel.run(&mut d[start..end], s));
                return Ok(());
            }
        }
        _ => {}
    }
    candle_core::bail!("{}: unsupported dtypes (f32 or f64, all the same)", K::NAME)
}

/// Threads for `work` elements cut into `items` indivisible parts.
fn threads(work: usize, items: usize) -> usize {
    if work < MIN_PARALLEL {
        1
    } else {
        candle_core::utils::get_num_threads().clamp(1, items.max(1))
    }
}

/// `f(item index, item)` for every `item_len`-long item of `out` (the last one may be shorter), the items split
/// in contiguous groups over threads.
pub(crate) fn for_each_item<T: Send>(out: &mut [T], item_len: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    split_items(out, item_len, out.len(), f);
}

/// `f(index, part)` for every element of `parts`, split in contiguous groups over threads when `work` (elements
/// touched over all parts) is large.
pub(crate) fn for_each_part<P: Send>(parts: &mut [P], work: usize, f: impl Fn(usize, &mut P) + Sync) {
    split_items(parts, 1, work, |i, part| f(i, &mut part[0]));
}

/// [`for_each_item`] with the threads chosen for `work` elements.
fn split_items<T: Send>(out: &mut [T], item_len: usize, work: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if item_len == 0 || out.is_empty() {
        return;
    }
    let items = out.len().div_ceil(item_len);
    let t = threads(work, items);
    let per_thread = items.div_ceil(t);
    let run = |first: usize, chunk: &mut [T]| {
        for (j, item) in chunk.chunks_mut(item_len).enumerate() {
            f(first + j, item);
        }
    };
    if t == 1 {
        run(0, out);
        return;
    }
    rayon::scope(|s| {
        for (i, chunk) in out.chunks_mut(per_thread * item_len).enumerate() {
            let run = &run;
            s.spawn(move |_| run(i * per_thread, chunk));
        }
    });
}

/// A new `n`-element output, filled by `f(range, part)` for consecutive ranges of the indices (`part` is the
/// output's slice for `range`), threaded: the shape of every element-wise kernel.
pub(crate) fn map_chunks<T: Elem>(n: usize, f: impl Fn(Range<usize>, &mut [T]) + Sync) -> Vec<T> {
    let mut out = vec![T::default(); n];
    for_chunks(&mut out, f);
    out
}

/// `f(range, part)` over consecutive ranges of `out`'s indices (`part` is `out[range]`), threaded.
pub(crate) fn for_chunks<T: Send>(out: &mut [T], f: impl Fn(Range<usize>, &mut [T]) + Sync) {
    for_each_item(out, CHUNK, |i, part| {
        let start = i * CHUNK;
        f(start..start + part.len(), part);
    });
}

/// The shape shared by all `count` inputs of an element-wise op.
pub(crate) fn same_shape(inputs: &[&Layout], count: usize, op: &str) -> candle_core::Result<Shape> {
    match inputs.split_first() {
        Some((first, rest)) if inputs.len() == count && rest.iter().all(|l| l.shape() == first.shape()) => {
            Ok(first.shape().clone())
        }
        _ => {
            let shapes: Vec<_> = inputs.iter().map(|l| l.shape()).collect();
            candle_core::bail!("{op}: {count} inputs of one shape expected, got {shapes:?}")
        }
    }
}

/// `f(i)` for `i` in `0..items`, split over threads when `work` (elements touched) is large; results in order.
pub(crate) fn map_items<R: Send>(items: usize, work: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let t = threads(work, items);
    if t == 1 {
        return (0..items).map(f).collect();
    }
    let per = items.div_ceil(t);
    let mut parts: Vec<Vec<R>> = (0..t).map(|_| Vec::new()).collect();
    rayon::scope(|s| {
        for (i, part) in parts.iter_mut().enumerate() {
            let f = &f;
            s.spawn(move |_| *part = (i * per..((i + 1) * per).min(items)).map(f).collect());
        }
    });
    parts.into_iter().flatten().collect()
}

/// Whether the CPU kernels apply to `x`: on the CPU, in f32 or f64.
pub(crate) fn cpu_float(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && matches!(x.dtype(), DType::F32 | DType::F64)
}
