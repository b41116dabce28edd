//! `unisal label PROJECT PATCH_ID CLASS | --clear | --undo` and `unisal undo PROJECT`.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use unisal_core::pool::LabelChange;
use unisal_core::Pool;

/// Arguments of `unisal label`.
#[derive(clap::Args)]
pub struct Args {
    /// The project file.
    project: PathBuf,
    /// The patch id (as `status`, the app or exports show it).
    patch_id: i64,
    /// The class name.
    #[arg(required_unless_present_any = ["clear", "undo"])]
    class: Option<String>,
    /// Remove the patch's label.
    #[arg(long, conflicts_with_all = ["class", "undo"])]
    clear: bool,
    /// Undo the patch's latest label change.
    #[arg(long, conflicts_with = "class")]
    undo: bool,
}

fn name(pool: &Pool, class: Option<i64>) -> anyhow::Result<String> {
    Ok(match class {
        Some(id) => pool.class(id)?.name,
        None => "(none)".to_string(),
    })
}

fn print(pool: &Pool, change: &LabelChange) -> anyhow::Result<()> {
    println!("patch {}: {} -> {}", change.patch_id, name(pool, change.before)?, name(pool, change.after)?);
    Ok(())
}

/// Set, clear or undo one patch's label; committed before this returns.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut pool = crate::open_project(&args.project)?;
    let change = if args.clear {
        pool.clear_label(args.patch_id)
    } else if args.undo {
        pool.undo_label(args.patch_id)
    } else {
        let class = args.class.as_deref().unwrap_or_default();
        let class = pool.require_class(class)?;
        pool.set_label(args.patch_id, class.id)
    }
    .with_context(|| format!("labeling patch {}", args.patch_id))?;
    print(&pool, &change)?;
    Ok(ExitCode::SUCCESS)
}

/// Undo the project's latest label change.
pub fn undo_last(project: &Path) -> anyhow::Result<ExitCode> {
    let mut pool = crate::open_project(project)?;
    let change = pool.undo_last().context("undoing")?;
    print(&pool, &change)?;
    Ok(ExitCode::SUCCESS)
}
