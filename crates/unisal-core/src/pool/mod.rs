//! The pool: one SQLite file per project (WAL, foreign keys, migrations by `user_version`).
//!
//! All SQL of the project lives in this crate. Every write method commits before it returns. The pool
//! holds the encoded images themselves, so a project file copied to another folder or machine opens and
//! works: no path stored in it is ever needed to read an image.
//!
//! A [`Pool`] is one connection: `Send`, not `Sync`. Give each thread its own (`Pool::open` is cheap) or
//! guard one with a mutex; SQLite's WAL lets readers run beside the one writer.

mod classes;
mod curve;
mod flags;
mod labels;
mod patches;
mod review;
mod rounds;
pub mod schema;
mod types;

#[cfg(test)]
mod tests;

pub use curve::*;
pub use review::*;
pub use types::*;

use crate::error::{CoreError, Result, SqlContext};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// File extension of project files.
pub const PROJECT_EXTENSION: &str = "unisal";

/// An open project database.
#[derive(Debug)]
pub struct Pool {
    conn: Connection,
    path: PathBuf,
}

impl Pool {
    /// Create a new, empty project at `path`; refuses to overwrite an existing file.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if path.exists() {
            return Err(CoreError::AlreadyExists(path));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let mut conn = Connection::open_with_flags(&path, flags).ctx("creating the project file")?;
        conn.pragma_update(None, "application_id", schema::APPLICATION_ID).ctx("marking the project file")?;
        Self::configure(&conn)?;
        schema::migrate(&mut conn)?;
        Ok(Pool { conn, path })
    }

    /// Open an existing project, migrating it to the current schema. Refuses a file that is not a UniSAL
    /// project or was written by a newer version, without changing it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            return Err(CoreError::NotFound(path));
        }
        if path.is_dir() {
            return Err(CoreError::NotAProject { path, reason: "it is a folder".into() });
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .ctx("opening the project file")?;
        let not_project = |reason: String| CoreError::NotAProject { path: path.clone(), reason };
        let app_id: i64 = match conn.query_row("PRAGMA application_id", [], |r| r.get(0)) {
            Ok(id) => id,
            Err(e) => return Err(not_project(format!("not an SQLite database ({e})"))),
        };
        if app_id != schema::APPLICATION_ID {
            return Err(not_project(format!("SQLite application id is {app_id:#x}, not UniSAL's")));
        }
        let found = schema::version(&conn)?;
        if found > schema::current_version() {
            return Err(CoreError::NewerSchema { path, found, supported: schema::current_version() });
        }
        Self::configure(&conn)?;
        let mut conn = conn;
        schema::migrate(&mut conn)?;
        Ok(Pool { conn, path })
    }

    /// Open `path` if it exists, otherwise create it.
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<Self> {
        if path.as_ref().exists() {
            Self::open(path)
        } else {
            Self::create(path)
        }
    }

    fn configure(conn: &Connection) -> Result<()> {
        conn.busy_timeout(Duration::from_secs(10)).ctx("setting the busy timeout")?;
        let mode: String =
            conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).ctx("switching to WAL mode")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(CoreError::Invalid {
                field: "journal_mode",
                reason: format!("WAL refused ({mode})"),
            });
        }
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .ctx("setting foreign keys and synchronous mode")?;
        Ok(())
    }

    /// The project file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder holding the project file: stored relative paths (checkpoints) resolve against it.
    pub fn folder(&self) -> &Path {
        self.path.parent().unwrap_or_else(|| Path::new("."))
    }

    /// The database's schema version.
    pub fn schema_version(&self) -> Result<i64> {
        schema::version(&self.conn)
    }

    /// Apply pending migrations (none after `create`/`open`); returns how many ran.
    pub fn migrate(&mut self) -> Result<usize> {
        schema::migrate(&mut self.conn)
    }

    /// SQLite's own consistency check (`PRAGMA integrity_check` and `foreign_key_check`); returns the
    /// problems found, empty when the file is sound.
    pub fn check_integrity(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut stmt = self.conn.prepare("PRAGMA integrity_check").ctx("checking integrity")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).ctx("checking integrity")?;
        for row in rows {
            let row = row.ctx("checking integrity")?;
            if row != "ok" {
                problems.push(row);
            }
        }
        let mut stmt = self.conn.prepare("PRAGMA foreign_key_check").ctx("checking foreign keys")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(format!(
                    "foreign key violation in {} row {:?}",
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<i64>>(1)?
                ))
            })
            .ctx("checking foreign keys")?;
        for row in rows {
            problems.push(row.ctx("checking foreign keys")?);
        }
        let orphans: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM patches p WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.patch_id = p.id)
                 OR NOT EXISTS (SELECT 1 FROM thumbnails t WHERE t.patch_id = p.id)",
                [],
                |r| r.get(0),
            )
            .ctx("checking images")?;
        if orphans > 0 {
            problems.push(format!("{orphans} patches without image or thumbnail"));
        }
        Ok(problems)
    }

    /// The connection, for the other modules of this crate (rounds, predictions).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// A write transaction that takes the write lock at once (`BEGIN IMMEDIATE`). Every read-then-write change
    /// uses it: a deferred transaction that read first cannot wait for another writer (an import, a round's
    /// final write) and fails at once with "database is locked"; an immediate one waits up to the busy timeout.
    pub(crate) fn write_tx(&mut self) -> rusqlite::Result<rusqlite::Transaction<'_>> {
        self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
    }
}

/// Current time in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
