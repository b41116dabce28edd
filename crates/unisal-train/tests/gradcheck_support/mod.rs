//! What the gradient-check tests share: seeded random inputs, and the check of autograd against central finite
//! differences in f64 (`gradcheck`).

#![allow(dead_code)]

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Finite-difference step.
pub const H: f64 = 1e-5;
/// Largest relative error (against max(1, |numeric|)) a gradient may have.
pub const TOL: f64 = 1e-6;

/// `n` values uniform in [-1, 1) from `seed`.
pub fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// A CPU variable of `shape` with values from [`rand_vec`], as `dtype`.
pub fn var_as(shape: &[usize], seed: u64, dtype: DType) -> Var {
    let n = shape.iter().product();
    let t = Tensor::from_vec(rand_vec(n, seed), shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
    Var::from_tensor(&t).unwrap()
}

/// [`var_as`] in f64.
pub fn var(shape: &[usize], seed: u64) -> Var {
    var_as(shape, seed, DType::F64)
}

/// A CPU f64 variable of distinct values (a shuffled grid spaced 0.01 apart), so that no pooling window has a
/// tie and a finite-difference step never changes which element wins.
pub fn distinct_var(shape: &[usize], seed: u64) -> Var {
    let n: usize = shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * 0.01 - n as f64 * 0.005).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.gen_range(0..=i));
    }
    Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
}

/// Values of `t` as f64.
pub fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// `sum(out * R)` for a fixed pseudo-random R, so that no gradient cancels by symmetry.
pub fn weighted_sum(out: &Tensor) -> Tensor {
    let r = Tensor::from_vec(rand_vec(out.elem_count(), 999), out.shape(), &Device::Cpu).unwrap();
    (out * r.to_dtype(out.dtype()).unwrap()).unwrap().sum_all().unwrap()
}

/// Check d f / d v for every element of every var (f64) against central differences.
pub fn gradcheck(name: &str, vars: &[&Var], f: impl Fn() -> Tensor) {
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
            assert!(
                err < TOL,
                "{name}: var {k} element {i}: autograd {} vs finite differences {numeric}",
                analytic[i]
            );
        }
        v.set(&Tensor::from_vec(base, v.shape(), &Device::Cpu).unwrap()).unwrap();
        eprintln!("{name}: var {k} ({} elements) worst relative error {worst:.2e}", analytic.len());
    }
}

/// Assert two equally long value lists agree within `tol` (relative to max(1, |b|)).
pub fn assert_close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * y.abs().max(1.0), "{what}: element {i}: {x} vs {y}");
    }
}
