//! A CPU convolution as one candle custom op: im2col + one matrix product forward, and a backward of one
//! transposing copy of `dY`, two matrix products and a col2im.
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

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Device, Layout, Shape, Storage, Tensor, WithDType};

use super::im2col::{run_im2col, Col2im, Elem, Geometry, Im2col};

/// `(x [N, C, H, W], w [O, C, k, k]) -> y [N, O, Ho, Wo]`; both inputs contiguous.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvCpu {
    pub g: Geometry,
    pub out: usize,
}

fn contiguous<'a, T>(data: &'a [T], layout: &Layout, what: &str) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("conv2d: {what} must be contiguous"),
    }
}

impl ConvCpu {
    fn forward<T: WithDType + Elem>(&self, x: &[T], w: &[T]) -> candle_core::Result<Vec<T>> {
        let g = self.g;
        let (p, o, npix) = (g.ho() * g.wo(), self.out, g.npix());
        let cols = Tensor::from_vec(run_im2col(&g, x), (g.ckk(), npix), &Device::Cpu)?;
        let wt = Tensor::from_slice(w, (o, g.ckk()), &Device::Cpu)?;
        let prod = wt.matmul(&cols)?;
        drop(cols);
        let (storage, layout) = prod.storage_and_layout();
        let prod = match &*storage {
            Storage::Cpu(s) => contiguous(s.as_slice::<T>()?, layout, "product")?,
            _ => candle_core::bail!("conv2d: product off the CPU"),
        };
        // prod[o][n][p] -> y[n][o][p].
        let mut y = vec![T::zero(); g.n * o * p];
        for (n, dst) in y.chunks_mut(o * p).enumerate() {
            for (oi, run) in dst.chunks_mut(p).enumerate() {
                run.copy_from_slice(&prod[oi * npix + n * p..][..p]);
            }
        }
        Ok(y)
    }
}

impl CustomOp2 for ConvCpu {
    fn name(&self) -> &'static str {
        "conv2d-im2col"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.g;
        if l1.shape().dims() != [g.n, g.c, g.h, g.w] || l2.shape().dims() != [self.out, g.c, g.k, g.k] {
            candle_core::bail!("conv2d: input {:?} / weight {:?} do not fit {g:?}", l1.shape(), l2.shape());
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(w)) => {
                CpuStorage::F32(self.forward(contiguous(x, l1, "input")?, contiguous(w, l2, "weight")?)?)
            }
            (CpuStorage::F64(x), CpuStorage::F64(w)) => {
                CpuStorage::F64(self.forward(contiguous(x, l1, "input")?, contiguous(w, l2, "weight")?)?)
            }
            _ => candle_core::bail!("conv2d: unsupported dtypes {:?}/{:?}", s1.dtype(), s2.dtype()),
        };
        Ok((out, Shape::from((g.n, self.out, g.ho(), g.wo()))))
    }

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
        let dy = grad.detach().reshape((g.n, o, p))?.transpose(0, 1)?.contiguous()?.reshape((o, g.npix()))?;
        let cols = x.contiguous()?.apply_op1_no_bwd(&Im2col(g))?;
        let dw = dy.matmul(&cols.t()?)?.reshape(w.shape())?;
        drop(cols);
        let dcols = w.reshape((o, g.ckk()))?.t()?.matmul(&dy)?;
        let dx = dcols.apply_op1_no_bwd(&Col2im(g))?;
        Ok((Some(dx), Some(dw)))
    }
}
