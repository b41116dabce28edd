//! ResNet blocks in train mode on CUDA as one candle custom op (`BlocksCudnn`; all of a network's blocks, or one,
//! `nn/blocks.rs`): each block's convolutions with their batch norms and ReLUs (`conv_bn.rs`'s work, layer after
//! layer), its downsample branch and its residual join, all one node of the autograd graph.
//!
//! candle 0.11.1's backward gives every tensor of the graph a zero-filled gradient buffer and adds the incoming
//! gradient into it: for a bottleneck block of layer-by-layer nodes, a fill and an add (four passes) over five
//! activations, about 14 channels' worth of the block's width, which the timing-event profile of session 14 put at
//! 45 ms of a 302 ms dual ResNet-50 step (PyTorch's own accumulation: a few ms). Here the gradients inside the op
//! go straight from one cuDNN backward to the next; candle sees the first block's input and the parameters only.
//!
//! Inputs `(x [N, C, H, W], p)`: `p` is the parameters packed one after the other, each layer's weight then its
//! gamma and beta (`BlockLayer::w_at`, `gb_at`), in f32 (under bf16 the convolutions' weights are cast from it
//! once a pass, `block_layer.rs`'s `Packed`); the backward returns `(dx, dp)`. The running statistics are updated
//! in place by cuDNN. The layers' outputs are kept until the backward takes them; a second backward of the same
//! forward is an error.
//!
//! Channels last (`BlocksCudnn::nhwc`, `nn/blocks.rs`'s `BlockLayout::Nhwc`): `x` comes as `[N, H, W, C]`, the
//! output goes as `[N, Ho, Wo, O]`, and each weight in `p` is `[O, k, k, C]`: cuDNN's bf16 tensor-core kernels
//! take channels-last data without transposing it on each call, as PyTorch's channels-last autocast does. Inside
//! the op every tensor keeps its logical `[N, C, H, W]` shape over the channels-last data: the convolutions and
//! batch norms are told the layout by their descriptors, and the ReLUs, masks and joins are element-wise.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CudaStorage, Layout, Shape, Tensor};

use super::block_layer::{BlockLayer, Packed, PackedGrads, Stem, StemKept};
use crate::nn::cuda_kernels::{map, Map};
use crate::nn::elementwise::relu_mask;

/// What the forward keeps of a block for the backward: each main-path layer's `z` and output (the last one's
/// output is not needed: the join's mask is the block's output), and the downsample's `z`.
struct Kept {
    z: Vec<CudaStorage>,
    y: Vec<CudaStorage>,
    z_down: Option<CudaStorage>,
}

/// One block: its main path's layers and its downsample branch (identity without one).
pub(crate) struct Block {
    layers: Vec<BlockLayer>,
    downsample: Option<BlockLayer>,
}

impl Block {
    /// A block of the main path `layers` (at least one) and the shortcut `downsample`.
    pub(crate) fn new(layers: Vec<BlockLayer>, downsample: Option<BlockLayer>) -> crate::error::Result<Self> {
        if layers.is_empty() {
            return Err(crate::error::TrainError::InvalidModel("ResNet block: no layers".into()));
        }
        Ok(Self { layers, downsample })
    }

    fn out_shape(&self) -> Shape {
        self.layers[self.layers.len() - 1].out_shape()
    }

    /// `relu(main(x) + shortcut(x))` and what the backward needs.
    fn forward(
        &self,
        (xs, xl): (&CudaStorage, &Layout),
        p: Packed<'_>,
    ) -> candle_core::Result<(CudaStorage, Kept)> {
        let mut kept = Kept { z: Vec::new(), y: Vec::new(), z_down: None };
        let last = self.layers.len() - 1;
        let mut y_last = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let input = match i {
                0 => (xs, xl.clone()),
                _ => (&kept.y[i - 1], Layout::contiguous(self.layers[i - 1].out_shape())),
            };
            let (y, z) = layer.forward((input.0, &input.1), p)?;
            kept.z.push(z);
            if i == last {
                y_last = Some(y);
            } else {
                kept.y.push(y);
            }
        }
        let shape = self.out_shape();
        let (y_last, yl) = (y_last.expect("the last layer ran"), Layout::contiguous(shape.clone()));
        let (out, _) = match &self.downsample {
            Some(d) => {
                let (yd, zd) = d.forward((xs, xl), p)?;
                kept.z_down = Some(zd);
                map(Map::AddRelu, &[(&y_last, &yl), (&yd, &yl)], [0.0; 3])?
            }
            None => {
                if xl.shape() != &shape {
                    candle_core::bail!("ResNet block: input {:?} cannot join output {shape:?}", xl.shape());
                }
                map(Map::AddRelu, &[(&y_last, &yl), (xs, xl)], [0.0; 3])?
            }
        };
        Ok((out, kept))
    }

    /// The gradient of the block's input `x` (where `need_dx`) for its output `out` and the output's gradient
    /// `grad`; its layers' parameters' gradients are written into `dp`.
    fn backward(
        &self,
        (x, out, grad): (&Tensor, &Tensor, &Tensor),
        (kept, p): (Kept, PackedGrads<'_>),
        need_dx: bool,
    ) -> candle_core::Result<Option<Tensor>> {
        let cuda = out.device().as_cuda_device()?.clone();
        let as_tensor = |s: CudaStorage, shape: Shape| crate::device::tensor_of_storage(s, shape, &cuda);
        // The join's gradient goes to the main path's last output and to the shortcut.
        let g = relu_mask(grad, out)?;
        let mut ys: Vec<Tensor> = Vec::with_capacity(kept.y.len());
        for (i, y) in kept.y.into_iter().enumerate() {
            ys.push(as_tensor(y, self.layers[i].out_shape())?);
        }
        // The shortcut's gradient of the input; by default (`UNISAL_BLOCK_ACCUMULATE`) computed first, and the main
        // path's added into it in place by its first layer (no third buffer, no add).
        let accumulate = super::conv_accumulate::enabled() && need_dx;
        let mut z_down = kept.z_down;
        let mut shortcut = |g: &Tensor| -> candle_core::Result<Option<Tensor>> {
            match (&self.downsample, z_down.take()) {
                (Some(d), Some(zd)) => {
                    let zd = as_tensor(zd, d.out_shape())?;
                    d.backward((x, &zd, g), p, (g, None), need_dx)
                }
                (None, _) => Ok(Some(g.clone())),
                (Some(_), None) => candle_core::bail!("ResNet block: the downsample's output was not kept"),
            }
        };
        let early = if accumulate { shortcut(&g)? } else { None };
        let mut dy = g.clone();
        let mut dx_main = None;
        for (i, (layer, z)) in self.layers.iter().zip(kept.z).enumerate().rev() {
            let z = as_tensor(z, layer.out_shape())?;
            let input = if i == 0 { x } else { &ys[i - 1] };
            let y = ys.get(i).unwrap_or(&g);
            let into = early.as_ref().filter(|_| i == 0);
            match layer.backward((input, &z, y), p, (&dy, into), i > 0 || need_dx)? {
                Some(dx) if i > 0 => dy = dx,
                dx => dx_main = dx,
            }
        }
        let dx = if accumulate {
            early
        } else {
            match (dx_main, shortcut(&g)?) {
                (Some(a), Some(b)) => Some((a + b)?),
                (a, b) => a.or(b),
            }
        };
        Ok(dx.filter(|_| need_dx))
    }
}

/// What the forward keeps: the stem's, each block's, and each block's output but the last (the op's own output).
struct KeptStack {
    stem: Option<StemKept>,
    blocks: Vec<Kept>,
    outs: Vec<CudaStorage>,
}

/// The op: the stem where it has one, then blocks one after the other (a stage, or all of a ResNet's), and what
/// the forward kept.
pub(crate) struct BlocksCudnn {
    stem: Option<Stem>,
    blocks: Vec<Block>,
    kept: Arc<Mutex<Option<KeptStack>>>,
    /// The data channels last (see the module's note): the layers' `ConvOp::nhwc`.
    nhwc: bool,
    /// Where the packed parameters' gradient goes when `p` was packed outside the autograd graph
    /// (`nn/packed_grads.rs`): handed over there, not returned to candle.
    grads_to: Option<Arc<crate::nn::packed_grads::PackedVars>>,
}

impl BlocksCudnn {
    /// The op of `stem` and `blocks`, whose layers were all made for data channels last or all not (the op's
    /// layout).
    pub(crate) fn new(stem: Option<Stem>, blocks: Vec<Block>) -> crate::error::Result<Self> {
        let in_blocks = blocks.iter().flat_map(|b| b.layers.iter().chain(&b.downsample));
        let mut layers = stem.as_ref().map(Stem::layer).into_iter().chain(in_blocks);
        let nhwc = layers.clone().next().is_some_and(|l| l.conv.nhwc);
        if layers.any(|l| l.conv.nhwc != nhwc) {
            return Err(crate::error::TrainError::InvalidModel("ResNet blocks: mixed layouts".into()));
        }
        Ok(Self { stem, blocks, kept: Arc::new(Mutex::new(None)), nhwc, grads_to: None })
    }

    /// The op with its parameters' gradient handed to `vars`' variables (`nn/packed_grads.rs`) instead of returned
    /// as `p`'s.
    pub(crate) fn with_grads_to(mut self, vars: Arc<crate::nn::packed_grads::PackedVars>) -> Self {
        self.grads_to = Some(vars);
        self
    }

    /// The shape outside the op of a tensor whose logical shape inside it is `[n, c, h, w]`: the same, or
    /// `[n, h, w, c]` channels last.
    fn outer(&self, logical: Shape) -> Shape {
        match (self.nhwc, logical.dims()) {
            (true, &[n, c, h, w]) => Shape::from((n, h, w, c)),
            _ => logical,
        }
    }

    /// The logical `[n, c, h, w]` inside the op of a tensor of shape `outer` outside it.
    fn logical(&self, outer: &Shape) -> candle_core::Result<Shape> {
        match (self.nhwc, outer.dims()) {
            (false, &[_, _, _, _]) => Ok(outer.clone()),
            (true, &[n, h, w, c]) => Ok(Shape::from((n, c, h, w))),
            _ => candle_core::bail!("ResNet blocks: expected a 4-d input, got {outer:?}"),
        }
    }
}

/// The blocks of `op` one after the other on CUDA as one autograd node (see the module's note); `p` packed as the
/// layers' offsets say.
pub(crate) fn train(x: &Tensor, p: &Tensor, op: BlocksCudnn) -> crate::error::Result<Tensor> {
    if op.blocks.is_empty() {
        return Err(crate::error::TrainError::InvalidModel("ResNet blocks: none".into()));
    }
    Ok(x.contiguous()?.apply_op2(&p.contiguous()?, op)?)
}

fn lock<T>(m: &Mutex<T>) -> candle_core::Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| candle_core::Error::Msg("ResNet block: poisoned".into()))
}

impl candle_core::CustomOp2 for BlocksCudnn {
    fn name(&self) -> &'static str {
        "resnet-blocks-train-cudnn"
    }

    super::cuda_only_cpu_fwd!(CustomOp2);

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ps: &CudaStorage,
        pl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        if !xl.is_contiguous() {
            candle_core::bail!("ResNet blocks: a contiguous input expected");
        }
        if ps.dtype() != candle_core::DType::F32 {
            candle_core::bail!("ResNet blocks: the parameters come packed in f32, got {:?}", ps.dtype());
        }
        let xl = Layout::contiguous_with_offset(self.logical(xl.shape())?, xl.start_offset());
        // The weights in the activations' type (see `Packed`): under bf16 one cast of the f32 pack.
        let cast = match ps.dtype() == xs.dtype() {
            true => None,
            false => Some((ps.to_dtype(pl, xs.dtype())?, Layout::contiguous(pl.shape()))),
        };
        let w = cast.as_ref().map_or((ps, pl), |(s, l)| (s, l));
        let p = Packed { f32: (ps, pl), w };
        let stem = self.stem.as_ref().map(|s| s.forward((xs, &xl), p)).transpose()?;
        let mut kept = KeptStack { stem, blocks: Vec::with_capacity(self.blocks.len()), outs: Vec::new() };
        let first = match (&self.stem, &kept.stem) {
            (Some(s), Some(k)) => (&k.pooled, Layout::contiguous(s.out_shape())),
            _ => (xs, xl),
        };
        let mut out = None;
        for (b, block) in self.blocks.iter().enumerate() {
            let input = match b {
                0 => (first.0, first.1.clone()),
                _ => (&kept.outs[b - 1], Layout::contiguous(self.blocks[b - 1].out_shape())),
            };
            let (y, k) = block.forward((input.0, &input.1), p)?;
            kept.blocks.push(k);
            if b + 1 < self.blocks.len() {
                kept.outs.push(y);
            } else {
                out = Some(y);
            }
        }
        *lock(&self.kept)? = Some(kept);
        let last = &self.blocks[self.blocks.len() - 1];
        Ok((out.expect("the last block ran"), self.outer(last.out_shape())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let kept = lock(&self.kept)?.take().ok_or_else(|| {
            candle_core::Error::Msg(
                "ResNet blocks: one backward per forward (the kept outputs are used up)".into(),
            )
        })?;
        let cuda = res.device().as_cuda_device()?.clone();
        let mut outs = Vec::with_capacity(kept.outs.len());
        for (b, o) in kept.outs.into_iter().enumerate() {
            outs.push(crate::device::tensor_of_storage(o, self.blocks[b].out_shape(), &cuda)?);
        }
        // Inside the op: the logical shapes over the same data (see the module's note).
        let inside = |t: &Tensor| t.reshape(self.logical(t.shape())?);
        let (p, x_in, res) = (p.detach(), inside(&x.detach().contiguous()?)?, inside(res)?);
        // The weights in the activations' type, as the forward read them (`Packed`).
        let pw = if p.dtype() == res.dtype() { p.clone() } else { p.to_dtype(res.dtype())? };
        // The parameters' gradients in f32 like `p` (under bf16 the batch norms' f32 gradients are not rounded to
        // bf16), written layer by layer (the alignment gaps stay zero).
        let dp = Tensor::zeros(p.elem_count(), p.dtype(), p.device())?;
        let packed = PackedGrads { f32: &p, w: &pw, dp: &dp };
        let mut dy = inside(&grad.contiguous()?)?;
        let mut dx = None;
        // The blocks' input: the images, or the stem's pooled output.
        let stem = self.stem.as_ref();
        let (stem_zy, pooled) = match (stem, kept.stem) {
            (Some(s), Some(StemKept { z, y, pooled })) => {
                (Some((z, y)), Some(crate::device::tensor_of_storage(pooled, s.out_shape(), &cuda)?))
            }
            (None, _) => (None, None),
            (Some(_), None) => candle_core::bail!("ResNet blocks: the stem's outputs were not kept"),
        };
        let need_first = stem.is_some() || x.track_op();
        for (b, (block, k)) in self.blocks.iter().zip(kept.blocks).enumerate().rev() {
            let input = if b > 0 { &outs[b - 1] } else { pooled.as_ref().unwrap_or(&x_in) };
            let out = if b + 1 == self.blocks.len() { &res } else { &outs[b] };
            match block.backward((input, out, &dy), (k, packed), b > 0 || need_first)? {
                Some(d) if b > 0 => dy = d,
                d => dx = d,
            }
        }
        // (Not `dx.take()` in the pattern's tuple: it would run, and lose the blocks' input gradient, without a
        // stem too.)
        if let (Some(s), Some(zy), Some(pooled)) = (stem, stem_zy, pooled) {
            let d = dx
                .take()
                .ok_or_else(|| candle_core::Error::Msg("ResNet blocks: no gradient for the stem".into()))?;
            dx = s.backward(&x_in, (zy, pooled), packed, &d, x.track_op())?;
        }
        let dx = dx.map(|d| d.reshape(x.shape())).transpose()?;
        match &self.grads_to {
            Some(vars) => {
                crate::nn::packed_grads::hand_over(vars, dp);
                Ok((dx, None))
            }
            None => Ok((dx, Some(dp))),
        }
    }
}
