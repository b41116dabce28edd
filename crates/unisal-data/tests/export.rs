//! Exports from real project files: the 24 bundled demo tiles imported with hidden labels, an initial
//! random round and a trained round written by the round loop with a fake learner (no training, fixed
//! checkpoint bytes). Checks the CSV columns and values, the refusals naming the round, and that the model
//! export copies exactly the recorded files and refuses one whose SHA-256 changed.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use unisal_core::events::{CancelToken, NoProgress, ProgressSink};
use unisal_core::learner::{
    CheckpointFile, CheckpointMeta, ImageSource, Learner, LearnerError, PatchPrediction, TrainConfig,
    TrainOutcome, TrainRequest,
};
use unisal_core::pool::LabelSource;
use unisal_core::round::{checkpoint_dir, run_round, InitialSet, RoundSpec};
use unisal_core::Pool;
use unisal_data::demo::bundled_assets_dir;
use unisal_data::{
    export_labels_csv, export_model, export_predictions_csv, import, DataError, ImportOptions, LabelMode,
};

/// A learner that trains nothing; A's probabilities are a fixed function of the patch id, B's the same
/// with the first two classes swapped; checkpoint files have fixed contents.
struct Fake {
    classes: usize,
}

fn probs(id: i64, k: usize) -> Vec<f32> {
    let raw: Vec<f32> = (0..k).map(|c| 1.0 + ((id as usize * 7 + c * 3) % 11) as f32).collect();
    let sum: f32 = raw.iter().sum();
    raw.iter().map(|v| v / sum).collect()
}

fn argmax(p: &[f32]) -> u32 {
    p.iter().enumerate().fold((0, f32::MIN), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0 as u32
}

impl Learner for Fake {
    fn train(
        &mut self,
        req: &TrainRequest,
        _images: &dyn ImageSource,
        _progress: &dyn ProgressSink,
        _cancel: &CancelToken,
    ) -> Result<TrainOutcome, LearnerError> {
        self.classes = req.class_names.len();
        Ok(TrainOutcome::untrained(req.config.clone(), "fake"))
    }

    fn predict(
        &self,
        ids: &[i64],
        _images: &dyn ImageSource,
        _progress: &dyn ProgressSink,
        _cancel: &CancelToken,
    ) -> Result<Vec<PatchPrediction>, LearnerError> {
        Ok(ids
            .iter()
            .map(|&id| {
                let prob_a = probs(id, self.classes);
                let mut prob_b = prob_a.clone();
                prob_b.swap(0, 1);
                let mean: Vec<f32> = prob_a.iter().zip(&prob_b).map(|(a, b)| a + b).collect();
                PatchPrediction {
                    patch_id: id,
                    pred_a: argmax(&prob_a),
                    pred_b: argmax(&prob_b),
                    pred: argmax(&mean),
                    prob_a,
                    prob_b,
                    embedding: vec![id as f32, 1.0, 0.5, -1.0],
                }
            })
            .collect())
    }

    fn save_checkpoint(
        &self,
        dir: &Path,
        meta: &CheckpointMeta,
    ) -> Result<Vec<CheckpointFile>, LearnerError> {
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for (role, name, content) in [
            ("a", "network_a.safetensors", format!("weights of A, round {}", meta.round)),
            ("b", "network_b.safetensors", format!("weights of B, round {}", meta.round)),
            ("card", "model_card.json", serde_json::to_string(meta)?),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, &content)?;
            files.push(CheckpointFile {
                role: role.into(),
                path,
                sha256: hex::encode(Sha256::digest(content.as_bytes())),
                bytes: content.len() as u64,
            });
        }
        Ok(files)
    }
}

fn spec(initial: InitialSet) -> RoundSpec {
    RoundSpec {
        strategy: "random".into(),
        budget: 4,
        config: TrainConfig::preset("cpu-small").unwrap(),
        seed: 3,
        initial,
    }
}

/// The demo tiles in `dir/p.unisal` with hidden labels, after round 1 (initial random draw of 6, answered
/// by a "human" from the hidden labels) and, when `trained`, round 2 (trained with the fake learner).
fn project(dir: &Path, trained: bool) -> Pool {
    let mut pool = Pool::create(dir.join("p.unisal")).unwrap();
    let options = ImportOptions { labels: LabelMode::Folders, oracle: true, ..ImportOptions::default() };
    let report =
        import(&mut pool, &[bundled_assets_dir()], &options, &NoProgress, &CancelToken::new()).unwrap();
    assert_eq!(report.imported, 24, "{report:?}");
    let cancel = CancelToken::new();
    let mut learner = Fake { classes: 0 };
    run_round(&mut pool, &mut learner, &spec(InitialSet::Random(6)), &NoProgress, &cancel).unwrap();
    let oracle: HashMap<i64, i64> = pool.oracle_labels().unwrap().into_iter().collect();
    let answers: Vec<(i64, i64)> =
        pool.round_queries(1).unwrap().iter().map(|q| (q.patch_id, oracle[&q.patch_id])).collect();
    pool.set_labels_from(&answers, LabelSource::Human, Some(1)).unwrap();
    if trained {
        run_round(&mut pool, &mut learner, &spec(InitialSet::Random(6)), &NoProgress, &cancel).unwrap();
    }
    pool
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r.records().map(|rec| rec.unwrap().iter().map(String::from).collect()).collect();
    (header, rows)
}

#[test]
fn predictions_csv_names_classes_and_matches_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let pool = project(dir.path(), true);
    let out = dir.path().join("pred.csv");
    let done = export_predictions_csv(&pool, None, &out).unwrap();
    assert_eq!((done.round, done.rows, done.path.as_path()), (2, 24, out.as_path()));

    let names: Vec<String> = pool.classes().unwrap().into_iter().map(|c| c.name).collect();
    let (header, rows) = read_csv(&out);
    let mut expected: Vec<String> =
        "patch_id,source_path,group,label,predicted,confidence,pred_a,conf_a,pred_b,conf_b,disagreement"
            .split(',')
            .map(String::from)
            .collect();
    expected.extend(names.iter().map(|n| format!("a:{n}")));
    expected.extend(names.iter().map(|n| format!("b:{n}")));
    assert_eq!(header, expected);
    assert_eq!(rows.len(), 24);

    let labels: HashMap<i64, i64> = pool.labeled_set().unwrap().into_iter().collect();
    let k = names.len();
    for (row, p) in rows.iter().zip(pool.round_predictions(2).unwrap()) {
        assert_eq!(row[0], p.patch_id.to_string());
        let patch = pool.patch(p.patch_id).unwrap();
        assert_eq!(row[1], patch.source_path);
        assert_eq!(row[3], labels.get(&p.patch_id).map_or(String::new(), |&c| pool.class(c).unwrap().name));
        assert_eq!(
            (row[4].as_str(), row[6].as_str(), row[8].as_str()),
            (
                names[p.pred as usize].as_str(),
                names[p.pred_a as usize].as_str(),
                names[p.pred_b as usize].as_str()
            )
        );
        assert_eq!(row[5].parse::<f64>().unwrap(), p.confidence);
        assert_eq!(row[7].parse::<f32>().unwrap(), p.prob_a[p.pred_a as usize]);
        assert_eq!(row[9].parse::<f32>().unwrap(), p.prob_b[p.pred_b as usize]);
        assert_eq!(row[10].parse::<f64>().unwrap(), p.disagreement);
        let a: Vec<f32> = row[11..11 + k].iter().map(|v| v.parse().unwrap()).collect();
        let b: Vec<f32> = row[11 + k..].iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!((a, b), (p.prob_a.clone(), p.prob_b.clone()));
    }
    assert!(rows.iter().filter(|r| !r[3].is_empty()).count() == 6, "the 6 labeled patches show their label");
    assert!(rows.iter().any(|r| r[6] != r[8]), "A and B disagree somewhere (B swaps two classes)");
    assert_eq!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| { e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".partial") })
            .count(),
        0
    );
}

#[test]
fn predictions_refused_for_rounds_without_any() {
    let dir = tempfile::tempdir().unwrap();
    let pool = project(dir.path(), false);
    let out = dir.path().join("pred.csv");
    let none = export_predictions_csv(&pool, None, &out).unwrap_err();
    assert!(none.to_string().contains("no round with predictions"), "{none}");
    let first = export_predictions_csv(&pool, Some(1), &out).unwrap_err();
    assert!(matches!(first, DataError::Invalid { field: "round", .. }), "{first}");
    assert!(first.to_string().contains("round 1 has no predictions"), "{first}");
    let unknown = export_predictions_csv(&pool, Some(7), &out).unwrap_err();
    assert!(unknown.to_string().contains("unknown round 7"), "{unknown}");
    let model = export_model(&pool, None, &dir.path().join("m")).unwrap_err();
    assert!(model.to_string().contains("no round with a saved model"), "{model}");
    let model = export_model(&pool, Some(1), &dir.path().join("m")).unwrap_err();
    assert!(model.to_string().contains("round 1 has no model"), "{model}");
    assert!(!out.exists() && !dir.path().join("m").exists(), "a refusal writes nothing");
}

#[test]
fn labels_csv_lists_current_labels_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let pool = project(dir.path(), false);
    let out = dir.path().join("labels.csv");
    assert_eq!(export_labels_csv(&pool, &out).unwrap(), 6);
    let (header, rows) = read_csv(&out);
    assert_eq!(header, ["patch_id", "source_path", "group", "label", "source"]);
    let current = pool.current_labels().unwrap();
    assert_eq!(rows.len(), current.len());
    for (row, l) in rows.iter().zip(&current) {
        assert_eq!(row[0], l.patch_id.to_string());
        assert_eq!(row[3], pool.class(l.class_id).unwrap().name);
        assert_eq!(row[4], "human");
    }
    let err = export_labels_csv(&pool, dir.path()).unwrap_err();
    assert!(err.to_string().contains("is a folder"), "{err}");
}

fn sha(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn model_export_copies_verified_files_and_refuses_a_changed_one() {
    let dir = tempfile::tempdir().unwrap();
    let pool = project(dir.path(), true);
    let out = dir.path().join("model");
    let files = export_model(&pool, None, &out).unwrap();
    let names: Vec<String> =
        files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["network_a.safetensors", "network_b.safetensors", "model_card.json"]);
    let recorded = pool.round_checkpoints(2).unwrap();
    assert_eq!(recorded.len(), 2);
    for (file, c) in files.iter().zip(&recorded) {
        assert_eq!(sha(file), c.sha256, "{}", file.display());
    }
    let source = checkpoint_dir(&pool, 2);
    assert_eq!(std::fs::read(&files[2]).unwrap(), std::fs::read(source.join("model_card.json")).unwrap());

    // Network B's file changed after the round: refused by name, and nothing written to the new folder.
    let b: PathBuf = source.join("network_b.safetensors");
    std::fs::write(&b, "tampered").unwrap();
    let again = dir.path().join("model2");
    let err = export_model(&pool, Some(2), &again).unwrap_err();
    assert!(matches!(&err, DataError::Checksum { path, .. } if path == &b), "{err}");
    assert!(err.to_string().contains("network_b.safetensors"), "{err}");
    assert!(!again.exists(), "no file copied when one differs");
}
