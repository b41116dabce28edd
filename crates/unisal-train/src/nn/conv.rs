//! 2-D convolution with optional bias; weight `[out, in, k, k]` as in torch.

use candle_core::{Tensor, Var};

use super::pool::strided;
use super::{push_var, HasVars, Init, NamedVar, VarKind};
use crate::error::Result;

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
    /// A 1x1 convolution without padding is computed as a matrix product (after subsampling for stride > 1): its
    /// backward is then two matrix products instead of candle's slow naive `conv_transpose2d`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (out, _, k, _) = self.weight.as_tensor().dims4()?;
        let y = if k == 1 && self.padding == 0 {
            self.pointwise(x, out)?
        } else {
            x.conv2d(self.weight.as_tensor(), self.padding, self.stride, 1, 1)?
        };
        match &self.bias {
            Some(b) => {
                let c = b.as_tensor().dim(0)?;
                Ok(y.broadcast_add(&b.as_tensor().reshape((1, c, 1, 1))?)?)
            }
            None => Ok(y),
        }
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
        let wm = self.weight.as_tensor().reshape((out, c))?;
        let y = rows.matmul(&wm.t()?)?;
        Ok(y.reshape((n, h, w, out))?.permute((0, 3, 1, 2))?.contiguous()?)
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
