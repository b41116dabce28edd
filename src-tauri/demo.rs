//! The demo project: built once from the bundled CC BY 4.0 Kather 2016 patches into the app's data
//! folder, then reopened. The patches ship as a Tauri resource (`demo/`); a development build reads
//! them from the repository's `assets/demo/`.

use crate::error::{AppError, AppResult};
use std::path::{Path, PathBuf};
use tauri::{AppHandle, Manager};
use unisal_core::events::{CancelToken, NoProgress};
use unisal_core::Pool;

/// The folder of the demo project inside the app's data folder.
pub const DEMO_FOLDER: &str = "demo";

/// The folder of demo patches: the bundled resource, else the repository's `assets/demo`.
pub fn source_folder(app: &AppHandle) -> AppResult<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(resources) = app.path().resource_dir() {
        candidates.push(resources.join("demo"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets").join("demo"));
    first_patch_folder(&candidates)
}

/// The first candidate that holds at least one class sub-folder.
pub fn first_patch_folder(candidates: &[PathBuf]) -> AppResult<PathBuf> {
    candidates
        .iter()
        .find(|c| {
            std::fs::read_dir(c).map(|entries| entries.flatten().any(|e| e.path().is_dir())).unwrap_or(false)
        })
        .cloned()
        .ok_or_else(|| {
            AppError::DemoMissing(
                candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", "),
            )
        })
}

/// Opens the demo project in `data_dir/demo/`, building it from `source` when it does not exist yet (or
/// an earlier build was interrupted).
pub fn open_or_build(source: &Path, data_dir: &Path) -> AppResult<Pool> {
    let folder = data_dir.join(DEMO_FOLDER);
    let (pool, _report) =
        unisal_data::demo::open_or_build_demo(source, &folder, &NoProgress, &CancelToken::new())?;
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_folder_with_class_folders() {
        let empty = tempfile::tempdir().unwrap();
        let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
        let missing = empty.path().join("missing");
        let found =
            first_patch_folder(&[missing.clone(), empty.path().to_path_buf(), assets.clone()]).unwrap();
        assert_eq!(found, assets);
        let err = first_patch_folder(std::slice::from_ref(&missing)).unwrap_err().to_string();
        assert!(err.contains("demo patches were not found") && err.contains("missing"), "{err}");
    }

    #[test]
    fn builds_the_demo_once_then_reopens_it() {
        let data = tempfile::tempdir().unwrap();
        let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
        let pool = open_or_build(&assets, data.path()).unwrap();
        assert_eq!(pool.status().unwrap().patches, 24);
        let path = pool.path().to_path_buf();
        assert_eq!(path, data.path().join(DEMO_FOLDER).join(unisal_data::demo::DEMO_PROJECT_NAME));
        drop(pool);
        let again = open_or_build(&assets, data.path()).unwrap();
        assert_eq!(again.path(), path);
        assert_eq!(again.status().unwrap().patches, 24);
    }
}
