//! The app's one error type. Every command returns it; the UI receives it as `{code, message}`.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use std::path::PathBuf;
use unisal_core::CoreError;

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A command that needs an open project was called without one.
    #[error("no project is open")]
    NoProject,
    /// A background job (named) is running and the action must wait for it.
    #[error("{0} is running: wait for it to finish or cancel it")]
    Busy(&'static str),
    /// A value from the UI that is not acceptable; `field` names it.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The argument.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The pool refused or failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Reading patches from disk failed as a whole (per-file problems go into the import report instead).
    #[error(transparent)]
    Data(#[from] unisal_data::DataError),
    /// A file of the app's own (recent-projects list, demo folder) could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The bundled demo patches were not found.
    #[error("the demo patches were not found (looked in: {0})")]
    DemoMissing(String),
    /// Tauri itself failed (paths, events).
    #[error("{0}")]
    Tauri(#[from] tauri::Error),
}

impl AppError {
    /// A stable, machine-readable code for the UI.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::NoProject => "no_project",
            AppError::Busy(_) => "busy",
            AppError::Invalid { .. } => "invalid_input",
            AppError::Core(e) => match e {
                CoreError::NotFound(_) => "not_found",
                CoreError::NotAProject { .. } => "not_a_project",
                CoreError::AlreadyExists(_) => "already_exists",
                CoreError::NewerSchema { .. } => "newer_schema",
                CoreError::UnknownPatch(_) => "unknown_patch",
                CoreError::Sqlite { .. } => "database",
                _ => "project",
            },
            AppError::Data(_) => "import",
            AppError::Io { .. } => "io",
            AppError::DemoMissing(_) => "demo_missing",
            AppError::Tauri(_) => "internal",
        }
    }
}

impl Serialize for AppError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("AppError", 2)?;
        s.serialize_field("code", self.code())?;
        s.serialize_field("message", &self.to_string())?;
        s.end()
    }
}

/// Result alias of the app crate.
pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_code_and_message() {
        let e = AppError::Core(CoreError::NotFound(PathBuf::from("/tmp/x.unisal")));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["code"], "not_found");
        assert_eq!(json["message"], "/tmp/x.unisal does not exist");
        let e = AppError::Invalid { field: "offset", reason: "must be >= 0".into() };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["code"], "invalid_input");
        assert_eq!(json["message"], "invalid offset: must be >= 0");
    }
}
