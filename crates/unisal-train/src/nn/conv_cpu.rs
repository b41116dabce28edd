//! A CPU convolution as one candle custom op: im2col + one matrix product forward, and a backward of one
//! transposing copy of `dY`, two matrix products and a col2im, all threaded.
//!
//! Composed from candle ops, the same convolution leaves five nodes in the autograd graph, and candle 0.11.1's
//! backward allocates a zeroed gradient and adds into it at every edge, one of them the size of the patch matrix
//! (`k * k` times the input). As one node, only `dx` and `dW` are handed back. With
//! `cols = im2col(x): [C * k * k, N * P]` (`P = Ho * Wo`, see `im2col.rs`) and `W: [O, C * k * k]`:
//! - forward: `Y = W · cols: [O, N * P]`, copied into `y: [N, O, P]` (runs of `P`);
//! - backward: `dY = dy` as `[O, N * P]` (one copy, none when `conv_bn_cpu.rs` writes it so), `dW = dY · cols^T`,
//!   `dx = col2im(W^T · dY)`. In training (`Conv2d::forward_t`) the forward keeps `cols` for its backward
//!   ([`KeptCols`], up to [`KEEP_BYTES`] over all layers at once); otherwise, or past that, the backward
//!   recomputes it from `x`.
//!
//! The matrix products call the gemm crate directly on strided views (`gemm_cpu.rs`; `cols^T` and `W^T` are never
//! copied), one large product over the whole batch, and the patch matrix, its gradient and the products live
//! in the thread's scratch buffers. The backward is not itself differentiable.
//!
//! Where `C * k * k >= O` the weight gradient is computed as `dW^T = cols · dY^T` (`[C * k * k, O]`) and
//! transposed: the gemm crate runs those shapes 1.2-2.4x faster that way (measured on the small CNN's and
//! ResNet-18's shapes, `docs/performance.md`; the choice depends on the shape only, so results stay
//! deterministic). The same trick for the forward (`Y^T = cols^T · W^T`) measured slower in whole steps.
//!
//! Layers with at most [`PER_SAMPLE_MAX_OUT`] output channels (and a batch of at least two) take the per-sample
//! path instead (`conv_sample_cpu.rs`), in training and prediction alike: one sample's patch matrix at a time,
//! built in the thread's cache and used there, forward and backward, nothing kept between them. These layers have
//! the largest patch matrices; the whole batch's would be written out and read back (small CNN dual training
//! 14-26% faster, `docs/performance.md` session 10). An epilogue (`conv_eval_cpu.rs`: the eval batch norm, ReLU,
//! residual join) runs on each output run right after its product, on either path.
//!
//! 3x3 convolutions of stride 1 and padding 1 on planes of 36+ tiles run their forward and input gradient by
//! Winograd's transforms instead (`winograd_cpu.rs`, one sample a thread; the weight gradient stays here).
//!
//! The backward op is `conv_backward.rs`'s. On CUDA (feature `cuda`) the same two ops run cuDNN's passes instead
//! (`cudnn/conv.rs`), with the same shape checks ([`Kernel::shape`]) and the same backward.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::{Layout, Shape, Tensor};

use super::batchnorm_cpu::PlaneOrder;
use super::conv_backward::dw_offset;
use super::conv_eval_cpu::Epilogue;
use super::conv_sample_cpu::{self as sample, Dy};
use super::cpu_util::{cpu_op, dims4, for_each_item, Elem, Kernel};
use super::gemm_cpu::{give_scratch, matmul, take_scratch, transpose, with_scratch, MatRef};
use super::im2col::{run_col2im, run_im2col, Geometry};
use super::op_profile::timed_cpu as timed;
use super::winograd_cpu::{self as winograd, Filters, Planes};

/// The most output channels for which the forward runs one product per sample ([`ConvOp::forward`]).
const PER_SAMPLE_MAX_OUT: usize = 64;

/// The most bytes of patch matrices kept between forwards and their backwards at once, over all convolutions.
const KEEP_BYTES: usize = 1 << 30;

/// Bytes of patch matrices kept now.
static KEPT: AtomicUsize = AtomicUsize::new(0);

/// A forward's patch matrix, kept for its backward; one per op (shared by its clones).
#[derive(Clone, Default)]
pub(crate) struct KeptCols(Arc<Mutex<Option<Kept>>>);

/// A kept buffer (a `Vec<T>`) and its share of [`KEPT`], returned when it is dropped.
struct Kept {
    cols: Box<dyn Any + Send>,
    bytes: usize,
}

impl Drop for Kept {
    fn drop(&mut self) {
        KEPT.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for KeptCols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeptCols")
    }
}

impl KeptCols {
    /// Keeps `cols`, or hands it back when that would pass [`KEEP_BYTES`].
    fn put<T: Elem>(&self, cols: Vec<T>) -> Result<(), Vec<T>> {
        let bytes = cols.len() * std::mem::size_of::<T>();
        let Ok(mut slot) = self.0.lock() else { return Err(cols) };
        if KEPT.fetch_add(bytes, Ordering::Relaxed) + bytes > KEEP_BYTES {
            KEPT.fetch_sub(bytes, Ordering::Relaxed);
            return Err(cols);
        }
        *slot = Some(Kept { cols: Box::new(cols), bytes });
        Ok(())
    }

    /// The kept matrix, if there is one of this type and at least `len` long (a second backward recomputes).
    fn take<T: Elem>(&self, len: usize) -> Option<Vec<T>> {
        let mut kept = self.0.lock().ok()?.take()?;
        let cols = std::mem::replace(&mut kept.cols, Box::new(()));
        cols.downcast::<Vec<T>>().ok().map(|c| *c).filter(|c| c.len() >= len)
    }
}

/// `(x [N, C, H, W], w [O, C, k, k]) -> y [N, O, Ho, Wo]`; both inputs contiguous. f32/f64 on the CPU, f32 on CUDA.
#[derive(Debug, Clone)]
pub(crate) struct ConvOp {
    pub g: Geometry,
    pub out: usize,
    /// Where a training forward keeps its patch matrix for the backward (CPU only; `None`: not kept).
    pub keep: Option<KeptCols>,
    /// CUDA only (the block op's, `cudnn/block.rs`): `x`, `y` and their gradients stored channels last and `w`
    /// as `[O, k, k, C]`, under the same (logical) shapes.
    pub nhwc: bool,
}

impl ConvOp {
    /// Refuses channels-last data on the CPU, whose kernels take NCHW.
    pub(super) fn on_cpu(&self) -> candle_core::Result<()> {
        if self.nhwc {
            candle_core::bail!("conv2d: channels-last data runs on CUDA only");
        }
        Ok(())
    }

    pub(super) fn check(&self, x: &Layout, w: &Layout) -> candle_core::Result<()> {
        let g = self.g;
        if dims4(x, "conv2d")? != (g.n, g.c, g.h, g.w) || w.shape().dims() != [self.out, g.c, g.k, g.k] {
            candle_core::bail!("conv2d: input {:?} / weight {:?} do not fit {g:?}", x.shape(), w.shape());
        }
        Ok(())
    }

    /// Whether this convolution runs one sample at a time (`conv_sample_cpu.rs`): at most
    /// [`PER_SAMPLE_MAX_OUT`] outputs and a batch of at least two. Its backward then takes `dY` in either layout.
    pub(super) fn per_sample(&self) -> bool {
        self.out <= PER_SAMPLE_MAX_OUT && self.g.n >= 2
    }

    /// Whether the forward runs one sample at a time: on the per-sample path or by Winograd's transforms.
    fn sample_by_sample(&self) -> bool {
        self.per_sample() || winograd::applies(&self.g, self.out)
    }

    /// `y = W · cols`, then `epi` on each output run `y[n, o]` while it is in cache.
    pub(super) fn forward<T: Elem>(&self, x: &[T], w: &[T], epi: Option<&Epilogue<'_, T>>) -> Vec<T> {
        let g = self.g;
        let (p, o, npix, ckk) = (g.ho() * g.wo(), self.out, g.npix(), g.ckk());
        if self.sample_by_sample() {
            return self.sample_forward(x, w, epi, false).0;
        }
        let mut buf = take_scratch::<T>(ckk * npix);
        let cols = &mut buf[..ckk * npix];
        timed("conv2d: im2col", || run_im2col(&g, x, cols));
        let cols = MatRef::row_major(&*cols, ckk, npix);
        let y = with_scratch(o * npix, |prod: &mut [T]| {
            // prod[o][n][p] = W · cols -> y[n][o][p].
            timed("conv2d: product", || matmul(prod, MatRef::row_major(w, o, ckk), cols));
            let mut y = vec![T::zero(); g.n * o * p];
            timed("conv2d: layout", || {
                swap_outer(prod, &mut y, o, g.n, p, |n: usize, y_n: &mut [T]| {
                    sample::epilogue(epi, n, y_n, p)
                })
            });
            y
        });
        match &self.keep {
            Some(keep) => keep.put(buf).unwrap_or_else(give_scratch),
            None => give_scratch(buf),
        }
        y
    }

    /// [`ConvOp::forward`] without epilogue, and on the per-sample and Winograd paths each output plane's
    /// `batchnorm_cpu::plane_sums` as well (for `conv_bn_cpu.rs`), taken while the plane is in cache.
    pub(super) fn forward_with_sums<T: Elem>(&self, x: &[T], w: &[T]) -> (Vec<T>, Option<Vec<[f64; 3]>>) {
        if !self.sample_by_sample() {
            return (self.forward(x, w, None), None);
        }
        let (y, sums) = self.sample_forward(x, w, None, true);
        (y, Some(sums))
    }

    /// A forward one sample at a time, timed: by Winograd's transforms where they apply (`winograd_cpu.rs`),
    /// else the per-sample path's (`conv_sample_cpu::forward`). Either applies `epi` and, with `sums`, takes
    /// each output plane's sums on each sample's output while it is in cache.
    fn sample_forward<T: Elem>(
        &self,
        x: &[T],
        w: &[T],
        epi: Option<&Epilogue<'_, T>>,
        sums: bool,
    ) -> (Vec<T>, Vec<[f64; 3]>) {
        let (g, o) = (self.g, self.out);
        if !winograd::applies(&g, o) {
            return timed("conv2d: im2col + product", || sample::forward(&g, o, (x, w), epi, sums));
        }
        winograd::with_filters(w, (o, g.c), false, |u| {
            timed("conv2d: winograd", || self.winograd_run(x, u, epi, sums))
        })
    }

    /// Winograd's forward (`winograd_cpu.rs`) with the filters transformed: `y` and the plane sums.
    fn winograd_run<T: Elem>(
        &self,
        x: &[T],
        u: Filters<'_, T>,
        epi: Option<&Epilogue<'_, T>>,
        sums: bool,
    ) -> (Vec<T>, Vec<[f64; 3]>) {
        let (g, o) = (self.g, self.out);
        let hw = g.h * g.w;
        let mut y = vec![T::zero(); g.n * o * hw];
        let finish = sample::Finish::new(epi, hw, if sums { g.n * o } else { 0 });
        let d = winograd::Dims { cin: g.c, cout: o, h: g.h, w: g.w };
        winograd::convolve(Planes::nchw(x, g.c, hw), d, u, &mut y, |n, y_n| finish.sample(n, y_n));
        (y, finish.sums())
    }

    /// `(x, w, dy)` -> `[dx | padding | dW]` (flat, [`dw_offset`]), or only `dW` when `need_dx` is false (the
    /// image input of a network's first layer).
    pub(super) fn backward<T: Elem>(&self, x: &[T], w: &[T], dy: &[T], need_dx: bool) -> Vec<T> {
        self.backward_from((x, w), Dy::Slice(dy, PlaneOrder::SampleMajor), need_dx, 0)
    }

    /// [`ConvOp::backward`] from `dY` in a slice laid out as `[N, O, P]` (the output's) or `[O, N * P]` (as the
    /// batch path multiplies it), or, on the per-sample path only, written for each sample where it is used
    /// ([`Dy::Fill`]; panics on the batch path, a bug in the caller). `conv_bn_cpu.rs` hands over the form
    /// [`ConvOp::per_sample`] asks for, so that neither path copies it. `tail` more elements (zero) end the
    /// output, for the caller.
    pub(super) fn backward_from<T: Elem>(
        &self,
        (x, w): (&[T], &[T]),
        dy: Dy<'_, T>,
        need_dx: bool,
        tail: usize,
    ) -> Vec<T> {
        let (g, o) = (self.g, self.out);
        self.packed_grads(need_dx, tail, |dx, dw| match dy {
            _ if self.per_sample() => {
                timed("conv2d-backward: per sample", || sample::backward(&g, o, (x, w), dy, (dx, dw)))
            }
            Dy::Slice(dy, PlaneOrder::SampleMajor) => with_scratch(o * g.npix(), |dy_t: &mut [T]| {
                // dy [N, O, P] -> [O, N, P] = [O, N * P].
                timed("conv2d-backward: layout", || swap_outer(dy, dy_t, g.n, o, g.ho() * g.wo(), |_, _| {}));
                self.batch_backward(x, w, dy_t, dx, dw)
            }),
            Dy::Slice(dy_t, PlaneOrder::ChannelMajor) => self.batch_backward(x, w, dy_t, dx, dw),
            Dy::Fill(_) => panic!("conv2d backward: dY on demand on the batch path"),
        })
    }

    /// A backward's packed output `[dx | padding | dW | tail]`, `f(dx, dW)` writing the gradients (`dx` empty
    /// without `need_dx`; the tail zero).
    fn packed_grads<T: Elem>(
        &self,
        need_dx: bool,
        tail: usize,
        f: impl FnOnce(&mut [T], &mut [T]),
    ) -> Vec<T> {
        let g = self.g;
        let x_len = if need_dx { g.n * g.c * g.h * g.w } else { 0 };
        let dw_len = self.out * g.ckk();
        let mut out = vec![T::zero(); dw_offset(x_len) + dw_len + tail];
        let (dx, dw) = out.split_at_mut(dw_offset(x_len));
        f(&mut dx[..x_len], &mut dw[..dw_len]);
        out
    }

    /// The backward over the whole batch's patch matrix (kept by the forward, or built again here): `dW` and,
    /// when `dx` is not empty, `dx`, from `dY: [O, N * P]`.
    fn batch_backward<T: Elem>(&self, x: &[T], w: &[T], dy_t: &[T], dx: &mut [T], dw: &mut [T]) {
        let g = self.g;
        let (o, npix, ckk) = (self.out, g.npix(), g.ckk());
        let dy_t = MatRef::row_major(dy_t, o, npix);
        let kept = self.keep.as_ref().and_then(|k| k.take::<T>(ckk * npix));
        let mut buf = kept.unwrap_or_else(|| {
            let mut buf = take_scratch::<T>(ckk * npix);
            timed("conv2d-backward: im2col", || run_im2col(&g, x, &mut buf[..ckk * npix]));
            buf
        });
        let cols = &mut buf[..ckk * npix];
        let cols_m = MatRef::row_major(&*cols, ckk, npix);
        if ckk >= o {
            with_scratch(ckk * o, |dw_t: &mut [T]| {
                timed("conv2d-backward: product dW", || matmul(dw_t, cols_m, dy_t.t()));
                transpose(dw_t, ckk, o, dw);
            });
        } else {
            timed("conv2d-backward: product dW", || matmul(dw, dy_t, cols_m.t()));
        }
        if !dx.is_empty() && winograd::applies(&g, o) {
            // dY: [O, N * P] is sample n's plane o at o * N P + n P.
            let src = Planes { data: dy_t.data, sample: g.ho() * g.wo(), plane: npix };
            let back = winograd::Dims { cin: o, cout: g.c, h: g.h, w: g.w };
            winograd::with_filters(w, (o, g.c), true, |u| {
                timed("conv2d-backward: winograd dx", || winograd::convolve(src, back, u, dx, |_, _| {}))
            });
        } else if !dx.is_empty() {
            // The same buffer now takes dcols = W^T · dY (cols is no longer needed).
            let w_t = MatRef::row_major(w, o, ckk).t();
            timed("conv2d-backward: product dx", || matmul(cols, w_t, dy_t));
            timed("conv2d-backward: col2im", || run_col2im(&g, cols, dx));
        }
        give_scratch(buf);
    }
}

/// `[a, b, inner]` -> `dst: [b, a, inner]`, runs of `inner` copied, split over threads by output row; then
/// `then(row index, row)` on each output row while it is in cache.
fn swap_outer<T: Elem>(
    x: &[T],
    dst: &mut [T],
    a: usize,
    b: usize,
    inner: usize,
    then: impl Fn(usize, &mut [T]) + Sync,
) {
    for_each_item(&mut dst[..a * b * inner], a * inner, |bi, out| {
        for (ai, run) in out.chunks_mut(inner).enumerate() {
            run.copy_from_slice(&x[(ai * b + bi) * inner..][..inner]);
        }
        then(bi, out);
    });
}

impl Kernel for ConvOp {
    const NAME: &'static str = "conv2d";

    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        let [x, w] = inputs else { candle_core::bail!("conv2d: two inputs expected") };
        self.check(x, w)?;
        Ok(Shape::from((self.g.n, self.out, self.g.ho(), self.g.wo())))
    }

    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let [x, w] = inputs else { candle_core::bail!("conv2d: two inputs expected") };
        self.on_cpu()?;
        Ok(self.forward(x, w, None))
    }
}

cpu_op!(CustomOp2 for ConvOp {
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = self.grads(x, w, grad, x.track_op())?;
        Ok((dx, Some(dw)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ws: &candle_core::CudaStorage,
        wl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::cudnn::conv_forward(self, xs, xl, ws, wl)
    }
});
