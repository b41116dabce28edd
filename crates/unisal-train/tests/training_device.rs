//! What the training loop does on the device named by `UNISAL_TEST_DEVICE` (`cpu` when unset; `cuda` on a lent
//! GPU, run by `scripts/gpu-bench.sh`):
//! - the UniSAL losses with their pseudo-labels, gates and contrastive masks computed on the device
//!   (`LossPath::Device`, what training on a GPU uses) against the host path on the same tensors: the same counts,
//!   totals and gradients (both paths see the same probabilities, so every gate decides alike);
//! - the batch upload (on CUDA through pinned buffers used in turn): each tensor holds its batch's values;
//! - SGD (on CUDA one launch for all parameters) over strided and offset gradients, as the block op's come.

use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use unisal_train::device::DeviceChoice;
use unisal_train::loss::{dual_losses_with, DualOutputs, LossConfig, LossPath};
use unisal_train::upload::Uploader;

fn device() -> Device {
    let name = std::env::var("UNISAL_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let choice: DeviceChoice = name.parse().unwrap_or_else(|e| panic!("UNISAL_TEST_DEVICE={name}: {e}"));
    choice.resolve().unwrap_or_else(|e| panic!("UNISAL_TEST_DEVICE={name}: {e}"))
}

/// `rows x cols` f32 values on `dev`: uniform in [-spread, spread), every fifth row tied at its two first columns.
fn var(rows: usize, cols: usize, spread: f32, seed: u64, dev: &Device) -> Var {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..rows * cols).map(|_| rng.gen_range(-spread..spread)).collect();
    for r in (0..rows).step_by(5) {
        v[r * cols] = spread + 1.0;
        v[r * cols + 1] = spread + 1.0;
    }
    Var::from_tensor(&Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap().to_device(dev).unwrap())
        .unwrap()
}

fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_device(&Device::Cpu).unwrap().to_vec1().unwrap()
}

#[test]
fn the_device_path_matches_the_host_path_on_the_test_device() {
    let dev = device();
    let (nl, nu, classes) = (64, 64, 5);
    let labels: Vec<u32> = (0..nl as u32).map(|i| i % classes as u32).collect();
    for (k, (tau, faithful, spread)) in
        [(0.7, false, 4.0), (0.7, true, 4.0), (0.95, false, 8.0), (0.0, true, 1.0)].into_iter().enumerate()
    {
        let seed = 10 * k as u64;
        let (la, lb) =
            (var(nl + nu, classes, spread, seed, &dev), var(nl + nu, classes, spread, seed + 1, &dev));
        let (za, zb) = (var(nl + nu, 16, 1.0, seed + 2, &dev), var(nl + nu, 16, 1.0, seed + 3, &dev));
        let out = DualOutputs {
            logits_a: la.as_tensor(),
            logits_b: lb.as_tensor(),
            proj_a: za.as_tensor(),
            proj_b: zb.as_tensor(),
        };
        let cfg = LossConfig { tau, temperature: 0.15, faithful };
        let what = format!("tau {tau}, faithful {faithful}");
        let on_host = dual_losses_with(out, &labels, &cfg, LossPath::Host).unwrap();
        let on_device = dual_losses_with(out, &labels, &cfg, LossPath::Device).unwrap();
        let counts = on_host.counts().unwrap();
        eprintln!("{what}: {counts:?}");
        assert_eq!(counts, on_device.counts().unwrap(), "{what}: counts");
        let (h, d) = (on_host.total(0.5, 0.3).unwrap(), on_device.total(0.5, 0.3).unwrap());
        let (hv, dv) = (host(&h)[0], host(&d)[0]);
        assert!((hv - dv).abs() <= 1e-5 * hv.abs().max(1.0), "{what}: total {hv} against {dv}");
        let (gh, gd) = (h.backward().unwrap(), d.backward().unwrap());
        for (v, name) in
            [(&la, "logits A"), (&lb, "logits B"), (&za, "projections A"), (&zb, "projections B")]
        {
            let (a, b) = (host(gh.get(v.as_tensor()).unwrap()), host(gd.get(v.as_tensor()).unwrap()));
            let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
            let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-4 * scale, "{what}: gradient of {name} off by {worst:.3e} of {scale:.3e}");
        }
    }
}

#[test]
fn uploaded_batches_hold_their_values_while_the_buffers_turn() {
    // More uploads than buffers, of two sizes, each read back after later uploads were enqueued.
    let dev = device();
    let mut up = Uploader::new();
    let mut kept = Vec::new();
    for k in 0..9usize {
        let n = if k < 6 { 2 } else { 3 };
        let data: Vec<f32> = (0..n * 3 * 8 * 8).map(|i| (i * 31 + k * 7) as f32 % 101.0).collect();
        kept.push((up.tensor(data.clone(), (n, 3, 8, 8), &dev).unwrap(), data));
    }
    for (k, (t, data)) in kept.iter().enumerate() {
        assert_eq!(t.dims()[0], data.len() / (3 * 8 * 8), "upload {k}: shape");
        assert_eq!(&host(t), data, "upload {k}: values");
    }
}

#[test]
fn sgd_over_strided_and_offset_gradients_follows_the_host_arithmetic() {
    // On CUDA one launch updates every parameter (`nn/cuda_sgd.rs`). It reads a channels-last weight's gradient
    // through its strides and a vector's at an offset of a packed buffer, as the block op's packed gradients come
    // (`nn/packed_grads.rs`). With and without momentum, over a first and a second step, against PyTorch's SGD
    // written out here.
    let dev = device();
    let (lr, wd) = (0.1f32, 1e-3f32);
    for momentum in [0.9f32, 0.0] {
        let w =
            Var::from_tensor(&var(12, 4, 1.0, 70, &dev).as_tensor().reshape((4, 3, 2, 2)).unwrap()).unwrap();
        let v = Var::from_tensor(&var(1, 5, 1.0, 71, &dev).as_tensor().reshape(5).unwrap()).unwrap();
        let gw = var(16, 3, 2.0, 72, &dev)
            .as_tensor()
            .reshape((4, 2, 2, 3))
            .unwrap()
            .permute((0, 3, 1, 2))
            .unwrap();
        assert!(!gw.is_contiguous(), "a strided gradient");
        let gv = var(1, 16, 2.0, 73, &dev).as_tensor().reshape(16).unwrap().narrow(0, 8, 5).unwrap();
        let mut grads = (w.as_tensor().sum_all().unwrap() + v.as_tensor().sum_all().unwrap())
            .unwrap()
            .backward()
            .unwrap();
        grads.insert(w.as_tensor(), gw.clone());
        grads.insert(v.as_tensor(), gv.clone());
        let mut opt =
            unisal_train::optim::Sgd::new(vec![w.clone(), v.clone()], lr as f64, momentum as f64, wd as f64);
        let mut want: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = [(&w, &gw), (&v, &gv)]
            .iter()
            .map(|(p, g)| (host(p.as_tensor()), host(&g.contiguous().unwrap()), Vec::new()))
            .collect();
        for step in 0..2 {
            opt.step(&grads).unwrap();
            for (wv, gv, buf) in want.iter_mut() {
                for i in 0..wv.len() {
                    let d = gv[i] + wd * wv[i];
                    let b = if step == 0 || momentum == 0.0 { d } else { momentum * buf[i] + d };
                    if step == 0 {
                        buf.push(b);
                    } else {
                        buf[i] = b;
                    }
                    wv[i] -= lr * b;
                }
            }
        }
        for ((p, name), (wv, _, _)) in [(&w, "weight"), (&v, "vector")].iter().zip(&want) {
            let got = host(p.as_tensor());
            let worst = got.iter().zip(wv).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-5, "momentum {momentum}: {name} off by {worst:.3e}");
        }
    }
}
