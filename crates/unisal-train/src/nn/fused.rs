//! Eval-mode convolution + batch norm + ReLU, optionally joined with a residual: every layer of a ResNet at
//! prediction time, fused under [`NoGrad`] where a fused op exists:
//! - on the CPU (f32/f64), by default: one op that applies the batch norm's affine map, the ReLU and the residual to
//!   each output run right after its matrix product, while it is in cache (`nn/conv_eval_cpu.rs`);
//! - on CUDA in f32 with cuDNN, by default (checked on an H200 in session 12: the device test against the f64
//!   layers passed, and prediction ran 1.10-1.21x faster): one cuDNN call (`nn/cudnn/fused.rs`) on the folded
//!   weights ([`fold_bn`]),
//!   `y = act(conv(x, w * s) + (beta - mean * s) [+ residual])` with `s = gamma / sqrt(var + eps)`.
//!
//! Either replaces three ops (convolution, batch norm, ReLU or the residual join) and two more passes over the
//! activation; PyTorch's eval runs them one by one. `UNISAL_FUSED_EVAL=0` runs the layers one after the other
//! everywhere, as do bf16 and training; `UNISAL_FUSED_EVAL=cpu` fuses on the CPU only (CUDA layer by layer, to
//! compare).

use candle_core::Tensor;

use super::cpu_util::cpu_float;
use super::{add_relu, BatchNorm2d, Conv2d, NoGrad};
use crate::error::Result;

/// What follows the batch norm.
#[derive(Debug, Clone, Copy)]
pub enum Epilogue<'a> {
    /// Nothing (a downsample branch).
    Identity,
    /// ReLU.
    Relu,
    /// The residual join `relu(y + residual)`.
    AddRelu(&'a Tensor),
}

/// `UNISAL_FUSED_EVAL`: unset (or `1`, `true`, `on`) fuses on the CPU and on CUDA, `cpu` on the CPU only, `0`
/// (`false`, `off`) nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusedMode {
    /// The CPU's fused op; on CUDA the layers one by one.
    CpuOnly,
    /// The fused ops on the CPU and on CUDA (the default).
    All,
    /// The layers one by one everywhere.
    Off,
}

impl FusedMode {
    /// The mode a value of `UNISAL_FUSED_EVAL` asks for (unknown values: the default).
    pub fn parse(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            Some("cpu") => Self::CpuOnly,
            Some("0" | "false" | "off") => Self::Off,
            _ => Self::All,
        }
    }

    fn current() -> Self {
        static MODE: std::sync::OnceLock<FusedMode> = std::sync::OnceLock::new();
        *MODE.get_or_init(|| Self::parse(std::env::var("UNISAL_FUSED_EVAL").ok().as_deref()))
    }
}

/// Train-mode `bn(conv(x))`, with ReLU if `relu` (the running statistics updated): one op on the CPU
/// (`nn/conv_bn_cpu.rs`) and on CUDA with cuDNN (`nn/cudnn/conv_bn.rs`) unless `UNISAL_FUSED_TRAIN=0`; elsewhere,
/// or where those ops do not apply, layer by layer.
pub fn conv_bn_train(conv: &Conv2d, bn: &BatchNorm2d, x: &Tensor, relu: bool) -> Result<Tensor> {
    if fused_train() {
        if let Some(y) = conv.train_bn_cpu(x, bn, relu)? {
            return Ok(y);
        }
        if let Some(y) = conv.train_bn_cuda(x, bn, relu)? {
            return Ok(y);
        }
    }
    let z = conv.forward_t(x, true)?;
    if relu {
        bn.forward_relu(&z, true)
    } else {
        bn.forward(&z, true)
    }
}

/// Whether `UNISAL_FUSED_TRAIN` leaves the train-mode convolution + batch norm ops (CPU, CUDA) on (anything but `0`,
/// `false`, `off`).
pub(crate) fn fused_train() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| super::env_not_off("UNISAL_FUSED_TRAIN"))
}

/// Eval-mode `epilogue(bn(conv(x)))`: fused where enabled and possible, else layer by layer.
pub fn conv_bn_eval(conv: &Conv2d, bn: &BatchNorm2d, x: &Tensor, epilogue: Epilogue<'_>) -> Result<Tensor> {
    let mode = FusedMode::current();
    if mode != FusedMode::Off {
        if let Some(y) = conv_bn_eval_cpu(conv, bn, x, epilogue)? {
            return Ok(y);
        }
    }
    if mode == FusedMode::All {
        if let Some(y) = conv_bn_eval_fused(conv, bn, x, epilogue)? {
            return Ok(y);
        }
    }
    conv_bn_eval_layers(conv, bn, x, epilogue)
}

/// The same, one layer after the other.
pub fn conv_bn_eval_layers(
    conv: &Conv2d,
    bn: &BatchNorm2d,
    x: &Tensor,
    epilogue: Epilogue<'_>,
) -> Result<Tensor> {
    let z = conv.forward_t(x, false)?;
    match epilogue {
        Epilogue::Identity => bn.forward(&z, false),
        Epilogue::Relu => bn.forward_relu(&z, false),
        Epilogue::AddRelu(residual) => add_relu(&bn.forward(&z, false)?, residual),
    }
}

/// The fused CPU op (`nn/conv_eval_cpu.rs`), where it can run (CPU, f32/f64, under [`NoGrad`]); `None` elsewhere.
pub fn conv_bn_eval_cpu(
    conv: &Conv2d,
    bn: &BatchNorm2d,
    x: &Tensor,
    epilogue: Epilogue<'_>,
) -> Result<Option<Tensor>> {
    if !NoGrad::active() || !cpu_float(x) {
        return Ok(None);
    }
    let affine = bn.eval_affine_host()?;
    let y = match epilogue {
        Epilogue::Identity => conv.eval_affine_cpu(x, affine, false, None)?,
        Epilogue::Relu => conv.eval_affine_cpu(x, affine, true, None)?,
        Epilogue::AddRelu(r) => conv.eval_affine_cpu(x, affine, true, Some(r))?,
    };
    Ok(Some(y))
}

/// The fused op, where it can run (CUDA, f32 (not bf16), cuDNN loaded, under [`NoGrad`]); `None` elsewhere.
pub fn conv_bn_eval_fused(
    conv: &Conv2d,
    bn: &BatchNorm2d,
    x: &Tensor,
    epilogue: Epilogue<'_>,
) -> Result<Option<Tensor>> {
    if !NoGrad::active() || x.dtype() != candle_core::DType::F32 || !super::cudnn_usable(x) {
        return Ok(None);
    }
    #[cfg(feature = "cuda")]
    {
        let (w, b) = fold_bn(conv, bn)?;
        let op = conv.eval_op(x)?;
        let (relu, residual) = match epilogue {
            Epilogue::Identity => (false, None),
            Epilogue::Relu => (true, None),
            Epilogue::AddRelu(r) => (true, Some(r)),
        };
        Ok(Some(super::cudnn::conv_bias_act(x, (&w, &b), op, relu, residual)?))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (conv, bn, epilogue);
        Ok(None)
    }
}

/// The eval-mode batch norm folded into the convolution before it: with the batch norm's
/// [`BatchNorm2d::eval_affine`] `(scale, shift)`, `(w * scale, shift + bias * scale)` per output channel (`bias` the
/// convolution's, else 0). Detached: no gradient.
pub fn fold_bn(conv: &Conv2d, bn: &BatchNorm2d) -> Result<(Tensor, Tensor)> {
    let w = conv.weight().as_tensor().detach();
    let (scale, shift) = bn.eval_affine(w.dtype())?;
    let c = scale.dim(0)?;
    let folded = w.broadcast_mul(&scale.reshape((c, 1, 1, 1))?)?;
    let bias = match conv.bias() {
        Some(b) => (shift + (b.as_tensor() * &scale)?)?,
        None => shift,
    };
    Ok((folded, bias.detach()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn var(shape: &[usize], seed: u64, positive: bool) -> Var {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|i| {
                let x = ((i as u64 * 2654435761 + seed * 97) % 1000) as f64 / 1000.0 - 0.5;
                if positive {
                    x.abs() + 0.2
                } else {
                    x
                }
            })
            .collect();
        Var::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// A 4-channel batch norm with distinct parameters and a positive running variance.
    fn bn4() -> BatchNorm2d {
        BatchNorm2d::from_vars(
            var(&[4], 3, false),
            var(&[4], 4, false),
            var(&[4], 5, false),
            var(&[4], 6, true),
        )
    }

    fn max_diff(a: Tensor, b: &Tensor) -> f64 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap()
    }

    #[test]
    fn the_folded_convolution_is_conv_then_batch_norm() {
        for bias in [false, true] {
            let w = var(&[4, 3, 3, 3], 1, false);
            let b = bias.then(|| var(&[4], 2, false));
            let conv = Conv2d::from_vars(w, b, 2, 1);
            let bn = bn4();
            let x = var(&[2, 3, 9, 9], 7, false);
            let expected = bn.forward(&conv.forward(x.as_tensor()).unwrap(), false).unwrap();
            let (wf, bf) = fold_bn(&conv, &bn).unwrap();
            let folded =
                Conv2d::from_vars(Var::from_tensor(&wf).unwrap(), Some(Var::from_tensor(&bf).unwrap()), 2, 1);
            let diff = max_diff(folded.forward(x.as_tensor()).unwrap(), &expected);
            assert!(diff < 1e-12, "bias {bias}: {diff}");
            assert_eq!(wf.dtype(), DType::F64);
        }
    }

    #[test]
    fn on_the_cpu_the_cudnn_op_is_unused_and_every_epilogue_matches() {
        let conv = Conv2d::from_vars(var(&[4, 3, 1, 1], 1, false), None, 1, 0);
        let bn = bn4();
        let x = var(&[2, 3, 5, 5], 7, false);
        let r = var(&[2, 4, 5, 5], 8, false);
        let _g = NoGrad::enter();
        assert!(conv_bn_eval_fused(&conv, &bn, x.as_tensor(), Epilogue::Relu).unwrap().is_none());
        let z = bn.forward(&conv.forward(x.as_tensor()).unwrap(), false).unwrap();
        let cases = [
            (Epilogue::Identity, z.clone()),
            (Epilogue::Relu, z.relu().unwrap()),
            (Epilogue::AddRelu(r.as_tensor()), (&z + r.as_tensor()).unwrap().relu().unwrap()),
        ];
        for (epilogue, expected) in cases {
            let diff = max_diff(conv_bn_eval(&conv, &bn, x.as_tensor(), epilogue).unwrap(), &expected);
            assert!(diff < 1e-12, "{epilogue:?}: {diff}");
        }
    }

    /// [`var`] in `dtype`.
    fn var_as(shape: &[usize], seed: u64, positive: bool, dtype: DType) -> Var {
        Var::from_tensor(&var(shape, seed, positive).as_tensor().to_dtype(dtype).unwrap()).unwrap()
    }

    /// A `c`-channel batch norm in `dtype` with distinct parameters and a positive running variance.
    fn bn(c: usize, dtype: DType) -> BatchNorm2d {
        BatchNorm2d::from_vars(
            var_as(&[c], 3, false, dtype),
            var_as(&[c], 4, false, dtype),
            var_as(&[c], 5, false, dtype),
            var_as(&[c], 6, true, dtype),
        )
    }

    #[test]
    fn the_cpu_fused_op_matches_the_layers_in_every_path() {
        // (batch, in, out, kernel, stride): per-sample products (out <= 64, batch >= 2), one batch-wide product
        // (out > 64, or a batch of one), 1x1 and 3x3, stride 1 and 2.
        let cases = [(3, 3, 4, 3, 1), (2, 5, 8, 3, 2), (1, 3, 4, 3, 1), (2, 6, 80, 1, 1), (3, 4, 72, 3, 2)];
        for (n, c, o, k, s) in cases {
            for dtype in [DType::F64, DType::F32] {
                let (w, b) = (var_as(&[o, c, k, k], 1, false, dtype), var_as(&[o], 2, false, dtype));
                let conv = Conv2d::from_vars(w, Some(b), s, k / 2);
                let bn = bn(o, dtype);
                let x = var(&[n, c, 9, 9], 7, false).as_tensor().to_dtype(dtype).unwrap();
                let ho = (9 + 2 * (k / 2) - k) / s + 1;
                let r = var(&[n, o, ho, ho], 8, false).as_tensor().to_dtype(dtype).unwrap();
                let _g = NoGrad::enter();
                for epilogue in [Epilogue::Identity, Epilogue::Relu, Epilogue::AddRelu(&r)] {
                    let fused =
                        conv_bn_eval_cpu(&conv, &bn, &x, epilogue).unwrap().expect("fused on the CPU");
                    let layers = conv_bn_eval_layers(&conv, &bn, &x, epilogue).unwrap();
                    assert_eq!(fused.dims(), layers.dims());
                    assert_eq!(fused.dtype(), dtype);
                    let scale = layers.abs().unwrap().max_all().unwrap().to_dtype(DType::F64).unwrap();
                    let scale = scale.to_scalar::<f64>().unwrap();
                    let diff =
                        max_diff(fused.to_dtype(DType::F64).unwrap(), &layers.to_dtype(DType::F64).unwrap());
                    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 } * scale.max(1.0);
                    assert!(diff < tol, "{:?} {dtype:?} {epilogue:?}: {diff}", (n, c, o, k, s));
                }
            }
        }
    }

    #[test]
    fn the_fused_mode_follows_the_environment_value() {
        assert_eq!(FusedMode::parse(None), FusedMode::All);
        assert_eq!(FusedMode::parse(Some("cpu")), FusedMode::CpuOnly);
        assert_eq!(FusedMode::parse(Some("1")), FusedMode::All);
        assert_eq!(FusedMode::parse(Some(" on ")), FusedMode::All);
        assert_eq!(FusedMode::parse(Some("0")), FusedMode::Off);
        assert_eq!(FusedMode::parse(Some("off")), FusedMode::Off);
        assert_eq!(FusedMode::parse(Some("maybe")), FusedMode::All);
    }

    #[test]
    fn outside_no_grad_the_cpu_op_is_not_used() {
        let conv = Conv2d::from_vars(var(&[4, 3, 3, 3], 1, false), None, 1, 1);
        let x = var(&[2, 3, 5, 5], 7, false);
        assert!(conv_bn_eval_cpu(&conv, &bn(4, DType::F64), x.as_tensor(), Epilogue::Relu)
            .unwrap()
            .is_none());
    }
}
