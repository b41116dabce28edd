//! The real `unisal` binary on real patches from `../shared/data`: JSON shapes and exit codes of init,
//! import, status, classes, label, undo, export and demo. Skips (with a message) when the data is absent.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shared(sub: &str) -> Option<PathBuf> {
    let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(sub);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {} is absent (the shared patch data is not on this machine)", p.display());
        None
    }
}

fn unisal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_unisal")).args(args).output().expect("running unisal")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

fn json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {text}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    })
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn init_import_status_label_export() {
    let (Some(kather), Some(nct)) = (shared("kather2016/originals-150px"), shared("nct-crc-he-100k-samples"))
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("my project ü.unisal");
    let p = s(&project);
    assert_eq!(code(&unisal(&["init", p])), 0);
    assert_eq!(code(&unisal(&["init", p])), 2, "init refuses an existing file");

    let out = unisal(&["import", p, s(&kather), "--json"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let r = json(&out);
    assert_eq!(r, serde_json::json!({"imported": 24, "duplicates": 0, "failed": [], "cancelled": false}));

    let st = json(&unisal(&["status", p, "--json"]));
    assert_eq!(st["patches"], 24);
    assert_eq!(st["labeled"], 24);
    assert_eq!(st["unlabeled"], 0);
    assert_eq!(st["rounds"], 0);
    let classes = st["classes"].as_object().unwrap();
    assert_eq!(classes.len(), 8);
    assert!(classes.values().all(|n| n == 3), "{classes:?}");
    assert_eq!(st.as_object().unwrap().len(), 5, "exactly the documented keys: {st}");

    // Good NCT tiles (as oracle labels: hidden, classes exist so unknown names fail) and a bad file.
    let bad = tmp.path().join("not an image.png");
    std::fs::write(&bad, "plain text").unwrap();
    let out = unisal(&["import", p, s(&nct.join("labels.csv")), s(&bad), "--labels", "none", "--json"]);
    assert_eq!(code(&out), 1, "per-file failures exit 1");
    let r = json(&out);
    assert_eq!(r["imported"], 9);
    let failed = r["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["path"].as_str().unwrap().ends_with("not an image.png"));
    assert!(failed[0]["reason"].as_str().unwrap().contains("not an image"));
    let r = json(&unisal(&["import", p, s(&kather), "--json"]));
    assert_eq!((r["imported"].as_u64(), r["duplicates"].as_u64()), (Some(0), Some(24)));
    let st = json(&unisal(&["status", p, "--json"]));
    assert_eq!((st["patches"].as_u64(), st["unlabeled"].as_u64()), (Some(33), Some(9)));

    // Labels: set, change, clear, undo; unknown class and patch are usage errors.
    assert_eq!(code(&unisal(&["label", p, "30", "01_TUMOR"])), 0);
    assert_eq!(json(&unisal(&["status", p, "--json"]))["classes"]["01_TUMOR"], 4);
    let out = unisal(&["label", p, "30", "--clear"]);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("01_TUMOR -> (none)"));
    let out = unisal(&["undo", p]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("(none) -> 01_TUMOR"), "{out:?}");
    assert_eq!(code(&unisal(&["label", p, "30", "--undo"])), 0);
    assert_eq!(json(&unisal(&["status", p, "--json"]))["labeled"], 24);
    assert_eq!(code(&unisal(&["label", p, "30", "NO_SUCH_CLASS"])), 2);
    assert_eq!(code(&unisal(&["label", p, "99999", "01_TUMOR"])), 2);

    // Classes.
    assert_eq!(code(&unisal(&["classes", p, "add", "unsure", "--color", "#AABBCC", "--hotkey", "u"])), 0);
    assert_eq!(code(&unisal(&["classes", p, "rename", "unsure", "second look"])), 0);
    assert_eq!(code(&unisal(&["classes", p, "color", "second look", "#112233"])), 0);
    assert_eq!(code(&unisal(&["classes", p, "move", "second look", "1"])), 0);
    assert_eq!(code(&unisal(&["classes", p, "color", "second look", "blue"])), 2);
    let list = json(&unisal(&["classes", p, "list", "--json"]));
    assert_eq!(list[0]["name"], "second look");
    assert_eq!(list[0]["color"], "#112233");
    assert_eq!(list[0]["hotkey"], "u");
    assert_eq!(list.as_array().unwrap().len(), 9);

    // Export.
    let csv = tmp.path().join("labels out.csv");
    assert_eq!(code(&unisal(&["export", "labels", p, s(&csv)])), 0);
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "patch_id,source_path,group,label,source");
    assert_eq!(lines.len(), 25);
    assert!(lines[1].starts_with("1,") && lines[1].ends_with(",01_TUMOR,imported"), "{}", lines[1]);
}

#[test]
fn projects_that_cannot_be_opened_and_usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("text.unisal");
    std::fs::write(&text, "not a database, just some text that is long enough").unwrap();
    for args in [
        vec!["status", s(&tmp.path().join("missing.unisal"))],
        vec!["status", s(&text), "--json"],
        vec!["status", s(tmp.path())],
        vec!["import", s(&text), "."],
        vec!["frobnicate"],
        vec!["import", "x.unisal", ".", "--labels", "maybe"],
    ] {
        let out = unisal(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stderr.is_empty());
    }
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "not a database, just some text that is long enough");
}

#[test]
fn demo_builds_then_reopens() {
    let assets = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/demo"));
    if !assets.is_dir() {
        eprintln!("SKIPPED: {} is absent", assets.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo dir");
    let first = unisal(&["demo", s(&dir), "--json"]);
    assert_eq!(code(&first), 0, "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(json(&first)["imported"], 24);
    let again = json(&unisal(&["demo", s(&dir), "--json"]));
    assert_eq!((again["imported"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(0)));
    let st = json(&unisal(&["status", s(&dir.join("demo.unisal")), "--json"]));
    assert_eq!((st["patches"].as_u64(), st["labeled"].as_u64()), (Some(24), Some(24)));
}
