//! Train-mode batch normalisation on the GPU as one candle custom op: cuDNN's `BatchNormalizationForwardTraining`
//! (batch statistics, the running statistics updated in place with torch's momentum and unbiased variance) and
//! `BatchNormalizationBackward` (the batch mean and inverse standard deviation saved by the forward). Composed from
//! candle ops the same layer is a dozen passes over the activation forward and more backward.
//!
//! Eval mode is cuDNN's `BatchNormalizationForwardInference` (one pass; candle's broadcasts take two), with the
//! composed backward of `super::super::batchnorm::eval_backward`.
//!
//! The running mean and variance are buffers outside the autograd graph (`VarKind::Buffer`); cuDNN updates them
//! on the device's one stream, in order with every other use, as `Var::set` would, without the extra kernels.

use std::ffi::{c_int, c_void};
use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView};
use candle_core::{CudaStorage, DType, Layout, Shape, Storage, Tensor};

use crate::nn::elementwise::relu_mask;

use super::batchnorm_bwd::{packed_layout, BnBackwardCudnn, ParamGradsInto};
use super::batchnorm_ex::{FwdPtrs, TrainRun};
use super::handle::{
    by_elem, check, input, output, ptr, ptr_mut, scale, storage, with_handle, CudnnElem, Desc, ONE, ZERO,
};

/// cuDNN's batch norm mode in eval mode, and in train mode by default.
const MODE: c_int = super::ffi::BATCHNORM_SPATIAL;

/// The mode of train mode's forward and backward: [`MODE`], or cuDNN's `SPATIAL_PERSISTENT` (faster kernels) with
/// `UNISAL_BN_PERSISTENT=1`, and for channels-last data (`nhwc`) unless `UNISAL_BN_PERSISTENT=0`. On NCHW data
/// the persistent mode is a scaled integer reduction, which cuDNN documents may overflow to Inf or NaN for very
/// large values where `SPATIAL` stays finite (an experiment for `gpu-bench.sh`); cuDNN's note on that is for NCHW
/// only. PyTorch's recent `cudnn_batch_norm` takes the persistent mode, through the `Ex` calls, for every training
/// batch norm of 4-d input (the `-bf16-persistent` row of `gpu-bench.sh` measures it here). Where cuDNN refuses
/// the persistent mode for some data, the forward takes `SPATIAL` and says so once; the backward takes the
/// forward's mode and call (`batchnorm_ex.rs`).
pub(super) fn train_mode(nhwc: bool) -> c_int {
    static SET: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();
    let set = *SET.get_or_init(|| match std::env::var("UNISAL_BN_PERSISTENT").as_deref().map(str::trim) {
        Ok("1") => Some(true),
        Ok("0") => Some(false),
        _ => None,
    });
    if set.unwrap_or(nhwc) {
        super::ffi::BATCHNORM_SPATIAL_PERSISTENT
    } else {
        MODE
    }
}

/// `y = gamma * (x - mean) * invstd + beta` with the statistics of the batch `x: [N, C, H, W]` (f32 on CUDA),
/// updating `running_mean` / `running_var` (`[C]`, f32) with `momentum`; `max(0, y)` with `relu`.
pub(crate) fn train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running: (&Tensor, &Tensor),
    (eps, momentum): (f64, f64),
    relu: bool,
) -> crate::error::Result<Tensor> {
    apply(x, gamma, beta, BnCudnn::for_train(running, (eps, momentum), relu))
}

/// `y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta` (eval mode; f32 on CUDA); `max(0, y)` with
/// `relu`.
pub(crate) fn eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running: (&Tensor, &Tensor),
    eps: f64,
    relu: bool,
) -> crate::error::Result<Tensor> {
    let (running_mean, running_var) = (running.0.clone(), running.1.clone());
    let op = BnCudnn { eps, relu, running_mean, running_var, mode: None, nhwc: false };
    apply(x, gamma, beta, op)
}

fn apply(x: &Tensor, gamma: &Tensor, beta: &Tensor, op: BnCudnn) -> crate::error::Result<Tensor> {
    Ok(x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?)
}

/// The batch mean and `1 / sqrt(var + eps)` of one forward, for its backward, and the mode and call the forward ran
/// in (which the backward must take too).
pub(super) struct Saved {
    pub(super) mean: CudaSlice<f32>,
    pub(super) invstd: CudaSlice<f32>,
    /// Which call ran the forward (`batchnorm_ex.rs`).
    pub(super) run: TrainRun,
}

/// What train mode adds: the momentum of the running statistics and what the forward saves for the backward.
pub(super) struct Train {
    momentum: f64,
    saved: Arc<Mutex<Option<Arc<Saved>>>>,
}

/// `(x, gamma, beta) -> y`: batch norm in train mode (`mode` is `Some`) or eval mode, with a fused ReLU.
pub(super) struct BnCudnn {
    eps: f64,
    relu: bool,
    running_mean: Tensor,
    running_var: Tensor,
    mode: Option<Train>,
    /// The activations channels last under their `[N, C, H, W]` shape (the block op's, `block.rs`).
    nhwc: bool,
}

/// The op's output: `y`, or `max(0, y)` with `relu` (one more kernel, but one autograd node fewer than a separate
/// ReLU: candle's backward zero-fills and adds a gradient buffer at every edge).
fn with_relu(y: CudaStorage, shape: &Shape, relu: bool) -> candle_core::Result<(CudaStorage, Shape)> {
    if !relu {
        return Ok((y, shape.clone()));
    }
    crate::nn::cuda_kernels::map(
        crate::nn::cuda_kernels::Map::Relu,
        &[(&y, &Layout::contiguous(shape.clone()))],
        [0.0; 3],
    )
}

/// A per-channel parameter as f32 (cuDNN's batch norm takes its parameters and statistics in f32 for bf16 data
/// too): the storage itself, or an f32 copy.
pub(super) fn params_f32<'a>(
    s: &'a CudaStorage,
    l: &'a Layout,
    copy: &'a mut Option<(CudaStorage, Layout)>,
) -> candle_core::Result<(&'a CudaStorage, &'a Layout)> {
    if s.dtype() == DType::F32 {
        return Ok((s, l));
    }
    let (c, cl) = copy.insert((s.to_dtype(l, DType::F32)?, Layout::contiguous(l.shape().clone())));
    Ok((&*c, &*cl))
}

/// `[N, C, H, W]` of `x`, checked against `[C]` parameters (and, in train mode, more than one value a channel).
pub(super) fn dims(x: &Layout, params: &[&Layout], train: bool) -> candle_core::Result<[usize; 4]> {
    let [n, c, h, w] = *x.shape().dims() else {
        candle_core::bail!("batch norm: expected [N, C, H, W], got {:?}", x.shape())
    };
    if params.iter().any(|p| p.shape().dims() != [c]) || (train && n * h * w < 2) {
        candle_core::bail!("batch norm: input {:?} and parameters of {c} channels do not fit", x.shape());
    }
    Ok([n, c, h, w])
}

/// The f32 view of a running-statistics buffer (`[C]`, contiguous, on CUDA) from its locked storage.
fn running_view<'a>(
    (guard, layout): &'a (impl std::ops::Deref<Target = Storage>, &Layout),
    c: usize,
) -> candle_core::Result<CudaView<'a, f32>> {
    let Storage::Cuda(s) = &**guard else {
        candle_core::bail!("batch norm: the running statistics are not on the CUDA device")
    };
    if !layout.is_contiguous() || layout.shape().dims() != [c] {
        candle_core::bail!("batch norm: running statistics {:?} do not fit {c} channels", layout.shape());
    }
    Ok(s.as_cuda_slice::<f32>()?.slice(layout.start_offset()..layout.start_offset() + c))
}

impl BnCudnn {
    /// Train mode with the running statistics `running` (`[C]`, f32), `eps` and `momentum`, with ReLU if `relu`.
    pub(super) fn for_train(running: (&Tensor, &Tensor), (eps, momentum): (f64, f64), relu: bool) -> Self {
        let mode = Some(Train { momentum, saved: Arc::new(Mutex::new(None)) });
        let (running_mean, running_var) = (running.0.clone(), running.1.clone());
        BnCudnn { eps, relu, running_mean, running_var, mode, nhwc: false }
    }

    /// The same op on activations stored channels last (`nhwc`) under their `[N, C, H, W]` shape.
    pub(super) fn channels_last(self, nhwc: bool) -> Self {
        Self { nhwc, ..self }
    }

    /// [`candle_core::CustomOp3::cuda_fwd`] for activations of type `T` (f32 or bf16; the parameters are
    /// converted to f32 where they are not).
    pub(super) fn fwd_as<T: CudnnElem>(
        &self,
        (xs, xl): (&CudaStorage, &Layout),
        (gs, gl): (&CudaStorage, &Layout),
        (bs, bl): (&CudaStorage, &Layout),
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let dims = dims(xl, &[gl, bl], self.mode.is_some())?;
        let c = dims[1];
        let (mut g_copy, mut b_copy) = (None, None);
        let ((gs, gl), (bs, bl)) = (params_f32(gs, gl, &mut g_copy)?, params_f32(bs, bl, &mut b_copy)?);
        let what = "batch norm";
        let (x, g, b) = (input::<T>(xs, xl, what)?, input::<f32>(gs, gl, what)?, input::<f32>(bs, bl, what)?);
        let (rm_guard, rv_guard) =
            (self.running_mean.storage_and_layout(), self.running_var.storage_and_layout());
        let (rm, rv) = (running_view(&rm_guard, c)?, running_view(&rv_guard, c)?);
        let (xd, pd) = (Desc::tensor4_kept(dims, T::DATA, self.nhwc)?, Desc::channels_kept(c)?);
        let what = if self.mode.is_some() { "batch-norm-train" } else { "batch-norm-eval" };
        let y = with_handle(&xs.device, what, |a, h, stream| {
            let mut y = output::<T>(stream, xl.shape().elem_count())?;
            let saved = {
                let ((xp, _a), (gp, _b), (bp, _c)) = (ptr(&x, stream), ptr(&g, stream), ptr(&b, stream));
                // In train mode written by cuDNN in place: see the module's note on the running statistics.
                let ((rmp, _d), (rvp, _e)) = (ptr(&rm, stream), ptr(&rv, stream));
                let (yp, _f) = ptr_mut(&mut y, stream);
                let (one, zero, eps) = (scale(&ONE), scale(&ZERO), self.eps);
                let (xd, pd) = (xd.ptr, pd.ptr);
                match &self.mode {
                    Some(train) => {
                        let (mut mean, mut invstd) = (output::<f32>(stream, c)?, output::<f32>(stream, c)?);
                        let run = {
                            let ((mp, _g), (ip, _h)) =
                                (ptr_mut(&mut mean, stream), ptr_mut(&mut invstd, stream));
                            let ptrs = FwdPtrs {
                                x: xp,
                                y: yp,
                                gamma: gp,
                                beta: bp,
                                running: (rmp as *mut c_void, rvp as *mut c_void),
                                saved: (mp, ip),
                            };
                            let ours = crate::nn::cuda_bn::wanted()
                                .then(|| crate::nn::cuda_bn::Geom::new(dims))
                                .flatten();
                            if let Some(geom) = ours {
                                // Our own kernels (`nn/cuda_bn.rs`), `UNISAL_BN_KERNELS=1`.
                                let bf16 = T::DATA == super::ffi::DATA_BFLOAT16;
                                let data = crate::nn::cuda_bn::Data { bf16, nhwc: self.nhwc };
                                let stats = (eps as f32, train.momentum as f32);
                                crate::nn::cuda_bn::forward(&xs.device, (geom, data), &ptrs, stats)?;
                                TrainRun::Ours(geom)
                            } else {
                                let how = (self.nhwc, self.relu);
                                let args = (train.momentum, eps);
                                super::batchnorm_ex::train_forward(
                                    (a, h, stream),
                                    how,
                                    (xd, pd),
                                    &ptrs,
                                    args,
                                )?
                            }
                        };
                        Some(Saved { mean, invstd, run })
                    }
                    None => {
                        check(
                            unsafe {
                                (a.cudnnBatchNormalizationForwardInference)(
                                    h, MODE, one, zero, xd, xp, xd, yp, pd, gp, bp, rmp, rvp, eps,
                                )
                            },
                            "batch norm inference",
                        )?;
                        None
                    }
                }
            };
            let relu_fused = saved.as_ref().is_some_and(|s| s.run.relu_fused());
            if let (Some(train), Some(saved)) = (&self.mode, saved) {
                *lock(&train.saved)? = Some(Arc::new(saved));
            }
            Ok((storage(y, &xs.device), relu_fused))
        })?;
        // After the cuDNN call, so that the GPU profile times the ReLU once, under its own name (unless cuDNN's
        // batch norm applied it, `batchnorm_ex.rs`).
        with_relu(y.0, xl.shape(), self.relu && !y.1)
    }
}

impl candle_core::CustomOp3 for BnCudnn {
    fn name(&self) -> &'static str {
        if self.mode.is_some() {
            "batch-norm-train-cudnn"
        } else {
            "batch-norm-eval-cudnn"
        }
    }

    super::cuda_only_cpu_fwd!(CustomOp3);

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        gs: &CudaStorage,
        gl: &Layout,
        bs: &CudaStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        by_elem!(xs.dtype(), "batch norm", T => self.fwd_as::<T>((xs, xl), (gs, gl), (bs, bl)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(train) = &self.mode else {
            let c = gamma.elem_count();
            // The running statistics are f32; under mixed precision the activations are bf16.
            let column = |t: &Tensor| t.detach().to_dtype(x.dtype())?.reshape((1, c, 1, 1));
            let (mean, var) = (column(&self.running_mean)?, column(&self.running_var)?);
            return crate::nn::batchnorm::eval_backward(
                x,
                gamma,
                grad,
                (res, self.relu),
                &mean,
                &var,
                self.eps,
            );
        };
        let (dx, dgamma, dbeta) = self.train_grads(train, x, gamma, (res, grad))?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

impl BnCudnn {
    /// Train mode's `(dx, dgamma, dbeta)` for the forward's input `x`, its output `res` and the output's gradient
    /// `grad`, with the statistics the forward saved (also for `super::conv_bn`, whose `x` is its kept `z`).
    pub(super) fn train_grads(
        &self,
        train: &Train,
        x: &Tensor,
        gamma: &Tensor,
        (res, grad): (&Tensor, &Tensor),
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (dx, packed) = self.backward_op(train, x, gamma, (res, grad), None)?;
        let (g_at, b_at, _) = packed_layout(x.elem_count(), gamma.elem_count());
        let c = gamma.elem_count();
        Ok((dx, packed.narrow(0, g_at, c)?, packed.narrow(0, b_at, c)?))
    }

    /// [`BnCudnn::train_grads`]'s `dx`, with `dgamma` and `dbeta` written by cuDNN into `into` (the block op's f32
    /// packed gradient, `batchnorm_bwd.rs`'s `ParamGradsInto`).
    pub(super) fn train_grads_into(
        &self,
        train: &Train,
        x: &Tensor,
        gamma: &Tensor,
        (res, grad): (&Tensor, &Tensor),
        into: ParamGradsInto,
    ) -> candle_core::Result<Tensor> {
        Ok(self.backward_op(train, x, gamma, (res, grad), Some(into))?.0)
    }

    /// The backward op's `dx` and its whole packed output.
    fn backward_op(
        &self,
        train: &Train,
        x: &Tensor,
        gamma: &Tensor,
        (res, grad): (&Tensor, &Tensor),
        into: Option<ParamGradsInto>,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let saved = lock(&train.saved)?.clone();
        let saved =
            saved.ok_or_else(|| candle_core::Error::Msg("batch norm backward before its forward".into()))?;
        // With the ReLU in cuDNN's forward its backward takes it too, from the output `res`.
        let fused = saved.run.relu_fused();
        let y = fused.then(|| res.detach());
        let op = BnBackwardCudnn { eps: self.eps, saved, nhwc: self.nhwc, into, y };
        let grad = if self.relu && !fused { relu_mask(grad, res)? } else { grad.contiguous()? };
        let packed = x.detach().contiguous()?.apply_op3_no_bwd(&grad, &gamma.detach().contiguous()?, &op)?;
        Ok((packed.narrow(0, 0, x.elem_count())?.reshape(x.shape())?, packed))
    }

    /// The train mode of the op (`None` in eval mode).
    pub(super) fn train_mode(&self) -> Option<&Train> {
        self.mode.as_ref()
    }
}

fn lock<T>(m: &Mutex<T>) -> candle_core::Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| candle_core::Error::Msg("batch norm: poisoned".into()))
}
