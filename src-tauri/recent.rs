//! The recent-projects list: a small JSON file in the user's config folder, newest first, at most
//! [`MAX_RECENT`] entries. A corrupt file is reported (naming it) and never overwritten.

use crate::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How many projects the list keeps.
pub const MAX_RECENT: usize = 10;

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentEntry {
    /// Absolute path of the project file.
    pub path: PathBuf,
    /// When it was last opened, Unix milliseconds.
    pub opened_at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RecentFile {
    projects: Vec<RecentEntry>,
}

/// Reads the list; a missing file is an empty list.
pub fn load(file: &Path) -> AppResult<Vec<RecentEntry>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(AppError::Io { action: "reading", path: file.to_path_buf(), source }),
    };
    let parsed: RecentFile = serde_json::from_str(&text).map_err(|e| AppError::Invalid {
        field: "recent-projects file",
        reason: format!("{} is not a valid list ({e}); delete it to start a new one", file.display()),
    })?;
    Ok(parsed.projects)
}

/// Puts `project` first (opened at `now_ms`), dropping an older entry for it and trimming the list.
pub fn touch(file: &Path, project: &Path, now_ms: i64) -> AppResult<Vec<RecentEntry>> {
    let mut entries = load(file)?;
    entries.retain(|e| e.path != project);
    entries.insert(0, RecentEntry { path: project.to_path_buf(), opened_at: now_ms });
    entries.truncate(MAX_RECENT);
    save(file, &entries)?;
    Ok(entries)
}

fn save(file: &Path, entries: &[RecentEntry]) -> AppResult<()> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| AppError::Io { action, path, source }
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let body = serde_json::to_string_pretty(&RecentFile { projects: entries.to_vec() })
        .map_err(|e| AppError::Invalid { field: "recent-projects list", reason: e.to_string() })?;
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, body).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, file).map_err(io("replacing", file))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_without_duplicates_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config/recent.json");
        assert!(load(&file).unwrap().is_empty());
        for i in 0..12 {
            touch(&file, Path::new(&format!("/p/{i}.unisal")), i).unwrap();
        }
        let list = touch(&file, Path::new("/p/5.unisal"), 100).unwrap();
        assert_eq!(list.len(), MAX_RECENT);
        assert_eq!(list[0], RecentEntry { path: "/p/5.unisal".into(), opened_at: 100 });
        assert_eq!(list[1].path, PathBuf::from("/p/11.unisal"));
        assert_eq!(list.iter().filter(|e| e.path == Path::new("/p/5.unisal")).count(), 1);
        assert_eq!(load(&file).unwrap(), list);
    }

    #[test]
    fn a_corrupt_file_is_named_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("recent.json");
        std::fs::write(&file, "{not json").unwrap();
        let err = touch(&file, Path::new("/p/a.unisal"), 1).unwrap_err().to_string();
        assert!(err.contains("recent.json"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "{not json");
    }
}
