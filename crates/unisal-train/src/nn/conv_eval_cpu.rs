//! An eval-mode convolution with its batch norm and what follows it (ReLU, or the residual join) as one CPU op:
//! the batch norm's per-channel affine map and the ReLU are applied to each output run `y[n, o]` right after its
//! product, while it is in cache (`ConvOp::forward`), instead of two more passes over the activation and two more
//! tensors. The weights are not folded (that would rewrite every weight at every call); the map is
//! `y = act(conv(x) * scale + shift [+ residual])`, `(scale, shift)` from [`super::BatchNorm2d::eval_affine_host`]
//! with the convolution's bias folded into `shift`. Only for prediction (under `NoGrad`): it has no backward.

use candle_core::{Layout, Shape};

use super::conv_cpu::ConvOp;
use super::cpu_util::{cpu_op, Elem, Kernel};

/// What the eval convolution applies to each output run, in the element type of the run.
pub(crate) struct Epilogue<'a, T> {
    out: usize,
    scale: Vec<T>,
    shift: Vec<T>,
    relu: bool,
    /// `[N, O, Ho, Wo]`, added before the ReLU.
    residual: Option<&'a [T]>,
}

impl<T: Elem> Epilogue<'_, T> {
    /// `run = act(run * scale[o] + shift[o] [+ residual[n, o]])` for the output run of sample `n`, channel `o`.
    pub(super) fn apply(&self, n: usize, o: usize, run: &mut [T]) {
        let (s, t, zero) = (self.scale[o], self.shift[o], T::zero());
        let relu = |v: T| if self.relu && v < zero { zero } else { v };
        match self.residual {
            Some(r) => {
                let r = &r[(n * self.out + o) * run.len()..][..run.len()];
                for (v, &r) in run.iter_mut().zip(r) {
                    *v = relu(*v * s + t + r);
                }
            }
            None => {
                for v in run.iter_mut() {
                    *v = relu(*v * s + t);
                }
            }
        }
    }
}

/// `(x, w [, residual]) -> act(conv(x, w) * scale + shift [+ residual])`, no backward.
#[derive(Debug, Clone)]
pub(crate) struct ConvEvalOp {
    pub conv: ConvOp,
    /// Per output channel.
    pub scale: Vec<f64>,
    /// Per output channel.
    pub shift: Vec<f64>,
    pub relu: bool,
}

impl Kernel for ConvEvalOp {
    const NAME: &'static str = "conv2d-bn-eval";

    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        let (x, w, residual) = match inputs {
            [x, w] => (x, w, None),
            [x, w, r] => (x, w, Some(r)),
            _ => candle_core::bail!("conv2d-bn-eval: two or three inputs expected"),
        };
        let shape = self.conv.shape(&[*x, *w])?;
        if self.scale.len() != self.conv.out || self.shift.len() != self.conv.out {
            candle_core::bail!(
                "conv2d-bn-eval: {} / {} batch-norm channels for {} outputs",
                self.scale.len(),
                self.shift.len(),
                self.conv.out
            );
        }
        if let Some(r) = residual {
            if r.shape() != &shape {
                candle_core::bail!("conv2d-bn-eval: residual {:?} for an output {shape:?}", r.shape());
            }
        }
        Ok(shape)
    }

    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let (x, w, residual) = match *inputs {
            [x, w] => (x, w, None),
            [x, w, r] => (x, w, Some(r)),
            _ => candle_core::bail!("conv2d-bn-eval: two or three inputs expected"),
        };
        let to_t = |v: &[f64]| v.iter().map(|&v| T::of(v)).collect();
        let epi = Epilogue {
            out: self.conv.out,
            scale: to_t(&self.scale),
            shift: to_t(&self.shift),
            relu: self.relu,
            residual,
        };
        Ok(self.conv.forward(x, w, Some(&epi)))
    }
}

cpu_op!(CustomOp2 for ConvEvalOp {});
cpu_op!(CustomOp3 for ConvEvalOp {});
