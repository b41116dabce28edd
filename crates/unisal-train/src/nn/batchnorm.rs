//! BatchNorm2d with torch semantics in train and eval mode.
//!
//! Train mode normalises with the statistics of the whole batch over (N, H, W) using the biased variance, and then
//! updates the running statistics with momentum 0.1: `running = (1 - m) * running + m * batch`, the running
//! variance from the unbiased batch variance. Eval mode normalises with the running statistics.
//!
//! On the CPU (f32/f64) train mode runs as one custom op with a closed-form backward and eval mode as one pass
//! (`batchnorm_cpu.rs`). On a CUDA device (f32, feature `cuda`, cuDNN installed), both modes are cuDNN ops
//! (`cudnn/batchnorm.rs`). Other cases compose candle ops. [`BnImpl`] forces one path (tests compare them).

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor, Var};

use super::batchnorm_cpu::{BnEval, BnStats, BnTrain};
use super::cpu_util::cpu_float;

use super::{param, param_as, push_var, HasVars, Init, NamedVar, VarKind};
use crate::error::{Result, TrainError};

/// Which implementation batch norm uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BnImpl {
    /// The custom ops (train and eval mode) on the CPU in f32/f64, the cuDNN ops on CUDA in f32 (feature `cuda`,
    /// cuDNN installed), candle ops elsewhere.
    #[default]
    Auto,
    /// Composed candle ops on every device.
    Candle,
}

/// Batch normalisation over the channel dimension of `[N, C, H, W]`.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Var,
    bias: Var,
    running_mean: Var,
    running_var: Var,
    momentum: f64,
    eps: f64,
}

impl BatchNorm2d {
    /// torch's defaults: weight 1, bias 0, running mean 0, running var 1, momentum 0.1, eps 1e-5.
    pub fn new(init: &Init, channels: usize) -> Result<Self> {
        Ok(Self {
            weight: init.constant(&[channels], 1.0)?,
            bias: init.constant(&[channels], 0.0)?,
            running_mean: init.constant(&[channels], 0.0)?,
            running_var: init.constant(&[channels], 1.0)?,
            momentum: 0.1,
            eps: 1e-5,
        })
    }

    /// From existing variables, with torch's momentum 0.1 and eps 1e-5.
    pub fn from_vars(weight: Var, bias: Var, running_mean: Var, running_var: Var) -> Self {
        Self { weight, bias, running_mean, running_var, momentum: 0.1, eps: 1e-5 }
    }

    /// The scale (gamma).
    pub fn weight(&self) -> &Var {
        &self.weight
    }

    /// The shift (beta).
    pub fn bias(&self) -> &Var {
        &self.bias
    }

    /// The running mean buffer.
    pub fn running_mean(&self) -> &Var {
        &self.running_mean
    }

    /// The running variance buffer.
    pub fn running_var(&self) -> &Var {
        &self.running_var
    }

    /// Normalise `x: [N, C, H, W]`. In train mode this also updates the running statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_with(x, train, BnImpl::Auto)
    }

    /// `relu(forward(x))`; one fused op on the CPU and with the cuDNN layers.
    pub fn forward_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_relu_with(x, train, BnImpl::Auto)
    }

    /// [`BatchNorm2d::forward_relu`] with a chosen implementation.
    pub fn forward_relu_with(&self, x: &Tensor, train: bool, imp: BnImpl) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if imp == BnImpl::Auto && super::cudnn_usable(x) {
            return self.cudnn(x, train, true);
        }
        if imp == BnImpl::Auto && cpu_float(x) {
            return self.cpu(x, train, true);
        }
        Ok(self.forward_with(x, train, imp)?.relu()?)
    }

    /// Eval mode as a per-channel affine map `y = x * scale + shift` (`[C]` each, in `dtype`):
    /// `scale = gamma / sqrt(running_var + eps)`, `shift = beta - running_mean * scale`.
    pub fn eval_affine(&self, dtype: DType) -> Result<(Tensor, Tensor)> {
        let rv = param_as(&self.running_var, dtype)?;
        let scale = (param_as(&self.weight, dtype)? / (rv + self.eps)?.sqrt()?)?;
        let shift = (param_as(&self.bias, dtype)? - (param_as(&self.running_mean, dtype)? * &scale)?)?;
        Ok((scale, shift))
    }

    /// [`BatchNorm2d::eval_affine`] computed on the host in f64 from the parameters read as they are (no new
    /// tensors; for the CPU's fused eval convolution).
    pub fn eval_affine_host(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let read = |v: &Var| -> Result<Vec<f64>> {
            let t = v.as_tensor();
            Ok(match t.dtype() {
                DType::F64 => t.to_vec1::<f64>()?,
                _ => t.to_dtype(DType::F32)?.to_vec1::<f32>()?.into_iter().map(f64::from).collect(),
            })
        };
        let (gamma, beta) = (read(&self.weight)?, read(&self.bias)?);
        let (mean, var) = (read(&self.running_mean)?, read(&self.running_var)?);
        let scale: Vec<f64> = gamma.iter().zip(&var).map(|(g, v)| g / (v + self.eps).sqrt()).collect();
        let shift = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        Ok((scale, shift))
    }

    /// [`BatchNorm2d::forward`] with a chosen implementation.
    pub fn forward_with(&self, x: &Tensor, train: bool, imp: BnImpl) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if imp == BnImpl::Auto && super::cudnn_usable(x) {
            return self.cudnn(x, train, false);
        }
        if imp == BnImpl::Auto && cpu_float(x) {
            return self.cpu(x, train, false);
        }
        let (n, c, h, w) = x.dims4()?;
        let dt = x.dtype();
        if !train {
            let (scale, shift) = self.eval_affine(dt)?;
            let (scale, shift) = (scale.reshape((1, c, 1, 1))?, shift.reshape((1, c, 1, 1))?);
            return Ok(x.broadcast_mul(&scale)?.broadcast_add(&shift)?);
        }
        let w4 = param_as(&self.weight, dt)?.reshape((1, c, 1, 1))?;
        let b4 = param_as(&self.bias, dt)?.reshape((1, c, 1, 1))?;
        check_train_input((n, c, h, w))?;
        let count = n * h * w;
        let mean = x.mean_keepdim((0, 2, 3))?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim((0, 2, 3))?;
        let scale = (&var + self.eps)?.sqrt()?.recip()?.broadcast_mul(&w4)?;
        let y = centred.broadcast_mul(&scale)?.broadcast_add(&b4)?;
        self.update_running(&mean.detach().flatten_all()?, &var.detach().flatten_all()?, count)?;
        Ok(y)
    }

    /// The CPU custom ops (with a fused ReLU when `relu`); in train mode then the running statistics.
    fn cpu(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if !train {
            let values = |v: &Var| v.as_tensor().to_dtype(DType::F64)?.to_vec1::<f64>();
            let (mean, var) = (values(&self.running_mean)?, values(&self.running_var)?);
            let op = BnEval { hw: h * w, eps: self.eps, relu, mean, var };
            return Ok(x.contiguous()?.apply_op3(&param(&self.weight), &param(&self.bias), op)?);
        }
        check_train_input((n, c, h, w))?;
        let stats = Arc::new(Mutex::new(BnStats::default()));
        let op = BnTrain { hw: h * w, eps: self.eps, relu, stats: stats.clone() };
        let y = x.contiguous()?.apply_op3(&param(&self.weight), &param(&self.bias), op)?;
        let st = stats.lock().map_err(|_| TrainError::InvalidModel("batch norm: poisoned".into()))?;
        self.update_running_host(&st, n * h * w)?;
        Ok(y)
    }

    /// The scale and shift parameters as they enter an op (the graph's variables).
    pub(crate) fn params(&self) -> (Tensor, Tensor) {
        (param(&self.weight), param(&self.bias))
    }

    /// `eps`.
    pub(crate) fn eps(&self) -> f64 {
        self.eps
    }

    /// What the CUDA convolution + batch norm op (`cudnn/conv_bn.rs`) takes for activations of type `dt`: gamma
    /// then beta in one tensor of type `dt`, the running statistics, and `(eps, momentum)`.
    #[cfg(feature = "cuda")]
    #[allow(clippy::type_complexity)]
    pub(crate) fn cudnn_train_args(&self, dt: DType) -> Result<(Tensor, (Tensor, Tensor), (f64, f64))> {
        let (running, args) = self.cudnn_train_running();
        Ok((self.cudnn_train_gb(dt)?, running, args))
    }

    /// Gamma then beta in one tensor of type `dt` (in the graph).
    #[cfg(feature = "cuda")]
    pub(crate) fn cudnn_train_gb(&self, dt: DType) -> Result<Tensor> {
        Ok(Tensor::cat(&[&param_as(&self.weight, dt)?, &param_as(&self.bias, dt)?], 0)?)
    }

    /// The running statistics and `(eps, momentum)` (`cudnn_train_args` without the parameters).
    #[cfg(feature = "cuda")]
    pub(crate) fn cudnn_train_running(&self) -> ((Tensor, Tensor), (f64, f64)) {
        ((param(&self.running_mean), param(&self.running_var)), (self.eps, self.momentum))
    }

    /// Updates the running statistics from batch statistics computed on the host (the CPU ops: this file's and
    /// `conv_bn_cpu.rs`) over `count` values a channel; the callers have checked the input with
    /// [`check_train_input`] (`count` at least 2).
    pub(crate) fn update_running_host(&self, stats: &BnStats, count: usize) -> Result<()> {
        let dt = self.running_mean.dtype();
        let mean = Tensor::from_slice(&stats.mean, stats.mean.len(), &Device::Cpu)?.to_dtype(dt)?;
        let var = Tensor::from_slice(&stats.var, stats.var.len(), &Device::Cpu)?.to_dtype(dt)?;
        self.update_running(&mean, &var, count)
    }

    /// The cuDNN ops (with a fused ReLU when `relu`): train mode (which also updates the running statistics) or
    /// eval mode.
    #[cfg(feature = "cuda")]
    fn cudnn(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let (rm, rv) = (param(&self.running_mean), param(&self.running_var));
        let running = (&rm, &rv);
        let (w, b) = (&param_as(&self.weight, x.dtype())?, &param_as(&self.bias, x.dtype())?);
        if !train {
            return super::cudnn::batch_norm_eval(x, w, b, running, self.eps, relu);
        }
        check_train_input(x.dims4()?)?;
        super::cudnn::batch_norm_train(x, w, b, running, (self.eps, self.momentum), relu)
    }

    /// `running = (1 - m) * running + m * batch`, the variance unbiased; outside the autograd graph.
    fn update_running(&self, batch_mean: &Tensor, var: &Tensor, count: usize) -> Result<()> {
        let m = self.momentum;
        // Under mixed precision the batch statistics are bf16, the running ones f32.
        let dt = self.running_mean.dtype();
        let (batch_mean, var) = (&batch_mean.to_dtype(dt)?, &var.to_dtype(dt)?);
        let unbiased = var.affine(count as f64 / (count - 1) as f64, 0.0)?;
        let new_mean =
            (self.running_mean.as_tensor().detach().affine(1.0 - m, 0.0)? + batch_mean.affine(m, 0.0)?)?;
        let new_var =
            (self.running_var.as_tensor().detach().affine(1.0 - m, 0.0)? + unbiased.affine(m, 0.0)?)?;
        self.running_mean.set(&new_mean)?;
        self.running_var.set(&new_var)?;
        Ok(())
    }
}

/// The `bwd` of the eval-mode batch-norm ops (CPU and cuDNN), as candle ops. The op is
/// `y = gamma * (x - mean) * invstd + beta`, or `max(0, y)` with `relu` (its output was `res`); `mean` and `var` are
/// `[1, C, 1, 1]` columns of the running statistics, which get no gradient (as in torch). Returns
/// `(dx, dgamma, dbeta)`. Training never needs it; the ops have it for completeness.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(crate) fn eval_backward(
    x: &Tensor,
    gamma: &Tensor,
    grad: &Tensor,
    (res, relu): (&Tensor, bool),
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let c = gamma.elem_count();
    let dy = if relu { super::elementwise::relu_mask(grad, res)? } else { grad.clone() };
    let invstd = (var + eps)?.sqrt()?.recip()?;
    let dx = dy.broadcast_mul(&gamma.reshape((1, c, 1, 1))?.mul(&invstd)?)?;
    let xhat = x.broadcast_sub(mean)?.broadcast_mul(&invstd)?;
    Ok((Some(dx), Some((&dy * &xhat)?.sum((0, 2, 3))?), Some(dy.sum((0, 2, 3))?)))
}

/// Train mode needs more than one value per channel for its batch statistics.
pub(crate) fn check_train_input((n, c, h, w): (usize, usize, usize, usize)) -> Result<()> {
    if n * h * w < 2 {
        return Err(TrainError::InvalidModel(format!(
            "batch norm in train mode needs more than one value per channel (input {n}x{c}x{h}x{w})"
        )));
    }
    Ok(())
}

impl HasVars for BatchNorm2d {
    fn visit_vars(&self, prefix: &str, out: &mut Vec<NamedVar>) {
        push_var(out, prefix, "weight", &self.weight, VarKind::Param);
        push_var(out, prefix, "bias", &self.bias, VarKind::Param);
        push_var(out, prefix, "running_mean", &self.running_mean, VarKind::Buffer);
        push_var(out, prefix, "running_var", &self.running_var, VarKind::Buffer);
    }
}
