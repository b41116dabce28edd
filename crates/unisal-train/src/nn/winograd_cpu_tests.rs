//! Unit tests of `winograd_cpu.rs`: the convolution and its input gradient against direct sums in f64, over
//! odd and even planes, a plane of one, a sample cut into blocks of tile rows and strided input planes, and the
//! thread count of the products changing no bit.

use super::*;

fn values(len: usize, seed: f64) -> Vec<f64> {
    (0..len).map(|i| ((i as f64 + seed) * 0.731).sin()).collect()
}

/// `y[n, o, i, j] = sum x[n, c, i + a - 1, j + b - 1] w[o, c, a, b]`, directly.
fn direct(x: &[f64], w: &[f64], n: usize, d: Dims) -> Vec<f64> {
    let (h, wd) = (d.h as isize, d.w as isize);
    let mut y = vec![0.0; n * d.cout * d.h * d.w];
    for s in 0..n {
        for o in 0..d.cout {
            for i in 0..h {
                for j in 0..wd {
                    let mut acc = 0.0;
                    for c in 0..d.cin {
                        for a in 0..3 {
                            for b in 0..3 {
                                let (ii, jj) = (i + a - 1, j + b - 1);
                                if (0..h).contains(&ii) && (0..wd).contains(&jj) {
                                    let xv = x[((s * d.cin + c) * d.h + ii as usize) * d.w + jj as usize];
                                    acc += xv * w[((o * d.cin + c) * 3 + a as usize) * 3 + b as usize];
                                }
                            }
                        }
                    }
                    y[((s * d.cout + o) * d.h + i as usize) * d.w + j as usize] = acc;
                }
            }
        }
    }
    y
}

/// `dx[n, c, p, q] = sum dy[n, o, p - a + 1, q - b + 1] w[o, c, a, b]`: [`direct`] from `dy`'s `cout` channels
/// with each filter turned by 180 degrees in the 3x3 domain and its channels swapped (`w'[c, o, a, b] =
/// w[o, c, 2 - a, 2 - b]`), not by the transforms' permutation the code under test uses.
fn direct_dx(dy: &[f64], w: &[f64], n: usize, d: Dims) -> Vec<f64> {
    let mut turned = vec![0.0; w.len()];
    for (o, c, a, b) in (0..w.len()).map(|i| (i / (9 * d.cin), i / 9 % d.cin, i / 3 % 3, i % 3)) {
        turned[((c * d.cout + o) * 3 + 2 - a) * 3 + 2 - b] = w[((o * d.cin + c) * 3 + a) * 3 + b];
    }
    direct(dy, &turned, n, Dims { cin: d.cout, cout: d.cin, ..d })
}

/// `filter_into` into a new buffer.
fn transformed(w: &[f64], o: usize, c: usize) -> Vec<f64> {
    let mut u = vec![f64::NAN; 16 * o * c];
    filter_into(w, o, c, &mut u);
    u
}

fn assert_close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-12 * scale, "{what}: element {i}: {x} against {y}");
    }
}

/// Shapes: odd and even planes, a plane of one, one sample cut into blocks of tile rows.
const CASES: [(usize, Dims); 5] = [
    (3, Dims { cin: 8, cout: 9, h: 7, w: 5 }),
    (5, Dims { cin: 9, cout: 8, h: 1, w: 1 }),
    (4, Dims { cin: 10, cout: 8, h: 6, w: 9 }),
    (2, Dims { cin: 8, cout: 11, h: 12, w: 13 }),
    (1, Dims { cin: 8, cout: 8, h: 70, w: 67 }),
];

#[test]
fn the_convolution_matches_direct_sums() {
    for (n, d) in CASES {
        let (x, w) = (values(n * d.cin * d.h * d.w, 1.0), values(d.cout * d.cin * 9, 2.0));
        let u = transformed(&w, d.cout, d.cin);
        let u = Filters { u: &u, for_dx: false };
        let mut y = vec![f64::NAN; n * d.cout * d.h * d.w];
        let seen = std::sync::Mutex::new(vec![0; n]);
        convolve(Planes::nchw(&x, d.cin, d.h * d.w), d, u, &mut y, |s, y_s| {
            assert_eq!(y_s.len(), d.cout * d.h * d.w);
            seen.lock().unwrap()[s] += 1;
        });
        assert_eq!(*seen.lock().unwrap(), vec![1; n], "{d:?}: each sample handed over once");
        assert_close(&y, &direct(&x, &w, n, d), &format!("forward {d:?}"));
    }
}

#[test]
fn the_input_gradient_matches_direct_sums() {
    for (n, d) in CASES {
        let (dy, w) = (values(n * d.cout * d.h * d.w, 3.0), values(d.cout * d.cin * 9, 4.0));
        // The input gradient is a convolution from cout to cin channels.
        let back = Dims { cin: d.cout, cout: d.cin, ..d };
        let u = transformed(&w, d.cout, d.cin);
        let u = Filters { u: &u, for_dx: true };
        let mut dx = vec![f64::NAN; n * d.cin * d.h * d.w];
        convolve(Planes::nchw(&dy, d.cout, d.h * d.w), back, u, &mut dx, |_, _| {});
        assert_close(&dx, &direct_dx(&dy, &w, n, d), &format!("input gradient {d:?}"));
    }
}

#[test]
fn strided_planes_give_the_same_result() {
    let (n, d) = (3, Dims { cin: 8, cout: 8, h: 6, w: 5 });
    let hw = d.h * d.w;
    let (x, w) = (values(n * d.cin * hw, 5.0), values(d.cout * d.cin * 9, 6.0));
    // The same input as [C, N, H W] (the batch path's channel-major layout).
    let mut x_t = vec![0.0; x.len()];
    for s in 0..n {
        for c in 0..d.cin {
            x_t[(c * n + s) * hw..][..hw].copy_from_slice(&x[(s * d.cin + c) * hw..][..hw]);
        }
    }
    let u = transformed(&w, d.cout, d.cin);
    let u = Filters { u: &u, for_dx: false };
    let run = |src: Planes<'_, f64>| {
        let mut y = vec![0.0; n * d.cout * hw];
        convolve(src, d, u, &mut y, |_, _| {});
        y
    };
    let a = run(Planes::nchw(&x, d.cin, hw));
    assert_eq!(a, run(Planes { data: &x_t, sample: hw, plane: n * hw }));
    // One sample at a time, as the per-sample backward calls it.
    let mut one = vec![0.0; d.cout * hw];
    convolve_sample(Planes::nchw(&x, d.cin, hw), d, u, (2, 1), &mut one);
    assert_close(&one, &a[2 * d.cout * hw..], "sample 2 alone");
}

#[test]
fn only_3x3_stride_1_padding_1_with_enough_channels_fits() {
    let g = Geometry { n: 2, c: 8, h: 12, w: 11, k: 3, stride: 1, pad: 1 };
    assert!(shape_fits(&g, 8));
    assert!(!shape_fits(&Geometry { h: 10, ..g }, 8), "30 tiles");
    assert!(!shape_fits(&g, 4), "few outputs");
    assert!(!shape_fits(&Geometry { c: 3, ..g }, 8), "few inputs");
    assert!(!shape_fits(&Geometry { stride: 2, ..g }, 8));
    assert!(!shape_fits(&Geometry { pad: 0, ..g }, 8));
    assert!(!shape_fits(&Geometry { k: 1, pad: 0, ..g }, 8));
}

#[test]
fn the_thread_count_of_the_products_changes_no_bit() {
    // f32 and shapes whose products gemm splits: 64 outputs, 36 and 1,000+ tiles (blocks of tile rows).
    for d in [Dims { cin: 64, cout: 64, h: 12, w: 12 }, Dims { cin: 16, cout: 64, h: 66, w: 70 }] {
        let hw = d.h * d.w;
        let x: Vec<f32> = values(d.cin * hw, 7.0).into_iter().map(|v| v as f32).collect();
        let w: Vec<f32> = values(d.cout * d.cin * 9, 8.0).into_iter().map(|v| v as f32).collect();
        let mut u = vec![0.0f32; 16 * d.cout * d.cin];
        filter_into(&w, d.cout, d.cin, &mut u);
        let u = Filters { u: &u, for_dx: false };
        let run = |threads: usize| {
            let mut y = vec![f32::NAN; d.cout * hw];
            convolve_sample(Planes::nchw(&x, d.cin, hw), d, u, (0, threads), &mut y);
            y
        };
        let one = run(1);
        for threads in [2, 3, 4] {
            let same = one.iter().zip(run(threads)).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{d:?}: {threads} threads");
        }
    }
}
