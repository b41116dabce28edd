//! Shared helpers of the round tests: a project file built from real Kather 2016 PNG patches, and a fake
//! learner whose predictions are a deterministic function of the image bytes, the patch id and the seed.

#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use unisal_core::events::{CancelToken, Progress, ProgressSink};
use unisal_core::learner::{
    Cancelled, CheckpointFile, CheckpointMeta, ImageSource, Learner, LearnerError, LossTerms,
    PatchPrediction, ResolvedSchedule, TrainOutcome, TrainRequest,
};
use unisal_core::pool::{ImportLabel, NewPatch};
use unisal_core::Pool;

/// The real patches: `../shared/data/kather2016/subset100-224px` from the repository root.
pub const KATHER: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/kather2016/subset100-224px");

/// Up to `n` real patches as (relative path, bytes, class name), in `labels.csv` order; `None` (with a
/// printed reason) when the shared data is absent.
pub fn real_patches(n: usize) -> Option<Vec<(String, Vec<u8>, String)>> {
    let csv = Path::new(KATHER).join("labels.csv");
    let Ok(text) = std::fs::read_to_string(&csv) else {
        eprintln!("skipping: {} not found (the shared data lives next to the repository)", csv.display());
        return None;
    };
    let mut out = Vec::new();
    for line in text.lines().skip(1).take(n) {
        let mut cols = line.split(',');
        let (Some(path), Some(label)) = (cols.next(), cols.next()) else { continue };
        let bytes = std::fs::read(Path::new(KATHER).join(path)).expect("reading a real patch");
        out.push((path.to_string(), bytes, label.to_string()));
    }
    Some(out)
}

/// How the labels of the real patches are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labels {
    /// Every label hidden as an oracle label (a simulation's pool).
    Oracle,
    /// The first `k` as real imported labels, the rest as oracle labels.
    FirstImported(usize),
}

/// A project at `dir/name.unisal` holding `n` real patches; `None` when the shared data is absent.
pub fn make_pool(dir: &Path, name: &str, n: usize, labels: Labels) -> Option<Pool> {
    let patches = real_patches(n)?;
    let mut pool = Pool::create(dir.join(format!("{name}.unisal"))).unwrap();
    let mut names: Vec<String> = patches.iter().map(|p| p.2.clone()).collect();
    names.sort();
    names.dedup();
    let classes = pool.ensure_classes(&names).unwrap();
    let batch: Vec<NewPatch> = patches
        .iter()
        .enumerate()
        .map(|(i, (path, bytes, label))| {
            let class = classes.iter().find(|c| &c.name == label).unwrap().id;
            let label = match labels {
                Labels::FirstImported(k) if i < k => ImportLabel::Real(class),
                _ => ImportLabel::Oracle(class),
            };
            NewPatch {
                sha256: hex::encode(Sha256::digest(bytes)),
                width: 224,
                height: 224,
                source_path: path.clone(),
                group: None,
                format: "png".into(),
                source_format: "png".into(),
                note: None,
                image: bytes.clone(),
                thumbnail_format: "png".into(),
                thumbnail: bytes.clone(),
                label: Some(label),
            }
        })
        .collect();
    pool.insert_patches(&batch).unwrap();
    Some(pool)
}

/// A 64-bit mix (splitmix64).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Where the fake learner fails on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAt {
    Nowhere,
    Train,
    Predict,
    Checkpoint,
}

/// A learner that trains nothing: its predictions hash the image bytes, the patch id and the seed.
/// A and B disagree on about one patch in `disagree_every` (never when it is 0).
pub struct FakeLearner {
    pub fail_at: FailAt,
    /// Cancelled by the learner itself in the middle of training (a user pressing Cancel).
    pub cancel_during_train: Option<CancelToken>,
    pub disagree_every: u64,
    pub seed: u64,
    pub classes: usize,
    /// The last training request seen.
    pub last_request: Mutex<Option<TrainRequest>>,
}

impl FakeLearner {
    pub fn new(disagree_every: u64) -> Self {
        Self {
            fail_at: FailAt::Nowhere,
            cancel_during_train: None,
            disagree_every,
            seed: 0,
            classes: 0,
            last_request: Mutex::new(None),
        }
    }

    fn probs(&self, h: u64) -> Vec<f32> {
        let raw: Vec<f32> =
            (0..self.classes).map(|c| 0.05 + (mix(h ^ c as u64) % 1000) as f32 / 1000.0).collect();
        let sum: f32 = raw.iter().sum();
        raw.iter().map(|v| v / sum).collect()
    }
}

fn argmax(p: &[f32]) -> u32 {
    p.iter().enumerate().fold((0, f32::MIN), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0 as u32
}

impl Learner for FakeLearner {
    fn train(
        &mut self,
        req: &TrainRequest,
        images: &dyn ImageSource,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<TrainOutcome, LearnerError> {
        *self.last_request.lock().unwrap() = Some(req.clone());
        for p in &req.labeled {
            images.image_bytes(p.patch_id)?;
        }
        progress.report(&Progress::new("train", 1, Some(2)));
        if let Some(token) = &self.cancel_during_train {
            token.cancel();
        }
        if cancel.is_cancelled() {
            return Err(Box::new(Cancelled));
        }
        if self.fail_at == FailAt::Train {
            return Err("fake training failure: out of memory".into());
        }
        self.seed = req.config.seed;
        self.classes = req.class_names.len();
        let mut config = req.config.clone();
        config.device = "fake".into();
        Ok(TrainOutcome {
            config,
            device: "fake".into(),
            schedule: ResolvedSchedule {
                iterations_per_epoch: 1,
                total_iterations: 2,
                lambda_step_iteration: 1,
                lr_step_iteration: None,
            },
            iterations: 2,
            seconds: 0.0,
            images_per_s: 1.0,
            final_losses: LossTerms {
                total: 1.5,
                supervised: 1.0,
                pseudo_a: 0.1,
                pseudo_b: 0.2,
                contrastive: 0.2,
            },
            validation_accuracy: None,
            chosen_iteration: 2,
        })
    }

    fn predict(
        &self,
        ids: &[i64],
        images: &dyn ImageSource,
        _progress: &dyn ProgressSink,
        _cancel: &CancelToken,
    ) -> Result<Vec<PatchPrediction>, LearnerError> {
        if self.fail_at == FailAt::Predict {
            return Err("fake prediction failure: image decoder crashed".into());
        }
        ids.iter()
            .map(|&id| {
                let bytes = images.image_bytes(id)?;
                let h = bytes.iter().fold(self.seed ^ id as u64, |h, &b| mix(h ^ b as u64));
                let prob_a = self.probs(h);
                let disagree = self.disagree_every > 0 && mix(h ^ 0xD15) % self.disagree_every == 0;
                let prob_b = if disagree { self.probs(mix(h ^ 0xB)) } else { prob_a.clone() };
                let (pred_a, pred_b) = (argmax(&prob_a), argmax(&prob_b));
                let mean: Vec<f32> = prob_a.iter().zip(&prob_b).map(|(a, b)| (a * b).sqrt()).collect();
                let embedding = (0..128).map(|d| (mix(h ^ (d << 8)) % 2000) as f32 / 1000.0 - 1.0).collect();
                Ok(PatchPrediction {
                    patch_id: id,
                    prob_a,
                    prob_b,
                    pred_a,
                    pred_b,
                    pred: argmax(&mean),
                    embedding,
                })
            })
            .collect()
    }

    fn save_checkpoint(
        &self,
        dir: &Path,
        meta: &CheckpointMeta,
    ) -> Result<Vec<CheckpointFile>, LearnerError> {
        if self.fail_at == FailAt::Checkpoint {
            return Err("fake checkpoint failure: disk full".into());
        }
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for (role, content) in [
            ("a", format!("network A seed {}", self.seed)),
            ("b", format!("network B seed {}", self.seed)),
            ("card", serde_json::to_string(meta)?),
        ] {
            let path: PathBuf = dir.join(format!("{role}.bin"));
            std::fs::write(&path, &content)?;
            files.push(CheckpointFile {
                role: role.into(),
                sha256: hex::encode(Sha256::digest(content.as_bytes())),
                bytes: content.len() as u64,
                path,
            });
        }
        Ok(files)
    }
}
