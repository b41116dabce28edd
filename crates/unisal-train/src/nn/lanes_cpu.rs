//! Sums over planes in independent lanes ([`lane_sums`], what the batch norm's statistics and backward take), and
//! where the CPU has AVX2 the same code compiled for it ([`avx2`]).
//!
//! The crate is compiled for the x86-64 baseline (SSE2), so that the binary runs on every such CPU. The matrix
//! products already pick AVX2 or AVX-512 at run time (the gemm crate); [`lane_sums`] is compiled twice, for the
//! baseline and with `#[target_feature(enable = "avx2")]`, and the choice is made on the first call. The two builds
//! compute the same operations in the same order (no fused multiply-add: the compiler never contracts `a * b + c`), so
//! their results are bit-identical; only the vector width differs. `UNISAL_CPU_SIMD=baseline` keeps the baseline
//! build (for comparisons).

use std::mem::MaybeUninit;
use std::sync::OnceLock;

use super::cpu_util::Elem;

/// Lanes of a block sum: independent accumulators, what the compiler turns into vector registers (a single
/// running sum is one long dependency chain).
const LANES: usize = 16;

/// Elements summed in f32 lanes before the lanes are added into the f64 total: no f32 sum runs over more than
/// `BLOCK / LANES` = 64 values.
const BLOCK: usize = 1024;

/// Whether the AVX2 build of [`lane_sums`] runs: the CPU has AVX2, unless `UNISAL_CPU_SIMD=baseline`.
/// Read once.
fn avx2() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let wanted = std::env::var("UNISAL_CPU_SIMD").map_or(true, |v| v != "baseline");
        wanted && has_avx2()
    })
}

/// Whether the CPU has AVX2.
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `sum_i f(a[i], b[i], c[i])` (K sums at once) over equally long slices. In each block of [`BLOCK`] elements
/// the values of `f` are written to a stack buffer first (one plain loop, which the compiler vectorises; computed
/// lane by lane inside the summing loop they were not), then summed in [`LANES`] lanes; the elements after the
/// block's last whole group of lanes go straight into the f64 total, then the lanes' sums.
pub(crate) fn lane_sums<T: Elem, const K: usize>(
    a: &[T],
    b: &[T],
    c: &[T],
    f: impl Fn(T, T, T) -> [T; K],
) -> [f64; K] {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: `avx2()` checked that the CPU has AVX2.
        return unsafe { lane_sums_avx2(a, b, c, f) };
    }
    lane_sums_in(a, b, c, f)
}

/// [`lane_sums`] compiled with AVX2.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lane_sums_avx2<T: Elem, const K: usize, F: Fn(T, T, T) -> [T; K]>(
    a: &[T],
    b: &[T],
    c: &[T],
    f: F,
) -> [f64; K] {
    lane_sums_in(a, b, c, f)
}

/// The body of [`lane_sums`], inlined into each build.
#[inline(always)]
fn lane_sums_in<T: Elem, const K: usize>(
    a: &[T],
    b: &[T],
    c: &[T],
    f: impl Fn(T, T, T) -> [T; K],
) -> [f64; K] {
    assert!(a.len() == b.len() && a.len() == c.len(), "lane_sums: slices of different lengths");
    let mut total = [0.0f64; K];
    let mut vals = [[MaybeUninit::<T>::uninit(); BLOCK]; K];
    for ((ab, bb), cb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)).zip(c.chunks(BLOCK)) {
        let whole = ab.len() / LANES * LANES;
        for ((x, y), z) in ab[whole..].iter().zip(&bb[whole..]).zip(&cb[whole..]) {
            for (t, v) in total.iter_mut().zip(f(*x, *y, *z)) {
                *t += v.f();
            }
        }
        for (i, ((x, y), z)) in ab[..whole].iter().zip(&bb[..whole]).zip(&cb[..whole]).enumerate() {
            let v = f(*x, *y, *z);
            for q in 0..K {
                vals[q][i] = MaybeUninit::new(v[q]);
            }
        }
        for (t, vq) in total.iter_mut().zip(&vals) {
            // SAFETY: the loop above wrote `vq[..whole]`; `MaybeUninit<T>` has `T`'s layout.
            let vq: &[T] = unsafe { std::slice::from_raw_parts(vq.as_ptr().cast::<T>(), whole) };
            let mut acc = [T::zero(); LANES];
            for group in vq.chunks_exact(LANES) {
                for (s, v) in acc.iter_mut().zip(group) {
                    *s += *v;
                }
            }
            *t += acc.iter().map(|v| v.f()).sum::<f64>();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The old formulation (values computed inside the summing loop): the order of additions to keep.
    fn reference<const K: usize>(
        a: &[f32],
        b: &[f32],
        c: &[f32],
        f: impl Fn(f32, f32, f32) -> [f32; K],
    ) -> [f64; K] {
        let mut total = [0.0f64; K];
        for ((ab, bb), cb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)).zip(c.chunks(BLOCK)) {
            let mut acc = [[0f32; LANES]; K];
            let (ac, bc, cc) = (ab.chunks_exact(LANES), bb.chunks_exact(LANES), cb.chunks_exact(LANES));
            for ((x, y), z) in ac.remainder().iter().zip(bc.remainder()).zip(cc.remainder()) {
                for (t, v) in total.iter_mut().zip(f(*x, *y, *z)) {
                    *t += f64::from(v);
                }
            }
            for ((x, y), z) in ac.zip(bc).zip(cc) {
                for j in 0..LANES {
                    let v = f(x[j], y[j], z[j]);
                    for q in 0..K {
                        acc[q][j] += v[q];
                    }
                }
            }
            for (t, lanes) in total.iter_mut().zip(acc) {
                *t += lanes.iter().map(|v| f64::from(*v)).sum::<f64>();
            }
        }
        total
    }

    fn data(n: usize, k: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * k).sin() * 3.0 + 0.5).collect()
    }

    #[test]
    fn both_builds_sum_in_the_reference_order() {
        for n in [0, 1, 15, 16, 17, 49, 196, 1000, 1024, 1025, 2047, 3136, 5000] {
            let (a, b, c) = (data(n, 0.37), data(n, 0.11), data(n, 0.53));
            let f = |d: f32, v: f32, y: f32| {
                let g = if y > 0.0 { d } else { 0.0 };
                [g, g * (v - 0.25), d * d]
            };
            let want = reference(&a, &b, &c, f);
            assert_eq!(lane_sums_in(&a, &b, &c, f), want, "baseline build, n = {n}");
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // SAFETY: checked just above.
                assert_eq!(unsafe { lane_sums_avx2(&a, &b, &c, f) }, want, "AVX2 build, n = {n}");
            }
            let exact: f64 = a.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            assert!((want[2] - exact).abs() <= 1e-5 * exact.max(1.0), "n = {n}: {} vs {exact}", want[2]);
        }
    }
}
