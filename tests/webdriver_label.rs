//! End-to-end labeling in the real app (WebKitGTK webview, tauri-driver, WebKitWebDriver, Xvfb): create a
//! project from a folder of real patches, add two classes, draw the initial set, label tiles by click and
//! by key, undo, start a long round and label while it trains then cancel it, train a tiny round on the
//! CPU, label its disagreement batch, review sorted by disagreement, see results, export the labels,
//! switch the theme; then restart the app on the project and find every label still there.
//!
//! Set `UNISAL_SCREENSHOT_DIR=/path` to save a screenshot of each screen there (the README's
//! `docs/screenshots/` come from this). Set `UNISAL_SKIP_WEBDRIVER=1` to skip explicitly.

mod support;

use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::page::{class_id, click, press, screenshot, set_value, text, tiles, wait_text, Cmd};
use support::{script, wait_until};

/// Patches imported: the 24 bundled demo tiles, flat (no labels).
const PATCHES: u64 = 24;
const INITIAL: u64 = 8;

#[tokio::test]
async fn label_train_review_and_restart_in_the_real_app() {
    let Some(run) = support::Harness::start() else { return };
    let app = env!("CARGO_BIN_EXE_unisal-studio");
    let home = &run.home;
    let project = home.path().join("slides.unisal");

    let client = run.connect(app, &[]).await;
    let labels = async {
        println!("step: create a project and import");
        create_and_import(&client, home.path(), &project).await?;
        println!("step: add classes");
        add_classes(&client).await?;
        println!("step: initial round");
        initial_round(&client).await?;
        println!("step: label the batch by click and key");
        let mut labels = label_batch_by_click_and_key(&client).await?;
        println!("step: label while training, then cancel");
        label_while_training_then_cancel(&client).await?;
        println!("step: tiny round");
        tiny_round(&client).await?;
        println!("step: label the predicted batch");
        labels.extend(label_predicted_batch(&client).await?);
        println!("step: review");
        review_sorted_by_disagreement(&client).await?;
        println!("step: results and export");
        results_and_export(&client, home.path()).await?;
        println!("step: theme");
        theme(&client).await?;
        Ok::<_, fantoccini::error::CmdError>(labels)
    }
    .await;
    let _ = client.close().await;
    let labels = labels.expect("WebDriver commands in the first run");

    // A new app process on the same project file: the labels are still there.
    let client = run.connect(app, &[project.display().to_string()]).await;
    let result = restarted(&client, &labels).await;
    let _ = client.close().await;
    result.expect("WebDriver commands after the restart");
}

fn source_folder(root: &Path) -> PathBuf {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    let flat = root.join("patches");
    std::fs::create_dir_all(&flat).unwrap();
    for class in std::fs::read_dir(&demo).unwrap() {
        let class = class.unwrap().path();
        if !class.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&class).unwrap() {
            let file = file.unwrap().path();
            std::fs::copy(&file, flat.join(file.file_name().unwrap())).unwrap();
        }
    }
    flat
}

async fn create_and_import(client: &Client, home: &Path, project: &Path) -> Cmd<()> {
    let path = client
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css("[data-testid='project-path']"))
        .await?;
    path.send_keys(&project.display().to_string()).await?;
    click(client, "[data-testid='create-project']").await?;
    let folder = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("[data-testid='import-folder']"))
        .await?;
    client.find(Locator::Css("input[type='radio'][value='none']")).await?.click().await?;
    folder.send_keys(&source_folder(home).display().to_string()).await?;
    click(client, "[data-testid='start-import']").await?;
    wait_until(client, "the import report", Duration::from_secs(60), || async {
        let v = script(client, "const r = document.querySelector(\"[data-testid='import-report']\"); return r ? r.innerText : null;").await;
        v.is_string().then_some(v)
    })
    .await;
    wait_text(client, "count-total", &PATCHES.to_string()).await;
    Ok(())
}

async fn add_classes(client: &Client) -> Cmd<()> {
    click(client, "[data-testid='tab-classes']").await?;
    for name in ["Tumour", "Stroma"] {
        set_value(client, "class-add-name", name).await?;
        click(client, "[data-testid='class-add']").await?;
        wait_until(client, &format!("class {name}"), Duration::from_secs(10), || async {
            let v =
                script(client, "const l = document.querySelector(\"[data-testid='class-list']\"); return l ? l.textContent : '';")
                    .await;
            v.as_str().is_some_and(|t| t.contains(name)).then_some(v)
        })
        .await;
    }
    screenshot(client, "classes").await
}

/// Sets the training form (small CNN on the CPU, tiny) and starts a round.
async fn start_round(client: &Client, iterations: u64) -> Cmd<()> {
    click(client, "[data-testid='tab-train']").await?;
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("[data-testid='train-start']"))
        .await?;
    set_value(client, "train-device", "cpu").await?;
    set_value(client, "train-model", "small").await?;
    set_value(client, "train-size", "32").await?;
    set_value(client, "train-iterations", &iterations.to_string()).await?;
    set_value(client, "train-budget", "6").await?;
    let more = client.find(Locator::Css("[data-testid='train-initial']")).await?;
    if !more.is_displayed().await? {
        click(client, "[data-testid='train-more']").await?;
    }
    set_value(client, "train-initial", &INITIAL.to_string()).await?;
    set_value(client, "train-batch", "8").await?;
    click(client, "[data-testid='train-start']").await
}

async fn wait_result(client: &Client, want: &str, timeout: Duration) -> String {
    let v = wait_until(client, &format!("a train result with {want:?}"), timeout, || async {
        let t = text(client, "train-result").await;
        t.contains(want).then_some(Value::String(t))
    })
    .await;
    v.as_str().unwrap_or_default().to_string()
}

async fn initial_round(client: &Client) -> Cmd<()> {
    start_round(client, 5).await?;
    let result = wait_result(client, "Round 1", Duration::from_secs(60)).await;
    println!("initial draw: {result}");
    click(client, "[data-testid='tab-label']").await?;
    let n = wait_until(client, "the initial batch", Duration::from_secs(20), || async {
        let n = tiles(client).await.len() as u64;
        (n == INITIAL).then_some(Value::from(n))
    })
    .await;
    assert_eq!(n, Value::from(INITIAL));
    assert_eq!(text(client, "batch-remaining").await, INITIAL.to_string());
    Ok(())
}

/// Labels the initial batch: the first tile by click, the rest by keys 1 and 2; undoes one with Z and
/// labels it again. Returns every (patch, class) labeled.
async fn label_batch_by_click_and_key(client: &Client) -> Cmd<Vec<(i64, i64)>> {
    let tumour = class_id(client, "Tumour").await;
    let stroma = class_id(client, "Stroma").await;
    let first = tiles(client).await[0].0;
    click(client, &format!("[data-testid='query-tile'][data-patch-id='{first}']")).await?;
    click(client, &format!("[data-testid='class-button'][data-class-id='{tumour}']")).await?;
    wait_text(client, "batch-labeled", "1").await;
    assert_eq!(tiles(client).await[0], (first, Some(tumour)), "the clicked tile shows its label");
    assert_eq!(text(client, "total-labeled").await, "1");

    // Keys: the selection moves to the next unlabeled tile after each label.
    for i in 1..INITIAL {
        press(client, &[if i % 2 == 0 { '1' } else { '2' }]).await?;
        wait_text(client, "batch-labeled", &(i + 1).to_string()).await;
    }
    let labeled = tiles(client).await;
    assert!(labeled.iter().all(|(_, l)| l.is_some()), "every tile labeled: {labeled:?}");
    assert_eq!(labeled[1].1, Some(stroma), "key 2 gave the second class");

    // Z undoes the newest label; the counters follow; labeling again restores it.
    let last = labeled[(INITIAL - 1) as usize];
    press(client, &['z']).await?;
    wait_text(client, "batch-labeled", &(INITIAL - 1).to_string()).await;
    assert_eq!(text(client, "total-labeled").await, (INITIAL - 1).to_string());
    assert_eq!(text(client, "batch-remaining").await, "1");
    let tile = format!("[data-testid='query-tile'][data-patch-id='{}']", last.0);
    click(client, &tile).await?;
    press(client, &['1']).await?;
    wait_text(client, "batch-labeled", &INITIAL.to_string()).await;
    screenshot(client, "label-initial").await?;
    Ok(tiles(client).await.into_iter().map(|(p, l)| (p, l.unwrap_or(-1))).collect())
}

/// Starts a long round; while it trains, relabels a patch in the review list; then cancels it.
async fn label_while_training_then_cancel(client: &Client) -> Cmd<()> {
    start_round(client, 100_000).await?;
    let stage = wait_until(client, "the round to train", Duration::from_secs(120), || async {
        let v = script(client, "const p = document.querySelector(\"[data-testid='train-progress']\"); return p ? p.dataset.stage : null;").await;
        (v.as_str() == Some("train")).then_some(v)
    })
    .await;
    assert_eq!(stage, Value::from("train"));
    screenshot(client, "train").await?;
    assert!(!text(client, "training-pill").await.is_empty(), "the pill shows the running round");

    // Labeling goes on during training: label an unlabeled patch from the review list.
    click(client, "[data-testid='tab-review']").await?;
    set_value(client, "review-sort", "id").await?;
    let row = wait_until(client, "review rows", Duration::from_secs(20), || async {
        let v = script(client, "const r = document.querySelector(\"[data-testid='review-row'][data-label='']\"); return r ? Number(r.dataset.patchId) : null;").await;
        v.is_i64().then_some(v)
    })
    .await;
    let before = text(client, "count-labeled").await;
    let started = Instant::now();
    click(client, &format!("[data-testid='review-row'][data-patch-id='{}']", row.as_i64().unwrap())).await?;
    press(client, &['2']).await?;
    wait_until(client, "the label count to change during training", Duration::from_secs(20), || async {
        (text(client, "count-labeled").await != before).then_some(Value::Null)
    })
    .await;
    println!("labeled during training; the count changed {} ms after the key", started.elapsed().as_millis());
    press(client, &[Key::Control.into(), 'z']).await?;
    wait_text(client, "count-labeled", &before).await;

    click(client, "[data-testid='tab-train']").await?;
    click(client, "[data-testid='train-cancel']").await?;
    let result = wait_result(client, "ancel", Duration::from_secs(120)).await;
    println!("long round: {result}");
    Ok(())
}

async fn tiny_round(client: &Client) -> Cmd<()> {
    let started = Instant::now();
    start_round(client, 4).await?;
    let result = wait_result(client, "done", Duration::from_secs(300)).await;
    assert!(result.contains("Round 3"), "{result}");
    println!("tiny CPU round in {} ms: {result}", started.elapsed().as_millis());
    Ok(())
}

/// Labels the trained round's batch by key, undoes with Ctrl+Z, then labels two tiles for good; returns them.
async fn label_predicted_batch(client: &Client) -> Cmd<Vec<(i64, i64)>> {
    click(client, "[data-testid='tab-label']").await?;
    wait_until(client, "the new batch of 6", Duration::from_secs(20), || async {
        let t = tiles(client).await;
        (t.len() == 6 && t.iter().all(|(_, l)| l.is_none())).then_some(Value::Null)
    })
    .await;
    let shown =
        script(client, "return document.querySelector(\"[data-testid='query-tile']\").innerText;").await;
    let shown = shown.as_str().unwrap_or_default();
    assert!(shown.contains('%'), "a tile shows the networks' confidences: {shown}");
    screenshot(client, "label-batch").await?;
    let total: u64 = text(client, "total-labeled").await.parse().unwrap_or(0);
    let first = tiles(client).await[0].0;
    click(client, &format!("[data-testid='query-tile'][data-patch-id='{first}']")).await?;
    press(client, &['1']).await?;
    wait_text(client, "total-labeled", &(total + 1).to_string()).await;
    press(client, &[Key::Control.into(), 'z']).await?;
    wait_text(client, "total-labeled", &total.to_string()).await;
    assert_eq!(tiles(client).await[0], (first, None), "undo cleared the tile");
    // Two labels given after the round: the learning curve scores the round on them.
    let tumour = class_id(client, "Tumour").await;
    let stroma = class_id(client, "Stroma").await;
    click(client, &format!("[data-testid='query-tile'][data-patch-id='{first}']")).await?;
    press(client, &['1']).await?;
    press(client, &['2']).await?;
    wait_text(client, "total-labeled", &(total + 2).to_string()).await;
    let t = tiles(client).await;
    assert_eq!((t[0].1, t[1].1), (Some(tumour), Some(stroma)), "{t:?}");
    Ok(vec![(t[0].0, tumour), (t[1].0, stroma)])
}

async fn review_sorted_by_disagreement(client: &Client) -> Cmd<()> {
    click(client, "[data-testid='tab-review']").await?;
    set_value(client, "review-sort", "disagreement").await?;
    let desc = client.find(Locator::Css("[data-testid='review-desc']")).await?;
    if desc.prop("checked").await?.as_deref() != Some("true") {
        desc.click().await?;
    }
    let scores = wait_until(client, "rows sorted by disagreement", Duration::from_secs(20), || async {
        let v = script(client, "return [...document.querySelectorAll(\"[data-testid='review-row']\")].map(r => Number(r.dataset.disagreement));").await;
        let s: Vec<f64> = v.as_array()?.iter().filter_map(Value::as_f64).collect();
        (s.len() as u64 == PATCHES && s.windows(2).all(|w| w[0] >= w[1])).then_some(v)
    })
    .await;
    println!("review sorted by disagreement: {scores}");
    let bars = client.find_all(Locator::Css("[data-testid='histogram-bar']")).await?;
    assert!(!bars.is_empty(), "a histogram of the last round");
    screenshot(client, "review").await?;
    Ok(())
}

async fn results_and_export(client: &Client, home: &Path) -> Cmd<()> {
    click(client, "[data-testid='tab-results']").await?;
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("[data-testid='learning-curve']"))
        .await?;
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("[data-testid='network-confusion']"))
        .await?;
    screenshot(client, "results").await?;
    click(client, "[data-testid='tab-export']").await?;
    let out = home.join("labels.csv");
    set_value(client, "export-path", &out.display().to_string()).await?;
    click(client, "[data-testid='export-labels']").await?;
    wait_until(client, "the export result", Duration::from_secs(20), || async {
        text(client, "export-result").await.contains("labels.csv").then_some(Value::Null)
    })
    .await;
    let csv = std::fs::read_to_string(&out).expect("the exported labels");
    assert_eq!(csv.lines().count() as u64, INITIAL + 3, "header + one row a label:\n{csv}");
    Ok(())
}

async fn theme(client: &Client) -> Cmd<()> {
    let before = script(client, "return document.documentElement.dataset.theme;").await;
    click(client, "[data-testid='theme-toggle']").await?;
    let after = script(client, "return document.documentElement.dataset.theme;").await;
    assert_ne!(before, after, "the theme toggle switches the theme");
    assert!(after == "dark" || after == "light", "{after}");
    screenshot(client, &format!("theme-{}", after.as_str().unwrap_or("x"))).await?;
    click(client, "[data-testid='theme-toggle']").await
}

async fn restarted(client: &Client, labels: &[(i64, i64)]) -> Cmd<()> {
    wait_until(client, "the project to reopen", Duration::from_secs(60), || async {
        (text(client, "project-name").await == "slides").then_some(Value::Null)
    })
    .await;
    click(client, "[data-testid='tab-review']").await?;
    set_value(client, "review-sort", "id").await?;
    let rows = wait_until(client, "review rows after the restart", Duration::from_secs(20), || async {
        let v = script(client, "return [...document.querySelectorAll(\"[data-testid='review-row']\")].map(r => [Number(r.dataset.patchId), r.dataset.label === undefined || r.dataset.label === '' ? null : Number(r.dataset.label)]);").await;
        (v.as_array()?.len() as u64 == PATCHES).then_some(v)
    })
    .await;
    let rows: Vec<(i64, Option<i64>)> =
        rows.as_array().unwrap().iter().map(|r| (r[0].as_i64().unwrap_or(-1), r[1].as_i64())).collect();
    for &(patch, class) in labels {
        let row = rows.iter().find(|r| r.0 == patch).unwrap_or_else(|| panic!("patch {patch} missing"));
        assert_eq!(row.1, Some(class), "patch {patch}'s label after the restart");
    }
    assert_eq!(text(client, "count-labeled").await, labels.len().to_string());
    Ok(())
}
