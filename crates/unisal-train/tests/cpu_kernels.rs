//! The CPU kernels of `nn`: the im2col convolution (`ConvImpl::Im2col`) and the train-mode batch-norm custom op
//! (`BnImpl::Auto` on the CPU). Their gradients against central finite differences in f64 (convolution: stride 1
//! and 2, padding 0/1/3, square and non-square inputs, 1x1, 3x3 and 7x7 kernels, with and without bias), and their
//! outputs, gradients and running statistics against the composed candle path (`ConvImpl::Candle`,
//! `BnImpl::Candle`) on random f32 inputs.

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use unisal_train::nn::{BatchNorm2d, BnImpl, Conv2d, ConvImpl};

const H: f64 = 1e-5;
const TOL: f64 = 1e-6;

fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn var(shape: &[usize], seed: u64, dtype: DType) -> Var {
    let n = shape.iter().product();
    let t = Tensor::from_vec(rand_vec(n, seed), shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
    Var::from_tensor(&t).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// `sum(out * R)` for a fixed pseudo-random R, so that no gradient cancels by symmetry.
fn weighted_sum(out: &Tensor) -> Tensor {
    let r = Tensor::from_vec(rand_vec(out.elem_count(), 999), out.shape(), &Device::Cpu).unwrap();
    (out * r.to_dtype(out.dtype()).unwrap()).unwrap().sum_all().unwrap()
}

/// Check d f / d v for every element of every var against central differences (f64).
fn gradcheck(name: &str, vars: &[&Var], f: impl Fn() -> Tensor) {
    let grads = weighted_sum(&f()).backward().unwrap();
    for (k, v) in vars.iter().enumerate() {
        let analytic =
            values(grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{name}: var {k} has no gradient")));
        let base = values(v.as_tensor());
        let mut worst: f64 = 0.0;
        for i in 0..base.len() {
            let at = |delta: f64| {
                let mut p = base.clone();
                p[i] += delta;
                v.set(&Tensor::from_vec(p, v.shape(), &Device::Cpu).unwrap()).unwrap();
                weighted_sum(&f()).to_scalar::<f64>().unwrap()
            };
            let numeric = (at(H) - at(-H)) / (2.0 * H);
            let err = (numeric - analytic[i]).abs() / numeric.abs().max(1.0);
            worst = worst.max(err);
            assert!(err < TOL, "{name}: var {k} element {i}: autograd {} vs numeric {numeric}", analytic[i]);
        }
        v.set(&Tensor::from_vec(base, v.shape(), &Device::Cpu).unwrap()).unwrap();
        eprintln!("{name}: var {k} ({} elements) worst relative error {worst:.2e}", analytic.len());
    }
}

/// (input [N, C, H, W], out channels, kernel, stride, padding, bias)
type Case = ([usize; 4], usize, usize, usize, usize, bool);

fn expected_side(size: usize, k: usize, s: usize, p: usize) -> usize {
    (size + 2 * p - k) / s + 1
}

#[test]
fn im2col_conv_gradients_match_finite_differences() {
    let cases: [Case; 10] = [
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
    ];
    for (i, (xs, out, k, s, p, bias)) in cases.into_iter().enumerate() {
        let seed = 100 * i as u64;
        let x = var(&xs, seed, DType::F64);
        let w = var(&[out, xs[1], k, k], seed + 1, DType::F64);
        let b = bias.then(|| var(&[out], seed + 2, DType::F64));
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
    // Square inputs: candle's own stride-2 backward is only right on square inputs.
    let cases: [Case; 7] = [
        ([4, 3, 16, 16], 8, 3, 1, 1, false),
        ([4, 8, 16, 16], 16, 3, 2, 1, false),
        ([2, 3, 23, 23], 8, 7, 2, 3, false),
        ([3, 8, 9, 9], 16, 3, 2, 1, true),
        ([3, 8, 9, 9], 16, 1, 2, 0, false),
        ([2, 16, 4, 4], 8, 3, 1, 1, false),
        ([2, 4, 6, 6], 4, 3, 1, 0, true),
    ];
    for (i, (xs, out, k, s, p, bias)) in cases.into_iter().enumerate() {
        let seed = 1000 + 10 * i as u64;
        let x = var(&xs, seed, DType::F32);
        let w = var(&[out, xs[1], k, k], seed + 1, DType::F32);
        let b = bias.then(|| var(&[out], seed + 2, DType::F32));
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
    let x = var(&[2, 3, 12, 12], 7, DType::F32);
    let w = var(&[4, 3, 3, 3], 8, DType::F32);
    let conv = Conv2d::from_vars(w, None, 2, 1);
    let auto = values(&conv.forward(x.as_tensor()).unwrap());
    let candle = values(&conv.forward_with(x.as_tensor(), ConvImpl::Candle).unwrap());
    let worst = auto.iter().zip(&candle).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst < 1e-5, "{worst}");
}

#[test]
fn kernel_larger_than_the_padded_input_is_an_error() {
    let x = var(&[1, 1, 3, 3], 1, DType::F32);
    let w = var(&[1, 1, 7, 7], 2, DType::F32);
    let conv = Conv2d::from_vars(w, None, 1, 1);
    assert!(conv.forward_with(x.as_tensor(), ConvImpl::Im2col).is_err());
}

fn bn(channels: usize, seed: u64, dtype: DType) -> (BatchNorm2d, [Var; 4]) {
    let w = var(&[channels], seed, dtype);
    let b = var(&[channels], seed + 1, dtype);
    let rm = var(&[channels], seed + 2, dtype);
    let rv = Var::from_tensor(&(var(&[channels], seed + 3, dtype).as_tensor().abs().unwrap() + 0.5).unwrap())
        .unwrap();
    let layer = BatchNorm2d::from_vars(w.clone(), b.clone(), rm.clone(), rv.clone());
    (layer, [w, b, rm, rv])
}

#[test]
fn batchnorm_cpu_op_gradients_match_finite_differences() {
    for (i, xs) in [[3, 2, 3, 3], [2, 3, 4, 5], [4, 1, 1, 1]].into_iter().enumerate() {
        let x = var(&xs, 50 + i as u64, DType::F64);
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
        let x = var(&xs, seed, DType::F32);
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
