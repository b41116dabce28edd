//! unisal-core: domain types, the SQLite pool, query strategies, the round loop and job events.
//!
//! Invariant: this crate knows nothing of candle, Tauri or image decoding; its only IO is SQLite.

pub mod error;
pub mod events;
pub mod learner;
pub mod pool;
pub mod round;
pub mod selection;

pub use error::{CoreError, Result};
pub use pool::Pool;
