//! Train-mode convolution + batch norm (+ ReLU) on CUDA as one candle custom op: cuDNN's convolution forward
//! (`conv.rs`) and batch norm (`batchnorm.rs`) back to back inside one node of the autograd graph, the GPU
//! counterpart of `super::super::conv_bn_cpu`.
//!
//! As two nodes, the convolution's output `z` is a tensor of the graph, and candle 0.11.1's backward gives it a
//! zero-filled gradient buffer and adds the batch norm's `dz` into it: a fill and an add over the activation (four
//! passes of its size) at each convolution, a tenth of a ResNet-50 step's memory traffic besides the layers'
//! own. Here `z` stays inside the op, and the batch norm's `dz` goes straight into the convolution's backward.
//!
//! Inputs `(x [N, C, H, W], w [O, C, k, k], gb [2 * O])`, `gb` being gamma then beta (in `x`'s data type, as the
//! batch norm op takes them); the backward returns `(dx, dW, dgb)`. The running statistics are updated in place
//! by cuDNN, as by the batch norm op. `z` is kept until the first backward takes it; a second backward computes
//! it again. The backward is not itself differentiable.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CudaStorage, Layout, Shape, Tensor};

use super::batchnorm::BnCudnn;
use super::handle::by_elem;
use crate::nn::conv_cpu::ConvOp;

/// `relu?(bn(conv(x, w)))` in train mode on CUDA as one node of the autograd graph (see the module's note);
/// `running` = (mean, variance), `[O]` f32, updated in place.
pub(crate) fn train(
    (x, w, gb): (&Tensor, &Tensor, &Tensor),
    conv: ConvOp,
    running: (&Tensor, &Tensor),
    (eps, momentum): (f64, f64),
    relu: bool,
) -> crate::error::Result<Tensor> {
    let op = ConvBnCudnn {
        conv,
        bn: Arc::new(BnCudnn::for_train(running, (eps, momentum), relu)),
        z: Arc::new(Mutex::new(None)),
    };
    Ok(x.contiguous()?.apply_op3(&w.contiguous()?, &gb.contiguous()?, op)?)
}

/// The op: the convolution's geometry, the batch norm's op (its saved statistics) and the kept `z`.
struct ConvBnCudnn {
    conv: ConvOp,
    bn: Arc<BnCudnn>,
    z: Arc<Mutex<Option<CudaStorage>>>,
}

fn lock<T>(m: &Mutex<T>) -> candle_core::Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| candle_core::Error::Msg("conv + batch norm: poisoned".into()))
}

/// The layouts of gamma and beta inside `gb` (`[2 * c]` from `gb`'s offset).
fn gamma_beta(gbl: &Layout, c: usize) -> candle_core::Result<(Layout, Layout)> {
    if !gbl.is_contiguous() || gbl.shape().dims() != [2 * c] {
        candle_core::bail!("conv + batch norm: parameters {:?} do not fit {c} channels", gbl.shape());
    }
    let at = gbl.start_offset();
    Ok((Layout::contiguous_with_offset(c, at), Layout::contiguous_with_offset(c, at + c)))
}

impl candle_core::CustomOp3 for ConvBnCudnn {
    fn name(&self) -> &'static str {
        "conv-batch-norm-train-cudnn"
    }

    super::cuda_only_cpu_fwd!(CustomOp3);

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
        gbs: &CudaStorage,
        gbl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (gl, bl) = gamma_beta(gbl, self.conv.out)?;
        let (z, shape) = super::conv::forward(&self.conv, xs, xl, ws, wl)?;
        let zl = Layout::contiguous(shape);
        let (z_in, g_in, b_in) = ((&z, &zl), (gbs, &gl), (gbs, &bl));
        let y = by_elem!(xs.dtype(), "conv + batch norm", T => self.bn.fwd_as::<T>(z_in, g_in, b_in))?;
        *lock(&self.z)? = Some(z);
        Ok(y)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        gb: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let train = self.bn.train_mode().ok_or_else(|| {
            candle_core::Error::Msg("conv + batch norm: a backward without a train-mode forward".into())
        })?;
        // The forward's z, taken by the first backward; a second one computes it again.
        let kept = lock(&self.z)?.take();
        let z = match kept {
            Some(z) => {
                crate::device::tensor_of_storage(z, res.shape().clone(), res.device().as_cuda_device()?)?
            }
            None => x.detach().contiguous()?.apply_op2_no_bwd(&w.detach().contiguous()?, &self.conv)?,
        };
        let gamma = gb.detach().narrow(0, 0, self.conv.out)?;
        let (dz, dgamma, dbeta) = self.bn.train_grads(train, &z, &gamma, (res, grad))?;
        drop(z);
        let (dx, dw) = self.conv.grads(x, w, &dz, x.track_op())?;
        Ok((dx, Some(dw), Some(Tensor::cat(&[&dgamma, &dbeta], 0)?)))
    }
}
