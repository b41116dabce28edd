//! Max pooling on the CPU as one threaded op with its backward, in torch's semantics: windows of `k x k` at
//! `stride`, `pad` cells on each side that never win, output `floor((H + 2p - k) / s) + 1`, the gradient to the
//! first maximum of each window in row-major order (a NaN wins, as in torch).
//!
//! The composed version (`pool.rs`) pads, slices and takes element-wise maxima: about thirty nodes in the autograd
//! graph over the largest activation of a ResNet. Here the forward takes each output row's maxima over its window
//! rows across the whole image row (contiguous, so the compiler vectorises it), then over each window's columns;
//! the backward finds each window's winner, its first element equal to the forward's output, and adds the output
//! gradient to it. On CUDA (feature `cuda`) the same two ops run cuDNN's pooling passes (`cudnn/pool.rs`), with
//! the same shape checks.

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
    /// CUDA only (the block op's stem, `cudnn/block_layer.rs`): the data channels last under the same (logical)
    /// shapes.
    pub nhwc: bool,
}

impl MaxPool {
    /// The output's length along a side of `size` cells.
    pub(crate) fn out(&self, size: usize) -> usize {
        (size + 2 * self.pad - self.k) / self.stride + 1
    }

    /// The input cells `lo..hi` of output index `o` along a side of `size` cells.
    fn window(&self, o: usize, size: usize) -> Span {
        let start = o * self.stride;
        let lo = start.saturating_sub(self.pad);
        let hi = (start + self.k).saturating_sub(self.pad).min(size);
        (lo, hi)
    }

    /// Index in the plane of the window's first element equal to `m` (a NaN to a NaN): the window's first maximum
    /// when `m` is its maximum (the forward's output).
    fn winner<T: Elem>(&self, plane: &[T], (r0, r1): Span, (c0, c1): Span, m: T) -> usize {
        for r in r0..r1 {
            let row = r * self.w;
            let hit = plane[row + c0..row + c1].iter().position(|&v| v == m || (v.nan() && m.nan()));
            if let Some(c) = hit {
                return row + c0 + c;
            }
        }
        unreachable!("max pool backward: the output is not in its window (output and input do not match)")
    }

    /// Every output's window: rows per output row, columns per output column.
    fn windows(&self) -> (Vec<Span>, Vec<Span>) {
        let rows = (0..self.out(self.h)).map(|o| self.window(o, self.h)).collect();
        let cols = (0..self.out(self.w)).map(|o| self.window(o, self.w)).collect();
        (rows, cols)
    }
}

/// The larger of `a` and `v`, a NaN in either winning (`a` on a tie).
#[inline]
fn nan_max<T: Elem>(a: T, v: T) -> T {
    if v > a || v.nan() {
        v
    } else {
        a
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
        if self.nhwc {
            candle_core::bail!("max pool: channels-last data runs on CUDA only");
        }
        let (hw, ho, wo) = (self.h * self.w, self.out(self.h), self.out(self.w));
        let (rows, cols) = self.windows();
        let mut y = vec![T::default(); x.len() / hw * ho * wo];
        for_each_item(&mut y, ho * wo, |p, out| {
            let plane = &x[p * hw..][..hw];
            let mut row_max = vec![T::default(); self.w];
            for (out_row, &(r0, r1)) in out.chunks_mut(wo).zip(&rows) {
                row_max.copy_from_slice(&plane[r0 * self.w..][..self.w]);
                for r in r0 + 1..r1 {
                    for (m, &v) in row_max.iter_mut().zip(&plane[r * self.w..][..self.w]) {
                        *m = nan_max(*m, v);
                    }
                }
                for (o, &(c0, c1)) in out_row.iter_mut().zip(&cols) {
                    *o = row_max[c0 + 1..c1].iter().fold(row_max[c0], |m, &v| nan_max(m, v));
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

/// `(x, y, dy) -> dx`: each output gradient added to its window's winner, the first element equal to `y` (the
/// forward's output).
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
        let [x, y, dy] = inputs else { candle_core::bail!("max pool backward: three inputs expected") };
        let op = &self.0;
        if op.nhwc {
            candle_core::bail!("max pool backward: channels-last data runs on CUDA only");
        }
        let (hw, ho, wo) = (op.h * op.w, op.out(op.h), op.out(op.w));
        let (rows, cols) = op.windows();
        let mut dx = vec![T::default(); x.len()];
        for_each_item(&mut dx, hw, |p, grad| {
            let plane = &x[p * hw..][..hw];
            let (d, m) = (&dy[p * ho * wo..][..ho * wo], &y[p * ho * wo..][..ho * wo]);
            for ((d_row, m_row), &rw) in d.chunks(wo).zip(m.chunks(wo)).zip(&rows) {
                for ((&g, &m), &cw) in d_row.iter().zip(m_row).zip(&cols) {
                    grad[op.winner(plane, rw, cw, m)] += g;
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
