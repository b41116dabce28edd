//! `Pool::learning_curve` on real project files with a scripted learner whose ensemble predicts exactly the
//! class names the test gives it: which rounds make points, which labels count as held-out or oracle, how
//! class indices map back to class ids after the classes are reordered, and hand-computed scores.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use unisal_core::events::{CancelToken, NoProgress, ProgressSink};
use unisal_core::learner::{
    CheckpointFile, CheckpointMeta, ImageSource, Learner, LearnerError, PatchPrediction, TrainConfig,
    TrainOutcome, TrainRequest,
};
use unisal_core::pool::{ClassId, ImportLabel, LabelSource, NewPatch, Score};
use unisal_core::round::{run_round, InitialSet, RoundSpec};
use unisal_core::Pool;

/// Predicts, for every patch, the class named in `plan` (the first class when absent) for A, B and the
/// ensemble alike.
struct Scripted {
    plan: HashMap<i64, &'static str>,
    class_names: Vec<String>,
    fail: bool,
}

impl Scripted {
    fn new(plan: &[(i64, &'static str)]) -> Self {
        Scripted { plan: plan.iter().copied().collect(), class_names: Vec::new(), fail: false }
    }
}

impl Learner for Scripted {
    fn train(
        &mut self,
        req: &TrainRequest,
        _images: &dyn ImageSource,
        _progress: &dyn ProgressSink,
        _cancel: &CancelToken,
    ) -> Result<TrainOutcome, LearnerError> {
        if self.fail {
            return Err("scripted failure".into());
        }
        self.class_names = req.class_names.clone();
        Ok(TrainOutcome::untrained(req.config.clone(), "scripted"))
    }

    fn predict(
        &self,
        ids: &[i64],
        _images: &dyn ImageSource,
        _progress: &dyn ProgressSink,
        _cancel: &CancelToken,
    ) -> Result<Vec<PatchPrediction>, LearnerError> {
        let k = self.class_names.len();
        Ok(ids
            .iter()
            .map(|&id| {
                let name = self.plan.get(&id).copied().unwrap_or(&self.class_names[0]);
                let index = self.class_names.iter().position(|n| n == name).expect("planned class exists");
                let probs: Vec<f32> =
                    (0..k).map(|i| if i == index { 0.8 } else { 0.2 / (k - 1) as f32 }).collect();
                PatchPrediction {
                    patch_id: id,
                    prob_a: probs.clone(),
                    prob_b: probs,
                    pred_a: index as u32,
                    pred_b: index as u32,
                    pred: index as u32,
                    embedding: vec![id as f32; 4],
                }
            })
            .collect())
    }

    fn save_checkpoint(
        &self,
        dir: &Path,
        _meta: &CheckpointMeta,
    ) -> Result<Vec<CheckpointFile>, LearnerError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("a.bin");
        std::fs::write(&path, b"weights")?;
        Ok(vec![CheckpointFile {
            role: "a".into(),
            path,
            sha256: hex::encode(Sha256::digest(b"weights")),
            bytes: 7,
        }])
    }
}

/// A pool with classes X, Y, Z (in that order) and patches 1..=n whose labels `label(id)` decides.
fn pool_with(
    dir: &Path,
    n: i64,
    label: impl Fn(i64, &[ClassId]) -> Option<ImportLabel>,
) -> (Pool, Vec<ClassId>) {
    let mut pool = Pool::create(dir.join("curve.unisal")).unwrap();
    let classes = pool.ensure_classes(&["X".into(), "Y".into(), "Z".into()]).unwrap();
    let ids: Vec<ClassId> = classes.iter().map(|c| c.id).collect();
    let batch: Vec<NewPatch> = (1..=n)
        .map(|i| {
            let bytes = format!("patch {i}").into_bytes();
            NewPatch {
                sha256: hex::encode(Sha256::digest(&bytes)),
                width: 8,
                height: 8,
                source_path: format!("p{i}.png"),
                group: None,
                format: "png".into(),
                source_format: "png".into(),
                note: None,
                image: bytes.clone(),
                thumbnail_format: "png".into(),
                thumbnail: bytes,
                label: label(i, &ids),
            }
        })
        .collect();
    pool.insert_patches(&batch).unwrap();
    (pool, ids)
}

fn spec(initial: InitialSet) -> RoundSpec {
    RoundSpec {
        strategy: "random".into(),
        budget: 2,
        config: TrainConfig::preset("cpu-small").unwrap(),
        seed: 1,
        initial,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn heldout_and_oracle_scores_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    // Patches 1-3 imported (X, Y, Z): the first labeled set. 4..=10 carry oracle labels only.
    let (mut pool, ids) = pool_with(dir.path(), 10, |i, ids| match i {
        1..=3 => Some(ImportLabel::Real(ids[(i - 1) as usize])),
        _ => Some(ImportLabel::Oracle(ids[(i % 3) as usize])),
    });
    let (x, y, z) = (ids[0], ids[1], ids[2]);
    // Round 1 predicts: 4→Y, 5→Z, 6→Y, 7→Y, 8→Y, 9→X, 10→X, and 1-3 wrongly (trained on: not scored).
    let plan1 =
        [(1, "Z"), (2, "Z"), (3, "X"), (4, "Y"), (5, "Z"), (6, "Y"), (7, "Y"), (8, "Y"), (9, "X"), (10, "X")];
    let mut learner = Scripted::new(&plan1);
    let cancel = CancelToken::new();
    run_round(&mut pool, &mut learner, &spec(InitialSet::AlreadyLabeled), &NoProgress, &cancel).unwrap();

    // After round 1: a human labels 4 (X) and 5 (Z); the oracle answers 6 (source oracle: not held-out).
    pool.set_label(4, x).unwrap();
    pool.set_label(5, z).unwrap();
    pool.set_labels_from(&[(6, x)], LabelSource::Oracle, Some(1)).unwrap();
    // Reorder the classes: round 2's index order is Z, X, Y; round 1's stays X, Y, Z.
    pool.move_class(z, 0).unwrap();
    let plan2 = [(7, "Y"), (8, "Z"), (9, "Z"), (10, "X")];
    let mut learner = Scripted::new(&plan2);
    run_round(&mut pool, &mut learner, &spec(InitialSet::AlreadyLabeled), &NoProgress, &cancel).unwrap();
    // After round 2, a human labels 7 as Y: held-out for both rounds (neither trained on it).
    pool.set_label(7, y).unwrap();

    let curve = pool.learning_curve().unwrap();
    assert_eq!(curve.iter().map(|p| (p.round, p.labeled)).collect::<Vec<_>>(), vec![(1, 3), (2, 6)]);
    assert_eq!(curve[0].strategy.as_deref(), Some("random"));
    assert!(curve.iter().all(|p| p.train_seconds.is_some_and(|s| s > 0.0)));

    // Round 1 held-out: 4 X→Y, 5 Z→Z, 7 Y→Y. acc 2/3. X: FN1 → 0; Y: TP1 FP1 → 2/3; Z: TP1 → 1.
    let h1 = curve[0].heldout.clone().unwrap();
    assert_eq!(h1.n, 3);
    assert!(close(h1.accuracy, 2.0 / 3.0) && close(h1.macro_f1, (0.0 + 2.0 / 3.0 + 1.0) / 3.0), "{h1:?}");
    // Round 1 oracle: 4..=10 with truth i % 3 (X for 6 and 9, Y for 4, 7, 10, Z for 5, 8).
    // 4 Y→Y ✓, 5 Z→Z ✓, 6 X→Y, 7 Y→Y ✓, 8 Z→Y, 9 X→X ✓, 10 Y→X: acc 4/7.
    // X: TP1 FP1 FN1 → 2/4; Y: TP2 FP2 FN1 → 4/7; Z: TP1 FN1 → 2/3.
    let o1 = curve[0].oracle.clone().unwrap();
    assert_eq!(o1.n, 7);
    assert!(close(o1.accuracy, 4.0 / 7.0), "{o1:?}");
    assert!(close(o1.macro_f1, (0.5 + 4.0 / 7.0 + 2.0 / 3.0) / 3.0), "{o1:?}");

    // Round 2 trained on 1-6; held-out is only 7 (Y→Y).
    assert_eq!(curve[1].heldout, Some(Score { n: 1, accuracy: 1.0, macro_f1: 1.0 }));
    // Round 2 oracle: 7 Y→Y ✓, 8 Z→Z ✓, 9 X→Z, 10 Y→X: acc 2/4.
    // X: FP1 FN1 → 0; Y: TP1 FN1 → 2/3; Z: TP1 FP1 → 2/3.
    let o2 = curve[1].oracle.clone().unwrap();
    assert_eq!(o2.n, 4);
    assert!(close(o2.accuracy, 0.5) && close(o2.macro_f1, (0.0 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0), "{o2:?}");
}

#[test]
fn initial_draw_and_failed_rounds_make_no_point() {
    let dir = tempfile::tempdir().unwrap();
    let (mut pool, ids) = pool_with(dir.path(), 8, |i, ids| Some(ImportLabel::Oracle(ids[(i % 3) as usize])));
    let cancel = CancelToken::new();
    let mut learner = Scripted::new(&[]);
    run_round(&mut pool, &mut learner, &spec(InitialSet::Random(3)), &NoProgress, &cancel).unwrap();
    assert!(pool.learning_curve().unwrap().is_empty(), "the initial draw predicted nothing");

    pool.set_label(1, ids[0]).unwrap();
    learner.fail = true;
    run_round(&mut pool, &mut learner, &spec(InitialSet::AlreadyLabeled), &NoProgress, &cancel).unwrap_err();
    assert!(pool.learning_curve().unwrap().is_empty(), "a failed round predicted nothing");

    learner.fail = false;
    run_round(&mut pool, &mut learner, &spec(InitialSet::AlreadyLabeled), &NoProgress, &cancel).unwrap();
    let curve = pool.learning_curve().unwrap();
    assert_eq!(curve.len(), 1);
    assert_eq!((curve[0].round, curve[0].labeled), (3, 1));
    // No human label outside the labeled set: no held-out score; the 7 other oracle labels are scored
    // against the default prediction X (patches 3 and 6 have truth X: 2 of 7).
    assert_eq!(curve[0].heldout, None);
    let o = curve[0].oracle.clone().unwrap();
    assert_eq!(o.n, 7);
    assert!(close(o.accuracy, 2.0 / 7.0), "{o:?}");
}

/// 100,000 patches, half with imported labels (the labeled set) and all with oracle labels; one trained
/// round. Prints how long `learning_curve` takes (a measurement, not a budget: run with `--release`).
#[test]
#[ignore = "large: cargo test --release -p unisal-core --test curve -- --ignored --nocapture"]
fn curve_over_100k_patches() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000;
    let (mut pool, ids) = pool_with(dir.path(), n, |i, ids| {
        Some(if i % 2 == 0 {
            ImportLabel::Real(ids[(i % 3) as usize])
        } else {
            ImportLabel::Oracle(ids[(i % 3) as usize])
        })
    });
    let plan: Vec<(i64, &'static str)> = (1..=n).map(|i| (i, ["X", "Y", "Z"][(i % 3) as usize])).collect();
    let mut learner = Scripted::new(&plan);
    run_round(&mut pool, &mut learner, &spec(InitialSet::AlreadyLabeled), &NoProgress, &CancelToken::new())
        .unwrap();
    pool.set_label(1, ids[1]).unwrap();
    let clock = std::time::Instant::now();
    let curve = pool.learning_curve().unwrap();
    println!("learning_curve over {n} patches, 1 round: {:.1} ms", clock.elapsed().as_secs_f64() * 1e3);
    assert_eq!(curve.len(), 1);
    assert_eq!(curve[0].labeled, n as u64 / 2);
    assert_eq!(curve[0].heldout, Some(Score { n: 1, accuracy: 1.0, macro_f1: 1.0 }));
    assert_eq!(curve[0].oracle, Some(Score { n: n as u64 / 2, accuracy: 1.0, macro_f1: 1.0 }));
}
