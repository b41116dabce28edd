//! CPU im2col / col2im (adjoint linear maps) in the channel-major layout of the whole batch: the work of the
//! convolution op of `conv_cpu.rs`.
//!
//! [`run_im2col`] turns `x: [N, C, H, W]` into the patch matrix `cols: [C * k * k, N * Ho * Wo]`: row `(c, ki, kj)`
//! (the order of a weight `[O, C, k, k]` flattened to `[O, C * k * k]`) holds, for every sample and output
//! position `(oh, ow)`, the input pixel `(oh * s - p + ki, ow * s - p + kj)` of channel `c`, or 0 in the padding.
//! A convolution is then one matrix product `W · cols: [O, N * Ho * Wo]`, and its backward two more
//! (`dW = dY · cols^T`, `dcols = W^T · dY`) and a [`run_col2im`]. With stride 1, each output row `oh` of a sample
//! is one contiguous copy. Both run on the CPU (f32 and f64), split over candle's thread count (`cpu_util.rs`).

use super::cpu_util::{for_each_item, Elem};

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
    let (c, kk) = (r / (g.k * g.k), r % (g.k * g.k));
    let (ki, kj) = (kk / g.k, kk % g.k);
    let (lo, hi) = g.ow_range(kj);
    (c, ki, kj, lo, hi)
}

/// The input row of output row `oh` for kernel row `ki`, if inside the image.
fn input_row(g: &Geometry, oh: usize, ki: usize) -> Option<usize> {
    (oh * g.stride + ki).checked_sub(g.pad).filter(|&ih| ih < g.h)
}

/// `x: [N, C, H, W]` -> `out: [C * k * k, N * Ho * Wo]` (every element written, the padding as 0).
pub(super) fn run_im2col<T: Elem>(g: &Geometry, x: &[T], out: &mut [T]) {
    let (ho, wo, s) = (g.ho(), g.wo(), g.stride);
    let npix = g.npix();
    for_each_item(&mut out[..g.ckk() * npix], npix, |r, row| {
        let (c, ki, kj, lo, hi) = row_parts(g, r);
        for n in 0..g.n {
            let plane = &x[(n * g.c + c) * g.h * g.w..][..g.h * g.w];
            for oh in 0..ho {
                let dst = &mut row[(n * ho + oh) * wo..][..wo];
                let Some(ih) = input_row(g, oh, ki).filter(|_| lo < hi) else {
                    dst.fill(T::zero());
                    continue;
                };
                dst[..lo].fill(T::zero());
                dst[hi..].fill(T::zero());
                let src0 = ih * g.w + lo * s + kj - g.pad;
                if s == 1 {
                    dst[lo..hi].copy_from_slice(&plane[src0..src0 + (hi - lo)]);
                } else {
                    for (j, d) in dst[lo..hi].iter_mut().enumerate() {
                        *d = plane[src0 + j * s];
                    }
                }
            }
        }
    });
}

/// `cols: [C * k * k, N * Ho * Wo]` -> `out: [N, C, H, W]` (zeroed by the caller), summing the entries that map
/// to the same pixel.
pub(super) fn run_col2im<T: Elem>(g: &Geometry, cols: &[T], out: &mut [T]) {
    let (ho, wo, s) = (g.ho(), g.wo(), g.stride);
    let (npix, image) = (g.npix(), g.c * g.h * g.w);
    for_each_item(&mut out[..g.n * image], image, |n, img| {
        for (r, row) in cols.chunks(npix).enumerate() {
            let (c, ki, kj, lo, hi) = row_parts(g, r);
            if lo >= hi {
                continue;
            }
            let plane = &mut img[c * g.h * g.w..][..g.h * g.w];
            for oh in 0..ho {
                let Some(ih) = input_row(g, oh, ki) else { continue };
                let src = &row[(n * ho + oh) * wo..][lo..hi];
                let dst0 = ih * g.w + lo * s + kj - g.pad;
                if s == 1 {
                    for (d, v) in plane[dst0..dst0 + src.len()].iter_mut().zip(src) {
                        *d += *v;
                    }
                } else {
                    for (j, v) in src.iter().enumerate() {
                        plane[dst0 + j * s] += *v;
                    }
                }
            }
        }
    });
}
