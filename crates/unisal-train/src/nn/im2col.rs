//! CPU im2col / col2im as candle custom ops, each the other's gradient (they are adjoint linear maps).
//!
//! [`Im2col`] turns `x: [N, C, H, W]` into the patch matrix `[N * Ho * Wo, C * k * k]`: row `(n, oh, ow)` holds the
//! `k x k` window of every channel at output position `(oh, ow)` (stride `s`, zero padding `p`), in the order of a
//! weight `[O, C, k, k]` flattened to `[O, C * k * k]`. A convolution is then one matrix product
//! `cols · W^T` (see `conv.rs`), and its backward two large matrix products (`dY · W` and `cols^T · dY`) plus a
//! col2im, instead of candle 0.11.1's naive `conv_transpose2d`. Both ops run on the CPU only (f32 and f64), split
//! over the batch on candle's thread count.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

/// Geometry of a square-kernel convolution over `[N, C, H, W]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Geometry {
    /// Output height (torch's `floor((H + 2p - k) / s) + 1`).
    pub fn ho(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Output width.
    pub fn wo(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Columns of the patch matrix: `C * k * k`.
    pub fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }

    fn cols_per_sample(&self) -> usize {
        self.ho() * self.wo() * self.ckk()
    }

    fn image(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// `[N, C, H, W]` -> `[N * Ho * Wo, C * k * k]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Im2col(pub Geometry);

/// `[N * Ho * Wo, C * k * k]` -> `[N, C, H, W]`, summing the entries that map to the same pixel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Col2im(pub Geometry);

/// The contiguous slice of a storage, or an error naming the op.
fn contiguous<'a, T>(data: &'a [T], layout: &Layout, op: &str) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: the input must be contiguous"),
    }
}

impl CustomOp1 for Im2col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        if layout.shape().dims() != [g.n, g.c, g.h, g.w] {
            candle_core::bail!("im2col: input {:?}, expected {:?}", layout.shape(), [g.n, g.c, g.h, g.w]);
        }
        let shape = Shape::from((g.n * g.ho() * g.wo(), g.ckk()));
        let out = match storage {
            CpuStorage::F32(d) => CpuStorage::F32(run_im2col(&g, contiguous(d, layout, "im2col")?)),
            CpuStorage::F64(d) => CpuStorage::F64(run_im2col(&g, contiguous(d, layout, "im2col")?)),
            other => candle_core::bail!("im2col: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, shape))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Col2im(self.0))?))
    }
}

impl CustomOp1 for Col2im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        if layout.shape().dims() != [g.n * g.ho() * g.wo(), g.ckk()] {
            candle_core::bail!("col2im: input {:?} does not fit {g:?}", layout.shape());
        }
        let shape = Shape::from((g.n, g.c, g.h, g.w));
        let out = match storage {
            CpuStorage::F32(d) => CpuStorage::F32(run_col2im(&g, contiguous(d, layout, "col2im")?)),
            CpuStorage::F64(d) => CpuStorage::F64(run_col2im(&g, contiguous(d, layout, "col2im")?)),
            other => candle_core::bail!("col2im: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, shape))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Im2col(self.0))?))
    }
}

/// The element types the ops support.
pub(super) trait Elem: Copy + Default + Send + Sync + std::ops::AddAssign {}
impl Elem for f32 {}
impl Elem for f64 {}

/// Run `f(sample, input chunk, output chunk)` over the batch, split into contiguous groups of samples, one group
/// per thread (candle's thread count), each thread owning its part of the output.
fn over_batch<T: Elem>(
    n: usize,
    in_per: usize,
    out_per: usize,
    input: &[T],
    out: &mut [T],
    f: impl Fn(&[T], &mut [T]) + Sync,
) {
    let threads = candle_core::utils::get_num_threads().clamp(1, n.max(1));
    // Below ~64k elements a thread costs more than it saves.
    if threads == 1 || out.len() < 1 << 16 {
        for (x, o) in input.chunks(in_per).zip(out.chunks_mut(out_per)) {
            f(x, o);
        }
        return;
    }
    let per_thread = n.div_ceil(threads);
    std::thread::scope(|s| {
        for (xs, os) in input.chunks(in_per * per_thread).zip(out.chunks_mut(out_per * per_thread)) {
            let f = &f;
            s.spawn(move || {
                for (x, o) in xs.chunks(in_per).zip(os.chunks_mut(out_per)) {
                    f(x, o);
                }
            });
        }
    });
}

pub(super) fn run_im2col<T: Elem>(g: &Geometry, x: &[T]) -> Vec<T> {
    let mut out = vec![T::default(); g.n * g.cols_per_sample()];
    over_batch(g.n, g.image(), g.cols_per_sample(), x, &mut out, |x, o| im2col_sample(g, x, o));
    out
}

fn run_col2im<T: Elem>(g: &Geometry, cols: &[T]) -> Vec<T> {
    let mut out = vec![T::default(); g.n * g.image()];
    over_batch(g.n, g.cols_per_sample(), g.image(), cols, &mut out, |c, o| col2im_sample(g, c, o));
    out
}

/// The input columns `ow * s - p + kj` for `kj` in `0..k` that fall inside `0..w`: `(first kj, last kj + 1)`.
fn kj_range(g: &Geometry, ow: usize) -> (usize, usize) {
    let left = ow * g.stride;
    let lo = g.pad.saturating_sub(left);
    let hi = (g.w + g.pad).saturating_sub(left).min(g.k);
    (lo, hi.max(lo))
}

/// One sample: `x: [C, H, W]` -> `out: [Ho * Wo, C * k * k]` (out starts zeroed: padding stays zero).
fn im2col_sample<T: Elem>(g: &Geometry, x: &[T], out: &mut [T]) {
    let (k, ckk, wo) = (g.k, g.ckk(), g.wo());
    for (r, row) in out.chunks_mut(ckk).enumerate() {
        let (oh, ow) = (r / wo, r % wo);
        let (lo, hi) = kj_range(g, ow);
        for c in 0..g.c {
            for ki in 0..k {
                let ih = (oh * g.stride + ki) as isize - g.pad as isize;
                if ih < 0 || ih as usize >= g.h {
                    continue;
                }
                let src = (c * g.h + ih as usize) * g.w + ow * g.stride + lo - g.pad;
                let dst = (c * k + ki) * k;
                row[dst + lo..dst + hi].copy_from_slice(&x[src..src + hi - lo]);
            }
        }
    }
}

/// One sample: `cols: [Ho * Wo, C * k * k]` -> `out: [C, H, W]` (zeroed), accumulating overlapping windows.
fn col2im_sample<T: Elem>(g: &Geometry, cols: &[T], out: &mut [T]) {
    let (k, ckk, wo) = (g.k, g.ckk(), g.wo());
    for (r, row) in cols.chunks(ckk).enumerate() {
        let (oh, ow) = (r / wo, r % wo);
        let (lo, hi) = kj_range(g, ow);
        for c in 0..g.c {
            for ki in 0..k {
                let ih = (oh * g.stride + ki) as isize - g.pad as isize;
                if ih < 0 || ih as usize >= g.h {
                    continue;
                }
                let dst = (c * g.h + ih as usize) * g.w + ow * g.stride + lo - g.pad;
                let src = (c * k + ki) * k;
                for (o, v) in out[dst..dst + hi - lo].iter_mut().zip(&row[src + lo..src + hi]) {
                    *o += *v;
                }
            }
        }
    }
}
