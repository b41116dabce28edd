//! What the network tests (`models.rs` on the CPU, `models_device.rs` on the test device) share: the reference
//! data and the comparisons.

#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::Tensor;
use serde_json::Value;

/// `UNISAL_TRAIN_TEST_DATA` may point to a copy of `tests/data` when the binary runs away from its source tree
/// (on a lent GPU, see `scripts/gpu-bench.sh`).
pub fn data(name: &str) -> PathBuf {
    let dir = std::env::var_os("UNISAL_TRAIN_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data")));
    dir.join(name)
}

pub fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(name)).unwrap()).unwrap()
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

pub fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// max |a - b| <= tol * max |b| (relative to the tensor's scale).
pub fn assert_close(what: &str, got: &[f32], expected: &[f32], tol: f32) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let worst = got.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("{what}: max abs error {worst:.3e}, scale {scale:.3e}, relative {:.3e}", worst / scale);
    assert!(worst <= tol * scale, "{what}: max abs error {worst} > {tol} x {scale}");
}

/// rms(a - b) <= tol * max |b|: for bf16 mixed precision, where a ReLU mask flipped by rounding puts a few values
/// as far off as the gradient itself.
pub fn assert_rms_close(what: &str, got: &[f32], expected: &[f32], tol: f32) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let sq: f64 = got.iter().zip(expected).map(|(a, b)| f64::from(a - b).powi(2)).sum();
    let rms = (sq / expected.len().max(1) as f64).sqrt() as f32;
    eprintln!("{what}: rms error {rms:.3e}, scale {scale:.3e}, relative {:.3e}", rms / scale);
    assert!(rms <= tol * scale, "{what}: rms error {rms} > {tol} x {scale}");
}
