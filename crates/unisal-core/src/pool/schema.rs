//! The pool's SQL schema and its migrations, applied in order by `PRAGMA user_version`.
//!
//! Migration `i` (1-based) brings a database from version `i - 1` to `i`. Each runs in one transaction
//! together with the `user_version` bump, so a crash leaves the previous version intact. Never edit a
//! migration that has shipped: append a new one.

use crate::error::{Result, SqlContext};
use rusqlite::Connection;

/// `PRAGMA application_id` of every UniSAL project ("USAL").
pub const APPLICATION_ID: i64 = 0x5553_414C;

/// The migrations, in order. The schema version of a database is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: the foundation schema.
    r#"
CREATE TABLE patches (
    id           INTEGER PRIMARY KEY,
    sha256       TEXT NOT NULL UNIQUE,          -- of the original file bytes, lowercase hex
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    source_path  TEXT NOT NULL,                 -- where it was imported from (information only)
    grp          TEXT,                          -- slide / patient / group, when known
    format       TEXT NOT NULL,                 -- format of the stored bytes: png | jpeg
    source_format TEXT NOT NULL,                -- format of the original file: png | jpeg | tiff
    note         TEXT,                          -- conversion note (16-bit, TIFF re-encoded...)
    imported_at  INTEGER NOT NULL               -- unix milliseconds
);
CREATE INDEX patches_grp ON patches(grp);

-- Kept apart from `patches` so that listing patches or thumbnails never reads the full images.
CREATE TABLE images (
    patch_id INTEGER PRIMARY KEY REFERENCES patches(id) ON DELETE CASCADE,
    data     BLOB NOT NULL
);
CREATE TABLE thumbnails (
    patch_id INTEGER PRIMARY KEY REFERENCES patches(id) ON DELETE CASCADE,
    format   TEXT NOT NULL,                     -- jpeg | png
    data     BLOB NOT NULL
);

CREATE TABLE classes (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE,
    color    TEXT NOT NULL,                     -- #rrggbb
    hotkey   TEXT UNIQUE,
    position INTEGER NOT NULL
);

-- The current label of each labeled patch; derived from label_events, kept for fast reads.
CREATE TABLE labels (
    patch_id   INTEGER PRIMARY KEY REFERENCES patches(id) ON DELETE CASCADE,
    class_id   INTEGER NOT NULL REFERENCES classes(id),
    source     TEXT NOT NULL CHECK (source IN ('human', 'imported', 'oracle')),
    round      INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX labels_class ON labels(class_id);

-- Append-only history. class_id NULL = the label was cleared. An undo is a new event with `undoes` set.
CREATE TABLE label_events (
    id             INTEGER PRIMARY KEY,
    patch_id       INTEGER NOT NULL REFERENCES patches(id) ON DELETE CASCADE,
    class_id       INTEGER REFERENCES classes(id),
    previous_class INTEGER REFERENCES classes(id),
    source         TEXT NOT NULL CHECK (source IN ('human', 'imported', 'oracle')),
    round          INTEGER,
    undoes         INTEGER REFERENCES label_events(id),
    created_at     INTEGER NOT NULL
);
CREATE INDEX label_events_patch ON label_events(patch_id);
CREATE INDEX label_events_undoes ON label_events(undoes);

-- Ground truth kept for simulation only; never read for training.
CREATE TABLE oracle_labels (
    patch_id INTEGER PRIMARY KEY REFERENCES patches(id) ON DELETE CASCADE,
    class_id INTEGER NOT NULL REFERENCES classes(id)
);

CREATE TABLE rounds (
    id            INTEGER PRIMARY KEY,          -- the round number, 1-based
    status        TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'cancelled')),
    strategy      TEXT,
    budget        INTEGER,
    seed          INTEGER,
    device        TEXT,
    config_json   TEXT,                         -- the full effective configuration
    labeled_json  TEXT,                         -- the labeled set trained on: [[patch_id, class_id], ...]
    timings_json  TEXT,
    metrics_json  TEXT,
    note          TEXT,                         -- e.g. top-up when DUS found fewer candidates than the budget
    error         TEXT,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER
);

CREATE TABLE predictions (
    round_id     INTEGER NOT NULL REFERENCES rounds(id) ON DELETE CASCADE,
    patch_id     INTEGER NOT NULL REFERENCES patches(id) ON DELETE CASCADE,
    prob_a       BLOB NOT NULL,                 -- f32 little-endian, one per class (class order = position)
    prob_b       BLOB NOT NULL,
    pred_a       INTEGER NOT NULL,              -- class index in position order
    pred_b       INTEGER NOT NULL,
    pred         INTEGER NOT NULL,              -- ensemble (averaged logits)
    disagreement REAL NOT NULL,                 -- Jensen-Shannon divergence between A and B
    confidence   REAL NOT NULL,                 -- ensemble max probability
    embedding    BLOB,                          -- f32 little-endian, averaged projection
    PRIMARY KEY (round_id, patch_id)
) WITHOUT ROWID;
CREATE INDEX predictions_disagreement ON predictions(round_id, disagreement);

CREATE TABLE queries (
    round_id INTEGER NOT NULL REFERENCES rounds(id) ON DELETE CASCADE,
    patch_id INTEGER NOT NULL REFERENCES patches(id) ON DELETE CASCADE,
    rank     INTEGER NOT NULL,
    reason   TEXT NOT NULL,                     -- e.g. dus-cs, top-up, random
    score    REAL,
    PRIMARY KEY (round_id, patch_id)
) WITHOUT ROWID;

CREATE TABLE checkpoints (
    id        INTEGER PRIMARY KEY,
    round_id  INTEGER NOT NULL REFERENCES rounds(id) ON DELETE CASCADE,
    network   TEXT NOT NULL,                    -- A | B
    path      TEXT NOT NULL,                    -- relative to the project file's folder
    sha256    TEXT NOT NULL,
    card_json TEXT,
    UNIQUE (round_id, network)
);
"#,
    // 2: the class order of each round's predictions, unsure flags, and the review list's sort indexes.
    r#"
ALTER TABLE rounds ADD COLUMN class_ids_json TEXT;   -- class ids in the round's prediction index order

-- Patches flagged "unsure / second look"; a row exists while the flag is set.
CREATE TABLE flags (
    patch_id   INTEGER PRIMARY KEY REFERENCES patches(id) ON DELETE CASCADE,
    unsure     INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
);
CREATE INDEX predictions_confidence ON predictions(round_id, confidence);
CREATE INDEX predictions_pred ON predictions(round_id, pred);
"#,
];

/// The schema version this build writes and understands.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// The database's `user_version`.
pub fn version(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).ctx("reading the schema version")
}

/// Apply every migration newer than the database's version; returns how many ran.
/// Applying them to an up-to-date database does nothing.
pub fn migrate(conn: &mut Connection) -> Result<usize> {
    migrate_to(conn, current_version())
}

/// Apply the migrations newer than the database's version up to version `target` (tests build files of
/// an older version with it); returns how many ran.
pub(crate) fn migrate_to(conn: &mut Connection, target: i64) -> Result<usize> {
    let from = version(conn)?;
    let mut applied = 0;
    let upto = target.clamp(0, current_version()) as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().take(upto).skip(from.max(0) as usize) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .ctx("starting a migration")?;
        tx.execute_batch(sql).ctx("applying a schema migration")?;
        tx.pragma_update(None, "user_version", (i + 1) as i64).ctx("recording the schema version")?;
        tx.commit().ctx("committing a migration")?;
        applied += 1;
    }
    Ok(applied)
}
