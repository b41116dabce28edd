//! CPU im2col / col2im (adjoint linear maps) in the channel-major layout of the whole batch: the work of the
//! convolution op of `conv_cpu.rs`.
//!
//! [`run_im2col`] turns `x: [N, C, H, W]` into the patch matrix `cols: [C * k * k, N * Ho * Wo]`: row `(c, ki, kj)`
//! (the order of a weight `[O, C, k, k]` flattened to `[O, C * k * k]`) holds, for every sample and output
//! position `(oh, ow)`, the input pixel `(oh * s - p + ki, ow * s - p + kj)` of channel `c`, or 0 in the padding.
//! A convolution is then one matrix product `W · cols: [O, N * Ho * Wo]`, and its backward two more
//! (`dW = dY · cols^T`, `dcols = W^T · dY`) and a [`run_col2im`]. With stride 1 both go through zero-padded
//! planes (`[N, C, H + 2p, W + 2p]`), so that each output row `oh` of a sample is one plain copy (im2col) or
//! addition (col2im) without edge cases: 25-30% faster than clipping each run at the border, most on the short
//! rows of a ResNet's later stages. With a larger stride they go through the phase-split layout below. Both run on
//! the CPU (f32 and f64), split over candle's thread count (`cpu_util.rs`); [`im2col_sample`] and
//! [`col2im_sample`] do one sample's on the calling thread, for the per-sample convolution (`conv_sample_cpu.rs`).

use super::cpu_util::{for_each_item, Elem};
use super::gemm_cpu::with_scratch;

/// Geometry of a square-kernel convolution over `[N, C, H, W]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Geometry {
    /// Output height (torch's `floor((H + 2p - k) / s) + 1`).
    pub fn ho(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Output width.
    pub fn wo(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Rows of the patch matrix: `C * k * k`.
    pub fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Columns of the patch matrix: `N * Ho * Wo`.
    pub fn npix(&self) -> usize {
        self.n * self.ho() * self.wo()
    }

    /// The output columns `ow` whose input column `ow * s - p + kj` lies in `0..w`.
    fn ow_range(&self, kj: usize) -> (usize, usize) {
        let lo = if kj >= self.pad { 0 } else { (self.pad - kj).div_ceil(self.stride) };
        let hi = if self.w + self.pad > kj {
            ((self.w - 1 + self.pad - kj) / self.stride + 1).min(self.wo())
        } else {
            0
        };
        (lo, hi.max(lo))
    }
}

/// `(ki, kj, first ow, end ow)` of patch row `r % (k * k)`, with the channel `r / (k * k)`.
fn row_parts(g: &Geometry, r: usize) -> (usize, usize, usize, usize, usize) {
    let (c, ki, kj) = row_offset(g, r);
    let (lo, hi) = g.ow_range(kj);
    (c, ki, kj, lo, hi)
}

/// The channel `c` and kernel offset `(ki, kj)` of patch row `r`.
fn row_offset(g: &Geometry, r: usize) -> (usize, usize, usize) {
    let (c, kk) = (r / (g.k * g.k), r % (g.k * g.k));
    (c, kk / g.k, kk % g.k)
}

/// The input row of output row `oh` for kernel row `ki`, if inside the image.
fn input_row(g: &Geometry, oh: usize, ki: usize) -> Option<usize> {
    (oh * g.stride + ki).checked_sub(g.pad).filter(|&ih| ih < g.h)
}

/// Columns a phase holds: `ceil(W / s)`.
fn phase_width(g: &Geometry) -> usize {
    g.w.div_ceil(g.stride)
}

/// Elements of the phase-split layout of the whole batch.
fn split_len(g: &Geometry) -> usize {
    g.n * g.c * g.h * g.stride * phase_width(g)
}

/// Offset, in a channel's phase-split plane, of the run that output columns `lo..` read from input row `ih` for a
/// kernel column at phase `(ph, j0)` ([`phase_of`]).
fn run_offset(g: &Geometry, ih: usize, (ph, j0): (usize, isize), lo: usize) -> usize {
    (ih * g.stride + ph) * phase_width(g) + (lo as isize + j0) as usize
}

/// Where kernel column `kj` reads in the phase-split layout: the phase `(kj - p) mod s`, and the offset `j0` such
/// that output column `ow` reads phase column `ow + j0`.
fn phase_of(g: &Geometry, kj: usize) -> (usize, isize) {
    let (s, t) = (g.stride as isize, kj as isize - g.pad as isize);
    let ph = t.rem_euclid(s);
    (ph as usize, (t - ph) / s)
}

/// `[N, C, H, W]` -> `[N, C, H, s, ceil(W / s)]`: column `j * s + ph` of an image row goes to `(ph, j)` (0 past the
/// edge). With it every strided gather of im2col (and scatter of col2im) is a contiguous run.
fn split_phases<T: Elem>(g: &Geometry, x: &[T], out: &mut [T]) {
    let (s, wp) = (g.stride, phase_width(g));
    for_each_item(&mut out[..split_len(g)], s * wp, |row, dst| {
        let src = &x[row * g.w..][..g.w];
        if s == 2 {
            // The common case as one pass of pairs (which the compiler turns into vector shuffles).
            let (even, odd) = dst.split_at_mut(wp);
            for ((pair, e), o) in src.chunks_exact(2).zip(even.iter_mut()).zip(odd.iter_mut()) {
                (*e, *o) = (pair[0], pair[1]);
            }
            if g.w % 2 == 1 {
                (even[wp - 1], odd[wp - 1]) = (src[g.w - 1], T::zero());
            }
            return;
        }
        for (ph, d) in dst.chunks_mut(wp).enumerate() {
            let mut filled = 0;
            for (o, v) in d.iter_mut().zip(src[ph.min(g.w)..].iter().step_by(s)) {
                *o = *v;
                filled += 1;
            }
            d[filled..].fill(T::zero());
        }
    });
}

/// The inverse of [`split_phases`] for one sample: `xs: [C, H, s, ceil(W / s)]` -> `img: [C, H, W]`.
fn merge_sample<T: Elem>(g: &Geometry, xs: &[T], img: &mut [T]) {
    let (s, wp) = (g.stride, phase_width(g));
    for (dst, src) in img[..g.c * g.h * g.w].chunks_mut(g.w).zip(xs.chunks(s * wp)) {
        for (ph, phase) in src.chunks(wp).enumerate().take(g.w) {
            for (o, v) in dst[ph..].iter_mut().step_by(s).zip(phase) {
                *o = *v;
            }
        }
    }
}

/// `x: [N, C, H, W]` -> `out: [C * k * k, N * Ho * Wo]` (every element written, the padding as 0). With stride
/// above 1 the columns are first split by phase, so that each run is a copy.
pub(super) fn run_im2col<T: Elem>(g: &Geometry, x: &[T], out: &mut [T]) {
    with_source(g, x, |xs| gather(g, xs, out));
}

/// Rows and columns of a plane of the padded layout (stride 1): `(H + 2p, W + 2p)`.
fn padded_dims(g: &Geometry) -> (usize, usize) {
    (g.h + 2 * g.pad, g.w + 2 * g.pad)
}

/// `[N, C, H, W]` -> `[N, C, H + 2p, W + 2p]` with zeros around each plane (stride 1).
fn pad_planes<T: Elem>(g: &Geometry, x: &[T], xp: &mut [T]) {
    let (p, (hp, wp)) = (g.pad, padded_dims(g));
    for_each_item(&mut xp[..g.n * g.c * hp * wp], hp * wp, |i, dst| {
        dst[..p * wp].fill(T::zero());
        dst[(g.h + p) * wp..].fill(T::zero());
        let src = &x[i * g.h * g.w..][..g.h * g.w];
        for (row, s) in dst[p * wp..(g.h + p) * wp].chunks_mut(wp).zip(src.chunks(g.w)) {
            row[..p].fill(T::zero());
            row[p..p + g.w].copy_from_slice(s);
            row[p + g.w..].fill(T::zero());
        }
    });
}

/// `f` on the layout im2col gathers from: with stride 1 the planes zero-padded ([`pad_planes`]; `x` itself
/// without padding), so that every run is a plain copy; with a larger stride the phase-split copy
/// ([`split_phases`]). Copies live in a scratch buffer.
pub(super) fn with_source<T: Elem, R>(g: &Geometry, x: &[T], f: impl FnOnce(&[T]) -> R) -> R {
    let len = match (g.stride, g.pad) {
        (1, 0) => return f(x),
        (1, _) => g.n * g.c * padded_dims(g).0 * padded_dims(g).1,
        _ => split_len(g),
    };
    with_scratch(len, |xs: &mut [T]| {
        if g.stride == 1 {
            pad_planes(g, x, xs);
        } else {
            split_phases(g, x, xs);
        }
        f(xs)
    })
}

/// im2col from the layout of [`with_source`].
fn gather<T: Elem>(g: &Geometry, xs: &[T], out: &mut [T]) {
    let (p, npix) = (g.ho() * g.wo(), g.npix());
    for_each_item(&mut out[..g.ckk() * npix], npix, |r, row| {
        for n in 0..g.n {
            gather_run(g, xs, n, r, &mut row[n * p..][..p]);
        }
    });
}

/// Sample `n`'s patch matrix `out: [C * k * k, Ho * Wo]`, on the calling thread, from the layout of
/// [`with_source`]: the columns `n * Ho * Wo..` of [`run_im2col`]'s output.
pub(super) fn im2col_sample<T: Elem>(g: &Geometry, xs: &[T], n: usize, out: &mut [T]) {
    let p = g.ho() * g.wo();
    for (r, run) in out[..g.ckk() * p].chunks_mut(p).enumerate() {
        gather_run(g, xs, n, r, run);
    }
}

/// Patch row `r` of sample `n` (`Ho * Wo` values) into `dst`.
fn gather_run<T: Elem>(g: &Geometry, xs: &[T], n: usize, r: usize, dst: &mut [T]) {
    let (ho, wo, s, wp) = (g.ho(), g.wo(), g.stride, phase_width(g));
    if s == 1 {
        // Padded planes: output row oh of kernel offset (ki, kj) is padded row oh + ki from column kj.
        let (c, ki, kj) = row_offset(g, r);
        let (hp, wpad) = padded_dims(g);
        let plane = &xs[(n * g.c + c) * hp * wpad..][..hp * wpad];
        for (oh, dst) in dst.chunks_mut(wo).take(ho).enumerate() {
            dst.copy_from_slice(&plane[(oh + ki) * wpad + kj..][..wo]);
        }
        return;
    }
    let (c, ki, kj, lo, hi) = row_parts(g, r);
    let phase = phase_of(g, kj);
    let plane = &xs[(n * g.c + c) * g.h * s * wp..][..g.h * s * wp];
    for (oh, dst) in dst.chunks_mut(wo).take(ho).enumerate() {
        let Some(ih) = input_row(g, oh, ki).filter(|_| lo < hi) else {
            dst.fill(T::zero());
            continue;
        };
        dst[..lo].fill(T::zero());
        dst[hi..].fill(T::zero());
        let src0 = run_offset(g, ih, phase, lo);
        dst[lo..hi].copy_from_slice(&plane[src0..src0 + (hi - lo)]);
    }
}

/// `cols: [C * k * k, N * Ho * Wo]` -> `out: [N, C, H, W]` (every element written), summing the entries that
/// map to the same pixel: [`col2im_sample`] for each sample, the samples split over threads.
pub(super) fn run_col2im<T: Elem>(g: &Geometry, cols: &[T], out: &mut [T]) {
    let (p, npix) = (g.ho() * g.wo(), g.npix());
    for_each_item(&mut out[..g.n * g.c * g.h * g.w], g.c * g.h * g.w, |n, img| {
        col2im_sample(g, cols, npix, n * p, img)
    });
}

/// One sample's col2im on the calling thread: row `r` of its patch-matrix gradient is
/// `cols[r * row_len + first..][..Ho * Wo]` (the whole batch's matrix with `row_len = N * Ho * Wo`, or a
/// sample's own with `row_len = Ho * Wo`), summed into `img: [C, H, W]` (every element written). With stride 1
/// through a zero-padded plane (every run a plain addition), else through the phase-split layout; either lives
/// in the thread's scratch buffer.
pub(super) fn col2im_sample<T: Elem>(g: &Geometry, cols: &[T], row_len: usize, first: usize, img: &mut [T]) {
    let img = &mut img[..g.c * g.h * g.w];
    if g.stride == 1 && g.pad > 0 {
        return add_padded(g, cols, row_len, first, img);
    }
    if g.stride == 1 {
        img.fill(T::zero());
        return add_split(g, cols, row_len, first, img);
    }
    if (g.k, g.stride, g.pad) == (3, 2, 1) {
        return gather_s2k3(g, cols, row_len, first, img);
    }
    with_scratch(g.c * g.h * g.stride * phase_width(g), |xs: &mut [T]| {
        xs.fill(T::zero());
        add_split(g, cols, row_len, first, xs);
        merge_sample(g, xs, img);
    });
}

/// [`col2im_sample`] of a 3x3 convolution with stride 2 and padding 1 (every stride-2 convolution the models
/// backpropagate into) as a gather: each pixel written once, as the sum of the one to four entries that read it.
/// Output column `ow` reads input columns `2 ow - 1`, `2 ow` and `2 ow + 1` (kernel columns 0, 1, 2), and output
/// rows read input rows likewise: an even input row is read by kernel row 1 of output row `ih / 2`, an odd one by
/// kernel row 2 of `ih / 2` and kernel row 0 of `ih / 2 + 1` (if there is one).
fn gather_s2k3<T: Elem>(g: &Geometry, cols: &[T], row_len: usize, first: usize, img: &mut [T]) {
    let (ho, wo) = (g.ho(), g.wo());
    let run = |c: usize, ki: usize, kj: usize, oh: usize| {
        &cols[((c * 3 + ki) * 3 + kj) * row_len + first + oh * wo..][..wo]
    };
    for (c, plane) in img.chunks_mut(g.h * g.w).enumerate() {
        for (ih, row) in plane.chunks_mut(g.w).enumerate() {
            let (oh, odd) = (ih / 2, ih % 2 == 1);
            let ki = if odd { 2 } else { 1 };
            input_row_of(row, [run(c, ki, 0, oh), run(c, ki, 1, oh), run(c, ki, 2, oh)], false);
            if odd && oh + 1 < ho {
                input_row_of(row, [run(c, 0, 0, oh + 1), run(c, 0, 1, oh + 1), run(c, 0, 2, oh + 1)], true);
            }
        }
    }
}

/// One input row of [`gather_s2k3`] from the output runs `[a, b, c]` of kernel columns 0, 1, 2 of one kernel row:
/// `row[2 j] = b[j]`, `row[2 j + 1] = c[j] + a[j + 1]` (without `a` past the last output column), or added to
/// `row` with `add`. The row has `2 Wo` or `2 Wo - 1` values.
fn input_row_of<T: Elem>(row: &mut [T], [a, b, c]: [&[T]; 3], add: bool) {
    let wo = b.len();
    let pairs = (row.len() / 2).min(wo - 1);
    let (head, tail) = row.split_at_mut(2 * pairs);
    let terms = head.chunks_exact_mut(2).zip(b.iter().zip(c).zip(&a[1..]));
    if add {
        terms.for_each(|(p, ((&bj, &cj), &aj))| (p[0], p[1]) = (p[0] + bj, p[1] + (cj + aj)));
    } else {
        terms.for_each(|(p, ((&bj, &cj), &aj))| (p[0], p[1]) = (bj, cj + aj));
    }
    for (v, t) in tail.iter_mut().zip([b[wo - 1], c[wo - 1]]) {
        *v = if add { *v + t } else { t };
    }
}

/// [`col2im_sample`] with stride 1 and padding: every run added into a padded plane, then the interior copied
/// out.
fn add_padded<T: Elem>(g: &Geometry, cols: &[T], row_len: usize, first: usize, img: &mut [T]) {
    let (ho, wo) = (g.ho(), g.wo());
    let (p, (hp, wp)) = (g.pad, padded_dims(g));
    with_scratch(g.c * hp * wp, |xp: &mut [T]| {
        xp.fill(T::zero());
        for r in 0..g.ckk() {
            let (c, ki, kj) = row_offset(g, r);
            let plane = &mut xp[c * hp * wp..][..hp * wp];
            for (oh, src) in cols[r * row_len + first..][..ho * wo].chunks(wo).enumerate() {
                for (d, v) in plane[(oh + ki) * wp + kj..][..wo].iter_mut().zip(src) {
                    *d += *v;
                }
            }
        }
        for (dst, plane) in img.chunks_mut(g.h * g.w).zip(xp.chunks(hp * wp)) {
            for (d, s) in dst.chunks_mut(g.w).zip(plane[p * wp..].chunks(wp)) {
                d.copy_from_slice(&s[p..p + g.w]);
            }
        }
    })
}

/// [`col2im_sample`] into one sample's phase-split layout `[C, H, s, ceil(W / s)]` (its plain layout when the
/// stride is 1), adding.
fn add_split<T: Elem>(g: &Geometry, cols: &[T], row_len: usize, first: usize, img: &mut [T]) {
    let (ho, wo, s, wp) = (g.ho(), g.wo(), g.stride, phase_width(g));
    for r in 0..g.ckk() {
        let (c, ki, kj, lo, hi) = row_parts(g, r);
        if lo >= hi {
            continue;
        }
        let phase = phase_of(g, kj);
        let plane = &mut img[c * g.h * s * wp..][..g.h * s * wp];
        let row = &cols[r * row_len + first..][..ho * wo];
        for oh in 0..ho {
            let Some(ih) = input_row(g, oh, ki) else { continue };
            let src = &row[oh * wo..][lo..hi];
            let dst0 = run_offset(g, ih, phase, lo);
            for (d, v) in plane[dst0..dst0 + src.len()].iter_mut().zip(src) {
                *d += *v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The phase-split col2im (zeroed layout, additions, merge) that [`gather_s2k3`] stands in for.
    fn through_phases(g: &Geometry, cols: &[f64], row_len: usize, first: usize) -> Vec<f64> {
        let mut xs = vec![0.0; g.c * g.h * g.stride * phase_width(g)];
        add_split(g, cols, row_len, first, &mut xs);
        let mut img = vec![f64::NAN; g.c * g.h * g.w];
        merge_sample(g, &xs, &mut img);
        img
    }

    #[test]
    fn the_stride_2_gather_matches_the_phase_split_col2im() {
        for (h, w) in [(6, 6), (7, 6), (6, 7), (9, 9), (2, 3), (1, 1)] {
            let g = Geometry { n: 3, c: 2, h, w, k: 3, stride: 2, pad: 1 };
            let cols: Vec<f64> = (0..g.ckk() * g.npix()).map(|i| (i as f64 * 0.377).sin()).collect();
            let p = g.ho() * g.wo();
            for n in 0..g.n {
                let want = through_phases(&g, &cols, g.npix(), n * p);
                let mut got = vec![f64::NAN; want.len()];
                gather_s2k3(&g, &cols, g.npix(), n * p, &mut got);
                assert!(got.iter().all(|v| v.is_finite()), "{h}x{w}: every pixel written");
                let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                assert!(worst < 1e-12, "{h}x{w} sample {n}: differs by {worst}");
            }
        }
    }
}
