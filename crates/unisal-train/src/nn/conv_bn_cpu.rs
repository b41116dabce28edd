//! Train-mode convolution + batch norm (+ ReLU) on the CPU as one candle custom op: the convolution of
//! `conv_cpu.rs` and the batch norm of `batchnorm_cpu.rs`, run back to back inside one node of the autograd graph.
//!
//! As two nodes, the convolution's output `z` is a tensor of the graph, and candle 0.11.1's backward gives it a
//! zero-filled gradient buffer and adds the batch norm's `dz` into it (three passes over the activation), before
//! the convolution's backward copies `dz` from `[N, O, P]` into the `[O, N * P]` it multiplies by (two more).
//! Here `z` stays inside the op (kept for the backward, or recomputed if a second backward comes), and the batch
//! norm's backward writes `dz` straight in the layout the convolution's backward multiplies by: `[O, N * P]` for
//! its batch path, `[N, O, P]` for its per-sample path (`conv_sample_cpu.rs`). Inputs:
//! `(x [N, C, H, W], w [O, C, k, k], gb [2 * O])`, `gb` being gamma then beta; the backward returns
//! `(dx, dW, dgb)`. The batch statistics are left in the op for the layer's running statistics. The backward is
//! not itself differentiable.

use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Layout, Shape, Storage, Tensor};

use super::batchnorm_cpu::{
    backward_into, backward_sums, forward as bn_forward, normalise, stats_of_planes, BnGrad, BnStats,
    PlaneOrder,
};
use super::conv_backward::{dw_offset, unpack_grads};
use super::conv_cpu::ConvOp;
use super::conv_sample_cpu::Dy;
use super::cpu_util::{cpu_op, Elem, Kernel};
use super::gemm_cpu::with_scratch;
use super::op_profile::timed_cpu as timed;

/// What a forward leaves for its backward.
#[derive(Default)]
pub(crate) struct Saved {
    /// The batch statistics of `z`.
    pub stats: BnStats,
    /// `z = conv(x, w)` (a `Vec<T>`), taken by the first backward.
    z: Option<Box<dyn Any + Send>>,
}

/// `(x, w, gb) -> bn(conv(x, w))`, or `max(0, bn(conv(x, w)))` with `relu`, in train mode.
#[derive(Clone)]
pub(crate) struct ConvBnTrain {
    pub conv: ConvOp,
    pub eps: f64,
    pub relu: bool,
    pub saved: Arc<Mutex<Saved>>,
}

fn lock(saved: &Mutex<Saved>) -> candle_core::Result<MutexGuard<'_, Saved>> {
    saved.lock().map_err(|_| candle_core::Error::Msg("conv + batch norm: poisoned state".into()))
}

impl ConvBnTrain {
    /// `P = Ho * Wo`.
    fn plane(&self) -> usize {
        self.conv.g.ho() * self.conv.g.wo()
    }

    /// The checked output shape of `(x, w)` and a `gb` of `2 * O` values.
    fn check(&self, x: &Layout, w: &Layout, gb: &Layout) -> candle_core::Result<Shape> {
        let shape = Kernel::shape(&self.conv, &[x, w])?;
        if gb.shape().elem_count() != 2 * self.conv.out {
            candle_core::bail!(
                "conv + batch norm: {:?} parameters for {} channels",
                gb.shape(),
                self.conv.out
            );
        }
        Ok(shape)
    }
}

impl Kernel for ConvBnTrain {
    const NAME: &'static str = "conv-bn-train";
    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        let [x, w, gb] = inputs else { candle_core::bail!("conv + batch norm: three inputs expected") };
        self.check(x, w, gb)
    }
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let [x, w, gb] = inputs else { candle_core::bail!("conv + batch norm: three inputs expected") };
        let (o, hw) = (self.conv.out, self.plane());
        let (gamma, beta) = gb.split_at(o);
        // On the per-sample path the convolution also sums each output plane while it is in cache, which
        // leaves the batch norm one pass instead of two.
        let (z, sums) = self.conv.forward_with_sums(x, w);
        let (y, stats) = timed("conv-bn: batch norm", || match sums {
            Some(sums) => {
                let stats = stats_of_planes(&sums, o, hw);
                (normalise(&z, gamma, beta, &stats.mean, &stats.var, self.eps, self.relu, hw), stats)
            }
            None => bn_forward(&z, gamma, beta, (o, hw), (self.eps, self.relu)),
        });
        *lock(&self.saved)? = Saved { stats, z: Some(Box::new(z)) };
        Ok(y)
    }
}

cpu_op!(CustomOp3 for ConvBnTrain {
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        gb: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // No input gradient where nothing upstream needs one (the images into the first layer).
        let need_dx = x.track_op();
        let (x, w) = (x.detach().contiguous()?, w.detach().contiguous()?);
        let gb_host = gb.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let op = ConvBnBackward { fwd: self.clone(), need_dx, gb: gb_host, y: res.contiguous()? };
        let packed = x.apply_op3_no_bwd(&w, &grad.contiguous()?, &op)?;
        let (dx, dw, dw_end) = unpack_grads(&packed, &x, &w, need_dx)?;
        let dgb = packed.narrow(0, dw_end, 2 * self.conv.out)?;
        Ok((dx, Some(dw), Some(dgb)))
    }
});

/// `(x, w, dy) -> [dx | padding | dW | dgamma | dbeta]` (flat, `dW` at [`dw_offset`]; no `dx` without
/// `need_dx`), with the forward's op (its kept `z` and patch matrix), `gb` read on the host and the forward's
/// output `y` (where the ReLU cut).
struct ConvBnBackward {
    fwd: ConvBnTrain,
    need_dx: bool,
    gb: Vec<f64>,
    y: Tensor,
}

/// The values of a contiguous CPU tensor of element type `T`.
fn cpu_values<T: Elem>(
    t: &Tensor,
    f: impl FnOnce(&[T]) -> candle_core::Result<Vec<T>>,
) -> candle_core::Result<Vec<T>> {
    let (storage, layout) = t.storage_and_layout();
    let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) else {
        candle_core::bail!("conv + batch norm backward: the output is not a contiguous CPU tensor")
    };
    f(&T::cpu_storage_as_slice(cpu)?[start..end])
}

impl Kernel for ConvBnBackward {
    const NAME: &'static str = "conv-bn-train-backward";
    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        let [x, w, dy] = inputs else {
            candle_core::bail!("conv + batch norm backward: three inputs expected")
        };
        let out = Kernel::shape(&self.fwd.conv, &[x, w])?;
        if dy.shape() != &out || self.gb.len() != 2 * self.fwd.conv.out {
            candle_core::bail!("conv + batch norm backward: gradient {:?} for output {out:?}", dy.shape());
        }
        let x_len = if self.need_dx { x.shape().elem_count() } else { 0 };
        Ok(Shape::from(dw_offset(x_len) + w.shape().elem_count() + self.gb.len()))
    }
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let [x, w, dy] = inputs else {
            candle_core::bail!("conv + batch norm backward: three inputs expected")
        };
        let (conv, o) = (&self.fwd.conv, self.fwd.conv.out);
        let (kept, stats) = {
            let mut saved = lock(&self.fwd.saved)?;
            (saved.z.take(), saved.stats.clone())
        };
        // A second backward through the same forward finds no z and recomputes it.
        let z = match kept.and_then(|z| z.downcast::<Vec<T>>().ok()) {
            Some(z) if z.len() == dy.len() => *z,
            _ => conv.forward(x, w, None),
        };
        let grad = BnGrad { gamma: &self.gb[..o], stats: &stats, eps: self.fwd.eps, relu: self.fwd.relu };
        cpu_values(&self.y, |y: &[T]| {
            if y.len() != dy.len() {
                candle_core::bail!(
                    "conv + batch norm backward: output of {} values for {}",
                    y.len(),
                    dy.len()
                );
            }
            let hw = self.fwd.plane();
            let (mut out, dgamma, dbeta) = if conv.per_sample() {
                // The batch norm's sums first; then each sample's dz is written where the convolution's
                // backward uses it, in cache, instead of for the whole batch.
                let (planes, dgamma, dbeta) =
                    timed("conv-bn-backward: batch norm", || backward_sums((dy, &z, y), (o, hw), &grad));
                let fill = |n: usize, dz: &mut [T]| {
                    for (oi, dz) in dz.chunks_mut(hw).enumerate().take(o) {
                        planes.write(n * o + oi, (dy, &z, y), dz);
                    }
                };
                (conv.backward_from((x, w), Dy::Fill(&fill), self.need_dx, 2 * o), dgamma, dbeta)
            } else {
                with_scratch(dy.len(), |dz: &mut [T]| {
                    // dz in [O, N * P], the layout the convolution's products take.
                    let (dgamma, dbeta) = timed("conv-bn-backward: batch norm", || {
                        backward_into((dy, &z, y), (o, hw), &grad, dz, PlaneOrder::ChannelMajor)
                    });
                    let dz = Dy::Slice(dz, PlaneOrder::ChannelMajor);
                    let out = conv.backward_from((x, w), dz, self.need_dx, 2 * o);
                    (out, dgamma, dbeta)
                })
            };
            drop(z);
            let tail = out.len() - 2 * o;
            for (t, v) in out[tail..].iter_mut().zip(dgamma.iter().chain(&dbeta)) {
                *t = T::of(*v);
            }
            Ok(out)
        })
    }
}

cpu_op!(CustomOp3 for ConvBnBackward {});

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use crate::nn::{BatchNorm2d, Conv2d};

    fn var(shape: &[usize], seed: f64) -> Var {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|i| ((i as f64 + seed) * 0.7548).sin() * 1.3 + 0.1 * seed).collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f64> {
        t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
    }

    fn close(a: &[f64], b: &[f64], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let worst = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-10, "{what}: differs by {worst}");
    }

    /// One layer's output, the gradients of x (if it is a variable), w, gamma and beta for the loss
    /// `sum(y * r)`, and the running statistics after the step: fused, or layer by layer.
    fn step(
        (x, x_is_var): (&Var, bool),
        (cout, k, stride, pad): (usize, usize, usize, usize),
        relu: bool,
        fused: bool,
    ) -> Vec<Vec<f64>> {
        let cin = x.dim(1).unwrap();
        let w = var(&[cout, cin, k, k], 2.0);
        let conv = Conv2d::from_vars(w.clone(), None, stride, pad);
        let (g, b) = (var(&[cout], 3.0), var(&[cout], 4.0));
        let bn = BatchNorm2d::from_vars(g.clone(), b.clone(), var(&[cout], 5.0), var(&[cout], 6.0));
        let input = if x_is_var { x.as_tensor().clone() } else { x.as_tensor().detach() };
        let y = if fused {
            conv.train_bn_cpu(&input, &bn, relu).unwrap().expect("the fused op applies")
        } else {
            let z = conv.forward_t(&input, true).unwrap();
            if relu { bn.forward_relu(&z, true) } else { bn.forward(&z, true) }.unwrap()
        };
        let r = var(y.dims(), 7.0);
        let grads = (&y * r.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        let mut out = vec![flat(&y)];
        if x_is_var {
            out.push(flat(grads.get(x.as_tensor()).unwrap()));
        } else {
            assert!(grads.get(x.as_tensor()).is_none());
        }
        for v in [&w, &g, &b] {
            out.push(flat(grads.get(v.as_tensor()).unwrap()));
        }
        out.push(flat(bn.running_mean().as_tensor()));
        out.push(flat(bn.running_var().as_tensor()));
        out
    }

    #[test]
    fn the_fused_op_matches_the_convolution_then_the_batch_norm() {
        // (input shape, (out channels, kernel, stride, padding), relu, x a variable). Up to 64 outputs and a
        // batch of two or more: the per-sample convolution (with the plane sums and dz on demand, several samples
        // a partial sum at a batch of 10); a batch of one or more than 64 outputs: the batch path.
        let cases: [(&[usize], _, bool, bool); 9] = [
            (&[2, 3, 7, 6], (4, 3, 1, 1), true, true),
            (&[10, 3, 6, 6], (6, 3, 2, 1), true, true),
            (&[2, 2, 5, 5], (66, 3, 1, 1), true, true),
            (&[3, 4, 9, 9], (5, 3, 2, 1), false, true),
            (&[2, 4, 6, 6], (8, 1, 2, 0), true, true),
            (&[2, 3, 5, 5], (4, 3, 1, 1), true, false),
            (&[1, 2, 8, 8], (3, 7, 2, 3), true, true),
            // Winograd's transforms (`winograd_cpu.rs`) on the per-sample path and on the batch path.
            (&[3, 8, 12, 12], (8, 3, 1, 1), true, true),
            (&[2, 8, 12, 12], (72, 3, 1, 1), true, true),
        ];
        for (shape, geometry, relu, x_is_var) in cases {
            let x = var(shape, 1.0);
            let fused = step((&x, x_is_var), geometry, relu, true);
            let layers = step((&x, x_is_var), geometry, relu, false);
            for (i, (a, b)) in fused.iter().zip(&layers).enumerate() {
                close(a, b, &format!("{shape:?} {geometry:?} relu {relu}: part {i}"));
            }
            // The ReLU cut something, so its mask was exercised.
            assert!(!relu || fused[0].contains(&0.0));
        }
    }

    #[test]
    fn one_value_a_channel_is_refused_before_anything_runs() {
        let x = var(&[1, 3, 1, 1], 1.0);
        let conv = Conv2d::from_vars(var(&[4, 3, 1, 1], 2.0), None, 1, 0);
        let bn = BatchNorm2d::from_vars(var(&[4], 3.0), var(&[4], 4.0), var(&[4], 5.0), var(&[4], 6.0));
        let before = flat(bn.running_mean().as_tensor());
        let err = conv.train_bn_cpu(x.as_tensor(), &bn, true).unwrap_err().to_string();
        assert!(err.contains("more than one value per channel"), "{err}");
        assert_eq!(flat(bn.running_mean().as_tensor()), before);
    }

    #[test]
    fn a_second_backward_recomputes_the_convolution_output() {
        let x = var(&[2, 3, 6, 6], 1.0);
        let w = var(&[4, 3, 3, 3], 2.0);
        let conv = Conv2d::from_vars(w.clone(), None, 1, 1);
        let bn = BatchNorm2d::from_vars(var(&[4], 3.0), var(&[4], 4.0), var(&[4], 5.0), var(&[4], 6.0));
        let y = conv.train_bn_cpu(x.as_tensor(), &bn, true).unwrap().unwrap();
        let loss = y.sqr().unwrap().sum_all().unwrap();
        let grads = |l: &Tensor| {
            let g = l.backward().unwrap();
            [x.as_tensor(), w.as_tensor()].map(|v| flat(g.get(v).unwrap()))
        };
        let (first, second) = (grads(&loss), grads(&loss));
        for (a, b) in first.iter().zip(&second) {
            close(a, b, "second backward");
        }
    }
}
