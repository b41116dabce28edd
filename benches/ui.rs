//! The app's interaction benchmarks, in the real app (WebKitGTK webview through tauri-driver and
//! WebKitWebDriver, Xvfb when there is no display), on the 4,000 real patches of
//! `../shared/data/crc5/pool` (skipped with a message when absent):
//! - open the 4,000-patch project from the start screen until the first grid page has its thumbnails;
//! - label 500 tiles with the keyboard: key press to committed (`unisal:label-commit`) and to the next
//!   painted frame (`unisal:label-paint`), p50 / p99 / max, read from the webview's User Timing entries;
//! - after a tiny trained round, re-sort the review list by disagreement: change to rows shown.
//!
//! Run: `cargo bench --bench ui` (after `npm run build` in `ui/`). Numbers go to docs/performance.md.

#[path = "../tests/support/mod.rs"]
mod support;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, Locator};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::script;
use unisal_core::events::{CancelToken, NoProgress};
use unisal_core::learner::TrainConfig;
use unisal_core::round::{run_round, InitialSet, RoundSpec};
use unisal_core::Pool;
use unisal_data::{ImportOptions, LabelMode};
use unisal_train::trainer::DualTrainer;

/// Tiles in the batch and labels timed (`UNISAL_BENCH_LABELS` overrides the labels, e.g. for a quick look).
const BATCH: usize = 500;

fn labels_to_time() -> usize {
    std::env::var("UNISAL_BENCH_LABELS").ok().and_then(|v| v.parse().ok()).unwrap_or(BATCH).clamp(2, BATCH)
}

fn main() {
    let pool_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/crc5/pool");
    if !pool_dir.is_dir() {
        println!("SKIPPED: {} is absent", pool_dir.display());
        return;
    }
    let Some(run) = support::Harness::start() else { return };
    let project = run.home.path().join("crc5.unisal");
    let t = Instant::now();
    build_project(&project, &pool_dir);
    println!(
        "setup: imported 4,000 patches and drew a batch of {BATCH} in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let app = env!("CARGO_BIN_EXE_unisal-studio");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        let client = run.connect(app, &[]).await;
        let result = open_and_label(&client, &project).await;
        let _ = client.close().await;
        result.expect("WebDriver commands");
    });

    let t = Instant::now();
    tiny_round(&project);
    println!("setup: a tiny trained round predicted the 4,000 patches in {:.1} s", t.elapsed().as_secs_f64());
    runtime.block_on(async {
        let client = run.connect(app, &[project.display().to_string()]).await;
        let result = review_sort(&client).await;
        let _ = client.close().await;
        result.expect("WebDriver commands");
    });
}

fn build_project(project: &Path, pool_dir: &Path) {
    let mut pool = Pool::create(project).expect("a new project");
    // The folder names become classes; the labels are kept hidden (oracle), so every patch is unlabeled.
    let options = ImportOptions { labels: LabelMode::Folders, oracle: true, ..ImportOptions::default() };
    let report =
        unisal_data::import(&mut pool, &[pool_dir.to_path_buf()], &options, &NoProgress, &CancelToken::new())
            .expect("importing crc5");
    assert_eq!(report.imported, 4000, "{report:?}");
    let spec = RoundSpec {
        strategy: "random".into(),
        budget: BATCH,
        config: TrainConfig::preset("cpu-small").unwrap(),
        seed: 0,
        initial: InitialSet::Random(BATCH),
    };
    run_round(&mut pool, &mut DualTrainer::new(), &spec, &NoProgress, &CancelToken::new())
        .expect("the initial draw");
}

fn tiny_round(project: &Path) {
    let mut pool = Pool::open(project).expect("the project");
    let mut config = TrainConfig::preset("cpu-small").unwrap();
    config.set_input_size(32);
    config.iterations = Some(2);
    config.device = "cpu".into();
    let spec = RoundSpec {
        strategy: "unisal".into(),
        budget: 40,
        config,
        seed: 0,
        initial: InitialSet::AlreadyLabeled,
    };
    run_round(&mut pool, &mut DualTrainer::new(), &spec, &NoProgress, &CancelToken::new())
        .expect("a tiny round");
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

async fn open_and_label(client: &Client, project: &Path) -> Result<(), fantoccini::error::CmdError> {
    let path = client
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css("[data-testid='project-path']"))
        .await?;
    path.send_keys(&project.display().to_string()).await?;
    // In the page: click Open, then poll each frame until every tile in view shows its thumbnail.
    let open_ms = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const t0 = performance.now();
             document.querySelector(\"[data-testid='open-project']\").click();
             let tDom = null;
             (function poll() {
               const tiles = [...document.querySelectorAll(\"[data-testid='query-tile']\")];
               if (tiles.length > 0 && tDom === null) tDom = performance.now() - t0;
               const inView = tiles.filter(t => t.getBoundingClientRect().top < window.innerHeight);
               const imgs = inView.map(t => t.querySelector('img'));
               if (inView.length > 0 && imgs.every(i => i && i.complete && i.naturalWidth > 0)) {
                 done({ painted_ms: performance.now() - t0, tiles_ms: tDom, in_view: inView.length, tiles: tiles.length });
               } else if (performance.now() - t0 > 30000) done(null);
               else requestAnimationFrame(poll);
             })();",
            vec![],
        )
        .await?;
    println!("open 4,000-patch project -> first grid page painted with its thumbnails: {open_ms}");

    println!("IPC round trip on the label tab: {}", ipc_probe(client).await?);

    let first = client.find(Locator::Css("[data-testid='query-tile']")).await?;
    first.click().await?;
    // One DOM-change census of a single label: how many nodes a label touches.
    script(
        client,
        "window.__census = { records: 0, nodes: new Set() };
         window.__censusObserver = new MutationObserver(ms => { for (const m of ms) {
           window.__census.records++; window.__census.nodes.add(m.target); } });
         window.__censusObserver.observe(document.body,
           { subtree: true, childList: true, attributes: true, characterData: true });",
    )
    .await;
    let k = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: '1' })
        .then(KeyAction::Up { value: '1' });
    client.perform_actions(k).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let census = script(
        client,
        "window.__censusObserver.disconnect();
         return [window.__census.records, window.__census.nodes.size];",
    )
    .await;
    println!("one label changed the DOM {census} (mutation records, distinct nodes)");

    // One label at a time, as a person labels: each key waits until the previous label is shown and its
    // frame painted, so the numbers are each action's own latency, not time queued behind the previous one.
    let started = Instant::now();
    let keys = ['1', '2', '3', '4', '5'];
    let labels = labels_to_time();
    for i in 1..labels {
        let k = keys[i % keys.len()];
        let actions = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: k })
            .then(KeyAction::Up { value: k });
        client.perform_actions(actions).await?;
        let want = i + 1;
        let shown = client
            .execute_async(
                &format!(
                    "const done = arguments[arguments.length - 1];
                     const t0 = performance.now();
                     (function poll() {{
                       const n = Number(document.querySelector(\"[data-testid='batch-labeled']\").textContent.replace(/,/g, ''));
                       const painted = performance.getEntriesByName('unisal:label-paint').length;
                       if (n >= {want} && painted >= {want}) done(true);
                       else if (performance.now() - t0 > 20000) done(false);
                       else requestAnimationFrame(poll);
                     }})();"
                ),
                vec![],
            )
            .await?;
        assert_eq!(shown, Value::Bool(true), "label {want} was not shown within 20 s");
    }
    let total_s = started.elapsed().as_secs_f64();
    let entries = script(
        client,
        "return ['unisal:label-commit', 'unisal:label-paint'].map(n => performance.getEntriesByName(n).map(e => e.duration));",
    )
    .await;
    let lists: Vec<Vec<f64>> = entries
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    l.as_array().map(|x| x.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    println!(
        "labeled {labels} tiles by key, one at a time (each key after the previous label's frame), in \
         {total_s:.1} s ({:.0} labels/s through WebDriver)",
        labels as f64 / total_s
    );
    for (name, list) in ["key -> committed", "key -> painted"].iter().zip(lists) {
        if list.is_empty() {
            println!("{name}: no User Timing entries (the webview lacks performance.measure with options)");
            continue;
        }
        let (p50, p99, max) = percentiles(list.clone());
        println!("{name}: n = {}, p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms", list.len());
    }
    Ok(())
}

/// Times 20 sequential `project_status` calls from the page (IPC round trip + a 0.2 ms read): median, max.
async fn ipc_probe(client: &Client) -> Result<String, fantoccini::error::CmdError> {
    let v = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             (async () => {
               const t = [];
               for (let i = 0; i < 20; i++) {
                 const t0 = performance.now();
                 await window.__TAURI_INTERNALS__.invoke('project_status');
                 t.push(performance.now() - t0);
               }
               t.sort((a, b) => a - b);
               done(`median ${t[10].toFixed(1)} ms, max ${t[19].toFixed(1)} ms`);
             })();",
            vec![],
        )
        .await?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

async fn review_sort(client: &Client) -> Result<(), fantoccini::error::CmdError> {
    let tab = client
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css("[data-testid='tab-review']"))
        .await?;
    println!("IPC round trip on the label tab (after the round): {}", ipc_probe(client).await?);
    client.find(Locator::Css("[data-testid='tab-classes']")).await?.click().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("IPC round trip on the classes tab: {}", ipc_probe(client).await?);
    tab.click().await?;
    client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("[data-testid='review-row']"))
        .await?;
    let mut times = Vec::new();
    for (i, sort) in
        ["disagreement", "confidence", "disagreement", "id", "disagreement", "confidence", "disagreement"]
            .iter()
            .enumerate()
    {
        // In the page: change the sort, then poll each frame until the first row is the new order's first.
        let js = format!(
            "const done = arguments[arguments.length - 1];
             const s = document.querySelector(\"[data-testid='review-sort']\");
             const before = [...document.querySelectorAll(\"[data-testid='review-row']\")].map(r => r.dataset.patchId).join();
             const t0 = performance.now();
             s.value = '{sort}'; s.dispatchEvent(new Event('change', {{ bubbles: true }}));
             (function poll() {{
               const now = [...document.querySelectorAll(\"[data-testid='review-row']\")].map(r => r.dataset.patchId).join();
               if (now !== before && now.length > 0) done(performance.now() - t0);
               else if (performance.now() - t0 > 10000) done(-1);
               else requestAnimationFrame(poll);
             }})();"
        );
        let ms = client.execute_async(&js, vec![]).await?.as_f64().unwrap_or(-1.0);
        println!("review re-sort {i} to {sort} over 4,000 patches: {ms:.1} ms to the new rows painted");
        if i > 0 && ms >= 0.0 {
            times.push(ms);
        }
    }
    let (p50, _, max) = percentiles(times);
    println!("review re-sort (4,000 patches, after the first): median {p50:.1} ms, max {max:.1} ms");
    Ok(())
}
