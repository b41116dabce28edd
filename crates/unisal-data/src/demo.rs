//! The demo project: the CC BY 4.0 Kather 2016 tiles shipped in `assets/demo/` (one folder per class),
//! imported with their folder labels into a project file. Used by `unisal demo` and the app.

use crate::error::{DataError, Result};
use crate::import::{import, ImportOptions, ImportReport, LabelMode};
use std::path::{Path, PathBuf};
use unisal_core::events::{CancelToken, ProgressSink};
use unisal_core::Pool;

/// File name of the demo project inside the folder it is built in.
pub const DEMO_PROJECT_NAME: &str = "demo.unisal";

/// `assets/demo` of this source tree (where the CLI finds it when run from a build of the repository).
pub fn bundled_assets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo")
}

/// Open the demo project `folder/demo.unisal`, building it from `assets` (class sub-folders) when it does
/// not exist or an earlier build was interrupted. Returns the pool and the import report when an import
/// ran. An existing, complete demo project is opened as it is (labels given since are kept).
pub fn open_or_build_demo(
    assets: &Path,
    folder: &Path,
    sink: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<(Pool, Option<ImportReport>)> {
    if !assets.is_dir() {
        return Err(DataError::Invalid {
            field: "demo assets",
            reason: format!("{} is not a folder of class sub-folders", assets.display()),
        });
    }
    std::fs::create_dir_all(folder).map_err(|source| DataError::Io { path: folder.to_path_buf(), source })?;
    let project = folder.join(DEMO_PROJECT_NAME);
    let mut pool = Pool::open_or_create(&project)?;
    let expected = crate::sources::collect(&[assets.to_path_buf()], LabelMode::Folders).items.len() as u64;
    if pool.status()?.patches >= expected && expected > 0 {
        return Ok((pool, None));
    }
    let options = ImportOptions { labels: LabelMode::Folders, ..ImportOptions::default() };
    let report = import(&mut pool, &[assets.to_path_buf()], &options, sink, cancel)?;
    Ok((pool, Some(report)))
}
