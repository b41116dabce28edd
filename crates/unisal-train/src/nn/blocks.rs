//! A ResNet's blocks in train mode as one op on CUDA with cuDNN (`nn/cudnn/block.rs`): the gradients between the
//! layers and blocks inside it never pass through candle's gradient accumulation, which zero-fills and adds a buffer
//! at every edge of the graph. The model (`models/resnet.rs`) asks for it first and runs its layers one by one
//! (`nn::fused::conv_bn_train`) where it returns `None`.

use candle_core::{DType, Tensor};

use super::fused::fused_train;
use super::{BatchNorm2d, Conv2d, NoGrad};
use crate::error::Result;

/// A ResNet block: its main path's convolutions with their batch norms (ReLU after each but the last) and its
/// shortcut's (identity without one).
pub type BlockRef<'a> = (&'a [(Conv2d, BatchNorm2d)], Option<&'a (Conv2d, BatchNorm2d)>);

/// How many blocks one op takes (`UNISAL_FUSED_BLOCK`): all that are given (the default), `block` one each, `0`
/// (`false`, `off`) none (a node per convolution, [`super::fused::conv_bn_train`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockMode {
    /// All the blocks given, one op.
    All,
    /// One op per block.
    Each,
    /// No block op.
    Off,
}

impl BlockMode {
    /// The mode a value of `UNISAL_FUSED_BLOCK` asks for (unknown values: the default).
    pub fn parse(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            Some("block") => Self::Each,
            Some("0" | "false" | "off") => Self::Off,
            _ => Self::All,
        }
    }

    /// This process's mode (`Off` also with `UNISAL_FUSED_TRAIN=0`).
    pub fn current() -> Self {
        static MODE: std::sync::OnceLock<BlockMode> = std::sync::OnceLock::new();
        let mode = *MODE.get_or_init(|| Self::parse(std::env::var("UNISAL_FUSED_BLOCK").ok().as_deref()));
        if fused_train() {
            mode
        } else {
            Self::Off
        }
    }
}

/// How the block op stores its activations (`UNISAL_BLOCK_NHWC`): NCHW (unset, `0`), channels last (`1`), or
/// channels last for bf16 activations only (`bf16`). Channels last is what cuDNN's bf16 tensor-core convolutions
/// and persistent batch norm take without transposing (`nn/cudnn/block.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockLayout {
    /// `[N, C, H, W]`, the layout of every other layer.
    Nchw,
    /// `[N, H, W, C]` inside the op, the input and output transposed at its edges, the weights as `[O, k, k, C]`.
    Nhwc,
}

impl BlockLayout {
    /// The layout a value of `UNISAL_BLOCK_NHWC` asks for activations of type `dt` (unknown values: NCHW).
    pub fn parse(value: Option<&str>, dt: DType) -> Self {
        match value.map(str::trim) {
            Some("1" | "on" | "true") => Self::Nhwc,
            Some("bf16") if dt == DType::BF16 => Self::Nhwc,
            _ => Self::Nchw,
        }
    }

    /// This process's layout for activations of type `dt`.
    pub fn current(dt: DType) -> Self {
        static VALUE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        Self::parse(VALUE.get_or_init(|| std::env::var("UNISAL_BLOCK_NHWC").ok()).as_deref(), dt)
    }
}

/// ResNet blocks in train mode one after the other, each `relu(main(x) + shortcut(x))`, as one op on CUDA with
/// cuDNN (`nn/cudnn/block.rs`: the gradients between the layers and blocks inside it never pass through candle's
/// gradient accumulation), in this process's [`BlockLayout`]; `None` elsewhere, under [`BlockMode::Off`], or
/// where a layer does not fit the op: the caller then runs the layers one by one.
pub fn blocks_train(x: &Tensor, blocks: &[BlockRef<'_>]) -> Result<Option<Tensor>> {
    blocks_train_in(x, blocks, BlockLayout::current(x.dtype()))
}

/// [`blocks_train`] in the layout `layout` (`x` and the result NCHW either way).
pub fn blocks_train_in(x: &Tensor, blocks: &[BlockRef<'_>], layout: BlockLayout) -> Result<Option<Tensor>> {
    train_in(x, None, blocks, layout)
}

/// A ResNet's stem: its first convolution and batch norm (ReLU after), and the max pool's `(k, stride, pad)`.
pub type StemRef<'a> = ((&'a Conv2d, &'a BatchNorm2d), (usize, usize, usize));

/// Whether the op takes the stem in too (`UNISAL_BLOCK_STEM`, on unless `0`, `false`, `off`): it then starts from
/// the images (channels last, they are what is transposed, three channels, instead of the pool's output), and the
/// gradients between the stem's layers and the blocks never pass through candle's accumulation either.
fn stem_in_op() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| super::env_not_off("UNISAL_BLOCK_STEM"))
}

/// The stem `stem` and the blocks `blocks` in train mode as one op, from the images `x` to the last block's
/// output (see [`blocks_train`]), unless `UNISAL_BLOCK_STEM=0`; `None` where it does not run: the caller then runs
/// the stem itself and asks [`blocks_train`].
pub fn stem_blocks_train(x: &Tensor, stem: StemRef<'_>, blocks: &[BlockRef<'_>]) -> Result<Option<Tensor>> {
    stem_blocks_train_in(x, stem, blocks, BlockLayout::current(x.dtype()))
}

/// [`stem_blocks_train`] in the layout `layout`.
pub fn stem_blocks_train_in(
    x: &Tensor,
    stem: StemRef<'_>,
    blocks: &[BlockRef<'_>],
    layout: BlockLayout,
) -> Result<Option<Tensor>> {
    if !stem_in_op() {
        return Ok(None);
    }
    train_in(x, Some(stem), blocks, layout)
}

fn train_in(
    x: &Tensor,
    stem: Option<StemRef<'_>>,
    blocks: &[BlockRef<'_>],
    layout: BlockLayout,
) -> Result<Option<Tensor>> {
    if BlockMode::current() == BlockMode::Off || NoGrad::active() || blocks.is_empty() {
        return Ok(None);
    }
    if !super::cudnn_usable(x) {
        return Ok(None);
    }
    #[cfg(feature = "cuda")]
    {
        blocks_train_cuda(x, stem, blocks, layout == BlockLayout::Nhwc)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (stem, layout);
        Ok(None)
    }
}

/// [`blocks_train`] (with `stem`: [`stem_blocks_train`]) on CUDA: the layers' parameters packed into one f32
/// tensor (each piece 8-value aligned, as the cuDNN ops expect of their addresses; with `nhwc` each weight as
/// `[O, k, k, C]`; by default in one launch, outside the graph), one op; with `nhwc` its input and output
/// transposed to and from channels last here, where candle's autograd takes care of their gradients.
#[cfg(feature = "cuda")]
fn blocks_train_cuda(
    x: &Tensor,
    stem: Option<StemRef<'_>>,
    blocks: &[BlockRef<'_>],
    nhwc: bool,
) -> Result<Option<Tensor>> {
    use super::cudnn::{Block, BlockLayer, BlocksCudnn, Stem};
    type Dims = (usize, usize, usize, usize);
    // The parameters are packed in f32 (the variables' type). Under bf16 the op casts the whole pack for its
    // convolutions once a pass, and its batch norms read their f32 gamma and beta from it as they are: not a cast
    // of each piece here, nor of each batch norm's parameters at each call.
    let pdt = DType::F32;
    // Outside the graph (`nn/packed_grads.rs`, the default): each variable's place in `p` recorded, for the pack
    // made in one launch (`nn/cuda_pack.rs`) and for the gradients; else the pieces, concatenated in the graph.
    let outside = super::packed_grads::enabled();
    let mut vars = super::packed_grads::PackedVars::default();
    let mut pieces: Vec<Tensor> = Vec::new();
    let mut at = 0usize;
    // The next place (8-value aligned) for `n` values, and in the graph the piece `t` (made only there) put there.
    let mut place = |n: usize, t: &dyn Fn() -> Result<Tensor>, pieces: &mut Vec<Tensor>| -> Result<usize> {
        let start = at.next_multiple_of(8);
        if !outside {
            if start > at {
                pieces.push(Tensor::zeros(start - at, pdt, x.device())?);
            }
            pieces.push(t()?);
        }
        at = start + n;
        Ok(start)
    };
    let mut layer = |(conv, bn): (&Conv2d, &BatchNorm2d),
                     dims: Dims,
                     relu: bool,
                     pieces: &mut Vec<Tensor>|
     -> Result<Option<(BlockLayer, Dims)>> {
        let Some((mut op, w)) = conv.cudnn_train_part(dims, pdt)? else { return Ok(None) };
        op.nhwc = nhwc;
        let ((mean, var), args) = bn.cudnn_train_running();
        let c = op.out;
        if bn.weight().as_tensor().elem_count() != c || bn.bias().as_tensor().elem_count() != c {
            return Err(crate::error::TrainError::InvalidModel(format!(
                "ResNet blocks: a batch norm of {:?} channels after a convolution of {c}",
                bn.weight().shape()
            )));
        }
        let w_at = place(
            w.elem_count(),
            &|| Ok(if nhwc { w.permute((0, 2, 3, 1))?.flatten_all()? } else { w.flatten_all()? }),
            pieces,
        )?;
        let gb_at = place(2 * c, &|| bn.cudnn_train_gb(pdt), pieces)?;
        if outside {
            vars.push(conv.weight().as_tensor(), w_at, nhwc)?;
            vars.push(bn.weight().as_tensor(), gb_at, false)?;
            vars.push(bn.bias().as_tensor(), gb_at + c, false)?;
        }
        let out = (op.g.n, op.out, op.g.ho(), op.g.wo());
        Ok(Some((BlockLayer::new(op, (&mean, &var), args, relu, (w_at, gb_at)), out)))
    };
    let mut dims = x.dims4()?;
    let stem = match stem {
        Some((cb, (k, stride, pad))) => {
            let Some((l, (_, _, h, w))) = layer(cb, dims, true, &mut pieces)? else { return Ok(None) };
            super::pool::check_pool_dims((h, w), k, stride, pad)?;
            let stem = Stem::new(l, (k, stride, pad));
            dims = stem.out_shape().dims4()?;
            Some(stem)
        }
        None => None,
    };
    let mut ops = Vec::with_capacity(blocks.len());
    for &(convs, downsample) in blocks {
        let block_in = dims;
        let mut layers = Vec::with_capacity(convs.len());
        for (i, (conv, bn)) in convs.iter().enumerate() {
            let last = i + 1 == convs.len();
            let Some((l, out)) = layer((conv, bn), dims, !last, &mut pieces)? else { return Ok(None) };
            layers.push(l);
            dims = out;
        }
        let down = match downsample {
            Some((conv, bn)) => match layer((conv, bn), block_in, false, &mut pieces)? {
                Some((l, _)) => Some(l),
                None => return Ok(None),
            },
            None => None,
        };
        ops.push(Block::new(layers, down)?);
    }
    // Outside the graph `p` is a variable of its own: a leaf, whose gradient candle neither needs nor walks, that
    // keeps the op a node of the graph where `x` is the images (the stem in the op).
    let p = if outside { super::cuda_pack::gather(&vars, at, x.device())? } else { Tensor::cat(&pieces, 0)? };
    let op = BlocksCudnn::new(stem, ops)?;
    let op = if outside { op.with_grads_to(std::sync::Arc::new(vars)) } else { op };
    if !nhwc {
        return Ok(Some(super::cudnn::block_train(x, &p, op)?));
    }
    let y = super::cudnn::block_train(&x.permute((0, 2, 3, 1))?.contiguous()?, &p, op)?;
    Ok(Some(y.permute((0, 3, 1, 2))?.contiguous()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_switches_read_their_values() {
        assert_eq!(BlockMode::parse(None), BlockMode::All);
        assert_eq!(BlockMode::parse(Some(" block ")), BlockMode::Each);
        for off in ["0", "false", "off"] {
            assert_eq!(BlockMode::parse(Some(off)), BlockMode::Off);
        }
        assert_eq!(BlockMode::parse(Some("2")), BlockMode::All);
        for dt in [DType::F32, DType::BF16] {
            assert_eq!(BlockLayout::parse(None, dt), BlockLayout::Nchw);
            assert_eq!(BlockLayout::parse(Some("0"), dt), BlockLayout::Nchw);
            assert_eq!(BlockLayout::parse(Some("1"), dt), BlockLayout::Nhwc);
            assert_eq!(BlockLayout::parse(Some("nhwc?"), dt), BlockLayout::Nchw);
        }
        assert_eq!(BlockLayout::parse(Some("bf16"), DType::BF16), BlockLayout::Nhwc);
        assert_eq!(BlockLayout::parse(Some("bf16"), DType::F32), BlockLayout::Nchw);
    }

    #[test]
    fn off_cuda_the_block_op_declines_in_either_layout() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::zeros((2, 4, 5, 5), DType::F32, &dev).unwrap();
        let init = crate::nn::Init::new(1, &dev);
        let conv = Conv2d::new(&init, "conv", 4, 4, 3, 1, 1, false).unwrap();
        let layers = [(conv, BatchNorm2d::new(&init, 4).unwrap())];
        for layout in [BlockLayout::Nchw, BlockLayout::Nhwc] {
            let got = blocks_train_in(&x, &[(&layers[..], None)], layout).unwrap();
            assert!(got.is_none(), "the CPU runs the layers one by one");
        }
    }
}
