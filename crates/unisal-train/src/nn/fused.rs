//! Eval-mode convolution + batch norm + ReLU, optionally joined with a residual: every layer of a ResNet at
//! prediction time. With `UNISAL_FUSED_EVAL=1`, under [`NoGrad`], on CUDA in f32 with cuDNN, it is one cuDNN call
//! (`nn/cudnn/fused.rs`): the batch norm is folded into the convolution ([`fold_bn`]), so
//! `y = act(conv(x, w * s) + (beta - mean * s) [+ residual])` with `s = gamma / sqrt(var + eps)` replaces three
//! kernels (convolution, batch norm, ReLU or the residual join) and two more passes over the activation. PyTorch's
//! eval runs them one by one. Elsewhere, and by default until a GPU run has checked it (session 6 wrote it
//! without one), the same layers run one after the other.

use candle_core::Tensor;

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

/// Whether `UNISAL_FUSED_EVAL=1` asks for the fused op where it can run.
fn fused_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("UNISAL_FUSED_EVAL").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "on"))
    })
}

/// Eval-mode `epilogue(bn(conv(x)))`: fused where enabled and possible, else layer by layer.
pub fn conv_bn_eval(conv: &Conv2d, bn: &BatchNorm2d, x: &Tensor, epilogue: Epilogue<'_>) -> Result<Tensor> {
    if fused_enabled() {
        if let Some(y) = conv_bn_eval_fused(conv, bn, x, epilogue)? {
            return Ok(y);
        }
    }
    let z = conv.forward_t(x, false)?;
    match epilogue {
        Epilogue::Identity => bn.forward(&z, false),
        Epilogue::Relu => bn.forward_relu(&z, false),
        Epilogue::AddRelu(residual) => add_relu(&bn.forward(&z, false)?, residual),
    }
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
    fn without_cuda_the_layers_run_one_by_one() {
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
}
