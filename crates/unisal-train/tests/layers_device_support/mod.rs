//! What `layers_gradcheck_device.rs` uses: the test device and its tolerance, seeded inputs as an f64 CPU var and
//! an f32 device var, and the comparison of a layer's outputs and gradients on the two.

#![allow(dead_code)]

pub mod blocks;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use unisal_train::device::DeviceChoice;

/// The test device and its tolerance, made once for all tests (a new CUDA device sets up its libraries again: a
/// few seconds of a short GPU lease over the whole file).
pub fn device() -> (Device, f64) {
    static DEVICE: std::sync::OnceLock<(Device, f64)> = std::sync::OnceLock::new();
    DEVICE.get_or_init(make_device).clone()
}

pub fn make_device() -> (Device, f64) {
    let name = std::env::var("UNISAL_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let choice: DeviceChoice = name.parse().unwrap_or_else(|e| panic!("UNISAL_TEST_DEVICE={name}: {e}"));
    let device = choice.resolve().unwrap_or_else(|e| panic!("UNISAL_TEST_DEVICE={name}: {e}"));
    eprintln!("layers on {device:?}");
    // Without cuDNN the GPU layers quietly fall back to candle's ops: these tests would then test candle.
    if device.is_cuda() && std::env::var("UNISAL_GPU_KERNELS").map_or(true, |v| v.trim() != "0") {
        let described = unisal_train::device::device_name(&device);
        assert!(
            described.contains("cuDNN 9"),
            "cuDNN 9 is not in use on {described}: install it or fix the library path"
        );
    }
    // f32 against f64; GPU reductions sum in another order than the CPU's.
    (device.clone(), if device.is_cpu() { 2e-5 } else { 2e-4 })
}

/// Host values: uniform in [-1, 1), or a shuffled grid of distinct values (no max-pool ties) when `distinct`.
/// The grid is offset by half a step so that no value is exactly 0, where ReLU has no derivative: our CUDA ReLU
/// passes no gradient there (PyTorch's convention), candle's ReLU on the f64 reference passes all of it.
pub fn host(n: usize, seed: u64, distinct: bool) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if !distinct {
        return (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    }
    let mut v: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5 - n as f64 / 2.0) / n as f64 * 4.0).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.gen_range(0..=i));
    }
    v
}

/// The same values as an f64 CPU var and an f32 device var.
pub fn pair(shape: &[usize], seed: u64, distinct: bool, device: &Device) -> (Var, Var) {
    let v = host(shape.iter().product(), seed, distinct);
    let cpu = Tensor::from_vec(v, shape, &Device::Cpu).unwrap();
    let dev = cpu.to_dtype(DType::F32).unwrap().to_device(device).unwrap();
    (Var::from_tensor(&cpu).unwrap(), Var::from_tensor(&dev).unwrap())
}

pub fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_device(&Device::Cpu).unwrap().to_vec1().unwrap()
}

pub fn close(what: &str, got: &Tensor, expected: &Tensor, tol: f64) {
    let (g, e) = (values(got), values(expected));
    assert_eq!(g.len(), e.len(), "{what}: length");
    let scale = e.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-6);
    let worst = g.iter().zip(&e).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
    assert!(worst <= tol * scale, "{what}: max abs error {worst:.3e} > {tol:.0e} x {scale:.3e}");
}

/// root mean square of `got - expected` <= tol * max |expected|: for bf16 gradients, where a value whose ReLU mask
/// or max-pool winner the rounding flips is off by as much as the gradient itself, so that the largest error
/// says nothing (`scripts/torch_bf16_error.py`: PyTorch's own bf16 autocast has largest errors of 0.37-0.86 of
/// the largest value on the batch norm + ReLU below, and a root mean square of 2.8e-3 to 5.8e-3).
pub fn close_rms(what: &str, got: &Tensor, expected: &Tensor, tol: f64) {
    let (rms, scale) = rms_and_largest(what, got, expected);
    eprintln!("{what}: rms error {:.3e} of the largest value", rms / scale);
    assert!(rms <= tol * scale, "{what}: rms error {rms:.3e} > {tol:.0e} x {scale:.3e}");
}

/// The root mean square of `got - expected` and the largest `|expected|` (at least 1e-6).
fn rms_and_largest(what: &str, got: &Tensor, expected: &Tensor) -> (f64, f64) {
    let (g, e) = (values(got), values(expected));
    assert_eq!(g.len(), e.len(), "{what}: length");
    let scale = e.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-6);
    let rms = (g.iter().zip(&e).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / e.len().max(1) as f64).sqrt();
    (rms, scale)
}

/// Whether a bf16 op's gradients (`op`, keyed by the device vars) are as accurate as our bf16 layers' (`layers`):
/// each against the f64 gradients (`f64`, keyed by the CPU vars), the op's rms error (of the largest value) within
/// `max(8e-2, 2 x` the layers' `)`. Not the op against the layers: in bf16 a value rounded otherwise flips a ReLU
/// mask or a max-pool winner, which moves a gradient by as much as itself, so two correct bf16 paths differ by as
/// much as each differs from f64 (session 18's H200 run: up to 5.3e-2 between them, where the op's input gradient
/// is within 9e-3). A wrong gradient is off by tenths. Every variable's errors are printed before any failure.
pub fn bf16_grads_as_accurate(
    what: &str,
    vars: &[(Var, Var)],
    (f64s, op, layers): (&GradStore, &GradStore, &GradStore),
) {
    let mut failed = Vec::new();
    for (k, (vc, vd)) in vars.iter().enumerate() {
        let (e, o, l) = (f64s.get(vc.as_tensor()), op.get(vd.as_tensor()), layers.get(vd.as_tensor()));
        let (Some(e), Some(o), Some(l)) = (e, o, l) else {
            failed.push(format!(
                "var {k}: a gradient is missing (f64 {}, op {}, layers {})",
                e.is_some(),
                o.is_some(),
                l.is_some()
            ));
            continue;
        };
        let of_largest = |got| {
            let (rms, scale) = rms_and_largest(what, got, e);
            rms / scale
        };
        let (e_op, e_layers) = (of_largest(o), of_largest(l));
        let bound = (2.0 * e_layers).max(8e-2);
        eprintln!("{what}, var {k}: rms error against f64 {e_op:.3e} (our bf16 layers {e_layers:.3e})");
        if e_op > bound {
            failed.push(format!("var {k}: {e_op:.3e} > {bound:.3e}"));
        }
    }
    assert!(failed.is_empty(), "{what}: {}", failed.join("; "));
}

/// [`check_within`] for bf16 activations: the gradients compared by [`close_rms`], within 2e-2.
pub fn check_bf16(name: &str, vars: &[(Var, Var)], tol: f64, f: impl Fn(&[&Var]) -> Tensor) {
    check_with(name, vars, (tol, |w: &str, g: &Tensor, e: &Tensor| close_rms(w, g, e, 2e-2)), f)
}

/// Run `f` on the CPU f64 vars and on the device f32 vars; compare outputs and the gradients of sum(out * R).
pub fn check(name: &str, vars: &[(Var, Var)], f: impl Fn(&[&Var]) -> Tensor) {
    check_within(name, vars, device().1, f)
}

/// [`check`] with the tolerance `tol`.
pub fn check_within(name: &str, vars: &[(Var, Var)], tol: f64, f: impl Fn(&[&Var]) -> Tensor) {
    check_with(name, vars, (tol, |w, g, e| close(w, g, e, tol)), f)
}

/// The gradients of `sum(out * R)`, `R` the same seeded values for every output of this shape (in its type and on
/// its device).
pub fn weighted_grads(out: &Tensor) -> candle_core::backprop::GradStore {
    let r = Tensor::from_vec(host(out.elem_count(), 4242, false), out.shape(), &Device::Cpu).unwrap();
    let r = r.to_dtype(out.dtype()).unwrap().to_device(out.device()).unwrap();
    // nn::backward: the block op's packed gradients reach their variables (`nn/packed_grads.rs`).
    unisal_train::nn::backward(&(out * &r).unwrap().sum_all().unwrap()).unwrap()
}

/// [`check`] with the tolerance `tol` on the outputs and `grad_close` comparing the gradients.
pub fn check_with(
    name: &str,
    vars: &[(Var, Var)],
    (tol, grad_close): (f64, impl Fn(&str, &Tensor, &Tensor)),
    f: impl Fn(&[&Var]) -> Tensor,
) {
    let cpu_vars: Vec<&Var> = vars.iter().map(|p| &p.0).collect();
    let dev_vars: Vec<&Var> = vars.iter().map(|p| &p.1).collect();
    let (out_c, out_d) = (f(&cpu_vars), f(&dev_vars));
    close(&format!("{name} forward"), &out_d, &out_c, tol);
    let (g_c, g_d) = (weighted_grads(&out_c), weighted_grads(&out_d));
    for (k, (vc, vd)) in vars.iter().enumerate() {
        let gc = g_c.get(vc.as_tensor()).unwrap_or_else(|| panic!("{name}: no CPU gradient for var {k}"));
        let gd = g_d.get(vd.as_tensor()).unwrap_or_else(|| panic!("{name}: no device gradient for var {k}"));
        grad_close(&format!("{name} gradient of var {k}"), gd, gc);
    }
}
