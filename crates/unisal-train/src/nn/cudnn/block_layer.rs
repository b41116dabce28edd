//! The layers of the block op (`block.rs`): a convolution with its batch norm (and ReLU) as the op runs it on
//! storages (`BlockLayer`, `conv_bn.rs`'s work), and the network's stem before the blocks (`Stem`: the 7x7
//! convolution's layer and the max pool, in the op's layout), so that the op runs from the images to the last
//! block.

use candle_core::backend::BackendStorage;
use candle_core::{CudaStorage, Layout, Shape, Tensor};

use super::batchnorm::BnCudnn;
use super::batchnorm_bwd::ParamGradsInto;
use super::conv_accumulate::ConvDataAccumulate;
use super::handle::by_elem;
use crate::nn::conv_cpu::ConvOp;
use crate::nn::pool_cpu::{MaxPool, MaxPoolBackward};

/// The packed parameters as the forward reads them: `f32`, the pack itself (f32: the batch norms take their gamma and
/// beta from it, as cuDNN wants them whatever the data's type); `w`, the same in the activations' type, whose
/// weights the convolutions read (the pack itself under f32; under bf16 one cast of the whole pack a pass, not a
/// cast of each batch norm's parameters at each call).
#[derive(Clone, Copy)]
pub(super) struct Packed<'a> {
    pub(super) f32: (&'a CudaStorage, &'a Layout),
    pub(super) w: (&'a CudaStorage, &'a Layout),
}

/// [`Packed`] as the backward reads it, with `dp`, the parameters' gradient the layers write into.
#[derive(Clone, Copy)]
pub(super) struct PackedGrads<'a> {
    pub(super) f32: &'a Tensor,
    pub(super) w: &'a Tensor,
    pub(super) dp: &'a Tensor,
}

/// One convolution + batch norm of a block: its geometry, its batch norm op (with ReLU on the main path but for
/// its last layer) and where its parameters are in the packed `p`.
pub(crate) struct BlockLayer {
    pub(super) conv: ConvOp,
    bn: BnCudnn,
    /// Offset of the weight `[out, c, k, k]` in `p`.
    w_at: usize,
    /// Offset of gamma then beta (`2 * out`) in `p`.
    gb_at: usize,
}

impl BlockLayer {
    /// A layer of `conv`'s geometry with the running statistics `running`, `(eps, momentum)`, ReLU if `relu`, its
    /// parameters at `w_at` and `gb_at` of `p`.
    pub(crate) fn new(
        conv: ConvOp,
        running: (&Tensor, &Tensor),
        bn_args: (f64, f64),
        relu: bool,
        (w_at, gb_at): (usize, usize),
    ) -> Self {
        let bn = BnCudnn::for_train(running, bn_args, relu).channels_last(conv.nhwc);
        Self { conv, bn, w_at, gb_at }
    }

    fn w_layout(&self, p: &Layout) -> Layout {
        let g = self.conv.g;
        Layout::contiguous_with_offset((self.conv.out, g.c, g.k, g.k), p.start_offset() + self.w_at)
    }

    fn gb_layouts(&self, p: &Layout) -> (Layout, Layout) {
        let (c, at) = (self.conv.out, p.start_offset() + self.gb_at);
        (Layout::contiguous_with_offset(c, at), Layout::contiguous_with_offset(c, at + c))
    }

    pub(super) fn out_shape(&self) -> Shape {
        let g = self.conv.g;
        Shape::from((g.n, self.conv.out, g.ho(), g.wo()))
    }

    /// `bn(conv(x))` (ReLU'd where the layer has it) and the convolution's output `z`.
    pub(super) fn forward(
        &self,
        (xs, xl): (&CudaStorage, &Layout),
        p: Packed<'_>,
    ) -> candle_core::Result<(CudaStorage, CudaStorage)> {
        let (z, shape) = super::conv::forward(&self.conv, xs, xl, p.w.0, &self.w_layout(p.w.1))?;
        let zl = Layout::contiguous(shape);
        let (ps, (gl, bl)) = (p.f32.0, self.gb_layouts(p.f32.1));
        let (y, _) =
            by_elem!(xs.dtype(), "ResNet block", T => self.bn.fwd_as::<T>((&z, &zl), (ps, &gl), (ps, &bl)))?;
        Ok((y, z))
    }

    /// The gradient of the layer's input `x` (only where `need_dx`) for its kept `z`, its output `y` (for the
    /// ReLU's mask; unused without one) and the output's gradient `dy`, or, with `into`, that gradient added into
    /// `into` in place (`conv_accumulate.rs`; then `None`); the parameters' gradients are written into `dp` at the
    /// layer's offsets (copied out at once: as views they would keep the whole backward buffers alive).
    pub(super) fn backward(
        &self,
        (x, z, y): (&Tensor, &Tensor, &Tensor),
        PackedGrads { f32: p, w: pw, dp }: PackedGrads<'_>,
        (dy, into): (&Tensor, Option<&Tensor>),
        need_dx: bool,
    ) -> candle_core::Result<Option<Tensor>> {
        let train = self
            .bn
            .train_mode()
            .ok_or_else(|| candle_core::Error::Msg("ResNet block: no train mode".into()))?;
        let out = self.conv.out;
        let gamma = p.narrow(0, self.gb_at, out)?;
        // cuDNN writes the f32 gradients of gamma and beta into `dp` itself (`ParamGradsInto`).
        let into_dp = ParamGradsInto { dp: dp.clone(), gamma_at: self.gb_at };
        let dz = self.bn.train_grads_into(train, z, &gamma, (y, dy), into_dp)?;
        let g = self.conv.g;
        let w = pw.narrow(0, self.w_at, out * g.c * g.k * g.k)?.reshape((out, g.c, g.k, g.k))?;
        let (dx, dw) = match into {
            Some(target) => {
                let (_, dw) = self.conv.grads(x, &w, &dz, false)?;
                let op = ConvDataAccumulate { conv: self.conv.clone() };
                target.inplace_op3(&w.contiguous()?, &dz.contiguous()?, &op)?;
                (None, dw)
            }
            None => self.conv.grads(x, &w, &dz, need_dx)?,
        };
        dp.slice_set(&dw.flatten_all()?.to_dtype(dp.dtype())?.contiguous()?, 0, self.w_at)?;
        Ok(dx)
    }
}

/// The stem: a layer (ReLU'd) and a max pool after it, in the layer's layout.
pub(crate) struct Stem {
    layer: BlockLayer,
    pool: MaxPool,
}

/// What the forward keeps of the stem: the layer's `z` and output, and the pool's output (the blocks' input).
pub(super) struct StemKept {
    pub(super) z: CudaStorage,
    pub(super) y: CudaStorage,
    pub(super) pooled: CudaStorage,
}

impl Stem {
    /// The stem of `layer` then a max pool of window `k`, `stride` and `pad` over its output.
    pub(crate) fn new(layer: BlockLayer, (k, stride, pad): (usize, usize, usize)) -> Self {
        let g = layer.conv.g;
        let pool = MaxPool { h: g.ho(), w: g.wo(), k, stride, pad, nhwc: layer.conv.nhwc };
        Self { layer, pool }
    }

    /// The stem's convolution layer.
    pub(super) fn layer(&self) -> &BlockLayer {
        &self.layer
    }

    /// The pool's output shape (logical).
    pub(crate) fn out_shape(&self) -> Shape {
        let (g, p) = (self.layer.conv.g, &self.pool);
        Shape::from((g.n, self.layer.conv.out, p.out(g.ho()), p.out(g.wo())))
    }

    /// `pool(relu(bn(conv(x))))` and what the backward needs.
    pub(super) fn forward(&self, x: (&CudaStorage, &Layout), p: Packed<'_>) -> candle_core::Result<StemKept> {
        let (y, z) = self.layer.forward(x, p)?;
        let (pooled, _) = super::pool::forward(&self.pool, &y, &Layout::contiguous(self.layer.out_shape()))?;
        Ok(StemKept { z, y, pooled })
    }

    /// The gradient of the images `x` (where `need_dx`) for the kept `z` and output `y` of the layer, the pool's
    /// output `pooled` and its gradient `dpooled`; the layer's parameters' gradients are written into `dp`.
    pub(super) fn backward(
        &self,
        x: &Tensor,
        ((z, y), pooled): ((CudaStorage, CudaStorage), Tensor),
        p: PackedGrads<'_>,
        dpooled: &Tensor,
        need_dx: bool,
    ) -> candle_core::Result<Option<Tensor>> {
        let cuda = dpooled.device().as_cuda_device()?.clone();
        let as_tensor = |s: CudaStorage, shape: Shape| crate::device::tensor_of_storage(s, shape, &cuda);
        let shape = self.layer.out_shape();
        let (z, y) = (as_tensor(z, shape.clone())?, as_tensor(y, shape)?);
        let dy = y.apply_op3_no_bwd(&pooled, &dpooled.contiguous()?, &MaxPoolBackward(self.pool))?;
        drop(pooled);
        self.layer.backward((x, &z, &y), p, (&dy, None), need_dx)
    }
}
