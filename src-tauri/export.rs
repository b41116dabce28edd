//! Export commands: the labels CSV, the predictions CSV and the model files, written whole or not at all
//! by `unisal-data` to the absolute path the user typed.

use crate::commands::{absolute_path, in_existing_folder};
use crate::error::AppResult;
use crate::state::AppState;
use serde::Serialize;
use std::path::PathBuf;
use tauri::State;

/// The files an export wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportResult {
    pub paths: Vec<String>,
    pub rows: usize,
}

/// Writes the current labels as CSV to `path`.
#[tauri::command]
pub async fn export_labels(state: State<'_, AppState>, path: String) -> AppResult<ExportResult> {
    let out = parse_out(&path, "labels file")?;
    state.with_pool(|pool| {
        let rows = unisal_data::export_labels_csv(pool, &out)?;
        Ok(ExportResult { paths: vec![out.display().to_string()], rows })
    })
}

/// Writes `round`'s predictions (default: the newest round with predictions) as CSV to `path`.
#[tauri::command]
pub async fn export_predictions(
    state: State<'_, AppState>,
    path: String,
    round: Option<i64>,
) -> AppResult<ExportResult> {
    let out = parse_out(&path, "predictions file")?;
    state.with_pool(|pool| {
        let written = unisal_data::export_predictions_csv(pool, round, &out)?;
        Ok(ExportResult { paths: vec![out.display().to_string()], rows: written.rows })
    })
}

/// Copies `round`'s two networks (safetensors and JSON cards) into `folder`, created when missing.
#[tauri::command]
pub async fn export_model(
    state: State<'_, AppState>,
    folder: String,
    round: Option<i64>,
) -> AppResult<ExportResult> {
    let dir = parse_out(&folder, "model folder")?;
    state.with_pool(|pool| {
        let files = unisal_data::export_model(pool, round, &dir)?;
        Ok(ExportResult { paths: files.iter().map(|p| p.display().to_string()).collect(), rows: files.len() })
    })
}

/// Checks a typed output path: absolute, in an existing folder.
pub fn parse_out(input: &str, field: &'static str) -> AppResult<PathBuf> {
    let path = absolute_path(input, field)?;
    in_existing_folder(&path, field)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths_must_be_absolute_in_an_existing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let ok = parse_out(&format!(" {}/labels.csv ", dir.path().display()), "labels file").unwrap();
        assert_eq!(ok, dir.path().join("labels.csv"));
        let e = parse_out("labels.csv", "labels file").unwrap_err().to_string();
        assert!(e.contains("labels file") && e.contains("absolute"), "{e}");
        let e = parse_out("/no/such/folder/x.csv", "predictions file").unwrap_err().to_string();
        assert!(e.contains("/no/such/folder") && e.contains("does not exist"), "{e}");
        assert!(parse_out("  ", "model folder").unwrap_err().to_string().contains("empty"));
    }
}
