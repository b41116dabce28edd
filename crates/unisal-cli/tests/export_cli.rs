//! `unisal export predictions` and `unisal export model` through the real binary, after a tiny real round
//! (the small CNN at 32 px, 4 iterations, on the CPU) on a project of the 24 bundled demo tiles: the CSV's
//! header and rows, the copied model files' SHA-256 against the project's, and the refusals (exit 2).

use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Output};
use unisal_core::Pool;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/demo");
const TINY: [&str; 8] = ["--model", "small", "--size", "32", "--iterations", "4", "--device", "cpu"];

fn unisal(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_unisal")).args(args).output().expect("running unisal");
    if !out.status.success() {
        eprintln!("stderr of {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn export_predictions_and_model_after_a_real_round() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("p.unisal");
    let p = project.to_str().unwrap();
    assert!(unisal(&["init", p]).status.success());
    assert!(unisal(&["import", p, DEMO, "--labels", "folders", "--oracle"]).status.success());

    // Round 1 draws the initial set; label it with two classes; round 2 trains.
    let mut args = vec!["round", p, "--initial", "8", "--budget", "4", "--json"];
    args.extend(TINY);
    assert!(unisal(&args).status.success());
    let (pred_csv, model_dir) = (dir.path().join("pred.csv"), dir.path().join("model"));
    let (pred_s, model_s) = (pred_csv.to_str().unwrap(), model_dir.to_str().unwrap());
    let refused = unisal(&["export", "predictions", p, pred_s]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("no round with predictions"), "{}", stderr(&refused));
    let refused = unisal(&["export", "model", p, model_s, "--round", "1"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("round 1 has no model"), "{}", stderr(&refused));

    let queries = {
        let pool = Pool::open(&project).unwrap();
        pool.round_queries(1).unwrap().iter().map(|q| q.patch_id).collect::<Vec<_>>()
    };
    for (i, id) in queries.iter().enumerate() {
        let class = ["01_TUMOR", "02_STROMA"][i % 2];
        assert!(unisal(&["label", p, &id.to_string(), class]).status.success());
    }
    assert!(unisal(&args).status.success());

    let out = unisal(&["export", "predictions", p, pred_s]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("exported 24 predictions of round 2"));
    let text = std::fs::read_to_string(&pred_csv).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with(
            "patch_id,source_path,group,label,predicted,confidence,pred_a,conf_a,pred_b,conf_b,disagreement,a:01_TUMOR,"
        ) && header.ends_with(",b:08_EMPTY"),
        "{header}"
    );
    assert_eq!(header.split(',').count(), 11 + 2 * 8);
    assert_eq!(lines.count(), 24);
    let unknown = unisal(&["export", "predictions", p, pred_s, "--round", "9"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("unknown round 9"), "{}", stderr(&unknown));

    let out = unisal(&["export", "model", p, model_s]);
    assert!(out.status.success());
    let pool = Pool::open(&project).unwrap();
    let recorded = pool.round_checkpoints(2).unwrap();
    assert_eq!(recorded.iter().map(|c| c.network.as_str()).collect::<Vec<_>>(), ["A", "B"]);
    for c in &recorded {
        let name = Path::new(&c.path).file_name().unwrap();
        let copied = std::fs::read(model_dir.join(name)).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&copied)), c.sha256, "{}", c.path);
    }
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model_dir.join("model_card.json")).unwrap()).unwrap();
    assert_eq!(card["num_classes"], 8);
    assert_eq!(card["files"].as_array().unwrap().len(), 2);
    let mut names: Vec<String> = std::fs::read_dir(&model_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["model_card.json", "network_a.safetensors", "network_b.safetensors"]);
}
