//! Every layer's gradient against central finite differences in f64 on the CPU: convolutions (stride 1 and 2,
//! with and without bias, square inputs of even and odd size), BatchNorm2d in train and eval mode, Linear, ReLU,
//! global average pooling and the 3x3 stride-2 max pool. Also the layers' forward values against direct formulas.

mod gradcheck_support;

use candle_core::{DType, Device, Tensor, Var};
use gradcheck_support::{distinct_var, gradcheck, rand_vec, values, var};
use unisal_train::nn::{global_avg_pool, max_pool2d, relu, BatchNorm2d, Conv2d, ConvImpl, Linear};

#[test]
fn conv2d_stride1_with_bias() {
    let x = var(&[2, 2, 5, 5], 1);
    let w = var(&[3, 2, 3, 3], 2);
    let b = var(&[3], 3);
    let conv = Conv2d::from_vars(w.clone(), Some(b.clone()), 1, 1);
    gradcheck("conv3x3/1 bias", &[&x, &w, &b], || conv.forward(x.as_tensor()).unwrap());
}

#[test]
fn conv2d_stride2_square_even_and_odd() {
    for (size, k, pad, seed) in
        [(6, 3, 1, 10), (7, 3, 1, 20), (8, 7, 3, 30), (9, 7, 3, 40), (6, 1, 0, 50), (7, 1, 0, 60)]
    {
        let x = var(&[2, 2, size, size], seed);
        let w = var(&[3, 2, k, k], seed + 1);
        let conv = Conv2d::from_vars(w.clone(), None, 2, pad);
        let out = conv.forward(x.as_tensor()).unwrap();
        let expected = (size + 2 * pad - k) / 2 + 1;
        assert_eq!(out.dims(), &[2, 3, expected, expected]);
        gradcheck(&format!("conv{k}x{k}/2 on {size}x{size}"), &[&x, &w], || {
            conv.forward(x.as_tensor()).unwrap()
        });
    }
}

#[test]
fn conv2d_forward_matches_direct_sum() {
    let x = var(&[1, 2, 5, 5], 7);
    let w = var(&[2, 2, 3, 3], 8);
    let b = var(&[2], 9);
    let out = Conv2d::from_vars(w.clone(), Some(b.clone()), 2, 1).forward(x.as_tensor()).unwrap();
    let (xv, wv, bv, ov) =
        (values(x.as_tensor()), values(w.as_tensor()), values(b.as_tensor()), values(&out));
    for o in 0..2 {
        for i in 0..3 {
            for j in 0..3 {
                let mut s = bv[o];
                for c in 0..2 {
                    for di in 0..3 {
                        for dj in 0..3 {
                            let (yi, xj) = ((2 * i + di) as isize - 1, (2 * j + dj) as isize - 1);
                            if (0..5).contains(&yi) && (0..5).contains(&xj) {
                                s += xv[c * 25 + yi as usize * 5 + xj as usize]
                                    * wv[((o * 2 + c) * 3 + di) * 3 + dj];
                            }
                        }
                    }
                }
                assert!((s - ov[(o * 3 + i) * 3 + j]).abs() < 1e-12);
            }
        }
    }
}

fn bn(channels: usize, seed: u64) -> (BatchNorm2d, [Var; 4]) {
    let w = var(&[channels], seed);
    let b = var(&[channels], seed + 1);
    let rm = var(&[channels], seed + 2);
    let rv =
        Var::from_tensor(&(var(&[channels], seed + 3).as_tensor().abs().unwrap() + 0.5).unwrap()).unwrap();
    let layer = BatchNorm2d::from_vars(w.clone(), b.clone(), rm.clone(), rv.clone());
    (layer, [w, b, rm, rv])
}

#[test]
fn batchnorm_train_mode_gradient() {
    let x = var(&[3, 2, 3, 3], 11);
    let (layer, [w, b, _, _]) = bn(2, 12);
    gradcheck("bn train", &[&x, &w, &b], || layer.forward(x.as_tensor(), true).unwrap());
}

#[test]
fn batchnorm_eval_mode_gradient() {
    let x = var(&[2, 3, 2, 2], 13);
    let (layer, [w, b, _, _]) = bn(3, 14);
    gradcheck("bn eval", &[&x, &w, &b], || layer.forward(x.as_tensor(), false).unwrap());
}

#[test]
fn batchnorm_values_and_running_stats_follow_torch() {
    let x = var(&[4, 2, 3, 3], 15);
    let (layer, [w, b, rm, rv]) = bn(2, 16);
    let (rm0, rv0) = (values(rm.as_tensor()), values(rv.as_tensor()));
    let (wv, bv) = (values(w.as_tensor()), values(b.as_tensor()));
    let y = values(&layer.forward(x.as_tensor(), true).unwrap());
    let xv = values(x.as_tensor());
    let n = 4 * 9;
    for c in 0..2 {
        let idx: Vec<usize> = (0..4).flat_map(|i| (0..9).map(move |p| (i * 2 + c) * 9 + p)).collect();
        let mean = idx.iter().map(|&i| xv[i]).sum::<f64>() / n as f64;
        let var_b = idx.iter().map(|&i| (xv[i] - mean).powi(2)).sum::<f64>() / n as f64;
        for &i in &idx {
            let expected = (xv[i] - mean) / (var_b + 1e-5).sqrt() * wv[c] + bv[c];
            assert!((y[i] - expected).abs() < 1e-12, "train output");
        }
        let var_u = var_b * n as f64 / (n - 1) as f64;
        assert!((values(rm.as_tensor())[c] - (0.9 * rm0[c] + 0.1 * mean)).abs() < 1e-12, "running mean");
        assert!((values(rv.as_tensor())[c] - (0.9 * rv0[c] + 0.1 * var_u)).abs() < 1e-12, "running var");
    }
    // Eval mode uses (and keeps) the running statistics.
    let (rm1, rv1) = (values(rm.as_tensor()), values(rv.as_tensor()));
    let y = values(&layer.forward(x.as_tensor(), false).unwrap());
    for (i, (xi, yi)) in xv.iter().zip(&y).enumerate() {
        let c = (i / 9) % 2;
        let expected = (xi - rm1[c]) / (rv1[c] + 1e-5).sqrt() * wv[c] + bv[c];
        assert!((yi - expected).abs() < 1e-12, "eval output");
    }
    assert_eq!(values(rm.as_tensor()), rm1);
    assert_eq!(values(rv.as_tensor()), rv1);
}

#[test]
fn batchnorm_train_needs_two_values_per_channel() {
    let x = var(&[1, 2, 1, 1], 17);
    let (layer, _) = bn(2, 18);
    assert!(layer.forward(x.as_tensor(), true).is_err());
    assert!(layer.forward(x.as_tensor(), false).is_ok());
}

#[test]
fn linear_with_and_without_bias() {
    let x = var(&[3, 4], 21);
    let w = var(&[5, 4], 22);
    let b = var(&[5], 23);
    let with = Linear::from_vars(w.clone(), Some(b.clone()));
    gradcheck("linear bias", &[&x, &w, &b], || with.forward(x.as_tensor()).unwrap());
    let without = Linear::from_vars(w.clone(), None);
    gradcheck("linear", &[&x, &w], || without.forward(x.as_tensor()).unwrap());
    let y = values(&with.forward(x.as_tensor()).unwrap());
    let (xv, wv, bv) = (values(x.as_tensor()), values(w.as_tensor()), values(b.as_tensor()));
    for i in 0..3 {
        for o in 0..5 {
            let s: f64 = bv[o] + (0..4).map(|k| xv[i * 4 + k] * wv[o * 4 + k]).sum::<f64>();
            assert!((y[i * 5 + o] - s).abs() < 1e-12);
        }
    }
}

#[test]
fn relu_and_global_average_pool() {
    // Keep ReLU inputs away from 0, where it is not differentiable.
    let raw = rand_vec(2 * 3 * 4 * 4, 31);
    let shifted: Vec<f64> = raw.iter().map(|v| if v.abs() < 0.05 { v + 0.1 } else { *v }).collect();
    let x = Var::from_tensor(&Tensor::from_vec(shifted, (2, 3, 4, 4), &Device::Cpu).unwrap()).unwrap();
    gradcheck("relu", &[&x], || relu(x.as_tensor()).unwrap());
    gradcheck("gap", &[&x], || global_avg_pool(x.as_tensor()).unwrap());
    let g = values(&global_avg_pool(x.as_tensor()).unwrap());
    let xv = values(x.as_tensor());
    for (i, gi) in g.iter().enumerate() {
        let mean = xv[i * 16..(i + 1) * 16].iter().sum::<f64>() / 16.0;
        assert!((gi - mean).abs() < 1e-12);
    }
}

fn naive_max_pool(x: &[f64], (c, h, w): (usize, usize, usize), k: usize, s: usize, p: usize) -> Vec<f64> {
    let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let mut out = Vec::new();
    for ch in 0..c {
        for i in 0..ho {
            for j in 0..wo {
                let mut m = f64::NEG_INFINITY;
                for di in 0..k {
                    for dj in 0..k {
                        let (y, xx) =
                            ((i * s + di) as isize - p as isize, (j * s + dj) as isize - p as isize);
                        if (0..h as isize).contains(&y) && (0..w as isize).contains(&xx) {
                            m = m.max(x[ch * h * w + y as usize * w + xx as usize]);
                        }
                    }
                }
                out.push(m);
            }
        }
    }
    out
}

#[test]
fn max_pool_3x3_stride2_pad1_values_and_gradient() {
    for (size, seed) in [(6, 41), (7, 42), (8, 43), (5, 44)] {
        let x = distinct_var(&[2, 2, size, size], seed);
        let out = max_pool2d(x.as_tensor(), 3, 2, 1).unwrap();
        let o = (size - 1) / 2 + 1;
        assert_eq!(out.dims(), &[2, 2, o, o]);
        assert_eq!(values(&out), naive_max_pool(&values(x.as_tensor()), (4, size, size), 3, 2, 1));
        gradcheck(&format!("maxpool 3x3/2 on {size}x{size}"), &[&x], || {
            max_pool2d(x.as_tensor(), 3, 2, 1).unwrap()
        });
    }
}

#[test]
fn max_pool_gradient_is_one_at_each_window_maximum() {
    // candle's own max_pool2d returns 1/(k*k) here; ours must give exactly the count of windows each element wins.
    let x = distinct_var(&[1, 1, 4, 4], 51);
    let out = max_pool2d(x.as_tensor(), 2, 2, 0).unwrap();
    let grads = out.sum_all().unwrap().backward().unwrap();
    let g = values(grads.get(x.as_tensor()).unwrap());
    assert_eq!(g.iter().sum::<f64>(), 4.0);
    assert!(g.iter().all(|v| *v == 0.0 || *v == 1.0));
    let reference = x.as_tensor().max_pool2d(2).unwrap();
    assert_eq!(values(&out), values(&reference));
}

#[test]
fn max_pool_works_in_f32() {
    let x = distinct_var(&[1, 3, 9, 9], 61).as_tensor().to_dtype(DType::F32).unwrap();
    let out = max_pool2d(&x, 3, 2, 1).unwrap();
    let xv: Vec<f64> = x.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap();
    let ov: Vec<f64> = out.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap();
    assert_eq!(ov, naive_max_pool(&xv, (3, 9, 9), 3, 2, 1));
}

#[test]
fn pointwise_conv_as_matrix_product_matches_candle_conv2d() {
    // Off the CPU, 1x1 convolutions without padding run as a matrix product (`ConvImpl::Candle` takes that path on
    // the CPU too); check them against candle's conv2d forward.
    for (size, stride, seed) in [(6, 1, 71), (7, 1, 72), (6, 2, 73), (7, 2, 74), (9, 3, 75)] {
        let x = var(&[2, 5, size, size], seed);
        let w = var(&[4, 5, 1, 1], seed + 1);
        let ours = Conv2d::from_vars(w.clone(), None, stride, 0)
            .forward_with(x.as_tensor(), ConvImpl::Candle)
            .unwrap();
        let candle = x.as_tensor().conv2d(w.as_tensor(), 0, stride, 1, 1).unwrap();
        assert_eq!(ours.dims(), candle.dims(), "size {size} stride {stride}");
        let worst = values(&ours).iter().zip(values(&candle)).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-12, "size {size} stride {stride}: {worst}");
    }
    let x = var(&[2, 3, 9, 9], 76);
    let w = var(&[2, 3, 1, 1], 77);
    let conv = Conv2d::from_vars(w.clone(), None, 3, 0);
    gradcheck("conv1x1/3 on 9x9", &[&x, &w], || conv.forward_with(x.as_tensor(), ConvImpl::Candle).unwrap());
}
