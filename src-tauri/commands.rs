//! Project commands: recent list, open / create / demo / close, status and grid pages.

use crate::demo;
use crate::dirs::AppDirs;
use crate::error::{AppError, AppResult};
use crate::ipc::{project_name, GridFilter, PatchPage, ProjectStatus, RecentProject};
use crate::recent;
use crate::state::{AppState, Startup};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use tauri::{AppHandle, State};
use unisal_core::pool::PROJECT_EXTENSION;
use unisal_core::Pool;

/// The most patches one page may hold.
pub const MAX_PAGE: u64 = 1000;

/// The recent projects, newest first, each marked whether its file still exists.
#[tauri::command]
pub async fn recent_projects() -> AppResult<Vec<RecentProject>> {
    let entries = recent::load(&AppDirs::locate()?.recent_file())?;
    Ok(entries
        .into_iter()
        .map(|e| RecentProject {
            name: project_name(&e.path),
            exists: e.path.is_file(),
            path: e.path.display().to_string(),
            opened_at: e.opened_at,
        })
        .collect())
}

/// Opens what the command line asked for (`--demo` or a project file), the first time the UI asks.
#[tauri::command]
pub async fn startup_project(app: AppHandle, state: State<'_, AppState>) -> AppResult<Option<ProjectStatus>> {
    match state.take_startup() {
        None => Ok(None),
        Some(Startup::Demo) => open_demo(app, state).await.map(Some),
        Some(Startup::Project(path)) => activate(&state, Pool::open(&path)?, true).map(Some),
    }
}

/// Parses the command line (without the program name): nothing, `--demo`, or one project file. Other
/// options are ignored with a warning (WebKitWebDriver adds `--automation` when it starts the app).
pub fn parse_args(args: &[String]) -> Result<Option<Startup>, String> {
    let mut startup = None;
    for arg in args {
        let this = if arg == "--demo" {
            Startup::Demo
        } else if arg.starts_with('-') {
            eprintln!("ignoring option {arg}");
            continue;
        } else {
            let path = PathBuf::from(arg);
            let path = if path.is_absolute() {
                path
            } else {
                std::env::current_dir().map_err(|e| format!("current folder: {e}"))?.join(path)
            };
            Startup::Project(path)
        };
        if startup.replace(this).is_some() {
            return Err("give at most one of --demo and PROJECT".into());
        }
    }
    Ok(startup)
}

/// Opens an existing project file.
#[tauri::command]
pub async fn open_project(state: State<'_, AppState>, path: String) -> AppResult<ProjectStatus> {
    let path = parse_project_path(&path, false)?;
    activate(&state, Pool::open(&path)?, true)
}

/// Creates a new, empty project file (adding the `.unisal` extension when it has none).
#[tauri::command]
pub async fn create_project(state: State<'_, AppState>, path: String) -> AppResult<ProjectStatus> {
    let path = parse_project_path(&path, true)?;
    activate(&state, Pool::create(&path)?, true)
}

/// Opens the demo project, building it from the bundled patches the first time.
#[tauri::command]
pub async fn open_demo(app: AppHandle, state: State<'_, AppState>) -> AppResult<ProjectStatus> {
    state.check_idle()?;
    let source = demo::source_folder(&app)?;
    let pool = demo::open_or_build(&source, &AppDirs::locate()?.data)?;
    activate(&state, pool, false)
}

/// Closes the open project.
#[tauri::command]
pub async fn close_project(state: State<'_, AppState>) -> AppResult<()> {
    state.check_idle()?;
    state.close_project();
    Ok(())
}

/// Counts of the open project.
#[tauri::command]
pub async fn project_status(state: State<'_, AppState>) -> AppResult<ProjectStatus> {
    state.with_keyed_pool(|pool, key| Ok(ProjectStatus::new(pool.path(), pool.status()?, key)))
}

/// One page of the open project's patches, in id order.
#[tauri::command]
pub async fn patch_page(
    state: State<'_, AppState>,
    offset: u64,
    limit: u64,
    filter: GridFilter,
) -> AppResult<PatchPage> {
    check_limit(limit)?;
    let filter = filter.to_filter();
    state.with_pool(|pool| {
        let total = pool.count_patches(&filter)?;
        let items = pool.page_patches(offset, limit, &filter)?.into_iter().map(Into::into).collect();
        Ok(PatchPage { offset, total, items })
    })
}

fn activate(state: &AppState, pool: Pool, remember: bool) -> AppResult<ProjectStatus> {
    state.check_idle()?;
    let counts = pool.status()?;
    let path = pool.path().to_path_buf();
    if remember {
        // The recent list is a convenience: a problem with it must not stop the project from opening.
        let remembered = AppDirs::locate().and_then(|d| recent::touch(&d.recent_file(), &path, now_ms()));
        if let Err(e) = remembered {
            eprintln!("recent projects not updated: {e}");
        }
    }
    let key = state.set_project(pool);
    Ok(ProjectStatus::new(&path, counts, key))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Checks a page size from the UI.
pub fn check_limit(limit: u64) -> AppResult<()> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(AppError::Invalid {
            field: "limit",
            reason: format!("must be 1..={MAX_PAGE}, got {limit}"),
        });
    }
    Ok(())
}

/// Turns the path typed by the user into a project file path: trimmed, absolute, and for a new project
/// with the `.unisal` extension and an existing parent folder.
pub fn parse_project_path(input: &str, create: bool) -> AppResult<PathBuf> {
    let mut path = absolute_path(input, "project path")?;
    if create {
        if path.extension().is_none() {
            path.set_extension(PROJECT_EXTENSION);
        }
        in_existing_folder(&path, "project path")?;
    }
    Ok(path)
}

/// A path typed by the user for `field`: trimmed, not empty, absolute.
pub fn absolute_path(input: &str, field: &'static str) -> AppResult<PathBuf> {
    let invalid = |reason: String| AppError::Invalid { field, reason };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    let path = PathBuf::from(trimmed);
    if !path.is_absolute() {
        return Err(invalid(format!(
            "{trimmed} is not an absolute path (start it with / or a drive letter)"
        )));
    }
    Ok(path)
}

/// Refuses `path` for `field` when its folder does not exist.
pub fn in_existing_folder(path: &Path, field: &'static str) -> AppResult<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    if !parent.is_dir() {
        return Err(AppError::Invalid {
            field,
            reason: format!("the folder {} does not exist", parent.display()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_paths_are_checked_and_completed() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().display().to_string();
        let err = parse_project_path("   ", true).unwrap_err().to_string();
        assert!(err.contains("project path") && err.contains("empty"), "{err}");
        let err = parse_project_path("rel/x.unisal", false).unwrap_err().to_string();
        assert!(err.contains("rel/x.unisal") && err.contains("absolute"), "{err}");
        let p = parse_project_path(&format!("  {base}/colon  "), true).unwrap();
        assert_eq!(p, dir.path().join("colon.unisal"));
        let p = parse_project_path(&format!("{base}/x.db"), true).unwrap();
        assert_eq!(p, dir.path().join("x.db"));
        let err = parse_project_path(&format!("{base}/missing/x"), true).unwrap_err().to_string();
        assert!(err.contains("missing") && err.contains("does not exist"), "{err}");
        assert_eq!(parse_project_path(&format!("{base}/opened"), false).unwrap(), dir.path().join("opened"));
    }

    #[test]
    fn command_line_takes_demo_or_one_project() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_args(&args(&[])), Ok(None));
        assert_eq!(parse_args(&args(&["--demo"])), Ok(Some(Startup::Demo)));
        assert_eq!(parse_args(&args(&["/p/a.unisal"])), Ok(Some(Startup::Project("/p/a.unisal".into()))));
        let Ok(Some(Startup::Project(rel))) = parse_args(&args(&["a.unisal"])) else {
            panic!("relative path")
        };
        assert!(rel.is_absolute() && rel.ends_with("a.unisal"));
        assert_eq!(parse_args(&args(&["--automation", "--demo"])), Ok(Some(Startup::Demo)));
        assert!(parse_args(&args(&["a", "b"])).unwrap_err().contains("at most one"));
        assert!(parse_args(&args(&["--demo", "/p/a.unisal"])).is_err());
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert!(check_limit(1).is_ok());
        assert!(check_limit(MAX_PAGE).is_ok());
        assert!(check_limit(0).unwrap_err().to_string().contains("limit"));
        assert!(check_limit(MAX_PAGE + 1).is_err());
    }
}
