//! Classes: add, rename, recolour, hotkey, reorder. Positions are kept dense (0..n) in list order.

use super::{Class, ClassId, Pool};
use crate::error::{CoreError, Result, SqlContext};
use rusqlite::{params, OptionalExtension};

/// Colours given to new classes in turn (distinct on light and dark backgrounds).
pub const PALETTE: &[&str] = &[
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4",
    "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075", "#a9a9a9", "#ffe119",
    "#ffd8b1", "#000000",
];

/// Hotkeys given to the first ten classes.
const DEFAULT_HOTKEYS: &[&str] = &["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"];

fn check_name(name: &str) -> Result<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(CoreError::Invalid { field: "class name", reason: "it is empty".into() });
    }
    if trimmed.chars().count() > 100 {
        return Err(CoreError::Invalid {
            field: "class name",
            reason: format!("{trimmed:?} is longer than 100 characters"),
        });
    }
    if trimmed.chars().any(char::is_control) {
        return Err(CoreError::Invalid {
            field: "class name",
            reason: format!("{trimmed:?} contains control characters"),
        });
    }
    Ok(trimmed.to_string())
}

/// Validate a `#rrggbb` colour; returns it lowercased.
pub fn check_color(color: &str) -> Result<String> {
    let ok = color.len() == 7 && color.starts_with('#') && color[1..].chars().all(|c| c.is_ascii_hexdigit());
    if !ok {
        return Err(CoreError::Invalid {
            field: "colour",
            reason: format!("{color:?} is not of the form #rrggbb"),
        });
    }
    Ok(color.to_ascii_lowercase())
}

fn check_hotkey(hotkey: &str) -> Result<String> {
    let h = hotkey.trim();
    if h.is_empty() || h.chars().count() > 16 || h.chars().any(char::is_control) {
        return Err(CoreError::Invalid { field: "hotkey", reason: format!("{hotkey:?} is not a key name") });
    }
    Ok(h.to_string())
}

fn row_to_class(r: &rusqlite::Row<'_>) -> rusqlite::Result<Class> {
    Ok(Class { id: r.get(0)?, name: r.get(1)?, color: r.get(2)?, hotkey: r.get(3)?, position: r.get(4)? })
}

const CLASS_COLUMNS: &str = "id, name, color, hotkey, position";

impl Pool {
    /// Every class, in position order.
    pub fn classes(&self) -> Result<Vec<Class>> {
        let mut stmt = self
            .conn()
            .prepare_cached(&format!("SELECT {CLASS_COLUMNS} FROM classes ORDER BY position, id"))
            .ctx("listing classes")?;
        let rows = stmt.query_map([], row_to_class).ctx("listing classes")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("listing classes")
    }

    /// The class named `name` (exact match), if any.
    pub fn class_by_name(&self, name: &str) -> Result<Option<Class>> {
        self.conn()
            .query_row(
                &format!("SELECT {CLASS_COLUMNS} FROM classes WHERE name = ?1"),
                [name.trim()],
                row_to_class,
            )
            .optional()
            .ctx("looking up a class")
    }

    /// The class with id `id`.
    pub fn class(&self, id: ClassId) -> Result<Class> {
        self.conn()
            .query_row(&format!("SELECT {CLASS_COLUMNS} FROM classes WHERE id = ?1"), [id], row_to_class)
            .optional()
            .ctx("looking up a class")?
            .ok_or(CoreError::UnknownClassId(id))
    }

    /// The class named `name`, or [`CoreError::UnknownClass`].
    pub fn require_class(&self, name: &str) -> Result<Class> {
        self.class_by_name(name)?.ok_or_else(|| CoreError::UnknownClass(name.trim().to_string()))
    }

    fn check_hotkey_free(&self, hotkey: &str, except: Option<ClassId>) -> Result<()> {
        let owner: Option<(ClassId, String)> = self
            .conn()
            .query_row("SELECT id, name FROM classes WHERE hotkey = ?1", [hotkey], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .ctx("checking a hotkey")?;
        match owner {
            Some((id, class)) if Some(id) != except => {
                Err(CoreError::HotkeyTaken { hotkey: hotkey.into(), class })
            }
            _ => Ok(()),
        }
    }

    /// Add a class at the end of the list. Without a colour it gets the next palette colour; without a
    /// hotkey it gets the next free digit among 1-9, 0 (none after ten classes).
    pub fn add_class(&self, name: &str, color: Option<&str>, hotkey: Option<&str>) -> Result<Class> {
        let name = check_name(name)?;
        if self.class_by_name(&name)?.is_some() {
            return Err(CoreError::ClassExists(name));
        }
        let count: i64 = self
            .conn()
            .query_row("SELECT count(*) FROM classes", [], |r| r.get(0))
            .ctx("counting classes")?;
        let color = match color {
            Some(c) => check_color(c)?,
            None => PALETTE[count as usize % PALETTE.len()].to_string(),
        };
        let hotkey = match hotkey {
            Some(h) => {
                let h = check_hotkey(h)?;
                self.check_hotkey_free(&h, None)?;
                Some(h)
            }
            None => {
                let mut free = None;
                for h in DEFAULT_HOTKEYS {
                    if self.check_hotkey_free(h, None).is_ok() {
                        free = Some(h.to_string());
                        break;
                    }
                }
                free
            }
        };
        self.conn()
            .execute(
                "INSERT INTO classes (name, color, hotkey, position) VALUES (?1, ?2, ?3, ?4)",
                params![name, color, hotkey, count],
            )
            .ctx("adding a class")?;
        self.class(self.conn().last_insert_rowid())
    }

    /// Rename class `id`; the new name must be free.
    pub fn rename_class(&self, id: ClassId, new_name: &str) -> Result<Class> {
        let name = check_name(new_name)?;
        let current = self.class(id)?;
        if current.name == name {
            return Ok(current);
        }
        if self.class_by_name(&name)?.is_some() {
            return Err(CoreError::ClassExists(name));
        }
        self.conn()
            .execute("UPDATE classes SET name = ?1 WHERE id = ?2", params![name, id])
            .ctx("renaming a class")?;
        self.class(id)
    }

    /// Set the colour (`#rrggbb`) of class `id`.
    pub fn set_class_color(&self, id: ClassId, color: &str) -> Result<Class> {
        let color = check_color(color)?;
        self.class(id)?;
        self.conn()
            .execute("UPDATE classes SET color = ?1 WHERE id = ?2", params![color, id])
            .ctx("recolouring a class")?;
        self.class(id)
    }

    /// Set or remove (`None`) the hotkey of class `id`; a hotkey belongs to one class at most.
    pub fn set_class_hotkey(&self, id: ClassId, hotkey: Option<&str>) -> Result<Class> {
        self.class(id)?;
        let hotkey = match hotkey {
            Some(h) => {
                let h = check_hotkey(h)?;
                self.check_hotkey_free(&h, Some(id))?;
                Some(h)
            }
            None => None,
        };
        self.conn()
            .execute("UPDATE classes SET hotkey = ?1 WHERE id = ?2", params![hotkey, id])
            .ctx("setting a hotkey")?;
        self.class(id)
    }

    /// Move class `id` to 0-based `position` (clamped to the list), shifting the others.
    pub fn move_class(&mut self, id: ClassId, position: usize) -> Result<Vec<Class>> {
        let mut order: Vec<ClassId> = self.classes()?.into_iter().map(|c| c.id).collect();
        let from = order.iter().position(|&c| c == id).ok_or(CoreError::UnknownClassId(id))?;
        order.remove(from);
        order.insert(position.min(order.len()), id);
        let tx = self.write_tx().ctx("reordering classes")?;
        {
            let mut stmt =
                tx.prepare("UPDATE classes SET position = ?1 WHERE id = ?2").ctx("reordering classes")?;
            for (pos, cid) in order.iter().enumerate() {
                stmt.execute(params![pos as i64, cid]).ctx("reordering classes")?;
            }
        }
        tx.commit().ctx("reordering classes")?;
        self.classes()
    }

    /// Add every name of `names` that is not a class yet (in the given order), all in one transaction;
    /// returns the classes afterwards. Used by the importer when a project has no classes yet.
    pub fn ensure_classes(&mut self, names: &[String]) -> Result<Vec<Class>> {
        let checked = names.iter().map(|n| check_name(n)).collect::<Result<Vec<_>>>()?;
        self.conn().execute_batch("BEGIN IMMEDIATE").ctx("adding classes")?;
        let result = (|| {
            for name in &checked {
                if self.class_by_name(name)?.is_none() {
                    self.add_class(name, None, None)?;
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => self.conn().execute_batch("COMMIT").ctx("adding classes")?,
            Err(e) => {
                let _ = self.conn().execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        self.classes()
    }

    /// Number of classes.
    pub fn class_count(&self) -> Result<usize> {
        let n: i64 = self
            .conn()
            .query_row("SELECT count(*) FROM classes", [], |r| r.get(0))
            .ctx("counting classes")?;
        Ok(n as usize)
    }
}
