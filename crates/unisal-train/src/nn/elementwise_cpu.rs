//! The residual join of a ResNet block, `relu(a + b)`, as one threaded CPU op, and the ReLU gradient mask.
//!
//! From candle ops the join is two nodes (add, relu) and four passes forward and backward, each on one thread,
//! plus candle's ReLU backward of several element-wise ops. As one op: one pass forward; one masking pass
//! backward (`dy` where the output is positive, torch's ReLU gradient), handed to both inputs.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use super::cpu_util::{dispatch, for_each_item, Elem, Kernel};

/// Elements per work item of an element-wise pass.
const CHUNK: usize = 1 << 14;

fn check_same(l1: &Layout, l2: &Layout, op: &str) -> candle_core::Result<()> {
    if l1.shape() != l2.shape() {
        candle_core::bail!("{op}: shapes {:?} and {:?} differ", l1.shape(), l2.shape());
    }
    Ok(())
}

/// `(a, b) -> max(a + b, 0)`, same shapes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AddRelu;

impl Kernel for AddRelu {
    const NAME: &'static str = "add-relu";
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let [a, b] = inputs else { candle_core::bail!("add-relu: two inputs expected") };
        let mut y = vec![T::default(); a.len()];
        for_each_item(&mut y, CHUNK.min(a.len().max(1)), |i, out| {
            let start = i * CHUNK;
            for ((o, x), z) in out.iter_mut().zip(&a[start..]).zip(&b[start..]) {
                let s = *x + *z;
                *o = if s < T::zero() { T::zero() } else { s };
            }
        });
        Ok(y)
    }
}

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        check_same(l1, l2, Self::NAME)?;
        Ok((dispatch(self, &[(s1, l1), (s2, l2)])?, l1.shape().clone()))
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
}

/// `dy` where `out > 0`, else 0: the gradient through a ReLU whose output was `out`.
pub(crate) fn relu_mask(grad: &Tensor, out: &Tensor) -> candle_core::Result<Tensor> {
    grad.contiguous()?.apply_op2_no_bwd(&out.contiguous()?, &ReluMask)
}

/// `(dy, out) -> dy * [out > 0]`, without backward.
#[derive(Debug, Clone, Copy)]
struct ReluMask;

impl Kernel for ReluMask {
    const NAME: &'static str = "relu-mask";
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let [dy, out] = inputs else { candle_core::bail!("relu-mask: two inputs expected") };
        let mut g = vec![T::default(); dy.len()];
        for_each_item(&mut g, CHUNK.min(dy.len().max(1)), |i, dst| {
            let start = i * CHUNK;
            for ((o, d), y) in dst.iter_mut().zip(&dy[start..]).zip(&out[start..]) {
                *o = if *y > T::zero() { *d } else { T::zero() };
            }
        });
        Ok(g)
    }
}

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        check_same(l1, l2, Self::NAME)?;
        Ok((dispatch(self, &[(s1, l1), (s2, l2)])?, l1.shape().clone()))
    }
}
