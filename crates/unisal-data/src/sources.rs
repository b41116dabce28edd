//! Turning the paths given to an import into a list of files with optional label and group.
//!
//! A folder: files directly in it are unlabeled; each sub-folder is a class whose name is the label (files
//! in deeper folders keep the top sub-folder's label). A `.csv` file: rows `path[,label][,group]`, paths
//! relative to the CSV's folder, an optional header naming the columns. Any other file: one unlabeled image.
//! Hidden entries are skipped; files whose extension is not an image's are skipped and counted.

use crate::import::ImportFailure;
use std::fs;
use std::path::{Path, PathBuf};

/// Extensions treated as images (supported or refused with a reason); anything else is skipped.
const IMAGE_EXTENSIONS: &[&str] =
    &["png", "jpg", "jpeg", "jpe", "tif", "tiff", "bmp", "gif", "webp", "avif", "ico", "jp2", "heic", "svg"];

/// Where labels come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelMode {
    /// Class sub-folders for folders, the label column for CSVs.
    #[default]
    Auto,
    /// Labels from sub-folder names (a CSV's label column is still read).
    Folders,
    /// Labels from a CSV: a CSV path, or `labels.csv` inside a given folder.
    Csv,
    /// No labels: everything is imported unlabeled.
    None,
}

/// One file to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportItem {
    /// The file.
    pub path: PathBuf,
    /// Its label name, when the source gives one.
    pub label: Option<String>,
    /// Its group (slide, patient), when the source gives one.
    pub group: Option<String>,
}

/// What [`collect`] found.
#[derive(Debug, Default)]
pub struct Collected {
    /// The files to import, in a stable order.
    pub items: Vec<ImportItem>,
    /// Paths refused before reading (missing, unreadable folder, bad CSV row).
    pub failed: Vec<ImportFailure>,
    /// Files skipped because they are not images by extension.
    pub skipped: Vec<PathBuf>,
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn fail(out: &mut Collected, path: &Path, reason: impl Into<String>) {
    out.failed.push(ImportFailure { path: path.display().to_string(), reason: reason.into() });
}

/// Collect the files of `paths` under `mode`.
pub fn collect(paths: &[PathBuf], mode: LabelMode) -> Collected {
    let mut out = Collected::default();
    for path in paths {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                fail(&mut out, path, describe_io(path, &e));
                continue;
            }
        };
        let is_csv = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if meta.is_dir() {
            let inner_csv = path.join("labels.csv");
            if mode == LabelMode::Csv && inner_csv.is_file() {
                read_csv(&inner_csv, true, &mut out);
            } else if mode == LabelMode::Csv {
                fail(&mut out, path, "--labels csv: the folder has no labels.csv (give the CSV file itself)");
            } else {
                walk(path, None, 0, mode != LabelMode::None, &mut out);
            }
        } else if is_csv {
            read_csv(path, mode != LabelMode::None, &mut out);
        } else {
            out.items.push(ImportItem { path: path.clone(), label: None, group: None });
        }
    }
    out
}

/// A person's reason for an IO error on `path`.
pub fn describe_io(path: &Path, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound if fs::symlink_metadata(path).is_ok() => {
            "dangling symbolic link: its target does not exist".into()
        }
        ErrorKind::NotFound => "file not found".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::IsADirectory => "is a folder, not a file".into(),
        _ => format!("cannot read: {e}"),
    }
}

fn walk(dir: &Path, label: Option<&str>, depth: usize, labels: bool, out: &mut Collected) {
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => return fail(out, dir, format!("cannot list the folder: {}", describe_io(dir, &e))),
    };
    let mut paths = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => paths.push(e.path()),
            Err(e) => fail(out, dir, format!("cannot list the folder: {e}")),
        }
    }
    paths.sort();
    for path in paths {
        if is_hidden(&path) {
            continue;
        }
        match fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                if depth > 32 {
                    fail(out, &path, "folders nested too deep (over 32 levels)");
                    continue;
                }
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                let sub_label = if depth == 0 { name } else { label.map(str::to_string) };
                walk(&path, sub_label.as_deref(), depth + 1, labels, out);
            }
            Ok(_) if has_image_extension(&path) => out.items.push(ImportItem {
                path,
                label: if labels { label.map(str::to_string) } else { None },
                group: None,
            }),
            Ok(_) => out.skipped.push(path),
            // Dangling links or entries that vanished: an image by name is a failure, anything else skipped.
            Err(e) if has_image_extension(&path) => {
                let reason = describe_io(&path, &e);
                fail(out, &path, reason);
            }
            Err(_) => out.skipped.push(path),
        }
    }
}

fn read_csv(csv_path: &Path, labels: bool, out: &mut Collected) {
    let base = csv_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut reader = match csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(csv_path)
    {
        Ok(r) => r,
        Err(e) => return fail(out, csv_path, format!("cannot read the CSV: {e}")),
    };
    let (mut path_col, mut label_col, mut group_col) = (0usize, Some(1usize), Some(2usize));
    for (i, record) in reader.records().enumerate() {
        let line = i + 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                fail(out, csv_path, format!("line {line}: malformed CSV: {e}"));
                continue;
            }
        };
        if i == 0 {
            let lower: Vec<String> = record.iter().map(|f| f.to_ascii_lowercase()).collect();
            let find = |names: &[&str]| lower.iter().position(|f| names.contains(&f.as_str()));
            if let Some(p) = find(&["path", "file", "filename", "image", "file_path"]) {
                path_col = p;
                label_col = find(&["label", "class", "class_name", "target"]);
                group_col = find(&["group", "slide", "patient", "case"]);
                continue;
            }
        }
        let field =
            |c: Option<usize>| c.and_then(|c| record.get(c)).filter(|v| !v.is_empty()).map(str::to_string);
        let Some(rel) = field(Some(path_col)) else {
            if record.iter().any(|f| !f.is_empty()) {
                fail(out, csv_path, format!("line {line}: empty path"));
            }
            continue;
        };
        let path = base.join(&rel);
        let label = if labels { field(label_col) } else { None };
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => out.items.push(ImportItem { path, label, group: field(group_col) }),
            Ok(_) => fail(
                out,
                &path,
                format!("is a folder, not a file (listed in {} line {line})", csv_path.display()),
            ),
            Err(e) => {
                let reason = describe_io(&path, &e);
                fail(out, &path, format!("{reason} (listed in {} line {line})", csv_path.display()));
            }
        }
    }
}
