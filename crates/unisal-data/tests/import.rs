//! Import of real patches from `../shared/data` into real pool files, with every kind of bad input mixed
//! in with good files. Skips (with a message) when the shared data is absent.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use unisal_core::events::{CancelToken, NoProgress, Progress};
use unisal_core::pool::{LabelFilter, PatchFilter};
use unisal_core::Pool;
use unisal_data::{import, ImportOptions, ImportReport, LabelMode};

fn shared(sub: &str) -> Option<PathBuf> {
    let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(sub);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {} is absent (the shared patch data is not on this machine)", p.display());
        None
    }
}

fn run(pool: &mut Pool, paths: &[PathBuf], options: &ImportOptions) -> ImportReport {
    import(pool, paths, options, &NoProgress, &CancelToken::new()).unwrap()
}

/// Everything a user could see of a pool, for before/after comparisons.
fn snapshot(pool: &Pool) -> Vec<String> {
    let mut out = Vec::new();
    for c in pool.classes().unwrap() {
        out.push(format!("class {c:?}"));
    }
    for p in pool.page_patches(0, 1_000_000, &PatchFilter::default()).unwrap() {
        let img = pool.image_bytes(p.id).unwrap();
        let hist = pool.label_history(p.id).unwrap().len();
        out.push(format!("{p:?} {} {hist}", unisal_data::decode::sha256_hex(&img)));
    }
    out
}

fn find<'a>(report: &'a ImportReport, name: &str) -> &'a str {
    let f = report.failed.iter().find(|f| f.path.ends_with(name));
    &f.unwrap_or_else(|| panic!("no failure for {name}: {:#?}", report.failed)).reason
}

fn to_jpeg(src: &Path, dst: &Path) -> Vec<u8> {
    let img = image::open(src).unwrap().to_rgb8();
    img.save_with_format(dst, image::ImageFormat::Jpeg).unwrap();
    fs::read(dst).unwrap()
}

#[test]
fn bad_input_is_reported_per_file_and_changes_nothing_stored() {
    let (Some(kather), Some(subset), Some(nct)) = (
        shared("kather2016/originals-150px"),
        shared("kather2016/subset100-224px"),
        shared("nct-crc-he-100k-samples"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("projekt ü ñ");
    fs::create_dir_all(&root).unwrap();
    let mut pool = Pool::create(root.join("pool é.unisal")).unwrap();
    let first = run(&mut pool, std::slice::from_ref(&kather), &ImportOptions::default());
    assert_eq!((first.imported, first.duplicates, first.failed.len()), (24, 0, 0), "{first:#?}");
    assert_eq!(first.classes_created.len(), 8);
    assert_eq!(first.skipped, 1, "labels.csv is skipped as a non-image");
    assert_eq!(pool.status().unwrap().labeled, 24);
    assert!(first.notes.iter().any(|n| n.contains("TIFF")), "{:?}", first.notes);
    let before = snapshot(&pool);

    // A flat folder of good and bad files.
    let bad = root.join("bad files ü");
    fs::create_dir_all(&bad).unwrap();
    for (i, class) in ["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"].iter().enumerate() {
        let src = fs::read_dir(nct.join(class)).unwrap().next().unwrap().unwrap().path();
        fs::copy(&src, bad.join(format!("good tile {i} ø.tif"))).unwrap();
    }
    let jpeg = to_jpeg(&subset.join("01_TUMOR/image_0_label_0.png"), &bad.join("good jpeg é.jpg"));
    fs::write(bad.join("empty.png"), b"").unwrap();
    fs::write(bad.join("truncated.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    fs::write(bad.join("text.png"), b"this is a text file, not a picture\n").unwrap();
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&[0u8; 60]);
    fs::write(bad.join("old.bmp"), &bmp).unwrap();
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[1, 0, 1, 0, 0, 0, 0, 0x3B]);
    fs::write(bad.join("anim.gif"), &gif).unwrap();
    fs::write(bad.join("huge.png"), huge_png()).unwrap();
    fs::write(bad.join("notes.txt"), b"skipped").unwrap();
    let locked = bad.join("locked.jpg");
    to_jpeg(&subset.join("02_STROMA/").join(first_file(&subset.join("02_STROMA"))), &locked);
    set_mode(&locked, 0o000);
    let locked_readable = fs::read(&locked).is_ok(); // root reads anything
    std::os::unix::fs::symlink(bad.join("no such target.jpg"), bad.join("dangling.jpg")).unwrap();
    fs::copy(
        kather.join("01_TUMOR").join(first_file(&kather.join("01_TUMOR"))),
        bad.join("already there.tif"),
    )
    .unwrap();

    // A CSV with paths relative to it: good, missing, unknown class, a folder, a duplicate with another label.
    let csv_png = root.join("csv png ü.png");
    fs::copy(subset.join("06_MUCOSA").join(first_file(&subset.join("06_MUCOSA"))), &csv_png).unwrap();
    let other_png = root.join("other.png");
    fs::copy(subset.join("07_ADIPOSE").join(first_file(&subset.join("07_ADIPOSE"))), &other_png).unwrap();
    fs::create_dir_all(root.join("a folder.png")).unwrap();
    let dup = kather.join("02_STROMA").join(first_file(&kather.join("02_STROMA")));
    fs::write(
        root.join("liste ü.csv"),
        format!(
            "path,label,group\ncsv png ü.png,06_MUCOSA,slide A\nmissing.png,01_TUMOR,\nother.png,ADI,\na folder.png,01_TUMOR,\n{},08_EMPTY,\n",
            dup.display()
        ),
    )
    .unwrap();

    let t = std::time::Instant::now();
    let r = run(
        &mut pool,
        &[bad.clone(), root.join("liste ü.csv"), root.join("nowhere")],
        &ImportOptions::default(),
    );
    let took = t.elapsed();
    set_mode(&locked, 0o644);
    let good = 9 + 1 + 1 + u64::from(locked_readable);
    assert_eq!(r.imported, good, "{r:#?}");
    assert_eq!(r.duplicates, 2, "{r:#?}");
    assert!(!r.cancelled);
    assert!(find(&r, "empty.png").contains("empty file"));
    assert!(find(&r, "truncated.jpg").contains("truncated"), "{}", find(&r, "truncated.jpg"));
    assert!(find(&r, "text.png").contains("not an image"));
    assert!(find(&r, "old.bmp").contains("unsupported format BMP"));
    assert!(find(&r, "anim.gif").contains("unsupported format GIF"));
    assert!(find(&r, "huge.png").contains("100000x100000"));
    assert!(find(&r, "dangling.jpg").contains("dangling symbolic link"));
    assert!(find(&r, "missing.png").contains("file not found (listed in"));
    assert!(find(&r, "other.png").contains("unknown class \"ADI\""));
    assert!(find(&r, "a folder.png").contains("is a folder"));
    assert!(find(&r, "nowhere").contains("not found"));
    if !locked_readable {
        assert!(find(&r, "locked.jpg").contains("permission denied"));
    }
    assert_eq!(r.failed.len() as u64, 11 + u64::from(!locked_readable), "{:#?}", r.failed);
    assert!(r.failed.iter().all(|f| Path::new(&f.path).is_absolute()), "failures name the full path");
    assert_eq!(r.skipped, 1);
    assert!(took.as_secs() < 20, "import of bad input took {took:?}");

    // Nothing from before changed: same classes, same patches, labels, images and histories.
    let after = snapshot(&pool);
    assert_eq!(&after[..before.len()], &before[..]);
    let s = pool.status().unwrap();
    assert_eq!((s.patches, s.labeled, s.classes.len()), (24 + good, 25, 8));
    let mucosa = pool.require_class("06_MUCOSA").unwrap().id;
    let grouped = PatchFilter { label: LabelFilter::Class(mucosa), group: Some("slide A".into()) };
    let rows = pool.page_patches(0, 10, &grouped).unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].source_path.contains("csv png ü.png"));
    assert!(pool.check_integrity().unwrap().is_empty());
}

#[test]
fn oracle_labels_and_csv_classes_and_cancel_then_resume() {
    let (Some(nct), Some(kather)) = (shared("nct-crc-he-100k-samples"), shared("kather2016/originals-150px"))
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Oracle: classes created from the CSV labels, nothing in the training set.
    let mut pool = Pool::create(tmp.path().join("o.unisal")).unwrap();
    let opts = ImportOptions { oracle: true, ..ImportOptions::default() };
    let r = run(&mut pool, &[nct.join("labels.csv")], &opts);
    assert_eq!((r.imported, r.classes_created.len()), (9, 9), "{r:#?}");
    assert!(pool.labeled_set().unwrap().is_empty());
    assert_eq!(pool.oracle_labels().unwrap().len(), 9);
    assert_eq!(pool.status().unwrap().oracle_labeled, 9);

    // --labels none on class folders: all unlabeled, no classes.
    let mut pool = Pool::create(tmp.path().join("n.unisal")).unwrap();
    let r = run(
        &mut pool,
        std::slice::from_ref(&kather),
        &ImportOptions { labels: LabelMode::None, ..ImportOptions::default() },
    );
    assert_eq!((r.imported, pool.class_count().unwrap(), pool.unlabeled_ids().unwrap().len()), (24, 0, 24));
    // Patch ids follow the listing order (sorted paths), whatever order the decoding threads finish in.
    let paths: Vec<String> = pool
        .page_patches(0, 100, &PatchFilter::default())
        .unwrap()
        .into_iter()
        .map(|p| p.source_path)
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);

    // --labels csv on a folder reads its labels.csv (paths relative to it), and refuses a folder without one.
    let mut pool = Pool::create(tmp.path().join("csv.unisal")).unwrap();
    let opts = ImportOptions { labels: LabelMode::Csv, ..ImportOptions::default() };
    let r = run(&mut pool, &[kather.clone(), tmp.path().to_path_buf()], &opts);
    assert_eq!(
        (r.imported, r.skipped, r.classes_created.len(), pool.status().unwrap().labeled),
        (24, 0, 8, 24)
    );
    assert_eq!(r.failed.len(), 1);
    assert!(r.failed[0].reason.contains("no labels.csv"), "{r:#?}");

    // Cancel after the first batch, then run again: it completes, counting what landed as duplicates.
    let mut pool = Pool::create(tmp.path().join("c.unisal")).unwrap();
    let cancel = CancelToken::new();
    let seen = AtomicBool::new(false);
    let sink = |p: &Progress| {
        if p.stage == "import" && p.done >= 4 {
            seen.store(true, Ordering::SeqCst);
            cancel.cancel();
        }
    };
    let opts = ImportOptions { batch_size: 4, threads: 1, ..ImportOptions::default() };
    let r = import(&mut pool, std::slice::from_ref(&kather), &opts, &sink, &cancel).unwrap();
    assert!(seen.load(Ordering::SeqCst));
    assert!(r.cancelled, "{r:#?}");
    assert!(r.imported >= 4 && r.imported < 24, "{r:#?}");
    assert!(pool.check_integrity().unwrap().is_empty());
    let landed = pool.status().unwrap().patches;
    assert_eq!(landed, r.imported);
    let again = run(&mut pool, &[kather], &ImportOptions::default());
    assert!(!again.cancelled);
    assert_eq!((again.duplicates, again.imported), (landed, 24 - landed), "{again:#?}");
    assert_eq!(pool.status().unwrap().labeled, 24);
}

#[test]
fn demo_project_builds_once_and_reopens() {
    let assets = unisal_data::demo::bundled_assets_dir();
    if !assets.is_dir() {
        eprintln!("SKIPPED: {} is absent", assets.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (pool, report) =
        unisal_data::demo::open_or_build_demo(&assets, tmp.path(), &NoProgress, &CancelToken::new()).unwrap();
    let report = report.expect("first open builds the demo");
    assert_eq!((report.imported, report.failed.len()), (24, 0), "{report:#?}");
    assert_eq!(pool.status().unwrap().classes.len(), 8);
    drop(pool);
    let (pool, report) =
        unisal_data::demo::open_or_build_demo(&assets, tmp.path(), &NoProgress, &CancelToken::new()).unwrap();
    assert!(report.is_none(), "a complete demo is reopened as it is");
    assert_eq!(pool.status().unwrap().labeled, 24);
}

fn first_file(dir: &Path) -> String {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names.remove(0)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A PNG crafted by hand whose IHDR claims 100000x100000 RGB pixels, with a tiny IDAT and IEND.
fn huge_png() -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn labels_commit_while_an_import_writes_from_another_connection() {
    let (Some(kather), Some(subset)) =
        (shared("kather2016/originals-150px"), shared("kather2016/subset100-224px"))
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("busy.unisal");
    let mut pool = Pool::create(&path).unwrap();
    run(
        &mut pool,
        std::slice::from_ref(&kather),
        &ImportOptions { labels: LabelMode::None, ..ImportOptions::default() },
    );
    let tumor = pool.add_class("01_TUMOR", None, None).unwrap().id;
    drop(pool);

    let importer = {
        let path = path.clone();
        std::thread::spawn(move || {
            let mut pool = Pool::open(&path).unwrap();
            let opts = ImportOptions { batch_size: 8, labels: LabelMode::None, ..ImportOptions::default() };
            run(&mut pool, &[subset], &opts)
        })
    };
    // Meanwhile, the pathologist labels: every click commits at once and a fresh connection sees it.
    let mut labeler = Pool::open(&path).unwrap();
    let ids = labeler.unlabeled_ids().unwrap();
    for (i, &id) in ids.iter().enumerate().take(24) {
        if i % 2 == 0 {
            labeler.set_label(id, tumor).unwrap();
        } else {
            labeler.clear_label(id).unwrap();
        }
        let seen = Pool::open(&path).unwrap().label(id).unwrap();
        assert_eq!(seen, (i % 2 == 0).then_some(tumor));
    }
    let r = importer.join().unwrap();
    assert_eq!((r.imported, r.failed.len()), (100, 0), "{r:#?}");
    let s = labeler.status().unwrap();
    assert_eq!(s.patches, 124);
    assert!(labeler.check_integrity().unwrap().is_empty());
}
