//! The same PyTorch parity as `models.rs` (narrow ResNet-18: eval forward, train forward with batch statistics,
//! running statistics, gradients), run on the device named by `UNISAL_TEST_DEVICE` (`cpu` when unset; `cuda` or
//! `metal` on a machine that has one, see `scripts/gpu-bench.sh`). This is what shows that the GPU build computes
//! what PyTorch computes, not only that it runs fast.
//!
//! `UNISAL_TRAIN_TEST_DATA` may point to a copy of `tests/data` when the binary runs away from its source tree.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use serde_json::Value;
use unisal_train::device::DeviceChoice;
use unisal_train::models::{Arch, NetConfig, Network};
use unisal_train::weights::load_pretrained;

fn data(name: &str) -> PathBuf {
    let dir = std::env::var_os("UNISAL_TRAIN_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data")));
    dir.join(name)
}

fn device() -> (Device, f32) {
    let name = std::env::var("UNISAL_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let choice: DeviceChoice = name.parse().unwrap_or_else(|e| panic!("UNISAL_TEST_DEVICE={name}: {e}"));
    let device = choice.resolve().unwrap_or_else(|e| panic!("UNISAL_TEST_DEVICE={name}: {e}"));
    eprintln!("device parity on {device:?}");
    // GPU reductions sum in another order than the CPU's, and cuDNN may pick TF32-capable algorithms: on the H200
    // (2026-11-26) the worst error was 5.8e-4 relative (conv1.weight's gradient), so 1e-3 there.
    let tol = if device.is_cpu() { 1e-4 } else { 1e-3 };
    (device, tol)
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn assert_close(what: &str, got: &[f32], expected: &[f32], tol: f32) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let worst = got.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("{what}: relative error {:.3e}", worst / scale);
    assert!(worst <= tol * scale, "{what}: max abs error {worst} > {tol} x {scale}");
}

#[test]
fn narrow_resnet18_matches_pytorch_on_the_test_device() {
    let (device, tol) = device();
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(data("resnet18_w8_ref.json")).unwrap()).unwrap();
    let mut cfg = NetConfig::new(Arch::ResNet18, 5, 1);
    cfg.width = 8;
    let net = Network::new(&cfg, &device).unwrap();
    let report = load_pretrained(&net, &data("resnet18_w8.safetensors")).unwrap();
    assert!(report.head_loaded && report.proj_loaded, "{report:?}");

    let x32 = Tensor::from_vec(floats(&reference["input"]), (2, 3, 32, 32), &device).unwrap();
    let out = net.forward(&x32, false).unwrap();
    let e = &reference["eval"];
    assert_close("eval logits", &values(&out.logits), &floats(&e["logits"]), tol);
    assert_close("eval proj", &values(&out.proj), &floats(&e["proj"]), tol);

    let input = candle_core::safetensors::load(data("resnet18_w8_train_input.safetensors"), &device).unwrap();
    let out = net.forward(&input["input"], true).unwrap();
    let t = &reference["train"];
    assert_close("train logits", &values(&out.logits), &floats(&t["logits"]), tol);
    assert_close("train proj", &values(&out.proj), &floats(&t["proj"]), tol);
    let vars: HashMap<String, _> = net.named_vars().into_iter().map(|v| (v.name, v.var)).collect();
    for (name, expected) in reference["train_running"].as_object().unwrap() {
        assert_close(name, &values(vars[name].as_tensor()), &floats(expected), tol);
    }
    let g = Tensor::from_vec(floats(&reference["grad_weights"]), (2, 5), &device).unwrap();
    let loss = (&out.logits * g).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    for (name, expected) in reference["grads"].as_object().unwrap() {
        let got = grads.get(vars[name].as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_close(&format!("grad {name}"), &values(got), &floats(expected), tol);
    }
}
