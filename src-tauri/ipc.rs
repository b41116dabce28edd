//! The IPC types: the only values serialized for the UI (camelCase on the wire; mirrored in
//! `ui/src/lib/types.ts`). Each is built from a library type here, so the libraries stay UI-agnostic.

use serde::{Deserialize, Serialize};
use std::path::Path;
use unisal_core::pool::{LabelFilter, PatchFilter, PatchSummary, PoolStatus};

/// A class with its number of labeled patches.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassInfo {
    pub id: i64,
    pub name: String,
    pub color: String,
    pub hotkey: Option<String>,
    pub count: u64,
}

/// The open project and its counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStatus {
    pub path: String,
    pub name: String,
    pub patches: u64,
    pub labeled: u64,
    pub unlabeled: u64,
    pub rounds: u64,
    pub classes: Vec<ClassInfo>,
    /// Part of every image address of this opening (see `AppState::set_project`).
    pub image_key: u64,
}

impl ProjectStatus {
    /// Builds the status of the project at `path`, opened under `image_key`, from the pool's counts.
    pub fn new(path: &Path, status: PoolStatus, image_key: u64) -> Self {
        ProjectStatus {
            path: path.display().to_string(),
            name: project_name(path),
            patches: status.patches,
            labeled: status.labeled,
            unlabeled: status.unlabeled,
            rounds: status.rounds,
            classes: status
                .classes
                .into_iter()
                .map(|(c, count)| ClassInfo {
                    id: c.id,
                    name: c.name,
                    color: c.color,
                    hotkey: c.hotkey,
                    count,
                })
                .collect(),
            image_key,
        }
    }
}

/// The name shown for a project: its file name without the extension.
pub fn project_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// One tile of the grid.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchTile {
    pub id: i64,
    pub width: u32,
    pub height: u32,
    pub label: Option<i64>,
    pub source: String,
    pub group: Option<String>,
}

impl From<PatchSummary> for PatchTile {
    fn from(p: PatchSummary) -> Self {
        PatchTile {
            id: p.id,
            width: p.width,
            height: p.height,
            label: p.label,
            source: p.source_path,
            group: p.group,
        }
    }
}

/// A page of tiles and the number of patches matching the filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchPage {
    pub offset: u64,
    pub total: u64,
    pub items: Vec<PatchTile>,
}

/// Which patches the grid lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GridFilter {
    All,
    Labeled,
    Unlabeled,
}

impl GridFilter {
    /// The pool filter for this choice.
    pub fn to_filter(self) -> PatchFilter {
        let label = match self {
            GridFilter::All => LabelFilter::Any,
            GridFilter::Labeled => LabelFilter::Labeled,
            GridFilter::Unlabeled => LabelFilter::Unlabeled,
        };
        PatchFilter { label, group: None }
    }
}

/// How an import assigns labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelsMode {
    /// Class sub-folder names become real labels.
    Folders,
    /// Everything is imported unlabeled.
    None,
}

/// A progress event of a running import (event `import-progress`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportProgress {
    pub done: u64,
    pub total: Option<u64>,
    pub eta_seconds: Option<f64>,
    pub per_second: Option<f64>,
    pub current: Option<String>,
}

/// A file an import skipped, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportFailure {
    pub path: String,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub imported: u64,
    pub duplicates: u64,
    pub failed: Vec<ImportFailure>,
    pub cancelled: bool,
    pub skipped: u64,
    pub notes: Vec<String>,
    pub seconds: f64,
}

/// The end of an import (event `import-finished`): its report, or the error that stopped it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportFinished {
    pub report: Option<ImportReport>,
    pub error: Option<serde_json::Value>,
}

/// An entry of the recent-projects list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentProject {
    pub path: String,
    pub name: String,
    pub opened_at: i64,
    pub exists: bool,
}

/// What a label action did, and the project's counts after it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelOutcome {
    pub patch_id: i64,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub status: ProjectStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_modes_parse_from_the_ui_spelling() {
        let f: GridFilter = serde_json::from_str("\"unlabeled\"").unwrap();
        assert_eq!(f.to_filter().label, LabelFilter::Unlabeled);
        assert!(serde_json::from_str::<GridFilter>("\"Unlabeled\"").is_err());
        let m: LabelsMode = serde_json::from_str("\"folders\"").unwrap();
        assert_eq!(m, LabelsMode::Folders);
    }

    #[test]
    fn status_is_camel_case_with_class_counts() {
        let s = ProjectStatus {
            path: "/p/colon.unisal".into(),
            name: project_name(Path::new("/p/colon.unisal")),
            patches: 3,
            labeled: 1,
            unlabeled: 2,
            rounds: 0,
            classes: vec![ClassInfo {
                id: 1,
                name: "TUMOR".into(),
                color: "#aa0000".into(),
                hotkey: None,
                count: 1,
            }],
            image_key: 3,
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["name"], "colon");
        assert_eq!(v["classes"][0]["count"], 1);
        assert_eq!(v["imageKey"], 3);
        let p = ImportProgress {
            done: 1,
            total: Some(2),
            eta_seconds: Some(0.5),
            per_second: None,
            current: None,
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["etaSeconds"], 0.5);
        assert!(v.get("eta_seconds").is_none());
    }
}
