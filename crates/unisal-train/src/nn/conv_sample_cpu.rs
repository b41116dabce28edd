//! The per-sample path of the CPU convolution (`conv_cpu.rs`), for layers with few output channels: the stem and
//! first stage of a ResNet and the small CNN's first two blocks, whose patch matrices (`C k k` rows by `Ho Wo`
//! columns a sample) are the largest. Each thread builds one sample's patch matrix in its own scratch buffer and
//! uses it while it is in cache, instead of writing the whole batch's matrix out and reading it back:
//! - forward: `y[n] = W · cols_n`, then the epilogue (`conv_eval_cpu.rs`) on each output run;
//! - backward: `cols_n` built again from `x`, `dW += dY_n · cols_n^T` (as `dW^T += cols_n · dY_n^T` where
//!   `C k k >= O`, the rule of the batch path), then `dcols_n = W^T · dY_n` in the same buffer and its col2im
//!   into `dx[n]`.
//!
//! Nothing is kept from the forward for the backward: building a sample's matrix again in cache costs less than
//! writing the batch's out and reading it back (`docs/performance.md`, session 10). The weight gradient is summed
//! in at most [`PARTS`] partial sums over fixed groups of consecutive samples, then added in order, so that the
//! result depends on the batch size only, not on the thread count.

use std::sync::Mutex;

use super::batchnorm_cpu::{plane_sums, PlaneOrder};
use super::conv_eval_cpu::Epilogue;
use super::cpu_util::{for_each_item, for_each_part, Elem};
use super::gemm_cpu::{matmul_add, matmul_on, transpose, with_scratch, MatRef};
use super::im2col::{col2im_sample, im2col_sample, with_source, Geometry};
use super::winograd_cpu::{self as winograd, Filters, Planes};

/// The most partial weight gradients of a backward (groups of samples worked on in parallel).
const PARTS: usize = 8;

/// `y: [N, O, Ho, Wo]` of `x: [N, C, H, W]` and `w: [O, C k k]`, one sample per product, the samples split over
/// threads; `epi` on each output run `y[n, o]` right after its product. With `sums`, also each output plane's
/// [`plane_sums`] (`[N * O]`, for the batch norm that follows in training: `conv_bn_cpu.rs`), taken while the
/// plane is in cache; else the second value is empty.
pub(super) fn forward<T: Elem>(
    g: &Geometry,
    o: usize,
    (x, w): (&[T], &[T]),
    epi: Option<&Epilogue<'_, T>>,
    sums: bool,
) -> (Vec<T>, Vec<[f64; 3]>) {
    let (p, ckk) = (g.ho() * g.wo(), g.ckk());
    let wm = MatRef::row_major(w, o, ckk);
    let mut y = vec![T::zero(); g.n * o * p];
    let finish = Finish::new(epi, p, if sums { g.n * o } else { 0 });
    with_source(g, x, |xs| {
        for_each_item(&mut y, o * p, |n, y_n| {
            with_scratch(ckk * p, |cols: &mut [T]| {
                im2col_sample(g, xs, n, cols);
                matmul_on(y_n, wm, MatRef::row_major(&*cols, ckk, p), 1);
            });
            finish.sample(n, y_n);
        })
    });
    (y, finish.sums())
}

/// What a forward does to each sample's output while it is in cache (this path's and Winograd's,
/// `conv_cpu.rs`): the epilogue on each output plane of `p` values, then, when sums were asked for (`planes` > 0),
/// each plane's [`plane_sums`].
pub(super) struct Finish<'a, T> {
    epi: Option<&'a Epilogue<'a, T>>,
    p: usize,
    /// Whether sums were asked for.
    summing: bool,
    sums: Mutex<Vec<[f64; 3]>>,
}

impl<'a, T: Elem> Finish<'a, T> {
    /// With sums of `planes` planes (`N * O`), or none (0).
    pub(super) fn new(epi: Option<&'a Epilogue<'a, T>>, p: usize, planes: usize) -> Self {
        Finish { epi, p, summing: planes > 0, sums: Mutex::new(vec![[0.0; 3]; planes]) }
    }

    /// Sample `n`'s output `y_n: [O, P]`.
    pub(super) fn sample(&self, n: usize, y_n: &mut [T]) {
        epilogue(self.epi, n, y_n, self.p);
        if self.summing {
            // Summed before the lock, so that threads do not wait on each other's sums.
            let mine: Vec<[f64; 3]> = y_n.chunks(self.p).map(plane_sums).collect();
            let mut all = self.sums.lock().unwrap_or_else(|e| e.into_inner());
            all[n * mine.len()..][..mine.len()].copy_from_slice(&mine);
        }
    }

    /// The planes' sums, `[N * O]` (empty where none were asked for).
    pub(super) fn sums(self) -> Vec<[f64; 3]> {
        self.sums.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

/// `epi` (if any) on each output run `y_n[o]` (of `p` values) of sample `n`.
pub(super) fn epilogue<T: Elem>(epi: Option<&Epilogue<'_, T>>, n: usize, y_n: &mut [T], p: usize) {
    if let Some(epi) = epi {
        for (oi, run) in y_n.chunks_mut(p).enumerate() {
            epi.apply(n, oi, run);
        }
    }
}

/// Where the backward finds `dY_n: [O, P]`.
#[derive(Clone, Copy)]
pub(super) enum Dy<'a, T> {
    /// In a slice, laid out in the given order (`[N, O, P]` or `[O, N, P]`).
    Slice(&'a [T], PlaneOrder),
    /// Written on demand by `f(n, dY_n)` into the thread's scratch buffer (`conv_bn_cpu.rs`: the batch norm's
    /// `dz` of sample `n`, computed where it is used instead of written out for the whole batch).
    Fill(&'a (dyn Fn(usize, &mut [T]) + Sync)),
}

/// `dY_n: [O, P]` of `dy` for a batch of `nb`: a view of either layout, or what [`Dy::Fill`] writes into `dz`.
fn dy_view<'b, T: Elem>(
    dy: Dy<'b, T>,
    n: usize,
    (o, p, nb): (usize, usize, usize),
    dz: &'b mut [T],
) -> MatRef<'b, T> {
    match dy {
        Dy::Slice(d, PlaneOrder::SampleMajor) => MatRef::row_major(&d[n * o * p..], o, p),
        Dy::Slice(d, PlaneOrder::ChannelMajor) => {
            MatRef { data: &d[n * p..], rows: o, cols: p, row_stride: nb * p, col_stride: 1 }
        }
        Dy::Fill(fill) => {
            fill(n, &mut dz[..o * p]);
            MatRef::row_major(&*dz, o, p)
        }
    }
}

/// One group of consecutive samples of a backward: the first, its share of `dx` (empty without `dx`) and its
/// partial weight gradient.
struct Part<'a, T> {
    first: usize,
    dx: &'a mut [T],
    dw: Vec<T>,
}

/// The gradients of [`forward`]: `dx: [N, C, H, W]` (every element written; pass it empty where no input gradient
/// is needed) and `dw: [O, C k k]`, from `dy`.
pub(super) fn backward<T: Elem>(
    g: &Geometry,
    o: usize,
    (x, w): (&[T], &[T]),
    dy: Dy<'_, T>,
    (dx, dw): (&mut [T], &mut [T]),
) {
    let (p, ckk, chw) = (g.ho() * g.wo(), g.ckk(), g.c * g.h * g.w);
    let dy_fits = match dy {
        Dy::Slice(d, _) => d.len() >= g.n * o * p,
        Dy::Fill(_) => true,
    };
    assert!(g.n > 0 && dy_fits && dw.len() >= o * ckk, "conv2d backward: buffers do not fit {g:?}");
    let need_dx = !dx.is_empty();
    let per = g.n.div_ceil(PARTS);
    let mut dx_groups = dx.chunks_mut(per * chw);
    let mut parts: Vec<Part<'_, T>> = (0..g.n.div_ceil(per))
        .map(|i| Part {
            first: i * per,
            dx: dx_groups.next().unwrap_or_default(),
            dw: vec![T::zero(); o * ckk],
        })
        .collect();
    let dz_len = if matches!(dy, Dy::Fill(_)) { o * p } else { 0 };
    let transposed = ckk >= o;
    let w_t = MatRef::row_major(w, o, ckk).t();
    let back = winograd::Dims { cin: o, cout: g.c, h: g.h, w: g.w };
    // `wino`: the input gradient by Winograd's transforms (`winograd_cpu.rs`), from cout to cin.
    let mut run = |wino: Option<Filters<'_, T>>| {
        with_source(g, x, |xs| {
            for_each_part(&mut parts, g.n * ckk * p, |_, part| {
                with_scratch(ckk * p, |cols: &mut [T]| {
                    with_scratch(dz_len, |dz: &mut [T]| {
                        for j in 0..per.min(g.n - part.first) {
                            let n = part.first + j;
                            im2col_sample(g, xs, n, cols);
                            let (c, d) = (MatRef::row_major(&*cols, ckk, p), dy_view(dy, n, (o, p, g.n), dz));
                            if transposed {
                                matmul_add(&mut part.dw, c, d.t(), j > 0);
                            } else {
                                matmul_add(&mut part.dw, d, c.t(), j > 0);
                            }
                            if let Some(u) = wino {
                                let src = Planes { data: d.data, sample: 0, plane: d.row_stride };
                                winograd::convolve_sample(
                                    src,
                                    back,
                                    u,
                                    (0, 1),
                                    &mut part.dx[j * chw..][..chw],
                                );
                            } else if need_dx {
                                // The same buffer now takes dcols_n = W^T · dY_n.
                                matmul_on(cols, w_t, d, 1);
                                col2im_sample(g, cols, p, 0, &mut part.dx[j * chw..]);
                            }
                        }
                    })
                })
            })
        })
    };
    if need_dx && winograd::applies(g, o) {
        winograd::with_filters(w, (o, g.c), true, |u| run(Some(u)));
    } else {
        run(None);
    }
    let (sum, rest) = parts.split_first_mut().expect("at least one group");
    for part in rest {
        for (a, b) in sum.dw.iter_mut().zip(&part.dw) {
            *a += *b;
        }
    }
    if transposed {
        transpose(&sum.dw, ckk, o, dw);
    } else {
        dw[..o * ckk].copy_from_slice(&sum.dw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: f64) -> Vec<f64> {
        (0..len).map(|i| ((i as f64 + seed) * 0.731).sin()).collect()
    }

    #[test]
    fn both_layouts_of_dy_give_the_same_gradients() {
        let g = Geometry { n: 11, c: 3, h: 7, w: 6, k: 3, stride: 2, pad: 1 };
        let (o, p) = (5, g.ho() * g.wo());
        let (x, w) = (values(g.n * g.c * g.h * g.w, 1.0), values(o * g.ckk(), 2.0));
        let dy = values(g.n * o * p, 3.0);
        // The same dY as [O, N, P].
        let mut dy_t = vec![0.0; dy.len()];
        for n in 0..g.n {
            for oi in 0..o {
                dy_t[(oi * g.n + n) * p..][..p].copy_from_slice(&dy[(n * o + oi) * p..][..p]);
            }
        }
        let run = |dy: Dy<'_, f64>| {
            let (mut dx, mut dw) = (vec![f64::NAN; x.len()], vec![f64::NAN; w.len()]);
            backward(&g, o, (&x, &w), dy, (&mut dx, &mut dw));
            (dx, dw)
        };
        let a = run(Dy::Slice(&dy, PlaneOrder::SampleMajor));
        assert!(a.0.iter().chain(&a.1).all(|v| v.is_finite()), "every element written");
        assert_eq!(a, run(Dy::Slice(&dy_t, PlaneOrder::ChannelMajor)));
        let fill = |n: usize, dst: &mut [f64]| dst.copy_from_slice(&dy[n * o * p..][..o * p]);
        assert_eq!(a, run(Dy::Fill(&fill)));
    }

    #[test]
    fn without_dx_only_the_weight_gradient_is_computed() {
        let g = Geometry { n: 3, c: 2, h: 5, w: 5, k: 3, stride: 1, pad: 1 };
        let (o, p) = (4, 25);
        let (x, w, dy) = (values(g.n * 50, 1.0), values(o * g.ckk(), 2.0), values(g.n * o * p, 3.0));
        let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
        let dy = Dy::Slice(&dy, PlaneOrder::SampleMajor);
        backward(&g, o, (&x, &w), dy, (&mut dx, &mut dw));
        let mut dw_only = vec![0.0; w.len()];
        backward(&g, o, (&x, &w), dy, (&mut [], &mut dw_only));
        assert_eq!(dw, dw_only);
        assert!(dx.iter().any(|v| *v != 0.0));
    }
}
