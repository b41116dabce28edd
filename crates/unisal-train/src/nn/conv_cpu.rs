//! A CPU convolution as one candle custom op: im2col + one matrix product forward, and a backward of one
//! transposing copy of `dY` (threaded), two matrix products and a col2im.
//!
//! Composed from candle ops (im2col op, matmul, reshape, permute, copy), the same convolution leaves five nodes in
//! the autograd graph, and candle 0.11.1's backward allocates a zeroed gradient and adds into it at every edge:
//! among them one of the size of the patch matrix (`k * k` times the input). As one node, only `dx` and `dW` are
//! handed back. With `cols = im2col(x): [C * k * k, N * P]` (`P = Ho * Wo`, see `im2col.rs`) and
//! `W: [O, C * k * k]`:
//! - forward: `Y = W · cols: [O, N * P]`, copied into `y: [N, O, P]` (runs of `P`);
//! - backward: `dY = dy` as `[O, N * P]` (one copy), `dW = dY · cols^T`, `dx = col2im(W^T · dY)`; `cols` is
//!   recomputed from `x` rather than kept alive between forward and backward.
//!
//! The matrix products are candle's (the gemm crate, on candle's thread count), each one large product over the
//! whole batch. The backward is not itself differentiable.

use candle_core::{Device, Layout, Shape, Storage, Tensor};

use super::cpu_util::{cpu_op, for_each_item, slice, Elem, Kernel};
use super::im2col::{run_im2col, Col2im, Geometry, Im2col};

/// `(x [N, C, H, W], w [O, C, k, k]) -> y [N, O, Ho, Wo]`; both inputs contiguous.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvCpu {
    pub g: Geometry,
    pub out: usize,
}

impl Kernel for ConvCpu {
    const NAME: &'static str = "conv2d-im2col";

    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        let g = self.g;
        match inputs {
            [x, w]
                if x.shape().dims() == [g.n, g.c, g.h, g.w]
                    && w.shape().dims() == [self.out, g.c, g.k, g.k] =>
            {
                Ok(Shape::from((g.n, self.out, g.ho(), g.wo())))
            }
            [x, w] => {
                candle_core::bail!("conv2d: input {:?} / weight {:?} do not fit {g:?}", x.shape(), w.shape())
            }
            _ => candle_core::bail!("conv2d: two inputs expected"),
        }
    }

    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let (g, x, w) = (self.g, inputs[0], inputs[1]);
        let (p, o, npix) = (g.ho() * g.wo(), self.out, g.npix());
        let cols = Tensor::from_vec(run_im2col(&g, x), (g.ckk(), npix), &Device::Cpu)?;
        let wt = Tensor::from_slice(w, (o, g.ckk()), &Device::Cpu)?;
        let prod = wt.matmul(&cols)?;
        drop(cols);
        let (storage, layout) = prod.storage_and_layout();
        let prod = match &*storage {
            Storage::Cpu(s) => slice(s.as_slice::<T>()?, layout, "conv2d product")?,
            _ => candle_core::bail!("conv2d: product off the CPU"),
        };
        // prod[o][n][p] -> y[n][o][p].
        Ok(swap_outer(prod, o, g.n, p))
    }
}

cpu_op!(CustomOp2 for ConvCpu {
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.g;
        let (p, o) = (g.ho() * g.wo(), self.out);
        let (x, w) = (x.detach(), w.detach());
        // dy [N, O, P] -> [O, N, P] = [O, N * P].
        let dy = grad
            .contiguous()?
            .apply_op1_no_bwd(&SwapOuter { a: g.n, b: o, inner: p })?
            .reshape((o, g.npix()))?;
        let cols = x.contiguous()?.apply_op1_no_bwd(&Im2col(g))?;
        let dw = dy.matmul(&cols.t()?)?.reshape(w.shape())?;
        drop(cols);
        let dcols = w.reshape((o, g.ckk()))?.t()?.matmul(&dy)?;
        let dx = dcols.apply_op1_no_bwd(&Col2im(g))?;
        Ok((Some(dx), Some(dw)))
    }
});

/// `[a, b, inner] -> [b, a, inner]` (contiguous), runs of `inner` copied, split over threads by output row.
fn swap_outer<T: Elem>(x: &[T], a: usize, b: usize, inner: usize) -> Vec<T> {
    let mut y = vec![T::default(); a * b * inner];
    for_each_item(&mut y, a * inner, |bi, dst| {
        for (ai, run) in dst.chunks_mut(inner).enumerate() {
            run.copy_from_slice(&x[(ai * b + bi) * inner..][..inner]);
        }
    });
    y
}

/// [`swap_outer`] as an op without backward: `[a, b, inner] -> [b, a, inner]`.
#[derive(Debug, Clone, Copy)]
struct SwapOuter {
    a: usize,
    b: usize,
    inner: usize,
}

impl Kernel for SwapOuter {
    const NAME: &'static str = "swap-outer";
    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        let (a, b, inner) = (self.a, self.b, self.inner);
        match inputs {
            [x] if x.shape().elem_count() == a * b * inner => Ok(Shape::from((b, a, inner))),
            _ => candle_core::bail!("swap-outer: input is not {a}x{b}x{inner}"),
        }
    }
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        Ok(swap_outer(inputs[0], self.a, self.b, self.inner))
    }
}

cpu_op!(CustomOp1 for SwapOuter {});
