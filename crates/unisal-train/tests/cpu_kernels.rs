//! The CPU kernels of `nn`: the im2col convolution (`ConvImpl::Im2col`), the batch-norm custom ops (`BnImpl::Auto`
//! on the CPU, train and eval mode), max pooling and the residual join `add_relu`. Their gradients against central finite differences in f64 (convolution: stride 1
//! and 2, padding 0/1/3, square and non-square inputs, 1x1, 3x3 and 7x7 kernels, with and without bias), and their
//! outputs, gradients and running statistics against the composed candle path (`ConvImpl::Candle`,
//! `BnImpl::Candle`, `max_pool2d_composed`, `(a + b).relu()`) on random f32 inputs.

mod gradcheck_support;

use candle_core::{DType, Tensor, Var};
use gradcheck_support::{assert_close, distinct_var, gradcheck, values, var_as, weighted_sum};
use unisal_train::nn::{add_relu, max_pool2d, max_pool2d_composed, BatchNorm2d, BnImpl, Conv2d, ConvImpl};

/// (input [N, C, H, W], out channels, kernel, stride, padding, bias)
type Case = ([usize; 4], usize, usize, usize, usize, bool);

fn expected_side(size: usize, k: usize, s: usize, p: usize) -> usize {
    (size + 2 * p - k) / s + 1
}

#[test]
fn im2col_conv_gradients_match_finite_differences() {
    // The last case has more output channels than patch-matrix rows (the weight gradient's untransposed product).
    let cases: [Case; 12] = [
        ([2, 2, 5, 5], 3, 3, 1, 1, true),
        ([2, 2, 5, 7], 3, 3, 1, 1, false),
        ([2, 2, 6, 6], 3, 3, 2, 1, false),
        ([2, 2, 7, 6], 3, 3, 2, 1, true),
        ([1, 2, 6, 9], 2, 3, 2, 0, false),
        ([1, 2, 9, 8], 2, 7, 2, 3, false),
        ([1, 1, 11, 10], 2, 7, 1, 3, true),
        ([2, 3, 5, 4], 2, 1, 1, 0, false),
        ([2, 3, 7, 6], 2, 1, 2, 0, true),
        ([1, 2, 4, 5], 2, 1, 1, 1, false),
        ([1, 1, 4, 4], 66, 3, 1, 1, false),
        // Winograd's F(2x2, 3x3) (`winograd_cpu.rs`: 3x3, stride 1, padding 1, 8+ channels, 36+ tiles).
        ([2, 8, 12, 11], 8, 3, 1, 1, true),
    ];
    for (i, (xs, out, k, s, p, bias)) in cases.into_iter().enumerate() {
        let seed = 100 * i as u64;
        let x = var_as(&xs, seed, DType::F64);
        let w = var_as(&[out, xs[1], k, k], seed + 1, DType::F64);
        let b = bias.then(|| var_as(&[out], seed + 2, DType::F64));
        let conv = Conv2d::from_vars(w.clone(), b.clone(), s, p);
        let y = conv.forward_with(x.as_tensor(), ConvImpl::Im2col).unwrap();
        let (ho, wo) = (expected_side(xs[2], k, s, p), expected_side(xs[3], k, s, p));
        assert_eq!(y.dims(), &[xs[0], out, ho, wo]);
        let mut vars = vec![&x, &w];
        vars.extend(b.as_ref());
        let name = format!("im2col conv{k}x{k}/{s} pad {p} on {}x{}", xs[2], xs[3]);
        gradcheck(&name, &vars, || conv.forward_with(x.as_tensor(), ConvImpl::Im2col).unwrap());
    }
}

#[test]
fn im2col_conv_matches_candle_conv_forward_and_backward() {
    // Square inputs: candle's own stride-2 backward is only right on square inputs. Both weight-gradient layouts
    // `conv_cpu.rs` chooses: `C * k * k` at least / below `O`. Batches of 9-17 put several samples in each
    // partial weight gradient of the per-sample path (`conv_sample_cpu.rs`), the last group shorter.
    let cases: [Case; 14] = [
        ([4, 3, 16, 16], 8, 3, 1, 1, false),
        ([4, 8, 16, 16], 16, 3, 2, 1, false),
        ([2, 3, 23, 23], 8, 7, 2, 3, false),
        ([3, 8, 9, 9], 16, 3, 2, 1, true),
        ([3, 8, 9, 9], 16, 1, 2, 0, false),
        ([2, 16, 4, 4], 8, 3, 1, 1, false),
        ([2, 4, 6, 6], 4, 3, 1, 0, true),
        ([2, 5, 6, 6], 72, 3, 2, 1, true),
        ([9, 3, 8, 8], 16, 3, 1, 1, true),
        ([10, 4, 9, 9], 8, 3, 2, 1, false),
        ([17, 2, 7, 7], 40, 3, 2, 1, false),
        // Winograd (`winograd_cpu.rs`) on the per-sample path, on the batch path (over 64 outputs), and on a
        // plane cut into blocks of tile rows (over 1,024 tiles).
        ([3, 8, 12, 12], 8, 3, 1, 1, false),
        ([2, 16, 13, 12], 72, 3, 1, 1, true),
        ([2, 8, 70, 66], 8, 3, 1, 1, false),
    ];
    for (i, (xs, out, k, s, p, bias)) in cases.into_iter().enumerate() {
        let seed = 1000 + 10 * i as u64;
        let x = var_as(&xs, seed, DType::F32);
        let w = var_as(&[out, xs[1], k, k], seed + 1, DType::F32);
        let b = bias.then(|| var_as(&[out], seed + 2, DType::F32));
        let conv = Conv2d::from_vars(w.clone(), b.clone(), s, p);
        let run = |imp: ConvImpl| {
            let y = conv.forward_with(x.as_tensor(), imp).unwrap();
            let grads = weighted_sum(&y).backward().unwrap();
            let mut all = vec![values(&y)];
            all.push(values(grads.get(x.as_tensor()).unwrap()));
            all.push(values(grads.get(w.as_tensor()).unwrap()));
            if let Some(b) = &b {
                all.push(values(grads.get(b.as_tensor()).unwrap()));
            }
            all
        };
        let (ours, theirs) = (run(ConvImpl::Im2col), run(ConvImpl::Candle));
        for (j, what) in ["output", "grad x", "grad w", "grad b"].iter().enumerate().take(ours.len()) {
            let scale = theirs[j].iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let worst = ours[j].iter().zip(&theirs[j]).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst / scale < 1e-5,
                "case {i} {xs:?} k{k}/{s}: {what} differs by {worst} (scale {scale})"
            );
        }
    }
}

#[test]
fn auto_uses_a_path_that_agrees_with_candle_on_the_cpu() {
    let x = var_as(&[2, 3, 12, 12], 7, DType::F32);
    let w = var_as(&[4, 3, 3, 3], 8, DType::F32);
    let conv = Conv2d::from_vars(w, None, 2, 1);
    let auto = values(&conv.forward(x.as_tensor()).unwrap());
    let candle = values(&conv.forward_with(x.as_tensor(), ConvImpl::Candle).unwrap());
    let worst = auto.iter().zip(&candle).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst < 1e-5, "{worst}");
}

#[test]
fn a_plain_input_gets_no_gradient_and_the_weight_gradient_is_unchanged() {
    // The first layer's images need no gradient: the op skips dx, and dW must not change.
    let x = var_as(&[2, 3, 9, 9], 11, DType::F64);
    let w = var_as(&[4, 3, 3, 3], 12, DType::F64);
    let conv = Conv2d::from_vars(w.clone(), None, 2, 1);
    let with_x = weighted_sum(&conv.forward(x.as_tensor()).unwrap()).backward().unwrap();
    let plain = x.as_tensor().detach();
    let without_x = weighted_sum(&conv.forward(&plain).unwrap()).backward().unwrap();
    assert!(without_x.get(&plain).is_none());
    let (a, b) = (values(with_x.get(w.as_tensor()).unwrap()), values(without_x.get(w.as_tensor()).unwrap()));
    assert_close("grad w", &a, &b, 1e-12);
}

#[test]
fn kernel_larger_than_the_padded_input_is_an_error() {
    let x = var_as(&[1, 1, 3, 3], 1, DType::F32);
    let w = var_as(&[1, 1, 7, 7], 2, DType::F32);
    let conv = Conv2d::from_vars(w, None, 1, 1);
    assert!(conv.forward_with(x.as_tensor(), ConvImpl::Im2col).is_err());
}

fn bn(channels: usize, seed: u64, dtype: DType) -> (BatchNorm2d, [Var; 4]) {
    let w = var_as(&[channels], seed, dtype);
    let b = var_as(&[channels], seed + 1, dtype);
    let rm = var_as(&[channels], seed + 2, dtype);
    let rv =
        Var::from_tensor(&(var_as(&[channels], seed + 3, dtype).as_tensor().abs().unwrap() + 0.5).unwrap())
            .unwrap();
    let layer = BatchNorm2d::from_vars(w.clone(), b.clone(), rm.clone(), rv.clone());
    (layer, [w, b, rm, rv])
}

#[test]
fn batchnorm_cpu_op_gradients_match_finite_differences() {
    for (i, xs) in [[3, 2, 3, 3], [2, 3, 4, 5], [4, 1, 1, 1]].into_iter().enumerate() {
        let x = var_as(&xs, 50 + i as u64, DType::F64);
        let (layer, [w, b, _, _]) = bn(xs[1], 60 + 10 * i as u64, DType::F64);
        let name = format!("bn op train on {xs:?}");
        gradcheck(&name, &[&x, &w, &b], || layer.forward_with(x.as_tensor(), true, BnImpl::Auto).unwrap());
        let name = format!("bn+relu op train on {xs:?}");
        gradcheck(&name, &[&x, &w, &b], || layer.forward_relu(x.as_tensor(), true).unwrap());
    }
}

#[test]
fn batchnorm_cpu_op_matches_candle_ops() {
    for (i, xs) in [[8, 16, 12, 12], [3, 5, 7, 4], [32, 4, 2, 2]].into_iter().enumerate() {
        let seed = 500 + 10 * i as u64;
        let x = var_as(&xs, seed, DType::F32);
        // Offset and scaled inputs: the statistics must not lose precision when the mean is large.
        let x = Var::from_tensor(&x.as_tensor().affine(3.0, 5.0).unwrap()).unwrap();
        let run = |imp: BnImpl, relu: bool| {
            let (layer, [w, b, rm, rv]) = bn(xs[1], seed + 1, DType::F32);
            let y = if relu {
                layer.forward_relu_with(x.as_tensor(), true, imp).unwrap()
            } else {
                layer.forward_with(x.as_tensor(), true, imp).unwrap()
            };
            let grads = weighted_sum(&y).backward().unwrap();
            vec![
                values(&y),
                values(grads.get(x.as_tensor()).unwrap()),
                values(grads.get(w.as_tensor()).unwrap()),
                values(grads.get(b.as_tensor()).unwrap()),
                values(rm.as_tensor()),
                values(rv.as_tensor()),
            ]
        };
        for relu in [false, true] {
            let (ours, theirs) = (run(BnImpl::Auto, relu), run(BnImpl::Candle, relu));
            let names = ["output", "grad x", "grad w", "grad b", "running mean", "running var"];
            for (j, what) in names.iter().enumerate() {
                let scale = theirs[j].iter().fold(1.0f64, |m, v| m.max(v.abs()));
                let worst = ours[j].iter().zip(&theirs[j]).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    worst / scale < 1e-4,
                    "{xs:?} relu {relu}: {what} differs by {worst} (scale {scale})"
                );
            }
        }
    }
}

#[test]
fn batchnorm_eval_op_matches_candle_ops_and_finite_differences() {
    for (i, xs) in [[4, 6, 5, 5], [2, 3, 1, 7]].into_iter().enumerate() {
        let seed = 700 + 10 * i as u64;
        let x = var_as(&xs, seed, DType::F32);
        let (layer, [w, b, _, _]) = bn(xs[1], seed + 1, DType::F32);
        for relu in [false, true] {
            let run = |imp: BnImpl| {
                let y = if relu {
                    layer.forward_relu_with(x.as_tensor(), false, imp).unwrap()
                } else {
                    layer.forward_with(x.as_tensor(), false, imp).unwrap()
                };
                let grads = weighted_sum(&y).backward().unwrap();
                let grad = |v: &Var| values(grads.get(v.as_tensor()).unwrap());
                vec![values(&y), grad(&x), grad(&w), grad(&b)]
            };
            let (ours, theirs) = (run(BnImpl::Auto), run(BnImpl::Candle));
            for (j, what) in ["output", "grad x", "grad w", "grad b"].iter().enumerate() {
                assert_close(&format!("{xs:?} relu {relu}: {what}"), &ours[j], &theirs[j], 1e-5);
            }
        }
        let x = var_as(&xs, seed, DType::F64);
        let (layer, [w, b, _, _]) = bn(xs[1], seed + 1, DType::F64);
        gradcheck(&format!("bn+relu op eval on {xs:?}"), &[&x, &w, &b], || {
            layer.forward_relu(x.as_tensor(), false).unwrap()
        });
    }
}

#[test]
fn max_pool_op_matches_the_composed_pool_and_finite_differences() {
    // (input, kernel, stride, padding): ResNet's stem pool, non-square inputs, k = s, overlapping stride 1.
    let cases = [
        ([2, 3, 9, 9], 3, 2, 1),
        ([2, 2, 8, 11], 3, 2, 1),
        ([1, 4, 6, 6], 2, 2, 0),
        ([1, 2, 7, 5], 3, 1, 1),
        ([3, 1, 5, 8], 2, 1, 0),
    ];
    for (i, (xs, k, s, p)) in cases.into_iter().enumerate() {
        let x = distinct_var(&xs, 800 + i as u64);
        gradcheck(&format!("max pool op {k}/{s}/{p} on {xs:?}"), &[&x], || {
            max_pool2d(x.as_tensor(), k, s, p).unwrap()
        });
        let x32 = Var::from_tensor(&x.as_tensor().to_dtype(DType::F32).unwrap()).unwrap();
        let run = |op: bool| {
            let y = if op {
                max_pool2d(x32.as_tensor(), k, s, p).unwrap()
            } else {
                max_pool2d_composed(x32.as_tensor(), k, s, p).unwrap()
            };
            let grads = weighted_sum(&y).backward().unwrap();
            (y.dims().to_vec(), values(&y), values(grads.get(x32.as_tensor()).unwrap()))
        };
        let (ours, theirs) = (run(true), run(false));
        assert_eq!(ours.0, theirs.0, "{xs:?} {k}/{s}/{p}: output shape");
        assert_eq!(ours.1, theirs.1, "{xs:?} {k}/{s}/{p}: output");
        assert_close(&format!("{xs:?} {k}/{s}/{p}: grad x"), &ours.2, &theirs.2, 1e-6);
    }
}

#[test]
fn max_pool_op_sends_a_tied_window_gradient_to_its_first_maximum() {
    // torch gives a tied window's gradient to the first maximum in row-major order; ReLU outputs tie at 0.
    let x = Var::from_tensor(&Tensor::zeros((1, 1, 2, 2), DType::F32, &candle_core::Device::Cpu).unwrap())
        .unwrap();
    let y = max_pool2d(x.as_tensor(), 2, 2, 0).unwrap();
    let g = values(y.sum_all().unwrap().backward().unwrap().get(x.as_tensor()).unwrap());
    assert_eq!(g, [1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn max_pool_op_propagates_nan_like_torch() {
    // A window holding a NaN outputs NaN and its gradient goes to the NaN; other windows are unaffected.
    let dev = candle_core::Device::Cpu;
    let v = vec![1.0f32, f32::NAN, 5.0, 2.0, 3.0, 4.0, 9.0, 0.0];
    let x = Var::from_tensor(&Tensor::from_vec(v, (1, 1, 2, 4), &dev).unwrap()).unwrap();
    let y = max_pool2d(x.as_tensor(), 2, 2, 0).unwrap();
    let out = values(&y);
    assert!(out[0].is_nan() && out[1] == 9.0, "{out:?}");
    let g = values(y.sum_all().unwrap().backward().unwrap().get(x.as_tensor()).unwrap());
    assert_eq!(g, [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
}

#[test]
fn add_relu_op_matches_candle_ops_and_finite_differences() {
    let (a, b) = (var_as(&[2, 3, 4, 5], 900, DType::F64), var_as(&[2, 3, 4, 5], 901, DType::F64));
    gradcheck("add-relu op", &[&a, &b], || add_relu(a.as_tensor(), b.as_tensor()).unwrap());
    // Large enough to run on several threads, with a length that is not a multiple of the work item.
    let (a, b) = (var_as(&[3, 7, 61, 67], 902, DType::F32), var_as(&[3, 7, 61, 67], 903, DType::F32));
    let run = |op: bool| {
        let y = if op {
            add_relu(a.as_tensor(), b.as_tensor()).unwrap()
        } else {
            (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap()
        };
        let grads = weighted_sum(&y).backward().unwrap();
        [values(&y), values(grads.get(a.as_tensor()).unwrap()), values(grads.get(b.as_tensor()).unwrap())]
    };
    let (ours, theirs) = (run(true), run(false));
    for (j, what) in ["output", "grad a", "grad b"].iter().enumerate() {
        assert_close(what, &ours[j], &theirs[j], 1e-6);
    }
}
