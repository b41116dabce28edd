//! Shared helpers of the unisal-train integration tests: an in-memory image source over real patch files read
//! from `../shared/data` (relative to the repository root), with a clear skip message when it is absent.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use unisal_core::learner::{ImageSource, LearnerError};

/// The shared data folder, `../shared/data` from the repository root.
pub const SHARED_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");

/// `SHARED_DATA/rel` if it exists; otherwise prints why the calling test is skipped and returns `None`.
pub fn shared_dir(rel: &str, test: &str) -> Option<PathBuf> {
    let p = Path::new(SHARED_DATA).join(rel);
    if p.join("labels.csv").is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED {test}: shared data {} is absent (expected ../shared/data next to the repository)",
            p.display()
        );
        None
    }
}

/// Encoded image bytes by patch id, as the pool would serve them.
#[derive(Debug, Default, Clone)]
pub struct MemImages(pub HashMap<i64, Vec<u8>>);

impl ImageSource for MemImages {
    fn image_bytes(&self, patch_id: i64) -> Result<Vec<u8>, LearnerError> {
        self.0.get(&patch_id).cloned().ok_or_else(|| format!("no patch with id {patch_id}").into())
    }
}

/// One patch of a labeled folder.
#[derive(Debug, Clone)]
pub struct Sample {
    pub id: i64,
    pub class_name: String,
}

/// Reads `labels.csv` (`path,label`) of `dir` and returns, per class in first-seen order, its rows.
pub fn labels_csv(dir: &Path) -> Vec<(String, Vec<PathBuf>)> {
    let text = std::fs::read_to_string(dir.join("labels.csv")).expect("labels.csv readable");
    let mut classes: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let (path, label) = line.split_once(',').expect("path,label row");
        let label = label.split(',').next().unwrap_or(label).trim().to_string();
        match classes.iter_mut().find(|(c, _)| *c == label) {
            Some((_, v)) => v.push(dir.join(path)),
            None => classes.push((label, vec![dir.join(path)])),
        }
    }
    classes
}

/// Loads `per_class` patches of every class of `dir` (taking every `stride`-th file from `offset`), assigning ids
/// from `first_id` on, into `images`.
pub fn load_per_class(
    dir: &Path,
    per_class: usize,
    offset: usize,
    stride: usize,
    first_id: i64,
    images: &mut MemImages,
) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut id = first_id;
    for (class_name, files) in labels_csv(dir) {
        for path in files.iter().skip(offset).step_by(stride.max(1)).take(per_class) {
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            images.0.insert(id, bytes);
            out.push(Sample { id, class_name: class_name.clone() });
            id += 1;
        }
    }
    out
}

/// The class names of `samples` in first-seen order.
pub fn class_names(samples: &[Sample]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in samples {
        if !names.contains(&s.class_name) {
            names.push(s.class_name.clone());
        }
    }
    names
}

/// Index of `name` in `names`.
pub fn class_index(names: &[String], name: &str) -> u32 {
    names.iter().position(|n| n == name).expect("known class") as u32
}
