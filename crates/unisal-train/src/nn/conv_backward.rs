//! The convolution's backward as a candle custom op without backward (`ConvBackwardOp`: the CPU kernels of
//! `conv_cpu.rs`, cuDNN's passes on CUDA in `cudnn/conv.rs`), the packed `[dx | padding | dW]` it returns, and
//! [`ConvOp::grads`], through which the convolution ops (`conv_cpu.rs`, `cudnn/conv_bn.rs`, `cudnn/block.rs`)
//! take their gradients.

use candle_core::{Layout, Shape, Tensor};

use super::conv_cpu::ConvOp;
use super::cpu_util::{cpu_op, Elem, Kernel};

/// Elements (16 f32: 64 bytes) to which the backward's packed output aligns `dW` after `dx`, so that no pass writes
/// through a pointer aligned to less than that (cuDNN's kernels may load and store in vectors).
const ALIGN: usize = 16;

/// Where `dW` starts in the backward's packed output `[dx | padding | dW]`: `dx`'s length rounded up to
/// [`ALIGN`] elements (0 without `dx`).
pub(crate) fn dw_offset(x_len: usize) -> usize {
    x_len.next_multiple_of(ALIGN)
}

/// `(dx, dW)` of a backward's packed output `[dx | padding | dW | ...]` for input `x` and weight `w` (no `dx`
/// without `need_dx`), and where `dW` ends (what the caller packed after it starts there).
pub(crate) fn unpack_grads(
    packed: &Tensor,
    x: &Tensor,
    w: &Tensor,
    need_dx: bool,
) -> candle_core::Result<(Option<Tensor>, Tensor, usize)> {
    let len = if need_dx { x.elem_count() } else { 0 };
    let dx = need_dx.then(|| packed.narrow(0, 0, len)?.reshape(x.shape())).transpose()?;
    let (start, wl) = (dw_offset(len), w.elem_count());
    let dw = packed.narrow(0, start, wl)?.reshape(w.shape())?;
    Ok((dx, dw, start + wl))
}

impl ConvOp {
    /// `(dx, dW)` of `conv(x, w)` for the output's gradient `dy`, through [`ConvBackwardOp`]; `dx` only where
    /// `need_dx` (not for the images into the first layer: `x.track_op()`). Also the CUDA ops' (`cudnn/`).
    pub(crate) fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        need_dx: bool,
    ) -> candle_core::Result<(Option<Tensor>, Tensor)> {
        let (x, w) = (x.detach().contiguous()?, w.detach().contiguous()?);
        let op = ConvBackwardOp { conv: self.clone(), need_dx };
        let packed = x.apply_op3_no_bwd(&w, &dy.contiguous()?, &op)?;
        let (dx, dw, _) = unpack_grads(&packed, &x, &w, need_dx)?;
        Ok((dx, dw))
    }
}

/// `(x, w, dy) -> [dx | padding | dW]` (flat, `dW` at [`dw_offset`]; only `dW` without `need_dx`), without
/// backward.
#[derive(Debug, Clone)]
pub(crate) struct ConvBackwardOp {
    pub conv: ConvOp,
    pub need_dx: bool,
}

impl Kernel for ConvBackwardOp {
    const NAME: &'static str = "conv2d-backward";

    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        let [x, w, dy] = inputs else { candle_core::bail!("conv2d backward: three inputs expected") };
        self.conv.check(x, w)?;
        let (g, o) = (self.conv.g, self.conv.out);
        if dy.shape().dims() != [g.n, o, g.ho(), g.wo()] {
            candle_core::bail!("conv2d backward: gradient {:?} does not fit {g:?}", dy.shape());
        }
        let x_len = if self.need_dx { x.shape().elem_count() } else { 0 };
        Ok(Shape::from(dw_offset(x_len) + w.shape().elem_count()))
    }

    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let [x, w, dy] = inputs else { candle_core::bail!("conv2d backward: three inputs expected") };
        self.conv.on_cpu()?;
        Ok(self.conv.backward(x, w, dy, self.need_dx))
    }
}

cpu_op!(CustomOp3 for ConvBackwardOp {
    #[cfg(feature = "cuda")]
    #[allow(clippy::too_many_arguments)]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ws: &candle_core::CudaStorage,
        wl: &Layout,
        dys: &candle_core::CudaStorage,
        dyl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::cudnn::conv_backward(self, (xs, xl), (ws, wl), (dys, dyl))
    }
});
