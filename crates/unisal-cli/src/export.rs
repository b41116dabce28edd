//! `unisal export labels PROJECT OUT.csv`: the current labels as CSV, written atomically.

use anyhow::Context;
use clap::Subcommand;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

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
}

/// Run an export.
pub fn run(what: What) -> anyhow::Result<ExitCode> {
    match what {
        What::Labels { project, out } => {
            let pool = crate::open_project(&project)?;
            let names: HashMap<i64, String> = pool.classes()?.into_iter().map(|c| (c.id, c.name)).collect();
            let rows = pool.current_labels()?;
            let tmp = out.with_extension("csv.partial");
            let write = || -> anyhow::Result<()> {
                let mut w = csv::Writer::from_path(&tmp)?;
                w.write_record(["patch_id", "source_path", "group", "label", "source"])?;
                for r in &rows {
                    let label = names.get(&r.class_id).map(String::as_str).unwrap_or_default();
                    let id = r.patch_id.to_string();
                    let group = r.group.as_deref().unwrap_or("");
                    w.write_record([id.as_str(), &r.source_path, group, label, r.source.as_str()])?;
                }
                w.flush()?;
                Ok(())
            };
            write().with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &out)
                .with_context(|| format!("moving {} to {}", tmp.display(), out.display()))?;
            println!("exported {} labels to {}", rows.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
