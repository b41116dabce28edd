//! `unisal status PROJECT [--json]`.

use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;

/// Print the project's counts.
pub fn run(project: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let pool = crate::open_project(project)?;
    let s = pool.status().context("reading the project status")?;
    if json {
        let classes: serde_json::Map<String, serde_json::Value> =
            s.classes.iter().map(|(c, n)| (c.name.clone(), serde_json::Value::from(*n))).collect();
        let value = serde_json::json!({
            "patches": s.patches,
            "labeled": s.labeled,
            "unlabeled": s.unlabeled,
            "classes": classes,
            "rounds": s.rounds,
        });
        println!("{}", serde_json::to_string(&value).context("writing JSON")?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("project:   {}", project.display());
    println!("patches:   {} ({} labeled, {} unlabeled)", s.patches, s.labeled, s.unlabeled);
    if s.oracle_labeled > 0 {
        println!("oracle:    {} hidden oracle labels (simulation only)", s.oracle_labeled);
    }
    println!("rounds:    {}", s.rounds);
    println!("classes:   {}", s.classes.len());
    for (c, n) in &s.classes {
        let key = c.hotkey.as_deref().map(|k| format!(" [{k}]")).unwrap_or_default();
        println!("  {:>3}. {} {}{key}: {n}", c.position + 1, c.name, c.color);
    }
    Ok(ExitCode::SUCCESS)
}
