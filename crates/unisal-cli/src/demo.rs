//! `unisal demo [DIR]`: build (or reopen) `DIR/demo.unisal` from the bundled Kather 2016 tiles.

use crate::progress::{cancel_on_ctrl_c, CliProgress};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use unisal_data::demo::{bundled_assets_dir, open_or_build_demo};

/// Arguments of `unisal demo`.
#[derive(clap::Args)]
pub struct Args {
    /// The folder for `demo.unisal` (default: the current folder).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The demo tiles (class sub-folders); default: `$UNISAL_DEMO_ASSETS`, else this build's `assets/demo`.
    #[arg(long)]
    assets: Option<PathBuf>,
    /// Print one JSON object: {"project", "imported", "duplicates", "failed", "cancelled"} (zeros when reopened).
    #[arg(long)]
    json: bool,
}

/// Build or reopen the demo project and print its status.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let assets = args
        .assets
        .or_else(|| std::env::var_os("UNISAL_DEMO_ASSETS").map(PathBuf::from))
        .unwrap_or_else(bundled_assets_dir);
    let progress = CliProgress::new();
    let cancel = cancel_on_ctrl_c();
    let (pool, report) = open_or_build_demo(&assets, &args.dir, &progress, &cancel)
        .with_context(|| format!("building the demo project in {}", args.dir.display()))?;
    progress.finish();
    let project = pool.path().to_path_buf();
    drop(pool);
    let report = report.unwrap_or_default();
    if args.json {
        for note in &report.notes {
            crate::progress::say(format_args!("note: {note}"));
        }
        let value = serde_json::json!({
            "project": project.display().to_string(),
            "imported": report.imported,
            "duplicates": report.duplicates,
            "failed": report.failed,
            "cancelled": report.cancelled,
        });
        println!("{}", serde_json::to_string(&value).context("writing JSON")?);
    } else {
        if report.imported > 0 || !report.failed.is_empty() {
            crate::import::print_report(&report, false)?;
        }
        println!("demo project: {}", project.display());
        crate::status::run(&project, false)?;
    }
    Ok(crate::import::exit_code(&report))
}
