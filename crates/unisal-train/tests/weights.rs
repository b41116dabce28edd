//! Pretrained weights: torchvision/timm-style safetensors files written by the test itself are loaded by name;
//! the head is kept random when the class count differs; missing, unexpected and mis-shaped keys are listed in one
//! error and change nothing.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use unisal_train::models::{Arch, NetConfig, Network};
use unisal_train::weights::load_pretrained;
use unisal_train::TrainError;

fn narrow(arch: Arch, classes: usize, seed: u64) -> Network {
    let mut cfg = NetConfig::new(arch, classes, seed);
    cfg.width = 4;
    Network::new(&cfg, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap()
}

/// A torchvision-style state dict of `net`: no projector, `num_batches_tracked` (i64) beside every BatchNorm.
fn torchvision_file(net: &Network, path: &Path, prefix: &str, dtype: DType) {
    let mut sd: HashMap<String, Tensor> = HashMap::new();
    for (k, v) in net.state_dict() {
        if k.starts_with("proj.") {
            continue;
        }
        if let Some(bn) = k.strip_suffix(".running_var") {
            sd.insert(format!("{prefix}{bn}.num_batches_tracked"), Tensor::new(7i64, &Device::Cpu).unwrap());
        }
        sd.insert(format!("{prefix}{k}"), v.to_dtype(dtype).unwrap());
    }
    candle_core::safetensors::save(&sd, path).unwrap();
}

#[test]
fn torchvision_checkpoint_with_other_class_count_keeps_the_random_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18_imagenet.safetensors");
    let source = narrow(Arch::ResNet18, 10, 1);
    torchvision_file(&source, &path, "", DType::F32);

    let target = narrow(Arch::ResNet18, 5, 2);
    let fc_before = values(&target.state_dict()["fc.weight"]);
    let proj_before = values(&target.state_dict()["proj.weight"]);
    let report = load_pretrained(&target, &path).unwrap();
    assert!(!report.head_loaded && !report.proj_loaded, "{report:?}");
    assert!(
        report.notes.iter().any(|n| n.contains("fc.weight") && n.contains("random head")),
        "{:?}",
        report.notes
    );
    let (s, t) = (source.state_dict(), target.state_dict());
    for (k, v) in &t {
        if k.starts_with("fc.") || k.starts_with("proj.") {
            continue;
        }
        assert_eq!(values(v), values(&s[k]), "{k} was loaded");
    }
    assert_eq!(values(&t["fc.weight"]), fc_before);
    assert_eq!(values(&t["proj.weight"]), proj_before);
    assert_eq!(report.loaded, t.len() - 3); // all but fc.weight, fc.bias, proj.weight
}

#[test]
fn matching_class_count_loads_the_head_and_converts_dtype_and_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timm_resnet50_f16.safetensors");
    let source = narrow(Arch::ResNet50, 6, 3);
    torchvision_file(&source, &path, "module.", DType::F16);
    let target = narrow(Arch::ResNet50, 6, 4);
    let report = load_pretrained(&target, &path).unwrap();
    assert!(report.head_loaded && !report.proj_loaded, "{report:?}");
    let (s, t) = (source.state_dict(), target.state_dict());
    for (k, v) in &t {
        if k.starts_with("proj.") {
            continue;
        }
        let expected = values(&s[k].to_dtype(DType::F16).unwrap());
        assert_eq!(values(v), expected, "{k}");
        assert_eq!(v.dtype(), DType::F32);
    }
}

#[test]
fn missing_unexpected_and_mismatched_keys_are_listed_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.safetensors");
    let source = narrow(Arch::ResNet18, 5, 5);
    let mut sd = source.state_dict();
    sd.remove("layer2.0.bn1.running_mean");
    sd.remove("layer3.1.conv2.weight");
    sd.insert("layer9.0.conv1.weight".into(), Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap());
    sd.insert("conv1.weight".into(), Tensor::zeros((4, 3, 3, 3), DType::F32, &Device::Cpu).unwrap());
    candle_core::safetensors::save(&sd, &path).unwrap();

    let target = narrow(Arch::ResNet18, 5, 6);
    let before = target.state_dict();
    let err = load_pretrained(&target, &path).unwrap_err();
    assert!(matches!(err, TrainError::WeightsMismatch { .. }));
    let msg = err.to_string();
    for needle in [
        "broken.safetensors",
        "2 missing keys",
        "layer2.0.bn1.running_mean",
        "layer3.1.conv2.weight",
        "1 unexpected keys: layer9.0.conv1.weight",
        "1 shape mismatches: conv1.weight: file [4, 3, 3, 3], network [4, 3, 7, 7]",
    ] {
        assert!(msg.contains(needle), "'{needle}' not in: {msg}");
    }
    for (k, v) in target.state_dict() {
        assert_eq!(values(&v), values(&before[&k]), "{k} changed despite the error");
    }
}

#[test]
fn a_small_cnn_checkpoint_does_not_fit_a_resnet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.safetensors");
    narrow(Arch::SmallCnn, 5, 0).save_safetensors(&path).unwrap();
    let msg = load_pretrained(&narrow(Arch::ResNet18, 5, 0), &path).unwrap_err().to_string();
    assert!(msg.contains("missing keys") && msg.contains("unexpected keys: block0.bn.bias"), "{msg}");
}

#[test]
fn unreadable_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let net = narrow(Arch::SmallCnn, 3, 0);
    let missing = dir.path().join("nowhere.safetensors");
    let err = load_pretrained(&net, &missing).unwrap_err();
    assert!(matches!(err, TrainError::Io { .. }) && err.to_string().contains("nowhere.safetensors"), "{err}");
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a safetensors file").unwrap();
    let err = load_pretrained(&net, &garbage).unwrap_err().to_string();
    assert!(err.contains("garbage.safetensors") && err.contains("not a readable safetensors file"), "{err}");
    let empty = dir.path().join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    assert!(load_pretrained(&net, &empty).unwrap_err().to_string().contains("empty.safetensors"));
}
