//! Parity of the UniSAL losses, their gradients and the SGD-momentum step with PyTorch (float64).
//!
//! The reference values come from `scripts/torch_parity.py` (committed with its output
//! `tests/data/parity.json`); this test recomputes everything with candle and compares within 1e-5 relative, with
//! the pseudo-labels computed on the host and on the device (`LossPath`).

use candle_core::{Device, Tensor, Var};
use serde_json::Value;
use unisal_train::loss::{self, DualOutputs, LossConfig, LossPath};
use unisal_train::optim::Sgd;

fn parity() -> Value {
    let text = include_str!("data/parity.json");
    serde_json::from_str(text).expect("parity.json parses")
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect()
}

fn var(v: &Value) -> Var {
    let m = matrix(v);
    let (r, c) = (m.len(), m[0].len());
    Var::from_vec(m.into_iter().flatten().collect::<Vec<_>>(), (r, c), &Device::Cpu).unwrap()
}

fn close(got: f64, want: f64, what: &str) {
    let tol = 1e-5 * want.abs().max(1e-3);
    assert!((got - want).abs() <= tol, "{what}: candle {got} vs torch {want}");
}

fn close_grad(got: Option<&Tensor>, want: &Value, what: &str) {
    match (got, want.is_null()) {
        (None, true) => {}
        (Some(g), true) => {
            let max = g.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
            assert!(max == 0.0, "{what}: torch has no gradient but candle's is {max}");
        }
        (None, false) => {
            let all_zero = matrix(want).iter().flatten().all(|&x| x == 0.0);
            assert!(all_zero, "{what}: candle has no gradient but torch's is non-zero");
        }
        (Some(g), false) => {
            let got = g.to_vec2::<f64>().unwrap();
            for (i, (gr, wr)) in got.iter().zip(matrix(want)).enumerate() {
                for (j, (a, b)) in gr.iter().zip(wr).enumerate() {
                    let tol = 1e-5 * b.abs().max(1e-3);
                    assert!((a - b).abs() <= tol, "{what}[{i}][{j}]: candle {a} vs torch {b}");
                }
            }
        }
    }
}

struct Inputs {
    la: Var,
    lb: Var,
    za: Var,
    zb: Var,
    labels: Vec<u32>,
}

fn inputs(d: &Value) -> Inputs {
    Inputs {
        la: var(&d["logits_a"]),
        lb: var(&d["logits_b"]),
        za: var(&d["proj_a"]),
        zb: var(&d["proj_b"]),
        labels: d["labels"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect(),
    }
}

fn check_grads(value: &Tensor, x: &Inputs, want: &Value, what: &str) {
    let grads = value.backward().unwrap();
    for (k, (v, name)) in
        [(&x.la, "logits_a"), (&x.lb, "logits_b"), (&x.za, "proj_a"), (&x.zb, "proj_b")].iter().enumerate()
    {
        close_grad(grads.get(v.as_tensor()), &want[k], &format!("d {what} / d {name}"));
    }
}

fn run(faithful: bool, path: LossPath) {
    let d = parity();
    let x = inputs(&d);
    let cfg = LossConfig {
        tau: d["tau"].as_f64().unwrap(),
        temperature: d["temperature"].as_f64().unwrap(),
        faithful,
    };
    let out = DualOutputs {
        logits_a: x.la.as_tensor(),
        logits_b: x.lb.as_tensor(),
        proj_a: x.za.as_tensor(),
        proj_b: x.zb.as_tensor(),
    };
    let parts = loss::dual_losses_with(out, &x.labels, &cfg, path).unwrap();
    let form = if faithful { "faithful" } else { "clean" };
    let counts = parts.counts().unwrap();
    assert_eq!(counts.gated_for_a as u64, d["gated_for_a"].as_u64().unwrap());
    assert_eq!(counts.gated_for_b as u64, d["gated_for_b"].as_u64().unwrap());
    assert_eq!(counts.anchors as u64, d[format!("anchors_{form}")].as_u64().unwrap());
    let scalar = |t: &Tensor| t.to_scalar::<f64>().unwrap();
    close(scalar(&parts.supervised), d["supervised"].as_f64().unwrap(), "supervised");
    close(scalar(&parts.pseudo_a), d["pseudo_a"].as_f64().unwrap(), "pseudo_a");
    close(scalar(&parts.pseudo_b), d["pseudo_b"].as_f64().unwrap(), "pseudo_b");
    close(scalar(&parts.contrastive), d[format!("contrastive_{form}")].as_f64().unwrap(), "contrastive");
    let (lambda, w) = (d["lambda"].as_f64().unwrap(), d["contrastive_weight"].as_f64().unwrap());
    let total = parts.total(lambda, w).unwrap();
    close(scalar(&total), d[format!("total_{form}")].as_f64().unwrap(), "total");
    let terms = parts.terms(lambda, w).unwrap();
    close(terms.total, d[format!("total_{form}")].as_f64().unwrap(), "terms.total");

    check_grads(&parts.contrastive, &x, &d[format!("grad_contrastive_{form}")], "contrastive");
    if !faithful {
        check_grads(&parts.supervised, &x, &d["grad_supervised"], "supervised");
        check_grads(&parts.pseudo_a, &x, &d["grad_pseudo_a"], "pseudo_a");
        check_grads(&parts.pseudo_b, &x, &d["grad_pseudo_b"], "pseudo_b");
        check_grads(&total, &x, &d["grad_total_clean"], "total");
    }
}

#[test]
fn clean_losses_and_gradients_match_torch() {
    run(false, LossPath::Host);
}

#[test]
fn faithful_contrastive_matches_torch() {
    run(true, LossPath::Host);
}

/// The same with the pseudo-labels, gates and masks computed by tensor ops (the path of data on a GPU).
#[test]
fn the_device_path_matches_torch_too() {
    run(false, LossPath::Device);
    run(true, LossPath::Device);
}

#[test]
fn the_contrastive_labels_match_torch() {
    let d = parity();
    let x = inputs(&d);
    let tau = d["tau"].as_f64().unwrap();
    let nl = x.labels.len();
    let nu = d["nu"].as_u64().unwrap() as usize;
    let pa =
        loss::pseudo_labels(&loss::probabilities(&x.la.as_tensor().narrow(0, nl, nu).unwrap()).unwrap(), tau);
    let pb =
        loss::pseudo_labels(&loss::probabilities(&x.lb.as_tensor().narrow(0, nl, nu).unwrap()).unwrap(), tau);
    let got = loss::contrastive_labels(&x.labels, &pa, &pb);
    let want: Vec<Option<u32>> =
        d["contrastive_labels"].as_array().unwrap().iter().map(|v| v.as_u64().map(|c| c as u32)).collect();
    assert_eq!(got, want);
}

#[test]
fn two_sgd_momentum_steps_match_torch() {
    let d = parity();
    let s = &d["sgd"];
    let vec =
        |k: &str| -> Vec<f64> { s[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let n = vec("w0").len();
    let w = Var::from_vec(vec("w0"), n, &Device::Cpu).unwrap();
    let a = Tensor::from_vec(vec("a"), n, &Device::Cpu).unwrap();
    let b = Tensor::from_vec(vec("b"), n, &Device::Cpu).unwrap();
    let f = |k: &str| s[k].as_f64().unwrap();
    let mut opt = Sgd::new(vec![w.clone()], f("lr"), f("momentum"), f("weight_decay"));
    for (step, want) in s["after_step"].as_array().unwrap().iter().enumerate() {
        let wt = w.as_tensor();
        let loss = ((&a * wt.sqr().unwrap()).unwrap().sum_all().unwrap().affine(0.5, 0.0).unwrap()
            + (&b * wt).unwrap().sum_all().unwrap())
        .unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let got = w.as_tensor().to_vec1::<f64>().unwrap();
        for (i, (g, e)) in got.iter().zip(want.as_array().unwrap()).enumerate() {
            close(*g, e.as_f64().unwrap(), &format!("w[{i}] after step {}", step + 1));
        }
    }
}
