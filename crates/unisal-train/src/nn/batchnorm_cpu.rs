//! Train-mode batch normalisation on the CPU as one candle custom op with a closed-form backward.
//!
//! Built from candle ops, train-mode BatchNorm costs a dozen passes over the activation, and its statistics (and
//! the gradients of every broadcast) are sums over dims (0, 2, 3), which candle 0.11.1's CPU backend computes with
//! two integer divisions per element. Here each `(n, c)` plane of `[N, C, H, W]` is contiguous, so the per-channel
//! sums are plain loops (accumulated in f64), split over channels or planes on candle's thread count.
//!
//! Forward: `y = gamma * (x - mean) * invstd + beta`, `invstd = 1 / sqrt(var + eps)`, biased `var`, `M = N * H * W`.
//! Backward: `dbeta = sum dy`, `dgamma = sum dy * xhat`,
//! `dx = gamma * invstd * (dy - dbeta / M - xhat * dgamma / M)`. The batch mean and variance are kept in the op
//! ([`BnStats`]) for the running statistics and for the backward. With `relu`, the op is `max(0, y)` and `dy` is
//! masked where the output is 0 (torch's ReLU gradient), which saves candle's half-dozen passes of ReLU's own
//! backward. The backward is not itself differentiable. `conv_bn_cpu.rs` runs the same forward and backward
//! inside one convolution + batch norm op.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Layout, Shape, Tensor};

use super::batchnorm::eval_backward;
use super::cpu_util::{cpu_op, dims4, for_each_item, map_items, Elem, Kernel};
use super::lanes_cpu::lane_sums;

/// Per-channel batch statistics of one forward call.
#[derive(Debug, Clone, Default)]
pub(crate) struct BnStats {
    /// Batch mean.
    pub mean: Vec<f64>,
    /// Biased batch variance.
    pub var: Vec<f64>,
}

/// `(x [N, C, H, W], gamma [C], beta [C]) -> y` (or `max(0, y)` with `relu`), train mode.
#[derive(Debug, Clone)]
pub(crate) struct BnTrain {
    /// H * W of the input.
    pub hw: usize,
    pub eps: f64,
    pub relu: bool,
    pub stats: Arc<Mutex<BnStats>>,
}

/// `(dy, x, out) -> [dx (N*C*H*W) | dgamma (C) | dbeta (C)]`, flat, with gamma and the statistics of the forward.
struct BnBackward {
    hw: usize,
    eps: f64,
    relu: bool,
    gamma: Vec<f64>,
    stats: BnStats,
}

/// `(N, C, H * W)` of a non-empty `[N, C, H, W]` input.
fn dims(layout: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    match dims4(layout, "batch norm")? {
        (n, c, h, w) if n * h * w > 0 => Ok((n, c, h * w)),
        _ => candle_core::bail!("batch norm: expected a non-empty [N, C, H, W], got {:?}", layout.shape()),
    }
}

/// `y = gamma * (x - mean) / sqrt(var + eps) + beta` per channel, `max(0, y)` with `relu`: the output pass of train
/// mode (batch statistics) and eval mode (running statistics).
#[allow(clippy::too_many_arguments)]
pub(super) fn normalise<T: Elem>(
    x: &[T],
    g: &[T],
    b: &[T],
    mean: &[f64],
    var: &[f64],
    eps: f64,
    relu: bool,
    hw: usize,
) -> Vec<T> {
    let c = g.len();
    let floor = T::of(if relu { 0.0 } else { f64::NEG_INFINITY });
    let mut y = vec![T::default(); x.len()];
    for_each_item(&mut y, hw, |p, out| {
        let ch = p % c;
        let (scale, shift) = affine(g[ch].f(), b[ch].f(), mean[ch], var[ch], eps);
        for (o, &v) in out.iter_mut().zip(&x[p * hw..(p + 1) * hw]) {
            let t = v * scale + shift;
            *o = if t < floor { floor } else { t };
        }
    });
    y
}

/// A channel's output map `y = x * scale + shift` as the output pass computes it: `scale = gamma / sqrt(var + eps)`,
/// `shift = beta - mean * scale` (in f64, then rounded to `T`).
fn affine<T: Elem>(gamma: f64, beta: f64, mean: f64, var: f64, eps: f64) -> (T, T) {
    let scale = gamma / (var + eps).sqrt();
    (T::of(scale), T::of(beta - mean * scale))
}

/// The `n` planes of channel `ch`.
fn planes<T>(x: &[T], ch: usize, c: usize, hw: usize) -> impl Iterator<Item = &[T]> {
    x.chunks(hw).skip(ch).step_by(c)
}

/// Train-mode output and batch statistics of `x: [N, C, hw]` (`c` channels).
pub(super) fn forward<T: Elem>(
    x: &[T],
    g: &[T],
    b: &[T],
    (c, hw): (usize, usize),
    (eps, relu): (f64, bool),
) -> (Vec<T>, BnStats) {
    let m = (x.len() / c) as f64;
    // One pass: sums of (x - x0) and its square (f64 across blocks, `lane_sums`), shifted by the channel's first
    // value so that a large mean does not cancel the variance away.
    let stats = map_items(c, x.len(), |ch| {
        let x0 = planes(x, ch, c, hw).next().map_or(T::zero(), |p| p[0]);
        let (mut s1, mut s2) = (0.0, 0.0);
        for p in planes(x, ch, c, hw) {
            let [a, b] = lane_sums(p, p, p, |v, _, _| {
                let d = v - x0;
                [d, d * d]
            });
            (s1, s2) = (s1 + a, s2 + b);
        }
        let mean = s1 / m;
        (x0.f() + mean, (s2 / m - mean * mean).max(0.0))
    });
    let (mean, var): (Vec<f64>, Vec<f64>) = stats.into_iter().unzip();
    let y = normalise(x, g, b, &mean, &var, eps, relu, hw);
    (y, BnStats { mean, var })
}

/// One plane's shifted sums `[x0, sum(v - x0), sum((v - x0)^2)]`, `x0` its first value: what the per-sample
/// convolution (`conv_sample_cpu.rs`) computes of each output plane while it is in cache.
pub(super) fn plane_sums<T: Elem>(plane: &[T]) -> [f64; 3] {
    let x0 = plane.first().copied().unwrap_or(T::zero());
    let [s1, s2] = lane_sums(plane, plane, plane, |v, _, _| {
        let d = v - x0;
        [d, d * d]
    });
    [x0.f(), s1, s2]
}

/// The batch statistics of `[N, C, hw]` from the [`plane_sums`] of its `N * C` planes (in that order): each
/// plane's mean and sum of squared deviations, combined over the samples (Chan et al.'s pairwise update, in f64).
pub(super) fn stats_of_planes(sums: &[[f64; 3]], c: usize, hw: usize) -> BnStats {
    let n = sums.len() / c;
    let hwf = hw as f64;
    let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let plane = |i: usize| {
            let [x0, s1, s2] = sums[i * c + ch];
            (x0 + s1 / hwf, (s2 - s1 * s1 / hwf).max(0.0))
        };
        let mu = (0..n).map(|i| plane(i).0).sum::<f64>() / n as f64;
        let m2: f64 = (0..n)
            .map(|i| {
                let (m, dev) = plane(i);
                dev + hwf * (m - mu) * (m - mu)
            })
            .sum();
        (mean[ch], var[ch]) = (mu, m2 / (n as f64 * hwf));
    }
    BnStats { mean, var }
}

/// `dy`, zero where the ReLU output is 0.
fn masked<T: Elem>(d: T, out: T, relu: bool) -> T {
    if relu && out <= T::zero() {
        T::zero()
    } else {
        d
    }
}

/// What the train-mode backward needs of its forward: gamma (as f64, exactly the values the forward read), the
/// batch statistics, `eps` and whether a ReLU followed.
pub(super) struct BnGrad<'a> {
    pub gamma: &'a [f64],
    pub stats: &'a BnStats,
    pub eps: f64,
    pub relu: bool,
}

/// The order in which [`backward_into`] writes the planes of `dx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PlaneOrder {
    /// `[N, C, hw]`, the input's.
    SampleMajor,
    /// `[C, N, hw]`: the `dY` a convolution's backward multiplies by (`conv_bn_cpu.rs`).
    ChannelMajor,
}

/// `dx` of the train-mode batch norm of `x: [N, C, hw]` with output `y` into `dx` (planes in `order`), and
/// `(dgamma, dbeta)`. With a ReLU, `dy` counts only where the output is above 0 (torch's ReLU gradient).
pub(super) fn backward_into<T: Elem>(
    (dy, x, y): (&[T], &[T], &[T]),
    (c, hw): (usize, usize),
    p: &BnGrad<'_>,
    dx: &mut [T],
    order: PlaneOrder,
) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() / (c * hw);
    let (planes, dgamma, dbeta) = backward_sums((dy, x, y), (c, hw), p);
    for_each_item(&mut dx[..x.len()], hw, |q, dxp| {
        let plane = match order {
            PlaneOrder::SampleMajor => q,
            PlaneOrder::ChannelMajor => (q % n) * c + q / n,
        };
        planes.write(plane, (dy, x, y), dxp);
    });
    (dgamma, dbeta)
}

/// The first pass of the train-mode backward of `x: [N, C, hw]`: its per-channel sums, as what turns one plane
/// of `(dy, x, y)` into `dx` ([`DxPlanes::write`]), and `(dgamma, dbeta)`.
pub(super) fn backward_sums<T: Elem>(
    (dy, x, y): (&[T], &[T], &[T]),
    (c, hw): (usize, usize),
    p: &BnGrad<'_>,
) -> (DxPlanes<T>, Vec<f64>, Vec<f64>) {
    let (st, relu) = (p.stats, p.relu);
    let m = (x.len() / c) as f64;
    let invstd: Vec<f64> = st.var.iter().map(|v| 1.0 / (v + p.eps).sqrt()).collect();
    let sums = map_items(c, x.len(), |ch| {
        let (mut s_dy, mut s_dyx) = (0.0, 0.0);
        let mean = T::of(st.mean[ch]);
        let rows = planes(dy, ch, c, hw).zip(planes(x, ch, c, hw)).zip(planes(y, ch, c, hw));
        for ((d, xp), yp) in rows {
            let [a, b] = lane_sums(d, xp, yp, |d, v, y| {
                let gm = masked(d, y, relu);
                [gm, gm * (v - mean)]
            });
            (s_dy, s_dyx) = (s_dy + a, s_dyx + b);
        }
        (s_dy, s_dyx * invstd[ch])
    });
    let coef = (0..c)
        .map(|ch| {
            let (s_dy, s_dyx) = sums[ch];
            let k = T::of(p.gamma[ch] * invstd[ch]);
            [k, T::of(st.mean[ch]), T::of(invstd[ch]), T::of(s_dy / m), T::of(s_dyx / m)]
        })
        .collect();
    let (dgamma, dbeta) = sums.into_iter().map(|(s_dy, s_dyx)| (s_dyx, s_dy)).unzip();
    (DxPlanes { coef, relu }, dgamma, dbeta)
}

/// Per channel `[gamma * invstd, mean, invstd, mean(dy), mean(dy * xhat)]` in `T`: the second pass of the
/// train-mode backward, one plane at a time.
pub(super) struct DxPlanes<T> {
    coef: Vec<[T; 5]>,
    relu: bool,
}

impl<T: Elem> DxPlanes<T> {
    /// `dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))` for plane `plane` of the whole
    /// `(dy, x, y): [N, C, hw]` (`hw = dx.len()`), into `dx`.
    pub(super) fn write(&self, plane: usize, (dy, x, y): (&[T], &[T], &[T]), dx: &mut [T]) {
        let [k, mean, is, mean_dy, mean_dyx] = self.coef[plane % self.coef.len()];
        let range = plane * dx.len()..(plane + 1) * dx.len();
        let inputs = dy[range.clone()].iter().zip(&x[range.clone()]).zip(&y[range]);
        for (o, ((&d, &v), &yv)) in dx.iter_mut().zip(inputs) {
            let xhat = (v - mean) * is;
            *o = k * (masked(d, yv, self.relu) - mean_dy - xhat * mean_dyx);
        }
    }
}

fn lock(stats: &Mutex<BnStats>) -> candle_core::Result<std::sync::MutexGuard<'_, BnStats>> {
    stats.lock().map_err(|_| candle_core::Error::Msg("batch norm: poisoned statistics".into()))
}

/// `(x, gamma, beta)` checked against each other and `hw`: the channel count.
fn check_params(inputs: &[&Layout], hw: usize, op: &str) -> candle_core::Result<usize> {
    let [x, g, b] = inputs else { candle_core::bail!("{op}: three inputs expected") };
    let (_, c, x_hw) = dims(x)?;
    if x_hw != hw || g.shape().elem_count() != c || b.shape().elem_count() != c {
        candle_core::bail!("{op}: input {:?} does not fit its parameters {:?}", x.shape(), g.shape());
    }
    Ok(c)
}

impl Kernel for BnTrain {
    const NAME: &'static str = "batch-norm-train";
    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        check_params(inputs, self.hw, Self::NAME)?;
        Ok(inputs[0].shape().clone())
    }
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let [x, g, b] = inputs else { candle_core::bail!("batch norm: three inputs expected") };
        let (y, stats) = forward(x, g, b, (g.len(), self.hw), (self.eps, self.relu));
        *lock(&self.stats)? = stats;
        Ok(y)
    }
}

cpu_op!(CustomOp3 for BnTrain {
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = lock(&self.stats)?.clone();
        let gamma_values = gamma.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let op = BnBackward { hw: self.hw, eps: self.eps, relu: self.relu, gamma: gamma_values, stats };
        let packed = grad.contiguous()?.apply_op3_no_bwd(x, &res.contiguous()?, &op)?;
        let (len, c) = (x.elem_count(), gamma.elem_count());
        let dx = packed.narrow(0, 0, len)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, len, c)?;
        let dbeta = packed.narrow(0, len + c, c)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
});

impl Kernel for BnBackward {
    const NAME: &'static str = "batch-norm-train-backward";
    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        let [dy, x, y] = inputs else { candle_core::bail!("batch norm backward: three inputs expected") };
        let (_, c, hw) = dims(x)?;
        if dy.shape() != x.shape() || y.shape() != x.shape() || self.gamma.len() != c || hw != self.hw {
            candle_core::bail!(
                "batch norm backward: gradient {:?} does not fit input {:?}",
                dy.shape(),
                x.shape()
            );
        }
        Ok(Shape::from(x.shape().elem_count() + 2 * c))
    }
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let [dy, x, y] = inputs else { candle_core::bail!("batch norm backward: three inputs expected") };
        let c = self.gamma.len();
        let grad = BnGrad { gamma: &self.gamma, stats: &self.stats, eps: self.eps, relu: self.relu };
        let mut out = vec![T::default(); x.len() + 2 * c];
        let (dgamma, dbeta) =
            backward_into((dy, x, y), (c, self.hw), &grad, &mut out, PlaneOrder::SampleMajor);
        for (o, v) in out[x.len()..].iter_mut().zip(dgamma.iter().chain(&dbeta)) {
            *o = T::of(*v);
        }
        Ok(out)
    }
}

cpu_op!(CustomOp3 for BnBackward {});

/// `(x [N, C, H, W], gamma [C], beta [C]) -> y` (or `max(0, y)` with `relu`), eval mode: normalised with the
/// running statistics in one threaded pass. Its backward (not used by training, there for completeness) is
/// composed from candle ops; the running statistics get no gradient, as in torch.
#[derive(Debug, Clone)]
pub(crate) struct BnEval {
    /// H * W of the input.
    pub hw: usize,
    pub eps: f64,
    pub relu: bool,
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
}

impl Kernel for BnEval {
    const NAME: &'static str = "batch-norm-eval";
    fn shape(&self, inputs: &[&Layout]) -> candle_core::Result<Shape> {
        let c = check_params(inputs, self.hw, Self::NAME)?;
        if self.mean.len() != c || self.var.len() != c {
            candle_core::bail!(
                "batch norm: running statistics of {} channels for an input of {c}",
                self.mean.len()
            );
        }
        Ok(inputs[0].shape().clone())
    }
    fn run<T: Elem>(&self, inputs: &[&[T]]) -> candle_core::Result<Vec<T>> {
        let [x, g, b] = inputs else { candle_core::bail!("batch norm: three inputs expected") };
        Ok(normalise(x, g, b, &self.mean, &self.var, self.eps, self.relu, self.hw))
    }
}

cpu_op!(CustomOp3 for BnEval {
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = gamma.elem_count();
        let column = |v: &[f64]| Tensor::from_slice(v, (1, c, 1, 1), x.device())?.to_dtype(x.dtype());
        eval_backward(x, gamma, grad, (res, self.relu), &column(&self.mean)?, &column(&self.var)?, self.eps)
    }
});
