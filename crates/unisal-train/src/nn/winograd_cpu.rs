//! The CPU's 3x3 convolutions of stride 1 and padding 1 by Winograd's minimal filtering F(2x2, 3x3): each 2x2
//! output tile from a 4x4 input tile with 16 products a channel pair instead of 36, 2.25 times fewer
//! multiplications than im2col + product (`conv_cpu.rs`). These layers carry most of a ResNet's work.
//!
//! With `d` a 4x4 input tile, `g` a 3x3 filter, `V = Bᵀ d B`, `U = G g Gᵀ` and `Y = Aᵀ M A`:
//! - the filters into `U: [16, O, C]` ([`with_filters`]), once a call, into a scratch buffer;
//! - the input tiles of a block of tile rows into `V: [16, C_in, tiles]`, one pass a channel: each input row's
//!   four column combinations once (an input row serves two tile rows), kept by the row's parity so that the row
//!   combinations over the whole block are long runs;
//! - 16 products `M[ξ] = U[ξ] · V[ξ]` (`[C_out, tiles]`), one a transform element;
//! - `M` back into output tiles, written into the output planes.
//!
//! The backward's input gradient of such a layer is the same convolution of `dY` with each filter turned by 180
//! degrees and its channels swapped, whose transforms are a permutation of the forward's ([`Filters`]), so it
//! runs here too. The weight gradient stays with im2col + product (done in the transformed domain as well, it
//! gained nothing in whole steps: `docs/performance.md`, session 17).
//!
//! Samples are split over threads, one at a time (a large plane in blocks of tile rows); a batch smaller than the
//! thread count gives each sample's products the threads left over. The result does not depend on the thread
//! count (a unit test checks it bit for bit). Planes under [`MIN_TILES`] tiles stay with im2col. The errors are
//! those of the transforms' few additions (about 1e-6 relative in f32, as im2col's; unit tests against a direct
//! convolution in f64). `UNISAL_WINOGRAD=0` turns this path off (im2col + product everywhere).

use std::ops::Range;
use std::sync::OnceLock;

use super::cpu_util::{for_each_item, Elem};
use super::gemm_cpu::{matmul_on, with_scratch, MatRef};
use super::im2col::Geometry;
use super::op_profile::timed_cpu as timed;

/// The fewest tiles a sample must have: on smaller planes one sample's products are too small to pay, and the
/// im2col path's product over the whole batch uses every thread.
const MIN_TILES: usize = 36;

/// The most tiles a product takes: a sample with more is cut into blocks of tile rows.
const MAX_TILES: usize = 1024;

/// The fewest input channels for which the path pays (the transforms cost more than they save below).
const MIN_CHANNELS: usize = 8;

/// Whether `UNISAL_WINOGRAD` leaves this path on (unless `0`, `false`, `off`; read once).
fn switched_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| super::env_not_off("UNISAL_WINOGRAD"))
}

/// Whether a convolution of this geometry with `out` output channels runs here.
pub(super) fn applies(g: &Geometry, out: usize) -> bool {
    switched_on() && shape_fits(g, out)
}

/// [`applies`] without the switch.
fn shape_fits(g: &Geometry, out: usize) -> bool {
    let tiles = g.h.div_ceil(2) * g.w.div_ceil(2);
    g.k == 3
        && g.stride == 1
        && g.pad == 1
        && g.c >= MIN_CHANNELS
        && out >= MIN_CHANNELS
        && tiles >= MIN_TILES
}

/// `f` with the transformed filters ([`Filters`]) of `w: [O, C, 3, 3]`, made in a scratch buffer for this call:
/// as they are for the forward, or with `for_dx` for the input gradient.
pub(super) fn with_filters<T: Elem, R>(
    w: &[T],
    (o, c): (usize, usize),
    for_dx: bool,
    f: impl FnOnce(Filters<'_, T>) -> R,
) -> R {
    with_scratch(16 * o * c, |u: &mut [T]| {
        timed("conv2d: winograd filters", || filter_into(w, o, c, u));
        f(Filters { u, for_dx })
    })
}

/// `w: [O, C, 3, 3]` -> `u: [16, O, C]`, `U = G g Gᵀ` of every filter (`u` of at least `16 O C`).
fn filter_into<T: Elem>(w: &[T], o: usize, c: usize, u: &mut [T]) {
    let (half, oc) = (T::of(0.5), o * c);
    assert!(w.len() >= 9 * oc && u.len() >= 16 * oc, "winograd filters: {o} x {c}");
    // G's rows on three values.
    let g = |x: T, y: T, z: T| [x, half * (x + y + z), half * (x - y + z), z];
    for (pair, f) in w[..9 * oc].chunks_exact(9).enumerate() {
        // G g: [4, 3], a column at a time; then (G g) Gᵀ: [4, 4], a row at a time.
        let cols: [[T; 4]; 3] = std::array::from_fn(|b| g(f[b], f[3 + b], f[6 + b]));
        for i in 0..4 {
            for (k, v) in g(cols[0][i], cols[1][i], cols[2][i]).into_iter().enumerate() {
                u[(i * 4 + k) * oc + pair] = v;
            }
        }
    }
}

/// The transformed filters of a call: `[16, O, C]` of the layer's weights ([`with_filters`]), used as they are
/// for the forward and, for the input gradient (`for_dx`), as the transforms of the filters turned by 180
/// degrees with their channels swapped: with `J` the 3x3 reversal, `G J = P G` where `P` swaps rows 0 and 3, so
/// that filter's `U'[i][k]` is `U[p(i)][p(k)]`, read through a transposed view. Nothing is transformed twice.
#[derive(Clone, Copy)]
pub(super) struct Filters<'a, T> {
    pub u: &'a [T],
    pub for_dx: bool,
}

impl<'a, T: Elem> Filters<'a, T> {
    /// `U[ξ]` as `[cout, cin]` of the convolution `d` runs.
    fn at(&self, xi: usize, d: Dims) -> MatRef<'a, T> {
        let size = d.cin * d.cout;
        if self.for_dx {
            const P: [usize; 4] = [3, 1, 2, 0];
            let xi = P[xi / 4] * 4 + P[xi % 4];
            MatRef::row_major(&self.u[xi * size..], d.cin, d.cout).t()
        } else {
            MatRef::row_major(&self.u[xi * size..], d.cout, d.cin)
        }
    }
}

/// Where the input planes are: sample `n`'s plane `c` starts at `data[n * sample + c * plane]` (`h * w` values).
#[derive(Clone, Copy)]
pub(super) struct Planes<'a, T> {
    pub data: &'a [T],
    pub sample: usize,
    pub plane: usize,
}

impl<'a, T> Planes<'a, T> {
    /// Contiguous `[N, C, H, W]`.
    pub fn nchw(data: &'a [T], c: usize, hw: usize) -> Self {
        Planes { data, sample: c * hw, plane: hw }
    }
}

/// A convolution's sizes: input and output channels and the (equal) input and output plane.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dims {
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
}

impl Dims {
    fn tile_rows(&self) -> usize {
        self.h.div_ceil(2)
    }
    fn tile_cols(&self) -> usize {
        self.w.div_ceil(2)
    }
    /// Tile rows a block holds.
    fn block_rows(&self) -> usize {
        (MAX_TILES / self.tile_cols().max(1)).clamp(1, self.tile_rows().max(1))
    }
}

/// `dst: [N, cout, h, w]` = the convolution of `src`'s `N` samples with `u`, threaded over samples; then
/// `then(n, dst_n)` on each sample's output while it is in cache.
pub(super) fn convolve<T: Elem>(
    src: Planes<'_, T>,
    d: Dims,
    u: Filters<'_, T>,
    dst: &mut [T],
    then: impl Fn(usize, &mut [T]) + Sync,
) {
    // A batch smaller than the thread count gives each sample's products the threads left over.
    let samples = dst.len() / (d.cout * d.h * d.w).max(1);
    let threads = (candle_core::utils::get_num_threads() / samples.max(1)).max(1);
    for_each_item(dst, d.cout * d.h * d.w, |n, y_n| {
        convolve_sample(src, d, u, (n, threads), y_n);
        then(n, y_n);
    });
}

/// `dst: [cout, h, w]` of sample `n` of `src`, its products on `threads` threads (gemm splits the outputs, not
/// the sums, so the result does not depend on them).
pub(super) fn convolve_sample<T: Elem>(
    src: Planes<'_, T>,
    d: Dims,
    u: Filters<'_, T>,
    (n, threads): (usize, usize),
    dst: &mut [T],
) {
    let (th, tw, rows) = (d.tile_rows(), d.tile_cols(), d.block_rows());
    assert!(u.u.len() >= 16 * d.cin * d.cout && dst.len() >= d.cout * d.h * d.w, "winograd: {d:?}");
    let most = rows * tw;
    with_scratch(16 * d.cin * most, |v: &mut [T]| {
        with_scratch(16 * d.cout * most, |m: &mut [T]| {
            with_scratch(2 * (tw + 1) + 4 * tw * (2 * rows + 2), |tmp: &mut [T]| {
                let mut tr0 = 0;
                while tr0 < th {
                    let tr1 = (tr0 + rows).min(th);
                    let nt = (tr1 - tr0) * tw;
                    input_transform(src, d, (n, tr0..tr1), &mut v[..16 * d.cin * nt], tmp);
                    for xi in 0..16 {
                        let a = u.at(xi, d);
                        let b = MatRef::row_major(&v[xi * d.cin * nt..], d.cin, nt);
                        matmul_on(&mut m[xi * d.cout * nt..][..d.cout * nt], a, b, threads);
                    }
                    output_transform(&m[..16 * d.cout * nt], d, tr0..tr1, dst, tmp);
                    tr0 = tr1;
                }
            })
        })
    });
}

/// `V: [16, cin, nt]` of the tiles of tile rows `rows` of sample `n`. `tmp` holds the even and odd values of an
/// input row and the column combinations of the block's input rows.
fn input_transform<T: Elem>(
    src: Planes<'_, T>,
    d: Dims,
    (n, rows): (usize, Range<usize>),
    v: &mut [T],
    tmp: &mut [T],
) {
    let tw = d.tile_cols();
    let nt = rows.len() * tw;
    let (ev, rest) = tmp.split_at_mut(tw + 1);
    let (od, rt) = rest.split_at_mut(tw + 1);
    // Input rows 2 tr0 - 1 ..= 2 tr1: their 4 column combinations, kept by the row's parity and combination,
    // `rt[parity][k][row / 2][q]`, so that each transform element's rows over the whole block are two runs.
    let first_row = 2 * rows.start as isize - 1;
    let n_rows = 2 * rows.len() + 2;
    let run = (rows.len() + 1) * tw;
    for ci in 0..d.cin {
        let plane = &src.data[n * src.sample + ci * src.plane..][..d.h * d.w];
        for r in 0..n_rows {
            let ih = first_row + r as isize;
            let at = |k: usize| ((r % 2 * 4 + k) * run) + r / 2 * tw;
            if ih < 0 || ih as usize >= d.h {
                for k in 0..4 {
                    rt[at(k)..][..tw].fill(T::zero());
                }
                continue;
            }
            // ev[q] = x[2q], od[q] = x[2q - 1], zero outside the row.
            let row = &plane[ih as usize * d.w..][..d.w];
            od[0] = T::zero();
            for (q, pair) in row.chunks_exact(2).enumerate() {
                ev[q] = pair[0];
                od[q + 1] = pair[1];
            }
            let half = d.w / 2;
            ev[half..].fill(T::zero());
            od[half + 1..].fill(T::zero());
            if d.w % 2 == 1 {
                ev[half] = row[d.w - 1];
            }
            // Bᵀ's rows on the columns (x[2q - 1], x[2q], x[2q + 1], x[2q + 2]) = (od[q], ev[q], od[q + 1],
            // ev[q + 1]): a - c, b + c, c - b, b - d.
            let (o1, e1) = (&od[1..], &ev[1..]);
            combine(&mut rt[at(0)..][..tw], &od[..tw], &o1[..tw], |a, c| a - c);
            combine(&mut rt[at(1)..][..tw], &ev[..tw], &o1[..tw], |b, c| b + c);
            combine(&mut rt[at(2)..][..tw], &o1[..tw], &ev[..tw], |c, b| c - b);
            combine(&mut rt[at(3)..][..tw], &ev[..tw], &e1[..tw], |b, e| b - e);
        }
        // Tile row t's input rows 2t .. 2t + 3 are even row t, odd row t, even row t + 1, odd row t + 1: over the
        // block, runs starting at 0 and at tw of each parity's rows.
        for k in 0..4 {
            let (even, odd) = (&rt[k * run..][..run], &rt[(4 + k) * run..][..run]);
            let (r0, r1, r2, r3) = (&even[..nt], &odd[..nt], &even[tw..][..nt], &odd[tw..][..nt]);
            let out = |i: usize| ((i * 4 + k) * d.cin + ci) * nt;
            combine(&mut v[out(0)..][..nt], r0, r2, |a, c| a - c);
            combine(&mut v[out(1)..][..nt], r1, r2, |b, c| b + c);
            combine(&mut v[out(2)..][..nt], r2, r1, |c, b| c - b);
            combine(&mut v[out(3)..][..nt], r1, r3, |b, e| b - e);
        }
    }
}

/// `out[q] = f(a[q], b[q])` (a loop the compiler vectorises).
fn combine<T: Copy>(out: &mut [T], a: &[T], b: &[T], f: impl Fn(T, T) -> T) {
    for ((r, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *r = f(x, y);
    }
}

/// `M: [16, cout, nt]` of tile rows `rows` back into output rows `2 rows.start .. 2 rows.end` of `dst`.
fn output_transform<T: Elem>(m: &[T], d: Dims, rows: Range<usize>, dst: &mut [T], tmp: &mut [T]) {
    let tw = d.tile_cols();
    let nt = rows.len() * tw;
    let s = &mut tmp[..8 * tw];
    for oi in 0..d.cout {
        let plane = &mut dst[oi * d.h * d.w..][..d.h * d.w];
        for tr in rows.clone() {
            let off = (tr - rows.start) * tw;
            let mm = |i: usize, k: usize| &m[((i * 4 + k) * d.cout + oi) * nt + off..][..tw];
            // Aᵀ M: the two row combinations of each column k.
            for k in 0..4 {
                let (m0, m1, m2, m3) = (mm(0, k), mm(1, k), mm(2, k), mm(3, k));
                let (lo, hi) = s.split_at_mut(4 * tw);
                let (s0, s1) = (&mut lo[k * tw..][..tw], &mut hi[k * tw..][..tw]);
                for q in 0..tw {
                    s0[q] = m0[q] + m1[q] + m2[q];
                    s1[q] = m1[q] - m2[q] - m3[q];
                }
            }
            // (Aᵀ M) A: output row 2 tr + a, columns 2q and 2q + 1.
            for a in 0..2 {
                let oh = 2 * tr + a;
                if oh >= d.h {
                    continue;
                }
                let sk = |k: usize| &s[(a * 4 + k) * tw..][..tw];
                let (q0, q1, q2, q3) = (sk(0), sk(1), sk(2), sk(3));
                let row = &mut plane[oh * d.w..][..d.w];
                for (q, pair) in row.chunks_mut(2).enumerate() {
                    pair[0] = q0[q] + q1[q] + q2[q];
                    if let Some(odd) = pair.get_mut(1) {
                        *odd = q1[q] - q2[q] - q3[q];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "winograd_cpu_tests.rs"]
mod tests;
