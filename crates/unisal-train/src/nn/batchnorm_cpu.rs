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
//! backward. The backward is not itself differentiable.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

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
    pub eps: f64,
    pub relu: bool,
    pub stats: Arc<Mutex<BnStats>>,
}

/// `(dy, x, out) -> [dx (N*C*H*W) | dgamma (C) | dbeta (C)]`, flat, with gamma and the statistics of the forward.
struct BnBackward {
    eps: f64,
    relu: bool,
    gamma: Vec<f64>,
    stats: BnStats,
}

/// The element types the ops support, converted through f64.
trait Elem: Copy + Default + Send + Sync {
    fn f(self) -> f64;
    fn of(v: f64) -> Self;
}
impl Elem for f32 {
    fn f(self) -> f64 {
        f64::from(self)
    }
    fn of(v: f64) -> Self {
        v as f32
    }
}
impl Elem for f64 {
    fn f(self) -> f64 {
        self
    }
    fn of(v: f64) -> Self {
        v
    }
}

fn slice<'a, T>(data: &'a [T], layout: &Layout, what: &str) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("batch norm: {what} must be contiguous"),
    }
}

fn dims(layout: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    match *layout.shape().dims() {
        [n, c, h, w] if n * h * w > 0 => Ok((n, c, h * w)),
        _ => candle_core::bail!("batch norm: expected a non-empty [N, C, H, W], got {:?}", layout.shape()),
    }
}

fn threads(work: usize) -> usize {
    if work < 1 << 15 {
        1
    } else {
        candle_core::utils::get_num_threads().max(1)
    }
}

/// `f(c)` for every channel, split over threads; the results in channel order.
fn per_channel<R: Send>(c: usize, work: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let t = threads(work).min(c.max(1));
    if t == 1 {
        return (0..c).map(f).collect();
    }
    let per = c.div_ceil(t);
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = (0..t)
            .map(|i| s.spawn(move || (i * per..((i + 1) * per).min(c)).map(f).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("batch norm worker panicked")).collect()
    })
}

/// `f(plane index, plane)` for every `hw`-sized plane of `out`, split over threads.
fn per_plane<T: Send>(out: &mut [T], hw: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let planes = out.len() / hw;
    let t = threads(out.len()).min(planes.max(1));
    let per = planes.div_ceil(t);
    std::thread::scope(|s| {
        for (i, chunk) in out.chunks_mut(per * hw).enumerate() {
            let f = &f;
            s.spawn(move || {
                for (j, plane) in chunk.chunks_mut(hw).enumerate() {
                    f(i * per + j, plane);
                }
            });
        }
    });
}

/// The `n` planes of channel `ch`.
fn planes<T>(x: &[T], ch: usize, c: usize, hw: usize) -> impl Iterator<Item = &[T]> {
    x.chunks(hw).skip(ch).step_by(c)
}

fn forward<T: Elem>(x: &[T], g: &[T], b: &[T], c: usize, hw: usize, op: &BnTrain) -> (Vec<T>, BnStats) {
    let (eps, floor) = (op.eps, if op.relu { 0.0 } else { f64::NEG_INFINITY });
    let m = (x.len() / c) as f64;
    let stats = per_channel(c, x.len(), |ch| {
        let mean = planes(x, ch, c, hw).map(|p| lane_sum(p, p, p, |v, _, _| v.f())).sum::<f64>() / m;
        let sq = |v: T, _: T, _: T| (v.f() - mean) * (v.f() - mean);
        let var = planes(x, ch, c, hw).map(|p| lane_sum(p, p, p, sq)).sum::<f64>() / m;
        (mean, var)
    });
    let (mean, var): (Vec<f64>, Vec<f64>) = stats.into_iter().unzip();
    let mut y = vec![T::default(); x.len()];
    per_plane(&mut y, hw, |p, out| {
        let ch = p % c;
        let scale = g[ch].f() / (var[ch] + eps).sqrt();
        let shift = b[ch].f() - mean[ch] * scale;
        for (o, v) in out.iter_mut().zip(&x[p * hw..(p + 1) * hw]) {
            *o = T::of((v.f() * scale + shift).max(floor));
        }
    });
    (y, BnStats { mean, var })
}

/// `sum_i f(a[i], b[i], c[i])` over equally long slices, in 8 independent f64 lanes (so that the compiler can
/// vectorise the loop; a single running sum is one long dependency chain).
fn lane_sum<T: Elem>(a: &[T], b: &[T], c: &[T], f: impl Fn(T, T, T) -> f64) -> f64 {
    const L: usize = 8;
    let mut acc = [0.0f64; L];
    let (ac, bc, cc) = (a.chunks_exact(L), b.chunks_exact(L), c.chunks_exact(L));
    let tail: f64 =
        ac.remainder().iter().zip(bc.remainder()).zip(cc.remainder()).map(|((x, y), z)| f(*x, *y, *z)).sum();
    for ((x, y), z) in ac.zip(bc).zip(cc) {
        for j in 0..L {
            acc[j] += f(x[j], y[j], z[j]);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `dy`, zero where the ReLU output is 0.
fn masked<T: Elem>(d: T, out: T, relu: bool) -> f64 {
    let off = relu && out.f() <= 0.0;
    if off {
        0.0
    } else {
        d.f()
    }
}

fn backward<T: Elem>(dy: &[T], x: &[T], y: &[T], c: usize, hw: usize, op: &BnBackward) -> Vec<T> {
    let (st, relu, g) = (&op.stats, op.relu, &op.gamma);
    let m = (x.len() / c) as f64;
    let invstd: Vec<f64> = st.var.iter().map(|v| 1.0 / (v + op.eps).sqrt()).collect();
    let sums = per_channel(c, x.len(), |ch| {
        let (mut s_dy, mut s_dyx) = (0.0, 0.0);
        let mean = st.mean[ch];
        let rows = planes(dy, ch, c, hw).zip(planes(x, ch, c, hw)).zip(planes(y, ch, c, hw));
        for ((d, xp), yp) in rows {
            s_dy += lane_sum(d, xp, yp, |d, _, y| masked(d, y, relu));
            s_dyx += lane_sum(d, xp, yp, |d, v, y| masked(d, y, relu) * (v.f() - mean));
        }
        (s_dy, s_dyx * invstd[ch])
    });
    let mut out = vec![T::default(); x.len() + 2 * c];
    let (dx, dgb) = out.split_at_mut(x.len());
    for (ch, &(s_dy, s_dyx)) in sums.iter().enumerate() {
        dgb[ch] = T::of(s_dyx);
        dgb[c + ch] = T::of(s_dy);
    }
    per_plane(dx, hw, |p, dxp| {
        let ch = p % c;
        let (s_dy, s_dyx) = sums[ch];
        let k = g[ch] * invstd[ch];
        let (mean, is) = (st.mean[ch], invstd[ch]);
        let range = p * hw..(p + 1) * hw;
        let inputs = dy[range.clone()].iter().zip(&x[range.clone()]).zip(&y[range]);
        for (o, ((d, v), yv)) in dxp.iter_mut().zip(inputs) {
            let xhat = (v.f() - mean) * is;
            *o = T::of(k * (masked(*d, *yv, relu) - s_dy / m - xhat * s_dyx / m));
        }
    });
    out
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, c, hw) = dims(l1)?;
        let (y, stats) = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(g), CpuStorage::F32(b)) => {
                let (y, st) =
                    forward(slice(x, l1, "x")?, slice(g, l2, "weight")?, slice(b, l3, "bias")?, c, hw, self);
                (CpuStorage::F32(y), st)
            }
            (CpuStorage::F64(x), CpuStorage::F64(g), CpuStorage::F64(b)) => {
                let (y, st) =
                    forward(slice(x, l1, "x")?, slice(g, l2, "weight")?, slice(b, l3, "bias")?, c, hw, self);
                (CpuStorage::F64(y), st)
            }
            _ => candle_core::bail!(
                "batch norm: unsupported dtypes {:?}/{:?}/{:?}",
                s1.dtype(),
                s2.dtype(),
                s3.dtype()
            ),
        };
        *self
            .stats
            .lock()
            .map_err(|_| candle_core::Error::Msg("batch norm: poisoned statistics".into()))? = stats;
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = self
            .stats
            .lock()
            .map_err(|_| candle_core::Error::Msg("batch norm: poisoned statistics".into()))?
            .clone();
        let gamma_values = gamma.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
        let op = BnBackward { eps: self.eps, relu: self.relu, gamma: gamma_values, stats };
        let packed = grad.contiguous()?.apply_op3_no_bwd(x, &res.contiguous()?, &op)?;
        let (len, c) = (x.elem_count(), gamma.elem_count());
        let dx = packed.narrow(0, 0, len)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, len, c)?;
        let dbeta = packed.narrow(0, len + c, c)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

impl CustomOp3 for BnBackward {
    fn name(&self) -> &'static str {
        "batch-norm-train-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, c, hw) = dims(l2)?;
        if l1.shape() != l2.shape() || l3.shape() != l2.shape() || self.stats.mean.len() != c {
            candle_core::bail!(
                "batch norm backward: gradient {:?} does not fit input {:?}",
                l1.shape(),
                l2.shape()
            );
        }
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(d), CpuStorage::F32(x), CpuStorage::F32(y)) => CpuStorage::F32(backward(
                slice(d, l1, "grad")?,
                slice(x, l2, "x")?,
                slice(y, l3, "output")?,
                c,
                hw,
                self,
            )),
            (CpuStorage::F64(d), CpuStorage::F64(x), CpuStorage::F64(y)) => CpuStorage::F64(backward(
                slice(d, l1, "grad")?,
                slice(x, l2, "x")?,
                slice(y, l3, "output")?,
                c,
                hw,
                self,
            )),
            _ => candle_core::bail!("batch norm backward: unsupported dtype {:?}", s1.dtype()),
        };
        Ok((out, Shape::from(l2.shape().elem_count() + 2 * c)))
    }
}
