//! `unisal queries PROJECT [--round N] [--json]`: the current query batch (the latest finished round's, or
//! round N's) with both networks' predictions, the ensemble's, the disagreement and the current label.

use crate::UsageError;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use unisal_core::round::QueryItem;

/// Arguments of `unisal queries`.
#[derive(clap::Args)]
pub struct Args {
    /// The project file.
    project: PathBuf,
    /// The round whose batch to show (default: the latest finished round).
    #[arg(long)]
    round: Option<i64>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// One row of the output.
#[derive(Serialize)]
struct Row {
    rank: i64,
    patch_id: i64,
    source_path: String,
    reason: String,
    score: Option<f64>,
    pred_a: Option<String>,
    pred_b: Option<String>,
    pred: Option<String>,
    conf_a: Option<f64>,
    conf_b: Option<f64>,
    disagreement: Option<f64>,
    confidence: Option<f64>,
    label: Option<String>,
}

#[derive(Serialize)]
struct Output {
    round: i64,
    strategy: Option<String>,
    note: Option<String>,
    labeled: usize,
    queries: Vec<Row>,
}

fn max(p: &[f32]) -> f64 {
    p.iter().copied().fold(0.0f32, f32::max) as f64
}

/// Run `unisal queries`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let pool = crate::open_project(&args.project)?;
    let round = match args.round {
        Some(r) => r,
        None => pool.latest_done_round()?.ok_or_else(|| {
            UsageError(format!(
                "{} has no finished round yet: run `unisal round` first",
                args.project.display()
            ))
        })?,
    };
    let record = pool.round(round)?;
    let classes = pool.classes()?;
    let name_at = |i: u32| classes.get(i as usize).map_or_else(|| format!("#{i}"), |c| c.name.clone());
    let name_of =
        |id: i64| classes.iter().find(|c| c.id == id).map_or_else(|| format!("#{id}"), |c| c.name.clone());
    let items: Vec<QueryItem> = pool.round_queries(round)?;
    let rows: Vec<Row> = items
        .into_iter()
        .map(|q| {
            let source_path = pool.patch(q.patch_id).map(|p| p.source_path).unwrap_or_default();
            let p = q.prediction.as_ref();
            Row {
                rank: q.rank,
                patch_id: q.patch_id,
                source_path,
                reason: q.reason,
                score: q.score,
                pred_a: p.map(|p| name_at(p.pred_a)),
                pred_b: p.map(|p| name_at(p.pred_b)),
                pred: p.map(|p| name_at(p.pred)),
                conf_a: p.map(|p| max(&p.prob_a)),
                conf_b: p.map(|p| max(&p.prob_b)),
                disagreement: p.map(|p| p.disagreement),
                confidence: p.map(|p| p.confidence),
                label: q.label.map(name_of),
            }
        })
        .collect();
    let out = Output {
        round,
        strategy: record.strategy,
        note: record.note,
        labeled: rows.iter().filter(|r| r.label.is_some()).count(),
        queries: rows,
    };
    if args.json {
        println!("{}", serde_json::to_string(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "round {} ({}): {} queries, {} labeled since{}",
        out.round,
        out.strategy.as_deref().unwrap_or("?"),
        out.queries.len(),
        out.labeled,
        out.note.as_deref().map(|n| format!("; note: {n}")).unwrap_or_default()
    );
    println!(
        "{:>4} {:>7}  {:<14} {:<14} {:<14} {:>8} {:<12} path",
        "rank", "patch", "A", "B", "pair", "JSD", "label"
    );
    let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    for r in &out.queries {
        let with_conf = |name: &Option<String>, conf: Option<f64>| match (name, conf) {
            (Some(n), Some(c)) => format!("{n} {c:.2}"),
            _ => "-".into(),
        };
        println!(
            "{:>4} {:>7}  {:<14} {:<14} {:<14} {:>8} {:<12} {}",
            r.rank,
            r.patch_id,
            with_conf(&r.pred_a, r.conf_a),
            with_conf(&r.pred_b, r.conf_b),
            with_conf(&r.pred, r.confidence),
            r.disagreement.map_or("-".into(), |d| format!("{d:.4}")),
            opt(&r.label),
            r.source_path
        );
    }
    Ok(ExitCode::SUCCESS)
}
