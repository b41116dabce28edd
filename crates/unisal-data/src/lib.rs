//! unisal-data: image decoding, validation, thumbnails, import into the pool, and exports out of it.
//!
//! unisal-core stores and reads bytes; this crate is where files are read and images decoded. The import
//! reads files on worker threads (hash, header check, decode, thumbnail) and writes batches to the pool
//! from one thread, each batch one transaction.

pub mod decode;
pub mod demo;
pub mod error;
pub mod export;
pub mod import;
pub mod sources;
pub mod thumbnail;

pub use decode::{decode_rgb, prepare_patch, DecodeLimits, Prepared};
pub use error::{DataError, Result};
pub use export::{export_labels_csv, export_model, export_predictions_csv, ExportedPredictions};
pub use import::{import, ImportFailure, ImportOptions, ImportReport, LabelMode};
