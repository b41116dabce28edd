//! The residual join of a ResNet block, `relu(a + b)`, ReLU, and the ReLU gradient mask, each one op: threaded
//! Rust on the CPU, one kernel of `cuda/elementwise.cu` on CUDA in f32 (feature `cuda`, `cuda_kernels.rs`).
//!
//! From candle ops the join is two nodes (add, relu) and four passes forward and backward (on the CPU each on one
//! thread), plus candle's ReLU backward of several element-wise ops. As one op: one pass forward; one masking
//! pass backward (`dy` where the output is positive, torch's ReLU gradient), handed to both inputs. ReLU as an op
//! is used on the GPU only, where candle's ReLU backward costs four kernels and a zero-filled buffer.

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
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        a: &candle_core::CudaStorage,
        al: &Layout,
        b: &candle_core::CudaStorage,
        bl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::cuda_kernels::map(super::cuda_kernels::Map::AddRelu, &[(a, al), (b, bl)], [0.0; 3])
    }

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

cpu_op!(CustomOp2 for ReluMask {
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        dy: &candle_core::CudaStorage,
        dyl: &Layout,
        y: &candle_core::CudaStorage,
        yl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::cuda_kernels::map(super::cuda_kernels::Map::ReluMask, &[(dy, dyl), (y, yl)], [0.0; 3])
    }
});

/// `x -> max(x, 0)` with the masking backward.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Relu;

impl Kernel for Relu {
    const NAME: &'static str = "relu";
    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        same_shape(inputs, 1, Self::NAME)
    }
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let [x] = inputs else { candle_core::bail!("relu: one input expected") };
        Ok(zip_map(x, x, |v, _| if v < T::zero() { T::zero() } else { v }))
    }
}

cpu_op!(CustomOp1 for Relu {
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::cuda_kernels::map(super::cuda_kernels::Map::Relu, &[(x, xl)], [0.0; 3])
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(relu_mask(grad, res)?))
    }
});
