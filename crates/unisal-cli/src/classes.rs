//! `unisal classes PROJECT list|add|rename|color|move|hotkey`.

use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use unisal_core::pool::Class;

/// Arguments of `unisal classes`.
#[derive(clap::Args)]
pub struct Args {
    /// The project file.
    project: PathBuf,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// List the classes in order.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Add a class at the end.
    Add {
        /// Its name.
        name: String,
        /// Its colour, #rrggbb (default: the next palette colour).
        #[arg(long)]
        color: Option<String>,
        /// Its hotkey (default: the next free digit).
        #[arg(long)]
        hotkey: Option<String>,
    },
    /// Rename a class (labels keep pointing at it).
    Rename {
        /// Current name.
        old: String,
        /// New name.
        new: String,
    },
    /// Change a class's colour.
    Color {
        /// The class.
        name: String,
        /// The colour, #rrggbb.
        color: String,
    },
    /// Move a class to a 1-based position in the list.
    Move {
        /// The class.
        name: String,
        /// New position, 1 = first.
        position: usize,
    },
    /// Set a class's hotkey, or remove it with --clear.
    Hotkey {
        /// The class.
        name: String,
        /// The key.
        key: Option<String>,
        /// Remove the hotkey.
        #[arg(long, conflicts_with = "key")]
        clear: bool,
    },
}

fn print(classes: &[Class]) {
    for c in classes {
        let key = c.hotkey.as_deref().map(|k| format!(" [{k}]")).unwrap_or_default();
        println!("{:>3}. {} {}{key}", c.position + 1, c.name, c.color);
    }
}

/// Run a class action; prints the class list afterwards.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut pool = crate::open_project(&args.project)?;
    match args.action {
        Action::List { json } => {
            let classes = pool.classes().context("listing classes")?;
            if json {
                println!("{}", serde_json::to_string(&classes).context("writing JSON")?);
                return Ok(ExitCode::SUCCESS);
            }
        }
        Action::Add { name, color, hotkey } => {
            pool.add_class(&name, color.as_deref(), hotkey.as_deref())
                .with_context(|| format!("adding class {name:?}"))?;
        }
        Action::Rename { old, new } => {
            let c = pool.require_class(&old)?;
            pool.rename_class(c.id, &new).with_context(|| format!("renaming class {old:?}"))?;
        }
        Action::Color { name, color } => {
            let c = pool.require_class(&name)?;
            pool.set_class_color(c.id, &color).with_context(|| format!("recolouring class {name:?}"))?;
        }
        Action::Move { name, position } => {
            if position == 0 {
                return Err(crate::UsageError("positions start at 1".into()).into());
            }
            let c = pool.require_class(&name)?;
            pool.move_class(c.id, position - 1).with_context(|| format!("moving class {name:?}"))?;
        }
        Action::Hotkey { name, key, clear } => {
            if key.is_none() && !clear {
                return Err(crate::UsageError("give a key, or --clear to remove it".into()).into());
            }
            let c = pool.require_class(&name)?;
            pool.set_class_hotkey(c.id, key.as_deref())
                .with_context(|| format!("setting the hotkey of {name:?}"))?;
        }
    }
    print(&pool.classes().context("listing classes")?);
    Ok(ExitCode::SUCCESS)
}
