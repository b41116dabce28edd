//! Tests of the import job: a real import of the bundled demo patches into a real project file, its
//! progress events, cancellation, and the checks on the folder typed by the user.

use super::*;
use std::sync::Mutex;

fn demo_assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo")
}

#[test]
fn imports_the_demo_folder_with_labels_and_progress() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("p.unisal");
    drop(Pool::create(&project).unwrap());
    let events = Mutex::new(Vec::new());
    let report = run_import(&project, &demo_assets(), LabelsMode::Folders, &CancelToken::new(), |e| {
        events.lock().unwrap().push(e)
    })
    .unwrap();
    assert_eq!(report.imported, 24, "{report:?}");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let events = events.into_inner().unwrap();
    let last = events.last().expect("at least one progress event");
    assert_eq!((last.done, last.total), (24, Some(24)));
    assert!(events.iter().all(|e| e.total.is_none_or(|t| e.done <= t)));

    let pool = Pool::open(&project).unwrap();
    let status = pool.status().unwrap();
    assert_eq!((status.patches, status.labeled), (24, 24));
    assert_eq!(status.classes.len(), 8);

    // Each patch carries the class of its sub-folder.
    let names: std::collections::HashMap<i64, String> =
        pool.classes().unwrap().into_iter().map(|c| (c.id, c.name)).collect();
    let filter = unisal_core::pool::PatchFilter::default();
    for patch in pool.page_patches(0, 100, &filter).unwrap() {
        let folder = Path::new(&patch.source_path).parent().unwrap().file_name().unwrap().to_string_lossy();
        assert_eq!(names[&patch.label.unwrap()], folder, "label of {}", patch.source_path);
    }

    // The same folder again: every file is a duplicate, nothing changes.
    let again = run_import(&project, &demo_assets(), LabelsMode::None, &CancelToken::new(), |_| {}).unwrap();
    assert_eq!((again.imported, again.duplicates), (0, 24));
    assert_eq!(Pool::open(&project).unwrap().status().unwrap(), status);
}

#[test]
fn a_cancelled_import_says_so_and_keeps_the_pool_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("c.unisal");
    drop(Pool::create(&project).unwrap());
    let cancel = CancelToken::new();
    cancel.cancel();
    let report = run_import(&project, &demo_assets(), LabelsMode::None, &cancel, |_| {}).unwrap();
    assert!(report.cancelled);
    let status = Pool::open(&project).unwrap().status().unwrap();
    assert_eq!(status.patches, report.imported);
    assert_eq!(status.labeled, 0);
}

#[test]
fn reporter_throttles_and_estimates() {
    let t0 = Instant::now();
    let r = Reporter::new(Duration::from_millis(100));
    let scan = Progress::new("scan", 0, None);
    let first = r.event(&scan, t0).unwrap();
    assert_eq!((first.total, first.eta_seconds), (None, None));
    assert!(r.event(&Progress::new("import", 0, Some(100)), t0 + Duration::from_millis(10)).is_none());
    let mid = r.event(&Progress::new("import", 50, Some(100)), t0 + Duration::from_millis(1010)).unwrap();
    assert_eq!(mid.per_second, Some(50.0));
    assert_eq!(mid.eta_seconds, Some(1.0));
    assert!(r.event(&Progress::new("import", 60, Some(100)), t0 + Duration::from_millis(1020)).is_none());
    let end = r.event(&Progress::new("import", 100, Some(100)), t0 + Duration::from_millis(1030)).unwrap();
    assert_eq!(end.eta_seconds, Some(0.0));
}

#[test]
fn folders_are_checked_before_the_job_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, "x").unwrap();
    let msg = |s: &str| parse_folder(s).unwrap_err().to_string();
    assert!(msg("  ").contains("import folder"));
    assert!(msg("relative/dir").contains("not an absolute path"));
    assert!(msg(&file.display().to_string()).contains("is not a folder"));
    assert!(msg(&dir.path().join("nope").display().to_string()).contains("does not exist"));
    assert_eq!(parse_folder(&format!(" {} ", dir.path().display())).unwrap(), dir.path());
}
