//! Where the app keeps its own files: the recent-projects list (config folder) and the demo project
//! (data folder), from the OS conventions (`directories`). `UNISAL_STUDIO_HOME` overrides both, for
//! tests and portable installs.

use crate::error::{AppError, AppResult};
use std::path::PathBuf;

/// The environment variable that moves the app's folders under one root.
pub const HOME_ENV: &str = "UNISAL_STUDIO_HOME";

/// The app's config and data folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppDirs {
    /// Holds `recent.json`.
    pub config: PathBuf,
    /// Holds the demo project.
    pub data: PathBuf,
}

impl AppDirs {
    /// The folders for this user (or under `UNISAL_STUDIO_HOME`).
    pub fn locate() -> AppResult<Self> {
        if let Some(root) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
            return Ok(Self::under(PathBuf::from(root)));
        }
        let dirs =
            directories::ProjectDirs::from("org", "UniSAL", "unisal-studio").ok_or(AppError::Invalid {
                field: "home folder",
                reason: format!("the user's home folder could not be determined; set {HOME_ENV}"),
            })?;
        Ok(AppDirs { config: dirs.config_dir().to_path_buf(), data: dirs.data_dir().to_path_buf() })
    }

    /// The folders under one root.
    pub fn under(root: PathBuf) -> Self {
        AppDirs { config: root.join("config"), data: root.join("data") }
    }

    /// The recent-projects file.
    pub fn recent_file(&self) -> PathBuf {
        self.config.join("recent.json")
    }
}
