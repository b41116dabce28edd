//! SGD with momentum and weight decay, with PyTorch's semantics (candle-nn's SGD has no momentum):
//! `g = grad + wd * w; buf = g` on a parameter's first step, else `buf = momentum * buf + g`; `w -= lr * buf`.
//! No dampening, no Nesterov. A parameter without a gradient in a step is skipped entirely (as torch does).
//!
//! On the CPU (f32/f64) and on CUDA in f32 (feature `cuda`; `cuda/elementwise.cu`) a parameter's update is two
//! passes in place (the momentum buffer from weight, gradient and itself; the weight from itself and the buffer),
//! without allocations; only the first step allocates the buffer. Elsewhere the arithmetic is composed from
//! candle ops. On CUDA, from a parameter's second step on, the two passes are one kernel
//! (`SgdBufferInPlace::then_apply`; `UNISAL_FUSED_SGD=0` keeps two). (Until session 6 the CUDA path made two new
//! tensors a parameter and copied the weight back: three kernels and two allocations.) And every CUDA f32
//! parameter whose gradient fits takes its step in one launch for all of them (`nn/cuda_sgd.rs`, also over strided
//! gradients; `UNISAL_SGD_MULTI=0` goes back to a kernel a parameter).

use crate::error::Result;
use crate::nn::cpu_util::{
    cpu_float, cpu_op, dispatch_in_place, for_chunks, map_chunks, same_shape, Elem, InPlaceKernel, Kernel,
};
#[cfg(feature = "cuda")]
use crate::nn::cuda_kernels::{update, Map, SgdKernel};
use crate::nn::gpu_f32;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Shape, Tensor, Var};

/// SGD with momentum over a fixed list of parameters.
#[derive(Debug)]
pub struct Sgd {
    vars: Vec<Var>,
    buffers: Vec<Option<Tensor>>,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
}

impl Sgd {
    /// An optimiser over `vars` with the given initial learning rate, momentum and weight decay.
    pub fn new(vars: Vec<Var>, lr: f64, momentum: f64, weight_decay: f64) -> Self {
        let buffers = vec![None; vars.len()];
        Self { vars, buffers, lr, momentum, weight_decay }
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Sets the learning rate of the next steps (the schedule calls this every iteration).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The parameters this optimiser updates.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// One update of every parameter that has a gradient in `grads`.
    /// An error, before anything is updated, if the block op's packed gradients were not collected into a store
    /// (`crate::nn::backward`): those parameters would otherwise be skipped without a word.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        crate::nn::packed_grads::ensure_collected()?;
        #[cfg(feature = "cuda")]
        let done = self.step_in_one_launch(grads)?;
        #[cfg(not(feature = "cuda"))]
        let done = vec![false; self.vars.len()];
        for ((var, buf), done) in self.vars.iter().zip(self.buffers.iter_mut()).zip(done) {
            let Some(grad) = grads.get(var.as_tensor()).filter(|_| !done) else { continue };
            let ours = cpu_float(var.as_tensor()) || gpu_f32(var.as_tensor());
            if ours && grad.dtype() == var.dtype() && var.as_tensor().is_contiguous() {
                let g = grad.contiguous()?;
                let (momentum, weight_decay) = (self.momentum, self.weight_decay);
                let next = match buf.take() {
                    #[cfg(feature = "cuda")]
                    Some(b) if momentum != 0.0 && var.device().is_cuda() && one_kernel_step() => {
                        // One kernel writes the buffer and the weight (one launch a parameter instead of two).
                        let op = SgdBufferInPlace { momentum, weight_decay, then_apply: Some(self.lr) };
                        b.inplace_op3(var.as_tensor(), &g, &op)?;
                        *buf = Some(b);
                        continue;
                    }
                    Some(b) if momentum != 0.0 => {
                        let op = SgdBufferInPlace { momentum, weight_decay, then_apply: None };
                        b.inplace_op3(var.as_tensor(), &g, &op)?;
                        b
                    }
                    _ => var.as_tensor().detach().apply_op2_no_bwd(&g, &SgdFirstBuffer { weight_decay })?,
                };
                var.as_tensor().inplace_op2(&next, &SgdApplyInPlace { lr: self.lr })?;
                *buf = (momentum != 0.0).then_some(next);
                continue;
            }
            let w = var.as_tensor().detach();
            let grad = grad.detach();
            let g = if self.weight_decay != 0.0 { (grad + w.affine(self.weight_decay, 0.0)?)? } else { grad };
            let next = match buf.take() {
                Some(prev) if self.momentum != 0.0 => (prev.affine(self.momentum, 0.0)? + g)?,
                _ => g,
            };
            let updated = (&w - next.affine(self.lr, 0.0)?)?;
            var.set(&updated)?;
            *buf = (self.momentum != 0.0).then_some(next);
        }
        Ok(())
    }
}

#[cfg(feature = "cuda")]
impl Sgd {
    /// The step in one launch (`nn/cuda_sgd.rs`) of every f32 parameter on the first such parameter's CUDA device
    /// whose gradient fits; which parameters it took (the rest take the per-parameter path). None with
    /// `UNISAL_SGD_MULTI=0`, `UNISAL_FUSED_SGD=0` or `UNISAL_GPU_KERNELS=0`.
    fn step_in_one_launch(&mut self, grads: &GradStore) -> Result<Vec<bool>> {
        use crate::nn::cuda_sgd::{fits, step, Part};
        let mut done = vec![false; self.vars.len()];
        if !multi_step() || !one_kernel_step() {
            return Ok(done);
        }
        let mut device: Option<candle_core::Device> = None;
        let mut taken = Vec::new();
        for (i, (var, buf)) in self.vars.iter().zip(self.buffers.iter_mut()).enumerate() {
            let Some(grad) = grads.get(var.as_tensor()) else { continue };
            let w = var.as_tensor();
            if !gpu_f32(w)
                || !fits(w, grad)
                || !w.device().same_device(device.get_or_insert(w.device().clone()))
            {
                continue;
            }
            let first = buf.is_none();
            if self.momentum != 0.0 && first {
                // Written whole by the first step (the gradient, with weight decay).
                *buf = Some(w.zeros_like()?);
            }
            taken.push((i, grad, first));
            done[i] = true;
        }
        let parts: Vec<Part<'_>> = taken
            .iter()
            .map(|&(i, g, first)| Part {
                w: self.vars[i].as_tensor(),
                buf: self.buffers[i].as_ref(),
                g,
                first,
            })
            .collect();
        step(&parts, (self.lr, self.momentum, self.weight_decay))?;
        Ok(done)
    }
}

/// Whether CUDA f32 parameters take their step in one launch (`nn/cuda_sgd.rs`; `UNISAL_SGD_MULTI=0`: one
/// kernel per parameter, for a comparison).
#[cfg(feature = "cuda")]
fn multi_step() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| crate::nn::env_not_off("UNISAL_SGD_MULTI"))
}

/// Whether a CUDA parameter's step with momentum is one kernel (`SgdBufferInPlace::then_apply`) rather than two
/// (`UNISAL_FUSED_SGD=0`, for a comparison).
#[cfg(feature = "cuda")]
fn one_kernel_step() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| crate::nn::env_not_off("UNISAL_FUSED_SGD"))
}

/// `(w, g) -> g + wd * w`: the momentum buffer on a parameter's first step (and every step without momentum).
#[derive(Debug, Clone, Copy)]
struct SgdFirstBuffer {
    weight_decay: f64,
}

impl Kernel for SgdFirstBuffer {
    const NAME: &'static str = "sgd-first-buffer";
    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        same_shape(inputs, 2, Self::NAME)
    }
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let [w, g] = inputs else { candle_core::bail!("sgd-first-buffer: two inputs expected") };
        let wd = T::of(self.weight_decay);
        Ok(map_chunks(w.len(), |r, part| {
            for (o, (&gv, &wv)) in part.iter_mut().zip(g[r.clone()].iter().zip(&w[r])) {
                *o = gv + wd * wv;
            }
        }))
    }
}

/// `buf = momentum * buf + g + wd * w`, in place on the buffer `(buf; w, g)`. With `then_apply: Some(lr)` (CUDA
/// only), the same kernel goes on to `w -= lr * buf`: it writes the weight it is given as an input (the optimiser
/// holds it, and nothing reads it meanwhile: the step's work is in stream order). The dual ResNet-50 step launched
/// 644 SGD kernels on the H200 (session 12); this way it launches 322.
#[derive(Debug, Clone, Copy)]
struct SgdBufferInPlace {
    momentum: f64,
    weight_decay: f64,
    then_apply: Option<f64>,
}

/// `w -= lr * buf`, in place on the weight `(w; buf)`.
#[derive(Debug, Clone, Copy)]
struct SgdApplyInPlace {
    lr: f64,
}

impl InPlaceKernel<2> for SgdBufferInPlace {
    const NAME: &'static str = "sgd-buffer-in-place";
    fn run<T: Elem>(&self, buf: &mut [T], [w, g]: [&[T]; 2]) {
        let (mom, wd) = (T::of(self.momentum), T::of(self.weight_decay));
        for_chunks(buf, |r, part| {
            for ((b, &gv), &wv) in part.iter_mut().zip(&g[r.clone()]).zip(&w[r]) {
                *b = mom * *b + (gv + wd * wv);
            }
        });
    }
}

impl InPlaceKernel<1> for SgdApplyInPlace {
    const NAME: &'static str = "sgd-apply-in-place";
    fn run<T: Elem>(&self, w: &mut [T], [buf]: [&[T]; 1]) {
        let lr = T::of(self.lr);
        for_chunks(w, |r, part| {
            for (wv, &bv) in part.iter_mut().zip(&buf[r]) {
                *wv -= lr * bv;
            }
        });
    }
}

impl InplaceOp3 for SgdBufferInPlace {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn cpu_fwd(
        &self,
        buf: &mut CpuStorage,
        bl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        if self.then_apply.is_some() {
            candle_core::bail!(
                "{}: the weight's update in the same pass is for CUDA devices only",
                Self::NAME
            )
        }
        dispatch_in_place(self, buf, bl, [(w, wl), (g, gl)])
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        buf: &mut candle_core::CudaStorage,
        bl: &Layout,
        w: &candle_core::CudaStorage,
        wl: &Layout,
        g: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let (kernel, lr) = match self.then_apply {
            Some(lr) => (SgdKernel::Step, lr as f32),
            None => (SgdKernel::Buffer, 0.0),
        };
        update(kernel, (buf, bl), &[(w, wl), (g, gl)], [self.momentum as f32, self.weight_decay as f32, lr])
    }
}

impl InplaceOp2 for SgdApplyInPlace {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn cpu_fwd(
        &self,
        w: &mut CpuStorage,
        wl: &Layout,
        buf: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<()> {
        dispatch_in_place(self, w, wl, [(buf, bl)])
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        w: &mut candle_core::CudaStorage,
        wl: &Layout,
        buf: &candle_core::CudaStorage,
        bl: &Layout,
    ) -> candle_core::Result<()> {
        update(SgdKernel::Apply, (w, wl), &[(buf, bl)], [self.lr as f32, 0.0, 0.0])
    }
}

cpu_op!(CustomOp2 for SgdFirstBuffer {
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        w: &candle_core::CudaStorage,
        wl: &Layout,
        g: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::nn::cuda_kernels::map(
            Map::SgdFirstBuffer,
            &[(w, wl), (g, gl)],
            [0.0, self.weight_decay as f32, 0.0],
        )
    }
});

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_update_ops_compute_torchs_arithmetic() {
        // The ops both devices run (here on the CPU): first buffer 1 + 0.1 * 4 = 1.4; then buffer
        // 0.5 * 2 + (1 + 0.1 * 4) = 2.4 in place; then the weight 4 - 0.5 * 2.4 = 2.8 in place.
        let t = |v: f64| Tensor::from_vec(vec![v], 1, &Device::Cpu).unwrap();
        let (w, g, buf) = (t(4.0), t(1.0), t(2.0));
        let d = w.apply_op2_no_bwd(&g, &SgdFirstBuffer { weight_decay: 0.1 }).unwrap();
        let op = SgdBufferInPlace { momentum: 0.5, weight_decay: 0.1, then_apply: None };
        buf.inplace_op3(&w, &g, &op).unwrap();
        w.inplace_op2(&buf, &SgdApplyInPlace { lr: 0.5 }).unwrap();
        let v = |t: &Tensor| t.to_vec1::<f64>().unwrap()[0];
        assert!((v(&d) - 1.4).abs() < 1e-12, "{}", v(&d));
        assert!((v(&buf) - 2.4).abs() < 1e-12, "{}", v(&buf));
        assert!((v(&w) - 2.8).abs() < 1e-12, "{}", v(&w));
    }

    #[test]
    fn two_steps_by_hand() {
        // w0 = 1, grad of L = 3w is 3 each step; lr 0.1, momentum 0.9, wd 0.5
        let w = Var::from_vec(vec![1.0f64], 1, &Device::Cpu).unwrap();
        let mut opt = Sgd::new(vec![w.clone()], 0.1, 0.9, 0.5);
        for _ in 0..2 {
            let loss = w.as_tensor().affine(3.0, 0.0).unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        // step 1: g = 3 + 0.5 = 3.5, buf = 3.5, w = 1 - 0.35 = 0.65
        // step 2: g = 3 + 0.325 = 3.325, buf = 3.15 + 3.325 = 6.475, w = 0.65 - 0.6475 = 0.0025
        let got = w.as_tensor().to_vec1::<f64>().unwrap()[0];
        assert!((got - 0.0025).abs() < 1e-12, "{got}");
    }

    #[test]
    fn parameters_without_gradient_are_untouched() {
        let used = Var::from_vec(vec![2.0f64], 1, &Device::Cpu).unwrap();
        let unused = Var::from_vec(vec![5.0f64], 1, &Device::Cpu).unwrap();
        let mut opt = Sgd::new(vec![used.clone(), unused.clone()], 0.5, 0.9, 0.1);
        let loss = used.as_tensor().sum_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        assert_eq!(unused.as_tensor().to_vec1::<f64>().unwrap(), vec![5.0]);
        // g = 1 + 0.2 = 1.2; w = 2 - 0.6
        assert!((used.as_tensor().to_vec1::<f64>().unwrap()[0] - 1.4).abs() < 1e-12);
    }

    #[test]
    fn threaded_update_of_a_large_parameter_follows_torch_elementwise() {
        // 40,000 elements (several threads' worth): L = sum(c * w), so grad = c; check 3 steps against a scalar loop.
        let n = 40_000;
        let w0: Vec<f32> = (0..n).map(|i| (i % 97) as f32 / 97.0 - 0.5).collect();
        let c: Vec<f32> = (0..n).map(|i| (i % 13) as f32 / 13.0 - 0.3).collect();
        let w = Var::from_vec(w0.clone(), n, &Device::Cpu).unwrap();
        let ct = Tensor::from_vec(c.clone(), n, &Device::Cpu).unwrap();
        for momentum in [0.9, 0.0] {
            w.set(&Tensor::from_vec(w0.clone(), n, &Device::Cpu).unwrap()).unwrap();
            let mut opt = Sgd::new(vec![w.clone()], 0.1, momentum, 5e-4);
            for _ in 0..3 {
                let loss = (w.as_tensor() * &ct).unwrap().sum_all().unwrap();
                opt.step(&loss.backward().unwrap()).unwrap();
            }
            let got = w.as_tensor().to_vec1::<f32>().unwrap();
            for i in (0..n).step_by(997) {
                let (mut wi, mut buf) = (f64::from(w0[i]), None::<f64>);
                for _ in 0..3 {
                    let d = f64::from(c[i]) + 5e-4 * wi;
                    let b = match buf {
                        Some(b) if momentum != 0.0 => momentum * b + d,
                        _ => d,
                    };
                    buf = Some(b);
                    wi -= 0.1 * b;
                }
                assert!(
                    (f64::from(got[i]) - wi).abs() < 1e-5,
                    "momentum {momentum} element {i}: {} vs {wi}",
                    got[i]
                );
            }
        }
    }
}
