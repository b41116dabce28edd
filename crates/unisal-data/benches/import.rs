//! Import benchmark (`cargo bench -p unisal-data`): imports `../shared/data/crc5/pool` (4,000 JPEG patches)
//! into a fresh pool and reports patches/s and the database size, then times `status` and one page of 100
//! thumbnails read from the 4,000-patch pool. Targets: >= 500 patches/s on 2 cores; a page < 50 ms.

use std::path::Path;
use std::time::{Duration, Instant};
use unisal_core::events::{CancelToken, NoProgress};
use unisal_core::pool::{ImportLabel, LabelFilter, NewPatch, PatchFilter};
use unisal_core::Pool;
use unisal_data::{import, ImportOptions};

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn size_mb(path: &Path) -> f64 {
    let mut total = 0;
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", path.display());
        total += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    }
    total as f64 / 1e6
}

fn main() {
    let data = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/crc5/pool"));
    if !data.is_dir() {
        println!("SKIPPED: {} is absent (the shared patch data is not on this machine)", data.display());
        return;
    }
    let source_mb = walk_size(data) as f64 / 1e6;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("import of {} ({source_mb:.1} MB of files), {cores} cores", data.display());
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut last = None;
    for threads in [1, 0] {
        let path = tmp.path().join(format!("bench-{threads}.unisal"));
        let mut pool = Pool::create(&path).expect("create pool");
        let options = ImportOptions { threads, ..ImportOptions::default() };
        let t = Instant::now();
        let cpu0 = cpu_seconds();
        let r = import(&mut pool, &[data.to_path_buf()], &options, &NoProgress, &CancelToken::new())
            .expect("import");
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        assert_eq!(r.failed.len(), 0, "{:?}", r.failed);
        drop(pool);
        let label =
            if threads == 0 { format!("{cores} threads (default)") } else { format!("{threads} thread") };
        println!(
            "  {label}: {} patches in {secs:.2} s = {:.0} patches/s; {cpu:.2} CPU-s = {:.2} ms CPU a patch; database {:.1} MB",
            r.imported,
            r.imported as f64 / secs,
            cpu * 1e3 / r.imported as f64,
            size_mb(&path)
        );
        last = Some(path);
    }
    let path = last.expect("a pool");

    let t = Instant::now();
    let pool = Pool::open(&path).expect("open pool");
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let cold = Instant::now();
    let first = page_of_thumbnails(&pool, 0);
    let cold_ms = cold.elapsed().as_secs_f64() * 1e3;
    let mut status_t = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let s = pool.status().expect("status");
        status_t.push(t.elapsed());
        assert_eq!(s.patches, 4000);
    }
    let mut page_t = Vec::new();
    for i in 0..40u64 {
        let t = Instant::now();
        let bytes = page_of_thumbnails(&pool, (i * 97) % 3900);
        page_t.push(t.elapsed());
        assert!(bytes > 0);
    }
    println!(
        "  open: {open_ms:.1} ms; first page of 100 thumbnails after open: {cold_ms:.1} ms ({first} bytes)"
    );
    println!("  status: median {:.2} ms over 21 calls", median(status_t));
    println!(
        "  page of 100 thumbnails (page_patches + 100 x thumbnail): median {:.2} ms over 40 pages",
        median(page_t)
    );
    scale_100k(&pool, tmp.path());
}

/// A 100,000-patch pool made of the 4,000 real patches repeated (distinct hashes), 10% labeled: open,
/// status, pages of thumbnails near the start and the end, and the training-set reads.
fn scale_100k(real: &Pool, dir: &Path) {
    let ids = real.patch_ids().expect("ids");
    let name = real.classes().expect("classes")[0].name.clone();
    let path = dir.join("bench-100k.unisal");
    let mut pool = Pool::create(&path).expect("create");
    let class = pool.ensure_classes(&[name]).expect("class")[0].id;
    let t = Instant::now();
    for chunk in 0..100u64 {
        let batch: Vec<NewPatch> = (0..1000u64)
            .map(|j| {
                let n = chunk * 1000 + j;
                let id = ids[(n % ids.len() as u64) as usize];
                NewPatch {
                    sha256: format!("{n:064x}"),
                    width: 150,
                    height: 150,
                    source_path: format!("synthetic/{n}.jpg"),
                    group: Some(format!("slide{}", n % 50)),
                    format: "jpeg".into(),
                    source_format: "jpeg".into(),
                    note: None,
                    image: real.image_bytes(id).expect("image"),
                    thumbnail_format: "jpeg".into(),
                    thumbnail: real.thumbnail(id).expect("thumbnail").data,
                    label: (n % 10 == 0).then_some(ImportLabel::Real(class)),
                }
            })
            .collect();
        pool.insert_patches(&batch).expect("insert");
    }
    let insert_s = t.elapsed().as_secs_f64();
    drop(pool);
    println!(
        "100,000-patch pool (the 4,000 repeated, 10% labeled): written in {insert_s:.1} s; database {:.0} MB",
        size_mb(&path)
    );
    let t = Instant::now();
    let pool = Pool::open(&path).expect("open");
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let time = |f: &dyn Fn()| {
        let mut v = Vec::new();
        for _ in 0..11 {
            let t = Instant::now();
            f();
            v.push(t.elapsed());
        }
        median(v)
    };
    let status = time(&|| assert_eq!(pool.status().expect("status").patches, 100_000));
    let first = time(&|| assert!(page_of_thumbnails(&pool, 0) > 0));
    let deep = time(&|| assert!(page_of_thumbnails(&pool, 99_000) > 0));
    let unl = PatchFilter { label: LabelFilter::Unlabeled, group: None };
    let unlabeled_page = time(&|| assert_eq!(pool.page_patches(50_000, 100, &unl).expect("page").len(), 100));
    let labeled = time(&|| assert_eq!(pool.labeled_set().expect("labeled").len(), 10_000));
    let unlabeled = time(&|| assert_eq!(pool.unlabeled_ids().expect("unlabeled").len(), 90_000));
    println!("  open {open_ms:.1} ms; status {status:.1} ms; page of 100 thumbnails at offset 0: {first:.2} ms, at 99,000: {deep:.2} ms");
    println!("  page of 100 unlabeled patches at offset 50,000 (no thumbnails): {unlabeled_page:.1} ms");
    println!(
        "  labeled_set (10,000): {labeled:.1} ms; unlabeled_ids (90,000): {unlabeled:.1} ms (medians of 11)"
    );
}

/// Read one page of 100 patches and their thumbnails, as the grid does; returns the bytes read.
fn page_of_thumbnails(pool: &Pool, offset: u64) -> usize {
    let page = pool.page_patches(offset, 100, &PatchFilter::default()).expect("page");
    assert_eq!(page.len(), 100);
    page.iter().map(|p| pool.thumbnail(p.id).expect("thumbnail").data.len()).sum()
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (0 where there is none).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Clock ticks are 100 a second on Linux.
    (field(11) + field(12)) / 100.0
}

fn walk_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
