//! A round that trains: train the pair, predict the whole pool, score, select, save the checkpoint, and
//! write it all in one transaction. Any error here is recorded by the caller as a failed or cancelled round.

use super::types::{NewQuery, RoundRow};
use super::{
    checkpoint_dir, CheckpointRecord, PoolImages, RoundSpec, RoundStatus, RoundSummary, Snapshot,
    StoredPrediction,
};
use crate::error::{CoreError, Result};
use crate::events::{CancelToken, Progress, ProgressSink};
use crate::learner::{
    is_cancelled, CheckpointFile, CheckpointMeta, LabeledPatch, Learner, LearnerError, PatchPrediction,
    TrainOutcome, TrainRequest,
};
use crate::pool::{ClassId, PatchId, Pool};
use crate::selection::{strategy_by_name, PatchScores, Selection, SelectionInput};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

/// Map a learner error to [`CoreError::Cancelled`] or [`CoreError::Learner`].
fn learner_error(round: i64, stage: &'static str) -> impl Fn(LearnerError) -> CoreError {
    move |e| {
        if is_cancelled(&e) {
            CoreError::Cancelled(format!(": round {round} stopped while {stage}"))
        } else {
            CoreError::Learner { round, stage, message: e.to_string() }
        }
    }
}

fn check_cancel(cancel: &CancelToken, round: i64, stage: &str) -> Result<()> {
    if cancel.is_cancelled() {
        return Err(CoreError::Cancelled(format!(": round {round} stopped before {stage}")));
    }
    Ok(())
}

/// Checks that the learner predicted exactly `ids`, in order, with `classes` probabilities each.
fn check_predictions(round: i64, ids: &[PatchId], preds: &[PatchPrediction], classes: usize) -> Result<()> {
    let bad = |message: String| CoreError::Learner { round, stage: "predicting the pool", message };
    if preds.len() != ids.len() {
        return Err(bad(format!("{} predictions for {} patches", preds.len(), ids.len())));
    }
    for (p, &id) in preds.iter().zip(ids) {
        if p.patch_id != id {
            return Err(bad(format!("prediction for patch {} where patch {id} was expected", p.patch_id)));
        }
        if p.prob_a.len() != classes || p.prob_b.len() != classes {
            return Err(bad(format!(
                "patch {id}: probabilities for {} classes, the project has {classes}",
                p.prob_a.len()
            )));
        }
        if (p.pred_a.max(p.pred_b).max(p.pred)) as usize >= classes {
            return Err(bad(format!("patch {id}: predicted class index out of range")));
        }
    }
    Ok(())
}

/// Named numbers of a trained round.
fn round_metrics(
    outcome: &TrainOutcome,
    snap: &Snapshot,
    selection: &Selection,
    unl_scores: &[&PatchScores],
) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let l = &outcome.final_losses;
    let n = unl_scores.len().max(1) as f64;
    let entries = [
        ("labeled", snap.labeled.len() as f64),
        ("unlabeled", snap.unlabeled.len() as f64),
        ("disagreements", unl_scores.iter().filter(|s| !s.agree).count() as f64),
        ("mean_jsd_unlabeled", unl_scores.iter().map(|s| s.jsd).sum::<f64>() / n),
        ("mean_confidence_unlabeled", unl_scores.iter().map(|s| s.confidence).sum::<f64>() / n),
        ("topped_up", selection.topped_up as f64),
        ("iterations", outcome.iterations as f64),
        ("chosen_iteration", outcome.chosen_iteration as f64),
        ("train_images_per_s", outcome.images_per_s),
        ("loss_total", l.total),
        ("loss_supervised", l.supervised),
        ("loss_pseudo_a", l.pseudo_a),
        ("loss_pseudo_b", l.pseudo_b),
        ("loss_contrastive", l.contrastive),
    ];
    for (k, v) in entries {
        m.insert(k.to_string(), v);
    }
    if let Some(acc) = outcome.validation_accuracy {
        m.insert("validation_accuracy".into(), acc);
    }
    m
}

/// The stored form of the learner's checkpoint files: A and B rows, the card's path and hash on each.
fn checkpoint_records(round: i64, folder: &Path, files: &[CheckpointFile]) -> Vec<CheckpointRecord> {
    let rel = |p: &Path| p.strip_prefix(folder).unwrap_or(p).to_string_lossy().replace('\\', "/");
    let card = files.iter().find(|f| f.role == "card").map(|f| {
        serde_json::json!({ "path": rel(&f.path), "sha256": f.sha256, "bytes": f.bytes }).to_string()
    });
    files
        .iter()
        .filter(|f| f.role != "card")
        .map(|f| CheckpointRecord {
            round_id: round,
            network: f.role.to_uppercase(),
            path: rel(&f.path),
            sha256: f.sha256.clone(),
            card_json: card.clone(),
        })
        .collect()
}

fn note_for(selection: &Selection, budget: usize, unlabeled: usize) -> Option<String> {
    let mut notes = Vec::new();
    if selection.was_topped_up() {
        notes.push(format!(
            "top-up: only {} unlabeled patches disagree; {} of the batch are agreeing patches with the highest JSD",
            selection.candidates.unwrap_or(0),
            selection.topped_up
        ));
    }
    if selection.items.len() < budget {
        notes.push(format!("only {unlabeled} unlabeled patches left: batch of {}", selection.items.len()));
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// Train, predict, select, checkpoint and persist one round.
pub(crate) fn trained_round(
    pool: &mut Pool,
    learner: &mut dyn Learner,
    spec: &RoundSpec,
    snap: &Snapshot,
    snapshot_s: f64,
    progress: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<RoundSummary> {
    let round = snap.round;
    let index_of: HashMap<ClassId, u32> =
        snap.class_ids.iter().enumerate().map(|(i, &c)| (c, i as u32)).collect();
    let labeled = snap
        .labeled
        .iter()
        .map(|&(patch_id, c)| {
            index_of
                .get(&c)
                .map(|&class_index| LabeledPatch { patch_id, class_index })
                .ok_or(CoreError::UnknownClassId(c))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut config = spec.config.clone();
    config.seed = spec.seed;
    let req = TrainRequest {
        config,
        class_names: snap.class_names.clone(),
        labeled,
        unlabeled: snap.unlabeled.clone(),
        validation: Vec::new(),
        round: round as u32,
    };
    let images = PoolImages::open(pool.path())?;

    check_cancel(cancel, round, "training")?;
    let clock = Instant::now();
    let outcome = learner.train(&req, &images, progress, cancel).map_err(learner_error(round, "training"))?;
    let train_s = clock.elapsed().as_secs_f64();

    check_cancel(cancel, round, "predicting")?;
    let clock = Instant::now();
    let preds = learner
        .predict(&snap.all_ids, &images, progress, cancel)
        .map_err(learner_error(round, "predicting the pool"))?;
    check_predictions(round, &snap.all_ids, &preds, snap.class_names.len())?;
    let predict_s = clock.elapsed().as_secs_f64();

    check_cancel(cancel, round, "selecting")?;
    progress.report(&Progress::new("select", 0, Some(1)));
    let clock = Instant::now();
    let embed_dim = preds.first().map_or(128, |p| p.embedding.len());
    let unlabeled: HashSet<PatchId> = snap.unlabeled.iter().copied().collect();
    let (unl_preds, lab_preds): (Vec<PatchPrediction>, Vec<PatchPrediction>) =
        preds.iter().cloned().partition(|p| unlabeled.contains(&p.patch_id));
    let labeled_embeddings: Vec<f32> = lab_preds.iter().flat_map(|p| p.embedding.iter().copied()).collect();
    let all_input = SelectionInput::from_predictions(&preds, Vec::new(), embed_dim)?;
    let input = SelectionInput::from_predictions(&unl_preds, labeled_embeddings, embed_dim)?;
    let selection = strategy_by_name(&spec.strategy)?.select(&input, spec.budget, spec.seed)?;
    let scores: HashMap<PatchId, &PatchScores> = all_input.scores().iter().map(|s| (s.patch_id, s)).collect();
    let unl_scores: Vec<&PatchScores> = input.scores().iter().collect();
    let select_s = clock.elapsed().as_secs_f64();
    progress.report(&Progress::new("select", 1, Some(1)));

    check_cancel(cancel, round, "saving the checkpoint")?;
    let mut metrics = round_metrics(&outcome, snap, &selection, &unl_scores);
    let clock = Instant::now();
    let meta = CheckpointMeta {
        round: round as u32,
        class_names: snap.class_names.clone(),
        metrics: metrics.iter().map(|(k, v)| (k.clone(), *v)).collect(),
    };
    let files = learner
        .save_checkpoint(&checkpoint_dir(pool, round), &meta)
        .map_err(learner_error(round, "saving the checkpoint"))?;
    let checkpoints = checkpoint_records(round, pool.folder(), &files);
    let checkpoint_s = clock.elapsed().as_secs_f64();

    let stored: Vec<StoredPrediction> = preds
        .into_iter()
        .map(|p| {
            let s = scores[&p.patch_id];
            StoredPrediction {
                patch_id: p.patch_id,
                pred_a: p.pred_a,
                pred_b: p.pred_b,
                pred: p.pred,
                disagreement: s.jsd,
                confidence: s.confidence,
                prob_a: p.prob_a,
                prob_b: p.prob_b,
                embedding: Some(p.embedding),
            }
        })
        .collect();
    let queries: Vec<NewQuery> = selection
        .items
        .iter()
        .map(|it| NewQuery {
            patch_id: it.patch_id,
            rank: it.rank,
            reason: it.reason.to_string(),
            score: Some(it.score),
        })
        .collect();
    if let Some(c) = selection.candidates {
        metrics.insert("candidates".into(), c as f64);
    }
    let note = note_for(&selection, spec.budget, snap.unlabeled.len());
    let mut row: RoundRow = snap.row(spec, RoundStatus::Done, &spec.strategy);
    row.device = Some(outcome.device.clone());
    row.config_json = Some(
        serde_json::to_string(&outcome.config)
            .map_err(|e| CoreError::Invalid { field: "config", reason: e.to_string() })?,
    );
    row.timings.snapshot_s = snapshot_s;
    row.timings.train_s = train_s;
    row.timings.predict_s = predict_s;
    row.timings.select_s = select_s;
    row.timings.checkpoint_s = checkpoint_s;
    row.timings.total_s = snap.clock.elapsed().as_secs_f64();
    row.metrics = metrics;
    row.note = note;
    progress.report(&Progress::new("save", 0, Some(1)));
    pool.write_round(&row, &stored, &queries, &checkpoints)?;
    progress.report(&Progress::new("save", 1, Some(1)));
    Ok(RoundSummary {
        round,
        strategy: spec.strategy.clone(),
        trained: true,
        device: row.device,
        labeled: snap.labeled.len(),
        unlabeled: snap.unlabeled.len(),
        queries: selection.ids(),
        topped_up: selection.topped_up,
        note: row.note,
        timings: row.timings,
        metrics: row.metrics,
    })
}
