//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `unisal-train`.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// An error from a candle tensor operation.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),

    /// A device string that is not `auto`, `cpu`, `cuda`, `cuda:N`, `metal` or `metal:N`.
    #[error("invalid device '{0}': expected auto, cpu, cuda, cuda:N, metal or metal:N")]
    InvalidDevice(String),

    /// A device whose backend was not compiled into this build or is not present on this machine.
    #[error("device {device} is not available: {reason}")]
    DeviceUnavailable { device: String, reason: String },

    /// A model configuration that cannot be built (unknown architecture, input size too small, ...).
    #[error("invalid model configuration: {0}")]
    InvalidModel(String),

    /// Weights in a safetensors file that do not fit the network.
    #[error("weights in {path} do not fit the network: {details}")]
    WeightsMismatch { path: PathBuf, details: String },

    /// Reading or writing a file failed.
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A benchmark configuration that cannot run.
    #[error("invalid benchmark configuration: {0}")]
    InvalidBench(String),

    /// Training or prediction input that does not fit (shapes, labels out of range, empty sets, bad config).
    #[error("invalid training input: {0}")]
    InvalidInput(String),

    /// A patch whose image cannot be decoded or fetched.
    #[error("patch {patch_id}: {reason}")]
    Image { patch_id: i64, reason: String },

    /// The job was cancelled through its cancel token; nothing was persisted.
    #[error("cancelled")]
    Cancelled,

    /// The device ran out of memory.
    #[error(
        "{device} ran out of memory ({details}); retry with a smaller batch or input size, or on the CPU"
    )]
    OutOfMemory { device: String, details: String },

    /// Prediction or checkpointing was asked of a learner that has not trained yet.
    #[error("no trained networks: run a training round first")]
    NotTrained,

    /// A checkpoint card that cannot be written or read.
    #[error("checkpoint card {path}: {reason}")]
    Card { path: PathBuf, reason: String },
}

/// Result alias for this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
