//! `unisal`: the UniSAL engine headless. One module per command; `main` parses the command line and maps
//! the outcome to the exit code: 0 all done, 1 done with per-file failures (or a failed operation),
//! 2 usage error or a project that cannot be opened, 130 cancelled with Ctrl-C.

mod bench;
mod classes;
mod demo;
mod export;
mod import;
mod label;
mod plot;
mod progress;
mod queries;
mod round;
mod simulate;
mod status;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use unisal_core::{CoreError, Pool};

/// UniSAL Studio's command-line tool: semi-supervised active learning on histopathology patches.
#[derive(Parser)]
#[command(name = "unisal", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new, empty project file (e.g. `study.unisal`).
    Init {
        /// The project file to create.
        project: PathBuf,
    },
    /// Import patches: class folders, flat folders, CSV files (`path[,label][,group]`) or single images.
    Import(import::Args),
    /// Show patch, label, class and round counts.
    Status {
        /// The project file.
        project: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List, add, rename, recolour, reorder classes, and set their hotkeys.
    Classes(classes::Args),
    /// Set, clear (`--clear`) or undo (`--undo`) the label of one patch.
    Label(label::Args),
    /// Undo the latest label change in the project.
    Undo {
        /// The project file.
        project: PathBuf,
    },
    /// Export from a project.
    #[command(subcommand)]
    Export(export::What),
    /// Build (or reopen) the demo project from the bundled CC BY 4.0 Kather 2016 tiles.
    Demo(demo::Args),
    /// Run one active-learning round: train the pair, predict the pool, choose the next query batch.
    Round(round::Args),
    /// Show the current query batch with both networks' predictions and their disagreement.
    Queries(queries::Args),
    /// Simulate the active-learning loop with an oracle, strategy against strategy; CSV, JSON and a plot.
    Simulate(simulate::Args),
    /// Training / inference images/s on random data (`unisal bench train|infer`; twin: scripts/torch_bench.py).
    #[command(subcommand)]
    Bench(bench::Args),
}

/// An error that is the caller's: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Open an existing project, as a usage error (exit 2) when it cannot be opened.
pub fn open_project(path: &std::path::Path) -> anyhow::Result<Pool> {
    Pool::open(path).map_err(|e| {
        let hint = if matches!(e, CoreError::NotFound(_)) { " (create it with `unisal init`)" } else { "" };
        anyhow::Error::new(UsageError(format!("cannot open the project: {e}{hint}")))
    })
}

fn is_usage(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.downcast_ref::<UsageError>().is_some()
            || matches!(
                cause.downcast_ref::<CoreError>(),
                Some(
                    CoreError::NotAProject { .. }
                        | CoreError::NewerSchema { .. }
                        | CoreError::NotFound(_)
                        | CoreError::AlreadyExists(_)
                        | CoreError::UnknownClass(_)
                        | CoreError::UnknownClassId(_)
                        | CoreError::UnknownPatch(_)
                        | CoreError::ClassExists(_)
                        | CoreError::HotkeyTaken { .. }
                        | CoreError::Invalid { .. }
                )
            )
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init { project } => {
            Pool::create(&project).map_err(|e| UsageError(format!("cannot create the project: {e}")))?;
            println!("created {}", project.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(args) => import::run(args),
        Command::Status { project, json } => status::run(&project, json),
        Command::Classes(args) => classes::run(args),
        Command::Label(args) => label::run(args),
        Command::Undo { project } => label::undo_last(&project),
        Command::Export(what) => export::run(what),
        Command::Demo(args) => demo::run(args),
        Command::Round(args) => round::run(args),
        Command::Queries(args) => queries::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Bench(args) => bench::run(args),
    }
}

fn main() -> ExitCode {
    unisal_train::memory::tune_allocator();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            progress::say(format_args!("error: {err:#}"));
            ExitCode::from(if is_usage(&err) { 2 } else { 1 })
        }
    }
}
