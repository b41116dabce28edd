//! A simulation's outputs: `results.csv` (exactly the columns `strategy,seed,round,labeled,accuracy,
//! macro_f1,macro_precision,macro_recall,seconds`), `results.json` (the same rows plus the run's settings
//! and per-round details) and the learning curve `curve.svg`. Rewritten after every round, so a run that
//! is stopped keeps what it finished.

use crate::plot::{learning_curve, CurvePoint};
use anyhow::Context;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One row of `results.csv`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultRow {
    pub strategy: String,
    pub seed: u64,
    pub round: u32,
    pub labeled: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub seconds: f64,
}

/// Per-round details kept in the JSON only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundDetail {
    pub strategy: String,
    pub seed: u64,
    pub round: u32,
    pub device: Option<String>,
    pub train_s: f64,
    pub predict_s: f64,
    pub select_s: f64,
    pub eval_s: f64,
    pub disagreements: Option<f64>,
    pub topped_up: usize,
    pub note: Option<String>,
    pub confusion: Vec<Vec<u64>>,
}

/// Everything `results.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: String,
    pub pool: String,
    pub test: String,
    pub pool_size: usize,
    pub test_size: usize,
    pub classes: Vec<String>,
    pub strategies: Vec<String>,
    pub initial: usize,
    pub budget: usize,
    pub rounds: u32,
    pub seeds: u64,
    pub device: Option<String>,
    pub config: unisal_core::learner::TrainConfig,
    pub threads: usize,
    pub finished: bool,
    pub seconds: f64,
    pub rows: Vec<ResultRow>,
    pub details: Vec<RoundDetail>,
}

/// Write `results.csv`.
pub fn write_csv(path: &Path, rows: &[ResultRow]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    for row in rows {
        w.serialize(row).with_context(|| format!("writing {}", path.display()))?;
    }
    w.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Mean, min and max accuracy over seeds per strategy and round (the `full` rows excluded), and the mean
/// full-label accuracy when present.
pub fn curves(rows: &[ResultRow]) -> (BTreeMap<String, Vec<CurvePoint>>, Option<f64>) {
    let mut groups: BTreeMap<(String, u32), Vec<&ResultRow>> = BTreeMap::new();
    let mut full = Vec::new();
    for r in rows {
        if r.strategy == "full" {
            full.push(r.accuracy);
        } else {
            groups.entry((r.strategy.clone(), r.round)).or_default().push(r);
        }
    }
    let mut out: BTreeMap<String, Vec<CurvePoint>> = BTreeMap::new();
    for ((strategy, _), group) in groups {
        let n = group.len() as f64;
        out.entry(strategy).or_default().push(CurvePoint {
            labeled: group.iter().map(|r| r.labeled as f64).sum::<f64>() / n,
            mean: group.iter().map(|r| r.accuracy).sum::<f64>() / n,
            min: group.iter().map(|r| r.accuracy).fold(f64::INFINITY, f64::min),
            max: group.iter().map(|r| r.accuracy).fold(f64::NEG_INFINITY, f64::max),
        });
    }
    let full = (!full.is_empty()).then(|| full.iter().sum::<f64>() / full.len() as f64);
    (out, full)
}

/// Write the CSV, the JSON and the plot into `dir`.
pub fn write_all(dir: &Path, report: &Report) -> anyhow::Result<()> {
    write_csv(&dir.join("results.csv"), &report.rows)?;
    let json = serde_json::to_string_pretty(report)?;
    let path = dir.join("results.json");
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    let (curves, full) = curves(&report.rows);
    if !curves.is_empty() {
        let title = format!(
            "{} pool, {} test: accuracy vs labels ({} seed{})",
            report.pool_size,
            report.test_size,
            report.seeds,
            if report.seeds == 1 { "" } else { "s" }
        );
        learning_curve(&dir.join("curve.svg"), &title, &curves, full)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(strategy: &str, seed: u64, round: u32, accuracy: f64) -> ResultRow {
        ResultRow {
            strategy: strategy.into(),
            seed,
            round,
            labeled: 10 + 5 * round as usize,
            accuracy,
            macro_f1: accuracy,
            macro_precision: accuracy,
            macro_recall: accuracy,
            seconds: 1.0,
        }
    }

    #[test]
    fn curves_average_over_seeds_and_keep_full_apart() {
        let rows =
            vec![row("a", 0, 0, 0.5), row("a", 1, 0, 0.7), row("a", 0, 1, 0.8), row("full", 0, 0, 0.9)];
        let (curves, full) = curves(&rows);
        assert_eq!(full, Some(0.9));
        let a = &curves["a"];
        assert_eq!(a.len(), 2);
        assert!((a[0].mean - 0.6).abs() < 1e-12 && a[0].min == 0.5 && a[0].max == 0.7);
        assert_eq!((a[1].labeled, a[1].mean), (15.0, 0.8));
    }

    #[test]
    fn csv_has_exactly_the_documented_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        write_csv(&path, &[row("unisal", 0, 2, 0.75)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("strategy,seed,round,labeled,accuracy,macro_f1,macro_precision,macro_recall,seconds")
        );
        assert_eq!(lines.next(), Some("unisal,0,2,20,0.75,0.75,0.75,0.75,1.0"));
    }
}
