//! The residual join of a ResNet block, `relu(a + b)`, as one threaded CPU op, and the ReLU gradient mask.
//!
//! From candle ops the join is two nodes (add, relu) and four passes forward and backward, each on one thread,
//! plus candle's ReLU backward of several element-wise ops. As one op: one pass forward; one masking pass
//! backward (`dy` where the output is positive, torch's ReLU gradient), handed to both inputs.

use candle_core::{Layout, Shape, Tensor};

use super::cpu_util::{cpu_op, map_chunks, same_shape, Elem, Kernel};

/// `out[i] = f(a[i], b[i])`, threaded.
fn zip_map<T: Elem>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    map_chunks(a.len(), |r, part| {
        for ((o, x), y) in part.iter_mut().zip(&a[r.clone()]).zip(&b[r]) {
            *o = f(*x, *y);
        }
    })
}

/// `(a, b) -> max(a + b, 0)`, same shapes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AddRelu;

impl Kernel for AddRelu {
    const NAME: &'static str = "add-relu";
    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        same_shape(inputs, 2, Self::NAME)
    }
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let [a, b] = inputs else { candle_core::bail!("add-relu: two inputs expected") };
        Ok(zip_map(a, b, |x, y| {
            let s = x + y;
            if s < T::zero() {
                T::zero()
            } else {
                s
            }
        }))
    }
}

cpu_op!(CustomOp2 for AddRelu {
    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = relu_mask(grad, res)?;
        Ok((Some(g.clone()), Some(g)))
    }
});

/// `dy` where `out > 0`, else 0: the gradient through a ReLU whose output was `out`.
pub(crate) fn relu_mask(grad: &Tensor, out: &Tensor) -> candle_core::Result<Tensor> {
    grad.contiguous()?.apply_op2_no_bwd(&out.contiguous()?, &ReluMask)
}

/// `(dy, out) -> dy * [out > 0]`, without backward.
#[derive(Debug, Clone, Copy)]
struct ReluMask;

impl Kernel for ReluMask {
    const NAME: &'static str = "relu-mask";
    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        same_shape(inputs, 2, Self::NAME)
    }
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let [dy, out] = inputs else { candle_core::bail!("relu-mask: two inputs expected") };
        Ok(zip_map(dy, out, |d, y| if y > T::zero() { d } else { T::zero() }))
    }
}

cpu_op!(CustomOp2 for ReluMask {});
