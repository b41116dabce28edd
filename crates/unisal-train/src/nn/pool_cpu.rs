//! Max pooling on the CPU as one threaded op with its backward, in torch's semantics: windows of `k x k` at
//! `stride`, `pad` cells on each side that never win, output `floor((H + 2p - k) / s) + 1`, the gradient to the
//! first maximum of each window in row-major order (a NaN wins, as in torch).
//!
//! The composed version (`pool.rs`) pads, slices and takes element-wise maxima: about thirty nodes in the autograd
//! graph over the largest activation of a ResNet. Here the forward is one pass over each window and the backward
//! recomputes each window's winner from the input and adds the output gradient to it. On CUDA (feature `cuda`) the
//! same two ops run cuDNN's pooling passes (`cudnn/pool.rs`), with the same shape checks; cuDNN's backward also
//! reads the forward's output, which the CPU backward does not need.

use candle_core::{Layout, Shape, Tensor};

use super::cpu_util::{cpu_op, dims4, for_each_item, Elem, Kernel};

/// The input cells `lo..hi` of one window along one side.
type Span = (usize, usize);

/// `x [N, C, H, W] -> [N, C, Ho, Wo]`; f32/f64 on the CPU, f32 on CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MaxPool {
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl MaxPool {
    fn out(&self, size: usize) -> usize {
        (size + 2 * self.pad - self.k) / self.stride + 1
    }

    /// The input cells `lo..hi` of output index `o` along a side of `size` cells.
    fn window(&self, o: usize, size: usize) -> Span {
        let start = o * self.stride;
        let lo = start.saturating_sub(self.pad);
        let hi = (start + self.k).saturating_sub(self.pad).min(size);
        (lo, hi)
    }

    /// Index in the plane of the window's first maximum (the first NaN, if any).
    fn winner<T: Elem>(&self, plane: &[T], (r0, r1): Span, (c0, c1): Span) -> usize {
        let mut at = r0 * self.w + c0;
        let mut best = plane[at];
        if best.nan() {
            return at;
        }
        for r in r0..r1 {
            let row = r * self.w;
            for (c, &v) in plane[row + c0..row + c1].iter().enumerate() {
                if v > best || v.nan() {
                    (best, at) = (v, row + c0 + c);
                    if v.nan() {
                        return at;
                    }
                }
            }
        }
        at
    }

    /// Every output's window: rows per output row, columns per output column.
    fn windows(&self) -> (Vec<Span>, Vec<Span>) {
        let rows = (0..self.out(self.h)).map(|o| self.window(o, self.h)).collect();
        let cols = (0..self.out(self.w)).map(|o| self.window(o, self.w)).collect();
        (rows, cols)
    }
}

impl Kernel for MaxPool {
    const NAME: &'static str = "max-pool";
    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        match inputs {
            [x] => match dims4(x, Self::NAME)? {
                (n, c, h, w) if h == self.h && w == self.w => {
                    Ok(Shape::from((n, c, self.out(h), self.out(w))))
                }
                _ => candle_core::bail!("max pool: input {:?} does not fit {self:?}", x.shape()),
            },
            _ => candle_core::bail!("max pool: one input expected"),
        }
    }
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let x = inputs[0];
        let (hw, ho, wo) = (self.h * self.w, self.out(self.h), self.out(self.w));
        let (rows, cols) = self.windows();
        let mut y = vec![T::default(); x.len() / hw * ho * wo];
        for_each_item(&mut y, ho * wo, |p, out| {
            let plane = &x[p * hw..][..hw];
            for (out_row, &rw) in out.chunks_mut(wo).zip(&rows) {
                for (o, &cw) in out_row.iter_mut().zip(&cols) {
                    *o = plane[self.winner(plane, rw, cw)];
                }
            }
        });
        Ok(y)
    }
}

cpu_op!(CustomOp1 for MaxPool {
    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (x, y) = (x.detach().contiguous()?, res.detach().contiguous()?);
        Ok(Some(x.apply_op3_no_bwd(&y, &grad.contiguous()?, &MaxPoolBackward(*self))?))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::cudnn::pool_forward(self, xs, xl)
    }
});

/// `(x, y, dy) -> dx`: each output gradient added to its window's winner (`y`, the forward's output, is read only
/// by cuDNN's backward).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaxPoolBackward(pub MaxPool);

impl Kernel for MaxPoolBackward {
    const NAME: &'static str = "max-pool-backward";
    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        let [x, y, dy] = inputs else { candle_core::bail!("max pool backward: three inputs expected") };
        let out = self.0.shape(&[x])?;
        if y.shape() != &out || dy.shape() != &out {
            candle_core::bail!(
                "max pool backward: output {:?} / gradient {:?} do not fit input {:?}",
                y.shape(),
                dy.shape(),
                x.shape()
            );
        }
        Ok(x.shape().clone())
    }
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let [x, _y, dy] = inputs else { candle_core::bail!("max pool backward: three inputs expected") };
        let op = &self.0;
        let (hw, ho, wo) = (op.h * op.w, op.out(op.h), op.out(op.w));
        let (rows, cols) = op.windows();
        let mut dx = vec![T::default(); x.len()];
        for_each_item(&mut dx, hw, |p, grad| {
            let plane = &x[p * hw..][..hw];
            let d = &dy[p * ho * wo..][..ho * wo];
            for (d_row, &rw) in d.chunks(wo).zip(&rows) {
                for (&g, &cw) in d_row.iter().zip(&cols) {
                    grad[op.winner(plane, rw, cw)] += g;
                }
            }
        });
        Ok(dx)
    }
}

cpu_op!(CustomOp3 for MaxPoolBackward {
    #[cfg(feature = "cuda")]
    #[allow(clippy::too_many_arguments)]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ys: &candle_core::CudaStorage,
        yl: &Layout,
        dys: &candle_core::CudaStorage,
        dyl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::cudnn::pool_backward(self, (xs, xl), (ys, yl), (dys, dyl))
    }
});
