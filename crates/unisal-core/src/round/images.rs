//! [`PoolImages`]: the pool as a learner's [`ImageSource`], on its own connection so that the learner's
//! worker threads can read image bytes while the round's connection stays with the caller.

use crate::error::Result;
use crate::learner::{ImageSource, LearnerError};
use crate::pool::Pool;
use std::path::Path;
use std::sync::Mutex;

/// Encoded image bytes by patch id, read from a project file (thread-safe: one connection behind a mutex).
#[derive(Debug)]
pub struct PoolImages {
    pool: Mutex<Pool>,
    offset: i64,
}

impl PoolImages {
    /// Open a reading connection on the project at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self { pool: Mutex::new(Pool::open(path)?), offset: 0 })
    }

    /// The same images under ids shifted by `offset` (`image_bytes(id)` reads patch `id - offset`): lets a
    /// second project (a simulation's test set) share a learner's id-keyed image cache with the pool's ids.
    pub fn with_offset(mut self, offset: i64) -> Self {
        self.offset = offset;
        self
    }
}

impl ImageSource for PoolImages {
    fn image_bytes(&self, patch_id: i64) -> Result<Vec<u8>, LearnerError> {
        let pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let id = patch_id - self.offset;
        pool.image_bytes(id).map_err(|e| format!("reading the image of patch {id}: {e}").into())
    }
}
