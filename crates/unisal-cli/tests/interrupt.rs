//! An import of real crc5 patches interrupted by `kill -9` (and another by Ctrl-C) leaves a consistent
//! pool that a re-run of the same command completes, counting what had landed as duplicates.
//! To keep the test fast, it imports 500 of the 4,000 patches (100 a class), copied to a temporary folder.
//! Skips (with a message) when `../shared/data/crc5` is absent.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use unisal_core::Pool;

const PER_CLASS: usize = 100;
const TOTAL: u64 = 5 * PER_CLASS as u64;

/// The first 100 patches of each crc5 class, copied into class folders under `dir`.
fn crc5_subset(dir: &Path) -> Option<PathBuf> {
    let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/crc5/pool"));
    if !src.is_dir() {
        eprintln!("SKIPPED: {} is absent (the shared patch data is not on this machine)", src.display());
        return None;
    }
    let out = dir.join("crc5 subset");
    for class in ["AC", "H", "S", "T", "V"] {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(src.join(class)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        std::fs::create_dir_all(out.join(class)).unwrap();
        for f in files.iter().take(PER_CLASS) {
            std::fs::copy(f, out.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
    Some(out)
}

fn unisal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_unisal"))
}

/// Start an import and wait until it reports progress past the first committed batch.
fn start_import(project: &Path, data: &Path) -> (Child, u64) {
    let mut child = unisal()
        .args([
            "import",
            project.to_str().unwrap(),
            data.to_str().unwrap(),
            "--threads",
            "1",
            "--batch-size",
            "4",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning unisal import");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut done = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        // Plain progress lines when piped: "import: N/500".
        if let Some(rest) = line.strip_prefix("import: ") {
            done = rest.split('/').next().unwrap().parse().unwrap();
            if done > 0 {
                break;
            }
        }
    }
    // Keep reading stderr, as a terminal would, so the import never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, done)
}

fn check_consistent(project: &Path) -> u64 {
    let pool = Pool::open(project).expect("the interrupted pool opens");
    assert_eq!(pool.check_integrity().unwrap(), Vec::<String>::new());
    let s = pool.status().unwrap();
    assert_eq!(s.labeled, s.patches, "every stored patch has its folder label");
    for id in pool.patch_ids().unwrap() {
        assert!(!pool.thumbnail(id).unwrap().data.is_empty());
    }
    s.patches
}

fn rerun(project: &Path, data: &Path, landed: u64) {
    let out = unisal()
        .args(["import", project.to_str().unwrap(), data.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (imported, duplicates) = (r["imported"].as_u64().unwrap(), r["duplicates"].as_u64().unwrap());
    assert_eq!(imported + duplicates, TOTAL, "{r}");
    assert!(duplicates >= landed, "what landed before counts as duplicates: {r}");
    let pool = Pool::open(project).unwrap();
    assert_eq!(pool.status().unwrap().patches, landed + imported);
    assert!(pool.check_integrity().unwrap().is_empty());
}

#[test]
fn kill_9_mid_import_then_rerun_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(data) = crc5_subset(tmp.path()) else { return };
    let project = tmp.path().join("killed.unisal");
    assert!(unisal().args(["init", project.to_str().unwrap()]).output().unwrap().status.success());
    let (mut child, seen) = start_import(&project, &data);
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix.
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "killed by a signal, not finished");
    let landed = check_consistent(&project);
    assert!((1..TOTAL).contains(&landed), "killed mid-way: {landed} landed, progress said {seen}");
    rerun(&project, &data, landed);
}

#[test]
fn ctrl_c_cancels_cleanly_with_exit_130() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(data) = crc5_subset(tmp.path()) else { return };
    let project = tmp.path().join("cancelled.unisal");
    assert!(unisal().args(["init", project.to_str().unwrap()]).output().unwrap().status.success());
    let (child, _) = start_import(&project, &data);
    let sent = Command::new("kill").args(["-s", "INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let r: Value = serde_json::from_slice(&out.stdout).expect("the JSON report is still printed");
    assert_eq!(r["cancelled"], true);
    let landed = check_consistent(&project);
    assert_eq!(landed, r["imported"].as_u64().unwrap());
    rerun(&project, &data, landed);
}
