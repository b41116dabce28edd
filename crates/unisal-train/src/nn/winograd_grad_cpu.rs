//! The weight gradient of a Winograd convolution (`winograd_cpu.rs`), in the same transformed domain. With a
//! tile's forward `Y = Aᵀ (U ⊙ V) A`, `U = G g Gᵀ` and `V = Bᵀ d B`, the gradient of a 2x2 output tile `dY` gives
//! `dU = (A dY Aᵀ) ⊙ V` and `dg = Gᵀ dU G`. Summed over tiles and samples, each transform element `ξ` is a product
//! over tiles: `dU[ξ] += dYt[ξ] · V[ξ]ᵀ` (`[O, tiles] x [tiles, C]`), 2.25 times fewer multiplications than
//! im2col's `dY · colsᵀ`, and `dW = Gᵀ dU G` once at the end ([`filter_grad`]).
//!
//! `conv_sample_cpu.rs` calls [`add_weight_grad`] for each sample into the partial sums of its fixed groups of
//! samples, so the result depends on the batch, not on the thread count.

use super::cpu_util::Elem;
use super::gemm_cpu::{matmul_add, with_scratch, MatRef};
use super::winograd_cpu::{input_transform, Dims, Planes};

/// `du: [16, O, C]` plus (or, without `add`, set to) sample `n`'s share: the product over its tiles of the output
/// gradient's transforms (`dy`, sample `n_dy`) and the input's (`x`, sample `n`). `d` is the forward's (`cin` = C,
/// `cout` = O).
pub(super) fn add_weight_grad<T: Elem>(
    (x, n): (Planes<'_, T>, usize),
    (dy, n_dy): (Planes<'_, T>, usize),
    d: Dims,
    du: &mut [T],
    add: bool,
) {
    let (th, tw, rows) = (d.tile_rows(), d.tile_cols(), d.block_rows());
    let (o, c) = (d.cout, d.cin);
    assert!(du.len() >= 16 * o * c, "winograd weight gradient: {d:?}");
    let most = rows * tw;
    with_scratch(16 * c * most, |v: &mut [T]| {
        with_scratch(16 * o * most, |t: &mut [T]| {
            with_scratch(2 * (tw + 1) + 4 * tw * (2 * rows + 2), |tmp: &mut [T]| {
                let mut tr0 = 0;
                while tr0 < th {
                    let tr1 = (tr0 + rows).min(th);
                    let nt = (tr1 - tr0) * tw;
                    input_transform(x, d, (n, tr0..tr1), &mut v[..16 * c * nt], tmp);
                    grad_transform((dy, n_dy), d, tr0..tr1, &mut t[..16 * o * nt], tmp);
                    for xi in 0..16 {
                        let a = MatRef::row_major(&t[xi * o * nt..], o, nt);
                        let b = MatRef::row_major(&v[xi * c * nt..], c, nt).t();
                        matmul_add(&mut du[xi * o * c..][..o * c], a, b, add || tr0 > 0);
                    }
                    tr0 = tr1;
                }
            })
        })
    });
}

/// `dYt: [16, O, nt]`, `A dY Aᵀ` of every 2x2 output-gradient tile of tile rows `rows` (zero beyond the plane).
/// `A = Aᵀᵀ` turns a pair `(e0, e1)` into `(e0, e0 + e1, e0 - e1, -e1)`, along rows and then along columns.
fn grad_transform<T: Elem>(
    (dy, n): (Planes<'_, T>, usize),
    d: Dims,
    rows: std::ops::Range<usize>,
    t: &mut [T],
    tmp: &mut [T],
) {
    let tw = d.tile_cols();
    let nt = rows.len() * tw;
    // Even and odd columns of the tile row's two output rows.
    let (cols, _) = tmp.split_at_mut(4 * tw);
    for oi in 0..d.cout {
        let plane = &dy.data[n * dy.sample + oi * dy.plane..][..d.h * d.w];
        for tr in rows.clone() {
            for (a, pair) in cols.chunks_exact_mut(2 * tw).enumerate() {
                let (ev, od) = pair.split_at_mut(tw);
                ev.fill(T::zero());
                od.fill(T::zero());
                let oh = 2 * tr + a;
                if oh < d.h {
                    for (i, &v) in plane[oh * d.w..][..d.w].iter().enumerate() {
                        if i % 2 == 0 {
                            ev[i / 2] = v;
                        } else {
                            od[i / 2] = v;
                        }
                    }
                }
            }
            let (e0, rest) = cols.split_at(tw);
            let (o0, rest) = rest.split_at(tw);
            let (e1, o1) = rest.split_at(tw);
            let off = (tr - rows.start) * tw;
            for q in 0..tw {
                // Rows: (row 0), (row 0 + row 1), (row 0 - row 1), (-row 1); each as (even, odd) columns.
                let pairs = [
                    (e0[q], o0[q]),
                    (e0[q] + e1[q], o0[q] + o1[q]),
                    (e0[q] - e1[q], o0[q] - o1[q]),
                    (T::zero() - e1[q], T::zero() - o1[q]),
                ];
                for (i, (f0, f1)) in pairs.into_iter().enumerate() {
                    for (k, val) in [f0, f0 + f1, f0 - f1, T::zero() - f1].into_iter().enumerate() {
                        t[((i * 4 + k) * d.cout + oi) * nt + off + q] = val;
                    }
                }
            }
        }
    }
}

/// `dw: [O, C, 3, 3]` = `Gᵀ dU G` of every channel pair of `du: [16, O, C]`.
pub(super) fn filter_grad<T: Elem>(du: &[T], o: usize, c: usize, dw: &mut [T]) {
    let (half, oc) = (T::of(0.5), o * c);
    assert!(du.len() >= 16 * oc && dw.len() >= 9 * oc, "winograd weight gradient: {o} x {c}");
    // Gᵀ's rows on (m0, m1, m2, m3): m0 + (m1 + m2) / 2, (m1 - m2) / 2, (m1 + m2) / 2 + m3.
    let gt = |m: [T; 4]| [m[0] + half * (m[1] + m[2]), half * (m[1] - m[2]), half * (m[1] + m[2]) + m[3]];
    for (pair, out) in dw[..9 * oc].chunks_exact_mut(9).enumerate() {
        let m = |i: usize, k: usize| du[(i * 4 + k) * oc + pair];
        // Gᵀ dU: [3, 4], a column at a time; then (Gᵀ dU) G: [3, 3], a row at a time.
        let cols: [[T; 3]; 4] = std::array::from_fn(|k| gt([m(0, k), m(1, k), m(2, k), m(3, k)]));
        for a in 0..3 {
            let row = gt([cols[0][a], cols[1][a], cols[2][a], cols[3][a]]);
            out[a * 3..a * 3 + 3].copy_from_slice(&row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: f64) -> Vec<f64> {
        (0..len).map(|i| ((i as f64 + seed) * 0.731).sin()).collect()
    }

    #[test]
    fn the_weight_gradient_matches_direct_sums() {
        // Odd and even planes, a plane of one, a plane cut into blocks of tile rows.
        let cases = [
            (3, Dims { cin: 8, cout: 9, h: 7, w: 5 }),
            (2, Dims { cin: 9, cout: 8, h: 1, w: 1 }),
            (2, Dims { cin: 8, cout: 10, h: 12, w: 13 }),
            (1, Dims { cin: 8, cout: 8, h: 70, w: 67 }),
        ];
        for (n, d) in cases {
            let (hw, (o, c)) = (d.h * d.w, (d.cout, d.cin));
            let (x, dy) = (values(n * c * hw, 1.0), values(n * o * hw, 2.0));
            let mut du = vec![f64::NAN; 16 * o * c];
            for s in 0..n {
                let (xs, dys) = (Planes::nchw(&x, c, hw), Planes::nchw(&dy, o, hw));
                add_weight_grad((xs, s), (dys, s), d, &mut du, s > 0);
            }
            let mut dw = vec![f64::NAN; 9 * o * c];
            filter_grad(&du, o, c, &mut dw);
            let (h, w) = (d.h as isize, d.w as isize);
            let mut want = vec![0.0; 9 * o * c];
            for s in 0..n {
                for (oi, ci, a, b) in (0..o * c * 9).map(|i| (i / (9 * c), i / 9 % c, i / 3 % 3, i % 3)) {
                    for (i, j) in (0..h * w).map(|p| (p / w, p % w)) {
                        let (ii, jj) = (i + a as isize - 1, j + b as isize - 1);
                        if (0..h).contains(&ii) && (0..w).contains(&jj) {
                            let xv = x[(s * c + ci) * hw + (ii * w + jj) as usize];
                            want[(oi * c + ci) * 9 + a * 3 + b] +=
                                dy[(s * o + oi) * hw + (i * w + j) as usize] * xv;
                        }
                    }
                }
            }
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (k, (got, want)) in dw.iter().zip(&want).enumerate() {
                assert!((got - want).abs() <= 1e-12 * scale, "{d:?}: element {k}: {got} against {want}");
            }
        }
    }
}
