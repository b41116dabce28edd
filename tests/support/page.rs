//! Page helpers of the labeling WebDriver test (`tests/webdriver_label.rs`): clicks, key presses, form values,
//! element texts, the batch tiles and class buttons as the page shows them, screenshots.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, Locator};
use serde_json::Value;

use super::{script, wait_until};

/// A WebDriver command's result.
pub type Cmd<T> = Result<T, fantoccini::error::CmdError>;

pub async fn click(client: &Client, css: &str) -> Cmd<()> {
    let element = client.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css(css)).await?;
    element.click().await.inspect_err(|e| println!("clicking {css}: {e}"))
}

pub async fn text(client: &Client, testid: &str) -> String {
    let v = script(
        client,
        &format!("const e = document.querySelector(\"[data-testid='{testid}']\"); return e ? e.textContent : null;"),
    )
    .await;
    v.as_str().unwrap_or_default().trim().replace(',', "")
}

/// Waits until the element with `testid` shows exactly `want`.
pub async fn wait_text(client: &Client, testid: &str, want: &str) {
    wait_until(client, &format!("{testid} = {want}"), Duration::from_secs(20), || async {
        (text(client, testid).await == want).then_some(Value::Null)
    })
    .await;
}

/// Presses keys as the user would (WebDriver key actions): `keys` go down in order and up in reverse.
pub async fn press(client: &Client, keys: &[char]) -> Cmd<()> {
    let mut actions = KeyActions::new("keyboard".into());
    for &k in keys {
        actions = actions.then(KeyAction::Down { value: k });
    }
    for &k in keys.iter().rev() {
        actions = actions.then(KeyAction::Up { value: k });
    }
    client.perform_actions(actions).await
}

pub async fn set_value(client: &Client, testid: &str, value: &str) -> Cmd<()> {
    let input = client.find(Locator::Css(&format!("[data-testid='{testid}']"))).await?;
    let tag = input.tag_name().await?;
    if tag.eq_ignore_ascii_case("select") {
        // WebKitWebDriver cannot click <option>s; choose as the keyboard would, then tell the page.
        let js = format!(
            "const s = document.querySelector(\"[data-testid='{testid}']\");
             if (![...s.options].some(o => o.value === '{value}' && !o.disabled)) return false;
             s.value = '{value}'; s.dispatchEvent(new Event('change', {{ bubbles: true }})); return true;"
        );
        let chosen = script(client, &js).await;
        assert_eq!(chosen, Value::Bool(true), "{testid} has no enabled option {value}");
        Ok(())
    } else {
        input.clear().await.inspect_err(|e| println!("clearing {testid}: {e}"))?;
        input.send_keys(value).await.inspect_err(|e| println!("typing into {testid}: {e}"))
    }
}

pub async fn screenshot(client: &Client, name: &str) -> Cmd<()> {
    if let Some(dir) = std::env::var_os("UNISAL_SCREENSHOT_DIR") {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let path = PathBuf::from(dir).join(format!("{name}.png"));
        std::fs::write(&path, client.screenshot().await?).expect("writing a screenshot");
        println!("screenshot written to {}", path.display());
    }
    Ok(())
}

/// The batch tiles: (patch id, label or None) in grid order.
pub async fn tiles(client: &Client) -> Vec<(i64, Option<i64>)> {
    let v = script(
        client,
        "return [...document.querySelectorAll(\"[data-testid='query-tile']\")]
           .map(t => [Number(t.dataset.patchId), t.dataset.label === '' ? null : Number(t.dataset.label)]);",
    )
    .await;
    v.as_array()
        .map(|a| a.iter().map(|p| (p[0].as_i64().unwrap_or(-1), p[1].as_i64())).collect())
        .unwrap_or_default()
}

/// The id of the class button named `name`.
pub async fn class_id(client: &Client, name: &str) -> i64 {
    let v = script(
        client,
        &format!("const b = document.querySelector(\"[data-testid='class-button'][data-class-name='{name}']\"); return b ? Number(b.dataset.classId) : null;"),
    )
    .await;
    v.as_i64().unwrap_or_else(|| panic!("no class button named {name}"))
}
