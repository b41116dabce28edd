//! `unisal import PROJECT PATH... [--labels auto|folders|csv|none] [--oracle] [--json]`.

use crate::progress::{cancel_on_ctrl_c, CliProgress};
use anyhow::Context;
use clap::ValueEnum;
use std::path::PathBuf;
use std::process::ExitCode;
use unisal_data::{import, ImportOptions, ImportReport, LabelMode};

/// Where labels come from.
#[derive(Clone, Copy, ValueEnum)]
pub enum Labels {
    /// Class sub-folders for folders, the label column for CSV files.
    Auto,
    /// Labels from class sub-folder names.
    Folders,
    /// Labels from a CSV (a CSV path, or `labels.csv` inside a folder).
    Csv,
    /// Import everything unlabeled.
    None,
}

/// Arguments of `unisal import`.
#[derive(clap::Args)]
pub struct Args {
    /// The project file (create it first with `unisal init`).
    project: PathBuf,
    /// Folders, CSV files or images to import.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Where labels come from.
    #[arg(long, value_enum, default_value = "auto")]
    labels: Labels,
    /// Keep the labels as hidden oracle labels (for `simulate`), not as training labels.
    #[arg(long)]
    oracle: bool,
    /// Decoding threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Patches written per transaction.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch_size: u64,
    /// Print one JSON object: {"imported", "duplicates", "failed": [{"path", "reason"}], "cancelled"}.
    #[arg(long)]
    json: bool,
}

/// Run the import; exit 0 when every file landed (or was a duplicate), 1 with per-file failures,
/// 130 when cancelled.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut pool = crate::open_project(&args.project)?;
    let options = ImportOptions {
        labels: match args.labels {
            Labels::Auto => LabelMode::Auto,
            Labels::Folders => LabelMode::Folders,
            Labels::Csv => LabelMode::Csv,
            Labels::None => LabelMode::None,
        },
        oracle: args.oracle,
        threads: args.threads,
        batch_size: args.batch_size as usize,
        ..ImportOptions::default()
    };
    let cancel = cancel_on_ctrl_c();
    let progress = CliProgress::new();
    let report = import(&mut pool, &args.paths, &options, &progress, &cancel)
        .with_context(|| format!("importing into {}", args.project.display()))?;
    progress.finish();
    print_report(&report, args.json)?;
    Ok(exit_code(&report))
}

/// The exit code of an import report.
pub fn exit_code(report: &ImportReport) -> ExitCode {
    if report.cancelled {
        ExitCode::from(130)
    } else if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Print a report: JSON on stdout, or words; notes go to stderr either way.
pub fn print_report(report: &ImportReport, json: bool) -> anyhow::Result<()> {
    for note in &report.notes {
        crate::progress::say(format_args!("note: {note}"));
    }
    if !report.classes_created.is_empty() {
        crate::progress::say(format_args!(
            "note: classes created from the labels: {}",
            report.classes_created.join(", ")
        ));
    }
    if json {
        let value = serde_json::json!({
            "imported": report.imported,
            "duplicates": report.duplicates,
            "failed": report.failed,
            "cancelled": report.cancelled,
        });
        println!("{}", serde_json::to_string(&value).context("writing JSON")?);
        return Ok(());
    }
    println!(
        "imported {}, duplicates {}, failed {}",
        report.imported,
        report.duplicates,
        report.failed.len()
    );
    for f in &report.failed {
        println!("  failed: {}: {}", f.path, f.reason);
    }
    if report.cancelled {
        println!("cancelled: the patches imported so far are kept; run the same import again to finish it");
    }
    Ok(())
}
