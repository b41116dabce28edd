//! Preparing a simulation: the pool imported once into a template project with its labels as hidden oracle
//! labels (each run works on a copy, so every strategy starts from the same patch ids), and the test set
//! imported into its own project, its labels mapped to the pool's class order.

use anyhow::{bail, Context};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use unisal_core::events::{CancelToken, NoProgress};
use unisal_core::round::PoolImages;
use unisal_core::Pool;
use unisal_data::{import, ImportOptions, LabelMode};

/// Test image ids are shifted by this much so that they never collide with pool ids in the learner's
/// id-keyed image cache.
pub const TEST_ID_OFFSET: i64 = 1 << 40;

/// Import `source` (a folder of class folders, or a CSV `path,label`) into a new project at `project`, the
/// labels as oracle labels; every patch must get one.
pub fn import_oracle(
    project: &Path,
    source: &Path,
    what: &str,
    cancel: &CancelToken,
) -> anyhow::Result<Pool> {
    let mut pool = Pool::create(project).with_context(|| format!("creating {}", project.display()))?;
    let options = ImportOptions { labels: LabelMode::Auto, oracle: true, ..ImportOptions::default() };
    let report = import(&mut pool, &[source.to_path_buf()], &options, &NoProgress, cancel)
        .with_context(|| format!("importing the {what} set {}", source.display()))?;
    if report.cancelled {
        bail!("cancelled while importing the {what} set");
    }
    for f in report.failed.iter().take(5) {
        eprintln!("warning: {what} set: {} not imported: {}", f.path, f.reason);
    }
    if report.failed.len() > 5 {
        eprintln!("warning: {what} set: {} more files not imported", report.failed.len() - 5);
    }
    let patches = pool.patch_ids()?.len();
    let labeled = pool.oracle_labels()?.len();
    if patches == 0 {
        bail!("the {what} set {} holds no importable image", source.display());
    }
    if labeled < patches {
        bail!(
            "the {what} set {}: {} of {patches} patches have no label (give class folders or a CSV with a label column)",
            source.display(),
            patches - labeled
        );
    }
    Ok(pool)
}

/// The test set: image source, offset ids and true class indices in the pool's class order.
pub struct TestSet {
    pub images: PoolImages,
    pub ids: Vec<i64>,
    pub truth: Vec<u32>,
}

impl TestSet {
    /// Read the test project's oracle labels and map its class names onto `pool_classes` (position order).
    pub fn load(project: &Path, pool_classes: &[String]) -> anyhow::Result<Self> {
        let pool = Pool::open(project)?;
        let names: HashMap<i64, String> = pool.classes()?.into_iter().map(|c| (c.id, c.name)).collect();
        let index: HashMap<&str, u32> =
            pool_classes.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect();
        let mut ids = Vec::new();
        let mut truth = Vec::new();
        for (patch, class) in pool.oracle_labels()? {
            let name = &names[&class];
            let Some(&i) = index.get(name.as_str()) else {
                bail!(
                    "the test set has class {name:?}, which the pool does not have ({})",
                    pool_classes.join(", ")
                );
            };
            ids.push(patch + TEST_ID_OFFSET);
            truth.push(i);
        }
        let images = PoolImages::open(project)?.with_offset(TEST_ID_OFFSET);
        Ok(TestSet { images, ids, truth })
    }
}

/// The working folder: the one given (kept), or a fresh one under the system's temporary folder (removed
/// at the end by [`WorkDir`]'s drop).
pub struct WorkDir {
    pub path: PathBuf,
    remove: bool,
}

impl WorkDir {
    pub fn new(given: Option<&Path>) -> anyhow::Result<Self> {
        let (path, remove) = match given {
            Some(p) => (p.to_path_buf(), false),
            None => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                (std::env::temp_dir().join(format!("unisal-simulate-{}-{stamp}", std::process::id())), true)
            }
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating the work folder {}", path.display()))?;
        if std::fs::read_dir(&path)?.next().is_some() {
            bail!("the work folder {} is not empty: give an empty or new folder", path.display());
        }
        Ok(Self { path, remove })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
