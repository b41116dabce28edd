//! ResNet-18 and ResNet-50 in torchvision's exact layout and state-dict names (`conv1`, `bn1`, `layer1.0.conv1`,
//! ..., `layerN.0.downsample.0/1`), ResNet v1.5 (stride in the bottleneck's 3x3 convolution), with a base width
//! (64 in torchvision; smaller for tests) scaling every stage. In eval mode each convolution, its batch norm and
//! what follows (ReLU, or the residual join) go through `nn::fused` together.

use candle_core::Tensor;

use crate::error::Result;
use crate::nn::blocks::{blocks_train, stem_blocks_train, BlockMode, BlockRef};
use crate::nn::fused::{conv_bn_eval, conv_bn_train, Epilogue};
use crate::nn::{
    add_relu, global_avg_pool, join_name, max_pool2d, BatchNorm2d, Conv2d, HasVars, Init, NamedVar,
};

/// Which residual block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3x3 convolutions (ResNet-18/34), expansion 1.
    Basic,
    /// 1x1, 3x3, 1x1 (ResNet-50/101/152), expansion 4.
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> usize {
        match self {
            Self::Basic => 1,
            Self::Bottleneck => 4,
        }
    }
}

#[derive(Debug, Clone)]
struct Block {
    convs: Vec<(Conv2d, BatchNorm2d)>,
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl Block {
    fn new(
        init: &Init,
        name: &str,
        kind: BlockKind,
        inplanes: usize,
        planes: usize,
        stride: usize,
    ) -> Result<Self> {
        let mut convs = Vec::new();
        let cbn = |i: usize, cin: usize, cout: usize, k: usize, s: usize| -> Result<(Conv2d, BatchNorm2d)> {
            let conv =
                Conv2d::new(init, &join_name(name, &format!("conv{i}")), cin, cout, k, s, k / 2, false)?;
            Ok((conv, BatchNorm2d::new(init, cout)?))
        };
        match kind {
            BlockKind::Basic => {
                convs.push(cbn(1, inplanes, planes, 3, stride)?);
                convs.push(cbn(2, planes, planes, 3, 1)?);
            }
            BlockKind::Bottleneck => {
                convs.push(cbn(1, inplanes, planes, 1, 1)?);
                convs.push(cbn(2, planes, planes, 3, stride)?);
                convs.push(cbn(3, planes, planes * 4, 1, 1)?);
            }
        }
        let out = planes * kind.expansion();
        let downsample = if stride != 1 || inplanes != out {
            let conv =
                Conv2d::new(init, &join_name(name, "downsample.0"), inplanes, out, 1, stride, 0, false)?;
            Some((conv, BatchNorm2d::new(init, out)?))
        } else {
            None
        };
        Ok(Self { convs, downsample })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            return self.forward_eval(x);
        }
        let mut y = x.clone();
        let last = self.convs.len() - 1;
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            y = conv_bn_train(conv, bn, &y, i != last)?;
        }
        let identity = match &self.downsample {
            Some((conv, bn)) => conv_bn_train(conv, bn, x, false)?,
            None => x.clone(),
        };
        add_relu(&y, &identity)
    }

    /// Eval mode: each convolution with its batch norm and what follows it as one step (`nn::fused`: one cuDNN
    /// call where enabled), the residual join in the last one.
    fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        let identity = match &self.downsample {
            Some((conv, bn)) => conv_bn_eval(conv, bn, x, Epilogue::Identity)?,
            None => x.clone(),
        };
        let mut y = x.clone();
        let last = self.convs.len() - 1;
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            let epilogue = if i == last { Epilogue::AddRelu(&identity) } else { Epilogue::Relu };
            y = conv_bn_eval(conv, bn, &y, epilogue)?;
        }
        Ok(y)
    }
}

impl HasVars for Block {
    fn visit_vars(&self, prefix: &str, out: &mut Vec<NamedVar>) {
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            conv.visit_vars(&join_name(prefix, &format!("conv{}", i + 1)), out);
            bn.visit_vars(&join_name(prefix, &format!("bn{}", i + 1)), out);
        }
        if let Some((conv, bn)) = &self.downsample {
            conv.visit_vars(&join_name(prefix, "downsample.0"), out);
            bn.visit_vars(&join_name(prefix, "downsample.1"), out);
        }
    }
}

/// A ResNet backbone up to the global average pool.
#[derive(Debug, Clone)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    layers: Vec<Vec<Block>>,
    feature_dim: usize,
}

impl ResNet {
    /// Build with `kind` blocks, `depths` blocks per stage (`[2, 2, 2, 2]` for ResNet-18, `[3, 4, 6, 3]` for
    /// ResNet-50) and base width `width` (64 in torchvision).
    pub fn new(init: &Init, prefix: &str, kind: BlockKind, depths: [usize; 4], width: usize) -> Result<Self> {
        let conv1 = Conv2d::new(init, &join_name(prefix, "conv1"), 3, width, 7, 2, 3, false)?;
        let bn1 = BatchNorm2d::new(init, width)?;
        let mut inplanes = width;
        let mut layers = Vec::with_capacity(4);
        for (stage, &depth) in depths.iter().enumerate() {
            let planes = width << stage;
            let mut blocks = Vec::with_capacity(depth);
            for j in 0..depth {
                let stride = if stage > 0 && j == 0 { 2 } else { 1 };
                let name = join_name(prefix, &format!("layer{}.{j}", stage + 1));
                blocks.push(Block::new(init, &name, kind, inplanes, planes, stride)?);
                inplanes = planes * kind.expansion();
            }
            layers.push(blocks);
        }
        Ok(Self { conv1, bn1, layers, feature_dim: inplanes })
    }

    /// The pooled feature size h (512 for ResNet-18, 2048 for ResNet-50 at width 64).
    pub fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    /// `[N, 3, S, S]` -> pooled features `[N, h]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        // In train mode the blocks as one op where it runs (`nn::blocks`).
        let blocks: Vec<BlockRef<'_>> = match train {
            true => self.layers.iter().flatten().map(|b| (&b.convs[..], b.downsample.as_ref())).collect(),
            false => Vec::new(),
        };
        if train && BlockMode::current() == BlockMode::All {
            // The stem too is in the one op, from the images on (unless `UNISAL_BLOCK_STEM=0`).
            if let Some(y) = stem_blocks_train(x, ((&self.conv1, &self.bn1), (3, 2, 1)), &blocks)? {
                return global_avg_pool(&y);
            }
        }
        let x = if train {
            conv_bn_train(&self.conv1, &self.bn1, x, true)?
        } else {
            conv_bn_eval(&self.conv1, &self.bn1, x, Epilogue::Relu)?
        };
        let mut x = max_pool2d(&x, 3, 2, 1)?;
        if train {
            // In train mode all the blocks as one op where it can run (CUDA with cuDNN; `nn::blocks::blocks_train`),
            // or one op a block with `UNISAL_FUSED_BLOCK=block`; else layer by layer.
            match BlockMode::current() {
                BlockMode::All => {
                    if let Some(y) = blocks_train(&x, &blocks)? {
                        return global_avg_pool(&y);
                    }
                }
                BlockMode::Each => {
                    for (b, block) in blocks.iter().zip(self.layers.iter().flatten()) {
                        x = match blocks_train(&x, std::slice::from_ref(b))? {
                            Some(y) => y,
                            None => block.forward(&x, true)?,
                        };
                    }
                    return global_avg_pool(&x);
                }
                BlockMode::Off => {}
            }
        }
        for blocks in &self.layers {
            for block in blocks {
                x = block.forward(&x, train)?;
            }
        }
        global_avg_pool(&x)
    }
}

impl HasVars for ResNet {
    fn visit_vars(&self, prefix: &str, out: &mut Vec<NamedVar>) {
        self.conv1.visit_vars(&join_name(prefix, "conv1"), out);
        self.bn1.visit_vars(&join_name(prefix, "bn1"), out);
        for (stage, blocks) in self.layers.iter().enumerate() {
            for (j, block) in blocks.iter().enumerate() {
                block.visit_vars(&join_name(prefix, &format!("layer{}.{j}", stage + 1)), out);
            }
        }
    }
}
