//! unisal-core: domain types, the SQLite pool, query strategies, the round loop and job events.
//!
//! Invariant: this crate knows nothing of candle, Tauri or image decoding; its only IO is SQLite.

pub mod events;
