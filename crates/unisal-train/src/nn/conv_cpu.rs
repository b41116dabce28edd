//! A CPU convolution as one candle custom op: im2col + one matrix product forward, and a backward of one
//! transposing copy of `dY`, two matrix products and a col2im.
//!
//! Composed from candle ops (im2col op, matmul, reshape, permute, copy), the same convolution leaves five nodes in
//! the autograd graph, and candle 0.11.1's backward allocates a zeroed gradient and adds into it at every edge:
//! among them one of the size of the patch matrix (`k * k` times the input). As one node, only `dx` and `dW` are
//! handed back. With `cols = im2col(x): [N * P, C * k * k]` (`P = Ho * Wo`) and `W: [O, C * k * k]`:
//! - forward: `Y = cols · W^T: [N * P, O]`, transposed per sample into `y: [N, O, P]`;
//! - backward: `dYt = dy` as `[N * P, O]` (the copy), `dW = dYt^T · cols`, `dx = col2im(dYt · W)`; `cols` is
//!   recomputed from `x` rather than kept alive between forward and backward.
//!
//! The matrix products are candle's (the gemm crate, on candle's thread count). The backward is not itself
//! differentiable.

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
        let (p, o) = (g.ho() * g.wo(), self.out);
        let cols = Tensor::from_vec(run_im2col(&g, x), (g.n * p, g.ckk()), &Device::Cpu)?;
        let wt = Tensor::from_slice(w, (o, g.ckk()), &Device::Cpu)?;
        let rows = cols.matmul(&wt.t()?)?;
        let (storage, layout) = rows.storage_and_layout();
        let rows = match &*storage {
            Storage::Cpu(s) => contiguous(s.as_slice::<T>()?, layout, "product")?,
            _ => candle_core::bail!("conv2d: product off the CPU"),
        };
        // rows[n][p][o] -> y[n][o][p].
        let mut y = vec![T::zero(); g.n * o * p];
        for (src, dst) in rows.chunks(p * o).zip(y.chunks_mut(o * p)) {
            for (pi, row) in src.chunks(o).enumerate() {
                for (oi, v) in row.iter().enumerate() {
                    dst[oi * p + pi] = *v;
                }
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
        // dy [N, O, P] -> [N, P, O] -> rows [N * P, O].
        let dyt = grad.detach().reshape((g.n, o, p))?.transpose(1, 2)?.contiguous()?.reshape((g.n * p, o))?;
        let cols = x.contiguous()?.apply_op1_no_bwd(&Im2col(g))?;
        let dw = dyt.t()?.matmul(&cols)?.reshape(w.shape())?;
        drop(cols);
        let dcols = dyt.matmul(&w.reshape((o, g.ckk()))?)?;
        let dx = dcols.apply_op1_no_bwd(&Col2im(g))?;
        Ok((Some(dx), Some(dw)))
    }
}
