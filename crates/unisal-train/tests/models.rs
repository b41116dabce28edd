//! Networks on the CPU: torchvision key names and shapes, PyTorch parity of (narrow) ResNet-18 and ResNet-50
//! forwards in eval and train mode and of their gradients, an eval forward without a graph (`NoGrad`),
//! deterministic initialisation, save/load, input checks. `models_device.rs` runs the parity on a GPU.
//!
//! The reference data come from `scripts/torch_resnet_ref.py` (committed under `tests/data/`).

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use serde_json::Value;
use unisal_train::models::{build_network, Arch, NetConfig, Network, PROJ_DIM};
use unisal_train::nn::VarKind;
use unisal_train::weights::load_pretrained;

mod models_support;
use models_support::{assert_close, data, floats, json, values};

#[test]
fn full_width_resnets_have_torchvision_keys_and_shapes() {
    let reference = json("torchvision_resnet_keys.json");
    for (name, arch) in [("resnet18", Arch::ResNet18), ("resnet50", Arch::ResNet50)] {
        let net = build_network(arch, 1000, &Device::Cpu, 0).unwrap();
        let ours: Vec<(String, Vec<usize>)> =
            net.named_vars().into_iter().map(|v| (v.name, v.var.dims().to_vec())).collect();
        let theirs: Vec<(String, Vec<usize>)> = reference[name]["params_and_buffers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let shape = e[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                (e[0].as_str().unwrap().to_string(), shape)
            })
            .collect();
        assert_eq!(ours, theirs, "{name}: names, shapes and order");
        let expected_h = if arch == Arch::ResNet18 { 512 } else { 2048 };
        assert_eq!(net.feature_dim(), expected_h);
        // torchvision's parameter counts (11,689,512 and 25,557,032) plus our projector h x 128.
        let tv = if arch == Arch::ResNet18 { 11_689_512 } else { 25_557_032 };
        assert_eq!(net.num_params(), tv + expected_h * PROJ_DIM, "{name}: parameter count");
    }
}

fn reference_net() -> (Network, Value) {
    let reference = json("resnet18_w8_ref.json");
    let mut cfg = NetConfig::new(Arch::ResNet18, 5, 1);
    cfg.width = 8;
    let net = Network::new(&cfg, &Device::Cpu).unwrap();
    let report = load_pretrained(&net, &data("resnet18_w8.safetensors")).unwrap();
    assert!(report.head_loaded && report.proj_loaded, "{report:?}");
    (net, reference)
}

fn reference_input(reference: &Value) -> Tensor {
    Tensor::from_vec(floats(&reference["input"]), (2, 3, 32, 32), &Device::Cpu).unwrap()
}

#[test]
fn narrow_resnet18_matches_pytorch_in_eval_mode() {
    let (net, reference) = reference_net();
    let out = net.forward(&reference_input(&reference), false).unwrap();
    let e = &reference["eval"];
    assert_close("eval logits", &values(&out.logits), &floats(&e["logits"]), 1e-4);
    assert_close("eval proj", &values(&out.proj), &floats(&e["proj"]), 1e-4);
    assert_close("eval feat", &values(&out.feat), &floats(&e["feat"]), 1e-4);
}

#[test]
fn an_eval_forward_without_grad_gives_the_same_values_and_no_graph() {
    let (net, reference) = reference_net();
    let x = reference_input(&reference);
    let with_graph = net.forward(&x, false).unwrap();
    let weight = net.named_vars().into_iter().find(|v| v.name == "conv1.weight").unwrap().var;
    let grads = with_graph.logits.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(weight.as_tensor()).is_some(), "an eval forward still has a graph by default");
    let out = {
        let _no_grad = unisal_train::nn::NoGrad::enter();
        net.forward(&x, false).unwrap()
    };
    assert_eq!(values(&out.logits), values(&with_graph.logits));
    assert_eq!(values(&out.proj), values(&with_graph.proj));
    let grads = out.logits.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(weight.as_tensor()).is_none(), "no gradient reaches a weight under NoGrad");
}

#[test]
fn narrow_resnet18_at_32px_train_mode_is_close_to_pytorch() {
    // At 32 px with N = 2, layer4's BatchNorm normalises 2 values per channel: so ill-conditioned that PyTorch's
    // own f32 forward is far from its f64 result (the script records how far). Ours must be no more than 5 times as
    // far; the tight 1e-4 check is on the 64 px input below.
    let (net, reference) = reference_net();
    let out = net.forward(&reference_input(&reference), true).unwrap();
    let t = &reference["train32"];
    for (name, got) in [("logits", &out.logits), ("proj", &out.proj), ("feat", &out.feat)] {
        let torch_err = reference["train32_torch_f32_rel_err"][name].as_f64().unwrap() as f32;
        assert_close(
            &format!("train32 {name}"),
            &values(got),
            &floats(&t[name]),
            (5.0 * torch_err).max(1e-4),
        );
    }
}

#[test]
fn narrow_resnet18_matches_pytorch_in_train_mode_with_gradients() {
    let (net, reference) = reference_net();
    let input =
        candle_core::safetensors::load(data("resnet18_w8_train_input.safetensors"), &Device::Cpu).unwrap();
    let x = &input["input"];
    assert_eq!(x.dims(), &[2, 3, 64, 64]);
    let out = net.forward(x, true).unwrap();
    let t = &reference["train"];
    assert_close("train logits", &values(&out.logits), &floats(&t["logits"]), 1e-4);
    assert_close("train proj", &values(&out.proj), &floats(&t["proj"]), 1e-4);
    assert_close("train feat", &values(&out.feat), &floats(&t["feat"]), 1e-4);

    let vars: HashMap<String, _> = net.named_vars().into_iter().map(|v| (v.name, v.var)).collect();
    for (name, expected) in reference["train_running"].as_object().unwrap() {
        assert_close(name, &values(vars[name].as_tensor()), &floats(expected), 1e-4);
    }

    let g = Tensor::from_vec(floats(&reference["grad_weights"]), (2, 5), &Device::Cpu).unwrap();
    let loss = (&out.logits * g).unwrap().sum_all().unwrap();
    let expected_loss = reference["loss"].as_f64().unwrap() as f32;
    assert!((loss.to_scalar::<f32>().unwrap() - expected_loss).abs() <= 1e-4 * expected_loss.abs().max(1.0));
    let grads = loss.backward().unwrap();
    for (name, expected) in reference["grads"].as_object().unwrap() {
        let got = grads.get(vars[name].as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_close(&format!("grad {name}"), &values(got), &floats(expected), 1e-4);
    }
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let a = build_network(Arch::SmallCnn, 4, &Device::Cpu, 3).unwrap();
    let b = build_network(Arch::SmallCnn, 4, &Device::Cpu, 3).unwrap();
    let c = build_network(Arch::SmallCnn, 4, &Device::Cpu, 4).unwrap();
    let (sa, sb, sc) = (a.state_dict(), b.state_dict(), c.state_dict());
    for (k, v) in &sa {
        assert_eq!(values(v), values(&sb[k]), "{k}");
    }
    assert_ne!(values(&sa["block0.conv.weight"]), values(&sc["block0.conv.weight"]));
    assert_ne!(values(&sa["fc.weight"]), values(&sc["fc.weight"]));

    // head_seed: same backbone, different heads.
    let mut cfg = NetConfig::new(Arch::SmallCnn, 4, 3);
    cfg.head_seed = Some(77);
    let d = Network::new(&cfg, &Device::Cpu).unwrap().state_dict();
    assert_eq!(values(&sa["block3.conv.weight"]), values(&d["block3.conv.weight"]));
    assert_ne!(values(&sa["fc.weight"]), values(&d["fc.weight"]));
    assert_ne!(values(&sa["proj.weight"]), values(&d["proj.weight"]));
}

#[test]
fn initialisation_follows_torchvision() {
    let net = build_network(Arch::ResNet18, 5, &Device::Cpu, 0).unwrap();
    let sd = net.state_dict();
    let std = |v: &[f32]| {
        let n = v.len() as f64;
        let m = v.iter().map(|x| f64::from(*x)).sum::<f64>() / n;
        (v.iter().map(|x| (f64::from(*x) - m).powi(2)).sum::<f64>() / n).sqrt()
    };
    // layer3.0.conv2: 256 x 256 x 3 x 3, fan_out = 2304 -> std sqrt(2 / 2304).
    let s = std(&values(&sd["layer3.0.conv2.weight"]));
    assert!((s / (2.0f64 / 2304.0).sqrt() - 1.0).abs() < 0.02, "conv std {s}");
    assert!(values(&sd["layer2.1.bn1.weight"]).iter().all(|v| *v == 1.0));
    assert!(values(&sd["layer2.1.bn1.bias"]).iter().all(|v| *v == 0.0));
    assert!(values(&sd["layer2.1.bn1.running_var"]).iter().all(|v| *v == 1.0));
    let bound = 1.0 / 512f32.sqrt();
    for k in ["fc.weight", "fc.bias", "proj.weight"] {
        let v = values(&sd[k]);
        assert!(v.iter().all(|x| x.abs() <= bound), "{k}");
        assert!(v.iter().any(|x| x.abs() > 0.8 * bound), "{k}");
    }
}

#[test]
fn every_network_predicts_the_same_through_the_fused_eval_ops() {
    // Under NoGrad the CPU runs each convolution with its batch norm, ReLU and residual join as one op
    // (`nn::fused`); with a graph, layer by layer. Running statistics moved away from 0/1 first.
    for (arch, width) in [(Arch::SmallCnn, 8), (Arch::ResNet18, 4), (Arch::ResNet50, 4)] {
        let mut cfg = NetConfig::new(arch, 3, 1);
        cfg.width = width;
        let net = Network::new(&cfg, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1f32, (3, 3, 40, 40), &Device::Cpu).unwrap();
        net.forward(&x, true).unwrap();
        let layers = net.forward(&x, false).unwrap();
        let fused = {
            let _no_grad = unisal_train::nn::NoGrad::enter();
            net.forward(&x, false).unwrap()
        };
        assert_close(&format!("{arch} logits"), &values(&fused.logits), &values(&layers.logits), 1e-5);
        assert_close(&format!("{arch} features"), &values(&fused.feat), &values(&layers.feat), 1e-5);
    }
}

#[test]
fn outputs_have_the_documented_shapes_and_bn_buffers_move_only_in_train_mode() {
    for (arch, width, h) in [(Arch::SmallCnn, 8, 64), (Arch::ResNet18, 4, 32), (Arch::ResNet50, 4, 128)] {
        let mut cfg = NetConfig::new(arch, 3, 0);
        cfg.width = width;
        let net = Network::new(&cfg, &Device::Cpu).unwrap();
        assert_eq!(net.feature_dim(), h);
        let x = Tensor::randn(0f32, 1f32, (2, 3, 40, 40), &Device::Cpu).unwrap();
        let before: Vec<Vec<f32>> = net.buffers().iter().map(|b| values(b.var.as_tensor())).collect();
        let out = net.forward(&x, false).unwrap();
        assert_eq!(out.logits.dims(), &[2, 3]);
        assert_eq!(out.proj.dims(), &[2, PROJ_DIM]);
        assert_eq!(out.feat.dims(), &[2, h]);
        let after_eval: Vec<Vec<f32>> = net.buffers().iter().map(|b| values(b.var.as_tensor())).collect();
        assert_eq!(before, after_eval, "{arch}: eval must not touch running stats");
        net.forward(&x, true).unwrap();
        let after_train: Vec<Vec<f32>> = net.buffers().iter().map(|b| values(b.var.as_tensor())).collect();
        assert!(
            before.iter().zip(&after_train).all(|(a, b)| a != b),
            "{arch}: every buffer moves in train mode"
        );
        // Buffers are not trainable; every trainable var is a parameter.
        let n_buffers = net.named_vars().iter().filter(|v| v.kind == VarKind::Buffer).count();
        assert_eq!(n_buffers + net.trainable_vars().len(), net.named_vars().len());
        assert!(net
            .buffers()
            .iter()
            .all(|b| b.name.ends_with("running_mean") || b.name.ends_with("running_var")));
    }
}

#[test]
fn a_train_step_reduces_the_loss_on_a_fixed_batch() {
    let net = build_network(Arch::SmallCnn, 3, &Device::Cpu, 5).unwrap();
    let x = Tensor::randn(0f32, 1f32, (6, 3, 32, 32), &Device::Cpu).unwrap();
    let y = Tensor::new(&[0u32, 1, 2, 0, 1, 2], &Device::Cpu).unwrap();
    let vars = net.trainable_vars();
    let loss_at = || candle_nn::loss::cross_entropy(&net.forward(&x, true).unwrap().logits, &y).unwrap();
    let first = loss_at();
    let l0 = first.to_scalar::<f32>().unwrap();
    let grads = first.backward().unwrap();
    // Cross-entropy reaches every parameter but the projector.
    let mut updated = 0;
    for v in &vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            v.set(&(v.as_tensor() - (g * 0.05).unwrap()).unwrap()).unwrap();
            updated += 1;
        }
    }
    assert_eq!(updated, vars.len() - 1);
    let l1 = loss_at().to_scalar::<f32>().unwrap();
    assert!(l1 < l0, "loss {l0} -> {l1}");
}

#[test]
fn save_and_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.safetensors");
    let a = build_network(Arch::SmallCnn, 4, &Device::Cpu, 1).unwrap();
    let x = Tensor::randn(0f32, 1f32, (2, 3, 32, 32), &Device::Cpu).unwrap();
    a.forward(&x, true).unwrap(); // move the running stats away from their initial values
    a.save_safetensors(&path).unwrap();
    let b = build_network(Arch::SmallCnn, 4, &Device::Cpu, 2).unwrap();
    b.load_safetensors(&path).unwrap();
    let (sa, sb) = (a.state_dict(), b.state_dict());
    assert_eq!(sa.len(), sb.len());
    for (k, v) in &sa {
        assert_eq!(values(v), values(&sb[k]), "{k}");
    }
    let (oa, ob) = (a.forward(&x, false).unwrap(), b.forward(&x, false).unwrap());
    assert_eq!(values(&oa.logits), values(&ob.logits));

    // A checkpoint of another class count does not fit, and changes nothing.
    let c = build_network(Arch::SmallCnn, 5, &Device::Cpu, 9).unwrap();
    let before = values(&c.state_dict()["block0.conv.weight"]);
    let err = c.load_safetensors(&path).unwrap_err().to_string();
    assert!(err.contains("fc.weight") && err.contains("net.safetensors"), "{err}");
    assert_eq!(values(&c.state_dict()["block0.conv.weight"]), before);
}

#[test]
fn bad_inputs_are_refused_with_clear_errors() {
    let net = build_network(Arch::SmallCnn, 2, &Device::Cpu, 0).unwrap();
    let small = Tensor::zeros((2, 3, 16, 16), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(net.forward(&small, false).unwrap_err().to_string().contains(">= 32"));
    let wide = Tensor::randn(0f32, 1f32, (2, 3, 32, 48), &Device::Cpu).unwrap();
    assert!(net.forward(&wide, true).unwrap_err().to_string().contains("square"));
    assert_eq!(net.forward(&wide, false).unwrap().logits.dims(), &[2, 2]);
    let gray = Tensor::zeros((2, 1, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(net.forward(&gray, false).is_err());
    assert!(build_network(Arch::ResNet18, 1, &Device::Cpu, 0).is_err());
    assert!("vgg16".parse::<Arch>().unwrap_err().to_string().contains("vgg16"));
    assert_eq!("ResNet-50".parse::<Arch>().unwrap(), Arch::ResNet50);
}

#[test]
fn narrow_resnet50_matches_pytorch_in_eval_and_train_mode_with_gradients() {
    // Eval mode within 1e-4. In train mode this deep, 4-channel-wide network is at the edge of f32: PyTorch's own
    // f32 run is up to ~3e-4 from its f64 result (the script records it); ours must be within 1e-4 or 3 times that.
    let reference = json("resnet50_w4_ref.json");
    let mut cfg = NetConfig::new(Arch::ResNet50, 5, 1);
    cfg.width = 4;
    let net = Network::new(&cfg, &Device::Cpu).unwrap();
    let report = load_pretrained(&net, &data("resnet50_w4.safetensors")).unwrap();
    assert!(report.head_loaded && report.proj_loaded, "{report:?}");
    let input =
        candle_core::safetensors::load(data("resnet18_w8_train_input.safetensors"), &Device::Cpu).unwrap();
    let x = &input["input"];
    let torch_err = &reference["train_torch_f32_rel_err"];
    let train_tol = |name: &str| (3.0 * torch_err[name].as_f64().unwrap() as f32).max(1e-4);
    for mode in ["eval", "train"] {
        let out = net.forward(x, mode == "train").unwrap();
        let r = &reference[mode];
        for (name, got) in [("logits", &out.logits), ("proj", &out.proj), ("feat", &out.feat)] {
            let tol = if mode == "train" { train_tol(name) } else { 1e-4 };
            assert_close(&format!("{mode} {name}"), &values(got), &floats(&r[name]), tol);
        }
        if mode == "train" {
            let g = Tensor::from_vec(floats(&reference["grad_weights"]), (2, 5), &Device::Cpu).unwrap();
            let grads = (&out.logits * g).unwrap().sum_all().unwrap().backward().unwrap();
            let vars: HashMap<String, _> = net.named_vars().into_iter().map(|v| (v.name, v.var)).collect();
            for (name, expected) in reference["grads"].as_object().unwrap() {
                let got =
                    grads.get(vars[name].as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
                assert_close(&format!("grad {name}"), &values(got), &floats(expected), train_tol(name));
            }
        }
    }
}
