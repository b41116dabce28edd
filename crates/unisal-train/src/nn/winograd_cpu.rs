//! The CPU's 3x3 convolutions of stride 1 and padding 1 by Winograd's minimal filtering F(2x2, 3x3): each 2x2
//! output tile from a 4x4 input tile with 16 products a channel pair instead of 36, 2.25 times fewer
//! multiplications than im2col + product (`conv_cpu.rs`). These layers carry most of a ResNet's work.
//!
//! With `d` a 4x4 input tile, `g` a 3x3 filter, `V = Bᵀ d B`, `U = G g Gᵀ` and `Y = Aᵀ M A`:
//! - the filters are transformed once a call into `U: [16, rows, cols]` ([`filter`]);
//! - the input tiles of a block of tile rows into `V: [16, C_in, tiles]`, one pass a channel: each input row's
//!   four column combinations once (an input row serves two tile rows), then the row combinations;
//! - 16 products `M[ξ] = U[ξ] · V[ξ]` (`[C_out, tiles]`), one a transform element, on the calling thread;
//! - `M` back into output tiles, written into the output planes.
//!
//! The backward's input gradient of such a layer is the same convolution of `dY` with each filter turned by 180
//! degrees and its channels swapped (`filter(.., true)`), so it runs here too. The weight gradient stays with
//! im2col + product.
//!
//! The work is cut into groups of samples by shape alone (a sample with at least [`MIN_TILES`] tiles is a group
//! of its own; smaller ones are grouped), so that the result does not depend on the thread count. The errors are
//! those of the transforms' few additions (about 1e-6 relative in f32, as im2col's; unit tests against a direct
//! convolution in f64). `UNISAL_WINOGRAD=0` turns this path off (im2col + product everywhere).

use std::sync::OnceLock;

use super::cpu_util::{for_each_item, Elem};
use super::gemm_cpu::{matmul_on, with_scratch, MatRef};
use super::im2col::Geometry;

/// The fewest tiles a product takes: samples with fewer are grouped.
const MIN_TILES: usize = 64;

/// The most tiles a product takes: a sample with more is cut into blocks of tile rows.
const MAX_TILES: usize = 1024;

/// The fewest input channels for which the path pays (the transforms cost more than they save below).
const MIN_CHANNELS: usize = 8;

/// Whether `UNISAL_WINOGRAD` leaves this path on (anything but `0`; read once).
fn switched_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("UNISAL_WINOGRAD").map_or(true, |v| v.trim() != "0"))
}

/// Whether a convolution of this geometry with `out` output channels runs here.
pub(super) fn applies(g: &Geometry, out: usize) -> bool {
    switched_on() && shape_fits(g, out)
}

/// [`applies`] without the switch.
fn shape_fits(g: &Geometry, out: usize) -> bool {
    g.k == 3 && g.stride == 1 && g.pad == 1 && g.c >= MIN_CHANNELS && out >= MIN_CHANNELS && g.h * g.w > 0
}

/// `w: [O, C, 3, 3]` -> `U: [16, O, C]`, or for the input gradient (`for_dx`) `[16, C, O]` of the filters turned
/// by 180 degrees.
pub(super) fn filter<T: Elem>(w: &[T], o: usize, c: usize, for_dx: bool) -> Vec<T> {
    let half = T::of(0.5);
    let mut u = vec![T::zero(); 16 * o * c];
    for oi in 0..o {
        for ci in 0..c {
            let f = &w[(oi * c + ci) * 9..][..9];
            let at = |a: usize, b: usize| if for_dx { f[(2 - a) * 3 + 2 - b] } else { f[a * 3 + b] };
            // G g: [4, 3], a column at a time; then (G g) Gᵀ: [4, 4], a row at a time.
            let mut gg = [[T::zero(); 3]; 4];
            for (b, col) in (0..3).map(|b| (b, [at(0, b), at(1, b), at(2, b)])) {
                gg[0][b] = col[0];
                gg[1][b] = half * (col[0] + col[1] + col[2]);
                gg[2][b] = half * (col[0] - col[1] + col[2]);
                gg[3][b] = col[2];
            }
            let at_uv = if for_dx { ci * o + oi } else { oi * c + ci };
            for (i, [a, b, cc]) in gg.into_iter().enumerate() {
                let row = [a, half * (a + b + cc), half * (a - b + cc), cc];
                for (k, v) in row.into_iter().enumerate() {
                    u[(i * 4 + k) * o * c + at_uv] = v;
                }
            }
        }
    }
    u
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
    fn tiles(&self) -> usize {
        self.tile_rows() * self.tile_cols()
    }
    /// Samples a group holds (shape alone).
    fn group(&self) -> usize {
        MIN_TILES.div_ceil(self.tiles().max(1))
    }
    /// Tile rows a block of one sample holds.
    fn block_rows(&self) -> usize {
        (MAX_TILES / self.tile_cols().max(1)).clamp(1, self.tile_rows().max(1))
    }
}

/// `dst: [N, cout, h, w]` = the convolution of `src`'s `N` samples with `u` ([`filter`]), threaded over groups
/// of samples; then `then(n, dst_n)` on each sample's output while it is in cache.
pub(super) fn convolve<T: Elem>(
    src: Planes<'_, T>,
    d: Dims,
    u: &[T],
    dst: &mut [T],
    then: impl Fn(usize, &mut [T]) + Sync,
) {
    let per = d.cout * d.h * d.w;
    let group = d.group();
    for_each_item(dst, group * per, |gi, out| {
        let first = gi * group;
        let count = out.len() / per;
        convolve_group(src, d, u, first, count, out);
        for (j, y_n) in out.chunks_mut(per).enumerate() {
            then(first + j, y_n);
        }
    });
}

/// `dst: [count, cout, h, w]` for samples `first..first + count` of `src`, on the calling thread.
pub(super) fn convolve_group<T: Elem>(
    src: Planes<'_, T>,
    d: Dims,
    u: &[T],
    first: usize,
    count: usize,
    dst: &mut [T],
) {
    let (th, tw) = (d.tile_rows(), d.tile_cols());
    assert!(u.len() >= 16 * d.cin * d.cout && dst.len() >= count * d.cout * d.h * d.w, "winograd: {d:?}");
    // Blocks: all tile rows of the whole group when it has several samples, else runs of tile rows.
    let rows = if count > 1 { th } else { d.block_rows() };
    let most = count * rows * tw;
    with_scratch(16 * d.cin * most, |v: &mut [T]| {
        with_scratch(16 * d.cout * most, |m: &mut [T]| {
            with_scratch(2 * (tw + 1) + 4 * tw * (2 * rows + 2), |tmp: &mut [T]| {
                let mut tr0 = 0;
                while tr0 < th {
                    let tr1 = (tr0 + rows).min(th);
                    let block = Block { first, count, tr0, tr1 };
                    let nt = count * (tr1 - tr0) * tw;
                    input_transform(src, d, block, &mut v[..16 * d.cin * nt], tmp);
                    for xi in 0..16 {
                        let a = MatRef::row_major(&u[xi * d.cout * d.cin..], d.cout, d.cin);
                        let b = MatRef::row_major(&v[xi * d.cin * nt..], d.cin, nt);
                        matmul_on(&mut m[xi * d.cout * nt..][..d.cout * nt], a, b, 1);
                    }
                    output_transform(&m[..16 * d.cout * nt], d, block, dst, tmp);
                    tr0 = tr1;
                }
            })
        })
    });
}

/// Tile rows `tr0..tr1` of samples `first..first + count` (all rows when `count > 1`).
#[derive(Clone, Copy)]
struct Block {
    first: usize,
    count: usize,
    tr0: usize,
    tr1: usize,
}

/// `V: [16, cin, nt]` of a block's tiles (in order: sample, tile row, tile column). `tmp` holds the even and
/// odd values of an input row and the column combinations of the block's input rows.
fn input_transform<T: Elem>(src: Planes<'_, T>, d: Dims, b: Block, v: &mut [T], tmp: &mut [T]) {
    let tw = d.tile_cols();
    let nt = b.count * (b.tr1 - b.tr0) * tw;
    let (ev, rest) = tmp.split_at_mut(tw + 1);
    let (od, rt) = rest.split_at_mut(tw + 1);
    // Input rows 2 tr0 - 1 ..= 2 tr1: their column combinations, 4 runs of tw each.
    let first_row = 2 * b.tr0 as isize - 1;
    let n_rows = 2 * (b.tr1 - b.tr0) + 2;
    for j in 0..b.count {
        let n = b.first + j;
        for ci in 0..d.cin {
            let plane = &src.data[n * src.sample + ci * src.plane..][..d.h * d.w];
            for r in 0..n_rows {
                let ih = first_row + r as isize;
                let t = &mut rt[r * 4 * tw..][..4 * tw];
                if ih < 0 || ih as usize >= d.h {
                    t.fill(T::zero());
                    continue;
                }
                // ev[j] = x[2j], od[j] = x[2j - 1], zero outside the row.
                ev.fill(T::zero());
                od.fill(T::zero());
                for (i, &x) in plane[ih as usize * d.w..][..d.w].iter().enumerate() {
                    if i % 2 == 0 {
                        ev[i / 2] = x;
                    } else {
                        od[i.div_ceil(2)] = x;
                    }
                }
                let (t0, rest) = t.split_at_mut(tw);
                let (t1, rest) = rest.split_at_mut(tw);
                let (t2, t3) = rest.split_at_mut(tw);
                for q in 0..tw {
                    t0[q] = od[q] - od[q + 1];
                    t1[q] = ev[q] + od[q + 1];
                    t2[q] = od[q + 1] - ev[q];
                    t3[q] = ev[q] - ev[q + 1];
                }
            }
            for tr in b.tr0..b.tr1 {
                let off = (j * (b.tr1 - b.tr0) + tr - b.tr0) * tw;
                let base = 2 * (tr - b.tr0);
                for k in 0..4 {
                    let row = |r: usize| &rt[((base + r) * 4 + k) * tw..][..tw];
                    let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
                    // Bᵀ's rows: r0 - r2, r1 + r2, r2 - r1, r1 - r3.
                    for (i, (x, y, sign)) in
                        [(r0, r2, -1), (r1, r2, 1), (r2, r1, -1), (r1, r3, -1)].into_iter().enumerate()
                    {
                        let out = &mut v[((i * 4 + k) * d.cin + ci) * nt + off..][..tw];
                        if sign > 0 {
                            out.iter_mut().zip(x.iter().zip(y)).for_each(|(o, (a, b))| *o = *a + *b);
                        } else {
                            out.iter_mut().zip(x.iter().zip(y)).for_each(|(o, (a, b))| *o = *a - *b);
                        }
                    }
                }
            }
        }
    }
}

/// `M: [16, cout, nt]` of a block back into output rows `2 tr0 .. 2 tr1` (within the plane) of `dst`'s samples
/// (`dst` starts at sample `b.first`).
fn output_transform<T: Elem>(m: &[T], d: Dims, b: Block, dst: &mut [T], tmp: &mut [T]) {
    let tw = d.tile_cols();
    let nt = b.count * (b.tr1 - b.tr0) * tw;
    let s = &mut tmp[..8 * tw];
    for j in 0..b.count {
        for oi in 0..d.cout {
            let plane = &mut dst[(j * d.cout + oi) * d.h * d.w..][..d.h * d.w];
            for tr in b.tr0..b.tr1 {
                let off = (j * (b.tr1 - b.tr0) + tr - b.tr0) * tw;
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
}

#[cfg(test)]
#[path = "winograd_cpu_tests.rs"]
mod tests;
