//! Label and class commands: label, clear, undo and "unsure" on one patch, and the class list's edits.
//! Each change is committed to the project file before the command returns, and the reply carries the
//! project's counts after it, so the UI paints a label only once it is stored.

use crate::error::AppResult;
use crate::ipc::{LabelOutcome, ProjectStatus};
use crate::state::AppState;
use tauri::State;
use unisal_core::pool::LabelChange;
use unisal_core::Pool;

/// Labels `patch_id` with `class_id` as the pathologist.
#[tauri::command]
pub async fn label_patch(
    state: State<'_, AppState>,
    patch_id: i64,
    class_id: i64,
) -> AppResult<LabelOutcome> {
    change(&state, |pool| pool.set_label(patch_id, class_id))
}

/// Removes the label of `patch_id` (a new history event).
#[tauri::command]
pub async fn clear_label(state: State<'_, AppState>, patch_id: i64) -> AppResult<LabelOutcome> {
    change(&state, |pool| pool.clear_label(patch_id))
}

/// Undoes the newest label change of `patch_id`, or of the whole project when it is null.
#[tauri::command]
pub async fn undo_label(state: State<'_, AppState>, patch_id: Option<i64>) -> AppResult<LabelOutcome> {
    change(&state, |pool| match patch_id {
        Some(id) => pool.undo_label(id),
        None => pool.undo_last(),
    })
}

/// Marks `patch_id` as unsure (a second look) or clears the mark; returns the new state.
#[tauri::command]
pub async fn set_unsure(state: State<'_, AppState>, patch_id: i64, unsure: bool) -> AppResult<bool> {
    state.with_pool(|pool| Ok(pool.set_unsure(patch_id, unsure)?))
}

fn change(
    state: &AppState,
    f: impl FnOnce(&mut Pool) -> unisal_core::error::Result<LabelChange>,
) -> AppResult<LabelOutcome> {
    state.with_keyed_pool(|pool, key| {
        let c = f(pool)?;
        let status = ProjectStatus::new(pool.path(), pool.status()?, key);
        Ok(LabelOutcome { patch_id: c.patch_id, before: c.before, after: c.after, status })
    })
}

/// Adds a class (colour and hotkey optional: a free colour is picked when none is given).
#[tauri::command]
pub async fn add_class(
    state: State<'_, AppState>,
    name: String,
    color: Option<String>,
    hotkey: Option<String>,
) -> AppResult<ProjectStatus> {
    classes(&state, |pool| pool.add_class(&name, color.as_deref(), hotkey.as_deref()).map(drop))
}

/// Renames a class.
#[tauri::command]
pub async fn rename_class(state: State<'_, AppState>, id: i64, name: String) -> AppResult<ProjectStatus> {
    classes(&state, |pool| pool.rename_class(id, &name).map(drop))
}

/// Sets a class's colour (`#rrggbb`).
#[tauri::command]
pub async fn set_class_color(state: State<'_, AppState>, id: i64, color: String) -> AppResult<ProjectStatus> {
    classes(&state, |pool| pool.set_class_color(id, &color).map(drop))
}

/// Sets or clears a class's hotkey.
#[tauri::command]
pub async fn set_class_hotkey(
    state: State<'_, AppState>,
    id: i64,
    hotkey: Option<String>,
) -> AppResult<ProjectStatus> {
    let hotkey = hotkey.filter(|h| !h.trim().is_empty());
    classes(&state, |pool| pool.set_class_hotkey(id, hotkey.as_deref()).map(drop))
}

/// Moves a class to `position` (0-based) in the list.
#[tauri::command]
pub async fn move_class(state: State<'_, AppState>, id: i64, position: usize) -> AppResult<ProjectStatus> {
    classes(&state, |pool| pool.move_class(id, position).map(drop))
}

fn classes(
    state: &AppState,
    f: impl FnOnce(&mut Pool) -> unisal_core::error::Result<()>,
) -> AppResult<ProjectStatus> {
    state.with_keyed_pool(|pool, key| {
        f(pool)?;
        Ok(ProjectStatus::new(pool.path(), pool.status()?, key))
    })
}
