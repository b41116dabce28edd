//! 2-D convolution with optional bias; weight `[out, in, k, k]` as in torch.
//!
//! On the CPU (f32/f64) a convolution is one custom op computed as im2col + one matrix product (`conv_cpu.rs`,
//! `im2col.rs`), so that its backward is two large matrix products and a col2im instead of candle 0.11.1's naive
//! `conv_transpose2d`. On a CUDA device (f32, feature `cuda`, cuDNN installed) it is one op of cuDNN's forward and
//! backward passes (`cudnn/conv.rs`), in training one op with the batch norm after it (`cudnn/conv_bn.rs`);
//! elsewhere candle's `conv2d`. [`ConvImpl`] forces one path (tests compare them).

use std::sync::{Arc, Mutex};

use candle_core::{DType, Tensor, Var};

use super::batchnorm::check_train_input;
use super::conv_bn_cpu::{ConvBnTrain, Saved};
use super::conv_cpu::{ConvOp, KeptCols};
use super::conv_eval_cpu::ConvEvalOp;
use super::cpu_util::cpu_float;
use super::im2col::Geometry;
use super::pool::strided;
use super::{param, param_as, push_var, BatchNorm2d, HasVars, Init, NamedVar, VarKind};
use crate::error::{Result, TrainError};

/// The largest im2col patch matrix built at once; a batch whose matrix is larger is split.
const COLS_BYTES: usize = 256 << 20;

/// Which implementation a convolution uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvImpl {
    /// im2col + matrix product on the CPU in f32/f64 (1x1 kernels too: one threaded op instead of a dozen
    /// single-threaded copies), the cuDNN op on CUDA in f32 (feature `cuda`, cuDNN installed), candle's `conv2d`
    /// elsewhere.
    #[default]
    Auto,
    /// candle's `conv2d` (a 1x1 kernel without padding still goes through a matrix product).
    Candle,
    /// im2col + matrix product (CPU only, f32/f64).
    Im2col,
}

/// A square-kernel 2-D convolution (groups 1, dilation 1).
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Var,
    bias: Option<Var>,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// A convolution initialised like torchvision's ResNet (kaiming-normal fan_out; bias zero).
    /// `name` is the layer's full name, used to seed its random stream.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        init: &Init,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Result<Self> {
        let weight = init.kaiming_normal_fan_out(
            &super::join_name(name, "weight"),
            &[out_channels, in_channels, kernel, kernel],
        )?;
        let bias = if bias { Some(init.constant(&[out_channels], 0.0)?) } else { None };
        Ok(Self { weight, bias, stride, padding })
    }

    /// A convolution from existing variables (weight `[out, in, k, k]`, bias `[out]`).
    pub fn from_vars(weight: Var, bias: Option<Var>, stride: usize, padding: usize) -> Self {
        Self { weight, bias, stride, padding }
    }

    /// The weight `[out, in, k, k]`.
    pub fn weight(&self) -> &Var {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Var> {
        self.bias.as_ref()
    }

    /// `x: [N, in, H, W]` -> `[N, out, H', W']`.
    ///
    /// On the CPU every convolution is the im2col op. Elsewhere a 1x1 convolution without padding is computed as a
    /// matrix product (after subsampling for stride > 1): its backward is then two matrix products instead of
    /// candle's slow naive `conv_transpose2d`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, false)
    }

    /// [`Conv2d::forward`]; with `train` (a backward will follow) the CPU op keeps its patch matrix for the
    /// backward instead of recomputing it there (memory for time, bounded: `conv_cpu.rs`).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.run(x, ConvImpl::Auto, train)
    }

    /// [`Conv2d::forward`] with a chosen implementation.
    pub fn forward_with(&self, x: &Tensor, imp: ConvImpl) -> Result<Tensor> {
        self.run(x, imp, false)
    }

    fn run(&self, x: &Tensor, imp: ConvImpl, keep: bool) -> Result<Tensor> {
        let (out, _, k, _) = self.weight.as_tensor().dims4()?;
        if imp == ConvImpl::Auto && super::cudnn_usable(x) {
            let op = ConvOp { g: self.geometry(x, k)?, out, keep: None, nhwc: false };
            let y = x.contiguous()?.apply_op2(&param_as(&self.weight, x.dtype())?.contiguous()?, op)?;
            return self.with_bias(y);
        }
        let im2col = match imp {
            ConvImpl::Auto => cpu_float(x),
            ConvImpl::Candle => false,
            ConvImpl::Im2col => true,
        };
        let y = if im2col {
            self.im2col(x, out, k, COLS_BYTES, keep)?
        } else if k == 1 && self.padding == 0 {
            self.pointwise(x, out)?
        } else {
            x.conv2d(&param_as(&self.weight, x.dtype())?, self.padding, self.stride, 1, 1)?
        };
        self.with_bias(y)
    }

    fn with_bias(&self, y: Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(b) => {
                let c = b.as_tensor().dim(0)?;
                Ok(y.broadcast_add(&param_as(b, y.dtype())?.reshape((1, c, 1, 1))?)?)
            }
            None => Ok(y),
        }
    }

    /// The op of an eval-mode forward on `x` (the fused convolution's geometry).
    #[cfg(feature = "cuda")]
    pub(crate) fn eval_op(&self, x: &Tensor) -> Result<ConvOp> {
        let (out, _, k, _) = self.weight.as_tensor().dims4()?;
        Ok(ConvOp { g: self.geometry(x, k)?, out, keep: None, nhwc: false })
    }

    /// The geometry of this convolution on `x`, checked to fit.
    fn geometry(&self, x: &Tensor, k: usize) -> Result<Geometry> {
        self.geometry_of(x.dims4()?, k)
    }

    /// [`Conv2d::geometry`] of an input of dims `(n, c, h, w)`.
    fn geometry_of(&self, (n, c, h, w): (usize, usize, usize, usize), k: usize) -> Result<Geometry> {
        let g = Geometry { n, c, h, w, k, stride: self.stride, pad: self.padding };
        if self.stride == 0 || h + 2 * g.pad < k || w + 2 * g.pad < k {
            return Err(TrainError::InvalidModel(format!(
                "conv2d: kernel {k}, stride {}, padding {} do not fit an input of {h}x{w}",
                self.stride, self.padding
            )));
        }
        Ok(g)
    }
}

impl Conv2d {
    /// 1x1 convolution, stride s, no padding: `y[n, o, i, j] = sum_c w[o, c] x[n, c, s i, s j]`.
    fn pointwise(&self, x: &Tensor, out: usize) -> Result<Tensor> {
        let s = self.stride;
        let x = if s > 1 {
            let (_, _, h, w) = x.dims4()?;
            let (ho, wo) = ((h - 1) / s + 1, (w - 1) / s + 1);
            // Pad (zeros never selected) so that every strided view has `count * s` cells.
            let x = x.pad_with_zeros(2, 0, ho * s - h)?.pad_with_zeros(3, 0, wo * s - w)?;
            let x = strided(&x, 2, 0, ho, s)?;
            strided(&x, 3, 0, wo, s)?
        } else {
            x.clone()
        };
        let (n, c, h, w) = x.dims4()?;
        let rows = x.permute((0, 2, 3, 1))?.reshape((n * h * w, c))?;
        let wm = param_as(&self.weight, x.dtype())?.reshape((out, c))?;
        let y = rows.matmul(&wm.t()?)?;
        Ok(y.reshape((n, h, w, out))?.permute((0, 3, 1, 2))?.contiguous()?)
    }
}

impl Conv2d {
    /// The im2col custom op (`conv_cpu.rs`); batches whose patch matrix exceeds `limit` bytes run in parts.
    fn im2col(&self, x: &Tensor, out: usize, k: usize, limit: usize, keep: bool) -> Result<Tensor> {
        let w = param(&self.weight).contiguous()?;
        self.in_parts(x, k, limit, &|x: &Tensor, _| {
            let op = ConvOp { g: self.geometry(x, k)?, out, keep: keep.then(KeptCols::default), nhwc: false };
            Ok(x.contiguous()?.apply_op2(&w, op)?)
        })
    }

    /// `f(part, first sample)` over parts of the batch whose patch matrix fits in `limit` bytes, concatenated.
    fn in_parts(
        &self,
        x: &Tensor,
        k: usize,
        limit: usize,
        f: &dyn Fn(&Tensor, usize) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let g = self.geometry(x, k)?;
        // Bound the patch matrix (a ResNet's first layer at 224 px is ~7 MB a sample): larger batches go in parts.
        let per_sample = g.ho() * g.wo() * g.ckk() * x.dtype().size_in_bytes();
        let max_n = (limit / per_sample.max(1)).max(1);
        if g.n <= max_n {
            return f(x, 0);
        }
        let parts = (0..g.n)
            .step_by(max_n)
            .map(|start| f(&x.narrow(0, start, max_n.min(g.n - start))?, start))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// Train mode on the CPU: `bn(conv(x))`, with ReLU if `relu`, as one op (`conv_bn_cpu.rs`), and `bn`'s running
    /// statistics updated; `None` where it does not apply (not the CPU in f32/f64, a convolution with a bias, or a
    /// batch whose patch matrix must be built in parts).
    pub(crate) fn train_bn_cpu(&self, x: &Tensor, bn: &BatchNorm2d, relu: bool) -> Result<Option<Tensor>> {
        let (out, _, k, _) = self.weight.as_tensor().dims4()?;
        let g = self.geometry(x, k)?;
        let patch_bytes = g.npix() * g.ckk() * x.dtype().size_in_bytes();
        if !cpu_float(x) || self.bias.is_some() || patch_bytes > COLS_BYTES {
            return Ok(None);
        }
        check_train_input((g.n, out, g.ho(), g.wo()))?;
        let saved = Arc::new(Mutex::new(Saved::default()));
        let conv = ConvOp { g, out, keep: Some(KeptCols::default()), nhwc: false };
        let op = ConvBnTrain { conv, eps: bn.eps(), relu, saved: saved.clone() };
        let (gamma, beta) = bn.params();
        let gb = Tensor::cat(&[&gamma, &beta], 0)?;
        let y = x.contiguous()?.apply_op3(&param(&self.weight).contiguous()?, &gb, op)?;
        let stats =
            saved.lock().map_err(|_| TrainError::InvalidModel("conv + batch norm: poisoned".into()))?;
        bn.update_running_host(&stats.stats, g.n * g.ho() * g.wo())?;
        Ok(Some(y))
    }

    /// Train mode on CUDA: `bn(conv(x))`, with ReLU if `relu`, as one cuDNN op (`cudnn/conv_bn.rs`), `bn`'s running
    /// statistics updated; `None` where it does not apply (cuDNN not taking `x`, a convolution with a bias, or a
    /// channel count that would leave beta less than 16-byte aligned behind gamma in the op's one parameter tensor).
    pub(crate) fn train_bn_cuda(&self, x: &Tensor, bn: &BatchNorm2d, relu: bool) -> Result<Option<Tensor>> {
        #[cfg(feature = "cuda")]
        if super::cudnn_usable(x) {
            if let Some((op, w)) = self.cudnn_train_part(x.dims4()?, x.dtype())? {
                let (gb, (mean, var), args) = bn.cudnn_train_args(x.dtype())?;
                return Ok(Some(super::cudnn::conv_bn_train((x, &w, &gb), op, (&mean, &var), args, relu)?));
            }
        }
        let _ = (x, bn, relu);
        Ok(None)
    }

    /// The convolution as the train-mode CUDA ops take it ([`Conv2d::train_bn_cuda`], the block op of
    /// `cudnn/block.rs`) for an input of dims `dims` and data type `dt`: its op and its weight in `dt`; `None` for a
    /// convolution with a bias, or a channel count that would leave beta less than 16-byte aligned behind gamma in
    /// the ops' parameter tensors.
    #[cfg(feature = "cuda")]
    pub(crate) fn cudnn_train_part(
        &self,
        dims: (usize, usize, usize, usize),
        dt: DType,
    ) -> Result<Option<(ConvOp, Tensor)>> {
        let (out, _, k, _) = self.weight.as_tensor().dims4()?;
        if self.bias.is_some() || out % 4 != 0 {
            return Ok(None);
        }
        let g = self.geometry_of(dims, k)?;
        check_train_input((g.n, out, g.ho(), g.wo()))?;
        Ok(Some((ConvOp { g, out, keep: None, nhwc: false }, param_as(&self.weight, dt)?)))
    }

    /// Eval mode on the CPU: `act(conv(x) * scale + shift [+ residual])` as one op (`conv_eval_cpu.rs`), the
    /// convolution's bias folded into `shift`; no autograd graph (the weight is read detached).
    pub(crate) fn eval_affine_cpu(
        &self,
        x: &Tensor,
        (scale, shift): (Vec<f64>, Vec<f64>),
        relu: bool,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.eval_affine_cpu_in_parts(x, (scale, shift), relu, residual, COLS_BYTES)
    }

    /// [`Conv2d::eval_affine_cpu`] in parts of the batch whose patch matrix fits in `limit` bytes.
    fn eval_affine_cpu_in_parts(
        &self,
        x: &Tensor,
        (scale, shift): (Vec<f64>, Vec<f64>),
        relu: bool,
        residual: Option<&Tensor>,
        limit: usize,
    ) -> Result<Tensor> {
        let (out, _, k, _) = self.weight.as_tensor().dims4()?;
        let shift = match &self.bias {
            Some(b) => {
                let b = b.as_tensor().to_dtype(DType::F64)?.to_vec1::<f64>()?;
                shift.iter().zip(&scale).zip(&b).map(|((t, s), b)| t + b * s).collect()
            }
            None => shift,
        };
        let w = self.weight.as_tensor().detach().to_dtype(x.dtype())?.contiguous()?;
        self.in_parts(x, k, limit, &|x: &Tensor, start| {
            let conv = ConvOp { g: self.geometry(x, k)?, out, keep: None, nhwc: false };
            let op = ConvEvalOp { conv, scale: scale.clone(), shift: shift.clone(), relu };
            let x = x.contiguous()?;
            Ok(match residual {
                Some(r) => x.apply_op3(&w, &r.narrow(0, start, x.dim(0)?)?.contiguous()?, op)?,
                None => x.apply_op2(&w, op)?,
            })
        })
    }
}

impl HasVars for Conv2d {
    fn visit_vars(&self, prefix: &str, out: &mut Vec<NamedVar>) {
        push_var(out, prefix, "weight", &self.weight, VarKind::Param);
        if let Some(b) = &self.bias {
            push_var(out, prefix, "bias", b, VarKind::Param);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_second_backward_through_a_training_forward_recomputes_the_patch_matrix() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 3, 5, 5), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f64, 1.0, (4, 3, 3, 3), &dev).unwrap()).unwrap();
        let conv = Conv2d::from_vars(w.clone(), None, 1, 1);
        let loss =
            |train: bool| conv.forward_t(x.as_tensor(), train).unwrap().sqr().unwrap().sum_all().unwrap();
        let grads = |l: &Tensor| {
            let g = l.backward().unwrap();
            [x.as_tensor(), w.as_tensor()]
                .map(|v| g.get(v).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap())
        };
        let want = grads(&loss(false));
        let kept = loss(true);
        // The first backward takes the kept matrix, the second finds none and recomputes it.
        for got in [grads(&kept), grads(&kept)] {
            for (a, b) in got.iter().zip(&want) {
                assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-12));
            }
        }
    }

    #[test]
    fn a_batch_split_for_memory_gives_the_same_output_and_gradients_kept_or_not() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (5, 3, 6, 6), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f64, 1.0, (4, 3, 3, 3), &dev).unwrap()).unwrap();
        let conv = Conv2d::from_vars(w.clone(), None, 2, 1);
        let r = Tensor::randn(0f64, 1.0, (5, 4, 3, 3), &dev).unwrap();
        let run = |limit: usize, keep: bool| {
            let y = conv.im2col(x.as_tensor(), 4, 3, limit, keep).unwrap();
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            [flat(&y), flat(g.get(x.as_tensor()).unwrap()), flat(g.get(w.as_tensor()).unwrap())]
        };
        // One sample's patch matrix: 9 rows x 27 columns x 8 bytes; 2 samples a part -> parts of 2, 2, 1.
        let whole = run(usize::MAX, false);
        for other in [run(2 * 9 * 27 * 8, false), run(usize::MAX, true), run(2 * 9 * 27 * 8, true)] {
            for (a, b) in whole.iter().zip(&other) {
                assert_eq!(a.len(), b.len());
                assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-12));
            }
        }
    }

    #[test]
    fn the_eval_op_in_parts_takes_each_part_of_the_residual() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1.0, (5, 3, 6, 6), &dev).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f64, 1.0, (4, 3, 3, 3), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f64, 1.0, 4, &dev).unwrap()).unwrap();
        let conv = Conv2d::from_vars(w, Some(b.clone()), 2, 1);
        let r = Tensor::randn(0f64, 1.0, (5, 4, 3, 3), &dev).unwrap();
        let (scale, shift) = (vec![0.5, -1.0, 2.0, 1.5], vec![0.1, 0.2, -0.3, 0.0]);
        let s4 = Tensor::from_vec(scale.clone(), (1, 4, 1, 1), &dev).unwrap();
        let t4 = Tensor::from_vec(shift.clone(), (1, 4, 1, 1), &dev).unwrap();
        // conv includes its bias: (conv + b) * s + t.
        let z = conv.forward(&x).unwrap().broadcast_mul(&s4).unwrap().broadcast_add(&t4).unwrap();
        let want = (z + &r).unwrap().relu().unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        // Parts of 2, 2, 1 samples (9 x 27 x 8 bytes a sample), and the whole batch at once.
        for limit in [2 * 9 * 27 * 8, usize::MAX] {
            let y = conv
                .eval_affine_cpu_in_parts(&x, (scale.clone(), shift.clone()), true, Some(&r), limit)
                .unwrap();
            let got = y.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            assert!(got.iter().zip(&want).all(|(p, q)| (p - q).abs() < 1e-12), "limit {limit}");
        }
    }
}
