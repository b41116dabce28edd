//! `unisal export labels|predictions|model`: the current labels as CSV, one round's predictions as CSV,
//! one round's model (both networks' safetensors and the JSON card) into a folder. Every file is written
//! atomically by `unisal_data::export`; checkpoint files are checked against the project's SHA-256 first.

use crate::UsageError;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use unisal_core::CoreError;
use unisal_data::DataError;

/// What to export.
#[derive(Subcommand)]
pub enum What {
    /// The current labels: `patch_id,source_path,group,label,source`, one row per labeled patch.
    Labels {
        /// The project file.
        project: PathBuf,
        /// The CSV file to write.
        out: PathBuf,
    },
    /// One round's predictions: per patch the label, both networks' and the ensemble's class and
    /// confidence, the disagreement, and every class probability of A (`a:<class>`) and B (`b:<class>`).
    Predictions {
        /// The project file.
        project: PathBuf,
        /// The CSV file to write.
        out: PathBuf,
        /// The round (default: the newest round with predictions).
        #[arg(long)]
        round: Option<i64>,
    },
    /// One round's model: network A's and B's safetensors files and the JSON model card, copied into DIR
    /// after checking their SHA-256 against the project.
    Model {
        /// The project file.
        project: PathBuf,
        /// The folder to copy the files into (created if needed).
        dir: PathBuf,
        /// The round (default: the newest round with a saved model).
        #[arg(long)]
        round: Option<i64>,
    },
}

/// A refusal that is the caller's (an unknown round, a round without predictions or model, an output path
/// that is a folder) becomes a usage error, exit code 2; pool errors stay `CoreError`s so that `main` sees
/// them; anything else is an error, exit code 1.
fn usage_or(err: DataError) -> anyhow::Error {
    match err {
        DataError::Invalid { field: "round" | "output file", .. }
        | DataError::Pool(CoreError::UnknownRound(_)) => anyhow::Error::new(UsageError(err.to_string())),
        DataError::Pool(core) => anyhow::Error::new(core),
        other => anyhow::Error::new(other),
    }
}

/// Run an export.
pub fn run(what: What) -> anyhow::Result<ExitCode> {
    match what {
        What::Labels { project, out } => {
            let pool = crate::open_project(&project)?;
            let rows = unisal_data::export_labels_csv(&pool, &out).map_err(usage_or)?;
            println!("exported {rows} labels to {}", out.display());
        }
        What::Predictions { project, out, round } => {
            let pool = crate::open_project(&project)?;
            let done = unisal_data::export_predictions_csv(&pool, round, &out).map_err(usage_or)?;
            println!("exported {} predictions of round {} to {}", done.rows, done.round, out.display());
        }
        What::Model { project, dir, round } => {
            let pool = crate::open_project(&project)?;
            let files = unisal_data::export_model(&pool, round, &dir).map_err(usage_or)?;
            println!("exported {} model files to {}", files.len(), dir.display());
            for f in &files {
                println!("  {}", f.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
