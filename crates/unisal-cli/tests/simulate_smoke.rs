//! A smoke-sized `unisal simulate` on real Kather 2016 patches (40 pool, 20 test, 2 rounds, the small CNN
//! at 32 px, a few iterations), plus `unisal round` and `unisal queries` on a project, through the binary.

use std::path::{Path, PathBuf};
use std::process::Command;

const KATHER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/kather2016/subset100-224px");

/// Write `pool.csv` (rows 0..40) and `test.csv` (rows 40..60) of absolute `path,label`; `None` when the
/// shared data is absent.
fn csvs(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let Ok(text) = std::fs::read_to_string(Path::new(KATHER).join("labels.csv")) else {
        eprintln!("skipping: {KATHER}/labels.csv not found (the shared data lives next to the repository)");
        return None;
    };
    let rows: Vec<String> = text
        .lines()
        .skip(1)
        .map(|l| {
            let mut c = l.split(',');
            let (path, label) = (c.next().unwrap(), c.next().unwrap());
            format!("{},{label}", Path::new(KATHER).join(path).display())
        })
        .collect();
    let write = |name: &str, range: std::ops::Range<usize>| {
        let p = dir.join(name);
        std::fs::write(&p, format!("path,label\n{}\n", rows[range].join("\n"))).unwrap();
        p
    };
    Some((write("pool.csv", 0..40), write("test.csv", 40..60)))
}

fn unisal(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_unisal")).args(args).output().unwrap();
    if !out.status.success() {
        eprintln!("stderr of {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

const TINY: [&str; 8] = ["--model", "small", "--size", "32", "--iterations", "4", "--device", "cpu"];

#[test]
fn simulate_writes_csv_json_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let Some((pool, test)) = csvs(dir.path()) else { return };
    let out = dir.path().join("out");
    let (pool, test, out_s) = (pool.to_str().unwrap(), test.to_str().unwrap(), out.to_str().unwrap());
    let mut args =
        vec!["simulate", "--pool", pool, "--test", test, "--strategies", "unisal,random", "--initial", "10"];
    args.extend(["--budget", "10", "--rounds", "2", "--seeds", "1", "--full", "--out", out_s]);
    args.extend(TINY);
    let run = unisal(&args);
    assert!(run.status.success(), "simulate failed");

    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("strategy,seed,round,labeled,accuracy,macro_f1,macro_precision,macro_recall,seconds")
    );
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    assert_eq!(rows.len(), 2 * 3 + 1, "{csv}");
    for (i, strategy) in ["unisal", "random"].iter().enumerate() {
        for round in 0..3 {
            let r = &rows[i * 3 + round];
            assert_eq!((r[0].as_str(), r[1].as_str()), (*strategy, "0"));
            assert_eq!(r[2], round.to_string());
            assert_eq!(r[3], (10 + 10 * round).to_string(), "labels of {strategy} round {round}");
            for v in &r[4..8] {
                let v: f64 = v.parse().unwrap();
                assert!((0.0..=1.0).contains(&v), "{csv}");
            }
            assert!(r[8].parse::<f64>().unwrap() > 0.0);
        }
    }
    assert_eq!((rows[6][0].as_str(), rows[6][3].as_str()), ("full", "40"));

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), 7);
    assert_eq!((json["pool_size"].as_u64(), json["test_size"].as_u64()), (Some(40), Some(20)));
    assert_eq!(json["finished"], true);
    assert_eq!(json["config"]["crop"], 32);
    let svg = std::fs::read_to_string(out.join("curve.svg")).unwrap();
    assert!(
        svg.starts_with("<svg")
            && svg.contains("unisal")
            && svg.contains("random")
            && svg.contains("all labels")
    );
}

#[test]
fn round_then_queries_on_a_project() {
    let dir = tempfile::tempdir().unwrap();
    let Some((pool, _)) = csvs(dir.path()) else { return };
    let project = dir.path().join("p.unisal");
    let p = project.to_str().unwrap();
    assert!(unisal(&["init", p]).status.success());
    assert!(unisal(&["import", p, pool.to_str().unwrap(), "--labels", "csv", "--oracle"]).status.success());

    // Nothing labeled and no initial set: refused as a usage error, nothing recorded.
    let refused = unisal(&["round", p, "--initial", "0"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no patch is labeled"));

    // The initial draw, then label it as the pathologist would, then a trained round.
    let mut args = vec!["round", p, "--initial", "12", "--budget", "6", "--json"];
    args.extend(TINY);
    let first = unisal(&args);
    assert!(first.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!((summary["round"].as_i64(), summary["trained"].as_bool()), (Some(1), Some(false)));
    let queries = unisal(&["queries", p, "--json"]);
    let batch: serde_json::Value = serde_json::from_slice(&queries.stdout).unwrap();
    let items = batch["queries"].as_array().unwrap();
    assert_eq!(items.len(), 12);
    let classes = ["01_TUMOR", "02_STROMA"];
    for (i, q) in items.iter().enumerate() {
        let id = q["patch_id"].as_i64().unwrap().to_string();
        assert!(unisal(&["label", p, &id, classes[i % 2]]).status.success());
    }
    let second = unisal(&args);
    assert!(second.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!((summary["round"].as_i64(), summary["trained"].as_bool()), (Some(2), Some(true)));
    assert_eq!((summary["labeled"].as_u64(), summary["queries"].as_array().unwrap().len()), (Some(12), 6));
    let shown = unisal(&["queries", p, "--json"]);
    let batch: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let items = batch["queries"].as_array().unwrap();
    assert_eq!((batch["round"].as_i64(), items.len()), (Some(2), 6));
    for q in items {
        assert!(q["pred_a"].is_string() && q["pred_b"].is_string() && q["disagreement"].as_f64().is_some());
    }
    let text = unisal(&["queries", p]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("round 2 (unisal): 6 queries"));
}
