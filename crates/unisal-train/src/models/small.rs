//! A small CNN for CPU-only machines and tests: four conv3x3-BN-ReLU blocks (w, 2w, 4w, 8w channels; default
//! w = 32, so 32-64-128-256) with stride-2 downsampling in blocks 1-3, then global average pooling: h = 8w.
//! In eval mode each block goes through `nn::fused` (one op on the CPU).
//! Names: `block{i}.conv.weight`, `block{i}.bn.{weight,bias,running_mean,running_var}`.

use candle_core::Tensor;

use crate::error::Result;
use crate::nn::fused::{conv_bn_eval, conv_bn_train, Epilogue};
use crate::nn::{global_avg_pool, join_name, BatchNorm2d, Conv2d, HasVars, Init, NamedVar};

/// The small CNN backbone.
#[derive(Debug, Clone)]
pub struct SmallCnn {
    blocks: Vec<(Conv2d, BatchNorm2d)>,
    feature_dim: usize,
}

impl SmallCnn {
    /// Build with base width `width` (32 by default).
    pub fn new(init: &Init, prefix: &str, width: usize) -> Result<Self> {
        let widths = [width, 2 * width, 4 * width, 8 * width];
        let mut blocks = Vec::with_capacity(4);
        let mut cin = 3;
        for (i, &cout) in widths.iter().enumerate() {
            let name = join_name(prefix, &format!("block{i}"));
            let stride = if i == 0 { 1 } else { 2 };
            let conv = Conv2d::new(init, &join_name(&name, "conv"), cin, cout, 3, stride, 1, false)?;
            let bn = BatchNorm2d::new(init, cout)?;
            blocks.push((conv, bn));
            cin = cout;
        }
        Ok(Self { blocks, feature_dim: 8 * width })
    }

    /// The pooled feature size h.
    pub fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    /// `[N, 3, S, S]` -> pooled features `[N, h]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = x.clone();
        for (conv, bn) in &self.blocks {
            x = if train {
                conv_bn_train(conv, bn, &x, true)?
            } else {
                // Eval: each block one op where fused (`nn::fused`).
                conv_bn_eval(conv, bn, &x, Epilogue::Relu)?
            };
        }
        global_avg_pool(&x)
    }
}

impl HasVars for SmallCnn {
    fn visit_vars(&self, prefix: &str, out: &mut Vec<NamedVar>) {
        for (i, (conv, bn)) in self.blocks.iter().enumerate() {
            let name = join_name(prefix, &format!("block{i}"));
            conv.visit_vars(&join_name(&name, "conv"), out);
            bn.visit_vars(&join_name(&name, "bn"), out);
        }
    }
}
