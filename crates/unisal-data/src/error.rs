//! The one error type of unisal-data. Per-file problems of an import are not errors: they are listed
//! in the [`crate::ImportReport`]; an error here stops the whole job.

use std::path::PathBuf;

/// What stops an import, a demo build or an export as a whole.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The pool refused a read or a write.
    #[error(transparent)]
    Pool(#[from] unisal_core::CoreError),
    /// A file or folder could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file or folder could not be written (nothing is left under its name or a temporary one).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint file differs from the SHA-256 the database recorded for it: it was not exported.
    #[error("{path} has SHA-256 {found}, but the project recorded {expected}: the file changed since its round wrote it; not exported")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The hash recorded in the project.
        expected: String,
        /// The file's hash now.
        found: String,
    },
    /// An option that cannot be honoured (named in the message).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The option or argument.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A worker thread panicked (a bug): the pool holds only the batches committed before it.
    #[error("an import worker failed: {0}")]
    Worker(String),
}

/// Result alias of unisal-data.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
