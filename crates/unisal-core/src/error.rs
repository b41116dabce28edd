//! The one error type of unisal-core.

use std::path::PathBuf;

/// Everything that can go wrong in unisal-core.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// An SQLite error, with what was being done.
    #[error("database error while {context}: {source}")]
    Sqlite {
        /// What the pool was doing.
        context: String,
        /// The underlying SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file exists but is not a UniSAL project.
    #[error("{path} is not a UniSAL project: {reason}")]
    NotAProject {
        /// The file that was opened.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// The project was written by a newer UniSAL Studio.
    #[error("{path} has schema version {found}, newer than this program supports ({supported}): update UniSAL Studio")]
    NewerSchema {
        /// The file that was opened.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// `Pool::create` on a path that already exists.
    #[error("{0} already exists: open it instead, or choose a new file name")]
    AlreadyExists(PathBuf),
    /// `Pool::open` on a path that does not exist.
    #[error("{0} does not exist")]
    NotFound(PathBuf),
    /// A class name that is not in the project.
    #[error("unknown class {0:?}")]
    UnknownClass(String),
    /// A class id that is not in the project.
    #[error("unknown class id {0}")]
    UnknownClassId(i64),
    /// A patch id that is not in the project.
    #[error("unknown patch id {0}")]
    UnknownPatch(i64),
    /// A round number that is not in the project.
    #[error("unknown round {0}")]
    UnknownRound(i64),
    /// A class name that is already taken.
    #[error("a class named {0:?} already exists")]
    ClassExists(String),
    /// A hotkey that another class already uses.
    #[error("hotkey {hotkey:?} is already used by class {class:?}")]
    HotkeyTaken {
        /// The hotkey.
        hotkey: String,
        /// The class that has it.
        class: String,
    },
    /// A value given by the caller that is not acceptable (field named in the message).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field or argument.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing to undo.
    #[error("nothing to undo{0}")]
    NothingToUndo(String),
    /// A round's learner (training, prediction or checkpoint) failed; the round was recorded as failed.
    #[error("round {round} failed while {stage}: {message}")]
    Learner {
        /// The round number.
        round: i64,
        /// What the round was doing.
        stage: &'static str,
        /// The learner's error.
        message: String,
    },
    /// A job was cancelled by the user; nothing but a record of the cancellation was stored.
    #[error("cancelled{0}")]
    Cancelled(String),
}

/// Result alias of unisal-core.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Attach context to an SQLite result.
pub(crate) trait SqlContext<T> {
    /// Turn an SQLite error into [`CoreError::Sqlite`] with `context`.
    fn ctx(self, context: &str) -> Result<T>;
}

impl<T> SqlContext<T> for std::result::Result<T, rusqlite::Error> {
    fn ctx(self, context: &str) -> Result<T> {
        self.map_err(|source| CoreError::Sqlite { context: context.to_string(), source })
    }
}
